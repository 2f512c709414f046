"""Every recorded metric can be the report's BD metric and a bound or claim of `bench check`."""

from __future__ import annotations

from pathlib import Path

import pytest
from record_factory import make_record

from bench import store
from bench.budgets import get_budget
from bench.cli import main
from bench.metrics import METRIC_NAMES
from reports.points import RECORDED_METRICS


def _results(folder: Path) -> Path:
    for method, offset in (("x264", 0.0), ("x265", 3.0)):
        for i, bpp in enumerate((0.1, 0.2, 0.4, 0.8)):
            record = make_record(
                method=method,
                target_bpp=bpp,
                status="ok",
                budget=get_budget("smoke").to_dict(),
                sequence={"name": "bunny", "width": 128, "height": 72, "num_frames": 4},
                bytes=10,
                bpp=bpp,
                metrics={
                    "mean": {
                        "psnr": 25.0 + i + offset / 3,
                        "vmaf": 50.0 + 10 * i + offset,
                        "flip": 0.3 - 0.05 * i,
                    }
                },
                stats={"encoder": f"lib{method} test"},
                timings={"decode_s": 0.01},
                decode_fps=400.0,
            )
            store.write_result(folder, record.key, record, b"x" * 10)
    return folder


def test_the_report_and_check_know_every_recorded_metric() -> None:
    assert set(RECORDED_METRICS) == set(METRIC_NAMES)


def test_bd_on_vmaf_and_bounds_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = _results(tmp_path / "res")
    assert main(["report", "--results", str(results), "--anchor", "x264", "--metric", "vmaf"]) == 0
    summary = (results / "summary.md").read_text()
    assert "## BD vs x264 (VMAF)" in summary and "| VMAF |" in summary
    html = (results / "report.html").read_text()
    assert "BD-rate and BD-VMAF against x264" in html and "quality against decoding speed" in html
    assert "Encoders: x264: libx264 test; x265: libx265 test." in html
    bounds = tmp_path / "t.yaml"
    bounds.write_text(
        "bounds:\n  - {method: x265, sequence: bunny, budget: smoke, min_vmaf: 52}\n"
        "claims:\n  - {better: x265, worse: x264, metric: vmaf, min_difference: 2, sequence: bunny, budget: smoke}\n"
    )
    capsys.readouterr()
    assert main(["check", "--results", str(results), "--thresholds", str(bounds)]) == 0
    bounds.write_text("bounds:\n  - {method: x264, sequence: bunny, budget: smoke, min_vmaf: 52}\n")
    assert main(["check", "--results", str(results), "--thresholds", str(bounds)]) == 1
    assert "FAIL vmaf" in capsys.readouterr().out
    assert main(["report", "--results", str(results), "--metric", "vmaff"]) == 2
