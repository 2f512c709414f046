"""Rate-distortion figures as SVG: one panel per metric, every method in the same colour and marker everywhere.

Figures are drawn on bare `matplotlib.figure.Figure` objects (no pyplot state, no GUI backend) and returned
as SVG text with text kept as text, so the report stays small and its labels stay sharp at any zoom.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

# metric key -> axis label; the order is the order of the panels
METRIC_AXES = {
    "psnr": "PSNR (dB) ↑",
    "ms-ssim": "MS-SSIM ↑",
    "flip": "FLIP ↓",
    "lpips": "LPIPS ↓",
    "stlpips": "ST-LPIPS ↓",
}
# every other metric a record may hold: drawn as an extra panel when a report is asked for it (--metric)
EXTRA_AXES = {
    "psnr-seq": "PSNR of the mean MSE (dB) ↑",
    "psnr-y": "PSNR Y (dB) ↑",
    "psnr-u": "PSNR U (dB) ↑",
    "psnr-v": "PSNR V (dB) ↑",
    "psnr-yuv": "PSNR-YUV 6:1:1 (dB) ↑",
    "vmaf": "VMAF ↑",
    "xpsnr": "XPSNR (dB) ↑",
}

# The study's methods keep one look in every figure; the proposed method gets the strongest colour.
_KNOWN_STYLES = {
    "supermask-learned": ("#d62728", "D"),
    "supermask-fixed": ("#ff7f0e", "s"),
    "nerv-dense": ("#1f77b4", "o"),
    "nerv-pruned": ("#9467bd", "P"),
    "x264": ("#8c564b", "^"),
    "x265": ("#2ca02c", "v"),
}
_SPARE_COLOURS = ("#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#1a55a0", "#a0522d", "#6b8e23", "#2b2b2b")
_SPARE_MARKERS = ("p", "h", "*", "X", "<", "8", ">", "d")
_PUBLISHED_MARKERS = ("o", "s", "^", "D", "v")


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str


def method_order(methods: Iterable[str]) -> list[str]:
    """The study's methods first, in a fixed order, each followed by its variants (`name[...]`), then any
    other method alphabetically."""
    known = list(_KNOWN_STYLES)

    def key(label: str) -> tuple[int, str]:
        base = label.split("[", 1)[0]
        return (known.index(base) if base in known else len(known), label)

    return sorted(set(methods), key=key)


def method_styles(methods: Iterable[str]) -> dict[str, Style]:
    """One colour and marker per method, decided once for the whole report so every figure agrees."""
    styles = {}
    spare = 0
    for name in method_order(methods):
        if name in _KNOWN_STYLES:
            styles[name] = Style(*_KNOWN_STYLES[name])
        else:
            styles[name] = Style(
                _SPARE_COLOURS[spare % len(_SPARE_COLOURS)], _SPARE_MARKERS[spare % len(_SPARE_MARKERS)]
            )
            spare += 1
    return styles


@dataclass
class Series:
    """One method's curve: mean bpp and metrics per point, with their std (0 where a point has one seed)."""

    label: str
    style: Style
    bpp: list[float]
    bpp_std: list[float]
    values: dict[str, list[float | None]]
    stds: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Overlay:
    """Published points, drawn hollow and dashed so they never read as this suite's measurements."""

    label: str
    bpp: list[float]
    values: dict[str, list[float | None]]


def rd_figure(
    series: Sequence[Series], overlays: Sequence[Overlay] = (), metrics: Sequence[str] | None = None
) -> str:
    """SVG text of one row of panels (metric vs bpp), one shared legend below."""
    import matplotlib
    from matplotlib.figure import Figure

    metrics = list(metrics or [m for m in METRIC_AXES if _has(series, m)])
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "nerv-bench",
            "font.size": 10,
            "font.family": "sans-serif",
            "axes.titlesize": 10,
        }
    ):
        fig = Figure(figsize=(3.9 * max(len(metrics), 1), 3.1))
        axes = fig.subplots(1, max(len(metrics), 1), squeeze=False, sharex=True)[0]
        rates = [b for s in series for b in s.bpp] + [b for o in overlays for b in o.bpp]
        log_x = bool(rates) and max(rates) / min(rates) > 8  # a decade or so: linear reads easier below
        for ax, metric in zip(axes, metrics, strict=False):
            for s in series:
                _draw_series(ax, s, metric)
            for i, o in enumerate(overlays):
                _draw_overlay(ax, o, metric, _PUBLISHED_MARKERS[i % len(_PUBLISHED_MARKERS)])
            _format_axis(ax, metric, log_x)
        order = [s.label for s in series] + [f"published: {o.label}" for o in overlays]
        handles, labels = _legend_entries(axes, order)
        if handles:
            fig.legend(
                handles,
                labels,
                loc="upper center",
                bbox_to_anchor=(0.5, 0.0),
                frameon=False,
                ncol=min(len(handles), 6),
                fontsize=10,
            )
        fig.subplots_adjust(wspace=0.3)
        return _svg_text(fig)


def _has(series: Sequence[Series], metric: str) -> bool:
    return any(v is not None for s in series for v in s.values.get(metric, []))


def _draw_series(ax, s: Series, metric: str) -> None:
    values = s.values.get(metric)
    if not values:
        return
    keep = [i for i, v in enumerate(values) if v is not None]
    if not keep:
        return
    order = sorted(keep, key=lambda i: s.bpp[i])
    x = np.array([s.bpp[i] for i in order])
    y = np.array([values[i] for i in order], dtype=float)
    xerr = np.array([s.bpp_std[i] for i in order])
    yerr = np.array([(s.stds.get(metric) or [0.0] * len(values))[i] for i in order])
    ax.errorbar(
        x,
        y,
        xerr=xerr if xerr.any() else None,
        yerr=yerr if yerr.any() else None,
        color=s.style.colour,
        marker=s.style.marker,
        markersize=6,
        linewidth=1.6,
        capsize=3,
        elinewidth=1.0,
        label=s.label,
    )


