"""Trained dense NeRV (Chen et al., NeurIPS 2021): the trained baseline of the study.

The network is sized for the target rate before training: the coded size is the parameter count times
the coded bits per weight (8-bit quantization, then range coding), plus the header and side information,
which are known exactly. A base shape (stem 512, C0 26, lower width 48) keeps its proportions: the conv
widths follow a width factor and the stem width is solved so that the predicted size meets the target. After training, the weights are quantized and entropy coded (`methods.coding`). How peaked the
trained weights are (hence their entropy) depends on the training length, so by default the level count
of the quantizer is fine-tuned around 255 to land the stream on the planned size (rate control); with
``rate_control=False`` it is exactly 2^bits - 1 as in NeRV. The decoder rebuilds the network from the
header and renders every frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from bench import bitstream
from bench.budgets import Budget
from bench.contract import Clip, Context, SeqInfo
from bench.errors import BitstreamError
from methods.nerv_family import coding
from methods.nerv_family.adapter import (
    RENDER_BATCH,
    NeRVFamilyMethod,
    bisect_geometric,
    closest_shape,
    framing_bits,
)
from methods.nerv_family.backbones.nerv import (
    NeRVConfig,
    NeRVGenerator,
    NeRVShape,
    choose_grid,
    count_parameters,
    macs_per_pixel,
    parameter_shapes,
    render_weights,
)
from methods.nerv_family.coding import BITS_PER_WEIGHT_AT_8, SIDE_BITS_PER_TENSOR
from methods.nerv_family.coding import TENSORS_SLACK_BITS as CODER_SLACK_BITS
from methods.nerv_family.header import network_header, read_network_header
from methods.nerv_family.training import TrainResult, with_budget_schedule

PLAN_BAND = 0.05  # predicted size within 5 % of the target; rate control lands the rest


@dataclass(frozen=True)
class NeRVDenseConfig(NeRVShape):
    """Hyper-parameters; `plan` fills in the sized shape, the strides and the budget's schedule.

    The base shape (`NeRVShape`): on 16 Bunny frames at 180x320 and 0.1 bpp (300 epochs, lr 1e-2) it gave
    25.2 dB against 23.3 dB for NeRV-S's own proportions (lower width 96, no stem cap); "mse" beat NeRV's
    L1 + SSIM loss there by 2.1 dB of PSNR (23.3 vs 21.2 dB); docs/loss.md compares both for every method.
    """

    bits: int = 8  # nominal quantization bits (NeRV: 8); the plan's size model assumes them
    rate_control: bool = True  # tune the level count so the stream lands on `target_bpp`
    target_bpp: float | None = None  # set by `plan`
    quant_axis: str = "auto"  # per "channel", per "tensor", or "auto": whichever codes smaller
    loss: str = "mse"  # "mse" (the seed paper's loss) or "nerv" (0.7 L1 + 0.3 (1 - SSIM))
    epochs: int | None = None  # None: the budget's
    lr: float | None = None  # None: the budget's
    batch_size: int | None = None  # None: the budget's
    warmup: float = 0.2  # fraction of iterations of linear warm-up


@dataclass
class NeRVDenseState:
    config: NeRVDenseConfig
    weights: dict[str, torch.Tensor]  # float32 on the CPU, in the generator's parameter order
    num_frames: int
    result: TrainResult
    coding: dict[str, Any] = field(default_factory=dict)  # filled by `encode`


def _header(arch: NeRVConfig, levels: int, height: int, width: int, frames: int) -> dict[str, Any]:
    return network_header(arch, height, width, frames, coding={"levels": levels})


def _framing_bits(arch: NeRVConfig, levels: int, height: int, width: int, frames: int) -> int:
    """Container and header bits of a stream (everything but the two coded sections' payloads)."""
    header = _header(arch, levels, height, width, frames)
    return framing_bits(NeRVDense.name, NeRVDense.version, header, ("weights", "side"))


def predicted_bits(arch: NeRVConfig, bits: int, height: int, width: int, frames: int) -> float:
    """Expected stream size: weights at the calibrated coded rate, plus header, side info and framing."""
    per_weight = BITS_PER_WEIGHT_AT_8 * bits / 8
    tensors = len(parameter_shapes(arch))
    framing = _framing_bits(arch, (1 << bits) - 1, height, width, frames)
    return count_parameters(arch) * per_weight + SIDE_BITS_PER_TENSOR * tensors + framing + CODER_SLACK_BITS


def _scaled(base: NeRVDenseConfig, width: float, stem: float, grid: tuple[tuple[int, int], tuple[int, ...]]):
    return dataclasses.replace(
        base,
        stem_dims=tuple(max(1, round(d * stem)) for d in base.stem_dims),
        fc_dim=max(1, round(base.fc_dim * width)),
        lower_width=max(1, round(base.lower_width * width)),
        width=round(width, 6),
        start=grid[0],
        strides=grid[1],
    )


def size_network(base: NeRVDenseConfig, info: SeqInfo, target_bpp: float) -> NeRVDenseConfig:
    """The shape whose predicted size is closest to the target, keeping the base proportions.

    The conv widths (C0, lower width) follow a width factor w; the stem widths follow a stem factor that
    ideally equals w, except that the last hidden width stays at most `stem_per_frame` x frames: the stem
    turns T frame codes into T grids, and a wider layer cannot raise the rank of those T codes. For each
    w on a fine grid the stem factor is bisected to meet the target; among the shapes predicted within 5 %
    of it (rate control lands the stream on the target), the one whose stem factor is closest to its
    ideal wins.
    """
    grid = (base.start, base.strides) if base.strides else choose_grid(info.height, info.width, base.start)
    target = target_bpp * info.pixels
    framing = _framing_bits(
        _scaled(base, 1.0, 1.0, grid).architecture(),
        (1 << base.bits) - 1,
        info.height,
        info.width,
        info.num_frames,
    )
    per_weight = BITS_PER_WEIGHT_AT_8 * base.bits / 8

    def size(cfg: NeRVDenseConfig) -> float:
        arch = cfg.architecture()
        shapes = parameter_shapes(arch)
        params = sum(math.prod(s) for s in shapes.values())
        return params * per_weight + SIDE_BITS_PER_TENSOR * len(shapes) + framing + CODER_SLACK_BITS

    NeRVDense().refuse_unreachable(size(_scaled(base, 1e-9, 1e-9, grid)), info, target_bpp)
    last = base.stem_dims[-1] if base.stem_dims else 1
    cap = base.stem_per_frame * info.num_frames / last if base.stem_per_frame > 0 else math.inf

    def bracket(width: float) -> list[NeRVDenseConfig]:
        below = lambda stem: size(_scaled(base, width, stem, grid)) < target  # noqa: E731
        return [_scaled(base, width, stem, grid) for stem in bisect_geometric(below, 1e-9, 64.0, 36)]

    def score(cfg: NeRVDenseConfig, width: float, miss: float) -> float:
        effective = cfg.stem_dims[-1] / last if cfg.stem_dims else min(width, cap)
        # Proportions first; a size miss inside the band costs the same as 4x its share in shape.
        return abs(math.log(effective / min(width, max(cap, 1 / last)))) + 4 * miss

    best = closest_shape(np.geomspace(1e-3, 8.0, 240), bracket, size, target, PLAN_BAND, score)
    if best is None:
        raise NeRVDense().no_shape_found(target_bpp, PLAN_BAND)
    return best


class NeRVDense(NeRVFamilyMethod):
    name = "nerv-dense"
    version = "1"
    description = "trained dense NeRV, sized to the rate; 8-bit weights, range coded"
    Config = NeRVDenseConfig
    rate_ladder: ClassVar[tuple[float, ...]] = (0.1, 0.2, 0.4)  # the cpu budget's; 0.05 gives C0 = 2 there
    trains = True
    requires: ClassVar[tuple[str, ...]] = ()

    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> NeRVDenseConfig:
        sized = size_network(self.base_config, clip.info, target_bpp)
        return with_budget_schedule(sized, budget, target_bpp=target_bpp)

    def fit(self, frames: np.ndarray, config: NeRVDenseConfig, ctx: Context) -> NeRVDenseState:
        arch = config.architecture()
        self.check_frame_size(arch.output_size, frames)
        model = self.seeded(lambda: NeRVGenerator(arch), ctx.seed)
        result = self.train_trained(model, frames, config, ctx)
        weights = {k: v.detach().to("cpu").contiguous() for k, v in model.named_parameters()}
        return NeRVDenseState(config, weights, int(frames.shape[0]), result)

    def encode(self, state: NeRVDenseState) -> bytes:
        cfg = state.config
        arch = cfg.architecture()
        height, width = arch.output_size
        levels = quantization_levels(state.weights, cfg, state.num_frames)
        coded = coding.encode_tensors(state.weights, axis=cfg.quant_axis, levels=levels)
        state.coding = coded.stats
        header = _header(arch, levels, height, width, state.num_frames)
        return bitstream.pack(self.name, self.version, header, coded.sections)

    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        stream = bitstream.unpack(data, expect_method=self.name, expect_version=self.version)
        stream.expect_sections("weights", "side")
        arch, frames = read_network_header(stream, info)
        if not isinstance(stream.header.get("coding"), dict):
            raise BitstreamError(
                "nerv-dense stream header is malformed (coding is not a mapping); re-encode it"
            )
        weights = coding.decode_tensors(stream.sections, stream.header["coding"], parameter_shapes(arch))
        return render_weights(arch, weights, frames, ctx.device, RENDER_BATCH).numpy()

    def stats(self, state: NeRVDenseState) -> dict[str, Any]:
        r = state.result
        out = {
            "parameters": count_parameters(state.config.architecture()),
            "macs_per_pixel": macs_per_pixel(state.config.architecture()),
            "stem_dims": list(state.config.stem_dims),
            "fc_dim": state.config.fc_dim,
            "lower_width": state.config.lower_width,
            **r.summary(),
        }
        if state.coding:
            out["coding"] = {k: v for k, v in state.coding.items() if k != "tensors"}
        return out


def quantization_levels(weights: dict[str, torch.Tensor], cfg: NeRVDenseConfig, frames: int) -> int:
    """2^bits - 1, or under rate control the most levels whose stream fits the planned size."""
    nominal = (1 << cfg.bits) - 1
    if not cfg.rate_control or cfg.target_bpp is None:
        return nominal
    arch = cfg.architecture()
    height, width = arch.output_size
    target = cfg.target_bpp * frames * height * width
    budget = target - _framing_bits(arch, coding.MAX_LEVELS, height, width, frames) - CODER_SLACK_BITS
    return coding.fit_levels(weights, budget, axis=cfg.quant_axis)
