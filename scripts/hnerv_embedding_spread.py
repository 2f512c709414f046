"""How much hnerv's encoder keeps frames apart, stage by stage, before and after training.

    python scripts/hnerv_embedding_spread.py --bpp 0.2 --epochs 30
    python scripts/hnerv_embedding_spread.py --bpp 0.2 --epochs 30 --freeze-encoder

The spread of a stage's output is its standard deviation across the clip's frames (per position and
channel, averaged) over its mean absolute value: 0 means every frame gives the same tensor, so the decoder
renders one picture for the clip. The network is planned for the rate as `bench run` plans it (cpu budget,
Bunny) and trained with the suite's loop; `--freeze-encoder` trains the decoder alone on a random encoder.
docs/hnerv.md quotes its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch

from bench.budgets import get_budget
from bench.contract import Context
from bench.data import load_sequence, prepare_clip
from methods.hnerv import HNeRVMethod
from methods.nerv_family.backbones.hnerv import HNeRVModel
from methods.nerv_family.training import train


def spread(x: torch.Tensor) -> float:
    """Std across frames (dim 0) over mean absolute value."""
    return float(x.std(0).mean() / x.abs().mean().clamp_min(1e-12))


def stage_spreads(model: HNeRVModel, frames: torch.Tensor) -> list[float]:
    """The spread after each encoder stage, then after the decoder's stem (its first activation)."""
    model.eval()
    out = []
    with torch.no_grad():
        x = frames
        for downsample, stage in zip(model.encoder.downsample, model.encoder.stages, strict=True):
            x = stage(downsample(x))
            out.append(spread(x))
        out.append(spread(model.decoder.stem_act(model.decoder.stem(x))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bpp", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=None, help="default: the cpu budget's")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--fc-dim", type=int, default=None, help="override the planned C0")
    parser.add_argument("--lower-width", type=int, default=None, help="override the planned lower width")
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    budget = get_budget("cpu")
    clip = prepare_clip(load_sequence("bunny"), budget)
    config = HNeRVMethod().plan(clip, args.bpp, budget)
    overrides = {"fc_dim": args.fc_dim, "lower_width": args.lower_width}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    arch = config.architecture()
    torch.manual_seed(args.seed)
    model = HNeRVModel(arch)
    frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float().div(255)
    print(f"C0 {arch.fc_dim}, widths {arch.channels()}, grid {arch.embed_grid}")
    print("spread at init:  ", " ".join(f"{s:.5f}" for s in stage_spreads(model, frames)))
    with tempfile.TemporaryDirectory() as work:
        ctx = Context(workdir=Path(work), budget=budget, seed=args.seed)
        result = train(
            model,
            clip.frames,
            ctx,
            epochs=args.epochs,
            lr=args.lr or budget.lr,
            batch_size=budget.batch_size,
            params=list(model.decoder.parameters()) if args.freeze_encoder else None,
            precision=args.precision,
            desc="hnerv",
        )
    model.to("cpu")
    print("spread trained:  ", " ".join(f"{s:.5f}" for s in stage_spreads(model, frames.contiguous())))
    print(f"training-set PSNR after {args.epochs} epochs: {result.psnr:.2f} dB")


if __name__ == "__main__":
    main()
