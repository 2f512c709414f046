"""Views: one figure each, a set of comparable curves (one sequence or the UVG average, one effective
budget, one matching protocol), with its caption and the published series that may be overlaid on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.record import Record
from reports import figures
from reports.bd import BDRow
from reports.points import FIELDS, Point

PUBLISHED = Path(__file__).with_name("published.yaml")
UVG_AVERAGE = "uvg-average"


@dataclass
class View:
    """A set of comparable curves: one sequence (or the UVG average), one budget, one matching protocol."""

    id: str
    title: str
    sequence: str  # the published.yaml view key: a sequence name or "uvg-average"
    budget: dict[str, Any]
    protocol: str
    width: int | None
    height: int | None
    points: list[Point]
    figure: str = ""
    caption: list[str] = field(default_factory=list)
    bd: list[BDRow] = field(default_factory=list)
    speed_figure: str = ""  # quality against decoding speed
    budget_label: str = ""  # the budget's name plus any overrides

    def curves(self) -> dict[str, list[Point]]:
        out: dict[str, list[Point]] = {}
        for p in self.points:
            out.setdefault(p.method, []).append(p)
        return {m: sorted(ps, key=lambda p: p.mean["bpp"] or 0.0) for m, ps in out.items()}

    @property
    def all_frames(self) -> bool:
        b = self.budget
        return b.get("frames") is None and not b.get("start") and b.get("step", 1) == 1


def build_views(points: list[Point], uvg: Sequence[str]) -> list[View]:
    """Per sequence and effective budget, one view per matching protocol of the trained methods.

    Codecs do not train, so a budget override of epochs or learning rate does not change them: they join
    every view that codes the same frames at the same size.
    """
    trained: dict[tuple[str, str], list[Point]] = defaultdict(list)
    codecs: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        if p.match == "n/a":
            codecs[(p.sequence, p.frames_budget)].append(p)
        else:
            trained[(p.sequence, p.budget)].append(p)
    views: list[View] = []
    joined = set()
    for (sequence, label), members in trained.items():
        frames_key = (sequence, members[0].frames_budget)
        anchors = codecs.get(frames_key, [])
        if anchors:
            joined.add(frames_key)
        for protocol in sorted({p.match for p in members}):
            chosen = [p for p in members if p.match == protocol] + anchors
            views.append(_view(len(views), sequence, label, protocol, _ordered(chosen)))
    for (sequence, label), members in codecs.items():
        if (sequence, label) not in joined:
            views.append(_view(len(views), sequence, label, "n/a", members))
    views += _uvg_average_views(views, uvg, start=len(views))
    return views


def _ordered(points: list[Point]) -> list[Point]:
    order = {m: i for i, m in enumerate(figures.method_order(p.method for p in points))}
    return sorted(points, key=lambda p: (order[p.method], p.target_bpp))


def _view(index: int, sequence: str, label: str, protocol: str, points: list[Point]) -> View:
    first = next((p for p in points if p.match != "n/a"), points[0]).records[0]
    return View(
        f"view-{index}",
        sequence,
        sequence,
        first.budget,
        protocol,
        first.sequence.get("width"),
        first.sequence.get("height"),
        points,
        budget_label=label,
    )


def _uvg_average_views(views: list[View], uvg: Sequence[str], start: int) -> list[View]:
    """The mean over the 7 UVG sequences, for methods with a point at the same target on every one of them."""
    wanted = {s.lower() for s in uvg}
    by_setting: dict[tuple[str, str], list[View]] = defaultdict(list)
    for v in views:
        if v.sequence.lower() in wanted:
            by_setting[(v.budget_label, v.protocol)].append(v)
    out = []
    for (_, protocol), members in by_setting.items():
        if {v.sequence.lower() for v in members} != wanted:
            continue
        cells: dict[tuple[str, float], list[Point]] = defaultdict(list)
        for v in members:
            for p in v.points:
                cells[(p.method, p.target_bpp)].append(p)
        points = []
        for (method, target), ps in cells.items():
            if len({p.sequence for p in ps}) != len(wanted):
                continue
            mean = {k: _mean_or_none([p.mean[k] for p in ps]) for k in FIELDS}
            points.append(
                Point(
                    method,
                    "UVG average",
                    ps[0].budget,
                    ps[0].match,
                    target,
                    sorted({s for p in ps for s in p.seeds}),
                    mean,
                    dict.fromkeys(FIELDS),
                )
            )
        if points:
            sizes = {(v.width, v.height) for v in members}
            width, height = sizes.pop() if len(sizes) == 1 else (None, None)
            out.append(
                View(
                    f"view-{start + len(out)}",
                    "UVG average (7 sequences)",
                    UVG_AVERAGE,
                    members[0].budget,
                    protocol,
                    width,
                    height,
                    points,
                    budget_label=members[0].budget_label,
                )
            )
    return out


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    return float(np.mean(values)) if values and all(v is not None for v in values) else None


# --- captions and published overlays ----------------------------------------------------------------------


def describe_budget(b: dict[str, Any], width: int | None, height: int | None, label: str = "") -> str:
    """The effective budget in words; `label` names the overrides (`cpu[epochs=240]`) when there are any."""
    frames = (
        "all frames" if b.get("frames") is None else f"{b['frames']} frames from frame {b.get('start', 0)}"
    )
    if b.get("step", 1) != 1:
        frames += f", one in every {b['step']}"
    size = f" at {width}x{height} px" if width and height else ""
    return (
        f"Budget '{label or b.get('name', '?')}': {frames}{size}; {b.get('epochs', '?')} training epochs "
        f"(lr {b.get('lr', '?')}, precision {b.get('precision', 'fp32')}), {b.get('train_seconds', 0):g} s of "
        "training under time matching; "
        f"codec preset {b.get('codec_preset', '?')}."
    )


def describe_protocol(protocol: str, b: dict[str, Any], has_codecs: bool) -> str:
    codecs = " Codecs do not train: they meet the others by rate only." if has_codecs else ""
    if protocol == "epochs":
        return f"Matching: epochs — every trained method gets the budget's {b.get('epochs', '?')} epochs.{codecs}"
    if protocol == "time":
        return (
            f"Matching: time — every trained method gets {b.get('train_seconds', 0):g} s of training "
            f"on the same hardware.{codecs}"
        )
    return "Matching: none needed — only codecs, which are matched by rate."


def load_published(path: Path = PUBLISHED) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def overlays_for(view: View, published: Sequence[dict[str, Any]]) -> tuple[list[figures.Overlay], list[str]]:
    """Published series of this view's sequence: drawn only at the same resolution with every frame coded."""
    overlays, notes = [], []
    for s in published:
        if str(s["view"]).lower() != view.sequence.lower():
            continue
        where = f"{s['width']}x{s['height']}"
        if (s["width"], s["height"]) == (view.width, view.height) and view.all_frames:
            overlays.append(
                figures.Overlay(
                    s["label"],
                    [p["bpp"] for p in s["points"]],
                    {m: [p.get(m) for p in s["points"]] for m in figures.METRIC_AXES},
                )
            )
            notes.append(
                f"Published overlay (dashed, hollow markers): {s['label']} at {where}, {s['protocol']} "
                f"(source: {s['source']}). Same sequence and resolution, but the authors' own training "
                f"protocol and hardware, not this budget."
            )
        else:
            ours = f"{view.width}x{view.height}" if view.width else "another size"
            subset = "" if view.all_frames else ", on a subset of the frames"
            notes.append(
                f"Not shown: {s['label']} points for this sequence ({where}, {s['protocol']}); "
                f"this run coded {ours}{subset}, so they are not comparable."
            )
    return overlays, notes


