"""`bench perf decode`: rendering frames from decoded networks, beside a plain NCHW render."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

DECODE_SIZES = (("cpu size 180x320", (180, 320)), ("1080p", (1080, 1920)))


def perf_decode(
    frames: int = 8, repeats: int = 3, sizes: tuple[tuple[str, tuple[int, int]], ...] = DECODE_SIZES
) -> dict[str, Any]:
    """Frames per second rendering a decoded NeRV (dense weights) and a decoded supermask (stored level
    maps and scales on the random weights) at two sizes, through the decoders' `render`; nerv-dense also
    beside a plain NCHW render of the same model. Best of `repeats` after a warm-up frame."""
    import torch

    from methods.nerv_family.backbones.nerv import NeRVConfig, NeRVGenerator, choose_grid, render
    from methods.nerv_family.masks.layers import layer_alphas, level_maps, load_code
    from methods.nerv_family.masks.masked_nerv import build_generator
    from methods.nerv_family.masks.settings import MaskSettings

    result: dict[str, Any] = {}
    for label, size in sizes:
        start, strides = choose_grid(*size)
        arch = NeRVConfig(stem_dims=(85,), fc_dim=4, lower_width=16, start=start, strides=strides)
        count = frames if size[0] < 500 else 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            dense = NeRVGenerator(arch)
        plain = NeRVGenerator(arch)
        plain.load_state_dict(dense.state_dict())
        masked = build_generator(arch, MaskSettings(), 0)
        load_code(masked, level_maps(masked), layer_alphas(masked))  # the decoder's state
        baseline = _frames_per_second(partial(_plain_render, plain), count, repeats)
        result[f"plain {label}"] = baseline
        for kind, model in (("nerv-dense", dense), ("supermask", masked)):
            measured = _frames_per_second(partial(render, model), count, repeats)
            result[f"{kind} {label}"] = measured
            beside = f"  ({measured / baseline:.2f}x the plain NCHW render)" if kind == "nerv-dense" else ""
            print(f"decode {kind} at {label}: {measured:.2f} frames/s{beside}")
    return result


def _frames_per_second(render_frames: Callable[[int], Any], count: int, repeats: int) -> float:
    """Best of `repeats` renders of `count` frames, after a warm-up frame."""
    render_frames(1)
    best = math.inf
    for _ in range(repeats):
        begin = time.perf_counter()
        render_frames(count)
        best = min(best, time.perf_counter() - begin)
    return count / best


def _plain_render(model: Any, count: int) -> None:
    """`methods.nerv.render` written the obvious way: NCHW, 4 frames a batch, same output conversion."""
    import torch

    from methods.nerv_family.backbones.nerv import frame_times

    with torch.no_grad():
        model.eval()
        for t in frame_times(count).split(4):
            (model(t) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
