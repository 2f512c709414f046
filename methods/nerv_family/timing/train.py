"""`bench perf train`: the family's training loop against a plain loop written the obvious way, same network.

Each loop runs in a fresh process, interleaved and repeated, and the figures are ratios, because absolute
numbers on a shared machine mean little.
"""

from __future__ import annotations

import math
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
# hnerv and hinerv are timed on the networks they train at this rate and the cpu budget's size
HNERV_BPP = 0.2
COMPILED = "+compile"  # a loop name with this suffix runs the same loop with its step compiled
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


def _planned(method: Any, size: tuple[int, int], target_bpp: float) -> tuple[Any, int]:
    """The config `method` plans at `target_bpp` on a clip of `size` and the cpu budget's frame count, and
    that count."""
    from bench.budgets import get_budget
    from bench.contract import Clip, SeqInfo

    budget = get_budget(PERF_BUDGET)
    frames = budget.frames or 16
    info = SeqInfo("bunny", size[1], size[0], frames, 25.0)  # sizing reads the clip's shape, not its pixels
    clip = Clip(info, np.zeros((frames, size[0], size[1], 3), np.uint8))
    return method.plan(clip, target_bpp, budget), frames


def hnerv_arch(size: tuple[int, int], target_bpp: float = HNERV_BPP):
    """The network hnerv trains at `target_bpp` on a clip of `size` and the cpu budget's frame count."""
    from methods.hnerv import HNeRVMethod  # its plan sizes the network the method trains

    return _planned(HNeRVMethod(), size, target_bpp)[0].architecture()


def hinerv_network(size: tuple[int, int], target_bpp: float = HNERV_BPP):
    """(architecture, patch size) of the network hinerv trains at `target_bpp` on a clip of `size` and the
    cpu budget's frame count: its training phase fits that network on patches of this size."""
    from methods.hinerv import HiNeRVMethod

    config, frames = _planned(HiNeRVMethod(), size, target_bpp)
    arch = config.architecture(frames)
    return arch, config.patch(arch)


def _perf_model(size: tuple[int, int], network: str = "nerv"):
    import torch

    from methods.nerv_family.backbones.hinerv import HiNeRV
    from methods.nerv_family.backbones.hnerv import HNeRVModel
    from methods.nerv_family.backbones.nerv import NeRVGenerator

    if network == "hinerv":
        arch, patch = hinerv_network(size)
        torch.manual_seed(0)
        return HiNeRV(arch, patch)
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


def _plain_sample(model: Any, network: str, frames: np.ndarray, i: int) -> tuple[Any, Any]:
    """(network input, target) of frame `i` as the plain loop feeds it: the frame's time (NeRV), the frame
    itself (HNeRV), or every patch of the frame, cut from it on the host, with their corners (HiNeRV)."""
    import torch

    # NCHW in memory: a permuted HWC frame would carry channels-last strides into the convolutions
    target = torch.from_numpy(frames[i]).permute(2, 0, 1)[None].float().contiguous() / 255
    if network == "hnerv":
        return target, target
    if network == "hinerv":
        (ph, pw), (rows, cols) = model.patch, model.grid
        tiles = target[0].reshape(3, rows, ph, cols, pw).permute(1, 3, 0, 2, 4).reshape(-1, 3, ph, pw)
        corners = torch.tensor([[i, r * ph, c * pw] for r in range(rows) for c in range(cols)])
        return corners, tiles.contiguous()
    return torch.tensor([i / len(frames)], dtype=torch.float32), target


