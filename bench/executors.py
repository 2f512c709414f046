"""Where jobs run: in this process, in local worker processes, or on a Slurm cluster via submitit.

Every executor calls the same job function (`bench.job.execute_job`) with the same plain arguments,
so a result does not depend on where it was computed. Each job publishes its own record atomically;
executors only collect the one-line summaries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bench.runconfig import SlurmOptions

Summary = dict[str, Any]


def run_inline(jobs: list, execute: Callable[..., Summary]) -> Iterator[Summary]:
    for job in jobs:
        yield execute(job.spec, job.key, job.identity)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_processes(jobs: list, execute: Callable[..., Summary], workers: int) -> Iterator[Summary]:
    """N local worker processes sharing the cores evenly (threads per worker set deliberately)."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
    )
    try:
        futures = {
            pool.submit(execute, job.spec, job.key, job.identity, 1 + i % workers): job
            for i, job in enumerate(jobs)
        }
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or a run-level error: do not wait hours for the jobs in flight.
        # Their staging directories are swept by the next run, which resumes the grid.
        workers_alive = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers_alive:
            process.terminate()
        raise
    pool.shutdown()


def run_submitit(
    jobs: list,
    execute: Callable[..., Summary],
    cluster: str,
    folder: Path,
    slurm: SlurmOptions,
    lost: Callable[[Any, str], Summary],
) -> Iterator[Summary]:
    """A Slurm job array (cluster='slurm', watched by `bench.cluster`), or submitit's local executor running
    the same job function in local processes."""
    if cluster == "slurm":
        from bench.cluster import run_slurm

        yield from run_slurm(jobs, execute, folder, slurm, lost)
        return
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    executor.update_parameters(timeout_min=slurm.time_min, cpus_per_task=slurm.cpus or 1)
    submitted = executor.map_array(
        execute, [j.spec for j in jobs], [j.key for j in jobs], [j.identity for j in jobs]
    )
    try:
        for job, handle in zip(jobs, submitted, strict=True):
            try:
                yield handle.result()
            except Exception as exc:  # the worker died (killed, out of memory, time limit)
                yield lost(job, f"cluster job failed: {str(exc).strip().splitlines()[-1]}")
    except BaseException:  # interrupted: stop the local workers instead of leaving them running
        for handle in submitted:
            if not handle.done():
                handle.cancel(check=False)
        raise
