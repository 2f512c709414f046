"""The sparse coder nerv-pruned and hinerv share (`methods.nerv_family.masks.sparse_coding`): positions and
survivors decode to exactly the quantized network, forged kept counts are refused, rate control fits its
budget, and each method's size model lands within the rate tolerance of the stream it writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import bitstream, registry
from bench.budgets import get_budget
from bench.contract import RATE_TOLERANCE, Clip, Context
from bench.errors import BitstreamError
from methods.nerv_family import coding
from methods.nerv_family.coding import TENSORS_SLACK_BITS
from methods.nerv_family.masks.pruning import kept_count, magnitude_masks
from methods.nerv_family.masks.sparse_coding import (
    SparseCode,
    SparseCounts,
    binary_entropy,
    coded_values,
    decode_sparse,
    encode_sparse,
    fit_levels,
)

PRUNED = ("stem.weight", "conv.weight", "gone.weight")


def _network() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Fixed tiny weights, half of the prunable ones pruned: one layer away entirely, two dense tensors."""
    gen = torch.Generator().manual_seed(0)
    weights = {
        "stem.weight": torch.randn(12, 6, generator=gen),
        "stem.bias": torch.randn(12, generator=gen),
        "conv.weight": 0.2 * torch.randn(8, 4, 3, 3, generator=gen),
        "gone.weight": 1e-3 * torch.randn(3, 5, generator=gen),
        "grids.0": torch.randn(5, 8, generator=gen),
    }
    masks = magnitude_masks(weights, 0.5, PRUNED)
    return {n: w * masks[n] if n in masks else w for n, w in weights.items()}, masks


def _stream(code: SparseCode, **pruning: object) -> bitstream.Stream:
    """A container of the coded sections, its header as the adapters write it (`pruning` overrides)."""
    header = {"coding": {"levels": code.levels}, "pruning": {"kept": code.kept, **pruning}}
    return bitstream.unpack(bitstream.pack("sparse-test", "1", header, code.sections))


def test_decode_gives_back_exactly_the_quantized_network_and_its_positions() -> None:
    weights, masks = _network()
    assert not masks["gone.weight"].any()  # a layer pruned away codes nothing
    shapes = {n: tuple(w.shape) for n, w in weights.items()}
    code = encode_sparse(weights, masks, 255, axis="tensor")
    decoded = decode_sparse(_stream(code), shapes, PRUNED)
    assert list(decoded) == list(weights)
    assert all(torch.equal(decoded[n], code.weights[n]) for n in weights)  # what the encoder trains with
    for name, values in coded_values(weights, masks).items():
        quantized = coding.dequantize(coding.quantize(values, 255, per_channel=False))
        got = decoded[name][masks[name]] if name in masks else decoded[name]
        assert torch.equal(got.reshape(-1), quantized.reshape(-1))
    for name, mask in masks.items():
        assert torch.equal(decoded[name] != 0, mask)  # zero exactly where pruned
    total = sum(m.numel() for m in masks.values())
    assert code.kept == kept_count(total, 0.5) == SparseCounts.of(shapes, PRUNED, 0.5).kept
    frequencies = np.array([total - code.kept, code.kept], dtype=np.float64)
    bitmap = coding.decode_symbols(code.sections["positions"], total, 2, frequencies)
    assert np.array_equal(bitmap.astype(bool), torch.cat([m.reshape(-1) for m in masks.values()]).numpy())
    entropy = total * binary_entropy(code.kept / total)
    assert entropy <= code.stats["position_bits"] <= SparseCounts.of(shapes, PRUNED, 0.5).position_bits + 8


def test_forged_kept_counts_and_positions_are_refused() -> None:
    weights, masks = _network()
    shapes = {n: tuple(w.shape) for n, w in weights.items()}
    code = encode_sparse(weights, masks, 255)
    total = sum(m.numel() for m in masks.values())
    for kept in (0, total + 1, "12", None):
        with pytest.raises(BitstreamError, match="sparse-test stream header"):
            decode_sparse(_stream(code, kept=kept), shapes, PRUNED)
    with pytest.raises(BitstreamError):  # the map coded for another kept fraction
        decode_sparse(_stream(code, kept=code.kept - 1), shapes, PRUNED)
    # A map with one survivor fewer than the header says, coded at the header's fraction, is refused too.
    bitmap = torch.cat([m.reshape(-1) for m in masks.values()]).numpy().astype(np.int32)
    bitmap[np.flatnonzero(bitmap)[0]] = 0
    frequencies = np.array([total - code.kept, code.kept], dtype=np.float64)
    code.sections["positions"] = coding.encode_symbols(bitmap, 2, frequencies)
    with pytest.raises(BitstreamError, match="positions do not match its kept count"):
        decode_sparse(_stream(code), shapes, PRUNED)


def test_rate_control_fits_the_sections_in_the_budget() -> None:
    weights, masks = _network()
    budget = 2500.0
    levels = fit_levels(weights, masks, budget)
    code = encode_sparse(weights, masks, 255, budget_bits=budget)
    assert code.levels == levels and code.stats["levels"] == levels
    assert 8 * sum(len(s) for s in code.sections.values()) <= budget
    left = budget - TENSORS_SLACK_BITS - code.stats["position_bits"]  # what the values may take
    assert 15 < levels < 4095 and coding.estimate_bits(coded_values(weights, masks), levels + 1) > left


@pytest.mark.parametrize("name", ["nerv-pruned", "hinerv"])
def test_size_model_lands_within_the_rate_tolerance_of_the_stream(
    name: str, smoke_clip: Clip, tmp_path: Path
) -> None:
    """The nominal 8-bit stream (no rate control) of a briefly trained network against the plan's model."""
    from methods.hinerv import predicted_bits as hinerv_bits
    from methods.nerv_pruned import predicted_bits as pruned_bits

    budget = get_budget("smoke")
    method = registry.get(name)()
    config = dataclasses.replace(method.plan(smoke_clip, 0.6, budget), epochs=5, rate_control=False)
    data = method.encode(method.fit(smoke_clip.frames, config, Context(tmp_path, budget, seed=0)))
    info = smoke_clip.info
    if name == "hinerv":
        predicted = hinerv_bits(config.architecture(info.num_frames), config)
    else:
        predicted = pruned_bits(config.architecture(), config.sparsity, config.bits, 72, 128, 4)
    assert abs(predicted / (8 * len(data)) - 1) <= RATE_TOLERANCE
    parts = bitstream.breakdown(data)
    assert set(parts) == {"container", "header", "positions", "weights", "side"}
