"""The job grid: plan -> fit -> encode -> decode (fresh object, bytes only) -> score -> record.

A job is identified by a content key (method, version, hyper-parameters, sequence checksum and frame
range, budget, seed, matching protocol, metric definitions). A finished key is never recomputed unless
forced; a failed job is recorded with its one-line reason and the rest of the grid goes on. The same job
function runs in-process, in local worker processes, or on a Slurm cluster through submitit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import bitstream, registry, store
from bench.budgets import Budget, get_budget
from bench.contract import Clip, Context, FitFailed, ProgressBar, SeqInfo
from bench.errors import BenchError, BitstreamError, ConfigError, MethodError
from bench.runconfig import RunOptions, resolve_options

GALLERY_NAMES = ("source.png", "decode.png", "flip.png")
FLIP_MAX_FRAMES = 64  # FLIP costs ~1.3 s per 1080p frame: long clips are scored on an even subset
MAX_DECODE_SIDE = 16_384
MAX_DECODE_PIXELS = 1 << 31  # 2.1 G pixels (6 GB of frames); UVG's longest sequence has 1.2 G


@dataclass(frozen=True)
class JobSpec:
    """Everything that identifies one job; plain data so it pickles to worker processes and clusters."""

    method: str
    seq: str
    target_bpp: float
    budget: str
    seed: int = 0
    device: str = "cpu"
    match: str = "epochs"  # "epochs": every method gets the budget's epochs; "time": the same seconds
    size: tuple[int, int] | None = None  # (width, height) of a raw .yuv input
    results: str = "results"

    def describe(self) -> str:
        return f"{self.method} on {self.seq} at {self.target_bpp:g} bpp ({self.budget}, seed {self.seed})"


# --- identity ---------------------------------------------------------------------------------------------


def job_identity(spec: JobSpec, seq_checksum: str) -> dict[str, Any]:
    """The content a job's result depends on; its hash is the job key."""
    from bench.metrics import METRICS_VERSION

    cls = registry.get(spec.method)
    budget = get_budget(spec.budget)
    return {
        "method": spec.method,
        "method_version": cls.version,
        "hyper": dataclasses.asdict(cls.default_config()),
        "sequence_checksum": seq_checksum,
        "frames": {"start": budget.start, "count": budget.frames, "step": budget.step, "size": budget.size},
        "budget": {
            k: v for k, v in budget.to_dict().items() if k != "bpp_ladder"
        },  # the ladder picks jobs, not results
        "target_bpp": spec.target_bpp,
        "seed": spec.seed,
        "match": spec.match if cls.trains else "n/a",
        "metrics_version": METRICS_VERSION,
    }


