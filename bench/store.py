"""Result records: one immutable JSON record per finished job, in its own directory.

Layout of a results directory::

    results/jobs/<key>/record.json    identity, rate, metrics (mean and per frame), timings, provenance
    results/jobs/<key>/stream.nvbs    the bitstream the record's rate was measured from
    results/jobs/<key>/gallery/       source, decode and FLIP map of one frame, for the report
    results/failed/<key>.json         the latest failed or skipped attempt of a job, with its reason
    results/rejected/<key>-<time>/    a job directory whose record did not verify, moved aside by a rerun

A job directory is built under a temporary name and renamed into place in one step, so a killed run never
leaves a half-written result, and two runs finishing the same key keep exactly one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.record import Record, RecordError, stream_digest, verify_stream

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
    record: Record,
    stream: bytes,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Atomically publish a finished job: record, stream and whatever `extra` writes into the directory.

    Any failure (a full disk, a signal) removes the staging directory, so the job is either published
    whole or not at all; an OSError becomes a one-line `StoreError`. `extra` may still fill in the record.
    """
    final = jobs_dir(results) / key
    record.stream_sha256 = stream_digest(stream)
    try:
        jobs_dir(results).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=jobs_dir(results)))
        os.chmod(staging, 0o777 & ~_umask())
    except OSError as exc:
        raise _cannot_write(results, f"the result of job {key}", exc) from None
    try:
        (staging / STREAM).write_bytes(stream)
        if extra is not None:
            extra(staging)
        _write_json(staging / RECORD, record.to_dict())
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def write_failure(results: Path, key: str, record: Record) -> None:
    """Keep the latest failed/skipped attempt of a job (replaced atomically; nothing half-written stays)."""
    try:
        failed_dir(results).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=failed_dir(results))
        os.close(fd)
    except OSError as exc:
        raise _cannot_write(results, f"the failure record of job {key}", exc) from None
    try:
        _write_json(Path(tmp), record.to_dict())
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


def read_record(path: Path) -> Record:
    """One record file, type-checked and verified; a damaged one is a one-line error naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(
            f"record {path} cannot be read ({str(exc).splitlines()[0]}); delete its job directory and rerun"
        ) from None
    try:
        record = Record.from_dict(data, source=f"record {path}")
    except RecordError as exc:
        raise StoreError(f"{exc}; delete its job directory and rerun") from None
    record.directory = path.parent if path.name == RECORD else None
    return record


def finished_record(results: Path, key: str) -> Record | None:
    """The verified finished record of a job; None when there is none or it does not verify (then its
    directory is moved to `rejected/`, so the rerun can publish in its place and nothing is deleted)."""
    path = jobs_dir(results) / key / RECORD
    if not path.is_file():
        return None
    try:
        record = read_record(path)
        problem = verify_stream(record, path.parent / STREAM)
    except StoreError as exc:
        problem = str(exc)
    if problem is None:
        return record
    rejected = results / "rejected"
    rejected.mkdir(parents=True, exist_ok=True)
    os.rename(path.parent, rejected / f"{key}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    return None


@dataclass
class Rejected:
    """A record file that cannot be used, and why (listed by reports beside failed jobs, never merged)."""

    path: Path
    reason: str


@dataclass
class Loaded:
    finished: list[Record] = field(default_factory=list)
    failed: list[Record] = field(default_factory=list)  # failed and skipped attempts
    rejected: list[Rejected] = field(default_factory=list)


def load_results(results: Path, check_streams: bool = True) -> Loaded:
    """Every record of a results directory, sorted into finished, failed/skipped and rejected ones."""
    loaded = Loaded()
    for record_path in sorted(jobs_dir(results).glob(f"*/{RECORD}")):
        if record_path.parent.name.startswith("."):
            continue  # a staging directory, not a published result
        try:
            record = read_record(record_path)
        except StoreError as exc:
            loaded.rejected.append(Rejected(record_path, str(exc).split("; delete")[0]))
            continue
        problem = verify_stream(record, record_path.parent / STREAM) if check_streams else None
        if problem is None and record.key != record_path.parent.name:
            problem = f"record {record_path} holds key {record.key}, not its directory's"
        if problem is not None:
            loaded.rejected.append(Rejected(record_path, problem))
        elif record.ok:
            loaded.finished.append(record)
        else:
            loaded.rejected.append(Rejected(record_path, f"record {record_path} is not a finished job"))
    for path in sorted(failed_dir(results).glob("*.json")):
        try:
            loaded.failed.append(read_record(path))
        except StoreError as exc:
            loaded.rejected.append(Rejected(path, str(exc).split("; delete")[0]))
    loaded.finished, superseded = _newest_per_setting(loaded.finished)
    loaded.rejected += superseded
    return loaded


def _written_at(record: Record) -> tuple[str, int]:
    """When a record was published: its provenance time, then its file's mtime (same-second runs)."""
    try:
        mtime = (record.directory / RECORD).stat().st_mtime_ns if record.directory else 0
    except OSError:
        mtime = 0
    return (str(record.provenance.get("time_utc", "")), mtime)


def _newest_per_setting(records: list[Record]) -> tuple[list[Record], list[Rejected]]:
    """One record per setting (method variant, sequence, budget, matching, target, seed): the newest.

    Two records of one setting with different keys were made from different inputs or by a different
    suite (a changed file, another --size, an older key format); only the newest is a seed of the point.
    """
    groups: dict[tuple[Any, ...], list[Record]] = {}
    for r in records:
        setting = (r.label, r.seq_name, r.budget_label, r.match, r.target_bpp, r.seed)
        groups.setdefault(setting, []).append(r)
    kept, superseded = [], []
    for members in groups.values():
        members.sort(key=_written_at, reverse=True)
        kept.append(members[0])
        for old in members[1:]:
            superseded.append(
                Rejected(
                    (old.directory or Path(old.key)) / RECORD,
                    f"record {old.key} is superseded by {members[0].key}, a newer record of the same method, "
                    f"sequence, budget, rate and seed made from other input or settings",
                )
            )
    kept.sort(key=lambda r: r.key)
    return kept, superseded


def iter_records(results: Path, include_failed: bool = False) -> Iterator[Record]:
    """Every finished record (and, on request, every failed/skipped attempt); a damaged one raises."""
    for record_path in sorted(jobs_dir(results).glob(f"*/{RECORD}")):
        if record_path.parent.name.startswith("."):
            continue
        yield read_record(record_path)
    if include_failed:
        for path in sorted(failed_dir(results).glob("*.json")):
            yield read_record(path)


def records_table(results: Path, include_failed: bool = False):  # -> pandas.DataFrame
    """One row per record with flattened identity, rate and mean metrics (a long table for analysis)."""
    import pandas as pd

    rows = []
    for rec in iter_records(results, include_failed=include_failed):
        row: dict[str, Any] = {
            "key": rec.key,
            "status": rec.status,
            "reason": rec.reason,
            "method": rec.method,
            "label": rec.label,
            "method_version": rec.method_version,
            "sequence": rec.seq_name,
            "budget": rec.budget_name,
            "budget_label": rec.budget_label,
            "match": rec.match,
            "seed": rec.seed,
            "target_bpp": rec.target_bpp,
            "bpp": rec.bpp,
            "bytes": rec.bytes,
        }
        for name, value in (rec.metrics.get("mean") or {}).items():
            row[name] = value
        for name, value in rec.stats.items():
            if isinstance(value, (int, float, str)):
                row[name] = value
        for name, value in rec.timings.items():
            row[name] = value
        rows.append(row)
    return pd.DataFrame(rows)
