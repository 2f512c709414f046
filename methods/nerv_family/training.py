"""The training loop every NeRV-family method shares (dense, pruned, supermask, hnerv), for any `Backbone`.

NeRV's recipe: Adam with betas (0.5, 0.999), a linear warm-up from 0.1 lr over the first 20 % of the
iterations, then a cosine decay to 0, the learning rate set at every iteration. On top of it, what a
benchmark needs: frames held once on the device, seeded batch order, periodic resumable checkpoints
(written atomically, loaded without unpickling code), a clean failure on a NaN loss, a wall-clock limit,
and progress reported through the job's context. The per-step path never waits for the device except at
sync points (every `SYNC_EVERY` steps and at epoch ends), where losses are checked and progress reported.

Precision: "bf16" runs the forward pass under bfloat16 autocast (convolutions and linear layers in bf16,
weights, gradients, optimizer state and the loss in float32), the usual mixed-precision recipe; "auto" picks
it where the device computes bf16 natively. It trained the cpu budget's networks 1.1-1.4x faster and a
NeRV-S-like one ~2x faster, at about the same PSNR; see docs/performance.md. Decoders always render in float32, so streams do not depend
on the precision a model was trained in.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.budgets import Budget
from bench.contract import Context, FitFailed
from methods.nerv_family.backbones.nerv import frame_times
from methods.nerv_family.compiling import compiled_step_settings, training_forward

LOSSES = ("mse", "nerv")
SCHEDULE_FIELDS = ("epochs", "lr", "batch_size", "warmup")  # a config's None here means "the budget's"
PRECISIONS = ("fp32", "tf32", "bf16", "auto")
SYNC_EVERY = 32  # steps between host syncs (NaN check, progress, checkpoint opportunity)
CHECKPOINT_FORMAT = 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_allocator_tuned = False


class Backbone(Protocol):
    """What the loop needs of a network: the input a batch feeds it, and frames back.

    `batch_input(times, frames)` gets the batch's frame times t = i / T (B,) and its frames (B, 3, H, W) in
    [0, 1] (channels-last, float32) and returns the network's input; the network returns frames (B, 3, H, W)
    in [0, 1]. NeRV is fed the times, HNeRV the frames themselves (its encoder's input).

    A network trained on patches (HiNeRV) also has `patches_per_frame` (> 1) and
    `patch_batch(frame_index, patch_index, frames) -> (input, target patches)`: the loop's samples are then
    the clip's patches, each visited once per epoch, and its loss and PSNR are per patch.
    A backbone whose CPU step bf16 autocast makes slower sets `bf16_on_cpu = False`: "auto" then trains it
    in fp32 on a CPU.
    """

    def batch_input(self, times: torch.Tensor, frames: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class TrainResult:
    loss: float  # mean training loss of the last epoch
    psnr: float  # mean per-frame PSNR (dB) of the last epoch, on the training frames as trained
    epochs: int  # epochs completed (a partial last epoch under a time limit counts as done)
    steps: int
    seconds: float  # wall-clock training time, summed over resumed runs
    resumed_from_step: int = 0
    precision: str = "fp32"  # what the forward pass ran in ("fp32" or "bf16"), after resolving "auto"
    curve: tuple[
        tuple[int, float, float], ...
    ] = ()  # (epoch, seconds, training-set PSNR) at log-spaced epochs
    compiled: str = "off"  # whether the step ran compiled: "on", "off" or "unavailable: <why>"

    def summary(self) -> dict[str, Any]:
        """The training figures a method's stats report."""
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "train_seconds": round(self.seconds, 2),
            "train_psnr": round(self.psnr, 3),
            "train_loss": self.loss,
            "precision": self.precision,
            "resumed_from_step": self.resumed_from_step,  # > 0: training went on from a checkpoint
            "compiled": self.compiled,
            "curve": {
                "epochs": [e for e, _, _ in self.curve],
                "seconds": [round(t, 2) for _, t, _ in self.curve],
                "train_psnr": [round(q, 3) for _, _, q in self.curve],
            },
        }


