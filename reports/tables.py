"""The report's tables and text outputs: points, BD-rates, failures, provenance, budgets, CSV and Markdown."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.record import Record
from bench.store import Rejected
from reports.points import COLUMNS, Column, Point
from reports.views import View


def visible_columns(points: Sequence[Point]) -> list[Column]:
    return [c for c in COLUMNS if not c.optional or any(p.has(c.key) for p in points)]


def format_value(value: Any, spec: str | None, std: float | None = None) -> str:
    if value is None:
        return "—"
    if spec is None:
        return str(value)
    text = format(value, spec)
    return f"{text} ± {format(std, spec)}" if std else text


def table_rows(points: Sequence[Point], columns: Sequence[Column]) -> list[list[dict[str, Any]]]:
    """Cells with display text (std apart, shown smaller) and, for numbers, the raw value the script sorts by."""
    rows = []
    for p in points:
        cells = []
        for c in columns:
            value = p.value(c.key)
            std = p.std.get(c.key) if c.with_std else None
            cell: dict[str, Any] = {
                "text": format_value(value, c.spec),
                "std": format(std, c.spec) if std else "",
            }
            if c.spec is not None:
                cell["sort"] = "" if value is None else repr(float(value))
            cells.append(cell)
        rows.append(cells)
    return rows


def failure_rows(failed: Sequence[Record], rejected: Sequence[Rejected] = ()) -> list[dict[str, Any]]:
    """Failed and skipped jobs, then record files that were rejected (never merged into a point)."""
    rows = [
        {
            "status": r.status,
            "method": r.label,
            "sequence": r.seq_name,
            "budget": r.budget_label,
            "target": format_value(r.target_bpp, "g"),
            "seed": r.seed,
            "stage": r.stage or "—",
            "reason": r.reason or "(no reason recorded)",
        }
        for r in failed
    ]
    rows += [
        {
            "status": "rejected",
            "method": "?",
            "sequence": "?",
            "budget": "?",
            "target": "—",
            "seed": "?",
            "stage": "record",
            "reason": r.reason,
        }
        for r in rejected
    ]
    return sorted(rows, key=lambda r: (r["status"] != "failed", r["sequence"], r["method"], r["target"]))


def bd_table(views: Sequence[View]) -> list[dict[str, Any]]:
    rows = []
    for v in views:
        for row in v.bd:
            rows.append(
                {
                    "view": v.title,
                    "view_id": v.id,
                    "budget": v.budget_label,
                    "protocol": v.protocol,
                    "method": row.method,
                    "points": row.points,
                    "rate": format_value(row.rate.value, "+.1f"),
                    "rate_sort": _sort_key(row.rate.value),
                    "psnr": format_value(row.psnr.value, "+.2f"),
                    "psnr_sort": _sort_key(row.psnr.value),
                    "reason": "; ".join(sorted({r for r in (row.rate.reason, row.psnr.reason) if r})),
                }
            )
    return rows


def _sort_key(value: float | None) -> str:
    return "" if value is None else repr(float(value))


# --- provenance ----------------------------------------------------------------------------------------------


def provenance_summary(records: Sequence[Record]) -> dict[str, Any]:
    """What produced the results: the set of values seen for each field (more than one = mixed)."""
    versions: dict[str, set[str]] = defaultdict(set)
    seen: dict[str, set[str]] = defaultdict(set)
    methods: dict[str, set[str]] = defaultdict(set)
    times = []
    for r in records:
        prov = r.provenance or {}
        for name, version in (prov.get("versions") or {}).items():
            versions[name].add(str(version))
        for name in ("git_commit", "cpu", "gpu", "host", "platform", "cpu_count"):
            if prov.get(name) is not None:
                seen[name].add(str(prov[name]))
        if prov.get("time_utc"):
            times.append(prov["time_utc"])
        methods[r.method].add(str(r.method_version))
    return {
        "versions": {k: ", ".join(sorted(v)) for k, v in sorted(versions.items())},
        "mixed": sorted(k for k, v in versions.items() if len(v) > 1),
        "fields": {k: ", ".join(sorted(v)) for k, v in sorted(seen.items())},
        "gpu": ", ".join(sorted(seen["gpu"])) or "none (CPU)",
        "time_range": f"{min(times)} … {max(times)}" if times else "—",
        "methods": {k: ", ".join(sorted(v)) for k, v in sorted(methods.items())},
    }


def budget_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per effective budget (a named budget with overrides is a row of its own)."""
    budgets = {}
    for r in records:
        if r.budget.get("name"):
            budgets[r.budget_label] = r.budget
    return [
        {
            "name": label,
            "description": b.get("description", ""),
            "frames": "all" if b.get("frames") is None else b["frames"],
            "size": "source" if not b.get("size") else f"{b['size'][1]}x{b['size'][0]}",
            "epochs": b.get("epochs"),
            "lr": b.get("lr"),
            "precision": b.get("precision", "fp32"),
            "seconds": b.get("train_seconds"),
            "preset": b.get("codec_preset"),
        }
        for label, b in sorted(budgets.items())
    ]


