"""One job: plan -> fit -> encode -> decode (fresh object, bytes only) -> score -> record.

A failed job is recorded with its one-line reason and never raises for a method's fault, so the rest of
the grid goes on. The same function runs in-process, in local worker processes, or on a Slurm cluster.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import bitstream, devices, registry, store
from bench.budgets import Budget, budget_changes, get_budget
from bench.contract import Clip, Context, FitFailed, ProgressBar
from bench.errors import BenchError, MethodError
from bench.identity import JobSpec, PlannedJob
from bench.record import Record

GALLERY_NAMES = ("source.png", "decode.png", "flip.png")
# FLIP and ST-LPIPS cost ~1.3 and ~7 CPU-s a 1080p frame: long clips score them on an even subset
SAMPLED_MAX_FRAMES = 64


def _load_clip(spec: JobSpec, budget: Budget) -> Clip:
    from bench.data import load_sequence, prepare_clip

    return prepare_clip(load_sequence(spec.seq, size=spec.size), budget)


def _tqdm_progress(position: int) -> Callable[[int, str], ProgressBar]:
    from tqdm import tqdm

    class _Bar:
        def __init__(self, total: int, desc: str) -> None:
            self.bar = tqdm(
                total=total,
                desc=desc,
                position=position,
                leave=False,
                dynamic_ncols=True,
                disable=not sys.stderr.isatty(),
            )

        def update(self, n: int = 1, **stats: float) -> None:
            if stats:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()}, refresh=False)
            self.bar.update(n)

        def close(self) -> None:
            self.bar.close()

    return _Bar


def _save_gallery(frames: np.ndarray, decoded: np.ndarray, directory: Path) -> dict[str, Any]:
    """Source, decode and FLIP map of the middle frame, as the paper's figures show them."""
    from PIL import Image

    from bench.metrics import flip_map

    index = len(frames) // 2
    heat, mean = flip_map(frames[index], decoded[index])
    gallery = directory / store.GALLERY
    gallery.mkdir(exist_ok=True)
    for name, image in zip(GALLERY_NAMES, (frames[index], decoded[index], heat), strict=True):
        Image.fromarray(image).save(gallery / name)
    return {"frame": index, "flip_mean": mean}


def _sampled_subset(count: int) -> list[int] | None:
    if count <= SAMPLED_MAX_FRAMES:
        return None
    return sorted({int(i) for i in np.linspace(0, count - 1, SAMPLED_MAX_FRAMES)})


def base_record(spec: JobSpec, key: str, identity: dict[str, Any], status: str) -> Record:
    """The identity part every record of this job carries, finished or not."""
    budget = spec.effective_budget()
    return Record(
        key=key,
        status=status,
        method=spec.method,
        method_version=str(identity["method_version"]),
        seed=spec.seed,
        device=spec.device,
        target_bpp=spec.target_bpp,
        match=str(identity["match"]),
        budget=budget.to_dict(),
        identity=identity,
        sequence={"name": spec.seq, "spec": spec.seq},
        params=dict(spec.params),
        budget_overrides=budget_changes(budget.to_dict(), get_budget(spec.budget)),
    )


