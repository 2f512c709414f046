"""`bench report`: one self-contained HTML file, plus `summary.md` and `points.csv`, from a results directory.

The report reads records and the frames saved beside them, never a model, so it can be rebuilt wherever
the results are. Seeds of the same point (method x sequence x budget x matching x target bpp) are folded
into a mean and a sample std. Everything the page shows is embedded (SVG figures and PNG frames as data:
URIs, inline CSS and script) and a Content-Security-Policy forbids any fetch, so it opens offline anywhere.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import store
from bench.errors import BenchError
from reports import figures
from reports.bd import BDRow, bd_rows, choose_anchor

ANCHOR = "nerv-dense"
GALLERY_MAX_WIDTH = 960  # wider frames are embedded downscaled (area filter): a 1080p gallery would weigh GBs
PUBLISHED = Path(__file__).with_name("published.yaml")
TEMPLATES = Path(__file__).with_name("templates")
UVG_AVERAGE = "uvg-average"
# where a method's stats keep its parameter and non-zero counts (first key present wins)
PARAM_KEYS = ("parameters", "params", "masked_weights")
NONZERO_KEYS = ("nonzeros", "nonzero_parameters", "nonzero")
FIELDS = ("bpp", "psnr", "ms-ssim", "flip", "lpips", "params", "nonzeros", "encode_s", "decode_s")


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
    Column("params", "params", ",.0f", optional=True),
    Column("nonzeros", "non-zeros", ",.0f", optional=True),
    Column("encode_s", "encode (s)", ".3g"),
    Column("decode_s", "decode (s)", ".3g"),
)


# --- points -----------------------------------------------------------------------------------------------


@dataclass
class Point:
    """One RD point: every seed of a method at one target on one sequence, budget and matching protocol."""

    method: str
    sequence: str
    budget: str
    match: str
    target_bpp: float
    seeds: list[int]
    mean: dict[str, float | None]
    std: dict[str, float | None]
    records: list[dict[str, Any]] = field(default_factory=list)

    def value(self, key: str) -> Any:
        if key == "seeds":
            return ", ".join(str(s) for s in self.seeds)
        if key in FIELDS:
            return self.mean.get(key)
        return getattr(self, key)


def _first_stat(stats: dict[str, Any], keys: Sequence[str]) -> float | None:
    for key in keys:
        value = stats.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def record_values(record: dict[str, Any]) -> dict[str, float | None]:
    """The numbers of one record the report shows, None where the record has none."""
    mean = record.get("metrics", {}).get("mean", {})
    stats = record.get("stats") or {}
    timings = record.get("timings") or {}
    return {
        "bpp": record.get("bpp"),
        **{name: mean.get(name) for name in ("psnr", "ms-ssim", "flip", "lpips")},
        "params": _first_stat(stats, PARAM_KEYS),
        "nonzeros": _first_stat(stats, NONZERO_KEYS),
        "encode_s": timings.get("encode_s"),
        "decode_s": timings.get("decode_s"),
    }


def _seq_name(record: dict[str, Any]) -> str:
    return str(record.get("sequence", {}).get("name") or record.get("sequence", {}).get("spec") or "?")


def fold_points(records: Iterable[dict[str, Any]]) -> list[Point]:
    """Group finished records into points; mean and sample std over seeds of every number."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        key = (
            rec["method"],
            _seq_name(rec),
            rec.get("budget", {}).get("name", "?"),
            str(rec.get("match")),
            float(rec["target_bpp"]),
        )
        groups[key].append(rec)
    points = []
    for (method, sequence, budget, match, target), recs in groups.items():
        recs.sort(key=lambda r: (r.get("seed", 0), r["key"]))
        values = [record_values(r) for r in recs]
        mean: dict[str, float | None] = {}
        std: dict[str, float | None] = {}
        for name in FIELDS:
            xs = [float(v[name]) for v in values if v[name] is not None]
            mean[name] = float(np.mean(xs)) if xs else None
            std[name] = float(np.std(xs, ddof=1)) if len(xs) > 1 else (0.0 if xs else None)
        points.append(
            Point(method, sequence, budget, match, target, [r.get("seed", 0) for r in recs], mean, std, recs)
        )
    order = {m: i for i, m in enumerate(figures.method_order(p.method for p in points))}
    points.sort(key=lambda p: (p.sequence, p.budget, p.match, order[p.method], p.target_bpp))
    return points