def caption_for(view: View, overlay_notes: list[str]) -> list[str]:
    has_codecs = any(p.match == "n/a" for p in view.points) and view.protocol != "n/a"
    seeds = max((len(p.seeds) for p in view.points), default=1)
    if view.sequence == UVG_AVERAGE:
        spread = (
            "Each point is the mean over the 7 sequences of each sequence's mean over seeds (no error bars)."
        )
    elif seeds > 1:
        spread = (
            "Each point is the mean over its seeds; bars show ± 1 sample std of bpp and metric where a point "
            "has several seeds."
        )
    else:
        spread = "One seed per point."
    lines = [
        describe_budget(view.budget, view.width, view.height, view.budget_label),
        describe_protocol(view.protocol, view.budget, has_codecs),
        spread,
    ]
    if view.budget.get("caption_note") and view.protocol != "n/a":
        lines.append(view.budget["caption_note"])
    unconverged = sorted({p.method for p in view.points if p.convergence and p.convergence.startswith("not")})
    if unconverged:
        lines.append(
            f"Not converged: {', '.join(unconverged)} (the last doubling of epochs gained more than 0.25 dB at "
            "some rate; see the convergence figures)."
        )
    elif view.protocol == "epochs" and any(
        p.convergence and p.convergence.startswith("unknown") for p in view.points
    ):
        lines.append(
            "Convergence not measured here: no run at half the epochs (an epochs grid, e.g. --epochs 30,60, "
            "measures it); these networks may be far from fitted."
        )
    encoders = encoder_notes(r for p in view.points for r in p.records)
    if encoders:
        lines.append(encoders)
    notes = metric_notes(r for p in view.points for r in p.records)
    if notes:
        lines.append("Metrics: " + "; ".join(f"{name}: {text}" for name, text in notes.items()) + ".")
    return lines + (overlay_notes or ["No published points for this sequence."])


