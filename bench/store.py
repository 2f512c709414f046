"""Result records: one immutable JSON record per finished job, in its own directory.

Layout of a results directory::

    results/jobs/<key>/record.json    identity, rate, metrics (mean and per frame), timings, provenance
    results/jobs/<key>/stream.nvbs    the bitstream the record's rate was measured from
    results/jobs/<key>/gallery/       source, decode and FLIP map of one frame, for the report
    results/failed/<key>.json         the latest failed or skipped attempt of a job, with its reason

A job directory is built under a temporary name and renamed into place in one step, so a killed run never
leaves a half-written result, and two runs finishing the same key keep exactly one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.errors import BenchError

RECORD = "record.json"
STREAM = "stream.nvbs"
GALLERY = "gallery"


def jobs_dir(results: Path) -> Path:
    return results / "jobs"


def failed_dir(results: Path) -> Path:
    return results / "failed"


def is_finished(results: Path, key: str) -> bool:
    return (jobs_dir(results) / key / RECORD).is_file()


class StoreError(BenchError):
    """A results directory that cannot be written (disk full, no permission); finished jobs stay intact."""


def _cannot_write(results: Path, what: str, exc: OSError) -> StoreError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return StoreError(
        f"cannot write {what} into {results}: {reason}; free space or fix permissions, then rerun "
        f"(finished jobs are kept and skipped)"
    )


def write_result(
    results: Path,
    key: str,
    record: dict[str, Any],
    stream: bytes,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Atomically publish a finished job: record, stream and whatever `extra` writes into the directory.

    Any failure (a full disk, a signal) removes the staging directory, so the job is either published
    whole or not at all; an OSError becomes a one-line `StoreError`.
    """
    final = jobs_dir(results) / key
    try:
        jobs_dir(results).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=jobs_dir(results)))
    except OSError as exc:
        raise _cannot_write(results, f"the result of job {key}", exc) from None
    try:
        (staging / STREAM).write_bytes(stream)
        if extra is not None:
            extra(staging)
        _write_json(staging / RECORD, record)
        try:
            os.rename(staging, final)
        except OSError:
            if not is_finished(results, key):  # not a lost race: a real failure
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another run published the same key first
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _cannot_write(results, f"the result of job {key}", exc) from None
        raise
    (failed_dir(results) / f"{key}.json").unlink(missing_ok=True)
    return final


def sweep_staging(results: Path) -> int:
    """Remove staging directories left by runs that were killed (their process is gone)."""
    removed = 0
    for staging in jobs_dir(results).glob(".tmp-*"):
        try:
            pid = int(staging.name.split("-")[1])
            os.kill(pid, 0)
            continue  # its writer is still running
        except (IndexError, ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        shutil.rmtree(staging, ignore_errors=True)
        removed += 1
    return removed


def write_failure(results: Path, key: str, record: dict[str, Any]) -> None:
    """Keep the latest failed/skipped attempt of a job (replaced atomically; nothing half-written stays)."""
    try:
        failed_dir(results).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=failed_dir(results))
        os.close(fd)
    except OSError as exc:
        raise _cannot_write(results, f"the failure record of job {key}", exc) from None
    try:
        _write_json(Path(tmp), record)
        os.replace(tmp, failed_dir(results) / f"{key}.json")
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _cannot_write(results, f"the failure record of job {key}", exc) from None
        raise


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True, allow_nan=True)
        fh.flush()
        os.fsync(fh.fileno())


def read_record(path: Path) -> dict[str, Any]:
    """One record file; a damaged one (edited by hand, copied half) is a one-line error naming it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(
            f"record {path} cannot be read ({str(exc).splitlines()[0]}); delete its job directory and rerun"
        ) from None
    if not isinstance(record, dict):
        raise StoreError(f"record {path} is not a JSON object; delete its job directory and rerun")
    return record


def iter_records(results: Path, include_failed: bool = False) -> Iterator[dict[str, Any]]:
    """Every finished record (and, on request, every failed/skipped attempt) of a results directory."""
    for record_path in sorted(jobs_dir(results).glob(f"*/{RECORD}")):
        if record_path.parent.name.startswith("."):
            continue  # a staging directory, not a published result
        record = read_record(record_path)
        record["_dir"] = str(record_path.parent)
        yield record
    if include_failed:
        for path in sorted(failed_dir(results).glob("*.json")):
            yield read_record(path)


def records_table(results: Path, include_failed: bool = False):  # -> pandas.DataFrame
    """One row per record with flattened identity, rate and mean metrics (a long table for analysis)."""
    import pandas as pd

    rows = []
    for rec in iter_records(results, include_failed=include_failed):
        row = {
            "key": rec.get("key"),
            "status": rec.get("status"),
            "reason": rec.get("reason"),
            "method": rec.get("method"),
            "method_version": rec.get("method_version"),
            "sequence": rec.get("sequence", {}).get("name"),
            "budget": rec.get("budget", {}).get("name"),
            "match": rec.get("match"),
            "seed": rec.get("seed"),
            "target_bpp": rec.get("target_bpp"),
            "bpp": rec.get("bpp"),
            "bytes": rec.get("bytes"),
        }
        for name, value in rec.get("metrics", {}).get("mean", {}).items():
            row[name] = value
        for name, value in rec.get("stats", {}).items():
            if isinstance(value, (int, float, str)):
                row[name] = value
        for name, value in rec.get("timings", {}).items():
            row[name] = value
        rows.append(row)
    return pd.DataFrame(rows)