# --- views: one figure each ----------------------------------------------------------------------------------


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
    """Per sequence and budget, one view per matching protocol of the trained methods (codecs join each)."""
    by_group: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        by_group[(p.sequence, p.budget)].append(p)
    views = []
    for (sequence, _), members in by_group.items():
        protocols = sorted({p.match for p in members if p.match != "n/a"}) or ["n/a"]
        first = members[0].records[0]
        for protocol in protocols:
            chosen = [p for p in members if p.match in (protocol, "n/a")]
            seq = first.get("sequence", {})
            views.append(
                View(
                    f"view-{len(views)}",
                    sequence,
                    sequence,
                    first.get("budget", {}),
                    protocol,
                    seq.get("width"),
                    seq.get("height"),
                    chosen,
                )
            )
    views += _uvg_average_views(views, uvg, start=len(views))
    return views


def _uvg_average_views(views: list[View], uvg: Sequence[str], start: int) -> list[View]:
    """The mean over the 7 UVG sequences, for methods with a point at the same target on every one of them."""
    wanted = {s.lower() for s in uvg}
    by_setting: dict[tuple[str, str], list[View]] = defaultdict(list)
    for v in views:
        if v.sequence.lower() in wanted:
            by_setting[(v.budget.get("name", "?"), v.protocol)].append(v)
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
                )
            )
    return out


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    return float(np.mean(values)) if values and all(v is not None for v in values) else None


# --- captions and published overlays ----------------------------------------------------------------------


def describe_budget(b: dict[str, Any], width: int | None, height: int | None) -> str:
    frames = (
        "all frames" if b.get("frames") is None else f"{b['frames']} frames from frame {b.get('start', 0)}"
    )
    if b.get("step", 1) != 1:
        frames += f", every {b['step']}th"
    size = f" at {width}x{height} px" if width and height else ""
    return (
        f"Budget '{b.get('name', '?')}': {frames}{size}; {b.get('epochs', '?')} training epochs "
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
        describe_budget(view.budget, view.width, view.height),
        describe_protocol(view.protocol, view.budget, has_codecs),
        spread,
    ]
    notes = metric_notes(r for p in view.points for r in p.records)
    if notes:
        lines.append("Metrics: " + "; ".join(f"{name}: {text}" for name, text in notes.items()) + ".")
    return lines + (overlay_notes or ["No published points for this sequence."])


def metric_notes(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """How each metric was computed (or why it is absent), as the records say; differing notes are all kept."""
    seen: dict[str, list[str]] = defaultdict(list)
    for r in records:
        metrics = r.get("metrics", {})
        texts = [(name, str(text)) for name, text in (metrics.get("notes") or {}).items()]
        frames = r.get("sequence", {}).get("num_frames", "?")
        texts += [
            (name, f"scored on {len(subset)} of {frames} frames")
            for name, subset in (metrics.get("frame_subsets") or {}).items()
        ]
        for name, text in texts:
            if text not in seen[name]:
                seen[name].append(text)
    return {name: " / ".join(texts) for name, texts in sorted(seen.items())}


def render_figure(view: View, styles: dict[str, figures.Style], overlays: list[figures.Overlay]) -> str:
    series = []
    for method, pts in view.curves().items():
        keep = [p for p in pts if p.mean["bpp"] is not None]
        series.append(
            figures.Series(
                label=method,
                style=styles[method],
                bpp=[p.mean["bpp"] for p in keep],
                bpp_std=[p.std["bpp"] or 0.0 for p in keep],
                values={m: [p.mean.get(m) for p in keep] for m in figures.METRIC_AXES},
                stds={m: [p.std.get(m) or 0.0 for p in keep] for m in figures.METRIC_AXES},
            )
        )
    return figures.svg_data_uri(figures.rd_figure(series, overlays))


# --- gallery -------------------------------------------------------------------------------------------------


@dataclass
class Tile:
    label: str
    decode: str
    flip: str
    caption: str


@dataclass
class Gallery:
    title: str
    frame: int | None
    target_bpp: float
    source: str
    size: str
    tiles: list[Tile]
    notes: list[str]


def png_data_uri(path: Path, max_width: int = GALLERY_MAX_WIDTH) -> tuple[str, bool]:
    """A PNG as a data: URI (the file's own bytes unless it is wider than `max_width`); True when shrunk."""
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        if image.width <= max_width and image.format == "PNG":
            data, shrunk = path.read_bytes(), False
        else:
            height = max(1, round(image.height * max_width / image.width))
            small = image.convert("RGB").resize((min(max_width, image.width), height), Image.Resampling.BOX)
            buffer = io.BytesIO()
            small.save(buffer, format="PNG")
            data, shrunk = buffer.getvalue(), image.width > max_width
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), shrunk


