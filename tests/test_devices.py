"""`--device` is checked before anything runs: one line with the cause and the fix, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench import store
from bench.cli import main

SMOKE = ["--budget", "smoke", "--seq", "bunny"]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the jobs would run")


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real x264 stream written by `bench run`."""
    results = tmp_path_factory.mktemp("res")
    assert main(["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", str(results)]) == 0
    (record,) = store.iter_records(results)
    return record.directory / store.STREAM


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("error: ") and "Traceback" not in captured.err
    return line


@no_cuda
def test_run_on_cuda_without_cuda_stops_before_any_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "res"
    assert (
        main(
            [
                "run",
                "--methods",
                "x264",
                "--bpp",
                "0.5",
                *SMOKE,
                "--results",
                str(results),
                "--device",
                "cuda",
            ]
        )
        == 2
    )
    line = _one_error_line(capsys)
    assert "--device cuda" in line and "use --device cpu" in line
    cause = "CPU-only build" if torch.version.cuda is None else "sees no CUDA device"
    assert cause in line
    assert not results.exists()  # nothing ran, nothing was written


@no_cuda
def test_decode_on_cuda_without_cuda_is_one_line(
    stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "frames"
    assert main(["decode", str(stream), "--out", str(out), "--device", "cuda"]) == 2
    line = _one_error_line(capsys)
    assert "--device cuda" in line and "use --device cpu" in line
    assert not out.exists()
    assert main(["decode", str(stream), "--out", str(out), "--device", "cpu"]) == 0  # the fix works
    assert len(list(out.glob("*.png"))) == 4


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_is_named(
    stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str
) -> None:
    assert main(["decode", str(stream), "--out", str(tmp_path / "f"), "--device", device]) == 2
    assert _one_error_line(capsys) == f"error: --device '{device}' is not a device: use cpu, cuda or cuda:N"
