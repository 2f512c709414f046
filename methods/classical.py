"""The codec base of the classical anchors: the rate search, the stream framing, the checks and the decode.

Every RD plot in the field carries codec anchors. The clip is converted RGB -> yuv420p by ffmpeg's own
scaler (BT.601 limited range, the suite's default), coded as a raw elementary stream, and decoded back
to RGB by the same scaler, so every anchor shares one colour convention. A subclass only says how to
encode yuv420p pictures at one value of its rate parameter (CRF or QP): through PyAV's bundled ffmpeg
(`PyAVCodec`: x264, x265, av1) or another encoder (vvc runs the suite's ffmpeg binary). `plan` searches
that parameter on the clip itself until the *whole stream's* size (container included) lands within the
tolerance of the target.

Streams hold only what the decoder needs: width, height, frame count and the video bytes. The encoder
settings (preset, GOP, rate parameter) live in the record's config, the encoder's version in `stats`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bench import bitstream
from bench.budgets import Budget
from bench.contract import Clip, Context, Method, SeqInfo
from bench.errors import BitstreamError, MethodError

RATE_TOLERANCE = 0.10  # the contract's +-10 % on bpp
SEARCH_STOP = RATE_TOLERANCE / 2  # the search stops once a stream lands this close
SEARCH_STEPS = 12
MAX_FRAMES = 100_000
CODING_FPS = 25  # raw streams carry no timing; a fixed rate keeps rate control independent of the source
MAX_SIDE = 16_384
MAX_SECTION_BYTES = (1 << 32) - 1  # what the container's u32 length can hold


@dataclass(frozen=True)
class CodecConfig:
    crf: float = 28.0  # constant rate factor; `plan` replaces it by the one that hits the target
    preset: str | None = None  # encoder speed preset; None = the budget's codec_preset
    gop: int = 0  # keyframe interval; 0 = the encoder's default


@dataclass
class CodecState:
    frames: np.ndarray
    config: Any


class CannotReachRate(MethodError):
    """The target rate lies outside what the method can produce on this clip."""


class FrameSizeError(MethodError):
    """The clip's frame size cannot be coded (4:2:0 needs even sizes)."""


class EncoderFailed(MethodError):
    """The encoder is missing, crashed, timed out or refused its settings."""


# --- colour: the one conversion every anchor shares ------------------------------------------------------------


def to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (T, H, W, 3) -> planar yuv420p (T, H * 3 // 2, W) by ffmpeg's scaler (BT.601, limited)."""
    import av

    return np.stack(
        [
            av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p").to_ndarray()
            for f in frames
        ]
    )


def planes_to_rgb(planes: np.ndarray) -> np.ndarray:
    """One planar yuv420p picture (H * 3 // 2, W) -> uint8 RGB (H, W, 3) by the same scaler and matrix."""
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format="yuv420p").to_ndarray(
        format="rgb24"
    )


def decoded_planes(frame: Any, name: str) -> np.ndarray:
    """A decoded PyAV frame as 8-bit planar yuv420p, whatever the decoder tagged it with.

    10-bit output (VVenC codes 8-bit input at 10 bits internally, as its experts run it) is brought back
    to 8 bits by rounding, the exact inverse of the 2-bit shift that took the source up.
    """
    fmt = frame.format.name
    if fmt == "yuv420p":
        return frame.to_ndarray()
    if fmt == "yuv420p10le":
        wide = frame.to_ndarray().astype(np.int32)
        return np.clip((wide + 2) >> 2, 0, 255).astype(np.uint8)
    raise BitstreamError(f"{name} video section decodes to pixel format {fmt}, not yuv420p; re-encode it")


# --- the rate search -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateSpace:
    """An encoder's rate parameter: its range, its granularity, where to start and how fast size falls."""

    low: float
    high: float
    start: float
    slope: float  # expected fall of ln(stream bytes) per unit of the parameter (about ln 2 / 6 for CRF / QP)
    step: float = 0.01  # granularity: 1 for integer parameters

    def snap(self, value: float) -> float:
        snapped = round(round(value / self.step) * self.step, 6)
        snapped = min(max(snapped, self.low), self.high)
        return int(snapped) if self.step == 1 else snapped


