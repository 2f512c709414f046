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


# --- masks: supermask step vs dense step --------------------------------------------------------------------


def perf_masks_section(size: tuple[int, int] = (180, 320)) -> dict[str, Any]:
    """Supermask vs dense training step of the same architecture (the cpu budget's sized network)."""
    from methods.nerv import NeRVConfig, choose_grid
    from methods.supermask import perf_masks

    start, strides = choose_grid(size[0], size[1])
    arch = NeRVConfig(stem_dims=(85,), fc_dim=4, lower_width=16, start=start, strides=strides)
    result = perf_masks(arch, batch_size=2, steps=8)
    print(
        f"masks at {size[1]}x{size[0]} ({int(result['masked_weights']):,} masked weights): dense step "
        f"{result['dense_ms']:.1f} ms, supermask step {result['supermask_ms']:.1f} ms "
        f"({result['ratio']:.2f}x), mask bookkeeping {result['masks_ms']:.1f} ms"
    )
    return result


# --- coding: coded size vs the entropy bound, and throughput -------------------------------------------------


def perf_coding(count: int = 1_000_000) -> dict[str, Any]:
    """Range coding of 8-bit weight-like symbols and of 4-level masks: bits / entropy bound, MB/s."""
    from methods.coding import decode_symbols, empirical_entropy_bits, encode_symbols

    rng = np.random.default_rng(0)
    weights = np.clip(np.round(rng.laplace(127.5, 12.0, count)), 0, 255).astype(np.int64)
    probabilities = np.array([0.7, 0.2, 0.07, 0.03])
    levels = rng.choice(4, size=count, p=probabilities).astype(np.int64)
    result: dict[str, Any] = {}
    for name, symbols, alphabet, known in (
        ("weights", weights, 256, None),
        ("level maps", levels, 4, probabilities),
    ):
        begin = time.perf_counter()
        data = encode_symbols(symbols, alphabet, known)
        encode_s = time.perf_counter() - begin
        begin = time.perf_counter()
        back = decode_symbols(data, count, alphabet, known)
        decode_s = time.perf_counter() - begin
        assert np.array_equal(np.asarray(back), symbols)
        if known is None:
            bound = empirical_entropy_bits(symbols, alphabet)
        else:
            bound = float(-np.log2(probabilities[symbols]).sum())
        ratio = 8 * len(data) / bound
        result[name] = {
            "ratio": ratio,
            "encode_MBps": count / encode_s / 1e6,
            "decode_MBps": count / decode_s / 1e6,
        }
        print(
            f"coding {name}: {8 * len(data):,} bits vs entropy bound {bound:,.0f} ({ratio:.4f}x), "
            f"encode {count / encode_s / 1e6:.1f} M symbols/s, decode {count / decode_s / 1e6:.1f} M symbols/s"
        )
    return result


# --- metrics: the wrapper vs the libraries called directly ---------------------------------------------------


def _direct_metrics(ref: np.ndarray, test: np.ndarray) -> None:
    """PSNR, MS-SSIM and FLIP by calling numpy, pytorch-msssim and flip-evaluator directly."""
    import flip_evaluator
    import torch
    from pytorch_msssim import ms_ssim

    from bench.metrics import ms_ssim_window

    a, b = ref.astype(np.float64) / 255, test.astype(np.float64) / 255
    _ = 10 * np.log10(1 / ((a - b) ** 2).mean(axis=(1, 2, 3)))
    x = (
        torch.from_numpy(ref)
        .permute(0, 3, 1, 2)
        .float()
        .div(255)
        .contiguous(memory_format=torch.channels_last)
    )
    y = (
        torch.from_numpy(test)
        .permute(0, 3, 1, 2)
        .float()
        .div(255)
        .contiguous(memory_format=torch.channels_last)
    )
    ms_ssim(x, y, data_range=1.0, size_average=False, win_size=ms_ssim_window(*ref.shape[1:3]))
    for r, t in zip(ref, test, strict=True):
        flip_evaluator.evaluate(
            r.astype(np.float32) / 255, t.astype(np.float32) / 255, "LDR", applyMagma=False
        )


def perf_metrics(repeats: int = 3) -> dict[str, Any]:
    """Seconds per frame of PSNR + MS-SSIM + FLIP through `bench.metrics` vs direct library calls."""
    from bench.budgets import get_budget
    from bench.data import load_sequence, prepare_clip
    from bench.metrics import score

    clip = prepare_clip(load_sequence("bunny"), get_budget("cpu")).frames
    big = load_sequence("bunny").read(0, 1)
    big = np.ascontiguousarray(np.pad(big, ((0, 0), (180, 180), (320, 320), (0, 0)), mode="reflect"))  # 1080p
    result: dict[str, Any] = {}
    for name, ref in (("cpu budget 180x320", clip), ("1080p", big)):
        noisy = np.clip(ref.astype(np.int16) + np.random.default_rng(0).integers(-8, 9, ref.shape), 0, 255)
        test = noisy.astype(np.uint8)
        wrapper, direct = [], []
        for _ in range(repeats):
            begin = time.perf_counter()
            score(ref, test, metrics=("psnr", "ms-ssim", "flip"))
            wrapper.append((time.perf_counter() - begin) / len(ref))
            begin = time.perf_counter()
            _direct_metrics(ref, test)
            direct.append((time.perf_counter() - begin) / len(ref))
        w, d = min(wrapper), min(direct)
        result[name] = {"wrapper_s_per_frame": w, "direct_s_per_frame": d, "overhead": w / d, "fps": 1 / w}
        print(
            f"metrics {name}: wrapper {w * 1000:.1f} ms/frame vs direct {d * 1000:.1f} ms/frame "
            f"({w / d:.2f}x), {1 / w:.1f} frames/s scoring a sequence"
        )
    return result


# --- decode: rendering frames from a decoded network ---------------------------------------------------------


def perf_decode(frames: int = 8) -> dict[str, Any]:
    """Frames per second rendering a NeRV (dense weights, or masked random weights) at two sizes."""
    import torch

    from methods.nerv import NeRVConfig, NeRVGenerator, choose_grid, render
    from methods.supermask import MaskSettings, build_generator

    result: dict[str, Any] = {}
    for label, size in (("cpu size 180x320", (180, 320)), ("1080p", (1080, 1920))):
        start, strides = choose_grid(*size)
        arch = NeRVConfig(stem_dims=(85,), fc_dim=4, lower_width=16, start=start, strides=strides)
        count = frames if size[0] < 500 else 2
        for kind in ("nerv-dense", "supermask"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = (
                    NeRVGenerator(arch) if kind == "nerv-dense" else build_generator(arch, MaskSettings(), 0)
                )
            model.eval()
            render(model, 1)
            begin = time.perf_counter()
            render(model, count)
            fps = count / (time.perf_counter() - begin)
            result[f"{kind} {label}"] = fps
            print(f"decode {kind} at {label}: {fps:.2f} frames/s")
    return result


SECTIONS = ("train", "masks", "coding", "metrics", "decode")


def perf_command(args: Any) -> int:
    """`bench perf [section]`: print each measurement with its ratio to the baseline run beside it."""
    wanted = SECTIONS if args.section == "all" else (args.section,)
    for section in wanted:
        if section == "train":
            perf_train(device=args.device, repeats=args.repeats)
        elif section == "masks":
            perf_masks_section()
        elif section == "coding":
            perf_coding()
        elif section == "metrics":
            perf_metrics()
        else:
            perf_decode()
    return 0