def job_key(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    return f"{identity['method']}-{hashlib.sha256(blob).hexdigest()[:16]}"


# --- one job ------------------------------------------------------------------------------------------------


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


def _flip_subset(count: int) -> list[int] | None:
    if count <= FLIP_MAX_FRAMES:
        return None
    return sorted({int(i) for i in np.linspace(0, count - 1, FLIP_MAX_FRAMES)})


def execute_job(spec: JobSpec, key: str, identity: dict[str, Any], position: int = 1) -> dict[str, Any]:
    """Run one job to a published record, or record why it failed. Never raises for a method's fault."""
    from bench import metrics
    from bench.provenance import provenance

    results = Path(spec.results)
    budget = get_budget(spec.budget)
    cls = registry.get(spec.method)
    base = {
        "key": key,
        "method": spec.method,
        "method_version": cls.version,
        "seed": spec.seed,
        "device": spec.device,
        "target_bpp": spec.target_bpp,
        "match": identity["match"],
        "budget": budget.to_dict(),
        "identity": identity,
    }
    workdir = results / "work" / key
    timings: dict[str, float] = {}
    stage = "load"
    try:
        clip = _load_clip(spec, budget)
        base["sequence"] = {**dataclasses.asdict(clip.info), "spec": spec.seq}
        time_limit = budget.train_seconds if (spec.match == "time" and cls.trains) else None
        ctx = Context(
            workdir=workdir,
            budget=budget,
            device=spec.device,
            seed=spec.seed,
            time_limit_s=time_limit,
            progress=_tqdm_progress(position),
        )
        method = cls()
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
            clip.frames, decoded, device=spec.device, flip_frames=_flip_subset(len(decoded))
        )
        timings["score_s"] = time.perf_counter() - t0
    except MethodError as exc:
        return _record_failure(
            results, key, base, "skipped" if stage == "plan" else "failed", str(exc), stage
        )
    except FitFailed as exc:
        return _record_failure(results, key, base, "failed", str(exc), stage)
    except BenchError as exc:
        return _record_failure(results, key, base, "failed", str(exc), stage)
    except Exception as exc:  # a bug or an exhausted resource inside a method: record it, let the grid go on
        return _record_failure(
            results, key, base, "failed", crash_reason(exc, stage), stage, traceback.format_exc()
        )

    bits = bitstream.breakdown(data)
    bpp = 8 * len(data) / clip.info.pixels
    record = {
        **base,
        "status": "ok",
        "reason": None,
        "config": dataclasses.asdict(config),
        "bytes": len(data),
        "bpp": bpp,
        "bpp_deviation": bpp / spec.target_bpp - 1,
        "breakdown_bits": bits,
        "metrics": scores.to_dict(),
        "stats": stats,
        "timings": timings,
        "provenance": provenance(spec.device),
    }

    def write_gallery(directory: Path) -> None:
        record["gallery"] = _save_gallery(clip.frames, decoded, directory)

    store.write_result(results, key, record, data, extra=write_gallery)
    shutil.rmtree(workdir, ignore_errors=True)
    return _summary(record)


