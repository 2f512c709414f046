"""Weight quantization and entropy coding: exact round trips, sizes at the entropy bound, clean corrupt-stream errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import BitstreamError
from methods.nerv_family import coding
from methods.nerv_family.backbones.nerv import NeRVConfig, NeRVGenerator

SMALL = NeRVConfig(stem_dims=(64,), fc_dim=8, lower_width=16, strides=(2, 2, 2))


def _weights() -> dict[str, torch.Tensor]:
    """A small NeRV's initial weights plus a large heavy-tailed tensor like trained conv weights."""
    torch.manual_seed(0)
    named = {k: v.detach() for k, v in NeRVGenerator(SMALL).named_parameters()}
    named["trained_like"] = torch.distributions.StudentT(3.0).sample((96, 64, 3, 3)) * 0.01
    return named


def _shapes(named: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in named.items()}


def test_round_trip_is_exact_and_within_half_a_step() -> None:
    named = _weights()
    enc = coding.encode_tensors(named)
    dec = coding.decode_tensors(enc.sections, enc.meta, _shapes(named))
    assert list(dec) == list(named)
    for name, tensor in named.items():
        assert torch.equal(dec[name], enc.dequantized[name]), name
        step = (tensor.max() - tensor.min()) / 255
        assert (dec[name] - tensor).abs().max() <= 0.51 * step + 1e-7, name


def test_coded_size_is_within_one_percent_of_entropy_plus_side_information() -> None:
    named = _weights()
    enc = coding.encode_tensors(named)
    coded = 8 * (len(enc.sections["weights"]) + len(enc.sections["side"]))
    # The reference codes each tensor with its own stored histogram at the entropy bound.
    assert coded <= 1.01 * enc.stats["histogram_reference_bits"]
    assert enc.stats["coded_over_reference"] <= 1.01
    # No model beats the symbols' own empirical entropy.
    assert enc.stats["payload_bits"] >= enc.stats["entropy_bits"]
    # Histogram coding alone: payload at the entropy, side information exactly as stored.
    big = {"trained_like": named["trained_like"]}
    hist = coding.encode_tensors(big, models=("hist",))
    entropy = hist.stats["entropy_bits"]
    assert entropy <= hist.stats["payload_bits"] <= 1.01 * entropy
    assert coding.estimate_bits(big, 255, models=("hist",)) == pytest.approx(
        8 * (len(hist.sections["weights"]) + len(hist.sections["side"])), abs=72
    )


def test_small_tensors_do_not_pay_for_a_histogram() -> None:
    named = _weights()
    stats = coding.encode_tensors(named).stats["tensors"]
    assert stats["head.bias"]["model"] != "hist"
    assert stats["head.bias"]["side_bits"] < 200


def test_auto_axis_picks_the_cheaper_quantization_and_forced_axes_round_trip() -> None:
    torch.manual_seed(1)
    named = {
        "uneven": torch.randn(32, 512) * torch.logspace(-4, 0, 32)[:, None],  # per tensor: few symbols used
        "wide": torch.randn(4, 4000) * 0.05,  # per channel: 4 extra offsets and scales, no gain
    }
    stats = coding.encode_tensors(named).stats["tensors"]
    for name, tensor in named.items():
        sizes = {axis: coding.estimate_bits({name: tensor}, 255, axis=axis) for axis in ("channel", "tensor")}
        assert stats[name]["axis"] == min(sizes, key=sizes.get), name
    for axis in ("channel", "tensor"):
        enc = coding.encode_tensors(named, axis=axis)
        assert {t["axis"] for t in enc.stats["tensors"].values()} == {axis}
        dec = coding.decode_tensors(enc.sections, enc.meta, _shapes(named))
        assert all(torch.equal(dec[k], enc.dequantized[k]) for k in named)


