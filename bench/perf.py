"""Performance checks: the suite's hot paths timed against a plain version written the obvious way.

Each check runs both versions side by side in one process, interleaved and repeated, and reports
throughput and the ratio, because absolute numbers on a shared machine mean little.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# --- train: the NeRV training loop --------------------------------------------------------------------------

PERF_STEM = (512,)  # NeRV-S-like network for the timing (stem 512, C0 26, lower width 96)
PERF_FC_DIM = 26
PERF_LOWER_WIDTH = 96
PERF_FRAMES = 8


def _perf_model(size: tuple[int, int]):
    import torch

    from methods.nerv import NeRVConfig, NeRVGenerator, choose_grid

    start, strides = choose_grid(size[0], size[1])
    config = NeRVConfig(
        stem_dims=PERF_STEM, fc_dim=PERF_FC_DIM, lower_width=PERF_LOWER_WIDTH, start=start, strides=strides
    )
    torch.manual_seed(0)
    return NeRVGenerator(config)


def _frames(size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)  # timing only: pixel values do not change the work done
    return rng.integers(0, 256, size=(PERF_FRAMES, size[0], size[1], 3), dtype=np.uint8)


def _plain_train(frames: np.ndarray, size: tuple[int, int], steps: int, lr: float) -> float:
    """The obvious loop: NCHW, per-step copy of one frame from the host, for-loop Adam, batch 1. Seconds."""
    import torch

    model = _perf_model(size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999), foreach=False, fused=False)
    count = len(frames)
    order = np.random.default_rng(0).permutation(steps) % count
    begin = time.perf_counter()
    for i in order:
        target = torch.from_numpy(frames[i]).permute(2, 0, 1)[None].float() / 255
        t = torch.tensor([i / count], dtype=torch.float32)
        loss = torch.nn.functional.mse_loss(model(t), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
    return time.perf_counter() - begin


def _suite_train(
    frames: np.ndarray, size: tuple[int, int], steps: int, lr: float, batch: int, device: str
) -> tuple[float, int]:
    """`methods.training.train` for about `steps` steps of `batch` frames: (seconds, frames trained)."""
    import torch

    from bench.budgets import get_budget
    from bench.contract import Context
    from methods.training import train

    model = _perf_model(size)
    count = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(workdir=Path(tmp), budget=get_budget("paper"), device=device)
        epochs = max(1, round(steps * batch / count))
        begin = time.perf_counter()
        train(model, frames, ctx, epochs=epochs, lr=lr, batch_size=batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - begin, epochs * -(-count // batch) * batch


def _measure(kind: str, size: tuple[int, int], steps: int, batch: int, device: str) -> float:
    """Frames per second of one loop, after a short warm-up, in a fresh process (see `perf_train`)."""
    frames, lr = _frames(size), 5e-4
    if kind == "plain":
        _plain_train(frames, size, 2, lr)
        return steps / _plain_train(frames, size, steps, lr)
    _suite_train(frames, size, 1, lr, batch, device)
    seconds, done = _suite_train(frames, size, max(1, steps // batch), lr, batch, device)
    return done / seconds


def perf_train(
    size: tuple[int, int] = (180, 320),
    steps: int = 16,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] = (1, 2, 4),
    repeats: int = 3,
) -> dict[str, Any]:
    """Frames per second of the suite's training loop vs the plain loop, same network, same run.

    Every measurement runs in a fresh process (the suite's loop tunes the process allocator, which must
    not leak into the plain loop's timing); each repeat runs the plain loop and then the suite's loop at
    every batch size, so both see the same machine load. Medians over repeats are reported with the ratio
    suite / plain (above 1 = the suite is faster).
    """
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    plain: list[float] = []
    suite: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for _ in range(repeats):
        runs = [("plain", 1)] + [("suite", b) for b in batch_sizes]
        for kind, batch in runs:
            with spawn.Pool(1) as pool:
                fps = pool.apply(_measure, (kind, size, steps, batch, "cpu" if kind == "plain" else device))
            (plain if kind == "plain" else suite[batch]).append(fps)
    base = statistics.median(plain)
    result: dict[str, Any] = {
        "size": list(size),
        "device": device,
        "steps": steps,
        "repeats": repeats,
        "plain_fps": base,
        "suite_fps": {b: statistics.median(v) for b, v in suite.items()},
        "plain_runs": plain,
        "suite_runs": suite,
    }
    result["ratio"] = {b: fps / base for b, fps in result["suite_fps"].items()}
    lines = [
        f"train perf at {size[1]}x{size[0]} on {device} (median of {repeats}):",
        f"  plain loop (NCHW, for-loop Adam, per-step host copy, batch 1): {base:.2f} frames/s",
    ]
    for b, fps in result["suite_fps"].items():
        lines.append(f"  suite loop, batch {b}: {fps:.2f} frames/s  ({result['ratio'][b]:.2f}x)")
    print("\n".join(lines))
    return result
