"""`bench run --executor slurm` against a real Slurm (scripts/slurm_up.sh brings up a one-node cluster).

Skipped, with the reason, where no Slurm answers; `.ci/run` brings one up first and sets
BENCH_REQUIRE_SLURM=1, so there an unreachable Slurm fails the run instead of skipping it. Every test uses
codecs at the smoke budget (seconds a job) except the pre-emption test, which needs a method that trains.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import cluster, store
from bench.cli import main

SMOKE = ["--budget", "smoke", "--seq", "bunny", "--executor", "slurm"]
ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")


@pytest.fixture(scope="module")
def slurm() -> list[cluster.Partition]:
    """The cluster's partitions; skips (or fails, under BENCH_REQUIRE_SLURM) when Slurm does not answer."""
    reason = cluster.unreachable_reason()
    if reason is None and not any(p.up for p in cluster.partitions()):
        reason = "Slurm answers but has no partition that is up"
    if reason is not None:
        if os.environ.get("BENCH_REQUIRE_SLURM"):
            pytest.fail(f"BENCH_REQUIRE_SLURM is set but {reason}")
        pytest.skip(f"no Slurm here: {reason}")
    return cluster.partitions()


def _bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.cli", *args]


def _records(results: Path) -> dict[str, dict]:
    return {r.key: r for r in store.iter_records(results)}


def _squeue(array: str) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-j", array, "-o", "%i|%T"], capture_output=True, text=True
    ).stdout
    return dict(line.split("|", 1) for line in out.split())


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _array_of(proc: subprocess.Popen, log: Path) -> str:
    """The Slurm job id a `bench run` started in the background announced on stderr."""

    def announced() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"bench run ended early: {log.read_text()}")
        match = re.search(r"submitted \d+ jobs? to Slurm as (?:array|job) (\d+)", log.read_text())
        return match.group(1) if match else None

    return _wait_for(announced, 60, "the submission")


def _running_task(array: str) -> str | None:
    return next((job for job, state in _squeue(array).items() if state == "RUNNING"), None)


def _running_unrecorded(array: str, among: list[str], keys: list[str], results: Path) -> str | None:
    """A task of the array that runs one of the jobs `among` and has not yet written its record."""
    for job, state in _squeue(array).items():
        index = int(job.split("_")[1]) if "_" in job else 0
        key = keys[index]
        if state == "RUNNING" and key in among and not store.is_finished(results, key):
            return job
    return None


def _no_job_left(array: str) -> bool:
    return not any(state in ACTIVE for state in _squeue(array).values())


SLOW_PLUGIN = """
import time

from methods.x264 import X264


class X264Slow(X264):
    '''x264 that waits before it codes: a job still running when the test cancels it.'''

    name = "x264-slow"
    version = "1-slow"

    def fit(self, frames, config, ctx):
        time.sleep(20)
        return super().fit(frames, config, ctx)
"""


def _plugin_for_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str) -> None:
    """`source` as a plugin module the Slurm jobs find too: they inherit PYTHONPATH and BENCH_PLUGINS."""
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("BENCH_PLUGINS", module)


@pytest.fixture
def slow_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _plugin_for_slurm(tmp_path, monkeypatch, "slow_methods", SLOW_PLUGIN)


