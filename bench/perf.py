"""Performance checks: the suite's hot paths timed against a plain version written the obvious way.

Each check runs both versions side by side in one process, interleaved and repeated, and reports
throughput and the ratio, because absolute numbers on a shared machine mean little.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

# --- train: the NeRV training loop --------------------------------------------------------------------------

PERF_STEM = (512,)  # NeRV-S-like network for the timing (stem 512, C0 26, lower width 96)
PERF_FC_DIM = 26
PERF_LOWER_WIDTH = 96
PERF_FRAMES = 8
PERF_SIZES = ((180, 320), (360, 640))  # the cpu budget's size and one larger
PERF_BUDGET = "cpu"  # the suite's loops run with this budget's batch size and precision
# (name, precision): the suite's loops timed against the plain one; None = the budget's precision
SUITE_LOOPS: tuple[tuple[str, str | None], ...] = (
    ("nerv-dense", "fp32"),
    ("nerv-dense", None),
    ("supermask-fixed", None),
    ("supermask-learned", None),
)


def _perf_arch(size: tuple[int, int]):
    from methods.nerv import NeRVConfig, choose_grid

    start, strides = choose_grid(size[0], size[1])
    return NeRVConfig(
        stem_dims=PERF_STEM, fc_dim=PERF_FC_DIM, lower_width=PERF_LOWER_WIDTH, start=start, strides=strides
    )


def _perf_model(size: tuple[int, int]):
    import torch

    from methods.nerv import NeRVGenerator

    torch.manual_seed(0)
    return NeRVGenerator(_perf_arch(size))


def _frames(size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)  # timing only: pixel values do not change the work done
    return rng.integers(0, 256, size=(PERF_FRAMES, size[0], size[1], 3), dtype=np.uint8)


def _plain_train(frames: np.ndarray, size: tuple[int, int], epochs: int, lr: float) -> list[float]:
    """The obvious loop: NCHW, per-step copy of one frame from the host, for-loop Adam, batch 1.

    Returns the seconds of each epoch (one pass over the frames in a shuffled order).
    """
    import torch

    model = _perf_model(size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999), foreach=False, fused=False)
    count = len(frames)
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(epochs):
        begin = time.perf_counter()
        for i in rng.permutation(count):
            target = torch.from_numpy(frames[i]).permute(2, 0, 1)[None].float() / 255
            t = torch.tensor([i / count], dtype=torch.float32)
            loss = torch.nn.functional.mse_loss(model(t), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
        seconds.append(time.perf_counter() - begin)
    return seconds


class _SyncClock:
    """A progress bar that notes the time of every sync point of the training loop (here: epoch ends)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def update(self, n: int = 1, **stats: float) -> None:
        self.marks.append(time.perf_counter())

    def close(self) -> None:
        pass


def _suite_train(
    loop: str, frames: np.ndarray, size: tuple[int, int], epochs: int, device: str, precision: str | None
) -> tuple[list[float], str]:
    """`methods.training.train` running `loop`'s network: the seconds of each epoch, and the precision used.

    Epochs are timed between the loop's sync points, so start-up and the final checkpoint are not counted.
    """
    from bench.budgets import get_budget
    from bench.contract import Context
    from methods.supermask import MaskSettings, SupermaskConfig, build_generator, parameter_groups
    from methods.training import train

    budget = get_budget(PERF_BUDGET)
    groups, lr = None, budget.lr
    if loop == "nerv-dense":
        model = _perf_model(size)
    else:
        scale_mode = loop.removeprefix("supermask-")
        defaults = SupermaskConfig()
        model = build_generator(_perf_arch(size), MaskSettings(scale_mode=scale_mode), 0)
        groups = parameter_groups(model, scale_mode, defaults.score_lr, defaults.alpha_lr)
        lr = defaults.score_lr
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
    return [b - a for a, b in zip(ends[:-1], ends[1:], strict=False)], result.precision


Loop = tuple[str, str | None]  # (name, precision; None = the budget's)


