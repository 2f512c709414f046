"""Dataset manifests: one YAML file per dataset describing each sequence, checked key by key on load.

Everything the suite knows about a named sequence (size, frame count, rate, pixel format, colour
convention, where the bytes come from and their checksum) is written in `data_manifests/*.yaml`;
nothing is guessed from a file name. A file looks like::

    dataset: uvg
    licence: CC BY-NC 3.0
    sequences:
      - name: Jockey
        width: 1920
        height: 1080
        fps: 120
        frames: 600
        pix_fmt: yuv420p
        colour: bt601
        sha256: null            # of the sequence's file; null = not recorded yet
        source:
          url: https://...7z    # an archive to download, or `package` + `resource` (installed data)
          member: Jockey_1920x1080_120fps_420_8bit_YUV.yuv

The manifests folder is the `data_manifests` package (installed beside `bench`), or the folders listed in the
environment variable `BENCH_MANIFESTS` (separated like PATH).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from bench.data.colour import COLOURS
from bench.errors import DataError

PIX_FMTS = ("yuv420p",)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # never mistaken for a path
_FILE_KEYS = {
    "dataset": (str, True),
    "licence": (str, True),
    "sequences": (list, True),
    "description": (str, False),
    "homepage": (str, False),
}
_ENTRY_KEYS = {
    "name": (str, True),
    "width": (int, True),
    "height": (int, True),
    "fps": ((int, float, str), True),
    "frames": (int, True),
    "pix_fmt": (str, True),
    "colour": (str, True),
    "sha256": ((str, type(None)), True),
    "source": (dict, True),
    "aliases": (list, False),
    "licence": (str, False),
    "note": (str, False),
}
_URL_KEYS = {
    "url": (str, True),
    "member": (str, True),
    "archive_bytes_hint": ((int, type(None)), False),
    "archive_sha256": ((str, type(None)), False),
}
_PACKAGE_KEYS = {"package": (str, True), "resource": (str, True)}
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
}


@dataclass(frozen=True)
class UrlSource:
    """An archive on the web holding the sequence's file as `member`."""

    url: str
    member: str
    archive_bytes_hint: int | None = None  # published size of the archive; informative, not enforced
    archive_sha256: str | None = None


@dataclass(frozen=True)
class PackageSource:
    """A file installed with a Python package (read in place, never downloaded)."""

    package: str
    resource: str


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    dataset: str
    width: int
    height: int
    fps: float
    frames: int
    pix_fmt: str
    colour: str
    sha256: str | None
    licence: str
    source: UrlSource | PackageSource
    manifest: Path
    aliases: tuple[str, ...] = ()
    note: str = ""

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def frame_bytes(self) -> int:
        """Bytes of one raw yuv420p frame."""
        return self.width * self.height * 3 // 2


def manifest_dirs() -> list[Path]:
    """The folders whose *.yaml files are the manifests."""
    env = os.environ.get("BENCH_MANIFESTS", "").strip()
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    import data_manifests

    return [Path(data_manifests.__file__).resolve().parent]


def load_manifests() -> dict[str, ManifestEntry]:
    """Every manifest entry by name, in file order; any malformed file stops with a one-line error."""
    entries: dict[str, ManifestEntry] = {}
    seen: dict[str, ManifestEntry] = {}  # lower-cased names and aliases
    for folder in manifest_dirs():
        if not folder.is_dir():
            raise DataError(
                f"manifest folder {folder} does not exist: fix BENCH_MANIFESTS or restore data_manifests/"
            )
        for path in sorted(folder.glob("*.yaml")):
            for entry in load_manifest(path):
                for label in (entry.name, *entry.aliases):
                    other = seen.get(label.lower())
                    if other is not None:
                        raise DataError(
                            f"{path}: sequence name '{label}' is already used in {other.manifest}; names must be unique"
                        )
                    seen[label.lower()] = entry
                entries[entry.name] = entry
    return entries


def find_entry(name: str, entries: dict[str, ManifestEntry] | None = None) -> ManifestEntry | None:
    """The entry called `name` or one of its aliases, ignoring case; None when there is none."""
    entries = load_manifests() if entries is None else entries
    wanted = name.lower()
    for entry in entries.values():
        if wanted in (label.lower() for label in (entry.name, *entry.aliases)):
            return entry
    return None


def expand_datasets(names: Iterable[str]) -> list[str]:
    """Names as given, except a dataset's name (e.g. 'uvg'), which stands for all of its sequences in
    manifest order; a sequence of that name would win. `bench run --seq` and `bench fetch` share this."""
    entries: dict[str, ManifestEntry] | None = None
    out: list[str] = []
    for name in (n for n in names if n):
        if _NAME.fullmatch(name):
            entries = load_manifests() if entries is None else entries
            members = [e.name for e in entries.values() if e.dataset.lower() == name.lower()]
            if members and find_entry(name, entries) is None:
                out += members
                continue
        out.append(name)
    return out


def get_entry(name: str) -> ManifestEntry:
    """Like `find_entry`, but an unknown name is a DataError with the closest known name."""
    entries = load_manifests()
    entry = find_entry(name, entries)
    if entry is None:
        labels = {label.lower(): label for e in entries.values() for label in (e.name, *e.aliases)}
        close = difflib.get_close_matches(name.lower(), list(labels), n=1, cutoff=0.6)
        hint = f"did you mean '{labels[close[0]]}'? " if close else ""
        raise DataError(
            f"unknown sequence '{name}': {hint}`bench ls sequences` lists them (or give a file path)"
        )
    return entry


