"""HNeRV (Chen et al., "HNeRV: A Hybrid Neural Representation for Videos", CVPR 2023).

A ConvNeXt encoder turns each frame into a tiny embedding; HNeRV blocks decode it (the architecture:
`methods.nerv_family.backbones.hnerv`). Encoder and decoder train together on the clip, the encoder at a
tenth of the decoder's learning rate (`encoder_lr`); the stream then codes only what the receiver needs:
the decoder's weights (8-bit quantization, range coded, rate-controlled like nerv-dense's) and every
frame's embedding (6-bit quantization as in the reference, range coded). The decoder rebuilds the frames
from those bytes alone; the encoder never leaves the sender.

Sizing: the embedding's cost is fixed by the clip (frames x channels x grid positions x about `embed_bits`),
so the decoder gets the rest. The base shape is the reference's Bunny model (C0 68, lower width 12, reduce
1.2, kernels 1..5). For each lower width C0 is bisected to meet the rate, and the shape whose C0 / lower
width ratio is closest to the base's wins (the reference solves C0 for a parameter count at a fixed lower
width of 12, which at the cpu size's few thousand weights would leave no room for C0). What follows the
reference and what is simplified: docs/hnerv.md.
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
from bench.errors import BitstreamError, MethodError
from methods.nerv_family import coding
from methods.nerv_family.adapter import RENDER_BATCH, NeRVFamilyMethod, framing_bits
from methods.nerv_family.backbones.hnerv import (
    HNeRVConfig,
    HNeRVDecoder,
    HNeRVModel,
    decoder_parameters,
    decoder_shapes,
    embedding_values,
    encoder_parameters,
    macs_per_pixel,
)
from methods.nerv_family.backbones.render import render_inputs
from methods.nerv_family.coding import BITS_PER_WEIGHT_AT_8, SIDE_BITS_PER_TENSOR, TENSORS_SLACK_BITS
from methods.nerv_family.header import network_header
from methods.nerv_family.hnerv_stream import (
    EMBED_AXIS,
    EMBED_BITS,
    EMBEDDING_SECTIONS,
    MAX_STRIDE,
    STAGES,
    clip_grid,
    decode_embeddings,
    embed_frames,
    embedding_bits,
    encode_embeddings,
    read_hnerv_header,
    refuse_embeddings_over,
    size_decoder,
)
from methods.nerv_family.training import TrainResult, with_budget_schedule

# The reference trains encoder and decoder at one lr (a share of 1). At the cpu budget that collapsed the
# embeddings to one for every frame; a tenth gave +1.0 / +2.0 dB at 0.1 / 0.2 bpp (docs/hnerv.md).
ENCODER_LR_SHARE = 0.1
MAX_ENCODER_LR = 10.0
PLAN_BAND = 0.05  # predicted size within 5 % of the target; rate control lands the rest
RATE_CONTROL_BAND = 0.25  # where no shape is that close: rate control's level count reaches 25 % either way
SECTIONS = ("weights", "side", *EMBEDDING_SECTIONS)
__all__ = ["HNeRVMethod", "embed_frames", "embedding_bits", "predicted_bits", "quantized", "render_decoder"]


@dataclass(frozen=True)
class HNeRVMethodConfig:
    """Hyper-parameters; `plan` fills in the sized decoder, the embedding grid, the strides and the schedule."""

    embed_channels: int = 16  # channels of a frame's embedding (the reference's --enc_dim 64_16)
    embed_bits: int = EMBED_BITS  # quantization bits of the embeddings (the reference's --quant_embed_bit 6)
    enc_width: int = 64  # channels of the encoder's stages but the last (--enc_dim 64_16)
    enc_blocks: int = 1  # ConvNeXt blocks per encoder stage (--num_blks 1_1)
    fc_dim: int = 68  # C0 of the base shape (the reference's Bunny 1.5M model: 68); `plan` sizes it
    lower_width: int = 12  # the narrowest decoder width of the base shape (--lower_width 12); `plan` sizes it
    reduction: float = 1.2  # each decoder block's width is the previous one / reduction (--reduce 1.2)
    kernel_min: int = 1  # decoder kernel of block i: min(kernel_min + 2 i, kernel_max) (--ks 0_1_5)
    kernel_max: int = 5  # the largest decoder kernel (--ks 0_1_5)
    stages: int = STAGES  # encoder stages = decoder blocks (the reference: 5)
    max_stride: int = MAX_STRIDE  # the largest stride `plan` may choose (the reference's largest: 5)
    embed_grid: tuple[int, ...] = ()  # (rows, columns) of a frame's embedding; empty: the smallest that fits
    strides_h: tuple[int, ...] = ()  # row strides; empty: chosen with the grid from the clip size
    strides_w: tuple[int, ...] = ()  # column strides; empty: chosen with the grid from the clip size
    width: float = 1.0  # lower width of the sized shape relative to the base's (set by `plan`)
    bits: int = 8  # nominal quantization bits of the decoder's weights (NeRV, HNeRV: 8)
    rate_control: bool = True  # tune the weights' level count so the stream lands on `target_bpp`
    target_bpp: float | None = None  # set by `plan`
    quant_axis: str = EMBED_AXIS  # per "channel", per "tensor", or "auto": whichever codes smaller
    loss: str = "mse"  # "mse" (the reference's L2) or "nerv" (0.7 L1 + 0.3 (1 - SSIM))
    epochs: int | None = None  # None: the budget's
    lr: float | None = None  # None: the budget's
    batch_size: int | None = None  # None: the budget's
    warmup: float = 0.2  # fraction of iterations of linear warm-up
    encoder_lr: float = ENCODER_LR_SHARE  # the encoder's lr as a share of the decoder's; 0 keeps it random

    def __post_init__(self) -> None:
        for name in ("embed_grid", "strides_h", "strides_w"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not (math.isfinite(self.encoder_lr) and 0 <= self.encoder_lr <= MAX_ENCODER_LR):
            raise MethodError(
                f"hnerv encoder_lr must be a share of the lr in [0, {MAX_ENCODER_LR:g}] (0 keeps the random "
                f"encoder), got {self.encoder_lr!r}"
            )

    def architecture(self) -> HNeRVConfig:
        if not (self.embed_grid and self.strides_h and self.strides_w):
            raise MethodError("hnerv config has no embedding grid or strides yet; plan it on a clip")
        fields = {f.name for f in dataclasses.fields(HNeRVConfig)}
        return HNeRVConfig(**{name: getattr(self, name) for name in fields})


@dataclass
class HNeRVState:
    config: HNeRVMethodConfig
    weights: dict[str, torch.Tensor]  # the decoder's, float32 on the CPU, in its parameter order
    embeddings: torch.Tensor  # (T, C, rows, columns) float32 on the CPU: the encoder's output per frame
    result: TrainResult
    coding: dict[str, Any] = field(default_factory=dict)  # filled by `encode`


def _header(arch: HNeRVConfig, levels: int, embed_levels: int, frames: int) -> dict[str, Any]:
    height, width = arch.output_size
    return network_header(
        arch, height, width, frames, coding={"levels": levels}, embedding={"levels": embed_levels}
    )


def predicted_bits(arch: HNeRVConfig, cfg: HNeRVMethodConfig, frames: int) -> float:
    """Stream size before training: decoder weights at the calibrated coded rate, embeddings, framing."""
    per_weight = BITS_PER_WEIGHT_AT_8 * cfg.bits / 8
    tensors = len(decoder_shapes(arch))
    header = _header(arch, (1 << cfg.bits) - 1, (1 << cfg.embed_bits) - 1, frames)
    framing = framing_bits(HNeRVMethod.name, HNeRVMethod.version, header, SECTIONS)
    weights = decoder_parameters(arch) * per_weight + SIDE_BITS_PER_TENSOR * tensors + TENSORS_SLACK_BITS
    return weights + embedding_bits(arch, frames, cfg.embed_bits) + framing


def _shaped(base: HNeRVMethodConfig, fc_dim: int, lower_width: int, grid: tuple) -> HNeRVMethodConfig:
    return dataclasses.replace(
        base,
        fc_dim=fc_dim,
        lower_width=lower_width,
        width=round(lower_width / base.lower_width, 6),
        embed_grid=grid[0],
        strides_h=grid[1],
        strides_w=grid[2],
    )


class HNeRVMethod(NeRVFamilyMethod):
    name = "hnerv"
    version = "2"
    description = "HNeRV: ConvNeXt-encoded frame embeddings and an HNeRV decoder; 8-bit weights, 6-bit embeddings, range coded"
    Config = HNeRVMethodConfig
    rate_ladder: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2, 0.4)
    trains = True
    requires: ClassVar[tuple[str, ...]] = ()

    # -- plan ----------------------------------------------------------------------------------------------
    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> HNeRVMethodConfig:
        return with_budget_schedule(self.size_network(clip.info, target_bpp), budget, target_bpp=target_bpp)

    def size_network(self, info: SeqInfo, target_bpp: float) -> HNeRVMethodConfig:
        """The decoder closest to the target rate once the embeddings are paid for (module docstring);
        where no shape is within 5 %, the nearest within 25 % (rate control lands the rest)."""
        base = self.base_config
        grid = clip_grid(
            info, (base.embed_grid, base.strides_h, base.strides_w), base.stages, base.max_stride
        )
        smallest = _shaped(base, 1, 1, grid).architecture()
        smallest.validate()
        refuse_embeddings_over(self.name, smallest, info, target_bpp, base.embed_bits, PLAN_BAND)
        return size_decoder(
            self,
            lambda fc, lower: _shaped(base, fc, lower, grid),
            lambda cfg: predicted_bits(cfg.architecture(), cfg, info.num_frames),
            base.fc_dim / base.lower_width,
            info,
            target_bpp,
            (PLAN_BAND, RATE_CONTROL_BAND),
        )

    # -- fit -----------------------------------------------------------------------------------------------
    def fit(self, frames: np.ndarray, config: HNeRVMethodConfig, ctx: Context) -> HNeRVState:
        arch = config.architecture()
        self.check_frame_size(arch.output_size, frames)
        model = self.seeded(lambda: HNeRVModel(arch), ctx.seed)
        result = self.train_trained(model, frames, config, ctx, params=encoder_groups(model, config, ctx))
        embeddings = embed_frames(model, frames, ctx.device)
        weights = {k: v.detach().to("cpu").contiguous() for k, v in model.decoder.named_parameters()}
        return HNeRVState(config, weights, embeddings, result)

    # -- encode / decode -----------------------------------------------------------------------------------
    def encode(self, state: HNeRVState) -> bytes:
        cfg = state.config
        arch = cfg.architecture()
        frames = state.embeddings.shape[0]
        embed_levels = (1 << cfg.embed_bits) - 1
        sections, embedded = encode_embeddings(state.embeddings, embed_levels, cfg.quant_axis)
        levels = (1 << cfg.bits) - 1
        if cfg.rate_control and cfg.target_bpp is not None:
            height, width = arch.output_size
            budget = (
                cfg.target_bpp * frames * height * width
                - self.framing_bits(_header(arch, coding.MAX_LEVELS, embed_levels, frames), SECTIONS)
                - TENSORS_SLACK_BITS
                - 8 * sum(len(v) for v in sections.values())
            )
            levels = coding.fit_levels(state.weights, budget, axis=cfg.quant_axis)
        coded = coding.encode_tensors(state.weights, axis=cfg.quant_axis, levels=levels)
        state.coding = {
            "weights": {k: v for k, v in coded.stats.items() if k != "tensors"},
            "embeddings": {k: v for k, v in embedded.stats.items() if k != "tensors"},
        }
        header = _header(arch, levels, embed_levels, frames)
        return bitstream.pack(self.name, self.version, header, {**coded.sections, **sections})

    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        arch, weights, embeddings = decode_stream(data, info)
        return render_decoder(arch, weights, embeddings, ctx.device).numpy()

    def stats(self, state: HNeRVState) -> dict[str, Any]:
        arch = state.config.architecture()
        height, width = arch.output_size
        out = {
            "parameters": decoder_parameters(arch),
            "encoder_parameters": encoder_parameters(arch),
            "embedding_values": int(state.embeddings.numel()),
            "macs_per_pixel": macs_per_pixel(arch),
            "fc_dim": arch.fc_dim,
            "lower_width": arch.lower_width,
            "embed_grid": list(arch.embed_grid),
            **state.result.summary(),
        }
        if state.coding:
            out["coding"] = state.coding
        return out


def encoder_groups(model: HNeRVModel, config: HNeRVMethodConfig, ctx: Context) -> list | None:
    """Adam groups with the encoder at `encoder_lr` times the decoder's lr; None (one group) at a share of 1.

    A slower encoder keeps the frames' embeddings apart while a small decoder learns to use them; at the
    reference's share of 1 the encoder learns faster to make them equal. At 0 it stays as drawn."""
    if config.encoder_lr == 1.0:
        return None
    lr = config.lr or ctx.budget.lr
    groups = [{"params": list(model.decoder.parameters()), "lr": lr}]
    if config.encoder_lr > 0:
        groups.append({"params": list(model.encoder.parameters()), "lr": lr * config.encoder_lr})
    else:
        model.encoder.requires_grad_(False)
    return groups


