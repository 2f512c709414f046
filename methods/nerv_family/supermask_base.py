"""The adapter both supermask methods share (they differ only in `scale_mode`): sizing from the level
distribution's entropy, training the scores (and scales), the stream of seed, level maps and scales."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from bench import bitstream
from bench.budgets import Budget
from bench.contract import Clip, Context, PerfSection, SeqInfo
from bench.errors import BitstreamError, MethodError
from methods.nerv_family import coding
from methods.nerv_family.adapter import (
    CODER_FINAL_BITS,
    RENDER_BATCH,
    NeRVFamilyMethod,
    bisect_integer,
    closest_shape,
    framing_bits,
)
from methods.nerv_family.backbones.nerv import (
    NeRVConfig,
    NeRVGenerator,
    architecture_of,
    choose_grid,
    macs_per_pixel,
    render,
)
from methods.nerv_family.header import network_header, read_network_header
from methods.nerv_family.masks.layers import (
    layer_alphas,
    level_maps,
    load_code,
    masked_layers,
    parameter_groups,
)
from methods.nerv_family.masks.masked_nerv import build_generator, masked_shapes
from methods.nerv_family.masks.settings import MaskSettings, kept_counts
from methods.nerv_family.training import TrainResult, train, with_budget_schedule

SIZE_AIM = 0.02  # the size is predictable: aim within 2 %
CODER_SLACK_BITS = CODER_FINAL_BITS  # the level maps' range coder ends on its final words
# The range coder's excess over the exact code length, per symbol: measured 1.2e-4 bits on 3M-symbol maps.
CODER_EXCESS_PER_SYMBOL = 1e-3
SCORE_LR_SHARE = 0.6  # the scores' peak lr as a share of the budget's (weight) lr: 3e-3 at 5e-3
MAX_SEED = 1 << 63  # job seeds are 63-bit; a larger one is forged (and would build another network)


@dataclass(frozen=True)
class SupermaskConfig:
    """Hyper-parameters; `plan` fills in the sized shape and the strides. Defaults: docs/supermask_sweep.md."""

    densities: tuple[float, ...] = (0.3, 0.1, 0.03)  # k_1 > ... > k_N; H(p) = 1.245 bits a weight
    weight_init: str = "signed"  # "signed": sign(w0) * c; "normal": w0 * c with w0 ~ N(0, 1)
    scale_rule: str = "variance"  # sqrt(2 / fan_in) / sqrt(E[lambda^2]); "okoshi": sqrt(2 / (fan_in k_1))
    alpha_param: str = "direct"  # learned scales: alpha = c * theta ("direct") or c * exp(theta) ("log")
    # Adam with NeRV's schedule; None: SCORE_LR_SHARE x the budget's lr (so `--lr` moves it too). The sweep's
    # best at the short budgets' 5e-3 was 3e-3: the fixed variant needs it low, learned does not mind.
    score_lr: float | None = None
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "densities", tuple(float(k) for k in self.densities))
        for name in ("stem_dims", "start", "strides"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    def architecture(self) -> NeRVConfig:
        return architecture_of(self)

    def score_lr_at(self, budget_lr: float) -> float:
        """The scores' peak learning rate under a budget whose weights train at `budget_lr`."""
        return self.score_lr or SCORE_LR_SHARE * budget_lr

    def mask_settings(self, scale_mode: str) -> MaskSettings:
        return MaskSettings(self.densities, scale_mode, self.weight_init, self.scale_rule, self.alpha_param)


@dataclass
class SupermaskState:
    config: SupermaskConfig
    settings: MaskSettings
    seed: int
    model: NeRVGenerator  # the trained network (scores), on the training device
    levels: list[torch.Tensor]  # uint8 level map per layer, on the CPU
    alphas: torch.Tensor  # (layers, N) float32, on the CPU
    num_frames: int
    result: TrainResult
    coding: dict[str, Any] = field(default_factory=dict)  # filled by `encode`


def _header(
    arch: NeRVConfig, settings: MaskSettings, seed: int, height: int, width: int, frames: int
) -> dict:
    masks = {
        "densities": list(settings.densities),
        "init": settings.weight_init,
        "scale": settings.scale_rule,
        "seed": seed,
    }
    return network_header(arch, height, width, frames, masks=masks)


def mask_bits(arch: NeRVConfig, settings: MaskSettings) -> float:
    """Expected coded bits of the level maps: each layer's exact level counts at -log2 p_l bits each."""
    return sum(_layer_mask_bits(math.prod(shape), settings.densities) for shape in masked_shapes(arch))


@functools.lru_cache(maxsize=65536)
def _layer_mask_bits(numel: int, densities: tuple[float, ...]) -> float:
    k = (1.0, *densities, 0.0)
    kept = (numel, *kept_counts(numel, densities), 0)
    return -sum((kept[i] - kept[i + 1]) * math.log2(k[i] - k[i + 1]) for i in range(len(k) - 1))