@pytest.mark.parametrize("value", [0.0, 3.5, 1e6, 1e-9])
def test_constant_and_extreme_tensors(value: float) -> None:
    tensor = torch.full((4, 5), value)
    tensor[0, 0] = value * 1.5 + 1e-12
    enc = coding.encode_tensors({"w": tensor})
    dec = coding.decode_tensors(enc.sections, enc.meta, {"w": (4, 5)})
    assert torch.equal(dec["w"], enc.dequantized["w"])
    assert torch.allclose(dec["w"], tensor, rtol=1e-2, atol=1e-12)


def test_level_count_is_fitted_to_a_budget() -> None:
    named = _weights()
    at_255 = coding.estimate_bits(named, 255)
    budget = 0.9 * at_255
    levels = coding.fit_levels(named, budget)
    assert 15 <= levels < 255
    assert coding.estimate_bits(named, levels) <= budget < coding.estimate_bits(named, levels + 1)
    enc = coding.encode_tensors(named, levels=levels)
    assert enc.meta == {"levels": levels}
    assert 8 * sum(len(s) for s in enc.sections.values()) <= budget + 72
    dec = coding.decode_tensors(enc.sections, enc.meta, _shapes(named))
    assert all(torch.equal(dec[k], enc.dequantized[k]) for k in named)


def test_symbols_with_known_probabilities_cost_their_cross_entropy() -> None:
    rng = np.random.default_rng(0)
    probabilities = np.array([0.7, 0.2, 0.07, 0.03])
    symbols = rng.choice(4, size=50_000, p=probabilities)
    data = coding.encode_symbols(symbols, 4, probabilities)
    ideal = -np.log2(probabilities[symbols]).sum()
    assert ideal <= 8 * len(data) <= 1.01 * ideal
    assert np.array_equal(coding.decode_symbols(data, symbols.size, 4, probabilities), symbols)
    # Without probabilities the histogram travels in the bytes.
    data = coding.encode_symbols(symbols, 4)
    assert np.array_equal(coding.decode_symbols(data, symbols.size, 4), symbols)
    assert 8 * len(data) <= 1.01 * coding.empirical_entropy_bits(symbols, 4) + 200


def test_exp_golomb_round_trip() -> None:
    writer = coding.BitWriter()
    values = [0, 1, 2, 7, 8, 1000, 123456]
    for k in (0, 3):
        for v in values:
            writer.write_expgolomb(v, k)
    reader = coding.BitReader(writer.getvalue())
    assert [reader.read_expgolomb(k, 10**6) for k in (0, 3) for _ in values] == values * 2


def test_corrupt_sections_raise_bitstream_errors() -> None:
    named = _weights()
    enc = coding.encode_tensors(named)
    shapes = _shapes(named)
    with pytest.raises(BitstreamError, match="side information ends early"):
        coding.decode_tensors({**enc.sections, "side": enc.sections["side"][:10]}, enc.meta, shapes)
    with pytest.raises(BitstreamError, match="level count"):
        coding.decode_tensors(enc.sections, {"levels": 10**9}, shapes)
    with pytest.raises(BitstreamError, match="lacks section"):
        coding.decode_tensors({"side": enc.sections["side"]}, enc.meta, shapes)
    with pytest.raises(BitstreamError, match="more weights"):
        coding.decode_tensors(enc.sections, enc.meta, {"huge": (1 << 20, 1 << 12)})
    with pytest.raises(BitstreamError, match="left unread"):
        coding.decode_tensors({**enc.sections, "side": enc.sections["side"] + b"\x00"}, enc.meta, shapes)
    with pytest.raises(BitstreamError, match="does not match its symbols"):
        coding.decode_tensors(
            {**enc.sections, "weights": enc.sections["weights"] + bytes(4)}, enc.meta, shapes
        )
    with pytest.raises(BitstreamError):
        coding.decode_tensors(enc.sections, {"levels": 1}, shapes)
    symbols = np.arange(1000) % 7
    for probabilities in (None, np.full(7, 1 / 7)):
        data = coding.encode_symbols(symbols, 7, probabilities)
        with pytest.raises(BitstreamError, match="corrupt"):
            coding.decode_symbols(data + bytes(4), 1000, 7, probabilities)
