"""HiNeRV (Kwan et al., "HiNeRV: Video Compression with Hierarchical Encoding-based Neural Representation",
NeurIPS 2023).

The network (`methods.nerv_family.backbones.hinerv`): temporal feature grids at the frame's index, then
bilinear upsampling stages that add hierarchical local encodings and run ConvNeXt blocks. Training follows
the reference's pipeline (hmkx/HiNeRV, `cfgs/train/hinerv_1920x1080.txt`): patch-based training, then
one-shot pruning (ratio 0.15, the reference's layer-size-weighted magnitude score) with fine-tuning, then
quantization-aware fine-tuning (Quant-Noise 0.9 with a straight-through estimator); the budget's epochs are
split 300 : 60 : 30 like the reference's. The stream is the family's sparse coder, nerv-pruned's too
(`methods.nerv_family.masks.sparse_coding`): the pruning mask range coded with one known probability, the
surviving weights and the dense tensors (grids, encodings' Linear layers, biases) at the level count rate
control fits to the target.

Sizing: the width (``channels``) is bisected for each rung of a grid-size ladder (the reference's S..XXL
grid channels and two smaller rungs), and the shape whose grids hold the share of the parameters closest to
HiNeRV-S's (572,400 of 3,188,933) wins. What follows the reference and what is simplified: docs/hinerv.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from bench import bitstream
from bench.budgets import Budget
from bench.contract import Clip, Context, SeqInfo
from bench.errors import BitstreamError, MethodError
from methods.nerv_family import coding
from methods.nerv_family.adapter import (
    RENDER_BATCH,
    NeRVFamilyMethod,
    bisect_integer,
    closest_shape,
    framing_bits,
)
from methods.nerv_family.backbones.hinerv import (
    HiNeRV,
    HiNeRVConfig,
    count_parameters,
    grid_parameters,
    macs_per_pixel,
    parameter_shapes,
    prunable,
    scale_plan,
)
from methods.nerv_family.backbones.render import render_inputs
from methods.nerv_family.coding import BITS_PER_WEIGHT_AT_8
from methods.nerv_family.header import read_header
from methods.nerv_family.masks.pruning import magnitude_masks
from methods.nerv_family.masks.sparse_coding import (
    SECTIONS,
    SparseCounts,
    decode_sparse,
    encode_sparse,
    fit_levels,
    masked_weights,
    sparse_header,
)
from methods.nerv_family.masks.sparse_coding import predicted_bits as sparse_predicted_bits
from methods.nerv_family.training import TrainResult, train, with_budget_schedule

# (base grid channels, local grid channels): two rungs below the reference's S, then S, M, L, XL, XXL
GRID_LADDER = ((1, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64))
REFERENCE_GRID_SHARE = 572_400 / 3_188_933  # HiNeRV-S at 1080p, 600 frames: grids / all parameters
MAX_CHANNELS = 4096
PLAN_BAND = 0.05  # predicted size within 5 % of the target; rate control lands the rest
RATE_CONTROL_BAND = 0.25
PHASES = (300, 60, 30)  # the reference's epochs: training, pruning fine-tune, quantization-aware fine-tune
REFERENCE_PATCH_GRID = (9, 16)  # 120x120 patches of a 1080x1920 frame


@dataclass(frozen=True)
class HiNeRVMethodConfig:
    """Hyper-parameters; `plan` fills in the sized width, the grid rung, the scales and the schedule."""

    channels: int = 280  # width of the first stage (the reference's S: 280); `plan` sizes it
    reduce: float = 2.0  # width ratio between stages (--channels-reduce 2.0)
    min_width: int = 4  # narrowest stage (--channels-min; the reference's 1 leaves a 1-wide LayerNorm, all zeros, at cpu widths)
    base_grid_channels: int = 2  # channels of the first base grid (S: 2); `plan` picks a ladder rung
    enc_grid_channels: int = 4  # channels of the first local grid (S: 4); `plan` picks a ladder rung
    base_grid_levels: int = 2  # base grids (--base-grid-level 2)
    enc_grid_levels: int = 3  # local grids per stage (--enc-grid-level 3)
    base_grid_ratio: float = 0.25  # base grid frames / clip frames (the reference's 150 of 600)
    kernel: int = 3  # depth-wise kernel of every stage and the stem (--kernels 3 3 3 3 --stem-kernels 3)
    depth: int = 3  # ConvNeXt blocks of each stage but the last, which has one (--depths 3 3 3 1)
    expansion: float = 4.0  # hidden width ratio of those stages; the last has 1 (--exps 4 4 4 1)
    base_size: tuple[int, ...] = ()  # (rows, columns) of the base map; empty: chosen from the clip
    scales: tuple[int, ...] = ()  # upsampling factors; empty: chosen from the clip (1080p: 5, 3, 2, 2)
    patch_grid: tuple[int, ...] = (3, 4)  # patches per frame (rows, columns); (1, 1): whole frames
    prune_ratio: float = 0.15  # fraction of the prunable weights removed (--prune-ratio 0.15)
    prune_weight: float = 0.5  # magnitude score divided by layer size ** this (--prune-weight 0.5)
    quant_noise: float = 0.9  # fraction of weights fake-quantized per step in QAT (--quant-noise 0.9)
    quant_lr_scale: float = 0.1  # QAT learning rate / training's (--quant-lr-scale 0.1)
    bits: int = 8  # nominal quantization bits (the reference's best: 8)
    rate_control: bool = True  # tune the level count so the stream lands on `target_bpp`
    target_bpp: float | None = None  # set by `plan`
    quant_axis: str = "auto"  # per "channel", per "tensor", or "auto": whichever codes smaller
    loss: str = "mse"  # "mse" or "nerv" (0.7 L1 + 0.3 (1 - SSIM)); the reference: 0.7 L1 + 0.3 MS-SSIM
    epochs: int | None = None  # None: the budget's (split 300 : 60 : 30 over the three phases)
    lr: float | None = None  # None: the budget's
    batch_size: int | None = None  # frames' worth of patches per step; None: the budget's
    warmup: float = 0.1  # fraction of training's iterations of warm-up (the reference: 30 of 300 epochs)
    compile: bool = False  # compile the training phase's step (torch.compile; docs/performance.md)
    # a job that leaves `compile` off keeps the key it had before the field existed
    UNKEYED_DEFAULTS: ClassVar[tuple[str, ...]] = ("compile",)

    def __post_init__(self) -> None:
        for name in ("base_size", "scales", "patch_grid"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    def architecture(self, frames: int) -> HiNeRVConfig:
        if not (self.base_size and self.scales):
            raise MethodError("hinerv config has no base size or scales yet; plan it on a clip")
        n = len(self.scales)
        arch = HiNeRVConfig(
            base_size=self.base_size,
            frames=frames,
            channels=self.channels,
            reduce=self.reduce,
            min_width=self.min_width,
            scales=self.scales,
            depths=(self.depth,) * (n - 1) + (1,),
            exps=(self.expansion,) * (n - 1) + (1.0,),
            kernels=(self.kernel,) * n,
            stem_kernel=self.kernel,
            base_grid_frames=max(1, round(frames * self.base_grid_ratio)),
            base_grid_channels=self.base_grid_channels,
            base_grid_levels=self.base_grid_levels,
            enc_grid_channels=self.enc_grid_channels,
            enc_grid_levels=self.enc_grid_levels,
        )
        arch.validate()
        return arch

    def patch(self, arch: HiNeRVConfig) -> tuple[int, int]:
        """Patch size: the frame cut into `patch_grid`, each side a multiple of the total scale."""
        height, width = arch.output_size
        total = math.prod(arch.scales)
        rows, cols = self.patch_grid
        if (
            len(self.patch_grid) != 2
            or rows < 1
            or cols < 1
            or arch.base_size[0] % rows
            or arch.base_size[1] % cols
        ):
            raise MethodError(
                f"hinerv patch_grid {self.patch_grid} must split the {arch.base_size[1]}x{arch.base_size[0]} "
                f"base map ({total} px cells) evenly; choose divisors of its sides"
            )
        return height // rows, width // cols


@dataclass
class HiNeRVState:
    config: HiNeRVMethodConfig
    arch: HiNeRVConfig
    weights: dict[str, torch.Tensor]  # float32 on the CPU, pruned weights exactly zero
    masks: dict[str, torch.Tensor]  # bool, one per prunable weight
    results: list[TrainResult]
    levels: int  # the level count quantization-aware training used
    coding: dict[str, Any] = field(default_factory=dict)  # filled by `encode`


# --- sizes ------------------------------------------------------------------------------------------------


def _header(arch: HiNeRVConfig, levels: int, kept: int) -> dict[str, Any]:
    return sparse_header(arch, *arch.output_size, arch.frames, levels, kept)


def predicted_bits(arch: HiNeRVConfig, cfg: HiNeRVMethodConfig) -> float:
    """Stream size before training: survivors and dense tensors (grids, encodings, biases) at the calibrated
    coded rate, positions at the mask's entropy, side information and framing."""
    shapes = parameter_shapes(arch)
    counts = SparseCounts.of(shapes, prunable(shapes), cfg.prune_ratio)
    per_weight = BITS_PER_WEIGHT_AT_8 * cfg.bits / 8
    header = _header(arch, (1 << cfg.bits) - 1, counts.kept)
    framing = framing_bits(HiNeRVMethod.name, HiNeRVMethod.version, header, SECTIONS)
    return sparse_predicted_bits(counts, per_weight, per_weight, framing)