def _gallery_files(record: dict[str, Any]) -> dict[str, Path] | None:
    if "_dir" not in record:
        return None
    folder = Path(record["_dir"]) / store.GALLERY
    files = {name: folder / f"{name}.png" for name in ("source", "decode", "flip")}
    return files if all(p.is_file() for p in files.values()) else None


def build_galleries(points: list[Point]) -> list[Gallery]:
    """Per sequence and budget, one frame at the target most methods share: source, then decode | FLIP each."""
    by_group: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        if any(_gallery_files(r) for r in p.records):
            by_group[(p.sequence, p.budget)].append(p)
    galleries = []
    for (sequence, budget), members in by_group.items():
        counts: dict[float, int] = defaultdict(int)
        for p in members:
            counts[p.target_bpp] += 1
        target = min(counts, key=lambda t: (-counts[t], t))
        several = len({p.match for p in members if p.match != "n/a"}) > 1
        chosen = [p for p in members if p.target_bpp == target]
        absent = sorted({p.method for p in members} - {p.method for p in chosen})
        tiles, notes, source, frame, size = [], [], "", None, ""
        for p in chosen:
            record, files = next((r, f) for r in p.records if (f := _gallery_files(r)))
            try:
                decode, shrunk = png_data_uri(files["decode"])
                flip, _ = png_data_uri(files["flip"])
                if not source:
                    source, _ = png_data_uri(files["source"])
                    frame = record.get("gallery", {}).get("frame")
                    size = _image_size(files["source"])
            except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for a damaged image
                notes.append(f"{p.method}: gallery image unreadable ({exc})")
                continue
            label = f"{p.method} ({p.match})" if several and p.match != "n/a" else p.method
            tiles.append(Tile(label, decode, flip, _tile_caption(record)))
            if shrunk and not any("downscaled" in n for n in notes):
                notes.append(
                    f"Frames wider than {GALLERY_MAX_WIDTH} px are shown downscaled; the full-size PNGs "
                    f"are in each job's gallery/ folder."
                )
        if absent:
            notes.append(f"No point at {target:g} bpp (not shown): {', '.join(absent)}.")
        if tiles:
            galleries.append(Gallery(f"{sequence} · {budget}", frame, target, source, size, tiles, notes))
    return galleries


def _image_size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return f"{image.width}x{image.height}"


def _tile_caption(record: dict[str, Any]) -> str:
    gallery = record.get("gallery", {})
    parts = [f"{record['bpp']:.4f} bpp" if record.get("bpp") is not None else "bpp unknown"]
    if gallery.get("flip_mean") is not None:
        parts.append(f"FLIP {gallery['flip_mean']:.4f}")
    parts.append(f"seed {record.get('seed', 0)}")
    return " · ".join(parts)


# --- tables --------------------------------------------------------------------------------------------------


def visible_columns(points: Sequence[Point]) -> list[Column]:
    return [c for c in COLUMNS if not c.optional or any(p.mean.get(c.key) is not None for p in points)]


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