def test_grid_survives_scancel_of_a_running_job_and_a_rerun_loses_nothing(
    slurm, slow_method, tmp_path: Path
) -> None:
    results = tmp_path / "res"
    args = ["run", "--methods", "x264,x264-slow", "--bpp", "0.3,0.8", *SMOKE, "--results", str(results)]
    log = tmp_path / "run.log"
    dry = subprocess.run(_bench(*args, "--dry-run"), capture_output=True, text=True, check=True).stdout
    lines = dry.splitlines()[:-1]
    keys = [line.split()[0] for line in lines]  # array task i runs the grid's job i
    slow = [key for key in keys if key.startswith("x264-slow-")]
    assert len(slow) == 2, dry
    started = time.time()
    with log.open("w") as out:
        proc = subprocess.Popen(_bench(*args, "--slurm-array-parallelism", "1"), stdout=out, stderr=out)
    array = _array_of(proc, log)
    # one job finished, a slow one running (it waits 20 s before it codes) and not yet recorded: cancel it
    _wait_for(lambda: len(_records(results)) >= 1, 120, "the first record")
    victim = _wait_for(lambda: _running_unrecorded(array, slow, keys, results), 120, "a slow job running")
    subprocess.run(["scancel", victim], check=True)
    assert proc.wait(timeout=300) == 1, log.read_text()  # a failed job: exit 1, the grid went on
    text = log.read_text()
    assert f"Slurm job {victim} was cancelled before it finished (scancel)" in text
    assert "sacct" not in text and "Bypassing" not in text  # no accounting here, and no warning about it
    before = _records(results)
    assert len(before) == 3
    (failure,) = (store.read_record(p) for p in store.failed_dir(results).glob("*.json"))
    assert failure.status == "failed" and "\n" not in failure.reason and victim in failure.reason
    mtimes = {key: os.stat(r.directory / store.RECORD).st_mtime_ns for key, r in before.items()}

    again = subprocess.run(_bench(*args), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "3 of 4 jobs already finished" in again.stdout
    after = _records(results)
    assert len(after) == 4 and failure.key in after
    assert all(os.stat(after[k].directory / store.RECORD).st_mtime_ns == m for k, m in mtimes.items())
    assert list(store.failed_dir(results).glob("*.json")) == []  # the redone job replaced its failure
    print(f"slurm grid with scancel and resume: {time.time() - started:.1f} s")


@pytest.mark.parametrize(
    "sig, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_interrupt_cancels_every_job_of_the_run(
    slurm, tmp_path: Path, sig: signal.Signals, code: int, name: str
) -> None:
    results = tmp_path / "res"
    log = tmp_path / "run.log"
    args = ["run", "--methods", "x264", "--bpp", "0.3,0.5,0.8", *SMOKE, "--results", str(results)]
    with log.open("w") as out:
        # a shell that started the tests in the background ignores SIGINT, and its children inherit that:
        # the run under test gets the default disposition, as a terminal's foreground job has
        proc = subprocess.Popen(
            _bench(*args, "--slurm-array-parallelism", "1"),
            stdout=out,
            stderr=out,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    array = _array_of(proc, log)
    _wait_for(lambda: _running_task(array), 60, "a running job")
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == code, log.read_text()
    text = log.read_text()
    assert re.search(rf"cancelled \d Slurm jobs? of this run \(scancel {array}_", text), text
    assert f"stopped by {name}: finished jobs are kept" in text and "rerun the same command to resume" in text
    assert "Traceback" not in text
    _wait_for(lambda: _no_job_left(array), 30, "the cancelled jobs to leave the queue")


def test_unsatisfiable_request_ends_with_slurms_reason(
    slurm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    too_many = max(p.cpus for p in slurm) + 62
    args = ["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", str(tmp_path / "res")]
    started = time.time()
    assert main([*args, "--cpus-per-task", str(too_many)]) == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "Slurm will never start these jobs" in line and "reason PartitionConfig" in line
    assert f"{too_many} CPUs" in line and "--cpus-per-task" in line
    assert time.time() - started < 60  # no wait for the pending limit
    array = re.search(r"as job (\d+)", err).group(1)
    _wait_for(lambda: _no_job_left(array), 30, "the refused job to be cancelled")

    assert main([*args, "--partition", "no-such-partition"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: Slurm refused the jobs: invalid partition specified: no-such-partition")
    assert "change --partition (partitions here: " in line


@pytest.fixture
def short_partition(slurm) -> Iterator[str]:
    """A partition of this cluster's nodes whose time limit is one minute (made with scontrol; admin only)."""
    name = "bench-short"
    nodes = subprocess.run(["sinfo", "-h", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
    made = subprocess.run(
        ["scontrol", "create", f"PartitionName={name}", f"Nodes={nodes}", "MaxTime=1", "State=UP"],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot create a partition here: {made.stderr.strip()}")
    yield name
    subprocess.run(["scontrol", "delete", f"PartitionName={name}"], check=False)


def test_time_beyond_the_partition_limit_names_time(
    short_partition: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", str(tmp_path / "res")]
    assert main([*args, "--partition", short_partition, "--time", "0:10:00"]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert "pending with reason PartitionTimeLimit" in line and "10 min a task" in line
    assert line.endswith("change --time (or choose another --partition)")


def test_cuda_on_a_partition_without_gpus_asks_for_one_and_is_refused(
    slurm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default = next((p for p in slurm if p.default), None)
    if default is None or default.gpus:
        pytest.skip("the default partition has GPUs: a CUDA job would run there")
    args = ["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", str(tmp_path / "res")]
    assert main([*args, "--device", "cuda"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "Slurm refused the jobs" in line and "1 GPU" in line and "--device cpu" in line


def test_pending_past_max_pending_ends_the_run(
    slurm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default = next((p for p in slurm if p.default), None)
    nodes = subprocess.run(["sinfo", "-h", "-o", "%D", "-p", default.name], capture_output=True, text=True)
    if default is None or nodes.stdout.strip() != "1":
        pytest.skip("filling the cluster to make a job wait needs a default partition of one node")
    blocker = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--output=/dev/null",
            f"--cpus-per-task={default.cpus}",
            "--time=5",
            "--wrap",
            "sleep 120",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        _wait_for(lambda: _squeue(blocker).get(blocker) == "RUNNING", 60, "the job filling the node")
        args = ["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", str(tmp_path / "res")]
        started = time.time()
        assert main([*args, "--max-pending", "5s"]) == 2
        waited = time.time() - started
    finally:
        subprocess.run(["scancel", blocker], check=False)
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "past --max-pending (5 s)" in line and re.search(r"pending with reason (Resources|Priority)", line)
    assert "finished jobs are kept, rerun to resume" in line
    assert 5 <= waited < 40
    array = re.search(r"as job (\d+)", err).group(1)
    _wait_for(lambda: _no_job_left(array), 30, "the waiting job to be cancelled")


LONG_PLUGIN = """
from methods.nerv_dense import NeRVDense, NeRVDenseConfig


class NervLong(NeRVDense):
    '''nerv-dense trained long enough at the smoke budget (5 s checkpoints) to be pre-empted mid-fit.'''

    name = "nerv-long"
    version = "1-long"

    @classmethod
    def default_config(cls):
        return NeRVDenseConfig(epochs=1500)  # long enough that a quiet machine is still training at the requeue
"""


@pytest.fixture
def long_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _plugin_for_slurm(tmp_path, monkeypatch, "long_methods", LONG_PLUGIN)


def test_requeued_job_resumes_from_its_checkpoint(slurm, long_method, tmp_path: Path) -> None:
    results = tmp_path / "res"
    log = tmp_path / "run.log"
    args = ["run", "--methods", "nerv-long", "--bpp", "0.5", *SMOKE, "--results", str(results)]
    with log.open("w") as out:
        proc = subprocess.Popen(_bench(*args), stdout=out, stderr=out)
    job = _array_of(proc, log)
    checkpoint = _wait_for(
        lambda: next((results / "work").glob("*/checkpoint.pt"), None), 120, "the first training checkpoint"
    )
    # what Slurm does to a pre-empted job (PreemptMode=REQUEUE): kill it and queue it again
    requeue = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if requeue.returncode != 0:
        proc.kill()
        subprocess.run(["scancel", job], check=False)
        pytest.skip(f"cannot requeue a job here: {requeue.stderr.strip()}")
    _wait_for(lambda: _squeue(job).get(job) == "PENDING", 60, "the requeued job to wait again")
    # Slurm holds a requeued job back for two minutes (BeginTime); an operator may release it at once
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)
    assert proc.wait(timeout=300) == 0, log.read_text()
    (record,) = _records(results).values()
    assert record.status == "ok"
    assert record.key == checkpoint.parent.name  # the requeued job found its own work directory...
    assert record.stats["resumed_from_step"] > 0  # ...and trained on from its checkpoint
    assert record.stats["steps"] == 1500 * 2  # 4 frames in batches of 2: no step lost or repeated
    assert not checkpoint.parent.exists()  # the work directory goes once the record is published
