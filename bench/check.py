"""`bench check`: compare a results directory with committed bounds, so CI fails when quality regresses.

A thresholds file (YAML) holds two lists::

    bounds:    # per method x sequence x budget (optionally one target bpp)
      - {method: x264, sequence: bunny, budget: smoke, min_psnr: 30.1, min_ms_ssim: 0.95, max_flip: 0.11,
         max_bpp_deviation: 0.10}
    claims:    # orderings between methods at matched (target) bpp
      - {better: supermask-learned, worse: supermask-fixed, metric: psnr, min_difference: 0.3,
         sequence: bunny, budget: smoke, why: "measured +0.9 dB; 0.3 dB lies 3 paired spreads below it"}

A claim holds when better - worse >= `min_difference` (which may be positive: an advantage, not just "not
worse"). With several seeds the per-seed differences of the same seed are paired, and the claim must hold
for the lower end of their one-sided 95 % interval (mean - t * sd / sqrt(n)), so noise cannot pass for an
advantage; with one seed the single difference is judged, and a method's seeds against a codec's one record
give the interval of the method's spread. Where a folder holds both protocols (`--match epochs` and
`time`), `match: epochs` or `match: time` says which trained records a claim or bound judges.
Every check is printed with its value and bound.
Exit 1 when any falls short, 2 when the file is malformed.
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from bench import store
from bench.errors import ConfigError
from bench.metrics import METRIC_NAMES
from bench.record import Record

# metric key in thresholds (the record's name with "_" for "-") -> (record metric name, True when higher
# is better): every metric a run records (bench.metrics.METRIC_NAMES); FLIP, LPIPS and ST-LPIPS are distances
LOWER_IS_BETTER = ("flip", "lpips", "stlpips")
_METRICS = {name.replace("-", "_"): (name, name not in LOWER_IS_BETTER) for name in METRIC_NAMES}
_BOUND_KEYS = {"method", "sequence", "budget", "target_bpp", "max_bpp_deviation", "match"} | {
    f"{'min' if hib else 'max'}_{key}" for key, (_, hib) in _METRICS.items()
}
_CLAIM_KEYS = {"better", "worse", "metric", "min_difference", "sequence", "budget", "why", "match"}
PROTOCOLS = ("epochs", "time")  # `match:` of a bound or claim: which protocol's trained records it judges
CONFIDENCE = 0.95  # one-sided level of a claim's interval over paired seeds
_FILE_KEYS = ("bounds", "claims", "notes")
EXIT_FAIL, EXIT_MALFORMED = 1, 2


class ThresholdsError(ConfigError):
    """A malformed thresholds file (exit code 2)."""


@dataclass
class CheckRow:
    check: str
    subject: str
    value: float | None
    bound: str
    ok: bool
    detail: str = ""  # printed under the row (why a record was rejected)


def load_thresholds(path: Path) -> dict[str, list[dict[str, Any]]]:
    import yaml

    if not path.is_file():
        raise ThresholdsError(f"thresholds file '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ThresholdsError(f"thresholds file '{path}' is not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ThresholdsError(
            f"thresholds file '{path}' is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(data, dict):
        raise ThresholdsError(
            f"thresholds file '{path}' must be a mapping with 'bounds' and/or 'claims' lists"
        )
    unknown = sorted(str(key) for key in data if key not in _FILE_KEYS)
    if unknown:
        hint = difflib.get_close_matches(unknown[0], _FILE_KEYS, n=1)
        raise ThresholdsError(
            f"thresholds file '{path}' has unknown key '{unknown[0]}'"
            + (f" (did you mean '{hint[0]}'?)" if hint else f": use {', '.join(_FILE_KEYS)}")
        )
    for section, allowed, required in (
        ("bounds", _BOUND_KEYS, {"method", "sequence", "budget"}),
        ("claims", _CLAIM_KEYS, {"better", "worse", "metric", "min_difference", "sequence", "budget"}),
    ):
        entries = data.get(section) or []
        if not isinstance(entries, list):
            raise ThresholdsError(f"'{section}' in '{path}' must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ThresholdsError(f"{section}[{i}] in '{path}' must be a mapping")
            if section == "claims" and "margin" in entry:
                raise ThresholdsError(
                    f"claims[{i}] in '{path}' uses 'margin'; claims now state min_difference "
                    f"(better - worse >= min_difference): 'margin: m' was 'min_difference: -m'"
                )
            unknown = sorted(str(key) for key in entry if key not in allowed)
            if unknown:
                raise ThresholdsError(f"{section}[{i}] in '{path}' has unknown key '{unknown[0]}'")
            missing = required - set(entry)
            if missing:
                raise ThresholdsError(f"{section}[{i}] in '{path}' lacks key '{sorted(missing)[0]}'")
            for key, value in entry.items():
                numeric = key.startswith(("min_", "max_")) or key == "target_bpp"
                if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ThresholdsError(f"{section}[{i}].{key} in '{path}' must be a number, got {value!r}")
                if numeric and not math.isfinite(value):
                    raise ThresholdsError(
                        f"{section}[{i}].{key} in '{path}' must be a number other than inf or nan, got {value!r}"
                    )
                if not numeric and not isinstance(value, str):
                    raise ThresholdsError(f"{section}[{i}].{key} in '{path}' must be a string, got {value!r}")
            if "match" in entry and entry["match"] not in PROTOCOLS:
                raise ThresholdsError(
                    f"{section}[{i}].match in '{path}' must be one of {', '.join(PROTOCOLS)}, got {entry['match']!r}"
                )
            if section == "claims" and str(entry["metric"]).replace("-", "_") not in _METRICS:
                raise ThresholdsError(f"claims[{i}].metric in '{path}' must be one of {', '.join(_METRICS)}")
    return {"bounds": data.get("bounds") or [], "claims": data.get("claims") or []}


def _matches(record: Record, method: str, entry: dict[str, Any]) -> bool:
    """`method` is a label: a plain name matches the method run with its defaults only. `match` picks a
    protocol's trained records; codecs (which do not train) match either."""
    return (
        record.label == method
        and record.seq_name == entry["sequence"]
        and record.budget_label == entry["budget"]
        and ("target_bpp" not in entry or abs(record.target_bpp - entry["target_bpp"]) < 1e-9)
        and ("match" not in entry or record.match in (entry["match"], "n/a"))
    )