def metric_notes(records: Iterable[Record]) -> dict[str, str]:
    """How each metric was computed (or why it is absent), as the records say; differing notes are all kept."""
    seen: dict[str, list[str]] = defaultdict(list)
    for r in records:
        metrics = r.metrics
        texts = [(name, str(text)) for name, text in (metrics.get("notes") or {}).items()]
        frames = r.sequence.get("num_frames", "?")
        texts += [
            (name, f"scored on {len(subset)} of {frames} frames")
            for name, subset in (metrics.get("frame_subsets") or {}).items()
        ]
        for name, text in texts:
            if text not in seen[name]:
                seen[name].append(text)
    return {name: " / ".join(texts) for name, texts in sorted(seen.items())}


def _series(view: View, styles: dict[str, figures.Style], metrics: Sequence[str]) -> list[figures.Series]:
    series = []
    for method, pts in view.curves().items():
        keep = [p for p in pts if p.mean["bpp"] is not None]
        series.append(
            figures.Series(
                label=method,
                style=styles[method],
                bpp=[p.mean["bpp"] for p in keep],
                bpp_std=[p.std["bpp"] or 0.0 for p in keep],
                values={m: [p.mean.get(m) for p in keep] for m in metrics},
                stds={m: [p.std.get(m) or 0.0 for p in keep] for m in metrics},
            )
        )
    return series


def render_figure(
    view: View, styles: dict[str, figures.Style], overlays: list[figures.Overlay], metric: str = "psnr"
) -> str:
    """The view's RD panels: PSNR, MS-SSIM, FLIP (LPIPS and ST-LPIPS when recorded), the chosen metric."""
    metrics = list(figures.METRIC_AXES) + ([metric] if metric not in figures.METRIC_AXES else [])
    return figures.svg_data_uri(figures.rd_figure(_series(view, styles, metrics), overlays))


def render_speed_figure(view: View, styles: dict[str, figures.Style], metric: str = "psnr") -> str:
    """Quality against decoding speed: what each point costs a viewer, beside what it costs in bits."""
    series = _series(view, styles, [metric])
    fps = {
        method: [p.mean.get("decode_fps") for p in pts if p.mean["bpp"] is not None]
        for method, pts in view.curves().items()
    }
    return figures.svg_data_uri(figures.speed_figure(series, fps, metric))


def encoder_notes(records: Iterable[Record]) -> str | None:
    """The encoders (and versions) that wrote the anchors' streams, as their records name them."""
    seen: dict[str, set[str]] = defaultdict(set)
    for r in records:
        encoder = r.stats.get("encoder")
        if isinstance(encoder, str) and encoder:
            seen[r.method].add(encoder)
    if not seen:
        return None
    return "Encoders: " + "; ".join(f"{m}: {', '.join(sorted(v))}" for m, v in sorted(seen.items())) + "."