def predicted_bits(
    arch: NeRVConfig, settings: MaskSettings, height: int, width: int, frames: int, method: str, version: str
) -> float:
    """Stream size before training: level maps at their known entropy, alphas, header and framing."""
    sections = {"masks": b""}
    scale_bits = 0
    if settings.scale_mode == "learned":
        sections["scales"] = b""
        scale_bits = 32 * settings.num_levels * len(masked_shapes(arch))
    framing = framing_bits(method, version, _header(arch, settings, 0, height, width, frames), sections)
    return mask_bits(arch, settings) + CODER_SLACK_BITS + scale_bits + framing


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
        """The shape closest to the target rate: C0 and the lower width follow a width factor, the stem width
        is then solved (integer bisection) to meet the target, and among the candidates within 2 % the one
        whose stem follows the same factor wins."""
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
        arch = config.architecture()
        self.check_frame_size(arch.output_size, frames)
        settings = config.mask_settings(self.scale_mode)
        model = build_generator(arch, settings, ctx.seed)
        score_lr = config.score_lr_at(ctx.budget.lr)
        groups = parameter_groups(model, self.scale_mode, score_lr, config.alpha_lr)
        result = train(
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

    # -- encode / decode ---------------------------------------------------------------------------------
    def encode(self, state: SupermaskState) -> bytes:
        arch, settings = state.config.architecture(), state.settings
        symbols = np.concatenate([lv.reshape(-1).numpy() for lv in state.levels]).astype(np.int32)
        masks = coding.encode_symbols(symbols, settings.num_levels + 1, settings.level_probabilities())
        sections = {"masks": masks}
        if self.scale_mode == "learned":
            sections["scales"] = state.alphas.numpy().astype("<f4").tobytes()
        height, width = arch.output_size
        header = _header(arch, settings, state.seed, height, width, state.num_frames)
        state.coding = {
            "masked_weights": int(symbols.size),
            "mask_bits": 8 * len(masks),
            "entropy_bits": round(symbols.size * settings.entropy_bits(), 1),
        }
        return bitstream.pack(self.name, self.version, header, sections)

    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        stream = bitstream.unpack(data, expect_method=self.name, expect_version=self.version)
        stream.expect_sections(*(("masks", "scales") if self.scale_mode == "learned" else ("masks",)))
        arch, frames = read_network_header(stream, info)
        settings, seed = self._read_masks(stream.header)
        shapes = masked_shapes(arch)
        total = sum(math.prod(s) for s in shapes)
        self._check_masks_size(stream.section("masks"), arch, settings, total)
        symbols = coding.decode_symbols(
            stream.section("masks"), total, settings.num_levels + 1, settings.level_probabilities()
        )
        model = build_generator(arch, settings, seed)
        if self.scale_mode == "learned":
            raw = stream.section("scales")
            if len(raw) != 4 * len(shapes) * settings.num_levels:
                raise BitstreamError(f"{self.name} stream's scales section has the wrong size; re-encode it")
            alphas = torch.from_numpy(
                np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(len(shapes), -1)
            )
            if not torch.isfinite(alphas).all():
                raise BitstreamError(f"{self.name} stream holds a non-finite scale; re-encode it")
        else:
            alphas = layer_alphas(model)
        levels, offset = [], 0
        for shape in shapes:
            n = math.prod(shape)
            levels.append(torch.from_numpy(symbols[offset : offset + n].astype(np.uint8).reshape(shape)))
            offset += n
        load_code(model, levels, alphas)
        return render(model.to(ctx.device), frames, batch_size=RENDER_BATCH, device=ctx.device).numpy()

    def _read_masks(self, header: dict[str, Any]) -> tuple[MaskSettings, int]:
        """Mask settings and seed, in exactly the JSON types `_header` writes (a bool is not a seed)."""
        masks = header.get("masks")
        try:
            if not isinstance(masks, dict):
                raise ValueError("masks is not a mapping")
            densities, init, scale, seed = (masks.get(k) for k in ("densities", "init", "scale", "seed"))
            if not isinstance(densities, list) or any(type(k) is not float for k in densities):
                raise ValueError("densities are not a list of numbers")
            if not isinstance(init, str) or not isinstance(scale, str):
                raise ValueError("init and scale must be names")
            if type(seed) is not int or not 0 <= seed < MAX_SEED:
                raise ValueError("the seed is not an integer in [0, 2**63)")
            settings = MaskSettings(tuple(densities), self.scale_mode, init, scale)
        except (ValueError, MethodError) as exc:
            detail = " ".join(str(exc).split())  # one line, whatever text the header smuggled in
            raise BitstreamError(f"{self.name} stream header is malformed ({detail}); re-encode it") from None
        return settings, seed

    def _check_masks_size(self, payload: bytes, arch: NeRVConfig, settings: MaskSettings, total: int) -> None:
        """Refuse a masks section whose length is not the code length its level counts imply, before the range
        decoder is asked for `total` symbols (a forged size would make it allocate them)."""
        expected = mask_bits(arch, settings)
        if abs(8 * len(payload) - expected) > CODER_SLACK_BITS + CODER_EXCESS_PER_SYMBOL * total:
            raise BitstreamError(
                f"{self.name} stream's masks section holds {8 * len(payload)} bits where its header implies "
                f"{expected:.0f}; re-encode it"
            )

    def stats(self, state: SupermaskState) -> dict[str, Any]:
        r = state.result
        symbols = torch.cat([lv.reshape(-1) for lv in state.levels])
        counts = torch.bincount(symbols.long(), minlength=state.settings.num_levels + 1)
        init = torch.tensor([layer.scale for layer in masked_layers(state.model)])[:, None]
        relative = state.alphas / init
        out = {
            "masked_weights": int(symbols.numel()),
            "macs_per_pixel": macs_per_pixel(state.config.architecture()),
            "level_fractions": [round(float(c) / symbols.numel(), 5) for c in counts],
            "stem_dims": list(state.config.stem_dims),
            "fc_dim": state.config.fc_dim,
            "lower_width": state.config.lower_width,
            "alpha_over_init": {
                "min": round(float(relative.min()), 4),
                "max": round(float(relative.max()), 4),
            },
            **r.summary(),
        }
        if state.coding:
            out["coding"] = dict(state.coding)
        return out