def is_curve_epoch(epoch: int) -> bool:
    """Whether the in-run curve keeps this epoch: 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, ... (about sqrt(2) apart,
    so a 60-epoch run keeps 12 points and any run of 16 or more keeps at least 8); the last epoch is kept too."""
    return epoch in _CURVE_EPOCHS


_CURVE_EPOCHS = frozenset(int(round(2 ** (k / 2))) for k in range(80))


def with_budget_schedule(config: Any, budget: Budget, **changes: Any) -> Any:
    """`config` (a method's dataclass) with each schedule field it leaves None taken from the budget."""
    filled = {
        name: getattr(budget, name)
        for name in SCHEDULE_FIELDS
        if hasattr(config, name) and getattr(config, name) is None
    }
    return dataclasses.replace(config, **filled, **changes)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 convolutions natively (CUDA with bf16, or a CPU oneDNN runs bf16 on)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch without the oneDNN query: assume not
            return False
    return False


def resolve_precision(precision: str, device: torch.device, bf16_on_cpu: bool = True) -> str:
    """ "fp32", "tf32" or "bf16" for a requested precision; "auto" is bf16 only where the device has it
    natively (and, on a CPU, only for a backbone that `bf16_on_cpu` says gains from it); "tf32" (fp32
    tensors, TF32 matrix units) exists on CUDA only and is fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "auto":
        if device.type == "cpu" and not bf16_on_cpu:
            return "fp32"
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "tf32" and device.type != "cuda":
        return "fp32"
    return precision


def set_tf32(device: torch.device, precision: str) -> None:
    """fp32 means fp32: TF32 matrix units (10-bit mantissas) only when the budget asks for "tf32"."""
    if device.type == "cuda":
        allowed = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = allowed
        torch.backends.cudnn.allow_tf32 = allowed


def lr_multiplier(progress: float, warmup: float) -> float:
    """NeRV's schedule at `progress` in [0, 1]: linear 0.1 -> 1 over `warmup`, then cosine 1 -> 0."""
    if progress < warmup:
        return 0.1 + 0.9 * progress / warmup
    span = max(1.0 - warmup, 1e-12)
    return 0.5 * (1.0 + math.cos(math.pi * min((progress - warmup) / span, 1.0)))


def nerv_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.7 * L1 + 0.3 * (1 - SSIM), NeRV's training loss."""
    from pytorch_msssim import ssim

    return 0.7 * F.l1_loss(pred, target) + 0.3 * (1 - ssim(pred, target, data_range=1.0, size_average=True))