def _plain_train(
    frames: np.ndarray, size: tuple[int, int], epochs: int, lr: float, network: str = "nerv"
) -> list[tuple[float, float]]:
    """The obvious loop: NCHW, fp32, per-step copy of one frame from the host, for-loop Adam, one frame a
    step (for HiNeRV: all the patches of one frame); inputs as `_plain_sample` makes them.

    Returns the (wall, CPU) seconds of each epoch (one pass over the frames in a shuffled order).
    """
    import torch

    model = _perf_model(size, network)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999), foreach=False, fused=False)
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(epochs):
        begin = _now()
        for i in rng.permutation(len(frames)):
            inputs, target = _plain_sample(model, network, frames, int(i))
            loss = torch.nn.functional.mse_loss(model(inputs), target)
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
) -> tuple[list[tuple[float, float]], str, float]:
    """`methods.training.train` running `loop`'s network: the seconds of each epoch after the first, the
    precision used, and the wall-clock seconds of the first epoch (warm-up, and compiling for a compiled
    loop).

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
    compiled = loop.endswith(COMPILED)
    loop = loop.removesuffix(COMPILED)
    if loop == "nerv-dense":
        model = _perf_model(size)
    elif loop in ("hnerv", "hinerv"):
        model = _perf_model(size, loop)
    else:
        scale_mode = loop.removeprefix("supermask-")
        defaults = SupermaskConfig()
        model = build_generator(perf_arch(size), MaskSettings(scale_mode=scale_mode), 0)
        lr = defaults.score_lr_at(budget)
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
            batch_size=budget.batch_size * getattr(model, "patches_per_frame", 1),  # hinerv: frames' patches
            params=groups,
            precision=precision,
            compile=compiled,
        )
    if compiled and result.compiled != "on":
        raise RuntimeError(f"the compiled loop could not compile: {result.compiled}")
    ends = clock.marks[1:]  # marks[0] is the bar's start; with 8 frames every sync is an epoch end
    spans = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(ends[:-1], ends[1:], strict=False)]
    return spans, result.precision, ends[0][0] - clock.marks[0][0]


Loop = tuple[str, str | None]  # (name, precision; None = the budget's)


def _measure(
    loops: tuple[Loop, ...], size: tuple[int, int], device: str, epochs: int, rounds: int = 2
) -> dict[Loop, tuple[float, float, str, float]]:
    """Best-epoch frames/s of each loop in this (fresh) process, by the wall clock and by the process's CPU
    time (all threads), the precision it ran in, and the longest first epoch less the best epoch: the
    one-off cost of starting (for a compiled loop, of compiling).

    The loops take turns for `rounds` rounds, so that the machine's load hits all alike. The first epoch of
    each run warms up (kernel selection, allocator; compiling) and is not counted; the fastest epoch is
    reported, because on a shared machine noise only ever adds time. Compiled loops compile into an empty
    cache, so the first round's start-up is what a network of a new shape costs.
    """
    import os

    frames = _frames(size)
    best: dict[Loop, tuple[float, float, str, float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # this process's own, empty
        for _ in range(rounds):
            _measure_round(loops, frames, size, device, epochs, best)
    return best


def _measure_round(
    loops: tuple[Loop, ...],
    frames: np.ndarray,
    size: tuple[int, int],
    device: str,
    epochs: int,
    best: dict[Loop, tuple[float, float, str, float]],
) -> None:
    """One turn of every loop, each kept in `best` where it beat its earlier turns (`_measure`)."""
    for loop, precision in loops:
        if loop.startswith("plain"):
            network = loop.removeprefix("plain").removeprefix("-") or "nerv"
            epoch_seconds = _plain_train(frames, size, epochs + 1, 5e-4, network)
            seconds, used, first = epoch_seconds[1:], "fp32", epoch_seconds[0][0]
        else:
            seconds, used, first = _suite_train(loop, frames, size, epochs + 1, device, precision)
        wall = len(frames) / min(w for w, _ in seconds)
        cpu = len(frames) / min(c for _, c in seconds)
        start_up = first - min(w for w, _ in seconds)
        old = best.get((loop, precision), (0.0, 0.0, used, 0.0))
        best[loop, precision] = (max(wall, old[0]), max(cpu, old[1]), used, max(start_up, old[3]))


def _alternate(
    plain: Loop, suite: tuple[Loop, ...], size: tuple[int, int], device: str, repeats: int, epochs: int = 2
) -> tuple[dict[Loop, float], dict[Loop, float], dict[Loop, str], dict[Loop, float]]:
    """Best frames/s (wall clock, CPU time), precision and longest start-up seconds of each loop over
    `repeats` alternations of a plain and a suite process."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    best: dict[Loop, float] = {}
    cpu: dict[Loop, float] = {}
    used: dict[Loop, str] = {}
    start_up: dict[Loop, float] = {}
    for _ in range(repeats):
        for loops in ((plain,), suite):
            with spawn.Pool(1) as pool:
                measured = pool.apply(_measure, (loops, size, device, epochs))
            for key, (fps, cpu_fps, precision, first) in measured.items():
                best[key] = max(best.get(key, 0.0), fps)
                cpu[key] = max(cpu.get(key, 0.0), cpu_fps)
                used[key] = precision
                start_up[key] = max(start_up.get(key, 0.0), first)
    return best, cpu, used, start_up


