"""`bench check`: compare a results directory with committed bounds, so CI fails when quality regresses.

A thresholds file (YAML) holds two lists::

    bounds:    # per method x sequence x budget (optionally one target bpp)
      - {method: x264, sequence: bunny, budget: smoke, min_psnr: 30.1, min_ms_ssim: 0.95, max_flip: 0.11,
         max_bpp_deviation: 0.10}
    claims:    # orderings between methods at matched (target) bpp, averaged over seeds
      - {better: supermask-learned, worse: supermask-fixed, metric: psnr, margin: 0.3, sequence: bunny,
         budget: smoke, why: "margin = 2 x the measured seed-to-seed std of the difference"}

Every check is printed with its value and bound. Exit 1 when any falls short, 2 when the file is malformed.
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from bench import store
from bench.errors import ConfigError
from bench.record import Record

# metric key in thresholds -> (record metric name, True when higher is better)
_METRICS = {
    "psnr": ("psnr", True),
    "ms_ssim": ("ms-ssim", True),
    "flip": ("flip", False),
    "lpips": ("lpips", False),
}
_BOUND_KEYS = {"method", "sequence", "budget", "target_bpp", "max_bpp_deviation"} | {
    f"{'min' if hib else 'max'}_{key}" for key, (_, hib) in _METRICS.items()
}
_CLAIM_KEYS = {"better", "worse", "metric", "margin", "sequence", "budget", "why"}
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
        ("claims", _CLAIM_KEYS, {"better", "worse", "metric", "margin", "sequence", "budget"}),
    ):
        entries = data.get(section) or []
        if not isinstance(entries, list):
            raise ThresholdsError(f"'{section}' in '{path}' must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ThresholdsError(f"{section}[{i}] in '{path}' must be a mapping")
            unknown = sorted(str(key) for key in entry if key not in allowed)
            if unknown:
                raise ThresholdsError(f"{section}[{i}] in '{path}' has unknown key '{unknown[0]}'")
            missing = required - set(entry)
            if missing:
                raise ThresholdsError(f"{section}[{i}] in '{path}' lacks key '{sorted(missing)[0]}'")
            for key, value in entry.items():
                numeric = key.startswith(("min_", "max_")) or key in ("margin", "target_bpp")
                if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ThresholdsError(f"{section}[{i}].{key} in '{path}' must be a number, got {value!r}")
                if numeric and not math.isfinite(value):
                    raise ThresholdsError(
                        f"{section}[{i}].{key} in '{path}' must be a number other than inf or nan, got {value!r}"
                    )
                if not numeric and not isinstance(value, str):
                    raise ThresholdsError(f"{section}[{i}].{key} in '{path}' must be a string, got {value!r}")
            if section == "claims" and entry["metric"] not in _METRICS:
                raise ThresholdsError(f"claims[{i}].metric in '{path}' must be one of {', '.join(_METRICS)}")
    return {"bounds": data.get("bounds") or [], "claims": data.get("claims") or []}


def _matches(record: Record, method: str, entry: dict[str, Any]) -> bool:
    """`method` is a label: a plain name matches the method run with its defaults only."""
    return (
        record.label == method
        and record.seq_name == entry["sequence"]
        and record.budget_label == entry["budget"]
        and ("target_bpp" not in entry or abs(record.target_bpp - entry["target_bpp"]) < 1e-9)
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
        name, higher_is_better = _METRICS[claim["metric"]]
        by_rate: dict[float, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for side in ("better", "worse"):
            for record in records:
                value = record.mean(name)
                if _matches(record, claim[side], claim) and value is not None:
                    by_rate[record.target_bpp][side].append(value)
        subject = f"{claim['better']} vs {claim['worse']} / {claim['sequence']} / {claim['budget']}"
        paired = {bpp: sides for bpp, sides in by_rate.items() if sides["better"] and sides["worse"]}
        if not paired:
            rows.append(CheckRow(f"claim {name}", subject, None, "records of both at a common bpp", False))
            continue
        for bpp, sides in sorted(paired.items()):
            diff = mean(sides["better"]) - mean(sides["worse"])
            if not higher_is_better:
                diff = -diff
            rows.append(
                CheckRow(
                    f"claim {name}",
                    f"{subject} @ {bpp:g} bpp",
                    diff,
                    f"better - worse >= -{claim['margin']}",
                    diff >= -claim["margin"],
                )
            )
    return rows


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