# --- compression during training: masks and quantization noise ---------------------------------------------


def fake_quantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """x on `levels` + 1 uniform steps between its min and max (the coder's per-tensor grid), with a
    straight-through gradient."""
    lo, hi = x.min().detach(), x.max().detach()
    step = (hi - lo).clamp_min(1e-12) / levels
    q = torch.round((x - lo) / step) * step + lo
    return x + (q - x).detach()


class Compressing(nn.Module):
    """The network as its compression phases train it: pruned weights masked, and in QAT a random
    `noise` fraction of every tensor replaced by its quantized value at each step (Quant-Noise)."""

    def __init__(
        self,
        model: HiNeRV,
        masks: dict[str, torch.Tensor],
        levels: int = 0,
        noise: float = 0.0,
        seed: int = 0,
    ):
        super().__init__()
        self.model = model
        self.levels, self.noise, self.seed = levels, noise, seed
        self.noise_generator: torch.Generator | None = None  # seeded: the same job draws the same noise
        self.names = list(masks)
        for i, name in enumerate(self.names):
            self.register_buffer(f"mask{i}", masks[name].to(torch.float32))
        self.patches_per_frame = model.patches_per_frame
        self.bf16_on_cpu = model.bf16_on_cpu

    def batch_input(self, times: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return self.model.batch_input(times, frames)

    def patch_batch(self, frame, patch, frames):  # noqa: ANN001, ANN201 - the loop's patch protocol
        return self.model.patch_batch(frame, patch, frames)

    def effective(self) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        for i, name in enumerate(self.names):
            params[name] = params[name] * getattr(self, f"mask{i}")
        if self.levels and self.training:
            device = next(iter(params.values())).device
            if self.noise_generator is None or self.noise_generator.device != device:
                self.noise_generator = torch.Generator(device=device).manual_seed(self.seed)
            for name, p in params.items():
                draw = torch.rand(p.shape, generator=self.noise_generator, device=device)
                keep = (draw > self.noise).to(p.dtype)
                params[name] = p * keep + fake_quantize(p, self.levels) * (1 - keep)
        return params

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.effective(), (inputs,))


