"""How much each decoded clip of a results folder moves, as a share of how much its source clip moves.

    python scripts/clip_motion.py RESULTS [--method supermask-learned]

A representation that renders one picture for the whole clip (embeddings alike for every frame, a lost time
input) can still score a fair PSNR on a slow clip; its motion share gives it away. The motion of a clip is
the mean absolute difference of its frames from the clip's mean frame; the share is the decode's motion
over the source's: 0 is a still picture, 1 moves as much as the source. Each stream is decoded from its
bytes with its own method, the source clip prepared from the record's sequence and budget.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench import bitstream, registry
from bench.budgets import get_budget
from bench.contract import Context, SeqInfo
from bench.data import load_sequence, prepare_clip
from bench.store import load_results


def motion(frames: np.ndarray) -> float:
    """Mean absolute difference of the frames (N, H, W, 3) from their mean frame, in 8-bit levels."""
    x = frames.astype(np.float64)
    return float(np.abs(x - x.mean(axis=0)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--method", default=None, help="only records of this method")
    args = parser.parse_args()

    sources: dict[tuple[str, str], float] = {}
    rows = []
    for rec in load_results(args.results).finished:
        if args.method and rec.method != args.method:
            continue
        stream_path = args.results / "jobs" / rec.key / "stream.nvbs"
        if not stream_path.is_file():
            continue
        budget = get_budget(rec.budget["name"])
        source_key = (rec.sequence["name"], rec.budget["name"])
        if source_key not in sources:
            sources[source_key] = motion(prepare_clip(load_sequence(rec.sequence["name"]), budget).frames)
        data = stream_path.read_bytes()
        cls = registry.get(bitstream.unpack(data).method)
        seq = rec.sequence
        info = SeqInfo(seq["name"], seq["width"], seq["height"], seq["num_frames"], seq["fps"])
        with tempfile.TemporaryDirectory() as work:
            decoded = cls().decode(data, info, Context(Path(work), budget))
        share = motion(decoded) / sources[source_key]
        rows.append((rec.label, rec.target_bpp, rec.seed, rec.mean("psnr"), share))
    print(f"{'label':60s} {'target':>6s} {'seed':>4s} {'PSNR':>6s} {'motion':>6s}")
    for label, target, seed, psnr, share in sorted(rows):
        print(f"{label:60s} {target:6.3f} {seed:4d} {psnr:6.2f} {share:6.2f}")


if __name__ == "__main__":
    main()