def _perf_train_planned(
    network: str,
    size: tuple[int, int],
    device: str,
    repeats: int,
    shape: str,
    steps: tuple[str, str],
    frames_per_step: int,
    compiled: bool = False,
) -> dict[str, Any]:
    """Training frames/s of `network`'s loop (a method's name) against its plain loop, on the network the
    method trains at `HNERV_BPP` at `size` (`shape` describes it; `steps` says what a plain and a suite
    step take, `frames_per_step` how many frames a suite step trains on).

    As `perf_train`: separate fresh processes, alternating, best epoch; the suite's loop runs at the cpu
    budget's batch size and precision (channels-last, fused Adam, bf16 autocast where the CPU has it).
    With `compiled`, the same loop with its step compiled runs beside it, and its one-off cost of
    compiling is stated with the steps it takes to earn it back.
    """
    from bench.budgets import get_budget

    budget = get_budget(PERF_BUDGET)
    plain, suite = (f"plain-{network}", "fp32"), (network, None)
    loops = (suite, (network + COMPILED, None)) if compiled else (suite,)
    best, cpu, used, start_up = _alternate(plain, loops, size, device, repeats)
    base, cpu_base = best[plain], cpu[plain]
    label = f"{size[1]}x{size[0]}"
    lines = [
        f"train at {label} on {device}, the {network} network sized for {HNERV_BPP:g} bpp ({shape}), best epoch "
        f"of {repeats} alternating runs:",
        f"  plain loop (fp32, NCHW, for-loop Adam, per-step host copy, {steps[0]}): {base:.2f} frames/s, "
        f"{cpu_base:.2f} per CPU second",
    ]
    result: dict[str, Any] = {"device": device, "size": label, "plain_fps": base}
    for key in loops:
        fps, cpu_fps = best[key], cpu[key]
        name = key[0].replace(COMPILED, " compiled")
        how = f"{used[key]} (budget {PERF_BUDGET}: {budget.precision})"
        lines.append(
            f"  {name}, {how}, {steps[1]}: {fps:.2f} frames/s  ({fps / base:.2f}x), "
            f"{cpu_fps:.2f} per CPU second ({cpu_fps / cpu_base:.2f}x)"
        )
        entry = {"fps": fps, "ratio": fps / base, "cpu_ratio": cpu_fps / cpu_base, "precision": used[key]}
        if key is suite:
            result.update(entry)
        else:
            saved = 1 / best[suite] - 1 / fps  # seconds saved per frame trained
            paid = start_up[key] - start_up[suite]
            break_even = paid / (saved * frames_per_step) if saved > 0 else math.inf
            entry |= {"compile_s": paid, "break_even_steps": break_even}
            result["compiled"] = entry
            lines.append(
                f"    compiling cost {paid:.1f} s once (first epoch, empty cache), earned back after "
                f"{break_even:,.0f} steps"
            )
    print("\n".join(lines))
    return result


def perf_train_hnerv(
    size: tuple[int, int] = PERF_SIZES[0], device: str = "cpu", repeats: int = 2
) -> dict[str, Any]:
    """Training frames/s of hnerv's loop against the plain loop, on the network hnerv trains at the cpu size."""
    from bench.budgets import get_budget

    arch = hnerv_arch(size)
    shape = f"C0 {arch.fc_dim}, lower width {arch.lower_width}, encoder width {arch.enc_width}"
    batch = get_budget(PERF_BUDGET).batch_size
    return _perf_train_planned("hnerv", size, device, repeats, shape, ("batch 1", f"batch {batch}"), batch)


def perf_train_hinerv(
    size: tuple[int, int] = PERF_SIZES[0], device: str = "cpu", repeats: int = 2, compiled: bool = True
) -> dict[str, Any]:
    """Training frames/s of hinerv's loop against the plain loop, on the network hinerv trains at the cpu
    size, on its patches: what its training phase (300 of its 390 epochs) runs, eagerly as hinerv trains
    by default and, with `compiled`, as `hinerv[compile=true]` does (left out, saying why, where this
    machine cannot compile). The suite's step takes the budget's batch of frames in patches drawn across
    the clip, the plain step every patch of one frame.
    """
    import torch

    from bench.budgets import get_budget
    from methods.nerv_family.compiling import compile_unavailable

    reason = compile_unavailable(torch.device(device)) if compiled else None
    if reason is not None:
        print(f"hinerv's compiled loop is not timed: {reason}")
        compiled = False

    arch, (ph, pw) = hinerv_network(size)
    per_frame = (arch.output_size[0] // ph) * (arch.output_size[1] // pw)
    shape = (
        f"channels {arch.channels}, grid channels {arch.base_grid_channels}/{arch.enc_grid_channels}, "
        f"{pw}x{ph} patches"
    )
    batch = get_budget(PERF_BUDGET).batch_size
    steps = (f"one frame's {per_frame} patches a step", f"batch {batch} frames ({batch * per_frame} patches)")
    return _perf_train_planned("hinerv", size, device, repeats, shape, steps, batch, compiled)


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
        best, _, used, _ = _alternate(("plain", "fp32"), SUITE_LOOPS, size, device, repeats)
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