# --- sizing -------------------------------------------------------------------------------------------------


def _shaped(
    base: HiNeRVMethodConfig, channels: int, rung: tuple[int, int], plan: tuple
) -> HiNeRVMethodConfig:
    return dataclasses.replace(
        base,
        channels=channels,
        base_grid_channels=rung[0],
        enc_grid_channels=rung[1],
        base_size=plan[0],
        scales=plan[1],
    )


# --- the method ---------------------------------------------------------------------------------------------


class HiNeRVMethod(NeRVFamilyMethod):
    name = "hinerv"
    # 2: gathers by torch.gather, LayerNorm in float32, fp32 on CPUs; 3: upsampling and cell encodings by
    # slices, not gathers (so a compiled step is deterministic): its bytes changed each time
    version = "3"
    description = (
        "HiNeRV: temporal feature grids, hierarchical local encodings, bilinear ConvNeXt stages, patch training;"
        " pruned, quantization-aware fine-tuned, weights and mask range coded"
    )
    Config = HiNeRVMethodConfig
    rate_ladder: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2, 0.4)
    trains = True
    # Opt-in: one smoke job (4 frames at 72x128, 80 epochs) trained ~96 s here against a few seconds for
    # nerv-dense, so four cpu-budget jobs would push the default run far past 15 minutes on 2 cores.
    in_default_run = False
    requires: ClassVar[tuple[str, ...]] = ()

    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> HiNeRVMethodConfig:
        return with_budget_schedule(self.size_network(clip.info, target_bpp), budget, target_bpp=target_bpp)

    def size_network(self, info: SeqInfo, target_bpp: float) -> HiNeRVMethodConfig:
        """The width and grid rung closest to the target rate (module docstring)."""
        base = self.base_config
        plan = (
            (base.base_size, base.scales)
            if base.base_size and base.scales
            else scale_plan(info.height, info.width)
        )
        frames = info.num_frames
        target = target_bpp * info.pixels

        def size(cfg: HiNeRVMethodConfig) -> float:
            return predicted_bits(cfg.architecture(frames), cfg)

        smallest = _shaped(base, 1, GRID_LADDER[0], plan)
        smallest.patch(smallest.architecture(frames))  # a patch grid the clip cannot take is refused here
        self.refuse_unreachable(size(smallest), info, target_bpp)

        def bracket(rung: tuple[int, int]) -> list[HiNeRVMethodConfig]:
            below = lambda c: size(_shaped(base, c, rung, plan)) <= target  # noqa: E731
            if not below(1):
                return [_shaped(base, 1, rung, plan)]
            return [_shaped(base, c, rung, plan) for c in bisect_integer(below, 1, MAX_CHANNELS)]

        def share(cfg: HiNeRVMethodConfig, rung: Any, miss: float) -> float:
            arch = cfg.architecture(frames)
            return (
                abs(math.log(grid_parameters(arch) / count_parameters(arch) / REFERENCE_GRID_SHARE))
                + 4 * miss
            )

        best = closest_shape(GRID_LADDER, bracket, size, target, PLAN_BAND, share)
        if best is None:
            best = closest_shape(
                GRID_LADDER, bracket, size, target, RATE_CONTROL_BAND, lambda c, w, miss: miss
            )
        if best is None:
            raise self.no_shape_found(target_bpp, RATE_CONTROL_BAND)
        return best

    # -- fit -----------------------------------------------------------------------------------------------
    def fit(self, frames: np.ndarray, config: HiNeRVMethodConfig, ctx: Context) -> HiNeRVState:
        arch = config.architecture(int(frames.shape[0]))
        self.check_frame_size(arch.output_size, frames)
        model = self.seeded(lambda: HiNeRV(arch, config.patch(arch)), ctx.seed)
        epochs = config.epochs or ctx.budget.epochs
        share = [p / sum(PHASES) for p in PHASES]
        phase_epochs = [max(1, round(epochs * s)) for s in share]
        lr = config.lr or ctx.budget.lr
        batch = (config.batch_size or ctx.budget.batch_size) * model.patches_per_frame
        limit = ctx.time_limit_s

        def phase(
            net: nn.Module, index: int, rate: float, warmup: float, desc: str, compile: bool = False
        ) -> TrainResult:
            return train(
                net,
                frames,
                ctx,
                epochs=self.epochs_for(phase_epochs[index], ctx),
                lr=rate,
                batch_size=batch,
                loss=config.loss,
                warmup=warmup,
                time_limit_s=limit * share[index] if limit else None,
                checkpoint=ctx.checkpoint_path().with_name(f"{desc}.pt"),
                desc=desc,
                compile=compile,
            )

        results = [phase(model, 0, lr, config.warmup, "hinerv", config.compile)]
        weights = {k: v.detach().float().cpu() for k, v in model.named_parameters()}
        masks = magnitude_masks(weights, config.prune_ratio, prunable(weights), config.prune_weight)
        pruning = Compressing(model, masks)
        with torch.no_grad():  # pruned weights are zero in the parameters too; a fresh Adam never moves them
            for name, mask in masks.items():
                model.get_parameter(name).mul_(mask.to(model.get_parameter(name).device))
        results.append(phase(pruning, 1, lr, 0.0, "hinerv-prune"))
        levels = (1 << config.bits) - 1
        budget = _rate_budget(arch, masks, config)
        if budget is not None:
            pruned = masked_weights(model.named_parameters(), masks)
            levels = fit_levels(pruned, masks, budget, config.quant_axis)
        qat = Compressing(model, masks, levels, config.quant_noise, ctx.seed)
        results.append(phase(qat, 2, lr * config.quant_lr_scale, 0.0, "hinerv-qat"))
        weights = masked_weights(model.named_parameters(), masks)
        return HiNeRVState(config, arch, weights, masks, results, levels)

    # -- encode / decode -----------------------------------------------------------------------------------
    def encode(self, state: HiNeRVState) -> bytes:
        cfg, arch = state.config, state.arch
        budget = _rate_budget(arch, state.masks, cfg)
        coded = encode_sparse(state.weights, state.masks, (1 << cfg.bits) - 1, cfg.quant_axis, budget)
        state.coding = coded.stats
        header = _header(arch, coded.levels, coded.kept)
        return bitstream.pack(self.name, self.version, header, coded.sections)

    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        arch, weights = decode_stream(data, info)
        return render_network(arch, weights, ctx.device).numpy()

    def stats(self, state: HiNeRVState) -> dict[str, Any]:
        arch = state.arch
        kept = sum(int(m.sum()) for m in state.masks.values())
        out: dict[str, Any] = {
            "parameters": count_parameters(arch),
            "grid_parameters": grid_parameters(arch),
            "nonzeros": sum(int(torch.count_nonzero(w)) for w in state.weights.values()),
            "kept_weights": kept,
            "macs_per_pixel": macs_per_pixel(arch),
            "channels": arch.channels,
            "scales": list(arch.scales),
            "qat_levels": state.levels,
            "phases": [r.summary() for r in state.results],
            **state.results[-1].summary(),
        }
        out["epochs"] = sum(r.epochs for r in state.results)
        out["train_seconds"] = round(sum(r.seconds for r in state.results), 2)
        if state.coding:
            out["coding"] = state.coding
        return out


