"""The codec anchors beyond the contract: x264 without its version text, the still-frame floor's choice of
frame, and every way a codec can fail (missing, failing or hanging encoder binary, odd frame size, a
target out of reach, a bad preset, a corrupt VVC or AV1 payload), each a one-line error."""

from __future__ import annotations

import dataclasses
import io
import os
import stat
from pathlib import Path

import av
import numpy as np
import pytest

from bench import bitstream, registry, tools
from bench.budgets import get_budget
from bench.contract import Clip, Context, SeqInfo
from bench.errors import BitstreamError, MethodError
from methods import classical, vvc
from methods.still_frame import representative_frame
from methods.x264 import X264, strip_user_data_sei

CODECS = ["x264", "x265", "vvc", "av1", "still-frame"]
SMOKE = get_budget("smoke")


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def _decode_h264(video: bytes) -> np.ndarray:
    with av.open(io.BytesIO(video), format="h264") as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# ---------------------------------------------------------------- x264's version SEI


def test_x264_stream_has_no_version_text_and_decodes_the_same(smoke_clip: Clip) -> None:
    method = X264()
    config = method.plan(smoke_clip, 0.5, SMOKE)
    pictures = classical.to_yuv420p(smoke_clip.frames)
    raw = classical.PyAVCodec._encode(method, pictures, config)  # libx264's own output, SEI included
    assert b"x264 - core" in raw
    data = method.encode(method.fit(smoke_clip.frames, config, None))
    video = bitstream.unpack(data).section("video")
    assert b"x264 - core" not in data and b"x264" not in video
    assert len(raw) - len(video) > 400  # the text was most of a small stream's bytes
    assert np.array_equal(_decode_h264(video), _decode_h264(raw))
    assert method.stats(None)["encoder"].startswith("libx264 core ")


def test_sei_strip_keeps_every_other_unit() -> None:
    sps_like = b"\x00\x00\x00\x01\x67\x42\x00\x0a"
    recovery_point = b"\x00\x00\x01\x06\x06\x01\x84\x80"  # SEI of payload type 6: not user data
    user_data = b"\x00\x00\x00\x01\x06\x05\x03abc\x80"
    slice_ = b"\x00\x00\x01\x65\x88\x80"
    assert strip_user_data_sei(sps_like + recovery_point + slice_) == sps_like + recovery_point + slice_
    assert strip_user_data_sei(sps_like + user_data + slice_) == sps_like + slice_
    assert strip_user_data_sei(b"no start code") == b"no start code"


def test_x264_reaches_low_rates_on_the_smoke_clip(smoke_clip: Clip) -> None:
    method = X264()
    config = method.plan(smoke_clip, 0.1, SMOKE)  # ~461 bytes: less than the version text alone
    data = method.encode(method.fit(smoke_clip.frames, config, None))
    assert abs(8 * len(data) / smoke_clip.info.pixels / 0.1 - 1) <= 0.10


# ---------------------------------------------------------------- the still-frame floor


def test_representative_frame_minimises_the_repeated_error(smoke_clip: Clip) -> None:
    frames = np.concatenate([smoke_clip.frames, smoke_clip.frames[::-1][:2]])
    errors = [((frames.astype(float) - frames[t].astype(float)) ** 2).sum() for t in range(len(frames))]
    assert representative_frame(frames) == int(np.argmin(errors))


def test_still_frame_repeats_one_decoded_picture(smoke_clip: Clip, smoke_ctx: Context) -> None:
    cls = registry.get("still-frame")
    method = cls()
    data = method.encode(method.fit(smoke_clip.frames, method.plan(smoke_clip, 0.5, SMOKE), smoke_ctx))
    frames = cls().decode(data, smoke_clip.info, smoke_ctx)
    assert all(np.array_equal(frame, frames[0]) for frame in frames)
    t = representative_frame(smoke_clip.frames)
    assert np.abs(frames[0].astype(int) - smoke_clip.frames[t]).mean() < 10


# ---------------------------------------------------------------- bad input: one line each


@pytest.mark.parametrize("name", CODECS)
def test_odd_frame_size_is_one_line(name: str, smoke_clip: Clip) -> None:
    info = dataclasses.replace(smoke_clip.info, width=127)
    with pytest.raises(classical.FrameSizeError) as exc:
        registry.get(name)().plan(Clip(info, smoke_clip.frames[:, :, :127]), 0.5, SMOKE)
    assert "even frame sizes" in _one_line(exc) and "127x72" in str(exc.value)


@pytest.mark.parametrize(
    ("name", "bpp"), [("vvc", 40.0), ("av1", 1e-4), ("still-frame", 40.0), ("x265", 1e-4)]
)
def test_target_out_of_reach_is_one_line(name: str, bpp: float, smoke_clip: Clip) -> None:
    with pytest.raises(classical.CannotReachRate) as exc:
        registry.get(name)().plan(smoke_clip, bpp, SMOKE)
    assert f"cannot reach {bpp} bpp" in _one_line(exc)


