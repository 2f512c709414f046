"""`bench perf train`: the family's training loop against a plain loop written the obvious way, same network.

Each loop runs in a fresh process, interleaved and repeated, and the figures are ratios, because absolute
numbers on a shared machine mean little.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PERF_STEM = (512,)  # NeRV-S-like network for the timing (stem 512, C0 26, lower width 96)
PERF_FC_DIM = 26
PERF_LOWER_WIDTH = 96
PERF_FRAMES = 8
PERF_SIZES = ((180, 320), (360, 640))  # the cpu budget's size and one larger
PERF_BUDGET = "cpu"  # the suite's loops run with this budget's batch size and precision
HNERV_BPP = 0.2  # hnerv is timed on the network it trains at this rate and the cpu budget's size
# (name, precision): the suite's loops timed against the plain one; None = the budget's precision
SUITE_LOOPS: tuple[tuple[str, str | None], ...] = (
    ("nerv-dense", "fp32"),
    ("nerv-dense", None),
    ("supermask-fixed", None),
    ("supermask-learned", None),
)


def perf_arch(size: tuple[int, int]):
    from methods.nerv_family.backbones.nerv import NeRVConfig, choose_grid

    start, strides = choose_grid(size[0], size[1])
    return NeRVConfig(
        stem_dims=PERF_STEM, fc_dim=PERF_FC_DIM, lower_width=PERF_LOWER_WIDTH, start=start, strides=strides
    )


def hnerv_arch(size: tuple[int, int], target_bpp: float = HNERV_BPP):
    """The network hnerv trains at `target_bpp` on a clip of `size` and the cpu budget's frame count."""
    from bench.budgets import get_budget
    from bench.contract import Clip, SeqInfo
    from methods.hnerv import HNeRVMethod  # its plan sizes the network the method trains

    budget = get_budget(PERF_BUDGET)
    frames = budget.frames or 16
    info = SeqInfo("bunny", size[1], size[0], frames, 25.0)  # sizing reads the clip's shape, not its pixels
    clip = Clip(info, np.zeros((frames, size[0], size[1], 3), np.uint8))
    return HNeRVMethod().plan(clip, target_bpp, budget).architecture()


def _perf_model(size: tuple[int, int], network: str = "nerv"):
    import torch

    from methods.nerv_family.backbones.hnerv import HNeRVModel
    from methods.nerv_family.backbones.nerv import NeRVGenerator

    arch = hnerv_arch(size) if network == "hnerv" else perf_arch(size)
    torch.manual_seed(0)
    return HNeRVModel(arch) if network == "hnerv" else NeRVGenerator(arch)


def _frames(size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)  # timing only: pixel values do not change the work done
    return rng.integers(0, 256, size=(PERF_FRAMES, size[0], size[1], 3), dtype=np.uint8)


def _now() -> tuple[float, float]:
    """(wall-clock, process CPU) seconds: on a loaded machine the CPU time of the work is the steadier one."""
    return time.perf_counter(), time.process_time()


def _since(begin: tuple[float, float]) -> tuple[float, float]:
    now = _now()
    return now[0] - begin[0], now[1] - begin[1]


