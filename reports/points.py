"""RD points: the seeds of one method variant at one target, folded into a mean and a sample std."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.record import Record
from reports import figures

# where a method's stats keep its parameter and non-zero counts (first key present wins)
PARAM_KEYS = ("parameters", "params", "masked_weights")
NONZERO_KEYS = ("nonzeros", "nonzero_parameters", "nonzero")
# every metric a record may hold (bench.metrics.METRIC_NAMES), then the other numbers a point shows
RECORDED_METRICS = (
    "psnr",
    "psnr-seq",
    "psnr-y",
    "psnr-u",
    "psnr-v",
    "psnr-yuv",
    "ms-ssim",
    "flip",
    "lpips",
    "stlpips",
    "vmaf",
    "xpsnr",
)
FIELDS = (
    "bpp",
    *RECORDED_METRICS,
    "params",
    "nonzeros",
    "macs_per_pixel",
    "encode_s",
    "decode_s",
    "decode_fps",
)


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    spec: str | None  # format spec of a number; None for text
    with_std: bool = False
    optional: bool = False  # dropped when no point has a value


COLUMNS = (
    Column("method", "method", None),
    Column("sequence", "sequence", None),
    Column("budget", "budget", None),
    Column("match", "matching", None),
    Column("seeds", "seeds", None),
    Column("target_bpp", "target", "g"),
    Column("bpp", "bpp", ".4f", with_std=True),
    Column("psnr", "PSNR (dB)", ".2f", with_std=True),
    Column("ms-ssim", "MS-SSIM", ".4f", with_std=True),
    Column("flip", "FLIP", ".4f", with_std=True),
    Column("lpips", "LPIPS", ".4f", with_std=True, optional=True),
    Column("stlpips", "ST-LPIPS", ".4f", with_std=True, optional=True),
    Column("psnr-yuv", "PSNR-YUV 6:1:1 (dB)", ".2f", optional=True),
    Column("vmaf", "VMAF", ".2f", with_std=True, optional=True),
    Column("xpsnr", "XPSNR (dB)", ".2f", optional=True),
    Column("params", "params", ",.0f", optional=True),
    Column("nonzeros", "non-zeros", ",.0f", optional=True),
    Column("macs_per_pixel", "decode MAC/pixel", ",.0f", optional=True),
    Column("encode_s", "encode (s)", ".3g"),
    Column("decode_s", "decode (s)", ".3g"),
    Column("decode_fps", "decode (frames/s)", ".3g", optional=True),
    Column("convergence", "convergence", None, optional=True),
)


@dataclass
class Point:
    """One RD point: every seed of a method at one target on one sequence, budget and matching protocol."""

    method: str  # the method's label: `name` or `name[param=value,...]`
    sequence: str
    budget: str  # the budget's label: `name` or `name[epochs=240,...]`
    match: str
    target_bpp: float
    seeds: list[int]
    mean: dict[str, float | None]
    std: dict[str, float | None]
    records: list[Record] = field(default_factory=list)
    convergence: str | None = None  # "not converged (+0.8 dB from 120 epochs)", ... (trained points only)

    @property
    def frames_budget(self) -> str:
        """The budget label restricted to what changes the coded frames (their count and size)."""
        return self.records[0].frames_label if self.records else self.budget

    def value(self, key: str) -> Any:
        if key == "seeds":
            return ", ".join(str(s) for s in self.seeds)
        if key in FIELDS:
            return self.mean.get(key)
        return getattr(self, key)

    def has(self, key: str) -> bool:
        """Whether this point has a value for a column (optional columns are dropped when none has)."""
        return (self.mean.get(key) if key in FIELDS else getattr(self, key, None)) is not None


def _first_stat(stats: dict[str, Any], keys: Sequence[str]) -> float | None:
    for key in keys:
        value = stats.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def record_values(record: Record) -> dict[str, float | None]:
    """The numbers of one record the report shows, None where the record has none."""
    return {
        "bpp": record.bpp,
        **{name: record.mean(name) for name in RECORDED_METRICS},
        "params": _first_stat(record.stats, PARAM_KEYS),
        "nonzeros": _first_stat(record.stats, NONZERO_KEYS),
        "macs_per_pixel": _first_stat(record.stats, ("macs_per_pixel",)),
        "encode_s": record.timings.get("encode_s"),
        "decode_s": record.timings.get("decode_s"),
        "decode_fps": record.decode_fps,
    }


def fold_points(records: Iterable[Record]) -> list[Point]:
    """Group finished records into points; mean and sample std over seeds of every number.

    A point is one method variant (its label names non-default parameters) on one sequence, effective
    budget (name plus overrides), matching protocol and target: two variants of a method are two curves.
    """
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for rec in records:
        groups[(rec.label, rec.seq_name, rec.budget_label, rec.match, float(rec.target_bpp))].append(rec)
    points = []
    for (label, sequence, budget, match, target), recs in groups.items():
        recs.sort(key=lambda r: (r.seed, r.key))
        values = [record_values(r) for r in recs]
        mean: dict[str, float | None] = {}
        std: dict[str, float | None] = {}
        for name in FIELDS:
            xs = [float(v[name]) for v in values if v[name] is not None]
            mean[name] = float(np.mean(xs)) if xs else None
            std[name] = float(np.std(xs, ddof=1)) if len(xs) > 1 else (0.0 if xs else None)
        points.append(Point(label, sequence, budget, match, target, [r.seed for r in recs], mean, std, recs))
    order = {m: i for i, m in enumerate(figures.method_order(p.method for p in points))}
    points.sort(key=lambda p: (p.sequence, p.budget, p.match, order[p.method], p.target_bpp))
    return points