def evaluate(results: Path, thresholds: dict[str, list[dict[str, Any]]]) -> list[CheckRow]:
    loaded = store.load_results(results)
    records = loaded.finished
    rows: list[CheckRow] = [
        CheckRow("record verifies", r.path.parent.name, None, "key, identity, stream agree", False, r.reason)
        for r in loaded.rejected
    ]
    for bound in thresholds["bounds"]:
        found = [r for r in records if _matches(r, bound["method"], bound)]
        subject = f"{bound['method']} / {bound['sequence']} / {bound['budget']}"
        if not found:
            rows.append(CheckRow("records exist", subject, None, ">= 1 record", False))
            continue
        for record in found:
            point = f"{subject} @ {record.target_bpp:g} bpp seed {record.seed}"
            for key, (name, higher_is_better) in _METRICS.items():
                limit_key = f"{'min' if higher_is_better else 'max'}_{key}"
                if limit_key in bound:
                    value = record.mean(name)
                    ok = value is not None and (
                        value >= bound[limit_key] if higher_is_better else value <= bound[limit_key]
                    )
                    rows.append(
                        CheckRow(
                            name, point, value, f"{'>=' if higher_is_better else '<='} {bound[limit_key]}", ok
                        )
                    )
            if "max_bpp_deviation" in bound:
                deviation = abs((record.bpp or 0.0) / record.target_bpp - 1)
                rows.append(
                    CheckRow(
                        "bpp deviation",
                        point,
                        deviation,
                        f"<= {bound['max_bpp_deviation']}",
                        deviation <= bound["max_bpp_deviation"],
                    )
                )
    for claim in thresholds["claims"]:
        rows += _judge_claim(claim, records)
    return rows


@dataclass
class PairedRate:
    """One common target rate of a claim: better - worse (sign-flipped for a distance), per shared seed."""

    bpp: float
    diffs: list[float]
    how: str  # "paired over seeds 10, 11, 12" or "means, no common seed", and the precisions if mixed