def _plain_train(
    frames: np.ndarray, size: tuple[int, int], epochs: int, lr: float, network: str = "nerv"
) -> list[tuple[float, float]]:
    """The obvious loop: NCHW, fp32, per-step copy of one frame from the host, for-loop Adam, batch 1; the
    network is fed the frame's time (NeRV) or the frame itself (HNeRV).

    Returns the (wall, CPU) seconds of each epoch (one pass over the frames in a shuffled order).
    """
    import torch

    model = _perf_model(size, network)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999), foreach=False, fused=False)
    count = len(frames)
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(epochs):
        begin = _now()
        for i in rng.permutation(count):
            # NCHW in memory: a permuted HWC frame would carry channels-last strides into the convolutions
            target = torch.from_numpy(frames[i]).permute(2, 0, 1)[None].float().contiguous() / 255
            t = torch.tensor([i / count], dtype=torch.float32)
            loss = torch.nn.functional.mse_loss(model(target if network == "hnerv" else t), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
        seconds.append(_since(begin))
    return seconds


class _SyncClock:
    """A progress bar that notes the time of every sync point of the training loop (here: epoch ends)."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def update(self, n: int = 1, **stats: float) -> None:
        self.marks.append(_now())

    def close(self) -> None:
        pass


def _suite_train(
    loop: str, frames: np.ndarray, size: tuple[int, int], epochs: int, device: str, precision: str | None
) -> tuple[list[tuple[float, float]], str]:
    """`methods.training.train` running `loop`'s network: the seconds of each epoch, and the precision used.

    Epochs are timed between the loop's sync points, so start-up and the final checkpoint are not counted.
    """
    from bench.budgets import get_budget
    from bench.contract import Context
    from methods.nerv_family.masks.layers import parameter_groups
    from methods.nerv_family.masks.masked_nerv import build_generator
    from methods.nerv_family.masks.settings import MaskSettings
    from methods.nerv_family.supermask_base import SupermaskConfig
    from methods.nerv_family.training import train

    budget = get_budget(PERF_BUDGET)
    groups, lr = None, budget.lr
    if loop == "nerv-dense":
        model = _perf_model(size)
    elif loop == "hnerv":
        model = _perf_model(size, "hnerv")
    else:
        scale_mode = loop.removeprefix("supermask-")
        defaults = SupermaskConfig()
        model = build_generator(perf_arch(size), MaskSettings(scale_mode=scale_mode), 0)
        lr = defaults.score_lr_at(budget.lr)
        groups = parameter_groups(model, scale_mode, lr, defaults.alpha_lr)
    clock = _SyncClock()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(workdir=Path(tmp), budget=budget, device=device, progress=lambda total, desc: clock)
        result = train(
            model,
            frames,
            ctx,
            epochs=epochs,
            lr=lr,
            batch_size=budget.batch_size,
            params=groups,
            precision=precision,
        )
    ends = clock.marks[1:]  # marks[0] is the bar's start; with 8 frames every sync is an epoch end
    spans = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(ends[:-1], ends[1:], strict=False)]
    return spans, result.precision


Loop = tuple[str, str | None]  # (name, precision; None = the budget's)


def _measure(
    loops: tuple[Loop, ...], size: tuple[int, int], device: str, epochs: int, rounds: int = 2
) -> dict[Loop, tuple[float, float, str]]:
    """Best-epoch frames/s of each loop in this (fresh) process, by the wall clock and by the process's CPU
    time (all threads), and the precision it ran in.

    The loops take turns for `rounds` rounds, so that the machine's load hits all alike. The first epoch of
    each run warms up (kernel selection, allocator) and is not counted; the fastest epoch is reported,
    because on a shared machine noise only ever adds time.
    """
    frames = _frames(size)
    best: dict[Loop, tuple[float, float, str]] = {}
    for _ in range(rounds):
        for loop, precision in loops:
            if loop.startswith("plain"):
                network = "hnerv" if loop == "plain-hnerv" else "nerv"
                seconds, used = _plain_train(frames, size, epochs + 1, 5e-4, network)[1:], "fp32"
            else:
                seconds, used = _suite_train(loop, frames, size, epochs + 1, device, precision)
            wall = len(frames) / min(w for w, _ in seconds)
            cpu = len(frames) / min(c for _, c in seconds)
            old = best.get((loop, precision), (0.0, 0.0, used))
            best[loop, precision] = (max(wall, old[0]), max(cpu, old[1]), used)
    return best


def _alternate(
    plain: Loop, suite: tuple[Loop, ...], size: tuple[int, int], device: str, repeats: int, epochs: int = 2
) -> tuple[dict[Loop, float], dict[Loop, float], dict[Loop, str]]:
    """Best frames/s (wall clock, CPU time) and precision of each loop over `repeats` alternations of a plain
    and a suite process."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    best: dict[Loop, float] = {}
    cpu: dict[Loop, float] = {}
    used: dict[Loop, str] = {}
    for _ in range(repeats):
        for loops in ((plain,), suite):
            with spawn.Pool(1) as pool:
                measured = pool.apply(_measure, (loops, size, device, epochs))
            for key, (fps, cpu_fps, precision) in measured.items():
                best[key] = max(best.get(key, 0.0), fps)
                cpu[key] = max(cpu.get(key, 0.0), cpu_fps)
                used[key] = precision
    return best, cpu, used


def perf_train_hnerv(
    size: tuple[int, int] = PERF_SIZES[0], device: str = "cpu", repeats: int = 2
) -> dict[str, Any]:
    """Training frames/s of hnerv's loop against the plain loop, on the network hnerv trains at the cpu size.

    As `perf_train`: separate fresh processes, alternating, best epoch; the suite's loop runs at the cpu
    budget's batch size and precision (channels-last, fused Adam, bf16 autocast where the CPU has it).
    """
    from bench.budgets import get_budget

    budget = get_budget(PERF_BUDGET)
    arch = hnerv_arch(size)
    suite = (("hnerv", None),)
    best, cpu, used = _alternate(("plain-hnerv", "fp32"), suite, size, device, repeats)
    base, fps = best["plain-hnerv", "fp32"], best["hnerv", None]
    cpu_base, cpu_fps = cpu["plain-hnerv", "fp32"], cpu["hnerv", None]
    label = f"{size[1]}x{size[0]}"
    how = f"{used['hnerv', None]} (budget {PERF_BUDGET}: {budget.precision})"
    print(
        f"train at {label} on {device}, the hnerv network sized for {HNERV_BPP:g} bpp (C0 {arch.fc_dim}, lower "
        f"width {arch.lower_width}, encoder width {arch.enc_width}), best epoch of {repeats} alternating runs:\n"
        f"  plain loop (fp32, NCHW, for-loop Adam, per-step host copy, batch 1): {base:.2f} frames/s, "
        f"{cpu_base:.2f} per CPU second\n"
        f"  hnerv, {how}, batch {budget.batch_size}: {fps:.2f} frames/s  ({fps / base:.2f}x), "
        f"{cpu_fps:.2f} per CPU second ({cpu_fps / cpu_base:.2f}x)"
    )
    return {
        "device": device,
        "size": label,
        "plain_fps": base,
        "fps": fps,
        "ratio": fps / base,
        "cpu_ratio": cpu_fps / cpu_base,
        "precision": used["hnerv", None],
    }


def perf_train(
    sizes: tuple[tuple[int, int], ...] = PERF_SIZES, device: str = "cpu", repeats: int = 2
) -> dict[str, Any]:
    """Training frames/s of nerv-dense and both supermask methods vs the plain loop, same network.

    The plain loop and the suite's loops run in separate fresh processes (the suite's loop tunes the
    process allocator, which must not leak into the plain loop's timing), alternating `repeats` times so
    that both see the same spells of machine load. Each figure is the best epoch over all repeats; ratios
    are suite / plain (above 1 = the suite is faster), and supermask / nerv-dense step time at the same
    precision.
    """
    from bench.budgets import get_budget

    budget = get_budget(PERF_BUDGET)
    result: dict[str, Any] = {
        "device": device,
        "repeats": repeats,
        "batch_size": budget.batch_size,
        "sizes": {},
    }
    for size in sizes:
        best, _, used = _alternate(("plain", "fp32"), SUITE_LOOPS, size, device, repeats)
        base = best["plain", "fp32"]
        dense = best["nerv-dense", None]
        label = f"{size[1]}x{size[0]}"
        loops_out: dict[str, Any] = {}
        lines = [
            f"train at {label} on {device}, NeRV-S-like (stem 512, C0 26, lower width 96), best epoch of "
            f"{repeats} alternating runs of plain and suite processes, each loop twice per process:",
            f"  plain loop (fp32, NCHW, for-loop Adam, per-step host copy, batch 1): {base:.2f} frames/s",
        ]
        for key in SUITE_LOOPS:
            loop, precision = key
            fps = best[key]
            entry: dict[str, Any] = {"fps": fps, "ratio": fps / base}
            how = used[key] + (f" (budget {PERF_BUDGET}: {budget.precision})" if precision is None else "")
            line = f"  {loop}, {how}, batch {budget.batch_size}: {fps:.2f} frames/s  ({fps / base:.2f}x)"
            if loop.startswith("supermask"):
                entry["step_vs_dense"] = dense / fps
                line += f", step {dense / fps:.2f}x nerv-dense's"
            loops_out[f"{loop} {used[key]}"] = entry
            lines.append(line)
        result["sizes"][label] = {"plain_fps": base, "loops": loops_out}
        print("\n".join(lines))
    return result
