"""Verdicts on a study's claims: holds, does not hold, or cannot tell, from the paired per-seed differences.

A claims file (the `claims:` list of `bench check`, by default `<results>/claims.yaml`) states orderings
such as "supermask-learned - nerv-dense >= 0". At each rate both methods have, the per-seed differences
give a mean and a two-sided interval (each end one-sided at the claims' confidence, `bench.check`): the
claim **holds** when the whole interval clears its minimum difference, **does not hold** when the whole
interval lies below it, and otherwise the seeds **cannot tell**. A file that also states a claim's reverse
(for `bench check`, which judges one direction) shows it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.check import CONFIDENCE, claim_interval, load_thresholds, paired_differences
from bench.record import Record

HOLDS, FAILS, CANNOT_TELL = "holds", "does not hold", "cannot tell"


@dataclass(frozen=True)
class Verdict:
    """One claim at one rate (or why it has no rate)."""

    claim: str  # "supermask-learned - nerv-dense >= +0 (psnr)"
    why: str  # the file's words for it
    budget: str
    protocol: str  # "epochs", "time" or "any"
    bpp: float | None
    seeds: str  # how the differences were formed
    mean: float | None
    low: float | None
    high: float | None
    verdict: str  # HOLDS, FAILS, CANNOT_TELL, or the reason there are no differences


def _key(claim: dict[str, Any], reverse: bool = False) -> tuple:
    """What identifies a claim; `reverse`: the claim's reverse (worse - better >= -min_difference)."""
    sides = (claim["worse"], claim["better"]) if reverse else (claim["better"], claim["worse"])
    floor = -claim["min_difference"] if reverse else claim["min_difference"]
    return (*sides, claim["metric"], claim["sequence"], claim["budget"], claim.get("match"), floor)


def claim_verdicts(records: list[Record], claims: list[dict[str, Any]]) -> list[Verdict]:
    """A verdict per claim and common rate; a claim whose reverse came earlier in the file is skipped."""
    seen: set[tuple] = set()
    verdicts = []
    for claim in claims:
        if _key(claim, reverse=True) in seen:
            continue
        seen.add(_key(claim))
        floor = claim["min_difference"]
        common = {
            "claim": f"{claim['better']} - {claim['worse']} >= {floor:+g} ({claim['metric']})",
            "why": claim.get("why", ""),
            "budget": claim["budget"],
            "protocol": claim.get("match", "any"),
        }
        paired = paired_differences(claim, records)
        if isinstance(paired, str):
            verdicts.append(
                Verdict(**common, bpp=None, seeds="", mean=None, low=None, high=None, verdict=paired)
            )
            continue
        for rate in paired:
            centre, low, high = claim_interval(rate.diffs)
            verdict = HOLDS if low >= floor else FAILS if high < floor else CANNOT_TELL
            verdicts.append(
                Verdict(
                    **common, bpp=rate.bpp, seeds=rate.how, mean=centre, low=low, high=high, verdict=verdict
                )
            )
    return verdicts


def load_claims(path: Path) -> list[dict[str, Any]]:
    """The claims of a `bench check` file (bounds in it are ignored here)."""
    return load_thresholds(path)["claims"]


def interval_level() -> str:
    """The two-sided level of a verdict's interval: "90 %" for one-sided 95 % ends."""
    return f"{2 * CONFIDENCE - 1:.0%}".replace("%", " %")