def _make_optimizer(groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Adam:
    """Adam with NeRV's betas; the fused kernel where this torch has one for the device (it is faster)."""
    try:
        return torch.optim.Adam(groups, betas=(0.5, 0.999), fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(groups, betas=(0.5, 0.999))


def _param_groups(model: nn.Module, lr: float, params: Iterable[Any] | None) -> list[dict[str, Any]]:
    if params is None:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    groups = []
    for group in params:
        group = dict(group) if isinstance(group, dict) else {"params": [group]}
        group["params"] = list(group["params"])
        group.setdefault("lr", lr)
        groups.append(group)
    return groups


def _signature(
    model: nn.Module,
    frames: np.ndarray,
    epochs: int,
    groups: list[dict[str, Any]],
    batch: int,
    loss: str,
    warmup: float,
    seed: int,
    precision: str,
) -> dict:
    """What a checkpoint must match to be resumed (anything else is a different run)."""
    return {
        "frames": list(frames.shape),
        "epochs": epochs,
        "lrs": [float(g["lr"]) for g in groups],
        "batch": batch,
        "loss": loss,
        "warmup": warmup,
        "seed": seed,
        "precision": precision,
        "shapes": [list(p.shape) for p in model.parameters()],
    }


def _save(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load(path: Path, signature: dict, device: torch.device) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # a torn or foreign file: start over rather than fail the job
        return None
    if payload.get("format") != CHECKPOINT_FORMAT or payload.get("signature") != signature:
        return None
    return payload


def keep_freed_memory() -> None:
    """Let glibc reuse freed activation buffers instead of handing them back to the kernel every step.

    By default each large tensor is mmap'd and unmapped per step, and re-faulting those pages measured
    about 21k page faults and ~15 % of a CPU training step (NeRV-S-like, 180x320); with the thresholds
    raised it is ~0.7k. The memory stays with the process, which a training job keeps using anyway.
    """
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    if not mallopt(_M_MMAP_THRESHOLD, 256 << 20):
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # older glibc caps the threshold at 32 MB
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def train(
    model: nn.Module | Backbone,
    frames_uint8: np.ndarray,
    ctx: Context,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    loss: str = "mse",
    warmup: float = 0.2,
    params: Iterable[Any] | None = None,
    time_limit_s: float | None = None,
    checkpoint: Path | None = None,
    desc: str = "train",
    precision: str | None = None,
    compile: bool = False,
) -> TrainResult:
    """Fit `model` (a `Backbone`: batch input -> frames) to uint8 RGB frames (T, H, W, 3) in place.

    `params` may give Adam parameter groups (each may set its own ``lr``; the schedule scales all of them);
    by default every trainable parameter of the model at `lr`. Resumes from `checkpoint` (default:
    ``ctx.checkpoint_path()``) when it holds a checkpoint of the same run. With a time limit (argument or
    ``ctx.time_limit_s``) training stops there and the schedule runs on whichever of steps and time is
    further along, so a time-limited run still warms up and decays fully. `precision` (default: the
    budget's) is "fp32", "bf16" or "auto" (see the module docstring). `compile` runs the steps through
    `torch.compile` where this machine can build its kernels (`methods.nerv_family.compiling`).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got '{loss}'")
    device = torch.device(ctx.device)
    mixed = resolve_precision(
        precision or ctx.budget.precision, device, bool(getattr(model, "bf16_on_cpu", True))
    )
    set_tf32(device, mixed)
    limit = time_limit_s if time_limit_s is not None else ctx.time_limit_s
    per_frame = int(getattr(model, "patches_per_frame", 1))  # samples per frame: patches, or whole frames
    count = int(frames_uint8.shape[0]) * per_frame
    batch = max(1, min(batch_size, count))
    steps_per_epoch = math.ceil(count / batch)
    total = max(1, epochs * steps_per_epoch)

    if device.type == "cpu":
        keep_freed_memory()
    # Channels-last convolutions measured 1.1-2x faster than NCHW on CPU at 180x320, for NeRV-S-like and
    # for the rate-sized cpu-budget networks (only toy 4-channel nets at 72x128 ran slower), and are the
    # fast path on GPUs.
    model.to(device=device, memory_format=torch.channels_last).train()
    # Frames stay on the device as uint8 NHWC (a float copy of 600 frames at 1080p would take 15 GB); a
    # batch is converted there, which costs well under 1 % of a step and comes out channels-last.
    frames = torch.from_numpy(np.ascontiguousarray(frames_uint8)).to(device)
    times = frame_times(int(frames_uint8.shape[0])).to(device)
    groups = _param_groups(model, lr, params)
    base_lrs = [g["lr"] for g in groups]
    optimizer = _make_optimizer(groups, device)
    forward, compiled = training_forward(model, device, compile)
    order = torch.Generator().manual_seed(ctx.seed)

    path = checkpoint if checkpoint is not None else ctx.checkpoint_path()
    signature = _signature(model, frames_uint8, epochs, groups, batch, loss, warmup, ctx.seed, mixed)
    step, pos, elapsed = 0, 0, 0.0
    perm = torch.randperm(count, generator=order)
    last = {"loss": float("nan"), "psnr": float("nan")}
    epoch_loss = torch.zeros((), device=device)  # sums over the epoch so far, kept on the device
    epoch_psnr = torch.zeros((), device=device)
    epoch_frames = 0
    curve: list[tuple[int, float, float]] = []
    state = _load(path, signature, device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        order.set_state(state["generator"].cpu())
        step, pos, elapsed = int(state["step"]), int(state["pos"]), float(state["elapsed"])
        perm = state["perm"].cpu()
        last = {"loss": float(state["last_loss"]), "psnr": float(state["last_psnr"])}
        epoch_loss += state["epoch_loss"]
        epoch_psnr += state["epoch_psnr"]
        epoch_frames = int(state["epoch_frames"])
        curve = [tuple(point) for point in state.get("curve", [])]
    resumed_from = step

    def progress_at(now: float) -> float:
        done = step / total
        return max(done, (elapsed + now - started) / limit) if limit else done

    def checkpoint_payload() -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "signature": signature,
            "step": step,
            "pos": pos,
            "perm": perm,
            "generator": order.get_state(),
            "elapsed": elapsed + time.perf_counter() - started,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "last_loss": last["loss"],
            "last_psnr": last["psnr"],
            "epoch_loss": epoch_loss,
            "epoch_psnr": epoch_psnr,
            "epoch_frames": epoch_frames,
            "curve": curve,
        }

    window = torch.zeros(SYNC_EVERY, device=device)  # per-step losses since the last sync
    in_window = 0
    bar = ctx.progress(total, desc)
    bar.update(step)
    started = time.perf_counter()
    last_checkpoint = started
    finished = step >= total or bool(limit and elapsed >= limit)
    try:
        with compiled_step_settings(compiled == "on", device):
            while not finished:
                idx = perm[pos : pos + batch].to(device, non_blocking=True)
                multiplier = lr_multiplier(progress_at(time.perf_counter()), warmup)
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * multiplier
                frame_idx = idx // per_frame if per_frame > 1 else idx
                target = frames.index_select(0, frame_idx).permute(0, 3, 1, 2).float().div_(255)
                if per_frame > 1:
                    inputs, target = model.patch_batch(frame_idx, idx % per_frame, target)
                else:
                    inputs = model.batch_input(times.index_select(0, idx), target)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed == "bf16"):
                    out = forward(inputs)
                out = out.float()  # the loss, its statistics and the NaN check stay in float32
                per_frame_mse = (out - target).square().mean(dim=(1, 2, 3))
                value = per_frame_mse.mean() if loss == "mse" else nerv_loss(out, target)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()

                detached = value.detach()
                window[in_window] = detached
                epoch_loss += detached * idx.numel()
                epoch_psnr += per_frame_mse.detach().log10().sum().mul(-10)
                epoch_frames += idx.numel()
                in_window += 1
                step += 1
                pos += batch
                epoch_end = pos >= count
                now = time.perf_counter()
                out_of_time = bool(limit) and elapsed + now - started >= limit
                finished = step >= total or out_of_time
                if not (epoch_end or finished or in_window == SYNC_EVERY):
                    continue

                # --- sync point: check, report, maybe checkpoint ---------------------------------------------
                losses = window[:in_window].cpu()
                bad = (~torch.isfinite(losses)).nonzero()
                if bad.numel():
                    failed_step = step - in_window + int(bad[0]) + 1
                    raise FitFailed(
                        f"loss became NaN at epoch {(failed_step - 1) // steps_per_epoch + 1} step {failed_step}; "
                        f"lower the learning rate (budget lr={lr:g})"
                    )
                if epoch_end or finished:
                    last = {
                        "loss": float(epoch_loss) / epoch_frames,
                        "psnr": float(epoch_psnr) / epoch_frames,
                    }
                    epoch = math.ceil(step / steps_per_epoch)
                    if is_curve_epoch(epoch) or finished:
                        curve.append((epoch, elapsed + now - started, last["psnr"]))
                bar.update(in_window, loss=float(losses[-1]), psnr=last["psnr"])
                in_window = 0
                if epoch_end:
                    perm = torch.randperm(count, generator=order)
                    pos = 0
                    epoch_loss.zero_()
                    epoch_psnr.zero_()
                    epoch_frames = 0
                if finished or now - last_checkpoint >= ctx.budget.checkpoint_every_s:
                    _save(path, checkpoint_payload())
                    last_checkpoint = time.perf_counter()
    finally:
        bar.close()
    seconds = elapsed + time.perf_counter() - started
    return TrainResult(
        loss=last["loss"],
        psnr=last["psnr"],
        epochs=math.ceil(step / steps_per_epoch),
        steps=step,
        seconds=seconds,
        resumed_from_step=resumed_from,
        precision=mixed,
        curve=tuple(curve),
        compiled=compiled,
    )
