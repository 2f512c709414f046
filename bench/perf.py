"""Performance checks: the suite's hot paths timed against a plain version written the obvious way.

Each check runs both versions side by side in one process, interleaved and repeated, and reports
throughput and the ratio, because absolute numbers on a shared machine mean little. The metrics section is
the harness's; the methods time their own hot paths (`Method.perf_sections`, found through the registry).
"""

from __future__ import annotations

import time
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
)  # the metric set before VMAF, XPSNR and the YUV / sequence PSNRs


def perf_metrics(repeats: int = 5) -> dict[str, Any]:
    """Seconds per frame of PSNR + MS-SSIM + FLIP through `bench.metrics` vs direct library calls, and of
    the whole default metric set (adding the sequence and YUV PSNRs, VMAF and XPSNR) vs that set."""
    from bench.budgets import get_budget
    from bench.data import load_sequence, prepare_clip
    from bench.metrics import DEFAULT_METRICS, score

    clip = prepare_clip(load_sequence("bunny"), get_budget("cpu")).frames
    big = load_sequence("bunny").read(0, 1)
    big = np.ascontiguousarray(np.pad(big, ((0, 0), (180, 180), (320, 320), (0, 0)), mode="reflect"))  # 1080p
    result: dict[str, Any] = {}
    for name, ref in (("cpu budget 180x320", clip), ("1080p", big)):
        noisy = np.clip(ref.astype(np.int16) + np.random.default_rng(0).integers(-8, 9, ref.shape), 0, 255)
        test = noisy.astype(np.uint8)
        added_names = [m for m in DEFAULT_METRICS if m not in PREVIOUS_METRICS]
        wrapper, direct, full, added = [], [], [], []
        for _ in range(repeats):
            begin = time.perf_counter()
            score(ref, test, metrics=PREVIOUS_METRICS)
            wrapper.append((time.perf_counter() - begin) / len(ref))
            begin = time.perf_counter()
            _direct_metrics(ref, test)
            direct.append((time.perf_counter() - begin) / len(ref))
            begin = time.perf_counter()
            score(ref, test, metrics=DEFAULT_METRICS)
            full.append((time.perf_counter() - begin) / len(ref))
            begin = time.perf_counter()
            score(ref, test, metrics=added_names)
            added.append((time.perf_counter() - begin) / len(ref))
        w, d, f, a = min(wrapper), min(direct), min(full), min(added)
        result[name] = {
            "wrapper_s_per_frame": w,
            "direct_s_per_frame": d,
            "overhead": w / d,
            "fps": 1 / w,
            "default_set_s_per_frame": f,
            "default_set_ratio": f / w,
            "added_s_per_frame": a,
            "added_share": a / w,
        }
        print(
            f"metrics {name}: wrapper {w * 1000:.1f} ms/frame vs direct {d * 1000:.1f} ms/frame "
            f"({w / d:.2f}x), {1 / w:.1f} frames/s scoring a sequence"
        )
        print(
            f"metrics {name}: default set ({len(DEFAULT_METRICS)} metrics, with VMAF, XPSNR, YUV and sequence "
            f"PSNR) {f * 1000:.1f} ms/frame vs {'+'.join(PREVIOUS_METRICS)} {w * 1000:.1f} ms/frame ({f / w:.2f}x); "
            f"the added metrics alone {a * 1000:.1f} ms/frame (+{100 * a / w:.0f} %)"
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
