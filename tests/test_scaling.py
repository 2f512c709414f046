"""The gap-against-size view: paired per-seed gaps to nerv-dense across clip sizes, and a trend that can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from record_factory import make_record

from bench import store
from bench.budgets import get_budget
from reports.build import build_report
from reports.points import fold_points
from reports.scaling import gap_trends

SIZES = ((36, 64), (72, 128), (144, 256))
NOISE = (0.05, -0.04, 0.0)  # per-seed wobble of the gap, so its interval has a width


def _write(results: Path, method: str, size: tuple[int, int], seed: int, psnr: float) -> None:
    budget = {**get_budget("smoke").to_dict(), "size": list(size)}
    record = make_record(
        method=method,
        seed=seed,
        target_bpp=0.5,
        match="epochs",
        status="ok",
        budget=budget,
        budget_overrides={"size": list(size)},
        sequence={"name": "bunny", "width": size[1], "height": size[0], "num_frames": 4},
        bytes=10,
        bpp=0.5,
        metrics={"mean": {"psnr": psnr}},
        stats={
            "parameters": size[0] * size[1] // 4,
            "train_seconds": 1.0,
            "curve": {"epochs": [1, 80], "seconds": [0.1, 1.0], "train_psnr": [10.0, psnr]},
        },
        identity={"size": list(size)},
    )
    store.write_result(results, record.key, record, b"x" * 10)


def _study(results: Path, gaps: tuple[float, ...], seeds: tuple[int, ...] = (10, 11, 12)) -> None:
    for size, gap in zip(SIZES, gaps, strict=True):
        for seed, wobble in zip(seeds, NOISE, strict=False):
            _write(results, "nerv-dense", size, seed, 25.0 + seed * 0.1)
            _write(results, "supermask-learned", size, seed, 25.0 + seed * 0.1 + gap + wobble)


def _trend(results: Path):
    from bench.store import load_results

    trends = gap_trends(fold_points(load_results(results).finished))
    assert len(trends) == 1
    (found,) = trends.values()
    assert [t.method for t in found] == ["supermask-learned"]
    return found[0]


def test_a_gap_that_shrinks_with_the_weights_narrows_and_the_report_shows_it(tmp_path: Path) -> None:
    results = tmp_path / "res"
    _study(results, (-3.0, -2.0, -1.0))
    trend = _trend(results)
    assert [g.size for g in trend.gaps] == ["36x64", "72x128", "144x256"]
    assert trend.gaps[0].seeds == (10, 11, 12)
    assert trend.gaps[0].low < trend.gaps[0].mean < trend.gaps[0].high
    assert trend.slope is not None and trend.slope > 0
    assert trend.verdict() == "the gap narrows as the networks grow"
    build_report(results)
    html = (results / "report.html").read_text()
    assert 'id="scaling-0"' in html and "the gap narrows as the networks grow" in html
    for height, width in SIZES:  # each clip's training curves get a figure of their own, named by the clip
        assert f"<h3>bunny · 0.5 bpp · smoke[size={height}x{width}]</h3>" in html
    summary = (results / "summary.md").read_text()
    assert "## Gap against network size" in summary and "| supermask-learned | 144x256 | 9,216 |" in summary


@pytest.mark.parametrize(
    ("gaps", "verdict"),
    [
        ((-1.0, -2.0, -3.0), "the gap widens as the networks grow"),  # the same gaps, sizes reversed
        ((-2.0, -2.0, -2.0), "no trend these sizes can tell"),  # no trend at all
        ((1.0, 2.0, 3.0), "the gap widens as the networks grow"),  # a lead that grows
    ],
)
def test_the_verdict_fails_on_reversed_or_flat_gaps(tmp_path: Path, gaps: tuple, verdict: str) -> None:
    results = tmp_path / "res"
    _study(results, gaps)
    assert _trend(results).verdict() == verdict


def test_two_sizes_or_no_shared_seed_make_no_trend(tmp_path: Path) -> None:
    results = tmp_path / "two"
    for size in SIZES[:2]:
        _write(results, "nerv-dense", size, 10, 25.0)
        _write(results, "supermask-learned", size, 10, 24.0)
    assert gap_trends(fold_points(store.load_results(results).finished)) == {}
    build_report(results)
    assert 'id="scaling-0"' not in (results / "report.html").read_text()

    unpaired = tmp_path / "unpaired"
    for size in SIZES:
        _write(unpaired, "nerv-dense", size, 10, 25.0)
        _write(unpaired, "supermask-learned", size, 11, 24.0)
    assert gap_trends(fold_points(store.load_results(unpaired).finished)) == {}


def test_a_size_where_the_anchor_is_below_the_floor_is_left_out_of_the_fit(tmp_path: Path) -> None:
    # four sizes: the smallest has a wide gap, the three larger ones none; the anchor sits below the still
    # frame at the smallest only, so the fit over the others finds no trend (with it, "narrows")
    results = tmp_path / "res"
    sizes = ((18, 32), *SIZES)
    for size, gap in zip(sizes, (-4.0, -2.0, -2.0, -2.0), strict=True):
        for seed, wobble in zip((10, 11, 12), NOISE, strict=True):
            dense = (19.0 if size == sizes[0] else 25.0) + seed * 0.1
            _write(results, "nerv-dense", size, seed, dense)
            _write(results, "supermask-learned", size, seed, dense + gap + wobble)
    trend_with_the_small_size = _trend(results)
    assert trend_with_the_small_size.verdict() == "the gap narrows as the networks grow"
    for size in sizes:
        record = make_record(
            method="still-frame",
            seed=0,
            target_bpp=0.5,
            match="n/a",
            status="ok",
            budget={**get_budget("smoke").to_dict(), "size": list(size)},
            budget_overrides={"size": list(size)},
            sequence={"name": "bunny", "width": size[1], "height": size[0], "num_frames": 4},
            bytes=10,
            bpp=0.5,
            metrics={"mean": {"psnr": 22.0}},
            identity={"size": list(size), "floor": True},
        )
        store.write_result(results, record.key, record, b"x" * 10)
    trend = _trend(results)
    assert [g.below_floor for g in trend.gaps] == [True, False, False, False]
    assert trend.verdict() == "no trend these sizes can tell"
    assert "left out of the fit, nerv-dense below the still frame: 18x32" in trend.text()
    build_report(results)
    assert "| supermask-learned | 18x32 (below the floor) |" in (results / "summary.md").read_text()
