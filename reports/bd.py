"""BD-rate and BD-PSNR of every method against one anchor method, on each view's curves.

The numbers come from `bench.rd`; this module only decides which curves meet: the anchor (falling back to
the first method present, and saying so) against every other method of the same view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bench.rd import BDResult, bd_psnr, bd_rate

Curve = tuple[Sequence[float], Sequence[float]]  # (mean bpp, mean PSNR) per point


@dataclass(frozen=True)
class BDRow:
    method: str
    points: int
    rate: BDResult
    psnr: BDResult


def choose_anchor(methods: Iterable[str], wanted: str) -> tuple[str | None, str | None]:
    """The anchor to use and, when it is not the one asked for, a sentence saying why."""
    present = list(methods)
    if wanted in present:
        return wanted, None
    if not present:
        return None, None
    fallback = present[0]
    return fallback, f"anchor '{wanted}' has no results here; using '{fallback}' (the first method present)"


def bd_rows(curves: Mapping[str, Curve], anchor: str) -> list[BDRow]:
    """One row per non-anchor method of a view; every row says why when a value cannot be computed."""
    rows = []
    base = curves.get(anchor)
    for method, (bpp, psnr) in curves.items():
        if method == anchor:
            continue
        if base is None:
            missing = BDResult(None, f"no {anchor} curve on this view")
            rows.append(BDRow(method, len(bpp), missing, missing))
            continue
        rows.append(
            BDRow(
                method, len(bpp), bd_rate(base[0], base[1], bpp, psnr), bd_psnr(base[0], base[1], bpp, psnr)
            )
        )
    return rows
