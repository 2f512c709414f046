"""Convergence marks come from separate runs at half the epochs, and the report draws and states them."""

from __future__ import annotations

import math
from pathlib import Path

from record_factory import make_record

from bench import store
from bench.budgets import get_budget
from reports.build import build_report
from reports.convergence import fit_plateau


def _run(
    results: Path, epochs: int, psnr: float, target: float = 0.5, curve: bool = False, note: str = ""
) -> None:
    budget = {**get_budget("smoke").to_dict(), "epochs": epochs, "caption_note": note}
    stats = {"train_seconds": epochs * 0.1}
    if curve:
        stats["curve"] = {
            "epochs": [1, 2, 5, 10, epochs],
            "seconds": [0.1, 0.2, 0.5, 1.0, epochs * 0.1],
            "train_psnr": [10.0, 12.0, 15.0, 18.0, psnr],
        }
    record = make_record(
        method="nerv-dense",
        target_bpp=target,
        match="epochs",
        status="ok",
        budget=budget,
        budget_overrides={"epochs": epochs} if epochs != get_budget("smoke").epochs else {},
        sequence={"name": "bunny", "width": 128, "height": 72, "num_frames": 4},
        bytes=10,
        bpp=target,
        metrics={"mean": {"psnr": psnr}},
        stats=stats,
        identity={"epochs": epochs},
    )
    store.write_result(results, record.key, record, b"x" * 10)


def test_a_doubling_that_still_gains_is_not_converged(tmp_path: Path) -> None:
    results = tmp_path / "res"
    for epochs, psnr in ((10, 20.0), (20, 22.0), (40, 22.1)):
        _run(results, epochs, psnr, curve=epochs == 40)
    build_report(results)
    summary = (results / "summary.md").read_text()
    assert "| smoke[epochs=10] | epochs | 0 | 0.5 |" in summary
    rows = {line.split(" | ")[2]: line for line in summary.splitlines() if line.startswith("| nerv-dense")}
    assert "unknown (no run at half the epochs)" in rows["smoke[epochs=10]"]
    assert "not converged (+2.00 dB from 10 epochs)" in rows["smoke[epochs=20]"]
    assert "converged (+0.10 dB from 20 epochs)" in rows["smoke[epochs=40]"]
    html = (results / "report.html").read_text()
    assert (
        'id="convergence-0"' in html
        and "Not converged (the last doubling of epochs gained more than 0.25 dB)" in html
    )


def test_without_an_epochs_ladder_the_caption_says_convergence_is_unmeasured(tmp_path: Path) -> None:
    results = tmp_path / "res"
    for target in (0.3, 0.5):
        _run(results, 80, 20.0 + target, target=target)
    html = build_report(results).read_text()
    assert "Convergence not measured here: no run at half the epochs" in html


def test_a_budget_that_stops_short_says_so_in_its_caption(tmp_path: Path) -> None:
    results = tmp_path / "res"
    note = get_budget("cpu").caption_note
    for target in (0.3, 0.5):
        _run(results, 80, 20.0 + target, target=target, note=note)
    assert note.split(" (")[0] in build_report(results).read_text()


def test_every_trained_record_holds_its_in_run_curve(tmp_path: Path) -> None:
    from bench.cli import main

    results = tmp_path / "run"
    code = main(
        ["run", "--methods", "nerv-dense", "--seq", "bunny", "--budget", "smoke", "--results", str(results)]
    )
    assert code == 0
    (record,) = store.load_results(results).finished
    curve = record.stats["curve"]
    epochs = curve["epochs"]
    assert len(epochs) >= 8 and epochs == sorted(set(epochs)) and epochs[0] == 1 and epochs[-1] == 80
    assert len(curve["seconds"]) == len(curve["train_psnr"]) == len(epochs)
    assert curve["seconds"] == sorted(curve["seconds"]) and curve["train_psnr"][-1] > curve["train_psnr"][0]
    # ratios between kept epochs stay near sqrt(2): a log-spaced ladder
    assert all(b / a <= 2.0 for a, b in zip(epochs, epochs[1:], strict=False))


def test_the_plateau_fit_recovers_a_known_power_law_and_refuses_what_it_cannot_fit() -> None:
    epochs = [150, 500, 1000, 2000]
    law = [30.0 - 6.0 * (e / 150) ** -0.7 for e in epochs]
    plateau = fit_plateau(epochs, law)
    assert plateau is not None and abs(plateau.psnr - 30.0) < 0.05 and plateau.stderr < 0.05
    assert abs(plateau.below - (30.0 - law[-1])) < 0.05 and plateau.runs == 4
    assert fit_plateau(epochs[:3], law[:3]) is None  # three parameters need a fourth run
    assert fit_plateau(epochs, law[::-1]) is None  # a falling ladder has no plateau above it
    unbent = fit_plateau(epochs, [20.0 + 2.0 * math.log(e) for e in epochs])  # still climbing as fast
    assert unbent is not None and not unbent.constrained and "not pinned down" in unbent.text()
    assert plateau.constrained and plateau.text().startswith("30.0")


def test_the_caption_states_the_extrapolated_plateau_once_four_runs_exist(tmp_path: Path) -> None:
    results = tmp_path / "res"
    ladder = {10: 20.0, 20: 22.0, 40: 23.0}
    for epochs, psnr in ladder.items():
        _run(results, epochs, psnr)
    assert "Extrapolated plateaus" not in build_report(results).read_text()
    _run(results, 80, 23.5)
    expected = fit_plateau([10, 20, 40, 80], [20.0, 22.0, 23.0, 23.5])
    html = build_report(results).read_text()
    assert f"nerv-dense {expected.text()}" in html
