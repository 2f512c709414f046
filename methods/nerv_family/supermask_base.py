"""The adapter both supermask methods share (they differ only in `scale_mode`): sizing from the level
distribution's entropy, training the scores (and scales), the stream of seed, level maps and scales.

Two backbones: ``nerv`` (the default, the seed paper's: frame index -> masked NeRV) and ``hnerv`` (frame
-> masked ConvNeXt encoder -> embedding -> masked HNeRV decoder; `methods.nerv_family.supermask_hnerv`).
A stream's header names its backbone (``"backbone": "hnerv"``; a header without one is a NeRV stream, the
format every earlier stream has), and a decoder follows the header.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from bench import bitstream
from bench.budgets import Budget
from bench.contract import Clip, Context, PerfSection, SeqInfo
from bench.errors import BitstreamError
from methods.nerv_family import supermask_hnerv
from methods.nerv_family.adapter import (
    RENDER_BATCH,
    NeRVFamilyMethod,
    bisect_integer,
    closest_shape,
    framing_bits,
)
from methods.nerv_family.backbones.hnerv import HNeRVConfig
from methods.nerv_family.backbones.nerv import (
    NeRVConfig,
    architecture_of,
    choose_grid,
    macs_per_pixel,
    render,
)
from methods.nerv_family.header import network_header, read_network_header
from methods.nerv_family.masks import level_code
from methods.nerv_family.masks.layers import (
    layer_alphas,
    layer_scales,
    level_maps,
    load_code,
    parameter_groups,
)
from methods.nerv_family.masks.masked_nerv import build_generator, masked_shapes
from methods.nerv_family.masks.settings import MaskSettings
from methods.nerv_family.training import TrainResult, train, with_budget_schedule

SIZE_AIM = level_code.SIZE_AIM
SCORE_LR_SHARE = 0.6  # the scores' peak lr as a share of the budget's (weight) lr: 3e-3 at 5e-3
# On HNeRV, 3e-3 collapsed the fixed variant at both rates tried (one seed, cpu budget) and 1e-3 trained
# both variants through: docs/supermask_hnerv.md.
SCORE_LR_SHARE_HNERV = 0.2
BACKBONES = ("nerv", "hnerv")
# The header's architecture fields of each backbone: a stream whose header names one backbone but holds the
# other's architecture was forged or mislabelled.
ARCH_FIELDS = {
    "nerv": frozenset(f.name for f in dataclasses.fields(NeRVConfig)),
    "hnerv": frozenset(f.name for f in dataclasses.fields(HNeRVConfig)),
}


@dataclass(frozen=True)
class SupermaskConfig:
    """Hyper-parameters; `plan` fills in the sized shape and the strides. Defaults: docs/supermask_sweep.md."""

    densities: tuple[float, ...] = (0.3, 0.1, 0.03)  # k_1 > ... > k_N; H(p) = 1.245 bits a weight
    weight_init: str = "signed"  # "signed": sign(w0) * c; "normal": w0 * c with w0 ~ N(0, 1)
    scale_rule: str = "variance"  # sqrt(2 / fan_in) / sqrt(E[lambda^2]); "okoshi": sqrt(2 / (fan_in k_1))
    alpha_param: str = "direct"  # learned scales: alpha = c * theta ("direct") or c * exp(theta) ("log")
    # Adam with NeRV's schedule; the share follows the budget's lr, so `--lr` moves it too. The sweep's best
    # on NeRV at the short budgets' 5e-3 was 3e-3: the fixed variant needs it low, learned does not mind.
    score_lr: float | None = None  # None: the budget's lr x its score_lr_share, else x SCORE_LR_SHARE(_HNERV)
    alpha_lr: float = 1e-1  # learned scales only; relative to c (theta starts at 1, or 0 for "log")
    batch_size: int | None = None  # None: the budget's (cpu: 2, the sweep's best; 4 and 1 were worse)
    epochs: int | None = None  # None: the budget's
    warmup: float | None = None  # None: the budget's
    loss: str = "mse"  # "mse" (the seed paper's loss) or "nerv" (0.7 L1 + 0.3 (1 - SSIM))
    # Base shape (NeRV-S); `plan` scales the stem, C0 and the lower width together to the target rate.
    stem_dims: tuple[int, ...] = (512,)  # hidden widths of the MLP stem of the base shape (NeRV-S)
    fc_dim: int = 26  # C0: channels of the stem's output grid in the base shape (NeRV-S)
    lower_width: int = 96  # the narrowest conv width of the base shape (NeRV-S)
    expansion: float = 1.0  # C1 = C0 * expansion
    reduction: int = 2  # each block's width is the previous one // reduction, down to the lower width
    embed_base: float = 1.25  # b of the positional encoding
    embed_levels: int = 40  # l: frequencies of the positional encoding (2l stem inputs)
    activation: str = "gelu"  # gelu, relu, silu or leaky
    start: tuple[int, int] = (9, 16)  # preferred stem grid; other aspect ratios get their own
    strides: tuple[int, ...] = ()  # empty: chosen from the clip size
    width: float = 1.0  # width factor of the sized shape relative to the base (set by `plan`)
    # The shape fields above are NeRV's; on HNeRV the base shape is hnerv's (the reference's Bunny model).
    backbone: Literal["nerv", "hnerv"] = "nerv"  # "nerv" or "hnerv" (masked encoder, coded embeddings)
    hnerv_arch: HNeRVConfig | None = None  # backbone hnerv: the sized HNeRV architecture (set by `plan`)
    encoder_lr: float | None = None  # backbone hnerv: encoder score lr / decoder's (unset: 0.1 on hnerv)

    # Fields added after job keys existed: left out of a key while they hold their default, so every
    # earlier key (and the default's) stays what it was (`bench.identity.hyper_identity`).
    UNKEYED_DEFAULTS: ClassVar[tuple[str, ...]] = ("backbone", "hnerv_arch", "encoder_lr")

    def __post_init__(self) -> None:
        object.__setattr__(self, "densities", tuple(float(k) for k in self.densities))
        for name in ("stem_dims", "start", "strides"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone '{self.backbone}' is not one of {', '.join(BACKBONES)}")
        if self.backbone == "hnerv" and self.encoder_lr is None:
            # resolved here, not at fit: the share is then in the job key, so a changed default is a new job
            object.__setattr__(self, "encoder_lr", supermask_hnerv.ENCODER_LR_SHARE_MASKED)
        if self.encoder_lr is not None:
            top = supermask_hnerv.MAX_ENCODER_LR
            if self.backbone != "hnerv":
                raise ValueError("encoder_lr applies to backbone=hnerv only (NeRV has no encoder); drop it")
            if not (math.isfinite(self.encoder_lr) and 0 <= self.encoder_lr <= top):
                raise ValueError(
                    f"encoder_lr must be a share of the decoder's lr in [0, {top:g}] (0 keeps the "
                    f"encoder's random masks), got {self.encoder_lr!r}"
                )

    def architecture(self) -> NeRVConfig:
        return architecture_of(self)

    def score_lr_at(self, budget: Budget) -> float:
        """The scores' peak learning rate under `budget`: this config's, else the budget's share of its lr."""
        share = SCORE_LR_SHARE_HNERV if self.backbone == "hnerv" else SCORE_LR_SHARE
        if budget.score_lr_share is not None:
            share = budget.score_lr_share
        return self.score_lr or share * budget.lr

    def mask_settings(self, scale_mode: str) -> MaskSettings:
        return MaskSettings(self.densities, scale_mode, self.weight_init, self.scale_rule, self.alpha_param)