def find_rate(size_at: Callable[[float], int], target_bytes: float, space: RateSpace) -> tuple[float, float]:
    """The parameter value whose stream lands nearest `target_bytes`, and its relative error.

    A bracketed secant search on ln(size), which is close to linear in CRF and QP: each step interpolates
    between the nearest values known to give too many and too few bytes (or extrapolates with the
    expected slope until both are known), and never leaves the bracket, so it ends even where the size is
    not monotone. It stops within `SEARCH_STOP` of the target (usually 2 to 4 encodes), when the bracket
    closes, or after `SEARCH_STEPS` encodes.
    """
    sizes: dict[float, int] = {}
    low, high = space.low, space.high  # where the next value may lie
    too_big: tuple[float, float] | None = None  # (value, ln error) nearest above the target, and below it
    too_small: tuple[float, float] | None = None
    value = space.snap(space.start)
    for _ in range(SEARCH_STEPS):
        sizes[value] = size_at(value)
        error = math.log(max(sizes[value], 1) / target_bytes)
        if abs(math.expm1(error)) <= SEARCH_STOP:
            break
        if error > 0:  # too many bytes: a coarser value
            too_big, low = (value, error), value + space.step
        else:
            too_small, high = (value, error), value - space.step
        if low > high + 1e-9:
            break
        if too_big and too_small:
            (v0, e0), (v1, e1) = too_big, too_small
            guess = v0 + e0 * (v1 - v0) / (e0 - e1)
        else:
            guess = value + error / space.slope
        value = space.snap(min(max(guess, low), high))
        if value in sizes:
            value = space.snap((low + high) / 2)
            if value in sizes:
                break
    best = min(sizes, key=lambda v: abs(sizes[v] / target_bytes - 1))
    return best, sizes[best] / target_bytes - 1


# --- the base of every codec anchor --------------------------------------------------------------------------


class ClassicalCodec(Method):
    """Base of the codec anchors. A subclass sets `raw_format`, its rate parameter and `_encode`."""

    raw_format: ClassVar[str]  # the elementary-stream format PyAV demuxes for the decode
    rate_field: ClassVar[str] = "crf"  # the Config field `plan` searches
    rate_space: ClassVar[RateSpace] = RateSpace(low=0.0, high=51.0, start=28.0, slope=math.log(2) / 6)
    presets: ClassVar[
        dict[str, str]
    ] = {}  # budget preset name (x264's names) -> this encoder's; {} = the same
    preset_names: ClassVar[tuple[str, ...]] = ()  # the encoder's valid presets; () = the encoder checks
    Config = CodecConfig
    rate_ladder: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2)

    def __init__(self, config: Any | None = None) -> None:
        super().__init__(config)
        self._streams: dict[tuple[Any, str], bytes] = {}  # the videos `plan` measured, by config and clip
        self._encoder_version = ""

    # -- the contract ---------------------------------------------------------------------------------
    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> Any:
        """Search the rate parameter until the coded clip lands within 10 % of the target."""
        check_frame_size(self.name, clip.info.width, clip.info.height)
        preset = self.base_config.preset or self.presets.get(budget.codec_preset, budget.codec_preset)
        base = dataclasses.replace(self.base_config, preset=preset)
        pictures = to_yuv420p(self._pictures(clip.frames))
        digest = _digest(clip.frames)
        target_bytes = target_bpp * clip.info.pixels / 8
        self._streams = {}

        def size_at(value: float) -> int:
            config = dataclasses.replace(base, **{self.rate_field: value})
            video = self._encode(pictures, config)
            self._streams[(config, digest)] = video
            return len(self._pack(video, clip.frames.shape))

        value, error = find_rate(size_at, target_bytes, self.rate_space)
        if abs(error) > RATE_TOLERANCE:
            raise CannotReachRate(
                f"{self.name} cannot reach {target_bpp} bpp on this clip (closest: {100 * error:+.0f} % at "
                f"{self.rate_field} {value}); choose a target inside its range"
            )
        return dataclasses.replace(base, **{self.rate_field: value})

    def fit(self, frames: np.ndarray, config: Any, ctx: Context) -> CodecState:
        """Nothing to learn: a codec's work happens in `encode`."""
        return CodecState(frames=frames, config=config)

    def encode(self, state: CodecState) -> bytes:
        video = self._streams.get((state.config, _digest(state.frames)))
        if video is None:
            check_frame_size(self.name, state.frames.shape[2], state.frames.shape[1])
            video = self._encode(to_yuv420p(self._pictures(state.frames)), state.config)
        return self._pack(video, state.frames.shape)

    def stats(self, state: CodecState) -> dict[str, Any]:
        """The encoder that wrote the stream (name and version), for the record's provenance."""
        return {"encoder": self._encoder_version or self.encoder_version()}

    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        """Frames of the video section, after the header has been checked against the section and the clip."""
        import av

        stream = bitstream.unpack(data, expect_method=self.name, expect_version=self.version)
        stream.expect_sections("video")
        width = stream.header_int("width", 1, MAX_SIDE)
        height = stream.header_int("height", 1, MAX_SIDE)
        count = stream.header_int("frames", 1, MAX_FRAMES)
        video = stream.section("video")
        declared = stream.header_int("video_bytes", 0, MAX_SECTION_BYTES)
        if declared != len(video):
            raise BitstreamError(
                f"{self.name} video section holds {len(video)} bytes but the header says {declared}: it was "
                f"truncated, padded or swapped; re-encode it"
            )
        if (width, height, count) != (info.width, info.height, info.num_frames):
            raise BitstreamError(
                f"{self.name} stream codes {count} frames of {width}x{height}, but the clip has "
                f"{info.num_frames} of {info.width}x{info.height}; decode it against the clip it was encoded from"
            )
        pictures = self.coded_pictures(count)
        frames = []
        try:
            with av.open(io.BytesIO(video), format=self.raw_format) as container:
                for frame in container.decode(video=0):
                    if len(frames) == pictures:
                        raise BitstreamError(
                            f"{self.name} video section holds more than the {pictures} picture(s) of its header"
                        )
                    if (frame.width, frame.height) != (width, height):
                        raise BitstreamError(
                            f"{self.name} video section holds a {frame.width}x{frame.height} picture, the header "
                            f"says {width}x{height}; re-encode it"
                        )
                    frames.append(planes_to_rgb(decoded_planes(frame, self.name)))
        except av.FFmpegError as exc:
            raise BitstreamError(f"{self.name} video section does not decode: {exc}") from None
        if len(frames) != pictures:
            raise BitstreamError(
                f"{self.name} stream decoded to {len(frames)} picture(s), header says {pictures}"
            )
        return self._present(np.stack(frames), count)

    # -- what a subclass may change ---------------------------------------------------------------------
    def _pictures(self, frames: np.ndarray) -> np.ndarray:
        """The RGB pictures the stream codes: every frame (the still-frame floor codes one)."""
        return frames

    def coded_pictures(self, frames: int) -> int:
        """How many pictures a stream of `frames` frames holds."""
        return frames

    def _present(self, pictures: np.ndarray, frames: int) -> np.ndarray:
        """The clip's frames from the decoded pictures."""
        return pictures

    @abstractmethod
    def _encode(self, pictures: np.ndarray, config: Any) -> bytes:
        """The elementary stream of planar yuv420p `pictures` (T, H * 3 // 2, W) coded with `config`."""

    @abstractmethod
    def encoder_version(self) -> str:
        """Name and version of the encoder, for provenance."""

    def preset_for(self, config: Any) -> str:
        """The encoder's preset named by `config`, or a one-line error listing the valid ones."""
        names = self.preset_names
        if config.preset is None or (names and config.preset not in names):
            choices = f": choose one of {', '.join(names)}" if names else ""
            raise EncoderFailed(f"{self.name} has no preset {config.preset!r}{choices}")
        return str(config.preset)

    # -- framing --------------------------------------------------------------------------------------
    def _pack(self, video: bytes, shape: tuple[int, ...]) -> bytes:
        header = {
            "width": int(shape[2]),
            "height": int(shape[1]),
            "frames": int(shape[0]),
            "video_bytes": len(video),
        }
        return bitstream.pack(self.name, self.version, header, {"video": video})


