"""Rate-distortion helpers: a metric interpolated at a matched bpp, and BD-rate / BD-PSNR between two curves.

Bjøntegaard deltas come from the `bjontegaard` package (Akima interpolation). They are only meaningful
between well-formed curves that cover the same quality range, so every BD value carries either a number or
the reason there is none: too few points, a curve that is not monotone, or too little overlap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 4  # Bjøntegaard's cubic needs 4 points; fewer points make the interpolated curve a guess
MIN_OVERLAP = 0.5  # share of the union of both ranges that both curves must cover
INTERPOLATION = "akima"


@dataclass(frozen=True)
class BDResult:
    """A BD value, or None with the one-line reason it could not be computed."""

    value: float | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def interpolate_at(
    bpp: Sequence[float], metric: Sequence[float], target: float, log_rate: bool = True
) -> float | None:
    """The metric at `target` bpp, linear between the two measured points around it (in log bpp by default).

    Rate-distortion curves are close to straight in log rate, which is why log is the default. Points at the
    same bpp are averaged. Returns None outside the measured range: extrapolating an RD curve is a guess.
    """
    rates, values = _fold_duplicates(bpp, metric)
    if len(rates) == 0 or not rates[0] <= target <= rates[-1]:
        return None
    if log_rate:
        if target <= 0:
            return None
        return float(np.interp(math.log(target), np.log(rates), values))
    return float(np.interp(target, rates, values))


def _fold_duplicates(bpp: Sequence[float], metric: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    rates = np.asarray(bpp, dtype=float)
    values = np.asarray(metric, dtype=float)
    if rates.shape != values.shape:
        raise ValueError(f"{rates.size} rates but {values.size} metric values")
    keep = np.isfinite(rates) & np.isfinite(values)
    rates, values = rates[keep], values[keep]
    unique, inverse = np.unique(rates, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=unique.size)
    counts = np.bincount(inverse, minlength=unique.size)
    return unique, sums / np.maximum(counts, 1)


def curve_problem(bpp: Sequence[float], psnr: Sequence[float]) -> str | None:
    """Why a curve cannot enter a BD computation, or None when it can."""
    rates = np.asarray(bpp, dtype=float)
    values = np.asarray(psnr, dtype=float)
    if rates.size < MIN_POINTS:
        return f"{rates.size} point{'s' if rates.size != 1 else ''} (BD needs {MIN_POINTS})"
    if not (np.all(np.isfinite(rates)) and np.all(np.isfinite(values)) and np.all(rates > 0)):
        return "missing or non-positive values"
    order = np.argsort(rates)
    if np.any(np.diff(rates[order]) <= 0):
        return "two points at the same bpp"
    if np.any(np.diff(values[order]) <= 0):
        return "quality does not rise with bpp"
    return None


def overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Length of the intersection of two ranges over the length of their union (0 when disjoint)."""
    lo, hi = max(min(a), min(b)), min(max(a), max(b))
    union = max(max(a), max(b)) - min(min(a), min(b))
    return max(hi - lo, 0.0) / union if union > 0 else 1.0


def _checked(
    anchor_bpp: Sequence[float],
    anchor_psnr: Sequence[float],
    test_bpp: Sequence[float],
    test_psnr: Sequence[float],
) -> tuple[list[np.ndarray], str | None]:
    for who, rates, values in (("anchor", anchor_bpp, anchor_psnr), ("test", test_bpp, test_psnr)):
        problem = curve_problem(rates, values)
        if problem:
            return [], f"{who}: {problem}"
    arrays = []
    for rates, values in ((anchor_bpp, anchor_psnr), (test_bpp, test_psnr)):
        r, v = np.asarray(rates, dtype=float), np.asarray(values, dtype=float)
        order = np.argsort(r)
        arrays += [r[order], v[order]]
    return arrays, None


def bd_rate(
    anchor_bpp: Sequence[float],
    anchor_psnr: Sequence[float],
    test_bpp: Sequence[float],
    test_psnr: Sequence[float],
) -> BDResult:
    """Average rate difference (%) of test vs anchor at equal quality; negative = test needs fewer bits."""
    arrays, problem = _checked(anchor_bpp, anchor_psnr, test_bpp, test_psnr)
    if problem:
        return BDResult(None, problem)
    share = overlap(arrays[1], arrays[3])
    if share < MIN_OVERLAP:
        return BDResult(None, f"quality ranges overlap {share:.0%} (needs {MIN_OVERLAP:.0%})")
    import bjontegaard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is checked above, with the reason kept
        value = bjontegaard.bd_rate(
            *arrays, method=INTERPOLATION, require_matching_points=False, min_overlap=MIN_OVERLAP
        )
    return BDResult(float(value))


def bd_psnr(
    anchor_bpp: Sequence[float],
    anchor_psnr: Sequence[float],
    test_bpp: Sequence[float],
    test_psnr: Sequence[float],
) -> BDResult:
    """Average quality difference (dB for PSNR) of test vs anchor at equal rate; positive = test is better."""
    arrays, problem = _checked(anchor_bpp, anchor_psnr, test_bpp, test_psnr)
    if problem:
        return BDResult(None, problem)
    share = overlap(np.log(arrays[0]), np.log(arrays[2]))
    if share < MIN_OVERLAP:
        return BDResult(None, f"bpp ranges overlap {share:.0%} in log rate (needs {MIN_OVERLAP:.0%})")
    import bjontegaard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = bjontegaard.bd_psnr(
            *arrays, method=INTERPOLATION, require_matching_points=False, min_overlap=MIN_OVERLAP
        )
    return BDResult(float(value))
