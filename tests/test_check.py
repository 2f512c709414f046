"""`bench check` passes real results, bites on a degraded method, and refuses malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from plugin_methods import installed_plugin
from record_factory import write_claim_records

from bench.cli import main

SMOKE = ["--budget", "smoke", "--seq", "bunny", "--bpp", "0.5"]
AB_CLAIM = {
    "better": "a",
    "worse": "b",
    "metric": "psnr",
    "min_difference": 0.3,
    "sequence": "s",
    "budget": "smoke",
}
THRESHOLDS = """
bounds:
  - {method: x264, sequence: bunny, budget: smoke, min_psnr: %(psnr)s, min_ms_ssim: 0.9, max_flip: 0.2,
     max_bpp_deviation: 0.10}
claims:
  - {better: x265, worse: x264, metric: psnr, min_difference: -1.5, sequence: bunny, budget: smoke}
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
    degraded = tmp_path / "degraded"
    with installed_plugin(tmp_path / "plugins", monkeypatch, "degraded_x264", DEGRADED):
        assert main(["run", "--methods", "x264", *SMOKE, "--results", str(degraded)]) == 0
    capsys.readouterr()
    assert main(["check", "--results", str(degraded), "--thresholds", str(_thresholds(tmp_path, bound))]) == 1
    out = capsys.readouterr().out
    assert "FAIL psnr" in out and "fell short" in out


def test_ordering_claim_bites(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "claim.yaml"
    path.write_text(
        "claims:\n  - {better: x264, worse: x265, metric: psnr, min_difference: 5, sequence: bunny, budget: smoke}\n"
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
            "claims:\n  - {better: a, worse: b, metric: bogus, min_difference: 1, sequence: s, budget: smoke}\n",
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


# --- claims that can fail ---------------------------------------------------------------------------------------

COMMITTED = Path(__file__).parents[1] / "thresholds" / "ci.yaml"


def _check(results: Path, thresholds: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", "--results", str(results), "--thresholds", str(thresholds)])
    return code, capsys.readouterr().out


def test_each_committed_claim_fails_on_zero_and_reversed_advantages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = yaml.safe_load(COMMITTED.read_text())["claims"]
    assert claims and all(c["min_difference"] > 0 for c in claims)  # each claims an advantage, not a tie
    for i, claim in enumerate(claims):
        only = tmp_path / f"claim{i}.yaml"
        only.write_text(yaml.safe_dump({"claims": [claim]}))
        held = claim["min_difference"] + 0.5
        cases = {
            "holds": ({0: held}, 0),
            "zero": ({0: 0.0}, 1),  # the better method's records replaced by the worse one's
            "reversed": ({0: -held}, 1),
            "holds over seeds": ({0: held, 1: held + 0.05, 2: held - 0.05}, 0),
            "zero over seeds": ({0: 0.1, 1: -0.1, 2: 0.0}, 1),
        }
        for case, (differences, expected) in cases.items():
            results = write_claim_records(tmp_path / f"{i}-{case.replace(' ', '-')}", claim, differences)
            code, out = _check(results, only, capsys)
            assert code == expected, (claim, case, out)


def test_a_noisy_advantage_does_not_pass_for_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claim = AB_CLAIM
    path = tmp_path / "c.yaml"
    path.write_text(f"claims:\n  - {claim}\n".replace("'", ""))
    # mean +0.5 dB, above the claim, but the paired seeds spread from -0.5 to +1.5: cannot tell
    code, out = _check(
        write_claim_records(tmp_path / "noisy", claim, {0: -0.5, 1: 0.5, 2: 1.5}), path, capsys
    )
    assert code == 1 and "mean +0.500; one-sided 95% lower bound" in out
    code, out = _check(
        write_claim_records(tmp_path / "clear", claim, {0: 0.45, 1: 0.5, 2: 0.55}), path, capsys
    )
    assert code == 0 and "paired over seeds 0, 1, 2" in out


def test_a_claim_about_absent_methods_says_what_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claim = AB_CLAIM
    results = write_claim_records(tmp_path / "r", claim, {0: 1.0})
    path = tmp_path / "c.yaml"
    path.write_text(
        "claims:\n  - {better: a, worse: zz, metric: psnr, min_difference: 0.3, sequence: s, budget: smoke}\n"
    )
    code, out = _check(results, path, capsys)
    assert code == 1 and "no psnr records of 'zz' on s at budget smoke; present there: a, b" in out
    path.write_text(
        "claims:\n  - {better: a, worse: b, metric: psnr, margin: 0.3, sequence: s, budget: smoke}\n"
    )
    code, out = _check(results, path, capsys)
    assert code == 2 and "'margin: m' was 'min_difference: -m'" in out


def test_a_claim_over_both_protocols_names_the_one_it_judges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A seed's equal-epochs and equal-time runs must not overwrite each other in a claim's pairing."""
    claim = {**AB_CLAIM, "budget": "study"}
    results = tmp_path / "both"
    write_claim_records(results, claim, {0: 1.0, 1: 1.1, 2: 0.9}, match="epochs")
    write_claim_records(results, claim, {0: -1.0, 1: -1.1, 2: -0.9}, match="time")  # the order reversed
    path = tmp_path / "c.yaml"
    for match, expected in ((None, 1), ("epochs", 0), ("time", 1)):
        path.write_text(yaml.safe_dump({"claims": [{**claim, **({"match": match} if match else {})}]}))
        code, out = _check(results, path, capsys)
        assert code == expected, (match, out)
        if match is None:
            assert "a has records of both protocols" in out and "add 'match: epochs' or 'match: time'" in out
    path.write_text(yaml.safe_dump({"claims": [{**claim, "match": "speed"}]}))
    code, out = _check(results, path, capsys)
    assert code == 2 and "match" in out and "must be one of epochs, time, got 'speed'" in out