def check_frame_size(name: str, width: int, height: int) -> None:
    if width % 2 or height % 2:
        raise FrameSizeError(
            f"{name} needs even frame sizes for yuv420p, got {width}x{height}; crop or resize the clip to even sizes"
        )


def _digest(frames: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(frames).data, digest_size=16).hexdigest()


class PyAVCodec(ClassicalCodec):
    """An anchor whose encoder is in PyAV's bundled ffmpeg; a subclass names it and its options."""

    encoder: ClassVar[str]
    extra_options: ClassVar[dict[str, str]] = {}

    def _options(self, config: Any) -> dict[str, str]:
        options = {"crf": f"{config.crf:g}", "preset": self.preset_for(config), **self.extra_options}
        if config.gop:
            options["g"] = str(config.gop)
        return options

    def _encode(self, pictures: np.ndarray, config: Any) -> bytes:
        import av

        options = self._options(config)
        buffer = io.BytesIO()
        try:
            with av.open(buffer, mode="w", format=self.raw_format) as container:
                stream = container.add_stream(self.encoder, rate=CODING_FPS)
                stream.width, stream.height, stream.pix_fmt = (
                    pictures.shape[2],
                    pictures.shape[1] * 2 // 3,
                    "yuv420p",
                )
                stream.options = options
                for planes in pictures:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
                container.mux(stream.encode(None))
        except av.FFmpegError as exc:
            raise EncoderFailed(
                f"{self.name}: {self.encoder} refused to code the clip ({exc}); check its options"
            ) from None
        return buffer.getvalue()
