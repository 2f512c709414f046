"""What the methods on the HNeRV backbone share (hnerv, and the supermasks with ``backbone=hnerv``).

The embedding grid and strides for a clip, the search for the decoder shape closest to a rate once the
embeddings are paid for, the per-frame embeddings themselves (computed by the encoder, quantized and range
coded into two sections of their own, charged to the rate) and the checked reading of an HNeRV stream's
header. Both methods code the embeddings the same way, so a size model of one holds for the other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from bench import bitstream
from bench.contract import SeqInfo
from bench.errors import BitstreamError, MethodError
from methods.nerv_family import coding
from methods.nerv_family.adapter import RENDER_BATCH, NeRVFamilyMethod, bisect_integer, closest_shape
from methods.nerv_family.backbones.hnerv import HNeRVConfig, embedding_values, stride_plan
from methods.nerv_family.coding import SIDE_BITS_PER_TENSOR, TENSORS_SLACK_BITS
from methods.nerv_family.header import read_header

EMBED_BITS = 6  # quantization bits of the embeddings (the reference's --quant_embed_bit 6)
EMBED_AXIS = "auto"  # per channel or per tensor, whichever codes smaller
STAGES = 5  # encoder stages = decoder blocks (the reference: 5)
MAX_STRIDE = 5  # the largest stride a plan may choose (the reference's largest: 5)
EMBED_SIDE_BITS = SIDE_BITS_PER_TENSOR + TENSORS_SLACK_BITS  # the embeddings' own side section and coder end
EMBEDDING_SECTIONS = ("embeddings", "embedding_side")
MAX_LOWER_WIDTH = 256
MAX_FC_DIM = 1 << 14

Grid = tuple[tuple[int, int], tuple[int, ...], tuple[int, ...]]  # (embed_grid, strides_h, strides_w)


def clip_grid(info: SeqInfo, given: Grid, stages: int = STAGES, max_stride: int = MAX_STRIDE) -> Grid:
    """The given grid and strides where all three are set, else the smallest grid that reaches the clip
    (`stride_plan`; a clip size the strides cannot produce is a one-line MethodError)."""
    if all(given):
        return given
    return stride_plan(info.height, info.width, stages, max_stride)


def embedding_bits(arch: HNeRVConfig, frames: int, bits: int) -> float:
    """Expected size of the embeddings' sections: every value at the quantizer's bits (range coding codes
    them in fewer, so this bounds them from above)."""
    return embedding_values(arch, frames) * bits + EMBED_SIDE_BITS


def refuse_embeddings_over(
    method: str, arch: HNeRVConfig, info: SeqInfo, target_bpp: float, bits: int, band: float
) -> None:
    """A one-line MethodError when the embeddings alone leave less than `band` of the target to the rest."""
    embedded = embedding_bits(arch, info.num_frames, bits)
    if embedded > target_bpp * info.pixels * (1 - band):
        values = embedding_values(arch, info.num_frames)
        raise MethodError(
            f"{method}'s embeddings alone ({values} values at {bits} bits, about "
            f"{embedded / info.pixels:.3g} bpp) do not fit {target_bpp:g} bpp on "
            f"{info.width}x{info.height}x{info.num_frames}; choose a higher target or fewer embed_channels"
        )


def size_decoder(
    method: NeRVFamilyMethod,
    shaped: Callable[[int, int], Any],
    size: Callable[[Any], float],
    ratio: float,
    info: SeqInfo,
    target_bpp: float,
    bands: tuple[float, float],
) -> Any:
    """The decoder shape closest to the target rate: for each lower width C0 is bisected to meet it, and
    among the shapes predicted within `bands[0]` the one whose C0 / lower width is closest to `ratio` (the
    base shape's) wins; where none is that close (tiny networks step coarsely), the nearest within
    `bands[1]`. `shaped(fc_dim, lower_width)` builds a candidate, `size` predicts its stream's bits."""
    target = target_bpp * info.pixels
    method.refuse_unreachable(size(shaped(1, 1)), info, target_bpp)

    def bracket(lower: float) -> list[Any]:
        below = lambda fc: size(shaped(fc, int(lower))) <= target  # noqa: E731
        return [shaped(fc, int(lower)) for fc in bisect_integer(below, 1, MAX_FC_DIM)]

    def proportion(cfg: Any, lower: float, miss: float) -> float:
        return abs(math.log(cfg.fc_dim / cfg.lower_width / ratio)) + 4 * miss

    lowers = []  # a wider lower width only grows the network: stop where C0 = 1 is already too large
    for lower in range(1, MAX_LOWER_WIDTH + 1):
        if size(shaped(1, lower)) > target * (1 + bands[1]):
            break
        lowers.append(lower)
    best = closest_shape(lowers, bracket, size, target, bands[0], proportion)
    if best is None:
        best = closest_shape(lowers, bracket, size, target, bands[1], lambda c, w, miss: miss)
    if best is None:
        raise method.no_shape_found(target_bpp, bands[1])
    return best


def with_grid(arch: HNeRVConfig, fc_dim: int, lower_width: int, grid: Grid) -> HNeRVConfig:
    """`arch` with this C0, lower width, embedding grid and strides."""
    return dataclasses.replace(
        arch,
        fc_dim=fc_dim,
        lower_width=lower_width,
        embed_grid=grid[0],
        strides_h=grid[1],
        strides_w=grid[2],
    )


# --- the embeddings -----------------------------------------------------------------------------------------


@torch.no_grad()
def embed_frames(
    model: nn.Module, frames: np.ndarray, device: str, batch_size: int = RENDER_BATCH
) -> torch.Tensor:
    """The encoder's embedding of every frame (`model.embed`), float32 (T, C, rows, columns) on the CPU."""
    model.to(memory_format=torch.channels_last).eval()
    out = []
    for i in range(0, frames.shape[0], batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size])).to(device)
        x = batch.permute(0, 3, 1, 2).float().div_(255)
        out.append(model.embed(x).float().cpu().contiguous())
    return torch.cat(out)


