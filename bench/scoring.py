"""`bench score REF TEST`: score any two images, image folders or videos with the suite's own metrics.

The inputs are read by the data layer (the same reader the runner uses) and scored by `bench.metrics`,
so a number printed here is the number a benchmark record would hold for the same frames.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench import metrics
from bench.errors import MetricError
from bench.paths import check_output_file

PER_FRAME_ROWS = 10  # print one row per frame up to this many frames, then only the mean
_DECIMALS = {"ms-ssim": 5}  # decimals printed per metric; 4 for the rest
# metrics that need weight files, and why they cannot run here (None when they can)
_WEIGHTED = {"lpips": metrics.lpips_available, "stlpips": metrics.stlpips_available}


def _read(path: str, size: tuple[int, int] | None) -> np.ndarray:
    from bench.data import load_sequence

    return load_sequence(path, size=size).read()


def _shape(frames: np.ndarray) -> str:
    return f"{frames.shape[0]} frame(s) of {frames.shape[2]}x{frames.shape[1]}"


def _table(scores: metrics.Scores, frames: int) -> list[str]:
    names = [n for n in scores.mean]
    lines = ["frame  " + "".join(f"{n:>12s}" for n in names)]
    if 1 < frames <= PER_FRAME_ROWS:
        for t in range(frames):
            cells = "".join(f"{scores.per_frame[n][t]:>12.{_DECIMALS.get(n, 4)}f}" for n in names)
            lines.append(f"{t:>5d}  {cells}")
    lines.append("mean   " + "".join(f"{scores.mean[n]:>12.{_DECIMALS.get(n, 4)}f}" for n in names))
    lines += [f"{name}: {note}" for name, note in scores.notes.items()]
    return lines


def _save_flip_map(ref: np.ndarray, test: np.ndarray, out: str) -> float:
    from PIL import Image

    path = Path(out)
    heat, mean = metrics.flip_map(ref[0], test[0])
    Image.fromarray(heat).save(path, format="PNG")
    return mean


def score_command(args: argparse.Namespace) -> int:
    """Read REF and TEST, check they match, print their scores as a table or JSON; 0 on success."""
    from bench.data import parse_size

    if args.flip_map:  # checked before any work is spent
        check_output_file(Path(args.flip_map), "--flip-map")
    size = parse_size(args.size) if args.size else None
    ref = _read(args.ref, size)
    test = _read(args.test, size)
    if ref.shape != test.shape:
        raise MetricError(
            f"{args.ref} is {_shape(ref)} but {args.test} is {_shape(test)}; score inputs of equal size and length"
        )
    asked = args.metrics or ",".join(
        (*metrics.DEFAULT_METRICS, *(("lpips",) if metrics.lpips_available() is None else ()))
    )
    names = [m.strip().lower() for m in asked.split(",") if m.strip()]
    alone = _WEIGHTED.get(names[0]) if len(names) == 1 else None
    if alone is not None and alone() is not None:  # nothing else to show: say why
        raise MetricError(f"--metrics {names[0]} cannot be computed here: {alone()}")
    scores = metrics.score(ref, test, metrics=asked, device=args.device)
    flip_map_mean = _save_flip_map(ref, test, args.flip_map) if args.flip_map else None
    if args.json:
        out = {
            "ref": args.ref,
            "test": args.test,
            "frames": int(ref.shape[0]),
            "width": int(ref.shape[2]),
            "height": int(ref.shape[1]),
            **scores.to_dict(),
        }
        if args.flip_map:
            out["flip_map"] = {"path": args.flip_map, "frame": 0, "mean": flip_map_mean}
        print(json.dumps(out, indent=2))
        return 0
    print(f"reference: {args.ref} ({_shape(ref)})")
    print(f"test:      {args.test}")
    print("\n".join(_table(scores, len(ref))))
    if args.flip_map:
        print(f"FLIP map of frame 0 (mean {flip_map_mean:.4f}) saved to {args.flip_map}")
    return 0
