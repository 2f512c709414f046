"""`bench fetch NAME`: download a sequence's archive, check it, extract its one file into the data cache.

Everything happens in a private temporary folder inside the cache; the sequence's file appears at its
final path only by an atomic rename after every check has passed (byte count against Content-Length,
sha256 against the manifest when it records one, frame size against the manifest), so an interrupted
or failed fetch never leaves a partial file where the suite would read it.
"""

from __future__ import annotations

import http.client
import lzma
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from bench.data.manifests import ManifestEntry, PackageSource, UrlSource, get_entry
from bench.data.sequences import file_sha256, local_path
from bench.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60.0


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
    with tempfile.TemporaryDirectory(prefix=f".fetch-{entry.name}-", dir=target.parent) as tmp:
        archive = Path(tmp) / PurePosixPath(address.split("?")[0]).name
        _download(address, archive, entry.name, f"extract {source.member} to {target}")
        if source.archive_sha256 and file_sha256(archive) != source.archive_sha256:
            raise DataError(
                f"{address}: archive sha256 {file_sha256(archive)} differs from the manifest's {source.archive_sha256}; "
                f"the download was discarded"
            )
        extracted = _extract(archive, source, Path(tmp) / "out")
        _check_file(extracted, entry, address)
        extracted.replace(target)  # same folder tree: atomic
    if entry.sha256 is None:  # no published checksum: show this one so it can be recorded in the manifest
        _say(f"{entry.name}: sha256 {file_sha256(target)} (not recorded in {entry.manifest.name} yet)")
    return target


def _download(url: str, dest: Path, name: str, then: str) -> None:
    """Stream `url` into `dest` with a progress bar; the byte count must match Content-Length."""
    from tqdm import tqdm

    by_hand = f"download it by hand and {then} (or pass the archive: bench fetch {name} --url file:///path/to/archive.7z)"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, dest.open("wb") as out:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
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
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; {by_hand}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"cannot download {url}: {reason}; {by_hand}") from None
    if expected is not None and received != expected:
        raise DataError(
            f"download of {url} stopped after {received} of {expected} bytes; run `bench fetch {name}` again"
        )


def _extract(archive: Path, source: UrlSource, folder: Path) -> Path:
    """Extract only the manifest's member (matched by path, else by unique file name) into `folder`."""
    import py7zr

    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            names = [info.filename for info in z.list() if not info.is_directory]
            member = _pick_member(names, source.member, archive)
            _refuse_unsafe(member, archive)
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
    if not extracted.is_file():
        raise DataError(
            f"{archive.name}: member '{member}' could not be extracted; the download was discarded"
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