def render_decoder(
    arch: HNeRVConfig, weights: dict[str, torch.Tensor], embeddings: torch.Tensor, device: str
) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) of the decoder with exactly these weights on these embeddings."""
    decoder = HNeRVDecoder(arch)
    decoder.load_state_dict(weights, strict=True)
    return render_inputs(decoder.to(device), embeddings.contiguous(), RENDER_BATCH, device)


def quantized(state: HNeRVState, levels: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The decoder weights and embeddings as the decoder will see them, at `levels` for the weights."""
    cfg = state.config
    weights = coding.encode_tensors(state.weights, axis=cfg.quant_axis, levels=levels).dequantized
    _, embed = encode_embeddings(state.embeddings, (1 << cfg.embed_bits) - 1, cfg.quant_axis)
    return weights, embed.dequantized["embeddings"]


def decode_stream(
    data: bytes, info: SeqInfo | None
) -> tuple[HNeRVConfig, dict[str, torch.Tensor], torch.Tensor]:
    """(architecture, decoder weights, embeddings) from a stream's bytes, every part checked first."""
    stream = bitstream.unpack(data, expect_method=HNeRVMethod.name, expect_version=HNeRVMethod.version)
    stream.expect_sections(*SECTIONS)
    arch, frames = read_hnerv_header(
        stream, info, lambda a, t: decoder_parameters(a) + embedding_values(a, t)
    )
    for part in ("coding", "embedding"):
        if not isinstance(stream.header.get(part), dict):
            raise BitstreamError(f"hnerv stream header is malformed ({part} is not a mapping); re-encode it")
    embeddings = decode_embeddings(stream, arch, frames)
    weights = coding.decode_tensors(stream.sections, stream.header["coding"], decoder_shapes(arch))
    return arch, weights, embeddings