@dataclass
class SupermaskState:
    config: SupermaskConfig
    settings: MaskSettings
    seed: int
    model: Any  # the trained network (scores), on the training device: a MaskedNeRV or a MaskedHNeRV
    levels: list[torch.Tensor]  # uint8 level map per coded layer, on the CPU
    alphas: torch.Tensor  # (coded layers, N) float32, on the CPU
    num_frames: int
    result: TrainResult
    coding: dict[str, Any] = field(default_factory=dict)  # filled by `encode`
    embeddings: torch.Tensor | None = None  # backbone hnerv: the encoder output per frame (T, C, h, w)


def _header(
    arch: NeRVConfig, settings: MaskSettings, seed: int, height: int, width: int, frames: int
) -> dict:
    return network_header(arch, height, width, frames, masks=level_code.masks_header(settings, seed))


def mask_bits(arch: NeRVConfig, settings: MaskSettings) -> float:
    """Expected coded bits of a NeRV's level maps (`level_code.mask_bits`)."""
    return level_code.mask_bits(masked_shapes(arch), settings)


def predicted_bits(
    arch: NeRVConfig, settings: MaskSettings, height: int, width: int, frames: int, method: str, version: str
) -> float:
    """Stream size before training: level maps at their known entropy, alphas, header and framing."""
    sections = level_code.section_names(settings.scale_mode)
    framing = framing_bits(method, version, _header(arch, settings, 0, height, width, frames), sections)
    return level_code.code_bits(masked_shapes(arch), settings) + framing


