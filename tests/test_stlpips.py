"""ST-LPIPS: the suite's network against the reference package's numbers, its properties, its availability
reason, and its place in records, reports and `bench check`.

The reference values (tests/data/stlpips_reference.json) were computed by the stlpips-pytorch package's own
network on the same frames; the tests need only its weight file, which the install brings. Without it
they skip with the install command, or fail under BENCH_REQUIRE_STLPIPS (set by `.ci/run`).
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from pyav_frames import pyav_frames
from record_factory import make_record

from bench import metrics, stlpips_alex, store
from bench.budgets import get_budget
from bench.cli import main
from bench.errors import MetricError

REFERENCE = json.loads((Path(__file__).parent / "data" / "stlpips_reference.json").read_text())
INRSLT = Path(__file__).resolve().parents[2] / "shared" / "reference" / "inrslt"
AGREEMENT = 2e-6  # measured 3e-8 (float32 rounding); the package itself computes in float32


@pytest.fixture(scope="module")
def weights() -> Path:
    found = stlpips_alex.weight_file()
    if isinstance(found, str):
        if os.environ.get("BENCH_REQUIRE_STLPIPS"):
            pytest.fail(f"BENCH_REQUIRE_STLPIPS is set but {found}")
        pytest.skip(found)
    return found


@pytest.fixture(scope="module")
def carphone(carphone_paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    """The first 3 carphone frames (144x176), pristine and distorted."""
    pristine, distorted = carphone_paths
    return pyav_frames(pristine, 3, "rgb24"), pyav_frames(distorted, 3, "rgb24")


def test_matches_the_reference_package(weights: Path, carphone: tuple[np.ndarray, np.ndarray]) -> None:
    pristine, distorted = carphone
    cases = REFERENCE["cases"]
    assert metrics.stlpips(pristine, distorted) == pytest.approx(
        cases["carphone_frames_0_2"]["values"], abs=AGREEMENT
    )
    shifted = metrics.stlpips(pristine[:1, :, 1:], pristine[:1, :, :-1])
    assert shifted == pytest.approx(cases["carphone_frame_0_shifted_1px"]["values"], abs=AGREEMENT)


@pytest.mark.skipif(not INRSLT.is_dir(), reason=f"reference frames not found at {INRSLT}")
def test_matches_the_reference_package_on_inr_decodes(weights: Path) -> None:
    from PIL import Image

    crop = REFERENCE["inrslt_crops"]["crop"]
    rows, cols = slice(*crop["rows"]), slice(*crop["cols"])
    for name, expected in REFERENCE["inrslt_crops"]["pairs"].items():
        ref_name = "_".join(name.split("_")[:2]) + "_GT.png"
        ref, test = (
            np.asarray(Image.open(INRSLT / n).convert("RGB"))[rows, cols][None] for n in (ref_name, name)
        )
        assert metrics.stlpips(ref, test) == pytest.approx([expected], abs=AGREEMENT), name


def test_zero_for_identical_frames_and_ordered_by_distortion(
    weights: Path, carphone: tuple[np.ndarray, np.ndarray]
) -> None:
    pristine = carphone[0]
    assert metrics.stlpips(pristine, pristine).tolist() == [0.0, 0.0, 0.0]
    rng = np.random.default_rng(0)
    noisy = [
        np.clip(pristine + rng.normal(0, sigma, pristine.shape), 0, 255).round().astype(np.uint8)
        for sigma in (2, 8, 16)
    ]
    mild, medium, strong = (metrics.stlpips(pristine, n) for n in noisy)
    assert (0 < mild).all() and (mild < medium).all() and (medium < strong).all()
    assert metrics.stlpips(noisy[1], pristine) == pytest.approx(medium, rel=1e-5)  # symmetric


def test_a_one_pixel_shift_is_tolerated(weights: Path, carphone: tuple[np.ndarray, np.ndarray]) -> None:
    """A one-pixel translation costs as much PSNR as the carphone compression (23.3-23.7 vs 23.6-23.8 dB)
    but scores under a tenth of its ST-LPIPS (measured: 0.009 against 0.21)."""
    pristine, distorted = carphone
    ref, moved = pristine[:, :, 1:], pristine[:, :, :-1]
    assert (metrics.psnr(ref, moved) < metrics.psnr(pristine, distorted) + 0.5).all()
    assert (metrics.stlpips(ref, moved) < 0.1 * metrics.stlpips(pristine, distorted)).all()


def test_network_layout(weights: Path) -> None:
    net = stlpips_alex.load_network(weights, "cpu")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert torch.equal(net.convs[2].weight, state["net.slice3.9.weight"])
    assert torch.equal(net.lins[1], state["lin1.model.1.weight"])
    taps = net.taps(net.scaled(torch.zeros(1, 3, 64, 96)))
    # conv1 (11x11, pad 2) gives 58x90; a blur/2 keeps (n + 1) // 2 + 1; a 3x3/1 max-pool loses 2
    assert [tuple(t.shape[1:]) for t in taps] == [
        (64, 30, 46),
        (192, 15, 23),
        (384, 8, 12),
        (256, 8, 12),
        (256, 8, 12),
    ]
    side = stlpips_alex.MIN_SIDE
    frames = np.zeros((1, side, side, 3), np.uint8)
    assert metrics.stlpips(frames, frames).tolist() == [0.0]  # the smallest side every layer takes
    small = metrics.score(frames[:, 1:, 1:], frames[:, 1:, 1:], metrics=["stlpips"])
    assert (
        small.notes["stlpips"]
        == f"unavailable: ST-LPIPS needs frames of at least {side} px a side, got (20, 20)"
    )


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> str:
    """ST-LPIPS as on a machine without the wheel: the package is not found, no override is set."""
    monkeypatch.delenv(stlpips_alex.ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(stlpips_alex, "PACKAGE", "stlpips_pytorch_not_installed")
    reason = metrics.stlpips_available()
    assert reason is not None
    return reason


def test_without_weights_is_unavailable_with_the_install_command(
    no_weights: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert "pip install --no-deps stlpips-pytorch==0.0.2" in no_weights and "\n" not in no_weights
    frames = np.zeros((1, 40, 40, 3), np.uint8)
    scores = metrics.score(frames, frames, metrics=["psnr", "stlpips"])
    assert "stlpips" not in scores.mean and scores.notes["stlpips"] == f"unavailable: {no_weights}"
    with pytest.raises(MetricError, match="ST-LPIPS unavailable: no ST-LPIPS weights"):
        metrics.stlpips(frames, frames)
    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray(frames[0]).save(image)
    capsys.readouterr()
    assert main(["score", str(image), str(image), "--metrics", "stlpips"]) == 2
    err = capsys.readouterr().err
    assert f"--metrics stlpips cannot be computed here: {no_weights}" in err


def test_override_and_bad_files(no_weights: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    monkeypatch.setenv(stlpips_alex.ENV_WEIGHTS, str(missing))
    assert metrics.stlpips_available() == f"{stlpips_alex.ENV_WEIGHTS}={missing} is not a file"

    frames = np.zeros((1, 40, 40, 3), np.uint8)
    net = stlpips_alex.STLPIPSAlex()
    state = {f"{prefix}.weight": torch.zeros(o, i, k, k) for prefix, i, o, k, _ in stlpips_alex._CONVS}
    state.update({f"{prefix}.bias": torch.zeros(o) for prefix, _, o, _, _ in stlpips_alex._CONVS})
    state.update(
        {f"lin{n}.model.1.weight": torch.rand(1, c, 1, 1) for n, c in enumerate(stlpips_alex.CHANNELS)}
    )
    state.update({"scaling_layer.shift": net.shift.clone(), "scaling_layer.scale": net.scale.clone()})
    for key, channels in stlpips_alex._BLURS:
        state[key] = torch.full((channels, 1, 3, 3), 1 / 9)  # a box filter: another variant
    monkeypatch.setenv(stlpips_alex.ENV_WEIGHTS, str(tmp_path / "box.pth"))
    torch.save(state, tmp_path / "box.pth")
    note = metrics.score(frames, frames, metrics=["stlpips"]).notes["stlpips"]
    assert note.startswith("unavailable:") and "net.slice1.1.filt differs from this network's" in note

    del state["net.slice2.5.weight"]
    torch.save(state, tmp_path / "box.pth")
    with pytest.raises(MetricError, match=r"net.slice2.5.weight should be \(192, 64, 5, 5\), got missing"):
        metrics.stlpips(frames, frames)
    (tmp_path / "box.pth").write_text("not a checkpoint")
    with pytest.raises(MetricError, match="cannot read ST-LPIPS weights"):
        metrics.stlpips(frames, frames)


def test_default_set_records_it(weights: Path, carphone: tuple[np.ndarray, np.ndarray]) -> None:
    assert "stlpips" in metrics.DEFAULT_METRICS and "stlpips" in metrics.METRIC_NAMES
    pristine, distorted = carphone
    scores = metrics.score(pristine, distorted, metrics=["psnr", "stlpips"])
    assert scores.notes["stlpips"] == "AlexNet, vST0.0 shift-tolerant"
    assert scores.mean["stlpips"] == pytest.approx(
        np.mean(REFERENCE["cases"]["carphone_frames_0_2"]["values"])
    )


def _results(folder: Path) -> Path:
    """Two methods' RD points with ST-LPIPS recorded (x265 the better: lower distances)."""
    for method, offset in (("x264", 0.0), ("x265", -0.03)):
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
                    "mean": {"psnr": 25.0 + i, "flip": 0.3 - 0.05 * i, "stlpips": 0.3 - 0.06 * i + offset},
                    "notes": {"stlpips": stlpips_alex.MODEL},
                },
                timings={"decode_s": 0.01},
            )
            store.write_result(folder, record.key, record, b"x" * 10)
    return folder


