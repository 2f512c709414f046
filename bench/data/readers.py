"""Frame readers: raw yuv420p files, videos (through PyAV), image folders and single images.

Each reader knows its frame size and count without decoding pixels, and reads any range of frames as
uint8 RGB (T, H, W, 3), touching only what that range needs: a raw file is memory-mapped, a video is
decoded from its start up to the last frame asked for and no further, images are opened one by one.
Every failure a user can cause (a wrong size, a truncated file, a file that is no video) becomes a
one-line `DataError`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from bench.data.colour import DEFAULT_COLOUR, check_colour, frame_to_rgb, yuv420p_to_rgb
from bench.errors import DataError

YUV_SUFFIXES = (".yuv",)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".y4m", ".264", ".h264", ".265", ".hevc")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")  # 8 bits a channel


class FrameReader(ABC):
    """A source of frames of one size. `fps` is None when the source does not say."""

    path: Path
    width: int
    height: int
    num_frames: int
    fps: float | None = None

    @abstractmethod
    def read(self, frames: range) -> np.ndarray:
        """The frames whose indices are in `frames` (already checked to lie within the source)."""


class YuvReader(FrameReader):
    """Raw 8-bit yuv420p, frames back to back; read through a memory map."""

    def __init__(self, path: Path, width: int, height: int, colour: str = DEFAULT_COLOUR) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise DataError(f"{path}: yuv420p needs a positive, even width and height, got {width}x{height}")
        self.path, self.width, self.height, self.colour = path, width, height, check_colour(colour)
        self.frame_bytes = width * height * 3 // 2
        size = path.stat().st_size
        if size == 0 or size % self.frame_bytes:
            raise DataError(
                f"{path}: {size} bytes is not a whole number of {width}x{height} yuv420p frames "
                f"({self.frame_bytes} bytes each); check --size or whether the file is complete"
            )
        self.num_frames = size // self.frame_bytes

    def read(self, frames: range) -> np.ndarray:
        shape = (self.num_frames, self.height * 3 // 2, self.width)
        data = np.memmap(self.path, dtype=np.uint8, mode="r", shape=shape)
        # slicing a memory map touches only the pages of these frames
        return yuv420p_to_rgb(data[frames.start : frames.stop : frames.step], self.colour)


class VideoReader(FrameReader):
    """A video file decoded with PyAV (ffmpeg); frames are converted with the chosen colour matrix."""

    def __init__(self, path: Path, colour: str = DEFAULT_COLOUR) -> None:
        import av

        self.path, self.colour = path, check_colour(colour)
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise DataError(
                        f"{path}: holds no video stream; give a video, image, image folder or .yuv file"
                    )
                stream = container.streams.video[0]
                self.width, self.height = stream.codec_context.width, stream.codec_context.height
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else None
                # the container's frame count when it records one, else one packet per frame (no decoding)
                self.num_frames = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        except av.FFmpegError as exc:
            raise DataError(
                f"{path}: cannot be read as a video ({_reason(exc)}); the file is truncated or corrupt"
            ) from None
        if self.num_frames == 0 or self.width == 0 or self.height == 0:
            raise DataError(f"{path}: the video stream holds no frames; the file is truncated or corrupt")

    def read(self, frames: range) -> np.ndarray:
        import av

        slots = {index: slot for slot, index in enumerate(frames)}
        out = np.empty((len(frames), self.height, self.width, 3), np.uint8)
        index = -1
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for index, frame in enumerate(container.decode(stream)):
                    if index in slots:
                        rgb = frame_to_rgb(frame, self.colour)
                        if rgb.shape != out.shape[1:]:
                            raise DataError(
                                f"{self.path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the video starts at "
                                f"{self.width}x{self.height}; resolution changes are not supported"
                            )
                        out[slots[index]] = rgb
                    if index + 1 >= frames.stop:
                        break
        except av.FFmpegError as exc:
            raise DataError(
                f"{self.path}: decoding failed after {index + 1} frames ({_reason(exc)}); the file is truncated or corrupt"
            ) from None
        if index + 1 < frames.stop:
            raise DataError(
                f"{self.path}: the video ended after {index + 1} frames but declares {self.num_frames}; "
                f"the file is truncated or corrupt"
            )
        return out


class ImageReader(FrameReader):
    """Still images as frames: a sorted folder of PNG/JPEG files, or one image as a 1-frame sequence."""

    def __init__(self, path: Path, files: list[Path]) -> None:
        from PIL import Image

        self.path, self.files = path, files
        sizes = []
        for file in files:
            try:
                with Image.open(file) as image:  # reads the header only
                    sizes.append(image.size)
                    mode = image.mode
            except (OSError, SyntaxError) as exc:
                raise DataError(f"{file}: cannot be read as an image ({exc})") from None
            if mode not in _IMAGE_MODES or _png_bit_depth(file) not in (None, 1, 2, 4, 8):
                raise DataError(
                    f"{file}: image is not 8 bits a channel (mode '{mode}', {_png_bit_depth(file) or '?'}-bit); "
                    "this suite codes 8-bit RGB video: convert it to 8-bit RGB"
                )
            if sizes[-1] != sizes[0]:
                raise DataError(
                    f"{path}: images differ in size: {files[0].name} is {sizes[0][0]}x{sizes[0][1]} but "
                    f"{file.name} is {sizes[-1][0]}x{sizes[-1][1]}; all frames must share one size"
                )
        self.width, self.height = sizes[0]
        self.num_frames = len(files)

    def read(self, frames: range) -> np.ndarray:
        from PIL import Image

        out = np.empty((len(frames), self.height, self.width, 3), np.uint8)
        for slot, i in enumerate(frames):
            try:
                with Image.open(self.files[i]) as image:
                    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
                        if (alpha < 255).any():
                            raise DataError(
                                f"{self.files[i]}: has transparent pixels, which RGB video cannot hold; "
                                "flatten it onto a background first"
                            )
                    out[slot] = np.asarray(image.convert("RGB"))
            except OSError as exc:
                raise DataError(f"{self.files[i]}: cannot be decoded as an image ({exc})") from None
        return out


def open_reader(path: Path, size: tuple[int, int] | None = None, colour: str = DEFAULT_COLOUR) -> FrameReader:
    """The reader for a file or folder, chosen by what it is; `size` (width, height) is for raw .yuv only."""
    if path.is_dir():
        files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
            key=_natural_key,
        )
        if not files:
            raise DataError(f"{path}: folder holds no {'/'.join(IMAGE_SUFFIXES)} images")
        return ImageReader(path, files)
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in YUV_SUFFIXES:
        if size is None:
            raise DataError(
                f"{path}: a raw .yuv file has no header; give its frame size, e.g. --size 1920x1080"
            )
        return YuvReader(path, size[0], size[1], colour)
    if suffix in VIDEO_SUFFIXES:
        return VideoReader(path, colour)
    if suffix in IMAGE_SUFFIXES:
        return ImageReader(path, [path])
    raise DataError(
        f"{path}: not a video, image or raw .yuv file (suffix '{suffix}'); accepted: a folder of images, "
        f"{', '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES + YUV_SUFFIXES)}"
    )


def _png_bit_depth(path: Path) -> int | None:
    """Bits a channel of a PNG file, from its header (Pillow reads 16-bit RGB as 8-bit RGB, silently)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def _natural_key(path: Path) -> list[int | str]:
    """Sort frame_2.png before frame_10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


def _reason(exc: Exception) -> str:
    """The first line of an ffmpeg error, without the errno prefix."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).splitlines()[0] if text else type(exc).__name__
