"""`bench fetch NAME`: download a sequence's archive, check it, extract its one file into the data cache.

Everything happens in a private temporary folder inside the cache; the sequence's file appears at its
final path only by an atomic rename after every check has passed (byte count against Content-Length,
sha256 against the manifest when it records one, frame size against the manifest), so an interrupted
or failed fetch never leaves a partial file where the suite would read it. A fetch that was killed
outright leaves its temporary folder behind; the next fetch into the same cache removes it.

Archives are hostile until checked: the download stops at the size an archive of the sequence can have,
only the manifest's member is extracted, never through a path leaving the folder nor from a link, and
only after its declared size equals the manifest's frames (with the extraction capped at that size).
"""

from __future__ import annotations

import http.client
import lzma
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from bench.data.manifests import ManifestEntry, PackageSource, UrlSource, expand_datasets, get_entry
from bench.data.sequences import file_sha256, local_path
from bench.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60.0
ARCHIVE_SLACK = 1.1  # an archive of raw frames is at most their size plus framing (and a note or two)
ARCHIVE_EXTRA_BYTES = 1 << 20


def fetch(name: str, url: str | None = None, cache_dir: Path | str | None = None) -> Path:
    """Make the sequence `name` available in the cache and return its file's path.

    url replaces the manifest's download address (an http(s) URL, or file:///... for an archive already
    downloaded by hand).
    """
    entry = get_entry(name)
    target = local_path(entry, cache_dir)
    if isinstance(entry.source, PackageSource):
        _say(f"{entry.name} ships with the '{entry.source.package}' package: nothing to fetch ({target})")
        return target
    if target.is_file():
        expected = entry.frames * entry.frame_bytes
        if target.stat().st_size != expected:
            raise DataError(
                f"{target} exists but has {target.stat().st_size} bytes, not {expected}; delete it and fetch again"
            )
        _say(f"{entry.name} is already present: {target}")
        return target
    source = entry.source
    address = url or source.url
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_partial_fetches(target.parent)
    prefix = f".fetch-{entry.name}-{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=target.parent) as tmp:
        archive = Path(tmp) / (PurePosixPath(address.split("?")[0]).name or "archive.7z")
        limit = archive_limit(entry)
        _download(address, archive, entry.name, f"extract {source.member} to {target}", limit)
        if source.archive_sha256 and file_sha256(archive) != source.archive_sha256:
            raise DataError(
                f"{address}: archive sha256 {file_sha256(archive)} differs from the manifest's {source.archive_sha256}; "
                f"the download was discarded"
            )
        extracted = _extract(archive, source, Path(tmp) / "out", entry.frames * entry.frame_bytes)
        _check_file(extracted, entry, address)
        extracted.replace(target)  # same folder tree: atomic
    if entry.sha256 is None:  # no published checksum: show this one so it can be recorded in the manifest
        _say(f"{entry.name}: sha256 {file_sha256(target)} (not recorded in {entry.manifest.name} yet)")
    return target


def fetch_all(names: list[str], url: str | None = None, cache_dir: Path | str | None = None) -> int:
    """`bench fetch`: every named sequence, a dataset's name (uvg) standing for all its sequences.

    One failed download does not stop the others; each failure is one line, and the command exits 2
    naming the sequences that are still missing (a rerun fetches only those: present ones are kept).
    """
    wanted = list(dict.fromkeys(expand_datasets(names)))
    if url is not None and len(wanted) > 1:
        raise DataError(
            f"--url names one archive, but {len(wanted)} sequences were asked ({', '.join(wanted)}); "
            f"fetch one sequence at a time with --url"
        )
    missing = []
    for name in wanted:
        try:
            path = fetch(name, url=url, cache_dir=cache_dir)
        except DataError as exc:
            if len(wanted) == 1:
                raise
            _say(f"error: {name}: {exc}")
            missing.append(name)
            continue
        print(f"{name}: {path}")
    if missing:
        raise DataError(
            f"{len(missing)} of {len(wanted)} sequences could not be fetched ({', '.join(missing)}; reasons above); "
            f"run the same command again to fetch only those"
        )
    return 0


def archive_limit(entry: ManifestEntry) -> int:
    """The most bytes an archive of this sequence may have: its raw frames (or the published archive size,
    if larger) plus slack. A server sending more is not sending this sequence."""
    assert isinstance(entry.source, UrlSource)
    raw = max(entry.frames * entry.frame_bytes, entry.source.archive_bytes_hint or 0)
    return int(raw * ARCHIVE_SLACK) + ARCHIVE_EXTRA_BYTES