def test_report_and_check_carry_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = _results(tmp_path / "res")
    assert main(["report", "--results", str(results), "--anchor", "x264", "--metric", "stlpips"]) == 0
    summary = (results / "summary.md").read_text()
    assert "## BD vs x264 (ST-LPIPS)" in summary and "| BD-rate % | BD-ST-LPIPS |" in summary
    assert "| FLIP | ST-LPIPS |" in summary  # the points table's column
    html = (results / "report.html").read_text()
    assert (
        "BD-rate and BD-ST-LPIPS against x264" in html and "a distance, so its sign is flipped first" in html
    )
    assert "FLIP, ST-LPIPS: lower is better" in html
    figures = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)" alt="RD curves', html)
    assert figures and all("ST-LPIPS ↓" in base64.b64decode(f).decode() for f in figures)  # its RD panel
    points = (results / "points.csv").read_text().splitlines()
    assert "stlpips" in points[0].split(",")
    bounds = tmp_path / "t.yaml"
    bounds.write_text(
        "bounds:\n  - {method: x265, sequence: bunny, budget: smoke, max_stlpips: 0.28}\n"
        "claims:\n  - {better: x265, worse: x264, metric: stlpips, min_difference: 0.02,"
        " sequence: bunny, budget: smoke}\n"
    )
    capsys.readouterr()
    assert main(["check", "--results", str(results), "--thresholds", str(bounds)]) == 0
    bounds.write_text("bounds:\n  - {method: x264, sequence: bunny, budget: smoke, max_stlpips: 0.1}\n")
    assert main(["check", "--results", str(results), "--thresholds", str(bounds)]) == 1
    assert "FAIL stlpips" in capsys.readouterr().out