def _measure(
    loops: tuple[Loop, ...], size: tuple[int, int], device: str, epochs: int, rounds: int = 2
) -> dict[Loop, tuple[float, str]]:
    """Best-epoch frames/s of each loop in this (fresh) process, and the precision it ran in.

    The loops take turns for `rounds` rounds, so that the machine's load hits all alike. The first epoch of
    each run warms up (kernel selection, allocator) and is not counted; the fastest epoch is reported,
    because on a shared machine noise only ever adds time.
    """
    frames = _frames(size)
    best: dict[Loop, tuple[float, str]] = {}
    for _ in range(rounds):
        for loop, precision in loops:
            if loop == "plain":
                seconds, used = _plain_train(frames, size, epochs + 1, 5e-4)[1:], "fp32"
            else:
                seconds, used = _suite_train(loop, frames, size, epochs + 1, device, precision)
            fps = len(frames) / min(seconds)
            best[loop, precision] = (max(fps, best.get((loop, precision), (0.0, used))[0]), used)
    return best


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
    import multiprocessing

    from bench.budgets import get_budget

    budget = get_budget(PERF_BUDGET)
    spawn = multiprocessing.get_context("spawn")
    result: dict[str, Any] = {
        "device": device,
        "repeats": repeats,
        "batch_size": budget.batch_size,
        "sizes": {},
    }
    for size in sizes:
        epochs = 2
        best: dict[Loop, float] = {}
        used: dict[Loop, str] = {}
        for _ in range(repeats):
            for loops in ((("plain", "fp32"),), SUITE_LOOPS):
                with spawn.Pool(1) as pool:
                    measured = pool.apply(_measure, (loops, size, device, epochs))
                for key, (fps, precision) in measured.items():
                    best[key] = max(best.get(key, 0.0), fps)
                    used[key] = precision
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


# --- masks: supermask step vs dense step --------------------------------------------------------------------


def perf_masks_section(targets: tuple[float, ...] = (0.1, 0.2, 0.4)) -> dict[str, Any]:
    """Supermask vs dense training steps of the same architecture, at the training loop's precision.

    The networks are the ones the supermask methods train on Bunny at the cpu budget (sized for each
    target bpp), plus the NeRV-S-like shape of the train section for reference.
    """
    import torch

    from bench.budgets import get_budget
    from bench.data import load_sequence, prepare_clip
    from methods.supermask import perf_masks
    from methods.supermask_fixed import SupermaskFixed
    from methods.training import resolve_precision

    budget = get_budget(PERF_BUDGET)
    precision = resolve_precision(budget.precision, torch.device("cpu"))
    clip = prepare_clip(load_sequence("bunny"), budget)
    networks = [
        (f"sized for {t:g} bpp", SupermaskFixed().plan(clip, t, budget).architecture()) for t in targets
    ]
    networks.append(("NeRV-S-like", _perf_arch(budget.size or (180, 320))))
    result: dict[str, Any] = {"precision": precision, "batch_size": budget.batch_size, "networks": {}}
    print(
        f"masks at {clip.info.width}x{clip.info.height}, {precision}, batch {budget.batch_size} "
        "(steps interleaved, min of 40; NeRV-S-like 24):"
    )
    for label, arch in networks:
        steps = 24 if label == "NeRV-S-like" else 40  # small networks: short steps, more of them
        measured = perf_masks(arch, batch_size=budget.batch_size, steps=steps, precision=precision)
        result["networks"][label] = measured
        print(
            f"  {label} ({int(measured['masked_weights']):,} masked weights): dense step "
            f"{measured['dense_ms']:.1f} ms, supermask-fixed {measured['fixed_ms']:.1f} ms "
            f"({measured['fixed_ratio']:.2f}x), supermask-learned {measured['learned_ms']:.1f} ms "
            f"({measured['learned_ratio']:.2f}x); mask bookkeeping {measured['masks_ms']:.1f} ms, of which "
            f"threshold selection {measured['selection_ms']:.1f} ms "
            f"({measured['selection_ms'] / measured['learned_ms']:.0%} of the learned step)"
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
            f"encode {count / encode_s / 1e6:.1f} MB/s, decode {count / decode_s / 1e6:.1f} MB/s "
            "(one-byte symbols)"
        )
    return result