def sweep_partial_fetches(folder: Path) -> int:
    """Remove the temporary folders of fetches that were killed (their process is gone)."""
    removed = 0
    for leftover in folder.glob(".fetch-*"):
        parts = leftover.name.rsplit("-", 2)  # .fetch-<name>-<pid>-<random>
        try:
            os.kill(int(parts[1]), 0)
            continue  # its fetch is still running
        except (IndexError, ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue  # another user's process
        shutil.rmtree(leftover, ignore_errors=True)
        removed += 1
    return removed


def _download(url: str, dest: Path, name: str, then: str, limit: int) -> None:
    """Stream `url` into `dest` with a progress bar; the byte count must match Content-Length and may
    never exceed `limit`, so a lying or endless server cannot fill the disk."""
    from tqdm import tqdm

    by_hand = f"download it by hand and {then} (or pass the archive: bench fetch {name} --url file:///path/to/archive.7z)"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, dest.open("wb") as out:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            if expected is not None and expected > limit:
                raise DataError(
                    f"{url} announces {expected} bytes, more than an archive of {name} can hold ({limit}); "
                    f"check the URL"
                )
            cap = limit if expected is None else expected
            received = 0
            with tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
                disable=None,
                file=sys.stderr,
            ) as bar:
                while chunk := response.read(min(CHUNK, cap + 1 - received)):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if received > cap:  # only without a Content-Length: http.client stops at it
                        raise DataError(
                            f"{url} sent more than {cap} bytes, the most an archive of {name} can hold; "
                            f"the download was discarded"
                        )
    except urllib.error.HTTPError as exc:
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; {by_hand}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"cannot download {url}: {reason}; {by_hand}") from None
    if expected is not None and received != expected:
        raise DataError(
            f"download of {url} stopped after {received} of {expected} bytes; run `bench fetch {name}` again"
        )


def _extract(archive: Path, source: UrlSource, folder: Path, expected: int) -> Path:
    """Extract only the manifest's member (matched by path, else by unique file name) into `folder`.

    The member must be a regular file inside the folder whose declared size is the manifest's `expected`
    bytes; extraction is capped at that size, so an archive cannot write elsewhere or fill the disk.
    """
    import py7zr

    try:
        with py7zr.SevenZipFile(archive, mode="r", max_extract_size=expected) as z:
            members = {info.filename: info for info in z.list() if not info.is_directory}
            member = _pick_member(list(members), source.member, archive)
            _refuse_unsafe(member, archive)
            info = members[member]
            if not info.is_file or info.is_symlink:
                raise DataError(
                    f"{archive.name}: member '{member}' is a link or special file, not the sequence's frames; "
                    f"the download was discarded"
                )
            if info.uncompressed != expected:
                raise DataError(
                    f"{archive.name}: member '{member}' declares {info.uncompressed} bytes, but the manifest's "
                    f"frames are {expected}; the download was discarded"
                )
            z.extract(path=folder, targets=[member])
    except (
        py7zr.exceptions.ArchiveError,
        py7zr.exceptions.AbsolutePathError,
        py7zr.exceptions.PasswordRequired,
        lzma.LZMAError,
        EOFError,
        OSError,
    ) as exc:
        raise DataError(
            f"{archive.name}: not a readable 7z archive ({exc}); the download was discarded"
        ) from None
    extracted = folder / member
    if extracted.is_symlink() or not extracted.is_file():
        raise DataError(
            f"{archive.name}: member '{member}' could not be extracted as a regular file; the download was discarded"
        )
    return extracted


def _pick_member(names: list[str], wanted: str, archive: Path) -> str:
    if wanted in names:
        return wanted
    base = PurePosixPath(wanted).name
    matches = [n for n in names if PurePosixPath(n.replace("\\", "/")).name == base]
    if len(matches) != 1:
        raise DataError(
            f"{archive.name}: holds no single member '{wanted}' (members: {', '.join(names[:5]) or 'none'}); "
            f"the download was discarded"
        )
    return matches[0]


def _refuse_unsafe(member: str, archive: Path) -> None:
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (len(member) > 1 and member[1] == ":"):
        raise DataError(f"{archive.name}: member '{member}' would be written outside the cache; refused")


def _check_file(path: Path, entry: ManifestEntry, url: str) -> None:
    """The extracted file must be the manifest's frames exactly, and match its sha256 when recorded."""
    expected = entry.frames * entry.frame_bytes
    size = path.stat().st_size
    if size != expected:
        raise DataError(
            f"{url}: the extracted file has {size} bytes, but {entry.frames} frames of {entry.size} yuv420p are "
            f"{expected}; the download was discarded"
        )
    if entry.sha256 is not None:
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise DataError(
                f"{url}: sha256 of the extracted file is {digest}, the manifest records {entry.sha256}; "
                f"the download was discarded"
            )


def _say(message: str) -> None:
    print(message, file=sys.stderr)