def paired_differences(claim: dict[str, Any], records: list[Record]) -> list[PairedRate] | str:
    """The claim's differences at every rate both sides have, or why there are none (one line)."""
    name, higher_is_better = _METRICS[claim["metric"].replace("-", "_")]
    by_rate: dict[float, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    precisions: dict[float, set[str]] = defaultdict(set)
    protocols: dict[str, set[str]] = defaultdict(set)
    for side in ("better", "worse"):
        for record in records:
            value = record.mean(name)
            if _matches(record, claim[side], claim) and value is not None:
                by_rate[record.target_bpp][side][record.seed] = value
                if isinstance(record.stats.get("precision"), str):
                    precisions[record.target_bpp].add(record.stats["precision"])
                if record.match != "n/a":
                    protocols[claim[side]].add(record.match)
    mixed = sorted(method for method, found in protocols.items() if len(found) > 1)
    if mixed:  # a seed's equal-epochs and equal-time runs would overwrite each other
        return (
            f"{mixed[0]} has records of both protocols (--match epochs and time) here: add "
            f"'match: epochs' or 'match: time' to the claim"
        )
    missing = [claim[side] for side in ("better", "worse") if not any(s[side] for s in by_rate.values())]
    if missing:
        present = sorted(
            {
                r.label
                for r in records
                if r.seq_name == claim["sequence"] and r.budget_label == claim["budget"]
            }
        )
        protocol = f" with --match {claim['match']}" if "match" in claim else ""
        return (
            f"no {name} records of {', '.join(repr(m) for m in missing)} on {claim['sequence']} at budget "
            f"{claim['budget']}{protocol}; present there: {', '.join(present) or 'none'}"
        )
    sign = 1.0 if higher_is_better else -1.0
    paired = []
    for bpp, sides in sorted(by_rate.items()):
        if not (sides["better"] and sides["worse"]):
            continue
        seeds = sorted(set(sides["better"]) & set(sides["worse"]))
        better, worse = sides["better"], sides["worse"]
        if seeds:
            diffs = [sign * (better[s] - worse[s]) for s in seeds]
            how = f"paired over seeds {', '.join(map(str, seeds))}"
        elif len(worse) == 1:  # a deterministic codec's one record: the other side's seeds against it
            (fixed,) = worse.values()
            diffs = [sign * (v - fixed) for v in better.values()]
            how = f"seeds {', '.join(map(str, sorted(better)))} against {claim['worse']}'s one record"
        elif len(better) == 1:
            (fixed,) = better.values()
            diffs = [sign * (fixed - v) for v in worse.values()]
            how = f"seeds {', '.join(map(str, sorted(worse)))} against {claim['better']}'s one record"
        else:  # no common seed: compare the means
            diffs = [sign * (mean(sides["better"].values()) - mean(sides["worse"].values()))]
            how = "means, no common seed"
        if len(precisions[bpp]) > 1:  # e.g. runs resumed on a machine without native bf16
            how += f"; trained in {' and '.join(sorted(precisions[bpp]))}"
        paired.append(PairedRate(bpp, diffs, how))
    return paired or "no common target bpp"


def _judge_claim(claim: dict[str, Any], records: list[Record]) -> list[CheckRow]:
    """One row per common target rate: the (paired) difference and whether its lower bound clears the claim."""
    name = _METRICS[claim["metric"].replace("-", "_")][0]
    subject = f"{claim['better']} vs {claim['worse']} / {claim['sequence']} / {claim['budget']}"
    paired = paired_differences(claim, records)
    if isinstance(paired, str):
        return [CheckRow(f"claim {name}", subject, None, "records of both at a common bpp", False, paired)]
    rows = []
    for rate in paired:
        centre, lower = claim_bound(rate.diffs)
        spread = f"; one-sided {CONFIDENCE:.0%} lower bound {lower:+.3f}" if len(rate.diffs) > 1 else ""
        rows.append(
            CheckRow(
                f"claim {name}",
                f"{subject} @ {rate.bpp:g} bpp",
                centre,
                f"better - worse >= {claim['min_difference']:+g}",
                lower >= claim["min_difference"],
                f"{rate.how}: mean {centre:+.3f}{spread}",
            )
        )
    return rows


def claim_bound(diffs: list[float]) -> tuple[float, float]:
    """(mean, lower end of the one-sided interval) of paired differences; one difference is its own bound."""
    centre = mean(diffs)
    if len(diffs) < 2:
        return centre, centre
    from scipy import stats

    t = float(stats.t.ppf(CONFIDENCE, len(diffs) - 1))
    return centre, centre - t * stdev(diffs) / math.sqrt(len(diffs))


def claim_interval(diffs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): both ends one-sided at CONFIDENCE, a two-sided interval of 2 CONFIDENCE - 1."""
    centre, low = claim_bound(diffs)
    return centre, low, 2 * centre - low


def format_rows(rows: list[CheckRow]) -> str:
    lines = [f"{'':4s} {'check':16s} {'subject':62s} {'value':>10s}  bound"]
    for row in rows:
        value = "-" if row.value is None else f"{row.value:10.4f}"
        lines.append(
            f"{'ok' if row.ok else 'FAIL':4s} {row.check:16s} {row.subject[:62]:62s} {value:>10s}  {row.bound}"
        )
        if row.detail:
            lines.append(f"     {row.detail}")
    failed = sum(not r.ok for r in rows)
    lines.append(
        f"{len(rows) - failed} of {len(rows)} checks passed" + (f"; {failed} fell short" if failed else "")
    )
    return "\n".join(lines)


def check_command(args: Any) -> int:
    try:
        thresholds = load_thresholds(Path(args.thresholds))
    except ThresholdsError as exc:
        print(f"error: {exc}")
        return EXIT_MALFORMED
    results = Path(args.results)
    if not store.jobs_dir(results).is_dir():
        print(f"error: no results in '{results}': run `bench run --results {results}` first")
        return EXIT_FAIL
    rows = evaluate(results, thresholds)
    print(format_rows(rows))
    return 0 if rows and all(r.ok for r in rows) else EXIT_FAIL