def stream_backbone(stream: bitstream.Stream) -> str:
    """The backbone a supermask stream's header names (none: "nerv"), refused where it is unknown or where
    the header's architecture is the other backbone's (a stream decoded as the other backbone)."""
    backbone = stream.header.get("backbone", "nerv")
    if type(backbone) is not str or backbone not in BACKBONES:
        raise BitstreamError(
            f"{stream.method} stream header names an unknown backbone {backbone!r:.40}; re-encode it"
        )
    arch = stream.header.get("arch")
    if isinstance(arch, dict):
        for other, names in ARCH_FIELDS.items():
            if other != backbone and set(arch) == names:
                raise BitstreamError(
                    f"{stream.method} stream header names backbone '{backbone}' but holds the {other} "
                    "backbone's architecture; it was forged or mislabelled, re-encode it"
                )
    return backbone


def _scaled(base: SupermaskConfig, width: float, stem: int, start: tuple[int, int], strides: tuple[int, ...]):
    return dataclasses.replace(
        base,
        stem_dims=tuple(max(1, round(d * stem / base.stem_dims[0])) for d in base.stem_dims)
        if base.stem_dims
        else (),
        fc_dim=max(1, round(base.fc_dim * width)),
        lower_width=max(1, round(base.lower_width * width)),
        width=round(float(width), 6),
        start=start,
        strides=strides,
    )


