"""Plan before spending: an estimate of each job's seconds, fitted on the records a results directory holds.

The model per method is deliberately simple and stated: a trained method's seconds grow with the work
(frames x pixels x epochs) and with a power of the target rate (larger networks at higher rates); a codec's
with the pixels alone; under `--match time` training takes the budget's seconds plus the method's overhead.
The constants are fitted on finished records (log-space least squares), per method and device; where there
are none, the defaults below are used and the estimate says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from bench import registry
from bench.identity import PlannedJob
from bench.record import Record

# Defaults, for a results directory with no records yet. Fitted (this module's own fit) on the 24 records
# of a default `bench run` (cpu budget, Bunny; nerv-dense, nerv-pruned, both supermasks, x264, x265) on a
# 2-core machine shared with other work (load average ~7): trained methods 1.46 s per megapixel-epoch at
# 0.1 bpp, seconds ~ (bpp / 0.1) ** 0.71; codecs 4.13 s per megapixel; 35 min 22 s wall in all. The same
# 24 jobs took 4 min 34 s on the machine alone (docs/performance.md), so the defaults are scaled by that
# ratio (0.129) to describe a machine that runs one grid at a time.
_QUIET_OVER_LOADED = (4 * 60 + 34) / (35 * 60 + 22)
DEFAULT_TRAINED_S_PER_MPIX_EPOCH = 1.46 * _QUIET_OVER_LOADED
DEFAULT_CODEC_S_PER_MPIX = 4.13 * _QUIET_OVER_LOADED
DEFAULT_RATE_EXPONENT = 0.71  # seconds ~ (bpp / 0.1) ** exponent for trained methods
REFERENCE_BPP = 0.1
# With no CUDA records to fit, a GPU is assumed to train this many times faster than the CPU defaults
# (an assumption, stated in the estimate, until `bench run --device cuda` records exist to fit on).
ASSUMED_GPU_SPEEDUP = 40.0


@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str  # "fitted on N records" or "default"


def _work(pixels: float, epochs: float, trains: bool) -> float:
    return pixels / 1e6 * (epochs if trains else 1.0)


@dataclass
class _Fit:
    log_c: float
    exponent: float
    records: int


def _fit(samples: list[tuple[float, float, float]], default_exponent: float) -> _Fit:
    """samples: (work, bpp, seconds). Fit log(s) = log c + log(work) + e log(bpp/ref)."""
    work = np.array([s[0] for s in samples])
    rate = np.log(np.array([s[1] for s in samples]) / REFERENCE_BPP)
    target = np.log(np.array([s[2] for s in samples])) - np.log(work)
    if len(set(np.round(rate, 6))) >= 2:
        design = np.stack([np.ones_like(rate), rate], axis=1)
        (log_c, exponent), *_ = np.linalg.lstsq(design, target, rcond=None)
        return _Fit(float(log_c), float(exponent), len(samples))
    return _Fit(float(np.median(target - default_exponent * rate)), default_exponent, len(samples))


class CostModel:
    """Per (method, device) fits of seconds against work and rate."""

    def __init__(self, records: list[Record]) -> None:
        groups: dict[tuple[str, str, str], list[tuple[float, float, float]]] = defaultdict(list)
        for r in records:
            seconds = r.seconds
            pixels = (
                r.sequence.get("num_frames", 0) * r.sequence.get("width", 0) * r.sequence.get("height", 0)
            )
            if not seconds or seconds <= 0 or not pixels:
                continue
            trains = r.match != "n/a"
            if r.match == "time":
                overhead = seconds - r.timings.get("fit_s", 0.0)
                if overhead > 0:
                    groups[(r.method, _device(r.device), "overhead")].append(
                        (_work(pixels, 1, False), r.target_bpp, overhead)
                    )
                continue
            epochs = r.budget.get("epochs", 1) if trains else 1
            groups[(r.method, _device(r.device), "work")].append(
                (_work(pixels, epochs, trains), r.target_bpp, seconds)
            )
        self.fits = {
            key: _fit(samples, DEFAULT_RATE_EXPONENT if key[2] == "work" else 0.0)
            for key, samples in groups.items()
        }

    def estimate(self, job: PlannedJob, pixels: int) -> Estimate:
        spec = job.spec
        cls = registry.get(spec.method)
        budget = spec.effective_budget()
        device = _device(spec.device)
        if spec.match == "time" and cls.trains:
            fit = self.fits.get((spec.method, device, "overhead"))
            overhead = (
                math.exp(fit.log_c) * _work(pixels, 1, False)
                if fit
                else DEFAULT_CODEC_S_PER_MPIX * pixels / 1e6
            )
            return Estimate(budget.train_seconds + overhead, _source(fit))
        work = _work(pixels, budget.epochs, cls.trains)
        fit = self.fits.get((spec.method, device, "work"))
        if fit is not None:
            return Estimate(
                math.exp(fit.log_c) * work * (spec.target_bpp / REFERENCE_BPP) ** fit.exponent, _source(fit)
            )
        if cls.trains:
            seconds = (
                DEFAULT_TRAINED_S_PER_MPIX_EPOCH
                * work
                * (spec.target_bpp / REFERENCE_BPP) ** DEFAULT_RATE_EXPONENT
            )
        else:
            seconds = DEFAULT_CODEC_S_PER_MPIX * work
        if device == "cuda" and cls.trains:
            return Estimate(
                seconds / ASSUMED_GPU_SPEEDUP, f"default, assuming a GPU {ASSUMED_GPU_SPEEDUP:g}x this CPU"
            )
        return Estimate(seconds, "default")


def _device(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def _source(fit: _Fit | None) -> str:
    return f"fitted on {fit.records} records" if fit else "default"


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
