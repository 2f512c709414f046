"""The Slurm side that needs no cluster: flag parsing, defaults fitted to the partition, and the one-line
errors when Slurm is missing. The real cluster is exercised in tests/test_slurm.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cluster
from bench.cli import main
from bench.errors import ConfigError
from bench.runconfig import SlurmOptions

TWO_CPUS = cluster.Partition("debug", True, 2, 21694, 0, None, True)
BIG = cluster.Partition("gpu", False, 64, 512000, 8, 2880, True)


@pytest.mark.parametrize(
    "text, minutes",
    [("240", 240), ("90:30", 91), ("4:00:00", 240), ("1-00:00:00", 1440), ("2-12", 3600), ("1-0:30", 1470)],
)
def test_slurm_time_formats(text: str, minutes: int) -> None:
    assert cluster.parse_time(text) == minutes


@pytest.mark.parametrize("text", ["", "xx", "4h", "1:2:3:4", "-5"])
def test_bad_time_is_one_line_naming_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--time '.*' is not a duration: give minutes"):
        cluster.parse_time(text)


def test_mem_and_pending_durations() -> None:
    assert cluster.parse_mem_gb("16G") == 16 and cluster.parse_mem_gb("512M") == 0.5
    assert cluster.parse_mem_gb("1T") == 1024 and cluster.parse_mem_gb("2048") == 2  # bare: megabytes
    assert cluster.parse_duration_s("90s", "--max-pending") == 90
    assert cluster.parse_duration_s("12h", "--max-pending") == 12 * 3600
    assert cluster.parse_duration_s("0", "--max-pending") == 0
    assert cluster.parse_duration_s("1:00:00", "--max-pending") == 3600
    for bad in ("12Q", "0", "-1G"):
        with pytest.raises(ConfigError, match="is not a memory size"):
            cluster.parse_mem_gb(bad)
    with pytest.raises(ConfigError, match="--max-pending 'soon' is not a duration"):
        cluster.parse_duration_s("soon", "--max-pending")


def test_defaults_fit_the_partition_they_go_to() -> None:
    parts = [TWO_CPUS, BIG]
    small = cluster.resolve_request(SlurmOptions(), "cpu", parts)
    assert (small.cpus, small.gpus, small.partition) == (2, 0, TWO_CPUS)  # min(4, the node's 2)
    big = cluster.resolve_request(SlurmOptions(partition="gpu"), "cpu", parts)
    assert big.cpus == 4 and big.partition == BIG
    asked = cluster.resolve_request(SlurmOptions(cpus=16, gpus=2, mem="64G", time_min=30), "cpu", parts)
    assert (asked.cpus, asked.gpus, asked.mem_gb, asked.time_min) == (16, 2, 64, 30)  # asked is asked
    cuda = cluster.resolve_request(SlurmOptions(partition="gpu"), "cuda", parts)
    assert cuda.gpus == 1 and cuda.submitit_parameters()["gpus_per_node"] == 1
    assert "gpus_per_node" not in small.submitit_parameters()
    unknown = cluster.resolve_request(SlurmOptions(partition="elsewhere"), "cpu", [])
    assert unknown.partition is None and 1 <= unknown.cpus <= 4  # this machine's cores, at most 4


@pytest.mark.parametrize(
    "options, message",
    [
        (SlurmOptions(cpus=-1), "--cpus-per-task must be 0 or more"),
        (SlurmOptions(time_min=0), "--time must be at least one minute"),
        (SlurmOptions(array_parallelism=0), "--slurm-array-parallelism must be at least 1"),
        (SlurmOptions(max_pending_s=-5), "--max-pending must be 0"),
    ],
)
def test_impossible_options_are_refused(options: SlurmOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cluster.resolve_request(options, "cpu", [TWO_CPUS])


def test_gres_counts() -> None:
    assert cluster._gres_gpus("(null)") == 0
    assert cluster._gres_gpus("gpu:4") == 4
    assert cluster._gres_gpus("gpu:a100:8(S:0-1),shard:16") == 8


def test_refusals_name_the_flag_to_change() -> None:
    request = cluster.resolve_request(SlurmOptions(mem="900G"), "cpu", [TWO_CPUS])
    said = (
        "sbatch: error: Memory specification can not be satisfied\n"
        "sbatch: error: Batch job submission failed: Requested node configuration is not available"
    )
    line = cluster.refusal_message(said, request)
    assert "\n" not in line and line.startswith("Slurm refused the jobs: Memory specification can not be")
    assert "900 GB" in line and "21694 MB" in line and line.endswith("lower --mem")


def test_executor_slurm_without_slurm_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil
    import sys

    bare = tmp_path / "bin"  # a PATH holding only python: no Slurm commands
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bare))
    assert shutil.which("sbatch") is None
    results = tmp_path / "res"
    args = ["run", "--methods", "x264", "--bpp", "0.5", "--budget", "smoke", "--executor", "slurm"]
    assert main([*args, "--results", str(results)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "error: --executor slurm needs Slurm's commands, and sbatch, squeue, scancel, sinfo"
    )
    assert "use --executor local" in line
    assert not (results / "jobs").exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--time", "soon", "--time 'soon' is not a duration"),
        ("--mem", "12Q", "--mem '12Q' is not a memory size"),
        ("--max-pending", "later", "--max-pending 'later' is not a duration"),
    ],
)
def test_bad_resource_flags_stop_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    args = ["run", "--methods", "x264", "--bpp", "0.5", "--budget", "smoke", "--executor", "slurm"]
    assert main([*args, "--results", str(tmp_path / "res"), flag, value]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {message}")
    assert not (tmp_path / "res").exists()
