"""The grid runner: records, resume after SIGKILL, concurrent runs, executors, exports, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import store
from bench.cli import main

SMOKE = ["--budget", "smoke", "--seq", "bunny"]


def _bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.cli", *args]


def _records(results: Path) -> dict[str, dict]:
    return {r.key: r for r in store.iter_records(results)}


def test_single_job_writes_a_complete_record(tmp_path: Path) -> None:
    results = tmp_path / "res"
    assert main(["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", str(results)]) == 0
    (record,) = _records(results).values()
    job = Path(record.directory)
    data = (job / store.STREAM).read_bytes()
    assert record.status == "ok" and record.bytes == len(data)
    assert record.bpp == pytest.approx(8 * len(data) / (4 * 72 * 128))
    assert sum(record.breakdown_bits.values()) == 8 * len(data)
    assert set(record.metrics["mean"]) >= {"psnr", "ms-ssim", "flip"}
    assert len(record.metrics["per_frame"]["psnr"]) == 4
    note = record.metrics["notes"]["stlpips"]  # recorded by default, or the reason it could not be
    if "stlpips" in record.metrics["mean"]:
        assert note == "AlexNet, vST0.0 shift-tolerant" and len(record.metrics["per_frame"]["stlpips"]) == 4
    else:
        assert note.startswith("unavailable:")
    assert set(record.timings) == {"plan_s", "fit_s", "encode_s", "decode_s", "score_s"}
    assert record.provenance["versions"]["torch"]
    assert all((job / store.GALLERY / name).is_file() for name in ("source.png", "decode.png", "flip.png"))


def test_rerun_skips_finished_and_force_redoes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = str(tmp_path / "res")
    args = ["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", results]
    assert main(args) == 0
    first = _records(Path(results))
    capsys.readouterr()
    assert main(args) == 0
    assert "1 of 1 jobs already finished" in capsys.readouterr().out
    assert _records(Path(results)).keys() == first.keys()
    assert main([*args, "--force"]) == 0
    (again,) = _records(Path(results)).values()
    assert again.provenance["time_utc"] >= next(iter(first.values())).provenance["time_utc"]


def test_sigkill_mid_grid_then_rerun_loses_and_recomputes_nothing(tmp_path: Path) -> None:
    results = tmp_path / "res"
    cmd = _bench(
        "run", "--methods", "x264,x265", "--bpp", "0.3,0.5,0.8,1.2", *SMOKE, "--results", str(results)
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(store.jobs_dir(results).glob(f"[!.]*/{store.RECORD}"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {
        key: os.stat(Path(r.directory) / store.RECORD).st_mtime_ns for key, r in _records(results).items()
    }
    assert 2 <= len(before) < 8, "kill should land mid-grid"
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert f"{len(before)} of 8 jobs already finished" in out
    after = _records(results)
    assert len(after) == 8
    for key, mtime in before.items():  # finished records untouched
        assert os.stat(Path(after[key].directory) / store.RECORD).st_mtime_ns == mtime
    # The killed job's staging directory was swept by the rerun; nothing half-written remains.
    assert [p.name for p in store.jobs_dir(results).iterdir() if p.name.startswith(".")] == []


def test_two_concurrent_runs_lose_and_corrupt_nothing(tmp_path: Path) -> None:
    results = tmp_path / "res"
    cmd = _bench("run", "--methods", "x264,x265", "--bpp", "0.4,0.8", *SMOKE, "--results", str(results))
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()
    records = _records(results)
    assert len(records) == 4
    for record in records.values():
        data = (Path(record.directory) / store.STREAM).read_bytes()
        assert len(data) == record.bytes
    assert [p.name for p in store.jobs_dir(results).iterdir() if p.name.startswith(".tmp")] == []


def test_submitit_local_executor_runs_the_same_job_function(tmp_path: Path) -> None:
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
                "--executor",
                "submitit-local",
            ]
        )
        == 0
    )
    (record,) = _records(results).values()
    assert record.status == "ok"
    assert (results / "submitit").is_dir()


def test_local_worker_processes(tmp_path: Path) -> None:
    results = tmp_path / "res"
    assert (
        main(
            [
                "run",
                "--methods",
                "x264,x265",
                "--bpp",
                "0.5",
                *SMOKE,
                "--results",
                str(results),
                "--jobs",
                "2",
            ]
        )
        == 0
    )
    assert {r.method for r in _records(results).values()} == {"x264", "x265"}


def test_failed_job_is_recorded_and_grid_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "res"
    # 0.001 bpp is out of x264's reach on 4 tiny frames: skipped with its reason; 0.5 still runs.
    code = main(["run", "--methods", "x264", "--bpp", "0.001,0.5", *SMOKE, "--results", str(results)])
    out = capsys.readouterr().out
    assert code == 0
    assert "skipped: x264 at 0.001 bpp: x264 cannot reach 0.001 bpp" in out
    assert len(_records(results)) == 1
    (failure,) = [json.loads(p.read_text()) for p in store.failed_dir(results).glob("*.json")]
    assert failure["status"] == "skipped" and "cannot reach" in failure["reason"]


def test_dry_run_and_repeats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "run",
                "--methods",
                "x264",
                "--bpp",
                "0.5,1",
                "--repeats",
                "3",
                *SMOKE,
                "--results",
                str(tmp_path),
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "6 jobs, 6 to run" in out and out.count("[to run, ~") == 6


def test_config_file_and_flags_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("methods: [x264, x265]\nbpp: [0.5]\nbudget: smoke\nrepeats: 2\n")
    assert (
        main(["run", "--config", str(config), "--methods", "x264", "--results", str(tmp_path), "--dry-run"])
        == 0
    )
    assert "2 jobs" in capsys.readouterr().out
    config.write_text("methods: x264\nbogus: 1\n")
    assert main(["run", "--config", str(config), "--dry-run"]) == 2
    assert "unknown run option 'bogus'" in capsys.readouterr().err
    config.write_text("repeats: many\n")
    assert main(["run", "--config", str(config), "--dry-run"]) == 2
    assert "config key 'repeats' must be int" in capsys.readouterr().err


def test_missing_uvg_sequence_explains_the_fetch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "cache"))
    assert main(["run", "--seq", "Jockey", "--results", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert "bench fetch Jockey" in err and str(tmp_path / "cache") in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_unknown_method_and_sequence_suggest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--methods", "x246x", "--dry-run"]) == 2
    assert main(["run", "--seq", "bunnny", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" in err and "'bunny'" in err


def test_results_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "res"
    assert main(["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", str(results)]) == 0
    capsys.readouterr()
    assert main(["results", "--results", str(results), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["method"] == "x264" and rows[0]["psnr"] > 20
    assert (
        main(
            [
                "results",
                "--results",
                str(results),
                "--format",
                "parquet",
                "--out",
                str(tmp_path / "r.parquet"),
            ]
        )
        == 0
    )
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "r.parquet")) == 1


def test_decode_command_writes_frames_and_video(tmp_path: Path) -> None:
    results = tmp_path / "res"
    assert main(["run", "--methods", "x265", "--bpp", "0.5", *SMOKE, "--results", str(results)]) == 0
    (record,) = _records(results).values()
    stream = str(Path(record.directory) / store.STREAM)
    assert main(["decode", stream, "--out", str(tmp_path / "frames")]) == 0
    assert len(list((tmp_path / "frames").glob("*.png"))) == 4
    assert main(["decode", stream, "--out", str(tmp_path / "clip.mp4")]) == 0
    assert (tmp_path / "clip.mp4").stat().st_size > 0