def crash_reason(exc: BaseException, stage: str) -> str:
    """One line for an unexpected exception; running out of memory is named as such, with what to do."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in lowered or "can't allocate memory" in lowered:
        return f"out of memory during {stage} ({detail}); give the job more memory or run it with a smaller budget"
    return f"{type(exc).__name__} during {stage}: {text}" if text else f"{type(exc).__name__} during {stage}"


def _record_failure(
    results: Path,
    key: str,
    base: dict[str, Any],
    status: str,
    reason: str,
    stage: str,
    trace: str | None = None,
) -> dict[str, Any]:
    from bench.provenance import provenance

    record = {
        **base,
        "status": status,
        "reason": reason,
        "stage": stage,
        "traceback": trace,
        "provenance": provenance(base["device"]),
    }
    store.write_failure(results, key, record)
    return _summary(record)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    mean = record.get("metrics", {}).get("mean", {})
    return {
        "key": record["key"],
        "status": record["status"],
        "reason": record.get("reason"),
        "method": record["method"],
        "seq": record.get("sequence", {}).get("name", "?"),
        "target_bpp": record["target_bpp"],
        "bpp": record.get("bpp"),
        "psnr": mean.get("psnr"),
        "ms-ssim": mean.get("ms-ssim"),
        "flip": mean.get("flip"),
        "seconds": sum(record.get("timings", {}).values()) if record.get("timings") else None,
    }


# --- the grid ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedJob:
    spec: JobSpec
    key: str
    identity: dict[str, Any]


def plan_grid(
    methods: Iterable[str],
    seqs: Iterable[str],
    bpps: list[float] | None,
    budget: str,
    seeds: list[int],
    device: str,
    match: str,
    size: tuple[int, int] | None,
    results: str,
) -> list[PlannedJob]:
    """Expand the grid; every sequence is opened (and checksummed) once, before any job runs."""
    from bench.data import load_sequence

    plan = get_budget(budget)
    ladder = bpps or list(plan.bpp_ladder)
    if match not in ("epochs", "time"):
        raise ConfigError(f"unknown --match '{match}': use 'epochs' or 'time'")
    jobs = []
    for seq in seqs:
        sequence = load_sequence(seq, size=size)
        # a sequence too short for the budget fails every job alike: say so once, before anything runs
        sequence.frame_range(plan.start, plan.frames, plan.step, asker=f"budget '{plan.name}'")
        checksum = sequence.checksum
        for method in methods:
            for bpp in ladder:
                for seed in seeds:
                    spec = JobSpec(
                        method=method,
                        seq=seq,
                        target_bpp=bpp,
                        budget=budget,
                        seed=seed,
                        device=device,
                        match=match,
                        size=size,
                        results=results,
                    )
                    identity = job_identity(spec, checksum)
                    jobs.append(PlannedJob(spec, job_key(identity), identity))
    return jobs


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
        if not options.force and store.is_finished(results, job.key):
            record = store.read_record(store.jobs_dir(results) / job.key / store.RECORD)
            done[job.key] = {**_summary(record), "status": "cached"}
        elif job.key not in {j.key for j in todo}:
            todo.append(job)
    if done:
        log(f"{len(done)} of {len(jobs)} jobs already finished: skipping them (--force redoes them)")
    if options.executor in ("slurm", "submitit-local"):
        folder = Path(options.results) / "submitit"
        cluster = "slurm" if options.executor == "slurm" else "local"
        stream = executors.run_submitit(todo, execute_job, cluster, folder, options.slurm, _lost_job)
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


def _lost_job(job: PlannedJob, reason: str) -> dict[str, Any]:
    """A worker that died without reporting (killed, out of memory): record the loss like any failure."""
    base = {
        "key": job.key,
        "method": job.spec.method,
        "method_version": job.identity["method_version"],
        "seed": job.spec.seed,
        "device": job.spec.device,
        "target_bpp": job.spec.target_bpp,
        "match": job.identity["match"],
        "budget": job.identity["budget"],
        "identity": job.identity,
        "sequence": {"name": job.spec.seq},
    }
    return _record_failure(Path(job.spec.results), job.key, base, "failed", reason, "worker")


def format_summary(summaries: list[dict[str, Any]]) -> str:
    """The table printed at the end of a run."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"{'method':18s} {'seq':10s} {'target':>7s} {'bpp':>7s} {'PSNR':>7s} {'MS-SSIM':>8s} {'FLIP':>7s} "
        f"{'time s':>7s}  status"
    ]
    for s in summaries:
        lines.append(
            f"{s['method']:18s} {str(s['seq'])[:10]:10s} {s['target_bpp']:7.3f} {num(s['bpp'], '7.4f')} "
            f"{num(s['psnr'], '7.2f')} {num(s['ms-ssim'], '8.4f')} {num(s['flip'], '7.4f')} "
            f"{num(s['seconds'], '7.1f')}  {s['status']}"
        )
    failed = [s for s in summaries if s["status"] in ("failed", "skipped")]
    for s in failed:
        lines.append(f"  {s['status']}: {s['method']} at {s['target_bpp']:g} bpp: {s['reason']}")
    return "\n".join(lines)


# --- commands -------------------------------------------------------------------------------------------------


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--bpp must be comma-separated numbers, got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"--bpp values must be positive, got '{text}'")
    return values


