"""The stream of a pruned (sparse) family network: where the survivors are, and what they are.

nerv-pruned and hinerv prune their weights once and code what is left the same way, so the coder lives
here and each adapter keeps only its architecture header and its backbone. A stream has three sections:

- ``positions``: the 0/1 map over the prunable weights (concatenated in the network's order), range coded
  with one known probability, the kept fraction; the kept count travels in the header, so the map costs
  about n x H_b(kept / n) bits and nothing for its model.
- ``weights`` and ``side``: `methods.nerv_family.coding` of the survivors of each pruned tensor
  (flattened, in the tensor's order) and of every other tensor whole, in the network's order. A tensor
  pruned away entirely codes nothing.

The decoder rebuilds the masks from the positions and scatters the survivors back into dense tensors, so
a pruned weight decodes to exactly zero and the network renders what the encoder's dequantized weights
render. The size model (`predicted_bits`) charges the same parts before training, so a network can be
sized for a rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench import bitstream
from bench.errors import BitstreamError
from methods.nerv_family import coding
from methods.nerv_family.coding import SIDE_BITS_PER_TENSOR, TENSORS_SLACK_BITS
from methods.nerv_family.header import network_header
from methods.nerv_family.masks.pruning import kept_count

SECTIONS = ("positions", "weights", "side")
POSITION_SLACK_BITS = 64  # the positions' range coder ends on up to two 32-bit words

Shapes = dict[str, tuple[int, ...]]
Tensors = dict[str, torch.Tensor]


def binary_entropy(q: float) -> float:
    """H_b(q) in bits: the cost per weight of a 0/1 map whose ones have frequency q."""
    return 0.0 if q <= 0 or q >= 1 else -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def sparse_header(arch: Any, height: int, width: int, frames: int, levels: int, kept: int) -> dict[str, Any]:
    """A pruned network's header: the family's, plus the level count and the number of survivors."""
    return network_header(arch, height, width, frames, coding={"levels": levels}, pruning={"kept": kept})


# --- the size model ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparseCounts:
    """What a pruned network's size depends on: how many weights are pruned over, kept, and coded whole."""

    prunable: int  # weights pruning applies to
    kept: int  # of those, the survivors
    dense: int  # values of the tensors coded whole (biases, grids, ...)
    tensors: int  # tensors of the network, each with its side information

    @classmethod
    def of(cls, shapes: Shapes, prunable: Iterable[str], ratio: float) -> SparseCounts:
        """The counts of a network of `shapes` with the `ratio` of its `prunable` weights removed."""
        pruned = sum(math.prod(shapes[n]) for n in prunable)
        dense = sum(math.prod(s) for s in shapes.values()) - pruned
        return cls(pruned, kept_count(pruned, ratio), dense, len(shapes))

    @property
    def position_bits(self) -> float:
        """The positions section: the map's entropy at the kept fraction, and the coder's final words."""
        return self.prunable * binary_entropy(self.kept / self.prunable) + POSITION_SLACK_BITS


def predicted_bits(counts: SparseCounts, kept_bits: float, dense_bits: float, framing: int) -> float:
    """Stream size before training: survivors at `kept_bits` and whole tensors at `dense_bits` per value,
    the positions, side information, the coder's slack and the stream's `framing` (container and header)."""
    values = counts.kept * kept_bits + counts.dense * dense_bits
    side = SIDE_BITS_PER_TENSOR * counts.tensors + TENSORS_SLACK_BITS
    return values + counts.position_bits + side + framing


# --- encoding ----------------------------------------------------------------------------------------------


def coded_values(weights: Tensors, masks: Tensors) -> Tensors:
    """What the weights section codes, in `weights`' order: survivors of pruned tensors (flattened), other
    tensors whole; a tensor pruned away entirely codes nothing."""
    named = {}
    for name, value in weights.items():
        if name in masks:
            survivors = value.reshape(-1)[masks[name].reshape(-1)]
            if survivors.numel():
                named[name] = survivors
        else:
            named[name] = value
    return named


def _frequencies(total: int, kept: int) -> np.ndarray:
    return np.array([total - kept, kept], dtype=np.float64)


def encode_positions(masks: Tensors) -> tuple[bytes, int, int]:
    """(positions section, prunable weights, kept weights) of `masks`, concatenated in their order."""
    bitmap = torch.cat([m.reshape(-1) for m in masks.values()])
    total, kept = bitmap.numel(), int(bitmap.sum())
    return coding.encode_symbols(bitmap.numpy().astype(np.int32), 2, _frequencies(total, kept)), total, kept


def fit_levels(weights: Tensors, masks: Tensors, budget_bits: float, axis: str = "auto") -> int:
    """Rate control: the finest level count whose positions and values fit `budget_bits` (the stream's
    size less its framing)."""
    return _fit_levels(coded_values(weights, masks), budget_bits, encode_positions(masks)[0], axis)


