"""Does a gap close as the networks grow? Paired differences against a trained anchor across clip sizes.

At a fixed bpp a larger clip gets a larger network, so runs that differ only in the clip's size
(`--resize 72x128,144x256,180x320`) at the same sequence, rate, epochs and protocol form a family. At every
size where a method and the anchor (nerv-dense) share seeds, their per-seed PSNR differences give a mean
and a two-sided interval (the claims' t interval, `bench.check.claim_interval`). A least-squares line through
all the paired differences against log10(weights) then says how the gap moves per decade of weights,
with its interval: narrows, widens, or no trend these sizes can tell. A size where the anchor itself scores
below the still frame (the floor, when its records are there) measures a network too small to model the
clip rather than the methods: it is shown, marked, and left out of the line.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.check import CONFIDENCE, claim_interval
from reports import figures
from reports.points import Point

ANCHOR = "nerv-dense"
FLOOR = "still-frame"
MIN_SIZES = 3  # a trend needs three sizes at least


@dataclass(frozen=True)
class GapAtSize:
    """method - anchor at one clip size: the per-seed differences' mean and two-sided interval."""

    size: str  # HEIGHTxWIDTH of the coded frames
    weights: float  # the anchor's parameter count there (mean over its seeds)
    seeds: tuple[int, ...]
    mean: float
    low: float
    high: float
    below_floor: bool = False  # the anchor scored below the still frame here: left out of the fit

    @property
    def label(self) -> str:
        return f"{self.size} (below the floor)" if self.below_floor else self.size


@dataclass(frozen=True)
class GapTrend:
    """A method's gaps across sizes and the fitted dB per decade of weights, with its two-sided interval."""

    method: str
    gaps: tuple[GapAtSize, ...]
    slope: float
    slope_low: float
    slope_high: float

    def verdict(self) -> str:
        if self.slope_low <= 0.0 <= self.slope_high:
            return "no trend these sizes can tell"
        overall = float(np.mean([g.mean for g in self.gaps]))
        towards_zero = (self.slope > 0) == (overall < 0)
        return (
            "the gap narrows as the networks grow" if towards_zero else "the gap widens as the networks grow"
        )

    def text(self) -> str:
        left_out = [g.size for g in self.gaps if g.below_floor]
        note = (
            f"; left out of the fit, {ANCHOR} below the still frame: {', '.join(left_out)}"
            if left_out
            else ""
        )
        return (
            f"{self.method} - {ANCHOR}: {self.slope:+.2f} dB per decade of weights "
            f"({CONFIDENCE * 2 - 1:.0%} interval {self.slope_low:+.2f} to {self.slope_high:+.2f}): {self.verdict()}"
            f"{note}"
        )


@dataclass
class ScalingView:
    """One family (sequence, rate, budget but for the size): every method's gap to the anchor by size."""

    id: str
    title: str
    figure: str
    trends: list[GapTrend]
    caption: list[str] = field(default_factory=list)


