"""The `bench run`, `bench results` and `bench decode` commands: options in, grid out, a table printed."""

from __future__ import annotations

import importlib.util
import re
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench import bitstream, registry, store
from bench.budgets import get_budget
from bench.contract import Context, SeqInfo
from bench.errors import BenchError, BitstreamError
from bench.paths import check_output_file, check_output_folder
from bench.runconfig import RUN_FIELDS, resolve_options, slurm_flags
from bench.runner import Terminated, run_jobs, sigterm_unwinds

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi")
FRAME_NAME = re.compile(r"frame_\d{5,}\.png")
MAX_DECODE_SIDE = 16_384
MAX_DECODE_PIXELS = 1 << 31  # 2.1 G pixels (6 GB of frames); UVG's longest sequence has 1.2 G


def format_summary(summaries: list[dict[str, Any]]) -> str:
    """The table printed at the end of a run."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    width = max([18] + [len(s["method"]) for s in summaries])
    budgets = {s.get("budget") for s in summaries}
    show_budget = len(budgets) > 1 or any("[" in str(b) for b in budgets)
    budget_col = f"{'budget':16s} " if show_budget else ""
    lines = [
        f"{'method':{width}s} {'seq':10s} {budget_col}{'target':>7s} {'bpp':>7s} {'PSNR':>7s} {'MS-SSIM':>8s} "
        f"{'FLIP':>7s} {'time s':>7s}  status"
    ]
    for s in summaries:
        budget = f"{str(s.get('budget'))[:16]:16s} " if show_budget else ""
        lines.append(
            f"{s['method']:{width}s} {str(s['seq'])[:10]:10s} {budget}{s['target_bpp']:7.3f} {num(s['bpp'], '7.4f')} "
            f"{num(s['psnr'], '7.2f')} {num(s['ms-ssim'], '8.4f')} {num(s['flip'], '7.4f')} "
            f"{num(s['seconds'], '7.1f')}  {s['status']}"
        )
    failed = [s for s in summaries if s["status"] in ("failed", "skipped")]
    for s in failed:
        lines.append(f"  {s['status']}: {s['method']} at {s['target_bpp']:g} bpp: {s['reason']}")
    return "\n".join(lines)


def dry_run(jobs: list[Any], results: Path) -> None:
    """Each job with its estimated time and status, then the totals (GPU hours for CUDA runs)."""
    from bench.cost import CostModel, format_duration

    model = CostModel(store.load_results(results, check_streams=False).finished if results.is_dir() else [])
    total, todo, sources = 0.0, 0, set()
    for job in jobs:
        finished = store.is_finished(results, job.key)
        estimate = model.estimate(job, job.pixels)
        sources.add(estimate.source)
        if not finished:
            total += estimate.seconds
            todo += 1
        status = "finished" if finished else f"to run, ~{format_duration(estimate.seconds)}"
        print(f"{job.key}  {job.spec.describe()}  [{status}]")
    on_gpu = any(job.spec.device.startswith("cuda") for job in jobs)
    hours = f" ({total / 3600:.2f} GPU hours)" if on_gpu else ""
    print(
        f"{len(jobs)} jobs, {todo} to run: about {format_duration(total)} in total{hours}, "
        f"{format_duration(total / max(todo, 1))} a job on average (estimate {'; '.join(sorted(sources))})"
    )


def run_command(args: Any) -> int:
    from bench import devices
    from bench.data import parse_size
    from bench.grid import plan_grid

    cli = {name: getattr(args, name, None) for name in RUN_FIELDS if name != "slurm"}
    cli["slurm"] = slurm_flags(args) or None
    options = resolve_options(cli, getattr(args, "config", None))
    devices.check_name(options.device)
    # a GPU run may be planned anywhere, and a login node may have no GPU: Slurm gives the jobs one
    if not options.dry_run and options.executor != "slurm":
        devices.require(options.device)
    get_budget(options.budget)
    size = parse_size(options.size) if options.size else None
    jobs = plan_grid(options, size)
    if options.dry_run:
        dry_run(jobs, Path(options.results))
        return 0
    try:
        with sigterm_unwinds():
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


def results_command(args: Any) -> int:
    """Every record of a results directory as one long table (CSV, Parquet or JSON)."""
    results = Path(args.results)
    if not store.jobs_dir(results).is_dir() and not store.failed_dir(results).is_dir():
        raise BenchError(f"no results in '{results}': run `bench run --results {results}` first")
    out = Path(args.out) if args.out else None
    if out is not None:
        check_output_file(out, "--out")
    if args.format == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise BenchError("--format parquet needs pyarrow (pip install pyarrow); or use --format csv or json")
    table = store.records_table(results, include_failed=True)
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
        return 0
    try:
        out.write_text(text)
    except OSError as exc:
        raise BenchError(f"cannot write {out}: {exc.strerror or exc}; choose another --out") from None
    print(f"wrote {len(table)} rows to {out}")
    return 0


def decode_command(args: Any) -> int:
    """Decode any stored stream with its own method: to PNG frames in a directory or to a video file."""
    from bench import devices

    devices.require(args.device)
    path = Path(args.stream)
    if not path.is_file():
        raise BenchError(f"no stream at '{path}'; pass the stream.nvbs of a job directory")
    out = Path(args.out)
    video = out.suffix.lower() in VIDEO_SUFFIXES
    if video:
        check_output_file(out, "--out")
    else:
        check_output_folder(out, "--out")
        others = [p.name for p in out.iterdir() if not FRAME_NAME.fullmatch(p.name)] if out.is_dir() else []
        if others:
            raise BenchError(
                f"--out {out} holds other files ({', '.join(sorted(others)[:3])}); decode into an empty folder"
            )
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
    if video:
        _write_video(frames, out)
    else:
        from PIL import Image

        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob("frame_*.png"):  # an earlier, longer decode must not stay beside this one
            stale.unlink()
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