def _draw_overlay(ax, o: Overlay, metric: str, marker: str) -> None:
    pairs = sorted((b, v) for b, v in zip(o.bpp, o.values.get(metric, []), strict=False) if v is not None)
    if not pairs:
        return
    x, y = zip(*pairs, strict=True)
    ax.plot(
        x,
        y,
        linestyle="--",
        linewidth=1.2,
        color="#555555",
        marker=marker,
        markersize=6,
        markerfacecolor="none",
        markeredgecolor="#333333",
        label=f"published: {o.label}",
    )


def _format_axis(ax, metric: str, log_x: bool) -> None:
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xlabel("bits per pixel")
    ax.set_ylabel({**METRIC_AXES, **EXTRA_AXES}.get(metric, metric))
    _tidy_axis(ax)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _legend_entries(axes, order: Sequence[str]) -> tuple[list, list[str]]:
    """Every label once, this suite's methods first, gathered over all panels (a panel may lack a series)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    labels = [label for label in order if label in seen]
    return [seen[label] for label in labels], labels


@dataclass
class TrainingSeries:
    """A method's PSNR against training epochs and seconds (separate runs, or one run's in-run curve)."""

    label: str
    style: Style
    epochs: list[int]
    seconds: list[float | None]
    psnr: list[float]


def training_figure(runs: Sequence[TrainingSeries], curves: Sequence[TrainingSeries] = ()) -> str:
    """SVG of two panels, PSNR vs epochs and vs training seconds (log x): markers for separate runs,
    thin lines for in-run curves."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "nerv-bench", "font.size": 10}):
        fig = Figure(figsize=(7.8, 3.1))
        axes = fig.subplots(1, 2, squeeze=False)[0]
        for ax, axis in zip(axes, ("epochs", "seconds"), strict=True):
            for c in curves:
                pairs = [
                    (x, y) for x, y in zip(getattr(c, axis), c.psnr, strict=False) if x and y is not None
                ]
                if pairs:
                    ax.plot(*zip(*pairs, strict=True), color=c.style.colour, linewidth=1.0, alpha=0.6)
            for r in runs:
                pairs = [
                    (x, y) for x, y in zip(getattr(r, axis), r.psnr, strict=False) if x and y is not None
                ]
                if pairs:
                    ax.plot(
                        *zip(*pairs, strict=True),
                        color=r.style.colour,
                        marker=r.style.marker,
                        linewidth=1.6,
                        markersize=6,
                        label=r.label,
                    )
            ax.set_xscale("log")
            ax.set_xlabel("training epochs" if axis == "epochs" else "training seconds")
            ax.set_ylabel("PSNR (dB) ↑")
            _tidy_axis(ax)
        handles, labels = _legend_entries(axes, [r.label for r in runs])
        if handles:
            fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False, ncol=4)
        fig.subplots_adjust(wspace=0.3)
        return _svg_text(fig)


def speed_figure(
    series: Sequence[Series], decode_fps: dict[str, list[float | None]], metric: str = "psnr"
) -> str:
    """SVG of quality against decoding speed (frames/s, log x): one marker per point, a line per method."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "nerv-bench", "font.size": 10}):
        fig = Figure(figsize=(3.9, 3.1))
        ax = fig.subplots()
        for s in series:
            pairs = sorted(
                (f, v)
                for f, v in zip(decode_fps.get(s.label, []), s.values.get(metric, []), strict=False)
                if f and v is not None
            )
            if pairs:
                ax.plot(
                    *zip(*pairs, strict=True),
                    color=s.style.colour,
                    marker=s.style.marker,
                    linestyle="none",
                    markersize=6,
                    label=s.label,
                )
        ax.set_xscale("log")
        ax.set_xlabel("decoded frames per second (this machine)")
        ax.set_ylabel({**METRIC_AXES, **EXTRA_AXES}.get(metric, metric))
        _tidy_axis(ax)
        return _svg_text(fig)


@dataclass
class GapSeries:
    """A method's PSNR gap to an anchor against the anchor's weights, with each point's interval."""

    label: str
    style: Style
    weights: list[float]
    gap: list[float]
    low: list[float]
    high: list[float]


def gap_figure(series: Sequence[GapSeries], anchor: str) -> str:
    """SVG of each method's gap to `anchor` (dB) against the anchor's weights (log x), zero marked."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "nerv-bench", "font.size": 10}):
        fig = Figure(figsize=(4.6, 3.1))
        ax = fig.subplots()
        ax.axhline(0.0, color="#888888", linewidth=0.8)
        for s in series:
            below = [g - lo for g, lo in zip(s.gap, s.low, strict=True)]
            above = [hi - g for g, hi in zip(s.gap, s.high, strict=True)]
            ax.errorbar(
                s.weights,
                s.gap,
                yerr=[below, above],
                color=s.style.colour,
                marker=s.style.marker,
                linewidth=1.6,
                markersize=6,
                capsize=3,
                label=s.label,
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"weights of {anchor}")
        ax.set_ylabel(f"PSNR minus {anchor}'s (dB)")
        _tidy_axis(ax)
        if series:
            ax.legend(frameon=False, loc="best")
        return _svg_text(fig)


def _tidy_axis(ax) -> None:
    ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _svg_text(fig) -> str:
    """The figure as SVG text, reproducible (no date; the hash salt is fixed by each figure's rc_context)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buffer.getvalue()


def svg_data_uri(svg: str) -> str:
    """An SVG as a data: URI; loaded through <img>, its text can never act as markup in the page."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