def _fit_levels(named: Tensors, budget_bits: float, positions: bytes, axis: str) -> int:
    """`coding.fit_levels` on what the coded positions and the coder's slack leave of `budget_bits`."""
    return coding.fit_levels(named, budget_bits - TENSORS_SLACK_BITS - 8 * len(positions), axis=axis)


def scatter(masks: Tensors, values: Tensors) -> Tensors:
    """Full weight tensors: the survivors in `values` (flattened order) at the mask's ones, zero elsewhere."""
    out = {}
    for name, mask in masks.items():
        full = torch.zeros(mask.numel(), dtype=torch.float32)
        if name in values:
            full[mask.reshape(-1)] = values[name]
        out[name] = full.reshape(mask.shape)
    return out


def masked_weights(params: Iterable[tuple[str, torch.Tensor]], masks: Tensors) -> Tensors:
    """(name, parameter) pairs as float32 CPU tensors, zero where `masks` prune them: what gets coded."""
    out = {}
    for name, p in params:
        value = p.detach().float().cpu()
        out[name] = (value * masks[name]).contiguous() if name in masks else value.contiguous()
    return out


@dataclass
class SparseCode:
    """A coded pruned network: the three sections, the weights the decoder rebuilds, and size facts."""

    sections: dict[str, bytes]
    weights: Tensors  # dequantized, exactly zero where pruned, in the order of the weights coded
    levels: int
    kept: int
    stats: dict[str, Any]


def encode_sparse(
    weights: Tensors,
    masks: Tensors,
    levels: int,
    axis: str = "auto",
    budget_bits: float | None = None,
) -> SparseCode:
    """Positions, then values quantized at `levels`, or at the level count that fits `budget_bits` (the
    stream's size less its framing, see `fit_levels`) when given."""
    positions, total, kept = encode_positions(masks)
    named = coded_values(weights, masks)
    if budget_bits is not None:
        levels = _fit_levels(named, budget_bits, positions, axis)
    coded = coding.encode_tensors(named, axis=axis, levels=levels)
    full = {**coded.dequantized, **scatter(masks, coded.dequantized)}
    decoded = {name: full[name] for name in weights}
    stats = {k: v for k, v in coded.stats.items() if k != "tensors"}
    stats.update(
        position_bits=8 * len(positions),
        position_entropy_bits=round(total * binary_entropy(kept / total), 1),
        kept_weights=kept,
        prunable_weights=total,
        nonzeros=sum(int(torch.count_nonzero(w)) for w in decoded.values()),
    )
    return SparseCode({"positions": positions, **coded.sections}, decoded, levels, kept, stats)


# --- decoding ----------------------------------------------------------------------------------------------


def read_kept(stream: bitstream.Stream, shapes: Shapes, prunable: Iterable[str]) -> int:
    """The header's count of surviving weights: an integer the network can hold, beside a coding dict."""
    header, name = stream.header, stream.method
    pruning = header.get("pruning")
    kept = pruning.get("kept") if isinstance(pruning, dict) else None
    if type(kept) is not int or not isinstance(header.get("coding"), dict):
        raise BitstreamError(f"{name} stream header is malformed (pruning or coding); re-encode it")
    total = sum(math.prod(shapes[n]) for n in prunable)
    if not 1 <= kept <= total:
        raise BitstreamError(f"{name} stream header keeps {kept} of {total} weights; re-encode it")
    return kept


def decode_sparse(stream: bitstream.Stream, shapes: Shapes, prunable: Iterable[str]) -> Tensors:
    """The network's weights (name -> tensor, in `shapes`' order) from a pruned stream, whose header the
    caller has checked against the architecture that gives `shapes`; every part is checked before use."""
    names = list(prunable)
    kept = read_kept(stream, shapes, names)
    total = sum(math.prod(shapes[n]) for n in names)
    bitmap = coding.decode_symbols(stream.section("positions"), total, 2, _frequencies(total, kept))
    if int(bitmap.sum()) != kept:
        raise BitstreamError(f"{stream.method} stream's positions do not match its kept count; re-encode it")
    masks, offset = {}, 0
    for name in names:
        size = math.prod(shapes[name])
        masks[name] = torch.from_numpy(bitmap[offset : offset + size].astype(bool)).reshape(shapes[name])
        offset += size
    coded_shapes = {}
    for name, shape in shapes.items():
        if name not in masks:
            coded_shapes[name] = shape
        elif masks[name].any():
            coded_shapes[name] = (int(masks[name].sum()),)
    values = coding.decode_tensors(stream.sections, stream.header["coding"], coded_shapes)
    weights = {**values, **scatter(masks, values)}
    return {name: weights[name] for name in shapes}