def _size(point: Point) -> tuple[int, int] | None:
    record = point.records[0]
    size = record.budget.get("size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    height, width = record.sequence.get("height"), record.sequence.get("width")
    return (int(height), int(width)) if height and width else None


def _family(point: Point) -> tuple[str, str, float, str]:
    """What a point shares with its runs at other clip sizes: everything but the size."""
    return (point.sequence, point.match, point.target_bpp, point.records[0].budget_label_except("size"))


def _seed_psnr(point: Point) -> dict[int, float]:
    return {r.seed: value for r in point.records if (value := r.mean("psnr")) is not None}


def _slope(xs: list[float], ys: list[float]) -> tuple[float, float, float] | None:
    """Least-squares slope of ys on xs and its two-sided interval at the claims' level; None when the xs
    cannot fix a line (sizes with the same weights)."""
    if len(set(xs)) < 2 or len(xs) < 3:
        return None
    x, y = np.asarray(xs), np.asarray(ys)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(x) - 2
    residual = float(np.sum((design @ coef - y) ** 2))
    variance = residual / dof * float(np.linalg.inv(design.T @ design)[1, 1])
    from scipy import stats

    half = float(stats.t.ppf(CONFIDENCE, dof)) * math.sqrt(max(variance, 0.0))
    return float(coef[1]), float(coef[1] - half), float(coef[1] + half)


def gap_trends(
    points: Sequence[Point], anchor: str = ANCHOR
) -> dict[tuple[str, str, float, str], list[GapTrend]]:
    """family -> a trend per method that meets the anchor, with shared seeds, at `MIN_SIZES` sizes or more
    where the anchor is not below the floor."""
    families: dict[tuple, dict[str, dict[tuple[int, int], Point]]] = defaultdict(lambda: defaultdict(dict))
    # (sequence, bpp, size) -> the still frame's PSNR there
    floors: dict[tuple[str, float, tuple[int, int]], float] = {}
    for p in points:
        size = _size(p) if p.records else None
        if size is not None and p.method == FLOOR and (psnr := p.mean.get("psnr")) is not None:
            floors[p.sequence, p.target_bpp, size] = float(psnr)
        elif size is not None and p.match != "n/a":
            families[_family(p)][p.method][size] = p
    found: dict[tuple[str, str, float, str], list[GapTrend]] = {}
    for family, methods in families.items():
        reference = methods.get(anchor, {})
        trends = []
        for method in figures.method_order(m for m in methods if m != anchor):
            gaps, xs, ys = [], [], []
            for size, point in sorted(methods[method].items(), key=lambda kv: kv[0][0] * kv[0][1]):
                base = reference.get(size)
                weights = base.mean.get("params") if base is not None else None
                if base is None or not weights:
                    continue
                mine, theirs = _seed_psnr(point), _seed_psnr(base)
                seeds = sorted(set(mine) & set(theirs))
                if not seeds:
                    continue
                diffs = [mine[s] - theirs[s] for s in seeds]
                centre, low, high = claim_interval(diffs)
                floor = floors.get((family[0], family[2], size))
                below = floor is not None and float(np.mean([theirs[s] for s in seeds])) < floor
                gaps.append(
                    GapAtSize(
                        f"{size[0]}x{size[1]}",
                        float(weights),
                        tuple(seeds),
                        centre,
                        low,
                        high,
                        below,
                    )
                )
                if not below:
                    xs += [math.log10(weights)] * len(diffs)
                    ys += diffs
            fitted = sum(not g.below_floor for g in gaps)
            fit = _slope(xs, ys) if fitted >= MIN_SIZES else None
            if fit is not None:
                trends.append(GapTrend(method, tuple(gaps), *fit))
        if trends:
            found[family] = trends
    return found


def scaling_views(
    points: Sequence[Point], styles: dict[str, figures.Style], start: int = 0
) -> list[ScalingView]:
    """A figure per family with trends: the gap to the anchor against the anchor's weights, with intervals."""
    views = []
    for family, trends in sorted(gap_trends(points).items(), key=lambda kv: repr(kv[0])):
        sequence, match, target, budget = family
        caption = [
            f"PSNR of each method minus {ANCHOR}'s, paired by seed, at clip sizes that differ only in frame size "
            f"(so the network grows with the clip at the same bpp); bars: the {CONFIDENCE * 2 - 1:.0%} interval "
            f"of the per-seed differences (t, from their spread); x: {ANCHOR}'s weights at that size."
        ]
        caption += [f"{t.text()}." for t in trends]
        series = [
            figures.GapSeries(
                t.method,
                styles[t.method],
                [g.weights for g in t.gaps],
                [g.mean for g in t.gaps],
                [g.low for g in t.gaps],
                [g.high for g in t.gaps],
            )
            for t in trends
        ]
        views.append(
            ScalingView(
                f"scaling-{start + len(views)}",
                f"{sequence} · {target:g} bpp · {budget} · matched by {match}",
                figures.svg_data_uri(figures.gap_figure(series, ANCHOR)),
                trends,
                caption,
            )
        )
    return views
