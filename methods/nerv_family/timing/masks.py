"""`bench perf masks`: a supermask training step against a dense one of the same architecture."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from methods.nerv_family.backbones.nerv import NeRVConfig, NeRVGenerator
from methods.nerv_family.masks.layers import effective_weights, masked_layers
from methods.nerv_family.masks.levels import nested_levels
from methods.nerv_family.masks.masked_nerv import build_generator
from methods.nerv_family.masks.settings import MaskSettings


def perf_masks(
    arch: NeRVConfig, batch_size: int = 2, steps: int = 12, seed: int = 0, precision: str = "fp32"
) -> dict[str, float]:
    """Wall-clock ms of one training step (forward, backward, Adam), dense vs both supermask variants.

    The steps run as `methods.training.train` runs them (channels-last, fused Adam, bf16 autocast when
    `precision` is "bf16") and alternate, so that a shared machine's load hits all alike; the minimum over
    `steps` is reported. ``masks_ms`` times the learned variant's mask bookkeeping alone (effective weights
    forward and backward), ``selection_ms`` the part of it that selects the thresholds and level maps.
    """
    from methods.nerv_family.training import keep_freed_memory

    keep_freed_memory()  # the training loop's allocator setting (it changes what large temporaries cost)
    height, width = arch.output_size
    t = torch.arange(batch_size, dtype=torch.float32) / batch_size
    target = torch.rand(batch_size, 3, height, width, generator=torch.Generator().manual_seed(seed))
    target = target.contiguous(memory_format=torch.channels_last)

    def trainer(model: nn.Module) -> Any:
        model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.999), fused=True)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(t)
            loss = (out.float() - target).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dense = NeRVGenerator(arch)
    fixed = build_generator(arch, MaskSettings(scale_mode="fixed"), seed)
    learned = build_generator(arch, MaskSettings(scale_mode="learned"), seed)
    layers = masked_layers(learned)

    def bookkeeping() -> None:
        sum(weight.sum() for weight in effective_weights(layers)).backward()

    @torch.no_grad()
    def selection() -> None:
        for layer in layers:
            nested_levels(layer.scores.abs(), layer.counts)

    steps_by_name = {
        "dense_ms": trainer(dense),
        "fixed_ms": trainer(fixed),
        "learned_ms": trainer(learned),
        "masks_ms": bookkeeping,
        "selection_ms": selection,
    }
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for rep in range(steps + 1):
        for name, step in steps_by_name.items():
            start = time.perf_counter()
            step()
            if rep:  # the first round warms up
                times[name].append(1e3 * (time.perf_counter() - start))
    out = {name: min(values) for name, values in times.items()}
    out["fixed_ratio"] = out["fixed_ms"] / out["dense_ms"]
    out["learned_ratio"] = out["learned_ms"] / out["dense_ms"]
    out["masked_weights"] = float(sum(layer.weight.numel() for layer in layers))
    return out


def perf_masks_section(targets: tuple[float, ...] = (0.1, 0.2, 0.4)) -> dict[str, Any]:
    """Supermask vs dense training steps of the same architecture, at the training loop's precision.

    The networks are the ones the supermask methods train on Bunny at the cpu budget (sized for each
    target bpp), plus the NeRV-S-like shape of the train section for reference.
    """
    import numpy as np

    from bench.budgets import get_budget
    from bench.contract import Clip, SeqInfo
    from methods.nerv_family.timing.train import PERF_BUDGET, perf_arch
    from methods.nerv_family.training import resolve_precision
    from methods.supermask_fixed import SupermaskFixed  # its plan sizes the networks the methods train

    budget = get_budget(PERF_BUDGET)
    precision = resolve_precision(budget.precision, torch.device("cpu"))
    height, width = budget.size or (180, 320)
    frames = budget.frames or 16
    info = SeqInfo("bunny", width, height, frames, 25.0)  # sizing reads the clip's shape, not its pixels
    clip = Clip(info, np.zeros((frames, height, width, 3), np.uint8))
    networks = [
        (f"sized for {t:g} bpp", SupermaskFixed().plan(clip, t, budget).architecture()) for t in targets
    ]
    networks.append(("NeRV-S-like", perf_arch((height, width))))
    result: dict[str, Any] = {"precision": precision, "batch_size": budget.batch_size, "networks": {}}
    print(
        f"masks at {clip.info.width}x{clip.info.height}, {precision}, batch {budget.batch_size} "
        "(steps interleaved, min of 40; NeRV-S-like 24):"
    )
    for label, arch in networks:
        steps = 24 if label == "NeRV-S-like" else 40  # small networks: short steps, more of them
        measured = perf_masks(arch, batch_size=budget.batch_size, steps=steps, precision=precision)
        result["networks"][label] = measured
        print(
            f"  {label} ({int(measured['masked_weights']):,} masked weights): dense step "
            f"{measured['dense_ms']:.1f} ms, supermask-fixed {measured['fixed_ms']:.1f} ms "
            f"({measured['fixed_ratio']:.2f}x), supermask-learned {measured['learned_ms']:.1f} ms "
            f"({measured['learned_ratio']:.2f}x); mask bookkeeping {measured['masks_ms']:.1f} ms, of which "
            f"threshold selection {measured['selection_ms']:.1f} ms "
            f"({measured['selection_ms'] / measured['learned_ms']:.0%} of the learned step)"
        )
    return result
