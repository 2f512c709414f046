"""Performance checks: the suite's hot paths timed against a plain version written the obvious way.

Each check runs both versions side by side in one process, interleaved and repeated, and reports
throughput and the ratio, because absolute numbers on a shared machine mean little. The metrics section is
the harness's; the methods time their own hot paths (`Method.perf_sections`, found through the registry).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from bench.contract import PerfSection

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
)  # the metric set before VMAF, XPSNR, ST-LPIPS and the YUV / sequence PSNRs


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
    the whole default metric set (adding the sequence and YUV PSNRs, ST-LPIPS, VMAF and XPSNR) vs that set, in wall
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


SECTIONS = ("train", "masks", "coding", "metrics", "decode")


def method_sections(section: str) -> list[PerfSection]:
    """The methods' timings for `section`, each once (methods sharing one return the same function)."""
    from bench import registry

    found: list[PerfSection] = []
    for name in registry.names(available_only=True):
        timing = registry.get(name).perf_sections().get(section)
        if timing is not None and timing not in found:
            found.append(timing)
    return found


def perf_command(args: Any) -> int:
    """`bench perf [section]`: print each measurement with its ratio to the baseline run beside it.

    The metrics section is the harness's own; every other section is timed by the methods it concerns.
    """
    wanted = SECTIONS if args.section == "all" else (args.section,)
    for section in wanted:
        if section == "metrics":
            perf_metrics()
        else:
            for timing in method_sections(section):
                timing(device=args.device, repeats=args.repeats)
    return 0
