"""How far each trained method trained: convergence marks from an epochs grid, and PSNR-vs-training figures.

A point part-way through a cosine schedule is not a shorter run (its learning rate is still high), so a
point is judged against a *separate run* at half its epochs (an epochs grid, `--epochs 60,120,240`): it is
"not converged" when that last doubling gained more than `GAIN_DB`. Without such a run its status is
"unknown". The in-run curves (training-set PSNR at log-spaced epochs, recorded by the training loop) show
the shape of each run beside the separate runs' decoded PSNR. Where a method has four or more separate
runs, a fitted power law extrapolates its plateau (`fit_plateau`), so a ladder that stops short still says
how far short.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from reports import figures
from reports.points import Point

GAIN_DB = 0.25  # a doubling of epochs that gains more than this leaves the point "not converged"
PLATEAU_MIN_RUNS = 4  # the fit has three parameters: four runs leave it one degree of freedom


@dataclass(frozen=True)
class Convergence:
    status: str  # "converged", "not converged" or "unknown"
    gain: float | None = None  # decoded PSNR gained by the last doubling of epochs
    half_epochs: int | None = None

    def text(self) -> str:
        if self.status == "unknown":
            return "unknown (no run at half the epochs)"
        return f"{self.status} ({self.gain:+.2f} dB from {self.half_epochs} epochs)"


@dataclass(frozen=True)
class Plateau:
    """PSNR(E) = psnr - a (E / E_first)^-b fitted to separate runs at E epochs (a >= 0, b > 0)."""

    psnr: float  # the extrapolated plateau P (dB)
    stderr: float | None  # P's standard error from the fit (None: the data do not constrain it)
    below: float  # how far the longest run stops below P (dB)
    runs: int

    @property
    def constrained(self) -> bool:
        """Whether the runs pin P down: its standard error under both 1 dB and the gap it extrapolates."""
        return self.stderr is not None and self.stderr < max(1.0, abs(self.below))

    def text(self) -> str:
        if not self.constrained:
            spread = f" ± {self.stderr:.1f}" if self.stderr is not None else ""
            return f"not pinned down by {self.runs} runs (fit {self.psnr:.1f}{spread} dB)"
        return f"{self.psnr:.2f} ± {self.stderr:.2f} dB, the longest run {self.below:.2f} dB below ({self.runs} runs)"


def fit_plateau(epochs: Sequence[int], psnr: Sequence[float]) -> Plateau | None:
    """The least-squares plateau of a ladder of separate runs; None below `PLATEAU_MIN_RUNS` runs.

    For each exponent b on a fine grid, P and a are a linear least-squares solve; the best b wins. P's
    standard error comes from the Jacobian of all three parameters at the optimum (residual variance on the
    remaining degrees of freedom); a curve that has not bent yet leaves it large or undefined.
    """
    if len(epochs) < PLATEAU_MIN_RUNS or len(epochs) != len(psnr):
        return None
    order = np.argsort(np.asarray(epochs, dtype=float))
    e = np.asarray(epochs, dtype=float)[order]
    q = np.asarray(psnr, dtype=float)[order]
    x = e / e[0]
    best: tuple[float, float, float, float] | None = None  # (sse, P, a, b)
    for b in np.geomspace(0.02, 5.0, 400):
        design = np.stack([np.ones_like(x), -(x**-b)], axis=1)
        (plateau, a), *_ = np.linalg.lstsq(design, q, rcond=None)
        if a < 0:  # a falling curve: no plateau above it to extrapolate
            continue
        sse = float(np.sum((design @ np.array([plateau, a]) - q) ** 2))
        if best is None or sse < best[0]:
            best = (sse, float(plateau), float(a), float(b))
    if best is None:
        return None
    sse, plateau, a, b = best
    jacobian = np.stack([np.ones_like(x), -(x**-b), a * np.log(x) * x**-b], axis=1)
    dof = len(x) - 3
    stderr = None
    if dof > 0:
        try:
            variance = np.linalg.inv(jacobian.T @ jacobian)[0, 0] * (sse / dof)
        except np.linalg.LinAlgError:  # the runs cannot tell the parameters apart
            variance = np.nan
        if np.isfinite(variance) and variance >= 0:
            stderr = float(np.sqrt(variance))
    return Plateau(plateau, stderr, plateau - float(q[-1]), len(x))


def _epochs(point: Point) -> int | None:
    value = point.records[0].budget.get("epochs") if point.records else None
    return int(value) if isinstance(value, (int, float)) else None


def _family(point: Point) -> tuple[str, str, str, float, str]:
    """What a point shares with its runs at other epochs: everything but the epochs."""
    return (
        point.method,
        point.sequence,
        point.match,
        point.target_bpp,
        point.records[0].budget_label_except("epochs"),
    )


def convergence(points: Sequence[Point]) -> dict[int, Convergence]:
    """id(point) -> its convergence status, for every trained point matched by epochs."""
    families: dict[tuple, dict[int, Point]] = defaultdict(dict)
    for p in points:
        epochs = _epochs(p)
        if p.match == "epochs" and epochs and p.records:
            families[_family(p)][epochs] = p
    marks: dict[int, Convergence] = {}
    for members in families.values():
        for epochs, p in members.items():
            half = members.get(epochs // 2) if epochs % 2 == 0 else None
            if half is None or p.mean.get("psnr") is None or half.mean.get("psnr") is None:
                marks[id(p)] = Convergence("unknown")
                continue
            gain = p.mean["psnr"] - half.mean["psnr"]
            marks[id(p)] = Convergence("not converged" if gain > GAIN_DB else "converged", gain, epochs // 2)
    return marks


@dataclass
class ConvergenceView:
    """One sequence and rate: decoded PSNR of separate runs against epochs and seconds, per trained method."""

    id: str
    title: str
    figure: str
    caption: list[str] = field(default_factory=list)


def convergence_views(
    points: Sequence[Point], styles: dict[str, figures.Style], start: int = 0
) -> list[ConvergenceView]:
    """A figure per (sequence, target, budget but for the epochs) that has trained points: an epochs ladder
    and/or in-run curves. Runs on other clips (another size or frame count) get figures of their own."""
    groups: dict[tuple[str, float, str], list[Point]] = defaultdict(list)
    for p in points:
        if p.match == "epochs" and p.records:
            groups[(p.sequence, p.target_bpp, p.records[0].budget_label_except("epochs"))].append(p)
    marks = convergence(points)
    views = []
    for (sequence, target, clip), members in sorted(groups.items()):
        runs, curves, plateaus = [], [], []
        for label in figures.method_order({p.method for p in members}):
            mine = sorted((p for p in members if p.method == label), key=lambda p: _epochs(p) or 0)
            ladder = [(p, _epochs(p)) for p in mine if _epochs(p) and p.mean.get("psnr") is not None]
            plateau = fit_plateau([e for _, e in ladder], [p.mean["psnr"] for p, _ in ladder])
            if plateau is not None:
                plateaus.append(f"{label} {plateau.text()}")
            runs.append(
                figures.TrainingSeries(
                    label,
                    styles[label],
                    epochs=[e for _, e in ladder],
                    seconds=[_train_seconds(p) for p, _ in ladder],
                    psnr=[p.mean["psnr"] for p, _ in ladder],
                )
            )
            longest = mine[-1].records[0].stats.get("curve") if mine else None
            if isinstance(longest, dict) and longest.get("epochs"):
                curves.append(
                    figures.TrainingSeries(
                        label,
                        styles[label],
                        epochs=list(longest["epochs"]),
                        seconds=list(longest.get("seconds") or []),
                        psnr=list(longest.get("train_psnr") or []),
                    )
                )
        if not any(len(r.epochs) > 1 for r in runs) and not curves:
            continue
        unconverged = sorted(
            {p.method for p in members if marks.get(id(p), Convergence("unknown")).status == "not converged"}
        )
        unknown = sorted(
            {p.method for p in members if marks.get(id(p), Convergence("unknown")).status == "unknown"}
        )
        caption = [
            "Markers: decoded PSNR of separate runs at each epoch count (an epochs grid); thin lines: the "
            "training-set PSNR inside the longest run, as it trained (not a shorter run: its learning rate "
            "had not yet decayed)."
        ]
        if unconverged:
            caption.append(
                f"Not converged (the last doubling of epochs gained more than {GAIN_DB} dB): {', '.join(unconverged)}."
            )
        if unknown:
            caption.append(f"Convergence unknown (no run at half the epochs): {', '.join(unknown)}.")
        if plateaus:
            caption.append(
                f"Extrapolated plateaus (P - a (E / E1)^-b fitted to the separate runs): {'; '.join(plateaus)}."
            )
        views.append(
            ConvergenceView(
                f"convergence-{start + len(views)}",
                f"{sequence} · {target:g} bpp · {clip}",
                figures.svg_data_uri(figures.training_figure(runs, curves)),
                caption,
            )
        )
    return views


def _train_seconds(point: Point) -> float | None:
    values = [r.stats.get("train_seconds") for r in point.records]
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(numbers) / len(numbers) if numbers else None
