"""Running a planned grid: skip what is finished, run the rest on the chosen executor, collect summaries.

A finished key is never recomputed unless forced (a record that no longer verifies is moved aside and its
job rerun); a failed job is recorded with its one-line reason and the rest of the grid goes on. SIGTERM
unwinds like Ctrl-C, so the job in flight leaves nothing half-written and a rerun resumes the grid.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import store
from bench.identity import PlannedJob
from bench.job import execute_job, lost_job, summarize
from bench.runconfig import RunOptions


def run_jobs(
    jobs: list[PlannedJob], options: RunOptions | None = None, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Run every unfinished job of the grid on the chosen executor; one summary per job, in grid order."""
    from tqdm import tqdm

    from bench import executors

    options = options or RunOptions()
    for results in {Path(job.spec.results) for job in jobs}:
        store.sweep_staging(results)
    done: dict[str, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        results = Path(job.spec.results)
        record = None if options.force else store.finished_record(results, job.key)
        if record is not None:
            done[job.key] = {**summarize(record), "status": "cached"}
        elif job.key not in {j.key for j in todo}:
            todo.append(job)
    if done:
        log(f"{len(done)} of {len(jobs)} jobs already finished: skipping them (--force redoes them)")
    if options.executor in ("slurm", "submitit-local"):
        folder = Path(options.results) / "submitit"
        cluster = "slurm" if options.executor == "slurm" else "local"
        stream = executors.run_submitit(todo, execute_job, cluster, folder, options.slurm, lost_job)
    elif options.jobs > 1:
        stream = executors.run_processes(todo, execute_job, options.jobs)
    else:
        stream = executors.run_inline(todo, execute_job)
    bar = tqdm(total=len(todo), desc="jobs", position=0, dynamic_ncols=True, disable=not sys.stderr.isatty())
    for summary in stream:
        if summary["status"] != "ok":
            log(
                f"{summary['status']}: {summary['method']} at {summary['target_bpp']:g} bpp: {summary['reason']}"
            )
        done[summary["key"]] = summary
        bar.update(1)
    bar.close()
    return [done[job.key] for job in jobs if job.key in done]


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (not an `Exception`, so no job records it as its own failure)."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM (a cluster's or a user's `kill`) into `Terminated` while the grid runs, so the job in
    flight removes its staging directory instead of dying with it half-written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