# --- outputs -------------------------------------------------------------------------------------------------


def write_points_csv(path: Path, points: Sequence[Point]) -> None:
    columns = visible_columns(points)
    header = []
    for c in columns:
        header += [c.key, f"{c.key}_std"] if c.with_std else [c.key]
    header.insert(header.index("seeds") + 1, "n_seeds")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for p in points:
            row: list[Any] = []
            for c in columns:
                value = ";".join(str(s) for s in p.seeds) if c.key == "seeds" else p.value(c.key)
                row.append("" if value is None else value)
                if c.key == "seeds":
                    row.append(len(p.seeds))
                if c.with_std:
                    std = p.std.get(c.key)
                    row.append("" if std is None else std)
            writer.writerow(row)


def _md(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def summary_markdown(context: dict[str, Any]) -> str:
    lines = [
        f"# nerv-bench report: {_md(context['results'])}",
        "",
        f"{context['counts']['points']} points from {context['counts']['ok']} finished jobs; "
        f"{context['counts']['failed']} failed, {context['counts']['skipped']} skipped. "
        f"BD anchor: {_md(context['anchor'] or '—')}.",
        "",
    ]
    if context["anchor_note"]:
        lines += [f"Note: {_md(context['anchor_note'])}", ""]
    columns = [c for c in context["columns"] if c.key not in ("encode_s", "decode_s")]
    lines += [
        "## Points",
        "",
        "| " + " | ".join(c.header for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for p in context["points"]:
        cells = [
            format_value(p.value(c.key), c.spec, p.std.get(c.key) if c.with_std else None) for c in columns
        ]
        lines.append("| " + " | ".join(_md(x) for x in cells) + " |")
    if context["bd"]:
        lines += [
            "",
            f"## BD vs {_md(context['anchor'])} ({_md(context['bd_metric_label'])})",
            "",
            f"| view | budget | matching | method | points | BD-rate % | BD-{_md(context['bd_metric_label'])} | why no value |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in context["bd"]:
            lines.append(
                "| "
                + " | ".join(
                    _md(r[k])
                    for k in ("view", "budget", "protocol", "method", "points", "rate", "psnr", "reason")
                )
                + " |"
            )
    if context["scaling_views"]:
        lines += ["", "## Gap against network size", ""]
        lines += [
            "| view | method | size | weights | seeds | gap (dB) | interval (dB) |",
            "|---|---|---|---|---|---|---|",
        ]
        for view in context["scaling_views"]:
            for trend in view.trends:
                for g in trend.gaps:
                    cells = (
                        view.title,
                        trend.method,
                        g.label,
                        f"{g.weights:,.0f}",
                        ", ".join(map(str, g.seeds)),
                        f"{g.mean:+.2f}",
                        f"{g.low:+.2f} to {g.high:+.2f}",
                    )
                    lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
        lines += [""] + [f"- {_md(t.text())}" for view in context["scaling_views"] for t in view.trends]
    if context["verdicts"]:
        lines += [
            "",
            f"## Claims ({_md(context['claims_file'])})",
            "",
            f"| claim | budget | protocol | bpp | seeds | mean | {context['interval_level']} interval | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for v in context["verdicts"]:
            numbers = (
                ("—", "", "—", "—")
                if v.mean is None
                else (f"{v.bpp:g}", v.seeds, f"{v.mean:+.2f}", f"{v.low:+.2f} to {v.high:+.2f}")
            )
            cells = (v.claim, v.budget, v.protocol, *numbers, v.verdict)
            lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    if context["failures"]:
        lines += [
            "",
            "## Failed and skipped jobs",
            "",
            "| status | method | sequence | target | seed | reason |",
            "|---|---|---|---|---|---|",
        ]
        for r in context["failures"]:
            lines.append(
                "| "
                + " | ".join(_md(r[k]) for k in ("status", "method", "sequence", "target", "seed", "reason"))
                + " |"
            )
    return "\n".join(lines) + "\n"
