"""nerv-dense: sizing for a rate, the coded stream, and a decode identical to the quantized model in training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench import bitstream
from bench.budgets import get_budget
from bench.contract import Clip, Context, SeqInfo
from bench.errors import BitstreamError, MethodError
from methods.nerv_dense import NeRVDense, predicted_bits, quantization_levels
from methods.nerv_family import coding
from methods.nerv_family.backbones.nerv import count_parameters, render_weights

CPU_CLIP = SeqInfo("bunny", 320, 180, 16, 25.0)
TARGET = 0.6  # bpp on the 4-frame 72x128 smoke clip: a ~2.7k-parameter network


@pytest.mark.parametrize("target", [0.05, 0.1, 0.2, 0.4])
def test_plan_sizes_the_network_for_the_target(target: float) -> None:
    clip = Clip(CPU_CLIP, np.zeros((16, 180, 320, 3), np.uint8))
    config = NeRVDense().plan(clip, target, get_budget("cpu"))
    arch = config.architecture()
    assert arch.output_size == (180, 320) and arch.strides == (5, 2, 2)
    bits = predicted_bits(arch, config.bits, 180, 320, 16)
    assert abs(bits / CPU_CLIP.pixels / target - 1) <= 0.05  # rate control lands the rest
    assert (config.epochs, config.lr, config.target_bpp) == (
        get_budget("cpu").epochs,
        get_budget("cpu").lr,
        target,
    )


def test_plan_grows_the_network_with_the_rate() -> None:
    clip = Clip(CPU_CLIP, np.zeros((16, 180, 320, 3), np.uint8))
    sizes = [
        count_parameters(NeRVDense().plan(clip, t, get_budget("cpu")).architecture())
        for t in (0.05, 0.2, 0.8)
    ]
    assert sizes[0] < sizes[1] < sizes[2]


def test_unreachable_rate_says_what_is_reachable(smoke_clip: Clip) -> None:
    with pytest.raises(MethodError, match="cannot reach 0.01 bpp.*choose a higher target"):
        NeRVDense().plan(smoke_clip, 0.01, get_budget("smoke"))


@pytest.fixture(scope="module")
def fitted(smoke_clip: Clip, tmp_path_factory: pytest.TempPathFactory):
    method = NeRVDense()
    config = dataclasses.replace(method.plan(smoke_clip, TARGET, get_budget("smoke")), epochs=60, lr=1e-2)
    workdir = tmp_path_factory.mktemp("nerv-dense")
    ctx = Context(workdir=workdir / "fit", budget=get_budget("smoke"), seed=5)
    state = method.fit(smoke_clip.frames, config, ctx)
    return method, config, state, method.encode(state), workdir


def test_decode_is_bit_identical_to_the_quantized_model_in_training(fitted, smoke_clip: Clip) -> None:
    method, config, state, data, workdir = fitted
    levels = quantization_levels(state.weights, config, smoke_clip.info.num_frames)
    quantized = coding.encode_tensors(state.weights, axis=config.quant_axis, levels=levels).dequantized
    in_training = render_weights(config.architecture(), quantized, 4, "cpu").numpy()
    decoded = NeRVDense().decode(data, smoke_clip.info, Context(workdir / "decode", get_budget("smoke")))
    assert decoded.dtype == np.uint8 and decoded.shape == smoke_clip.frames.shape
    assert np.array_equal(decoded, in_training)
    # And it is a picture of the source: better than the clip's mean colour.
    mean_colour = np.abs(smoke_clip.frames - smoke_clip.frames.mean(axis=(0, 1, 2))).mean()
    assert np.abs(decoded.astype(int) - smoke_clip.frames).mean() < 0.7 * mean_colour


def test_a_bf16_trained_stream_decodes_bit_identically_in_float32(smoke_clip: Clip, tmp_path: Path) -> None:
    budget = dataclasses.replace(get_budget("smoke"), precision="bf16")
    method = NeRVDense()
    config = dataclasses.replace(method.plan(smoke_clip, TARGET, budget), epochs=20, lr=1e-2)
    state = method.fit(smoke_clip.frames, config, Context(workdir=tmp_path / "fit", budget=budget, seed=5))
    assert method.stats(state)["precision"] == "bf16"
    data = method.encode(state)
    levels = quantization_levels(state.weights, config, smoke_clip.info.num_frames)
    quantized = coding.encode_tensors(state.weights, axis=config.quant_axis, levels=levels).dequantized
    in_training = render_weights(config.architecture(), quantized, 4, "cpu").numpy()
    decoded = NeRVDense().decode(data, smoke_clip.info, Context(tmp_path / "decode", get_budget("smoke")))
    assert np.array_equal(decoded, in_training)


def test_rate_lands_on_the_target_and_the_breakdown_names_the_parts(fitted, smoke_clip: Clip) -> None:
    _, _, state, data, _ = fitted
    bpp = 8 * len(data) / smoke_clip.info.pixels
    assert 0.97 * TARGET <= bpp <= TARGET
    parts = bitstream.breakdown(data)
    assert set(parts) == {"container", "header", "weights", "side"}
    assert sum(parts.values()) == 8 * len(data)
    header = bitstream.unpack(data).header
    assert (header["width"], header["height"], header["frames"]) == (128, 72, 4)
    stats = NeRVDense().stats(state)
    assert stats["parameters"] == count_parameters(state.config.architecture())
    assert stats["coding"]["coded_over_reference"] <= 1.01


def test_without_rate_control_the_quantizer_is_nervs_8_bits(fitted) -> None:
    _, config, state, _, _ = fitted
    assert quantization_levels(state.weights, dataclasses.replace(config, rate_control=False), 4) == 255


def test_same_seed_same_bytes(fitted, smoke_clip: Clip) -> None:
    method, config, _, data, workdir = fitted
    again = method.fit(smoke_clip.frames, config, Context(workdir / "again", get_budget("smoke"), seed=5))
    assert method.encode(again) == data


def test_wrong_clip_size_is_refused(fitted, smoke_clip: Clip, tmp_path: Path) -> None:
    method, config, _, _, _ = fitted
    with pytest.raises(MethodError, match="plan the config on this clip"):
        method.fit(smoke_clip.frames[:, :36], config, Context(tmp_path, get_budget("smoke")))


def test_forged_or_foreign_streams_are_refused_before_allocating(
    fitted, smoke_clip: Clip, tmp_path: Path
) -> None:
    _, _, _, data, _ = fitted
    stream = bitstream.unpack(data)
    ctx = Context(tmp_path, get_budget("smoke"))
    info = smoke_clip.info

    def decode(header: dict, sections: dict | None = None, version: str = stream.version) -> None:
        forged = bitstream.pack(
            stream.method, version, header, stream.sections if sections is None else sections
        )
        NeRVDense().decode(forged, info, ctx)

    arch_changes = (
        {"stem_dims": [10**6]},
        {"fc_dim": -3},
        {"strides": [2, 2]},
        {"bogus": 1},
        {"stem_dims": [5.5]},
        {"embed_base": 1e308},
        {"start": [9]},
        {"fc_dim": True},
    )
    for change in arch_changes:
        with pytest.raises(BitstreamError):
            decode({**stream.header, "arch": {**stream.header["arch"], **change}})
    with pytest.raises(BitstreamError, match="'frames' = 1000000000 is outside"):
        decode({**stream.header, "frames": 10**9})
    with pytest.raises(BitstreamError, match="must be an integer"):
        decode({**stream.header, "width": "128"})
    with pytest.raises(BitstreamError, match="codes 128x72x3 but the clip is 128x72x4"):
        decode({**stream.header, "frames": 3})
    with pytest.raises(BitstreamError, match="level count True"):
        decode({**stream.header, "coding": {"levels": True}})
    with pytest.raises(BitstreamError, match="unexpected section 'extra'"):
        decode(stream.header, {**stream.sections, "extra": b"x"})
    with pytest.raises(BitstreamError):
        decode(stream.header, version="2")
    for key in ("weights", "side"):
        for damaged in (stream.sections[key] + bytes(4), stream.sections[key][:-4]):
            with pytest.raises(BitstreamError, match="corrupt"):
                decode(stream.header, {**stream.sections, key: damaged})