def encode_embeddings(
    embeddings: torch.Tensor, levels: int, axis: str = EMBED_AXIS
) -> tuple[dict[str, bytes], coding.EncodedTensors]:
    """The embeddings' two sections (`EMBEDDING_SECTIONS`) and their coding (dequantized values, stats)."""
    embedded = coding.encode_tensors({"embeddings": embeddings}, axis=axis, levels=levels)
    sections = {"embeddings": embedded.sections["weights"], "embedding_side": embedded.sections["side"]}
    return sections, embedded


def decode_embeddings(stream: bitstream.Stream, arch: HNeRVConfig, frames: int) -> torch.Tensor:
    """The dequantized embeddings (T, C, rows, columns) of a stream whose header holds ``embedding``."""
    if not isinstance(stream.header.get("embedding"), dict):
        raise BitstreamError(
            f"{stream.method} stream header is malformed (embedding is not a mapping); re-encode it"
        )
    shape = (frames, arch.embed_channels, *arch.embed_grid)
    embedded = {"weights": stream.section("embeddings"), "side": stream.section("embedding_side")}
    return coding.decode_tensors(embedded, stream.header["embedding"], {"embeddings": shape})["embeddings"]


def read_hnerv_header(
    stream: bitstream.Stream, info: SeqInfo | None, coded_values: Callable[[HNeRVConfig, int], int]
) -> tuple[HNeRVConfig, int]:
    """Architecture and frame count of an HNeRV stream, checked before anything is built (`read_header`);
    `coded_values(arch, frames)` counts what the stream codes (decoder values and embeddings)."""
    return read_header(
        stream,
        info,
        HNeRVConfig.from_json,
        lambda a: (a.embed_channels, a.enc_width, a.fc_dim, a.lower_width, *a.embed_grid),
        coded_values,
    )
