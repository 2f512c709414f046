"""Slurm for `bench run --executor slurm`: what the cluster offers, what a run asks of it, and a watch over
the submitted jobs that never waits for something Slurm will not start.

submitit writes the sbatch script and runs the job function on the nodes. The watching is done here with
`squeue`, because submitit's own watcher asks `sacct`, which many small clusters lack (accounting off):
it then logs a warning at every poll and never learns that a job was cancelled or killed, so a run would
wait for ever. Here a job that leaves the queue without a result becomes a failed record with Slurm's
state as its reason; a job Slurm will never start (squeue's reason says so) or one pending past
`--max-pending` ends the run with one line naming the reason and the flag to change; Ctrl-C or SIGTERM
cancels every job the run submitted. Requeued (pre-empted) jobs run the same job again, which resumes
from the checkpoint in its work directory (the directory is named by the job's content key).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable

from bench.errors import ClusterError, ConfigError
from bench.runconfig import SlurmOptions
from bench.slurm_units import parse_duration_s, parse_mem_gb, parse_time

__all__ = ["parse_duration_s", "parse_mem_gb", "parse_time"]  # the units, also reached from here

Summary = dict[str, Any]

DEFAULT_CPUS = 4  # CPUs a task when not asked: enough for one job's torch threads, fits most nodes
POLL_S = 1.0  # how often result files are looked for
SQUEUE_EVERY_S = 3.0  # how often squeue is asked (small clusters; grows to 30 s on long runs)
COMMAND_TIMEOUT_S = 30.0
COMPLETED_GRACE_S = 30.0  # a COMPLETED job's result file may lag on a network file system
ENDED_GRACE_S = 3.0

# squeue states of a job that will still run (or is running); anything else has ended
ACTIVE_STATES = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
}
# pending reasons that no amount of waiting changes, and the flags that do
NEVER_STARTS = {
    "PartitionConfig": "--cpus-per-task, --mem or --gpus (or choose another --partition)",
    "PartitionTimeLimit": "--time (or choose another --partition)",
    "PartitionNodeLimit": "--partition",
    "BadConstraints": "--cpus-per-task, --mem or --gpus",
    "InvalidAccount": "--account",
    "InvalidQOS": "--account",
    "AccountNotAllowed": "--account",
    "QOSNotAllowed": "--account or --partition",
}
# Any other reason (Resources, Priority, ReqNodeNotAvail, PartitionDown, ...) can change while the run waits:
# the wait is bounded by --max-pending instead.


# --- what the cluster offers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    """One partition as sinfo shows it; cpus, memory and gpus are the largest node's."""

    name: str
    default: bool
    cpus: int
    mem_mb: int | None
    gpus: int
    max_time_min: int | None  # None = no limit
    up: bool

    def shape(self) -> str:
        gpus = f"{self.gpus} GPUs" if self.gpus else "no GPUs"
        mem = f"{self.mem_mb} MB" if self.mem_mb else "memory unknown"
        return f"nodes of partition '{self.name}' have at most {self.cpus} CPUs, {mem}, {gpus}"


def _command(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)


