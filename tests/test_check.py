"""`bench check` passes real results, bites on a degraded method, and refuses malformed files."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from bench import registry
from bench.cli import main

SMOKE = ["--budget", "smoke", "--seq", "bunny", "--bpp", "0.5"]
THRESHOLDS = """
bounds:
  - {method: x264, sequence: bunny, budget: smoke, min_psnr: %(psnr)s, min_ms_ssim: 0.9, max_flip: 0.2,
     max_bpp_deviation: 0.10}
claims:
  - {better: x265, worse: x264, metric: psnr, margin: 1.5, sequence: bunny, budget: smoke}
"""

DEGRADED = '''
"""x264 whose decode is disturbed by noise: a stand-in for a regression."""
import numpy as np
from methods.x264 import X264 as _X264


class X264(_X264):
    version = "1-degraded"

    def decode(self, data, info, ctx):
        frames = super().decode(data, info, ctx).astype(np.int16)
        noise = np.random.default_rng(0).integers(-12, 13, frames.shape)
        return np.clip(frames + noise, 0, 255).astype(np.uint8)
'''


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("res")
    assert main(["run", "--methods", "x264,x265", *SMOKE, "--results", str(out)]) == 0
    return out


def _psnr_of(results: Path, method: str) -> float:
    from bench import store

    return next(r for r in store.iter_records(results) if r.method == method).mean("psnr")


def _thresholds(tmp_path: Path, psnr: float) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_text(THRESHOLDS % {"psnr": f"{psnr:.2f}"})
    return path


def test_check_passes_on_real_results(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bound = _psnr_of(results, "x264") - 1.0
    assert main(["check", "--results", str(results), "--thresholds", str(_thresholds(tmp_path, bound))]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "checks passed" in out


def test_check_bites_on_a_degraded_method(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bound = _psnr_of(results, "x264") - 1.0
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "degraded_x264.py").write_text(textwrap.dedent(DEGRADED))
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("BENCH_PLUGINS", "degraded_x264")
    registry.discover.cache_clear()
    try:
        degraded = tmp_path / "degraded"
        assert main(["run", "--methods", "x264", *SMOKE, "--results", str(degraded)]) == 0
    finally:
        registry.discover.cache_clear()
        sys.modules.pop("degraded_x264", None)
    capsys.readouterr()
    assert main(["check", "--results", str(degraded), "--thresholds", str(_thresholds(tmp_path, bound))]) == 1
    out = capsys.readouterr().out
    assert "FAIL psnr" in out and "fell short" in out


def test_ordering_claim_bites(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "claim.yaml"
    path.write_text(
        "claims:\n  - {better: x264, worse: x265, metric: psnr, margin: -5, sequence: bunny, budget: smoke}\n"
    )
    assert main(["check", "--results", str(results), "--thresholds", str(path)]) == 1
    assert "FAIL claim psnr" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bounds: {method: x264}\n", "'bounds' in"),
        ("bounds:\n  - {method: x264, sequence: bunny}\n", "lacks key 'budget'"),
        (
            "bounds:\n  - {method: x264, sequence: bunny, budget: smoke, min_psnrr: 3}\n",
            "unknown key 'min_psnrr'",
        ),
        ("bounds:\n  - {method: x264, sequence: bunny, budget: smoke, min_psnr: high}\n", "must be a number"),
        (
            "claims:\n  - {better: a, worse: b, metric: vmaf, margin: 1, sequence: s, budget: smoke}\n",
            "metric",
        ),
        ("bounds: [\n", "not valid YAML"),
    ],
)
def test_malformed_thresholds_exit_2(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["check", "--results", str(results), "--thresholds", str(path)]) == 2
    out = capsys.readouterr().out
    assert message in out and len(out.strip().splitlines()) == 1
