"""Shared machinery of the classical codec anchors (H.264 via libx264, HEVC via libx265).

Every RD plot in the field carries them. The clip is converted RGB -> yuv420p by ffmpeg's own scaler
(BT.601 limited range, the suite's default), coded as a raw elementary stream, and decoded back to RGB by
ffmpeg with the same convention. `plan` bisects the constant rate factor on the clip itself until the
*actual* stream size lands within the tolerance of the target.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bench import bitstream
from bench.budgets import Budget
from bench.contract import Clip, Context, Method, SeqInfo
from bench.errors import BitstreamError, MethodError

RATE_TOLERANCE = 0.10  # the contract's +-10 % on bpp
CRF_RANGE = (0.0, 51.0)
MAX_FRAMES = 100_000
CODING_FPS = 25  # raw streams carry no timing; a fixed rate keeps rate control independent of the source
MAX_SIDE = 16_384
MAX_SECTION_BYTES = (1 << 32) - 1  # what the container's u32 length can hold


@dataclass(frozen=True)
class CodecConfig:
    crf: float = 28.0  # constant rate factor; `plan` replaces it by the one that hits the target
    preset: str = "medium"  # encoder speed preset; the budget picks it
    gop: int = 0  # keyframe interval; 0 = the encoder's default


@dataclass
class CodecState:
    frames: np.ndarray
    config: CodecConfig


class CannotReachRate(MethodError):
    """The target rate lies outside what the method can produce on this clip."""


def _yuv_frames(frames: np.ndarray) -> list[Any]:
    import av

    return [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p") for f in frames]


class ClassicalCodec(Method):
    """Base of the codec anchors; a subclass names the encoder, the raw format and the extra options."""

    encoder: ClassVar[str]
    raw_format: ClassVar[str]
    extra_options: ClassVar[dict[str, str]] = {}
    Config = CodecConfig
    rate_ladder: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2)
    requires = ("av",)

    # -- the contract ---------------------------------------------------------------------------------
    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> CodecConfig:
        """Bisect the CRF (coarser CRF = fewer bits) until the coded clip lands within 10 % of the target."""
        if clip.info.width % 2 or clip.info.height % 2:
            raise MethodError(
                f"{self.name} needs even frame sizes for yuv420p, got {clip.info.width}x{clip.info.height}"
            )
        yuv = _yuv_frames(clip.frames)
        target_bytes = target_bpp * clip.info.pixels / 8

        def size_at(crf: float) -> int:
            cfg = CodecConfig(crf=crf, preset=budget.codec_preset)
            return len(self._encode_yuv(yuv, cfg))

        lo, hi = CRF_RANGE  # size falls as crf rises
        best = None
        for _ in range(14):
            mid = round((lo + hi) / 2, 2)
            size = size_at(mid)
            error = size / target_bytes - 1
            if best is None or abs(error) < abs(best[1]):
                best = (mid, error)
            if abs(error) <= RATE_TOLERANCE / 2:
                break
            lo, hi = (mid, hi) if size > target_bytes else (lo, mid)
        assert best is not None
        if abs(best[1]) > RATE_TOLERANCE:
            raise CannotReachRate(
                f"{self.name} cannot reach {target_bpp} bpp on this clip (closest: {100 * best[1]:+.0f} % at CRF {best[0]}); "
                "choose a target inside its range"
            )
        return CodecConfig(crf=best[0], preset=budget.codec_preset)

    def fit(self, frames: np.ndarray, config: CodecConfig, ctx: Context) -> CodecState:
        """Nothing to learn: a codec's work happens in `encode`."""
        return CodecState(frames=frames, config=config)

    def encode(self, state: CodecState) -> bytes:
        frames = state.frames
        video = self._encode_yuv(_yuv_frames(frames), state.config)
        header = {
            "codec": self.encoder,
            "crf": state.config.crf,
            "preset": state.config.preset,
            "width": int(frames.shape[2]),
            "height": int(frames.shape[1]),
            "frames": int(frames.shape[0]),
            "video_bytes": len(video),
        }
        return bitstream.pack(self.name, self.version, header, {"video": video})

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
        frames = []
        try:
            with av.open(io.BytesIO(video), format=self.raw_format) as container:
                for frame in container.decode(video=0):
                    if len(frames) == count:
                        raise BitstreamError(
                            f"{self.name} video section holds more than the {count} frames of its header"
                        )
                    rgb = frame.to_ndarray(format="rgb24")
                    if rgb.shape != (height, width, 3):
                        raise BitstreamError(
                            f"{self.name} video section holds a {rgb.shape[1]}x{rgb.shape[0]} frame, the header says "
                            f"{width}x{height}; re-encode it"
                        )
                    frames.append(rgb)
        except av.FFmpegError as exc:
            raise BitstreamError(f"{self.name} video section does not decode: {exc}") from None
        if len(frames) != count:
            raise BitstreamError(f"{self.name} stream decoded to {len(frames)} frames, header says {count}")
        return np.stack(frames)

    # -- the encoder ------------------------------------------------------------------------------------
    def _encode_yuv(self, yuv: list[Any], config: CodecConfig) -> bytes:
        import av

        buffer = io.BytesIO()
        with av.open(buffer, mode="w", format=self.raw_format) as container:
            stream = container.add_stream(self.encoder, rate=CODING_FPS)
            stream.width, stream.height, stream.pix_fmt = yuv[0].width, yuv[0].height, "yuv420p"
            options = {"crf": f"{config.crf:g}", "preset": config.preset, **self.extra_options}
            if config.gop:
                options["g"] = str(config.gop)
            stream.options = options
            for frame in yuv:
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        return buffer.getvalue()