def unreachable_reason() -> str | None:
    """Why `--executor slurm` cannot run from here (one line), or None when Slurm answers."""
    missing = [tool for tool in ("sbatch", "squeue", "scancel", "sinfo") if shutil.which(tool) is None]
    if missing:
        return (
            f"--executor slurm needs Slurm's commands, and {', '.join(missing)} is not on PATH here: run on the "
            f"cluster's login node (scripts/slurm_up.sh sets up a one-node cluster), or use --executor local"
        )
    try:
        answer = _command(["sinfo", "-h", "-o", "%P"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Slurm does not answer (sinfo: {exc}); check that slurmctld runs, or use --executor local"
    if answer.returncode != 0:
        text = (answer.stderr.strip().splitlines() or ["no message"])[-1]
        return f"Slurm does not answer (sinfo: {text}); check that slurmctld runs, or use --executor local"
    return None


def partitions() -> list[Partition]:
    """The cluster's partitions from sinfo (empty when sinfo cannot be read)."""
    try:
        answer = _command(["sinfo", "-h", "-o", "%P|%c|%m|%G|%l|%a"])
    except (OSError, subprocess.TimeoutExpired):
        return []
    found: dict[str, Partition] = {}
    for line in answer.stdout.splitlines() if answer.returncode == 0 else []:
        fields = line.strip().split("|")
        if len(fields) != 6:
            continue
        name, cpus, mem, gres, limit, avail = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        part = Partition(
            name=name,
            default=default,
            cpus=_leading_int(cpus) or 1,
            mem_mb=_leading_int(mem),
            gpus=_gres_gpus(gres),
            max_time_min=None if limit.strip() in ("infinite", "UNLIMITED", "n/a") else _safe_minutes(limit),
            up=avail.strip() == "up",
        )
        if name in found:  # several node shapes in one partition: keep the largest of each
            old = found[name]
            part = Partition(
                name,
                default or old.default,
                max(part.cpus, old.cpus),
                max(part.mem_mb or 0, old.mem_mb or 0) or None,
                max(part.gpus, old.gpus),
                part.max_time_min,
                part.up or old.up,
            )
        found[name] = part
    return list(found.values())


def _leading_int(text: str) -> int | None:
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else None


def _gres_gpus(gres: str) -> int:
    """GPUs per node from sinfo's %G, e.g. 'gpu:a100:4(S:0-1),shard:8' -> 4; '(null)' -> 0."""
    most = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts and parts[0] == "gpu":
            count = parts[-1] if len(parts) > 1 else "1"
            most = max(most, int(count) if count.isdigit() else 1)
    return most


def _safe_minutes(text: str) -> int | None:
    try:
        return parse_time(text, "--time")
    except ConfigError:
        return None


# --- what a run asks of it ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What every task of the run asks of Slurm, defaults resolved against the partition."""

    partition: Partition | None  # None: sinfo did not say which partition the jobs go to
    partition_name: str | None  # as asked (None = the cluster's default)
    cpus: int
    mem_gb: float | None
    gpus: int
    time_min: int
    account: str | None
    array_parallelism: int
    max_pending_s: float
    timeout_requeues: int

    def submitit_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "timeout_min": self.time_min,
            "cpus_per_task": self.cpus,
            "slurm_array_parallelism": self.array_parallelism,
            "slurm_job_name": "nerv-bench",
        }
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.partition_name:
            params["slurm_partition"] = self.partition_name
        if self.account:
            params["slurm_account"] = self.account
        return params

    def describe(self) -> str:
        where = self.partition_name or (self.partition.name if self.partition else "the default partition")
        mem = f"{self.mem_gb:g} GB" if self.mem_gb is not None else "the partition's default memory"
        gpus = f", {self.gpus} GPU{'s' if self.gpus > 1 else ''}" if self.gpus else ""
        account = f", account {self.account}" if self.account else ""
        return f"partition {where}, {self.cpus} CPUs{gpus}, {mem}, {self.time_min} min a task{account}"


def resolve_request(options: SlurmOptions, device: str, known: list[Partition] | None = None) -> Request:
    """Fill the defaults from the partition the jobs go to: CPUs a task at most what its nodes have
    (sinfo; this machine's count when sinfo says nothing), and a GPU a task when the jobs run on CUDA."""
    for name, value in (("--cpus-per-task", options.cpus), ("--gpus", options.gpus)):
        if value < 0:
            raise ConfigError(f"{name} must be 0 or more, got {value}")
    if options.time_min < 1:
        raise ConfigError(f"--time must be at least one minute, got {options.time_min} min")
    if options.array_parallelism < 1:
        raise ConfigError(f"--slurm-array-parallelism must be at least 1, got {options.array_parallelism}")
    if options.timeout_requeues < 0:
        raise ConfigError(f"slurm timeout_requeues must be 0 or more, got {options.timeout_requeues}")
    if options.max_pending_s < 0:
        raise ConfigError(f"--max-pending must be 0 (no limit) or more, got {options.max_pending_s:g} s")
    known = partitions() if known is None else known
    if options.partition:
        partition = next((p for p in known if p.name == options.partition), None)
    else:
        partition = next((p for p in known if p.default), None)
    node_cpus = partition.cpus if partition else (os.cpu_count() or 1)
    cpus = options.cpus or min(DEFAULT_CPUS, node_cpus)
    gpus = max(options.gpus, 1) if device.startswith("cuda") else options.gpus
    return Request(
        partition=partition,
        partition_name=options.partition,
        cpus=cpus,
        mem_gb=parse_mem_gb(options.mem) if options.mem else None,
        gpus=gpus,
        time_min=options.time_min,
        account=options.account,
        array_parallelism=options.array_parallelism,
        max_pending_s=float(options.max_pending_s),
        timeout_requeues=options.timeout_requeues,
    )


# --- the job as it runs on a node ---------------------------------------------------------------------------


class SlurmTask(Checkpointable):
    """The job function as Slurm runs it: torch threads set to the task's CPUs (Slurm does not pin them
    here, and torch would otherwise start one per core of the node), and checkpointable, so a pre-empted
    or timed-out task is requeued with the same arguments and resumes from its work directory."""

    def __init__(self, execute: Callable[..., Summary]) -> None:
        self.execute = execute

    def __call__(self, spec: Any, key: str, identity: dict[str, Any]) -> Summary:
        cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
        if cpus.isdigit():
            import torch

            torch.set_num_threads(int(cpus))
        return self.execute(spec, key, identity)


# --- submission and watch --------------------------------------------------------------------------------------


@dataclass
class _Queued:
    job: Any  # the runner's PlannedJob
    handle: Any  # submitit's job
    ended_at: float | None = None  # when squeue first showed it ended (or gone) without a result
    state: str = "PENDING"
    reason: str = ""
    never_polls: int = 0  # consecutive polls that showed a reason which never resolves


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet_submitit() -> Iterator[None]:
    """submitit logs a warning for every failed sacct call; this watch does not use sacct at all."""
    logger = logging.getLogger("submitit")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_slurm(
    jobs: list,
    execute: Callable[..., Summary],
    folder: Path,
    options: SlurmOptions,
    lost: Callable[[Any, str], Summary],
) -> Iterator[Summary]:
    """Submit the jobs as one Slurm array and yield each summary as its job ends (in any order)."""
    if not jobs:
        return
    reason = unreachable_reason()
    if reason:
        raise ClusterError(reason)
    request = resolve_request(options, jobs[0].spec.device)
    with _quiet_submitit():
        queued = _submit(jobs, execute, folder, request)
        array = sorted({q.handle.job_id.split("_")[0] for q in queued})
        many = len(queued) > 1
        _say(
            f"submitted {len(queued)} job{'s' if many else ''} to Slurm as {'array' if many else 'job'} "
            f"{', '.join(array)} ({request.describe()}); Ctrl-C cancels {'them' if many else 'it'}"
        )
        try:
            yield from _watch(queued, request, lost)
        except BaseException:
            left = [q for q in queued if not _has_result(q)]
            if left:
                cancel([q.handle.job_id for q in left])
                ids = " ".join(q.handle.job_id for q in left)
                _say(
                    f"cancelled {len(left)} Slurm job{'s' if len(left) > 1 else ''} of this run (scancel {ids})"
                )
            raise


def _submit(jobs: list, execute: Callable[..., Summary], folder: Path, request: Request) -> list[_Queued]:
    import submitit
    from submitit.core.utils import FailedJobError

    # a task reaching --time gets USR2 90 s before it and is requeued (SlurmTask is checkpointable)
    executor = submitit.AutoExecutor(
        folder=str(folder), cluster="slurm", slurm_max_num_timeout=request.timeout_requeues
    )
    executor.update_parameters(**request.submitit_parameters())
    task = SlurmTask(execute)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stderr(
            sink
        ):  # submitit prints sbatch's errors itself; one line is said below
            handles = executor.map_array(
                task, [j.spec for j in jobs], [j.key for j in jobs], [j.identity for j in jobs]
            )
    except (FailedJobError, subprocess.CalledProcessError, OSError) as exc:
        raise ClusterError(refusal_message(str(exc) or sink.getvalue(), request)) from None
    return [_Queued(job, handle) for job, handle in zip(jobs, handles, strict=True)]


def refusal_message(text: str, request: Request) -> str:
    """sbatch's refusal as one line: Slurm's words, what was asked, and the flag to change."""
    errors = []
    for line in text.splitlines():
        line = line.strip()
        if "error:" in line:
            message = line.split("error:", 1)[1].strip()
            message = message.removeprefix("Batch job submission failed:").strip()
            if message and message not in errors:
                errors.append(message)
    said = "; ".join(errors) or (text.strip().splitlines() or ["no message"])[-1]
    lowered = said.lower()
    names = ", ".join(p.name for p in partitions()) or "see sinfo"
    if "partition" in lowered:
        fix = f"change --partition (partitions here: {names})"
    elif "account" in lowered:
        fix = "change --account (sacctmgr show assoc user=$USER lists yours)"
    elif "gres" in lowered or "gpu" in lowered:
        fix = (
            "lower --gpus (--device cuda asks one), choose a --partition with GPUs, or run with --device cpu"
        )
    elif "memory" in lowered:
        fix = "lower --mem"
    elif "time" in lowered:
        fix = "change --time"
    elif "cpu" in lowered or "processor" in lowered:
        fix = "lower --cpus-per-task"
    else:
        fix = "change --cpus-per-task, --mem, --gpus, --time, --partition or --account"
    shape = f" ({request.partition.shape()})" if request.partition else ""
    return f"Slurm refused the jobs: {said}; this run asks {request.describe()}{shape}: {fix}"


def _has_result(q: _Queued) -> bool:
    return bool(q.handle.paths.result_pickle.exists())


def _watch(queued: list[_Queued], request: Request, lost: Callable[[Any, str], Summary]) -> Iterator[Summary]:
    waiting = {q.handle.job_id: q for q in queued}
    started = time.monotonic()
    progress_at = started  # last time a job of this run was seen running or ending
    next_squeue = started
    squeue_failing = False
    while waiting:
        for job_id, q in list(waiting.items()):
            if _has_result(q):
                del waiting[job_id]
                progress_at = time.monotonic()
                yield _collect(q, lost)
        if not waiting:
            return
        now = time.monotonic()
        if now >= next_squeue:
            states = queue_states(list(waiting))
            if states is None:
                if not squeue_failing:
                    _say("squeue does not answer; still waiting for the jobs (Ctrl-C cancels them)")
                squeue_failing = True
            else:
                squeue_failing = False
                for job_id, q in list(waiting.items()):
                    # tasks cancelled before they started are shown as the array's own entry
                    state, reason = states.get(job_id) or states.get(job_id.split("_")[0], ("GONE", ""))
                    q.state, q.reason = state, reason
                    if state in ACTIVE_STATES:
                        q.ended_at = None
                        q.never_polls = q.never_polls + 1 if reason in NEVER_STARTS else 0
                        if state != "PENDING":
                            progress_at = now
                        elif q.never_polls >= 2:  # a first reason right after submission can be transient
                            raise ClusterError(_never_message(q, request))
                        continue
                    q.ended_at = q.ended_at or now
                    grace = COMPLETED_GRACE_S if state == "COMPLETED" else ENDED_GRACE_S
                    if now - q.ended_at >= grace and not _has_result(q):
                        del waiting[job_id]
                        progress_at = now
                        yield lost(q.job, lost_reason(q, request))
                pending = [q for q in waiting.values() if q.state == "PENDING"]
                running = any(q.state != "PENDING" for q in waiting.values())
                limit = request.max_pending_s
                if pending and not running and limit and now - progress_at > limit:
                    raise ClusterError(_stalled_message(pending[0], request, now - progress_at))
            elapsed = now - started
            next_squeue = now + (SQUEUE_EVERY_S if elapsed < 300 else 30.0)
        time.sleep(POLL_S)


def _collect(q: _Queued, lost: Callable[[Any, str], Summary]) -> Summary:
    try:
        return q.handle.result()
    except Exception as exc:  # the job function raised (a full disk, a bug outside a method)
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip() and not ln.startswith("-")]
        tail = next((ln for ln in reversed(lines) if not ln.startswith(("You can check", "or at paths"))), "")
        return lost(q.job, f"Slurm job {q.handle.job_id} failed: {tail or type(exc).__name__}")


