"""`bench report`: one self-contained HTML file, plus `summary.md` and `points.csv`, from a results directory.

The report reads records and the frames saved beside them, never a model, so it can be rebuilt wherever
the results are. Seeds of the same point (method variant x sequence x effective budget x matching x target
bpp) are folded into a mean and a sample std; records that do not verify (a key that is not the hash of
their identity, a stream that is not the one measured) are listed with the failures, never merged.
Everything the page shows is embedded (SVG figures and PNG frames as data: URIs, inline CSS and script)
and a Content-Security-Policy forbids any fetch, so it opens offline anywhere.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from bench import store
from bench.errors import BenchError
from bench.paths import check_output_file
from reports import figures
from reports.bd import bd_rows, choose_anchor
from reports.claims import claim_verdicts, interval_level, load_claims
from reports.convergence import convergence, convergence_views
from reports.gallery import build_galleries
from reports.points import RECORDED_METRICS, fold_points
from reports.scaling import scaling_views
from reports.tables import (
    bd_table,
    budget_rows,
    failure_rows,
    provenance_summary,
    summary_markdown,
    table_rows,
    visible_columns,
    write_points_csv,
)
from reports.views import (
    build_views,
    caption_for,
    load_published,
    overlays_for,
    render_figure,
    render_speed_figure,
)

ANCHOR = "nerv-dense"
CLAIMS_FILE = "claims.yaml"  # a results folder's own claims, judged in its report
LOWER_IS_BETTER = ("flip", "lpips", "stlpips")  # distances (bench.check keeps the same list)
BD_LABELS = {
    "psnr": "PSNR",
    "ms-ssim": "MS-SSIM",
    "flip": "FLIP",
    "lpips": "LPIPS",
    "stlpips": "ST-LPIPS",
    "vmaf": "VMAF",
}
TEMPLATES = Path(__file__).with_name("templates")


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


def build_report(
    results: Path,
    out: Path | None = None,
    anchor: str = ANCHOR,
    metric: str = "psnr",
    claims: Path | None = None,
) -> Path:
    """Write report.html (at `out`, default <results>/report.html), summary.md and points.csv beside it.

    `metric` is the one the BD table measures and the extra RD panel draws (any metric the records hold).
    `claims`: a `bench check` file whose claims get verdicts (default: <results>/claims.yaml if there).
    """
    import bench
    from bench.provenance import git_commit

    results = Path(results)
    out = Path(out) if out is not None else results / "report.html"
    if not store.jobs_dir(results).is_dir() and not store.failed_dir(results).is_dir():
        raise BenchError(f"no results in '{results}': run `bench run --results {results}` first")
    check_output_file(out, "--out")
    if metric not in RECORDED_METRICS:
        raise BenchError(
            f"--metric {metric!r} is not a recorded metric: use one of {', '.join(RECORDED_METRICS)}"
        )
    if claims is None and (results / CLAIMS_FILE).is_file():
        claims = results / CLAIMS_FILE
    claim_list = load_claims(Path(claims)) if claims is not None else []
    loaded = store.load_results(results)
    finished, failed = loaded.finished, loaded.failed

    published = load_published()
    points = fold_points(finished)
    marks = convergence(points)
    for p in points:
        if id(p) in marks:
            p.convergence = marks[id(p)].text()
    views = build_views(points, published["uvg_sequences"])
    methods = figures.method_order(p.method for p in points)
    styles = figures.method_styles(methods)
    chosen, anchor_note = choose_anchor(methods, anchor)
    for view in views:
        overlays, notes = overlays_for(view, published["series"])
        view.caption = caption_for(view, notes)
        view.figure = render_figure(view, styles, overlays, metric)
        view.speed_figure = render_speed_figure(view, styles, metric)
        if chosen is not None:
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0  # BD deltas assume higher is better
            curves = {
                m: (
                    [p.mean["bpp"] for p in ps if p.mean.get(metric) is not None],
                    [sign * p.mean[metric] for p in ps if p.mean.get(metric) is not None],
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
            "failed": sum(r.status == "failed" for r in failed),
            "skipped": sum(r.status != "failed" for r in failed),
            "rejected": len(loaded.rejected),
        },
        "anchor": chosen,
        "bd_metric": metric,
        "bd_metric_label": BD_LABELS.get(metric, metric.upper()),
        "bd_metric_is_distance": metric in LOWER_IS_BETTER,
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
        "convergence_views": convergence_views(points, styles),
        "scaling_views": scaling_views(points, styles),
        "claims_file": str(claims) if claims is not None else None,
        "verdicts": claim_verdicts(finished, claim_list),
        "interval_level": interval_level(),
        "failures": failure_rows(failed, loaded.rejected),
        "provenance": provenance_summary(finished + failed),
        "budgets": budget_rows(finished + failed),
    }
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(context), encoding="utf-8")
        (out.parent / "summary.md").write_text(summary_markdown(context), encoding="utf-8")
        write_points_csv(out.parent / "points.csv", points)
    except OSError as exc:
        raise BenchError(
            f"cannot write the report to {out}: {exc.strerror or exc}; choose another --out"
        ) from None
    return out


def report_command(args: Any) -> int:
    results = Path(args.results)
    out = Path(args.out) if getattr(args, "out", None) else results / "report.html"
    path = build_report(
        results,
        out,
        anchor=getattr(args, "anchor", None) or ANCHOR,
        metric=getattr(args, "metric", None) or "psnr",
        claims=Path(args.claims) if getattr(args, "claims", None) else None,
    )
    print(f"report: {path}")
    print(f"summary: {path.parent / 'summary.md'}")
    print(f"points: {path.parent / 'points.csv'}")
    return 0
