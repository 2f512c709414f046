"""Trained sparse (pruned) NeRV (Chen et al., NeurIPS 2021): the pruned baseline of the study.

Training follows NeRV's pruning recipe: train the dense network, prune it once (one-shot) by global
unstructured magnitude over every stem and conv weight (biases stay), then fine-tune with the mask fixed.
The mask lives in the layers as a buffer and multiplies the weight in every forward pass, so a pruned weight
is exactly zero in the network and gets no gradient; it is also zeroed in the parameter itself, and a fresh
Adam (zero moments) never moves a weight whose gradient is always zero. The surviving weights and the dense
biases are then quantized and range coded with `methods.nerv_family.coding`, as nerv-dense codes its
weights, by the family's sparse coder (`methods.nerv_family.masks.sparse_coding`, which hinerv shares).

The positions of the survivors are part of the stream. NeRV's own code never charged them; here the
zero/non-zero map is range coded with the measured keep fraction (the kept count is in the header) as its
known probability, and appears in the bit breakdown as the ``positions`` section, about n x H_b(keep) bits.
One global probability, not one per layer: on Bunny at the cpu budget, per-layer keep fractions saved only
4-5 % of the position bits (< 1 % of the stream), about what the per-layer framing would cost back.

Defaults: sparsity p = 0.4, the prune ratio of NeRV's pruning command; the budget's epochs (or time limit)
are split 80 % dense / 20 % fine-tuning. NeRV fine-tuned 50 (paper) or 100 (its pruning command) epochs
after 300-1200 dense ones, a smaller share than short budgets can afford. On 16 Bunny frames at 180x320,
0.1 bpp, 60 epochs (one seed): fine-tuning shares 0.1 / 0.2 / 0.3 decoded at 22.26 / 22.31 / 22.36 dB, a
single epoch of recovery at 21.60 dB. The fine-tuning restarts NeRV's schedule without warm-up (its pruning
command sets ``--warmup 0``; a 20 % warm-up measured 22.27 dB): cosine from the full learning rate to 0.

Sizing for the rate: predicted size = kept weights x coded bits per weight (nerv-dense's calibration) +
n x H_b(1 - p) position bits + biases at `bits` each (measured 8.0-8.3 bits) + side information + framing.
The shape rule is nerv-dense's (`methods.nerv_dense.size_network`), asked for the dense rate whose shape
meets this prediction. After training, rate control fits the quantizer's level count to what the planned size
leaves once the positions are coded, so the stream lands on the target like nerv-dense's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from bench import bitstream
from bench.budgets import Budget
from bench.contract import RATE_TOLERANCE, Clip, Context, SeqInfo
from bench.errors import MethodError
from methods import nerv_dense
from methods.nerv_dense import NeRVDenseConfig
from methods.nerv_family import coding
from methods.nerv_family.adapter import RENDER_BATCH, NeRVFamilyMethod, framing_bits
from methods.nerv_family.backbones.nerv import (
    SHAPE_FIELDS,
    NeRVConfig,
    NeRVShape,
    choose_grid,
    count_parameters,
    macs_per_pixel,
    parameter_shapes,
    render_weights,
)
from methods.nerv_family.coding import BITS_PER_WEIGHT_AT_8
from methods.nerv_family.header import read_network_header
from methods.nerv_family.masks.pruning import (
    apply_masks,
    build_generator,
    effective_weights,
    magnitude_masks,
    prunable,
)
from methods.nerv_family.masks.sparse_coding import (
    SECTIONS,
    SparseCode,
    SparseCounts,
    decode_sparse,
    encode_sparse,
    sparse_header,
)
from methods.nerv_family.masks.sparse_coding import predicted_bits as sparse_predicted_bits
from methods.nerv_family.training import TrainResult, train, with_budget_schedule

SIZE_AIM = 0.01  # stop sizing when the predicted size is within 1 % of the target
SIZING_ROUNDS = 8


@dataclass(frozen=True)
class NeRVPrunedConfig(NeRVShape):
    """Hyper-parameters; `plan` fills in the sized shape (scaled exactly as nerv-dense scales its own, from
    the same base shape), the strides and the budget's schedule."""

    sparsity: float = 0.4  # fraction of stem/conv weights pruned (NeRV's prune ratio 0.4)
    finetune_fraction: float = 0.2  # share of the epochs (or of the time limit) spent fine-tuning
    finetune_warmup: float = 0.0  # warm-up of the fine-tuning schedule (NeRV's pruning command: 0)
    bits: int = 8  # nominal quantization bits (NeRV: 8); the plan's size model assumes them
    rate_control: bool = True  # tune the level count so the stream lands on `target_bpp`
    target_bpp: float | None = None  # set by `plan`
    loss: str = "mse"  # "mse" or "nerv" (0.7 L1 + 0.3 (1 - SSIM))
    epochs: int | None = None  # None: the budget's (dense + fine-tuning)
    lr: float | None = None  # None: the budget's
    batch_size: int | None = None  # None: the budget's
    warmup: float = 0.2  # warm-up of the dense schedule

    def validate(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise MethodError(
                f"nerv-pruned sparsity must be in [0, 1), got {self.sparsity}; set it to e.g. 0.4"
            )
        if not 0.0 <= self.finetune_fraction < 1.0:
            raise MethodError(
                f"nerv-pruned finetune_fraction must be in [0, 1), got {self.finetune_fraction}; e.g. 0.2"
            )

    def dense_shape(self) -> NeRVDenseConfig:
        """The same shape as a nerv-dense config, for its sizing rule."""
        return NeRVDenseConfig(**{name: getattr(self, name) for name in SHAPE_FIELDS}, bits=self.bits)

    def epoch_split(self, total: int) -> tuple[int, int]:
        """(dense, fine-tuning) epochs out of `total`; at least one of each when fine-tuning at all."""
        if self.sparsity == 0 or self.finetune_fraction == 0 or total < 2:
            return total, 0
        tune = min(total - 1, max(1, round(total * self.finetune_fraction)))
        return total - tune, tune


@dataclass
class NeRVPrunedState:
    config: NeRVPrunedConfig
    weights: dict[str, torch.Tensor]  # float32 on the CPU, zero where pruned, in the generator's order
    masks: dict[str, torch.Tensor]  # bool, True where a weight survives (stem/conv weights only)
    num_frames: int
    dense: TrainResult
    finetune: TrainResult | None
    coding: dict[str, Any] = field(default_factory=dict)  # filled by `encode`


# --- the stream -----------------------------------------------------------------------------------------------


def _framing_bits(arch: NeRVConfig, levels: int, kept: int, height: int, width: int, frames: int) -> int:
    """Container and header bits of a stream (everything but the three sections' payloads)."""
    header = sparse_header(arch, height, width, frames, levels, kept)
    return framing_bits(NeRVPruned.name, NeRVPruned.version, header, SECTIONS)


def predicted_bits(
    arch: NeRVConfig, sparsity: float, bits: int, height: int, width: int, frames: int
) -> float:
    """Expected stream size: survivors at the calibrated coded rate, positions, dense biases at `bits`
    each (measured 8.0-8.3), side information and framing."""
    shapes = parameter_shapes(arch)
    counts = SparseCounts.of(shapes, prunable(shapes), sparsity)
    framing = _framing_bits(arch, (1 << bits) - 1, counts.kept, height, width, frames)
    return sparse_predicted_bits(counts, BITS_PER_WEIGHT_AT_8 * bits / 8, bits, framing)


def code_network(state: NeRVPrunedState) -> SparseCode:
    """The shared sparse coder's sections, with the level count rate control allows."""
    cfg = state.config
    arch = cfg.architecture()
    height, width = arch.output_size
    names = list(parameter_shapes(arch))
    masks = {n: state.masks[n] for n in prunable(names)}
    budget = None
    if cfg.rate_control and cfg.target_bpp is not None:
        target = cfg.target_bpp * state.num_frames * height * width
        kept = sum(int(m.sum()) for m in masks.values())
        budget = target - _framing_bits(arch, coding.MAX_LEVELS, kept, height, width, state.num_frames)
    weights = {n: state.weights[n] for n in names}
    return encode_sparse(weights, masks, (1 << cfg.bits) - 1, budget_bits=budget)


def decode_weights(
    data: bytes, info: SeqInfo | None = None
) -> tuple[NeRVConfig, dict[str, torch.Tensor], int]:
    """(architecture, the decoded network's weights, frame count) from a stream's bytes, checked against
    the clip `info` when given (the decoder always gives it)."""
    stream = bitstream.unpack(data, expect_method=NeRVPruned.name, expect_version=NeRVPruned.version)
    stream.expect_sections(*SECTIONS)
    arch, frames = read_network_header(stream, info)
    shapes = parameter_shapes(arch)
    return arch, decode_sparse(stream, shapes, prunable(shapes)), frames


# --- sizing ----------------------------------------------------------------------------------------------------


def size_network(base: NeRVPrunedConfig, info: SeqInfo, target_bpp: float) -> NeRVPrunedConfig:
    """The shape whose predicted pruned size meets the target, by nerv-dense's shape rule.

    nerv-dense's `size_network` maps a dense rate to a shape; the dense rate is rescaled by the ratio of
    target to predicted pruned size until the prediction lands within 1 % (a few rounds: the two size
    models are nearly proportional). Tiny networks come in coarse steps (about 10 % apart at the smoke
    size), so the closest shape within 5 % is accepted and rate control absorbs the rest.
    """
    base.validate()
    target = target_bpp * info.pixels

    def predicted(cfg: NeRVPrunedConfig) -> float:
        return predicted_bits(
            cfg.architecture(), cfg.sparsity, cfg.bits, info.height, info.width, info.num_frames
        )

    grid = (base.start, base.strides) if base.strides else choose_grid(info.height, info.width, base.start)
    ones = tuple(1 for _ in base.stem_dims)
    smallest = dataclasses.replace(
        base, stem_dims=ones, fc_dim=1, lower_width=1, start=grid[0], strides=grid[1]
    )
    NeRVPruned().refuse_unreachable(predicted(smallest), info, target_bpp)
    dense_bpp, best = target_bpp, None
    for _ in range(SIZING_ROUNDS):
        try:
            shaped = nerv_dense.size_network(base.dense_shape(), info, dense_bpp)
        except MethodError:
            break
        shape = {name: getattr(shaped, name) for name in SHAPE_FIELDS}
        cfg = dataclasses.replace(base, **{**shape, "width": float(shaped.width)})
        bits = predicted(cfg)
        if best is None or abs(bits / target - 1) < abs(best[0] / target - 1):
            best = (bits, cfg)
        if abs(bits / target - 1) <= SIZE_AIM:
            break
        dense_bpp *= target / bits
    if best is None or abs(best[0] / target - 1) > RATE_TOLERANCE / 2:
        raise NeRVPruned().no_shape_found(target_bpp, RATE_TOLERANCE / 2)
    return best[1]


# --- the method ------------------------------------------------------------------------------------------------


class NeRVPruned(NeRVFamilyMethod):
    name = "nerv-pruned"
    version = "1"
    description = (
        "trained NeRV, magnitude-pruned and fine-tuned; survivors 8-bit range coded, positions charged"
    )
    Config = NeRVPrunedConfig
    rate_ladder: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2)
    trains = True
    requires: ClassVar[tuple[str, ...]] = ()

    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> NeRVPrunedConfig:
        sized = size_network(self.base_config, clip.info, target_bpp)
        return with_budget_schedule(sized, budget, target_bpp=target_bpp)

    def fit(self, frames: np.ndarray, config: NeRVPrunedConfig, ctx: Context) -> NeRVPrunedState:
        config.validate()
        arch = config.architecture()
        self.check_frame_size(arch.output_size, frames)
        model = self.seeded(lambda: build_generator(arch), ctx.seed)
        dense_epochs, tune_epochs = config.epoch_split(config.epochs or ctx.budget.epochs)
        limit = ctx.time_limit_s
        share = config.finetune_fraction if tune_epochs else 0.0
        common = {
            "lr": config.lr or ctx.budget.lr,
            "batch_size": config.batch_size or ctx.budget.batch_size,
            "loss": config.loss,
        }
        checkpoint = ctx.checkpoint_path()
        dense = train(
            model,
            frames,
            ctx,
            epochs=self.epochs_for(dense_epochs, ctx),
            warmup=config.warmup,
            time_limit_s=limit * (1 - share) if limit else None,
            checkpoint=checkpoint.with_name("dense.pt"),
            desc="nerv-pruned dense",
            **common,
        )
        masks = magnitude_masks(dict(model.named_parameters()), config.sparsity)
        apply_masks(model, masks)
        tuned = None
        if tune_epochs:
            tuned = train(
                model,
                frames,
                ctx,
                epochs=self.epochs_for(tune_epochs, ctx),
                warmup=config.finetune_warmup,
                time_limit_s=limit * share if limit else None,
                checkpoint=checkpoint.with_name("finetune.pt"),
                desc="nerv-pruned fine-tune",
                **common,
            )
        return NeRVPrunedState(config, effective_weights(model), masks, int(frames.shape[0]), dense, tuned)

    def encode(self, state: NeRVPrunedState) -> bytes:
        coded = code_network(state)
        state.coding = coded.stats
        arch = state.config.architecture()
        header = sparse_header(arch, *arch.output_size, state.num_frames, coded.levels, coded.kept)
        return bitstream.pack(self.name, self.version, header, coded.sections)

    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        arch, weights, frames = decode_weights(data, info)
        return render_weights(arch, weights, frames, ctx.device, RENDER_BATCH).numpy()

    def stats(self, state: NeRVPrunedState) -> dict[str, Any]:
        coded = state.coding or code_network(state).stats
        dense, tuned = state.dense, state.finetune
        last = tuned or dense
        return {
            "parameters": count_parameters(state.config.architecture()),
            "macs_per_pixel": macs_per_pixel(state.config.architecture()),
            "nonzeros": coded["nonzeros"],  # of the decoded network, biases included
            "sparsity": round(1 - coded["kept_weights"] / coded["prunable_weights"], 6),
            "kept_weights": coded["kept_weights"],
            "prunable_weights": coded["prunable_weights"],
            "position_bits": coded["position_bits"],
            "stem_dims": list(state.config.stem_dims),
            "fc_dim": state.config.fc_dim,
            "lower_width": state.config.lower_width,
            "dense_epochs": dense.epochs,
            "dense_psnr": round(dense.psnr, 3),
            "finetune_epochs": tuned.epochs if tuned else 0,
            "steps": dense.steps + (tuned.steps if tuned else 0),
            "train_seconds": round(dense.seconds + (tuned.seconds if tuned else 0), 2),
            "train_psnr": round(last.psnr, 3),
            "train_loss": last.loss,
            "precision": last.precision,
            "coding": coded,
        }