def queue_states(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} from squeue for the given array tasks; jobs squeue no longer knows are
    absent; None when squeue itself fails."""
    if not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        answer = _command(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays), "-o", "%i|%T|%r"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if answer.returncode != 0:
        if "invalid job id" in answer.stderr.lower():
            return {}  # every job has left the queue's memory
        return None
    states = {}
    for line in answer.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 3:
            states[fields[0]] = (fields[1].upper(), fields[2])
    return states


def cancel(job_ids: list[str]) -> None:
    """scancel the given jobs (best effort: a job that already ended is no error)."""
    if job_ids:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _command(["scancel", *job_ids])


def _never_message(q: _Queued, request: Request) -> str:
    shape = f" ({request.partition.shape()})" if request.partition else ""
    return (
        f"Slurm will never start these jobs: job {q.handle.job_id} is pending with reason {q.reason}; "
        f"this run asks {request.describe()}{shape}: change {NEVER_STARTS[q.reason]}"
    )


def _stalled_message(q: _Queued, request: Request, waited: float) -> str:
    return (
        f"no job of this run has started for {waited:.0f} s, past --max-pending "
        f"({request.max_pending_s:g} s): job {q.handle.job_id} is pending with reason {q.reason or 'unknown'}; "
        f"raise --max-pending, or ask for less ({request.describe()}) or another --partition; "
        f"finished jobs are kept, rerun to resume"
    )


def lost_reason(q: _Queued, request: Request) -> str:
    """One line for a job that ended without a result: Slurm's state and what to do about it."""
    job_id, state = q.handle.job_id, q.state
    if state == "CANCELLED":
        return f"Slurm job {job_id} was cancelled before it finished (scancel); rerun the same command to redo it"
    if state == "TIMEOUT":
        return f"Slurm job {job_id} reached its time limit ({request.time_min} min); raise --time and rerun"
    if state == "OUT_OF_MEMORY":
        return f"Slurm job {job_id} ran out of memory; raise --mem and rerun"
    if state in ("NODE_FAIL", "BOOT_FAIL"):
        return f"Slurm job {job_id} lost its node ({state}); rerun the same command to redo it"
    if state == "PREEMPTED":
        return f"Slurm job {job_id} was pre-empted and not requeued; rerun the same command to redo it"
    if state == "GONE":
        return f"Slurm job {job_id} left the queue without a result; rerun the same command to redo it"
    tail = _stderr_tail(q.handle)
    detail = f": {tail}" if tail else ""
    return f"Slurm job {job_id} ended {state} without a result{detail} (log {q.handle.paths.stderr})"


def _stderr_tail(handle: Any) -> str:
    """The last line of a job's stderr that is not submitit's own logging."""
    try:
        lines = Path(handle.paths.stderr).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        text = line.strip()
        if text and not text.startswith(("submitit ", "srun: ")):
            return text[:200]
    return ""