@pytest.mark.parametrize(("name", "preset"), [("vvc", "ultrafast"), ("av1", "14"), ("still-frame", None)])
def test_unknown_preset_is_one_line(name: str, preset: str | None, smoke_clip: Clip) -> None:
    cls = registry.get(name)
    config = dataclasses.replace(cls.default_config(), preset=preset or "quick")
    with pytest.raises(MethodError) as exc:
        cls(config).plan(smoke_clip, 0.5, SMOKE)
    assert "choose one of" in _one_line(exc)


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "ffmpeg"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize("name", ["vvc", "still-frame"])
def test_missing_encoder_binary(
    name: str, smoke_clip: Clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = registry.get(name)
    monkeypatch.setenv(tools.ENV_FFMPEG, str(tmp_path / "no-ffmpeg"))
    reason = cls.unavailable_reason()
    assert reason is not None and "libvvenc" in reason and tools.ENV_FFMPEG in reason and "\n" not in reason
    with pytest.raises(classical.EncoderFailed) as exc:
        cls().plan(smoke_clip, 0.5, SMOKE)
    assert "is not an executable file" in _one_line(exc)


def test_binary_without_the_encoder_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lister = _script(tmp_path, 'echo " V....D libx264   H.264"; echo " TS psnr   VV->V  PSNR"')
    monkeypatch.setenv(tools.ENV_FFMPEG, lister)
    reason = registry.discover()["vvc"].cls.unavailable_reason()
    assert reason == f"needs the ffmpeg encoder 'libvvenc', which {lister} lacks (pip install imageio-ffmpeg)"
    assert tools.missing("ffmpeg-filter:psnr") is None and "xpsnr" in str(
        tools.missing("ffmpeg-filter:xpsnr")
    )


def test_failing_encoder_binary(smoke_clip: Clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        tools.ENV_FFMPEG, _script(tmp_path, 'echo "warming up" >&2; echo "Unknown encoder" >&2; exit 1')
    )
    with pytest.raises(classical.EncoderFailed) as exc:
        registry.discover()["vvc"].cls().plan(smoke_clip, 0.5, SMOKE)
    assert _one_line(exc) == "vvc: libvvenc failed (exit 1): Unknown encoder"


def test_hanging_encoder_binary_is_stopped(
    smoke_clip: Clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tools.ENV_FFMPEG, _script(tmp_path, "exec sleep 30"))
    monkeypatch.setattr(vvc, "TIMEOUT_BASE_S", 0.5)
    monkeypatch.setattr(vvc, "TIMEOUT_PER_PIXEL_S", 0.0)
    with pytest.raises(classical.EncoderFailed) as exc:
        registry.discover()["vvc"].cls().plan(smoke_clip, 0.5, SMOKE)
    assert "did not finish within 0.5 s" in _one_line(exc)


def test_encoder_refusing_its_settings(smoke_clip: Clip) -> None:
    config = dataclasses.replace(registry.get("vvc").default_config(), gop=7)
    with pytest.raises(classical.EncoderFailed) as exc:
        registry.get("vvc")(config).plan(smoke_clip, 0.5, SMOKE)
    assert _one_line(exc).startswith("vvc: libvvenc failed (exit ")


# ---------------------------------------------------------------- corrupt payloads behind a valid container


@pytest.mark.parametrize("name", ["vvc", "av1", "still-frame"])
def test_corrupt_video_payload_is_refused(name: str, smoke_clip: Clip, smoke_ctx: Context) -> None:
    cls = registry.get(name)
    method = cls()
    stream = bitstream.unpack(
        method.encode(method.fit(smoke_clip.frames, method.plan(smoke_clip, 0.5, SMOKE), None))
    )
    video = stream.sections["video"]
    rng = np.random.default_rng(0)
    payloads = {
        "random bytes": rng.integers(0, 256, len(video), dtype=np.uint8).tobytes(),
        "first half": video[: len(video) // 2],
        "zeros": bytes(len(video)),
        "first picture only": video[: max(1, len(video) // 8)],
    }
    for label, payload in payloads.items():
        forged = bitstream.pack(
            stream.method, stream.version, {**stream.header, "video_bytes": len(payload)}, {"video": payload}
        )
        try:
            cls().decode(forged, smoke_clip.info, smoke_ctx)
        except BitstreamError as exc:
            assert str(exc) and "\n" not in str(exc), label
            continue
        raise AssertionError(f"{name}: {label} decoded instead of being refused")


def test_vvc_ten_bit_round_trip_is_exact() -> None:
    planes = np.arange(256, dtype=np.uint8).repeat(6).reshape(12, 128)
    frame = av.VideoFrame.from_ndarray((planes.astype(np.uint16) << 2), format="yuv420p10le")
    assert np.array_equal(classical.decoded_planes(frame, "vvc"), planes)


def test_info_of_another_clip_is_refused(smoke_clip: Clip, smoke_ctx: Context) -> None:
    cls = registry.get("av1")
    method = cls()
    data = method.encode(method.fit(smoke_clip.frames, method.plan(smoke_clip, 0.5, SMOKE), None))
    with pytest.raises(BitstreamError, match="decode it against the clip"):
        cls().decode(data, SeqInfo("bunny", 128, 72, 5, 25.0), smoke_ctx)


def test_tools_version_and_listing() -> None:
    assert tools.version() != "unknown"
    assert {"libvvenc", "libx264"} <= tools.encoders() and {"libvmaf", "xpsnr"} <= tools.filters()
    assert os.path.isfile(tools.ffmpeg_exe())