def _rate_budget(arch: HiNeRVConfig, masks: dict[str, torch.Tensor], cfg: HiNeRVMethodConfig) -> float | None:
    """What rate control leaves the positions and values: the target's bits less the stream's framing
    (None: no rate control, the nominal `bits` quantize)."""
    if not cfg.rate_control or cfg.target_bpp is None:
        return None
    height, width = arch.output_size
    header = _header(arch, coding.MAX_LEVELS, sum(int(m.sum()) for m in masks.values()))
    framing = framing_bits(HiNeRVMethod.name, HiNeRVMethod.version, header, SECTIONS)
    return cfg.target_bpp * arch.frames * height * width - framing


def decode_stream(data: bytes, info: SeqInfo | None) -> tuple[HiNeRVConfig, dict[str, torch.Tensor]]:
    """(architecture, weights) from a stream's bytes, every part checked before it is used."""
    stream = bitstream.unpack(data, expect_method=HiNeRVMethod.name, expect_version=HiNeRVMethod.version)
    stream.expect_sections(*SECTIONS)
    arch, frames = read_header(
        stream,
        info,
        HiNeRVConfig.from_json,
        lambda a: (a.channels, *a.base_size, a.base_grid_channels * 8, a.enc_grid_channels * 8),
        lambda a, t: count_parameters(a),
    )
    if arch.frames != frames:
        raise BitstreamError("hinerv stream header's network spans another frame count; re-encode it")
    shapes = parameter_shapes(arch)
    return arch, decode_sparse(stream, shapes, prunable(shapes))


def render_network(arch: HiNeRVConfig, weights: dict[str, torch.Tensor], device: str) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) of the whole-frame network with exactly these weights."""
    model = HiNeRV(arch)
    model.load_state_dict(weights, strict=True)
    index = torch.arange(arch.frames)
    inputs = torch.stack([index, torch.zeros_like(index), torch.zeros_like(index)], dim=1)
    return render_inputs(model.to(device), inputs, RENDER_BATCH, device)
