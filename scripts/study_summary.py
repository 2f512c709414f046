"""Summarise a seed-repeated study: mean +- std per method, rate and protocol, and paired differences.

    bench run --methods supermask-learned,supermask-fixed,nerv-dense --seq bunny --budget cpu \\
        --bpp 0.1,0.2 --repeats 3 --match epochs --results study
    (the same with --match time)
    python scripts/study_summary.py study

Paired differences use the same seed of both methods: seed effects are shared across methods, so the
spread of a paired difference is the honest yardstick for "beyond seed noise".
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.store import load_results

LEARNED_H, FIXED_H = "supermask-learned[backbone=hnerv]", "supermask-fixed[backbone=hnerv]"
# the pairs printed where both sides have records: the NeRV study's and the HNeRV backbone's
PAIRS = (
    ("supermask-learned", "supermask-fixed"),
    ("supermask-learned", "nerv-dense"),
    (LEARNED_H, FIXED_H),
    (LEARNED_H, "hnerv"),
    (FIXED_H, "hnerv"),
)


def load(results: Path) -> pd.DataFrame:
    rows = []
    for rec in load_results(results).finished:
        alphas = rec.stats.get("alpha_over_init", {})
        rows.append(
            {
                "method": rec.label,
                "match": rec.match,
                "target": rec.target_bpp,
                "seed": rec.seed,
                "bpp": rec.bpp,
                "psnr": rec.mean("psnr"),
                "ms-ssim": rec.mean("ms-ssim"),
                "flip": rec.mean("flip"),
                "epochs": rec.stats.get("epochs"),
                "alpha_min": alphas.get("min"),
                "alpha_max": alphas.get("max"),
            }
        )
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> str:
    out = []
    for match, part in frame.groupby("match"):
        out.append(f"\n### matched by {match}\n")
        out.append("| method | target | bpp | PSNR | MS-SSIM | FLIP | epochs | alpha / init |")
        out.append("|---|---|---|---|---|---|---|---|")
        for (method, target), g in part.groupby(["method", "target"]):
            alpha = (
                f"{g['alpha_min'].min():.2f}..{g['alpha_max'].max():.2f}"
                if g["alpha_min"].notna().any()
                else "-"
            )
            out.append(
                f"| {method} | {target:g} | {g['bpp'].mean():.4f} | {g['psnr'].mean():.2f} +- {g['psnr'].std():.2f} "
                f"| {g['ms-ssim'].mean():.4f} +- {g['ms-ssim'].std():.4f} | {g['flip'].mean():.4f} +- "
                f"{g['flip'].std():.4f} | {g['epochs'].mean():.0f} | {alpha} |"
            )
        out.append("\n| paired PSNR difference (same seed) | target | per seed | mean +- std |")
        out.append("|---|---|---|---|")
        for a, b in PAIRS:
            for target, g in part.groupby("target"):
                left = g[g.method == a].set_index("seed")["psnr"]
                right = g[g.method == b].set_index("seed")["psnr"]
                diff = (left - right).dropna()
                if len(diff):
                    seeds = ", ".join(f"{d:+.2f}" for d in diff)
                    out.append(
                        f"| {a} - {b} | {target:g} | {seeds} | {diff.mean():+.2f} +- {diff.std():.2f} |"
                    )
    return "\n".join(out)


if __name__ == "__main__":
    print(summarise(load(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))))