def execute_job(spec: JobSpec, key: str, identity: dict[str, Any], position: int = 1) -> dict[str, Any]:
    """Run one job to a published record, or record why it failed. Never raises for a method's fault."""
    from bench import metrics
    from bench.provenance import provenance

    results = Path(spec.results)
    record = base_record(spec, key, identity, "ok")
    workdir = results / "work" / key
    timings: dict[str, float] = {}
    stage = "load"
    try:
        budget = spec.effective_budget()
        cls = registry.get(spec.method)
        devices.make_deterministic(spec.device)
        clip = _load_clip(spec, budget)
        record.sequence = {**dataclasses.asdict(clip.info), "spec": spec.seq}
        time_limit = budget.train_seconds if (spec.match == "time" and cls.trains) else None
        ctx = Context(
            workdir=workdir,
            budget=budget,
            device=spec.device,
            seed=spec.seed,
            time_limit_s=time_limit,
            progress=_tqdm_progress(position),
        )
        method = cls(spec.config())
        stage = "plan"
        t0 = time.perf_counter()
        config = method.plan(clip, spec.target_bpp, budget)
        timings["plan_s"] = time.perf_counter() - t0
        stage = "fit"
        t0 = time.perf_counter()
        state = method.fit(clip.frames, config, ctx)
        timings["fit_s"] = time.perf_counter() - t0
        stage = "encode"
        t0 = time.perf_counter()
        data = method.encode(state)
        timings["encode_s"] = time.perf_counter() - t0
        stats = method.stats(state)
        del state
        stage = "decode"
        decode_ctx = Context(workdir=workdir / "decode", budget=budget, device=spec.device, seed=spec.seed)
        t0 = time.perf_counter()
        decoded = cls().decode(data, clip.info, decode_ctx)
        timings["decode_s"] = time.perf_counter() - t0
        if decoded.dtype != np.uint8 or decoded.shape != clip.frames.shape:
            raise MethodError(
                f"decode returned {decoded.dtype} {decoded.shape}, expected uint8 {clip.frames.shape}"
            )
        stage = "score"
        t0 = time.perf_counter()
        scores = metrics.score(
            clip.frames, decoded, device=spec.device, sampled_frames=_sampled_subset(len(decoded))
        )
        timings["score_s"] = time.perf_counter() - t0
    except MethodError as exc:
        return record_failure(results, record, "skipped" if stage == "plan" else "failed", str(exc), stage)
    except (FitFailed, BenchError) as exc:
        return record_failure(results, record, "failed", str(exc), stage)
    except Exception as exc:  # a bug or an exhausted resource inside a method: record it, let the grid go on
        trace = traceback.format_exc()
        return record_failure(results, record, "failed", crash_reason(exc, stage), stage, trace)

    bpp = 8 * len(data) / clip.info.pixels
    record.config = dataclasses.asdict(config)
    record.bytes = len(data)
    record.bpp = bpp
    record.bpp_deviation = bpp / spec.target_bpp - 1
    record.breakdown_bits = bitstream.breakdown(data)
    record.metrics = scores.to_dict()
    record.stats = stats
    record.timings = timings
    record.decode_fps = clip.info.num_frames / max(timings["decode_s"], 1e-9)
    record.provenance = provenance(spec.device)

    def write_gallery(directory: Path) -> None:
        record.gallery = _save_gallery(clip.frames, decoded, directory)

    store.write_result(results, key, record, data, extra=write_gallery)
    shutil.rmtree(workdir, ignore_errors=True)
    return summarize(record)


def crash_reason(exc: BaseException, stage: str) -> str:
    """One line for an unexpected exception; running out of memory is named as such, with what to do."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in lowered or "can't allocate memory" in lowered:
        return f"out of memory during {stage} ({detail}); give the job more memory or run it with a smaller budget"
    return f"{type(exc).__name__} during {stage}: {text}" if text else f"{type(exc).__name__} during {stage}"


def record_failure(
    results: Path, record: Record, status: str, reason: str, stage: str, trace: str | None = None
) -> dict[str, Any]:
    """Write the failed or skipped attempt (the latest one per key) and return its summary."""
    from bench.provenance import provenance

    failure = Record(
        **{
            f.name: getattr(record, f.name)
            for f in dataclasses.fields(Record)
            if f.name in ("key", "method", "method_version", "seed", "device", "target_bpp", "match")
            or f.name in ("budget", "identity", "sequence", "params", "budget_overrides")
        },
        status=status,
        reason=reason,
        stage=stage,
        traceback=trace,
        provenance=provenance(record.device),
    )
    store.write_failure(results, record.key, failure)
    return summarize(failure)


def lost_job(job: PlannedJob, reason: str) -> dict[str, Any]:
    """A worker that died without reporting (killed, out of memory): record the loss like any failure."""
    record = base_record(job.spec, job.key, job.identity, "failed")
    return record_failure(Path(job.spec.results), record, "failed", reason, "worker")


def summarize(record: Record) -> dict[str, Any]:
    """The one-line summary a job returns to the grid (and the run prints)."""
    return {
        "key": record.key,
        "status": record.status,
        "reason": record.reason,
        "method": record.label,
        "seq": record.seq_name,
        "budget": record.budget_label,
        "target_bpp": record.target_bpp,
        "bpp": record.bpp,
        "psnr": record.mean("psnr"),
        "ms-ssim": record.mean("ms-ssim"),
        "flip": record.mean("flip"),
        "seconds": record.seconds,
    }