def load_manifest(path: Path) -> list[ManifestEntry]:
    """The entries of one manifest file, each field checked."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: a manifest must be a mapping with keys {', '.join(_FILE_KEYS)}")
    _check_keys(doc, _FILE_KEYS, f"{path}")
    return [_entry(item, doc, path, i) for i, item in enumerate(doc["sequences"])]


def _entry(item: Any, doc: dict[str, Any], path: Path, index: int) -> ManifestEntry:
    label = f"sequence #{index + 1}"
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        label = f"sequence '{item['name']}'"
    where = f"{path}: {label}"
    if not isinstance(item, dict):
        raise DataError(f"{where}: must be a mapping of keys ({', '.join(_ENTRY_KEYS)})")
    _check_keys(item, _ENTRY_KEYS, where)
    if not _NAME.fullmatch(item["name"]):
        raise DataError(f"{where}: key 'name' must be letters, digits, '-' and '_' (no dots or slashes)")
    for key in ("width", "height", "frames"):
        if item[key] <= 0:
            raise DataError(f"{where}: key '{key}' must be positive, got {item[key]}")
    if item["pix_fmt"] not in PIX_FMTS:
        raise DataError(
            f"{where}: key 'pix_fmt' must be one of {', '.join(PIX_FMTS)}, got '{item['pix_fmt']}'"
        )
    if item["width"] % 2 or item["height"] % 2:
        raise DataError(
            f"{where}: keys 'width' and 'height' must be even for yuv420p, got {item['width']}x{item['height']}"
        )
    if item["colour"] not in COLOURS:
        raise DataError(f"{where}: key 'colour' must be one of {', '.join(COLOURS)}, got '{item['colour']}'")
    if not all(isinstance(a, str) and _NAME.fullmatch(a) for a in item.get("aliases", [])):
        raise DataError(f"{where}: key 'aliases' must be a list of names (letters, digits, '-' and '_')")
    return ManifestEntry(
        name=item["name"],
        dataset=doc["dataset"],
        width=item["width"],
        height=item["height"],
        fps=_fps(item["fps"], where),
        frames=item["frames"],
        pix_fmt=item["pix_fmt"],
        colour=item["colour"],
        sha256=_sha256(item["sha256"], f"{where}: key 'sha256'"),
        licence=item.get("licence", doc["licence"]),
        source=_source(item["source"], f"{where}: source"),
        manifest=path,
        aliases=tuple(item.get("aliases", ())),
        note=item.get("note", ""),
    )


def _source(raw: dict[str, Any], where: str) -> UrlSource | PackageSource:
    if "url" in raw:
        _check_keys(raw, _URL_KEYS, where)
        if not raw["url"].startswith(("http://", "https://", "file:")):
            raise DataError(f"{where}: key 'url' must be an http(s) or file URL, got '{raw['url']}'")
        _check_relative(raw["member"], f"{where}: key 'member'")
        hint = raw.get("archive_bytes_hint")
        if hint is not None and hint <= 0:
            raise DataError(f"{where}: key 'archive_bytes_hint' must be positive or null, got {hint}")
        digest = _sha256(raw.get("archive_sha256"), f"{where}: key 'archive_sha256'")
        return UrlSource(raw["url"], raw["member"], hint, digest)
    if "package" in raw:
        _check_keys(raw, _PACKAGE_KEYS, where)
        _check_relative(raw["resource"], f"{where}: key 'resource'")
        return PackageSource(raw["package"], raw["resource"])
    raise DataError(f"{where}: needs key 'url' (with 'member') or key 'package' (with 'resource')")


def _check_keys(raw: dict[str, Any], spec: dict[str, tuple[Any, bool]], where: str) -> None:
    """Required keys present, no unknown keys, each value of its type (a bool is not an integer)."""
    for key in raw:
        if key not in spec:
            close = difflib.get_close_matches(str(key), spec, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(spec)})"
            raise DataError(f"{where}: unknown key '{key}'{hint}")
    for key, (types, required) in spec.items():
        if key not in raw:
            if required:
                raise DataError(f"{where}: missing required key '{key}'")
            continue
        kinds = types if isinstance(types, tuple) else (types,)
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = " or ".join(_TYPE_NAMES[k] for k in kinds)
            raise DataError(f"{where}: key '{key}' must be {wanted}, got {value!r}")


def _check_relative(name: str, where: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/"))
    if not name or parts.is_absolute() or ".." in parts.parts or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"{where} must be a relative path without '..', got '{name}'")


def _fps(value: int | float | str, where: str) -> float:
    try:
        fps = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        fps = 0.0
    if not fps > 0:
        raise DataError(
            f"{where}: key 'fps' must be a positive number or a fraction like '30000/1001', got {value!r}"
        )
    return fps


def _sha256(value: str | None, where: str) -> str | None:
    if value is not None and not _SHA256.fullmatch(value):
        raise DataError(f"{where} must be 64 lower-case hex digits or null, got '{value}'")
    return value
