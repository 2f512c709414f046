"""Sweep of the supermask hyper-parameters on Bunny at the cpu budget (docs/supermask_sweep.md).

Each run plans the network for the target rate (so every run has the same bits), trains for a fixed number
of epochs (equal epochs, the papers' protocol, so the machine's load changes the time, not the result),
encodes, decodes from the bytes and scores PSNR on the decoded frames. Results are appended to a JSON-lines
file, one line per run, and finished runs are skipped, so an interrupted sweep resumes where it stopped.

    python scripts/supermask_sweep.py --epochs 80 --jobs 2 --out sweep.jsonl               # every run, seed 0
    python scripts/supermask_sweep.py --epochs 80 --jobs 2 --out sweep.jsonl --seed 1 \
        --only "learned final,fixed final,learned b2 alpha lr 1e-1,fixed batch 2"         # the paired seed
    python scripts/supermask_sweep.py --out sweep.jsonl --table                            # the table only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the data manifests live at the repository root

# The sweep's starting point, spelled out so that the table does not change meaning with the Config defaults.
REFERENCE: dict[str, Any] = {
    "densities": (0.3, 0.1, 0.03),
    "weight_init": "signed",
    "scale_rule": "variance",
    "alpha_param": "direct",
    "score_lr": 1e-2,
    "alpha_lr": 1e-2,
    "batch_size": 4,
}
FINAL = {"batch_size": 2, "score_lr": 3e-3, "alpha_lr": 1e-1}  # the Config defaults the sweep chose
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (method, changes to REFERENCE)
    # round 1: one change at a time
    "learned": ("supermask-learned", {}),
    "fixed": ("supermask-fixed", {}),
    "learned k=(.5,.25,.1)": ("supermask-learned", {"densities": (0.5, 0.25, 0.1)}),
    "learned k=(.3,.1)": ("supermask-learned", {"densities": (0.3, 0.1)}),
    "learned k=(.3,)": ("supermask-learned", {"densities": (0.3,)}),
    "learned k=(.2,.05,.01)": ("supermask-learned", {"densities": (0.2, 0.05, 0.01)}),
    "learned okoshi scale": ("supermask-learned", {"scale_rule": "okoshi"}),
    "fixed okoshi scale": ("supermask-fixed", {"scale_rule": "okoshi"}),
    "learned score lr 3e-3": ("supermask-learned", {"score_lr": 3e-3}),
    "learned score lr 3e-2": ("supermask-learned", {"score_lr": 3e-2}),
    "learned alpha lr 1e-3": ("supermask-learned", {"alpha_lr": 1e-3}),
    "learned alpha lr 3e-2": ("supermask-learned", {"alpha_lr": 3e-2}),
    "learned alpha log": ("supermask-learned", {"alpha_param": "log"}),
    "learned batch 2": ("supermask-learned", {"batch_size": 2}),
    "fixed batch 2": ("supermask-fixed", {"batch_size": 2}),
    "learned normal init": ("supermask-learned", {"weight_init": "normal"}),
    # round 2: combine the winners, tune the fixed baseline's own score lr
    "learned b2 alpha lr 3e-2": ("supermask-learned", {"batch_size": 2, "alpha_lr": 3e-2}),
    "learned b2 alpha lr 1e-1": ("supermask-learned", {"batch_size": 2, "alpha_lr": 1e-1}),
    "learned b2 score lr 3e-3": ("supermask-learned", {"batch_size": 2, "score_lr": 3e-3}),
    "learned batch 1": ("supermask-learned", {"batch_size": 1}),
    "fixed b2 score lr 3e-3": ("supermask-fixed", {"batch_size": 2, "score_lr": 3e-3}),
    "fixed b2 score lr 3e-2": ("supermask-fixed", {"batch_size": 2, "score_lr": 3e-2}),
    # round 3: the chosen defaults (fixed ignores alpha_lr), one step further on alpha lr; also run with --seed 1
    "learned final": ("supermask-learned", FINAL),
    "fixed final": ("supermask-fixed", FINAL),
    "learned final alpha lr 3e-1": ("supermask-learned", {**FINAL, "alpha_lr": 3e-1}),
}


def run_one(
    name: str, method_name: str, overrides: dict[str, Any], bpp: float, epochs: int, seed: int
) -> dict:
    """Plan, train, encode, decode and score one configuration (in a worker process, one thread)."""
    import torch

    torch.set_num_threads(1)
    from bench import bitstream, registry
    from bench.budgets import get_budget
    from bench.contract import Context
    from bench.data import load_sequence, prepare_clip
    from bench.metrics import mean_psnr, psnr

    budget = get_budget("cpu")
    clip = prepare_clip(load_sequence("bunny"), budget)
    method = registry.get(method_name)()
    # Plan with the changes in force: the densities decide how large a network fits the rate.
    base = dataclasses.replace(method.default_config(), **{**REFERENCE, **overrides})
    config = dataclasses.replace(method.plan_from(base, clip, bpp, budget), epochs=epochs)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(workdir=Path(tmp), budget=budget, seed=seed)
        start = time.perf_counter()
        state = method.fit(clip.frames, config, ctx)
        seconds = time.perf_counter() - start
        data = method.encode(state)
        decoded = method.decode(data, clip.info, ctx)
    stats = method.stats(state)
    return {
        "name": name,
        "method": method_name,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "bpp": round(8 * len(data) / clip.info.pixels, 4),
        "psnr": round(mean_psnr(psnr(clip.frames, decoded)), 3),
        "train_psnr": stats["train_psnr"],
        "masked_weights": stats["masked_weights"],
        "shape": {"stem": stats["stem_dims"], "fc_dim": stats["fc_dim"], "lower_width": stats["lower_width"]},
        "alpha_over_init": stats["alpha_over_init"],
        "steps": stats["steps"],
        "epochs": epochs,
        "batch_size": config.batch_size,
        "seconds": round(seconds, 1),
        "breakdown": bitstream.breakdown(data),
        "seed": seed,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| run | seed | changed (from REFERENCE) | bpp | PSNR dB | weights | steps | train s | alpha/init |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        changed = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "defaults"
        alpha = r["alpha_over_init"]
        lines.append(
            f"| {r['name']} | {r['seed']} | {changed} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['masked_weights']} "
            f"| {r['steps']} | {r['seconds']:.0f} | {alpha['min']:.2f}..{alpha['max']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("supermask_sweep.jsonl"))
    parser.add_argument("--bpp", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--table", action="store_true", help="print the table of finished runs and stop")
    args = parser.parse_args()

    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.table:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()] or list(RUNS)
        unknown = sorted(set(wanted) - set(RUNS))
        if unknown:
            raise SystemExit(f"unknown runs {unknown}; choose from {list(RUNS)}")
        finished = {(r["name"], r["epochs"], r["seed"]) for r in done}
        todo = [n for n in wanted if (n, args.epochs, args.seed) not in finished]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_one, n, *RUNS[n], args.bpp, args.epochs, args.seed) for n in todo]
            for future in futures:
                row = future.result()
                done.append(row)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"{row['name']}: {row['psnr']:.2f} dB at {row['bpp']:.4f} bpp, {row['seconds']:.0f} s",
                    flush=True,
                )
    print(table(done))


if __name__ == "__main__":
    main()