def run_command(args: Any) -> int:
    from bench import devices
    from bench.cluster import slurm_flags
    from bench.data import parse_size

    cli = {
        name: getattr(args, name, None)
        for name in (
            "methods",
            "seq",
            "bpp",
            "budget",
            "seed",
            "repeats",
            "match",
            "device",
            "size",
            "jobs",
            "executor",
            "results",
            "force",
            "dry_run",
        )
    }
    cli["force"] = cli["force"] or None
    cli["dry_run"] = cli["dry_run"] or None
    cli["slurm"] = slurm_flags(args)
    options = resolve_options(cli, getattr(args, "config", None))
    if options.executor != "slurm":  # a login node may have no GPU; Slurm gives the jobs one
        devices.require(options.device)
    size = parse_size(options.size) if options.size else None
    methods = registry.resolve(options.methods)
    jobs = plan_grid(
        methods,
        expand_sequences(options.seq),
        _floats(options.bpp),
        options.budget,
        options.seeds(),
        options.device,
        options.match,
        size,
        options.results,
    )
    if options.dry_run:
        for job in jobs:
            finished = store.is_finished(Path(options.results), job.key)
            print(f"{job.key}  {job.spec.describe()}  [{'finished' if finished else 'to run'}]")
        print(f"{len(jobs)} jobs")
        return 0
    try:
        with _sigterm_unwinds():
            summaries = run_jobs(jobs, options)
    except (Terminated, KeyboardInterrupt) as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        print(
            f"stopped by {name}: finished jobs are kept, the job in flight left nothing half-written; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    print(format_summary(summaries))
    print(f"results in {Path(options.results).resolve()}")
    return 1 if any(s["status"] == "failed" for s in summaries) else 0


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (not an `Exception`, so no job records it as its own failure)."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
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


def expand_sequences(spec: str) -> list[str]:
    """'uvg' stands for the 7 UVG sequences; otherwise a comma-separated list of names or paths."""
    from bench.data.manifests import expand_datasets

    return expand_datasets(s.strip() for s in spec.split(","))


def results_command(args: Any) -> int:
    """Every record of a results directory as one long table (CSV, Parquet or JSON)."""
    results = Path(args.results)
    if not store.jobs_dir(results).is_dir() and not store.failed_dir(results).is_dir():
        raise BenchError(f"no results in '{results}': run `bench run --results {results}` first")
    table = store.records_table(results, include_failed=True)
    out = Path(args.out) if args.out else None
    if args.format == "csv":
        text = table.to_csv(index=False)
    elif args.format == "json":
        text = table.to_json(orient="records", indent=1)
    else:
        if out is None:
            raise BenchError("--format parquet needs --out FILE.parquet")
        table.to_parquet(out, index=False)
        print(f"wrote {len(table)} rows to {out}")
        return 0
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        print(f"wrote {len(table)} rows to {out}")
    return 0


def decode_command(args: Any) -> int:
    """Decode any stored stream with its own method: to PNG frames in a directory or to a video file."""
    from bench import devices

    devices.require(args.device)
    path = Path(args.stream)
    if not path.is_file():
        raise BenchError(f"no stream at '{path}'; pass the stream.nvbs of a job directory")
    data = path.read_bytes()
    stream = bitstream.unpack(data)
    cls = registry.get(stream.method)
    if stream.version != cls.version:
        raise BenchError(
            f"stream is {stream.method} version {stream.version}, this suite decodes version {cls.version}"
        )
    width = stream.header_int("width", 1, MAX_DECODE_SIDE)
    height = stream.header_int("height", 1, MAX_DECODE_SIDE)
    frames_count = stream.header_int("frames", 1, MAX_DECODE_PIXELS)
    if width * height * frames_count > MAX_DECODE_PIXELS:
        raise BitstreamError(
            f"stream claims {frames_count} frames of {width}x{height}, more than the {MAX_DECODE_PIXELS:,} pixels "
            f"this suite ever decodes; it is forged or corrupt"
        )
    info = SeqInfo(name=path.stem, width=width, height=height, num_frames=frames_count, fps=25.0)
    ctx = Context(workdir=Path(args.out).with_suffix(".work"), budget=get_budget("smoke"), device=args.device)
    frames = cls().decode(data, info, ctx)
    out = Path(args.out)
    if out.suffix.lower() in (".mp4", ".mkv", ".avi"):
        _write_video(frames, out)
    else:
        from PIL import Image

        out.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(out / f"frame_{i:05d}.png")
    print(f"decoded {len(frames)} frames of {stream.method} to {out}")
    return 0


def _write_video(frames: np.ndarray, out: Path) -> None:
    """A viewing copy (H.264, CRF 10, yuv420p); PNG frames are the exact decode."""
    import av

    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "10"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