def failure_rows(failed: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [
        {
            "status": r.get("status", "?"),
            "method": r.get("method", "?"),
            "sequence": _seq_name(r),
            "budget": r.get("budget", {}).get("name", "?"),
            "target": format_value(r.get("target_bpp"), "g"),
            "seed": r.get("seed", "?"),
            "stage": r.get("stage") or "—",
            "reason": r.get("reason") or "(no reason recorded)",
        }
        for r in failed
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
                    "budget": v.budget.get("name", "?"),
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


def provenance_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What produced the results: the set of values seen for each field (more than one = mixed)."""
    versions: dict[str, set[str]] = defaultdict(set)
    seen: dict[str, set[str]] = defaultdict(set)
    methods: dict[str, set[str]] = defaultdict(set)
    times = []
    for r in records:
        prov = r.get("provenance") or {}
        for name, version in (prov.get("versions") or {}).items():
            versions[name].add(str(version))
        for name in ("git_commit", "cpu", "gpu", "host", "platform", "cpu_count"):
            if prov.get(name) is not None:
                seen[name].add(str(prov[name]))
        if prov.get("time_utc"):
            times.append(prov["time_utc"])
        if r.get("method"):
            methods[r["method"]].add(str(r.get("method_version", "?")))
    return {
        "versions": {k: ", ".join(sorted(v)) for k, v in sorted(versions.items())},
        "mixed": sorted(k for k, v in versions.items() if len(v) > 1),
        "fields": {k: ", ".join(sorted(v)) for k, v in sorted(seen.items())},
        "gpu": ", ".join(sorted(seen["gpu"])) or "none (CPU)",
        "time_range": f"{min(times)} … {max(times)}" if times else "—",
        "methods": {k: ", ".join(sorted(v)) for k, v in sorted(methods.items())},
    }


def budget_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    budgets = {}
    for r in records:
        b = r.get("budget") or {}
        if b.get("name"):
            budgets[b["name"]] = b
    return [
        {
            "name": b["name"],
            "description": b.get("description", ""),
            "frames": "all" if b.get("frames") is None else b["frames"],
            "size": "source" if not b.get("size") else f"{b['size'][1]}x{b['size'][0]}",
            "epochs": b.get("epochs"),
            "lr": b.get("lr"),
            "precision": b.get("precision", "fp32"),
            "seconds": b.get("train_seconds"),
            "preset": b.get("codec_preset"),
        }
        for _, b in sorted(budgets.items())
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
            f"## BD vs {_md(context['anchor'])} (PSNR)",
            "",
            "| view | budget | matching | method | points | BD-rate % | BD-PSNR dB | why no value |",
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


def render_html(context: dict[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html").render(**context)


def build_report(results: Path, out: Path | None = None, anchor: str = ANCHOR) -> Path:
    """Write report.html (at `out`, default <results>/report.html), summary.md and points.csv beside it."""
    import bench
    from bench.provenance import git_commit

    results = Path(results)
    out = Path(out) if out is not None else results / "report.html"
    if not store.jobs_dir(results).is_dir() and not store.failed_dir(results).is_dir():
        raise BenchError(f"no results in '{results}': run `bench run --results {results}` first")
    finished, failed = [], []
    for record in store.iter_records(results, include_failed=True):
        (finished if record.get("status") == "ok" else failed).append(record)

    published = load_published()
    points = fold_points(finished)
    views = build_views(points, published["uvg_sequences"])
    methods = figures.method_order(p.method for p in points)
    styles = figures.method_styles(methods)
    chosen, anchor_note = choose_anchor(methods, anchor)
    for view in views:
        overlays, notes = overlays_for(view, published["series"])
        view.caption = caption_for(view, notes)
        view.figure = render_figure(view, styles, overlays)
        if chosen is not None:
            curves = {
                m: (
                    [p.mean["bpp"] for p in ps if p.mean["psnr"] is not None],
                    [p.mean["psnr"] for p in ps if p.mean["psnr"] is not None],
                )
                for m, ps in view.curves().items()
            }
            view.bd = bd_rows(curves, chosen)

    from bench.rd import MIN_OVERLAP, MIN_POINTS

    context = {
        "results": str(results.resolve()),
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "suite_version": bench.__version__,
        "builder_commit": git_commit(),
        "counts": {
            "ok": len(finished),
            "points": len(points),
            "failed": sum(r.get("status") == "failed" for r in failed),
            "skipped": sum(r.get("status") != "failed" for r in failed),
        },
        "anchor": chosen,
        "anchor_note": anchor_note,
        "min_points": MIN_POINTS,
        "min_overlap": MIN_OVERLAP,
        "methods": [{"name": m, "colour": styles[m].colour, "marker": styles[m].marker} for m in methods],
        "views": views,
        "bd": bd_table(views),
        "points": points,
        "columns": visible_columns(points),
        "rows": table_rows(points, visible_columns(points)),
        "galleries": build_galleries(points),
        "failures": failure_rows(failed),
        "provenance": provenance_summary(finished + failed),
        "budgets": budget_rows(finished + failed),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(context), encoding="utf-8")
    (out.parent / "summary.md").write_text(summary_markdown(context), encoding="utf-8")
    write_points_csv(out.parent / "points.csv", points)
    return out


def report_command(args: Any) -> int:
    results = Path(args.results)
    out = Path(args.out) if getattr(args, "out", None) else results / "report.html"
    path = build_report(results, out, anchor=getattr(args, "anchor", None) or ANCHOR)
    print(f"report: {path}")
    print(f"summary: {path.parent / 'summary.md'}")
    print(f"points: {path.parent / 'points.csv'}")
    return 0