class SupermaskMethod(NeRVFamilyMethod):
    """Adapter shared by both variants; `scale_mode` ("fixed" or "learned") is their only difference."""

    scale_mode: ClassVar[str]
    Config = SupermaskConfig
    rate_ladder: ClassVar[tuple[float, ...]] = (0.1, 0.2, 0.4)
    trains = True

    @classmethod
    def perf_sections(cls) -> dict[str, PerfSection]:
        from methods.nerv_family import timing

        return {**super().perf_sections(), "masks": timing.masks_section}

    # -- plan --------------------------------------------------------------------------------------------
    def size_network(self, base: SupermaskConfig, info: SeqInfo, target_bpp: float) -> SupermaskConfig:
        """The shape closest to the target rate. NeRV: C0 and the lower width follow a width factor, the stem
        width is then solved (integer bisection) to meet the target, and among the candidates within 2 % the
        one whose stem follows the same factor wins. HNeRV: `supermask_hnerv.size_network`."""
        if base.backbone == "hnerv":
            return supermask_hnerv.size_network(self, base, info, target_bpp)
        settings = base.mask_settings(self.scale_mode)
        start, strides = (
            (base.start, base.strides) if base.strides else choose_grid(info.height, info.width, base.start)
        )
        target = target_bpp * info.pixels
        base_stem = base.stem_dims[0] if base.stem_dims else 1

        def size(cfg: SupermaskConfig) -> float:
            return predicted_bits(
                cfg.architecture(),
                settings,
                info.height,
                info.width,
                info.num_frames,
                self.name,
                self.version,
            )

        self.refuse_unreachable(size(_scaled(base, 1e-9, 1, start, strides)), info, target_bpp)

        def bracket(width: float) -> list[SupermaskConfig]:
            below = lambda stem: size(_scaled(base, width, stem, start, strides)) <= target  # noqa: E731
            stems = bisect_integer(below, 1, 1 << 16)  # stem width: size grows with it
            return [_scaled(base, width, stem, start, strides) for stem in stems]

        def score(cfg: SupermaskConfig, width: float, miss: float) -> float:
            return abs(math.log(cfg.stem_dims[0] / base_stem / width)) if base.stem_dims else 0.0

        best = closest_shape(np.geomspace(1e-3, 16.0, 160), bracket, size, target, SIZE_AIM, score)
        if best is None:
            raise self.no_shape_found(target_bpp, SIZE_AIM)
        return best

    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> SupermaskConfig:
        return self.plan_from(self.base_config, clip, target_bpp, budget)

    def plan_from(
        self, base: SupermaskConfig, clip: Clip, target_bpp: float, budget: Budget
    ) -> SupermaskConfig:
        """`plan` starting from a given config instead of the defaults (for sweeps)."""
        return with_budget_schedule(self.size_network(base, clip.info, target_bpp), budget)

    # -- fit ---------------------------------------------------------------------------------------------
    def fit(self, frames: np.ndarray, config: SupermaskConfig, ctx: Context) -> SupermaskState:
        if config.backbone == "hnerv":
            return supermask_hnerv.fit(self, frames, config, ctx)
        arch = config.architecture()
        self.check_frame_size(arch.output_size, frames)
        settings = config.mask_settings(self.scale_mode)
        model = build_generator(arch, settings, ctx.seed)
        result = self.train_masks(model, frames, config, ctx)
        return SupermaskState(
            config,
            settings,
            ctx.seed,
            model,
            level_maps(model),
            layer_alphas(model),
            int(frames.shape[0]),
            result,
        )

    def train_masks(
        self, model: Any, frames: np.ndarray, config: SupermaskConfig, ctx: Context
    ) -> TrainResult:
        """Train the scores (and learned scales) of every masked layer of `model`, the weights untouched."""
        score_lr = config.score_lr_at(ctx.budget)
        if config.backbone == "hnerv":
            groups = supermask_hnerv.parameter_groups_split(model, self.scale_mode, score_lr, config)
        else:
            groups = parameter_groups(model, self.scale_mode, score_lr, config.alpha_lr)
        return train(
            model,
            frames,
            ctx,
            epochs=self.epochs_for(config.epochs or ctx.budget.epochs, ctx),
            lr=score_lr,
            batch_size=config.batch_size or ctx.budget.batch_size,
            loss=config.loss,
            warmup=config.warmup if config.warmup is not None else ctx.budget.warmup,
            params=groups,
            desc=self.name,
        )

    # -- encode / decode ---------------------------------------------------------------------------------
    def encode(self, state: SupermaskState) -> bytes:
        if state.config.backbone == "hnerv":
            return supermask_hnerv.encode(self, state)
        arch = state.config.architecture()
        sections, state.coding = level_code.encode_code(state.levels, state.alphas, state.settings)
        height, width = arch.output_size
        header = _header(arch, state.settings, state.seed, height, width, state.num_frames)
        return bitstream.pack(self.name, self.version, header, sections)

    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        """Frames from the bytes alone, on the backbone the stream's header names (not this object's)."""
        stream = bitstream.unpack(data, expect_method=self.name, expect_version=self.version)
        if stream_backbone(stream) == "hnerv":
            return supermask_hnerv.decode(self, stream, info, ctx)
        stream.expect_sections(*level_code.section_names(self.scale_mode))
        arch, frames = read_network_header(stream, info)
        settings, seed = level_code.read_settings(stream.header, self.name, self.scale_mode)
        levels, alphas = level_code.decode_code(stream, masked_shapes(arch), settings)
        model = build_generator(arch, settings, seed)
        load_code(model, levels, alphas if alphas is not None else layer_alphas(model))
        return render(model.to(ctx.device), frames, batch_size=RENDER_BATCH, device=ctx.device).numpy()

    def stats(self, state: SupermaskState) -> dict[str, Any]:
        if state.config.backbone == "hnerv":
            return supermask_hnerv.stats(self, state)
        out = {
            **level_code.level_stats(state.levels, state.alphas, state.settings, layer_scales(state.model)),
            "macs_per_pixel": macs_per_pixel(state.config.architecture()),
            "stem_dims": list(state.config.stem_dims),
            "fc_dim": state.config.fc_dim,
            "lower_width": state.config.lower_width,
            **state.result.summary(),
        }
        if state.coding:
            out["coding"] = dict(state.coding)
        return out