# --- metrics: the wrapper vs the libraries called directly ---------------------------------------------------


def _direct_metrics(ref: np.ndarray, test: np.ndarray) -> None:
    """PSNR, MS-SSIM and FLIP by calling numpy, pytorch-msssim and flip-evaluator directly."""
    import flip_evaluator
    import torch
    from pytorch_msssim import ms_ssim

    from bench.metrics import ms_ssim_window

    def as_tensor(frames: np.ndarray) -> torch.Tensor:
        nchw = torch.from_numpy(frames).permute(0, 3, 1, 2)
        return nchw.float().div(255).contiguous(memory_format=torch.channels_last)

    a, b = ref.astype(np.float64) / 255, test.astype(np.float64) / 255
    _ = 10 * np.log10(1 / ((a - b) ** 2).mean(axis=(1, 2, 3)))
    window = ms_ssim_window(*ref.shape[1:3])
    ms_ssim(as_tensor(ref), as_tensor(test), data_range=1.0, size_average=False, win_size=window)
    for r, t in zip(ref, test, strict=True):
        flip_evaluator.evaluate(
            r.astype(np.float32) / 255, t.astype(np.float32) / 255, "LDR", applyMagma=False
        )


PREVIOUS_METRICS = (
    "psnr",
    "ms-ssim",
    "flip",
)  # the metric set before VMAF, XPSNR and the YUV / sequence PSNRs


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (the ffmpeg runs)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _timed(run: Callable[[], Any], frames: int) -> tuple[float, float]:
    """(wall, CPU) seconds per frame of one call."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    run()
    return (time.perf_counter() - wall) / frames, (_cpu_seconds() - cpu) / frames


def perf_metrics(repeats: int = 5) -> dict[str, Any]:
    """Seconds per frame of PSNR + MS-SSIM + FLIP through `bench.metrics` vs direct library calls, and of
    the whole default metric set (adding the sequence and YUV PSNRs, VMAF and XPSNR) vs that set, in wall
    time and in CPU time (this process and its ffmpeg children; steadier when others share the cores)."""
    from bench.budgets import get_budget
    from bench.data import load_sequence, prepare_clip
    from bench.metrics import DEFAULT_METRICS, score

    clip = prepare_clip(load_sequence("bunny"), get_budget("cpu")).frames
    big = load_sequence("bunny").read(0, 1)
    big = np.ascontiguousarray(np.pad(big, ((0, 0), (180, 180), (320, 320), (0, 0)), mode="reflect"))  # 1080p
    added = tuple(m for m in DEFAULT_METRICS if m not in PREVIOUS_METRICS)
    result: dict[str, Any] = {}
    for name, ref in (("cpu budget 180x320", clip), ("1080p", big)):
        noisy = np.clip(ref.astype(np.int16) + np.random.default_rng(0).integers(-8, 9, ref.shape), 0, 255)
        test = noisy.astype(np.uint8)
        runs = {
            "wrapper": partial(score, ref, test, metrics=PREVIOUS_METRICS),
            "direct": partial(_direct_metrics, ref, test),
            "default": partial(score, ref, test, metrics=DEFAULT_METRICS),
            "added": partial(score, ref, test, metrics=added),
        }
        times: dict[str, list[tuple[float, float]]] = {key: [] for key in runs}
        for _ in range(repeats):
            for key, run in runs.items():
                times[key].append(_timed(run, len(ref)))
        wall = {key: min(t[0] for t in ts) for key, ts in times.items()}
        cpu = {key: min(t[1] for t in ts) for key, ts in times.items()}
        w, d = wall["wrapper"], wall["direct"]
        result[name] = {
            "wrapper_s_per_frame": w,
            "direct_s_per_frame": d,
            "overhead": w / d,
            "fps": 1 / w,
            "default_set_s_per_frame": wall["default"],
            "default_set_ratio": wall["default"] / w,
            "default_set_cpu_ratio": cpu["default"] / cpu["wrapper"],
            "added_s_per_frame": wall["added"],
            "added_cpu_share": cpu["added"] / cpu["wrapper"],
        }
        print(
            f"metrics {name}: wrapper {w * 1000:.1f} ms/frame vs direct {d * 1000:.1f} ms/frame "
            f"({w / d:.2f}x), {1 / w:.1f} frames/s scoring a sequence"
        )
        print(
            f"metrics {name}: default set ({len(DEFAULT_METRICS)} metrics) {wall['default'] * 1000:.1f} ms/frame vs "
            f"{'+'.join(PREVIOUS_METRICS)} {w * 1000:.1f} ms/frame ({wall['default'] / w:.2f}x; CPU time "
            f"{cpu['default'] / cpu['wrapper']:.2f}x); {', '.join(added)} alone {wall['added'] * 1000:.1f} ms/frame, "
            f"CPU time +{100 * cpu['added'] / cpu['wrapper']:.0f} %"
        )
    return result


# --- decode: rendering frames from a decoded network ---------------------------------------------------------


DECODE_SIZES = (("cpu size 180x320", (180, 320)), ("1080p", (1080, 1920)))


def perf_decode(
    frames: int = 8, repeats: int = 3, sizes: tuple[tuple[str, tuple[int, int]], ...] = DECODE_SIZES
) -> dict[str, Any]:
    """Frames per second rendering a decoded NeRV (dense weights) and a decoded supermask (stored level
    maps and scales on the random weights) at two sizes, through the decoders' `render`; nerv-dense also
    beside a plain NCHW render of the same model. Best of `repeats` after a warm-up frame."""
    import torch

    from methods.nerv import NeRVConfig, NeRVGenerator, choose_grid, render
    from methods.supermask import MaskSettings, build_generator, layer_alphas, level_maps, load_code

    result: dict[str, Any] = {}
    for label, size in sizes:
        start, strides = choose_grid(*size)
        arch = NeRVConfig(stem_dims=(85,), fc_dim=4, lower_width=16, start=start, strides=strides)
        count = frames if size[0] < 500 else 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            dense = NeRVGenerator(arch)
        plain = NeRVGenerator(arch)
        plain.load_state_dict(dense.state_dict())
        masked = build_generator(arch, MaskSettings(), 0)
        load_code(masked, level_maps(masked), layer_alphas(masked))  # the decoder's state
        baseline = _frames_per_second(partial(_plain_render, plain), count, repeats)
        result[f"plain {label}"] = baseline
        for kind, model in (("nerv-dense", dense), ("supermask", masked)):
            measured = _frames_per_second(partial(render, model), count, repeats)
            result[f"{kind} {label}"] = measured
            beside = f"  ({measured / baseline:.2f}x the plain NCHW render)" if kind == "nerv-dense" else ""
            print(f"decode {kind} at {label}: {measured:.2f} frames/s{beside}")
    return result


def _frames_per_second(render_frames: Callable[[int], Any], count: int, repeats: int) -> float:
    """Best of `repeats` renders of `count` frames, after a warm-up frame."""
    render_frames(1)
    best = math.inf
    for _ in range(repeats):
        begin = time.perf_counter()
        render_frames(count)
        best = min(best, time.perf_counter() - begin)
    return count / best


def _plain_render(model: Any, count: int) -> None:
    """`methods.nerv.render` written the obvious way: NCHW, 4 frames a batch, same output conversion."""
    import torch

    from methods.nerv import frame_times

    with torch.no_grad():
        model.eval()
        for t in frame_times(count).split(4):
            (model(t) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


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
