"""The level code of a supermask stream, whatever the backbone: the ``masks`` part of its header (densities,
init, scale rule, seed), the ``masks`` section (every coded layer's level map, range coded with the known
level distribution) and, for learned scales, the ``scales`` section (float32 alphas per layer and level).

The level counts of each layer are fixed by its size and the densities, so the code's length is known
before training (`code_bits`) and checked before a decoder asks the range coder for anything.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from bench import bitstream
from bench.errors import BitstreamError, MethodError
from methods.nerv_family import coding
from methods.nerv_family.adapter import CODER_FINAL_BITS
from methods.nerv_family.masks.settings import MaskSettings, kept_counts

CODER_SLACK_BITS = CODER_FINAL_BITS  # the level maps' range coder ends on its final words
# The range coder's excess over the exact code length, per symbol: measured 1.2e-4 bits on 3M-symbol maps.
CODER_EXCESS_PER_SYMBOL = 1e-3
MAX_SEED = 1 << 63  # job seeds are 63-bit; a larger one is forged (and would build another network)
SCALE_BITS = 32  # a stored alpha: float32
SIZE_AIM = 0.02  # the size is predictable: a plan aims within 2 %

Shape = tuple[int, ...]


def section_names(scale_mode: str) -> tuple[str, ...]:
    """The level code's sections: the level maps, and the alphas where they are learned."""
    return ("masks", "scales") if scale_mode == "learned" else ("masks",)


def masks_header(settings: MaskSettings, seed: int) -> dict[str, Any]:
    """The header's ``masks`` part: what regenerates the random weights and the level distribution."""
    return {
        "densities": list(settings.densities),
        "init": settings.weight_init,
        "scale": settings.scale_rule,
        "seed": seed,
    }


def mask_bits(shapes: list[Shape], settings: MaskSettings) -> float:
    """Expected coded bits of the level maps: each layer's exact level counts at -log2 p_l bits each."""
    return sum(_layer_mask_bits(math.prod(shape), settings.densities) for shape in shapes)


@functools.lru_cache(maxsize=65536)
def _layer_mask_bits(numel: int, densities: tuple[float, ...]) -> float:
    k = (1.0, *densities, 0.0)
    kept = (numel, *kept_counts(numel, densities), 0)
    return -sum((kept[i] - kept[i + 1]) * math.log2(k[i] - k[i + 1]) for i in range(len(k) - 1))


def code_bits(shapes: list[Shape], settings: MaskSettings) -> float:
    """Predicted payload bits of the level code's sections: the maps at their known entropy, the coder's
    end, and the alphas of learned scales."""
    scale_bits = SCALE_BITS * settings.num_levels * len(shapes) if settings.scale_mode == "learned" else 0
    return mask_bits(shapes, settings) + CODER_SLACK_BITS + scale_bits


def encode_code(
    levels: list[torch.Tensor], alphas: torch.Tensor, settings: MaskSettings
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The level code's sections (`section_names`) and what the record says of them."""
    symbols = np.concatenate([lv.reshape(-1).numpy() for lv in levels]).astype(np.int32)
    masks = coding.encode_symbols(symbols, settings.num_levels + 1, settings.level_probabilities())
    sections = {"masks": masks}
    if settings.scale_mode == "learned":
        sections["scales"] = alphas.numpy().astype("<f4").tobytes()
    stats = {
        "masked_weights": int(symbols.size),
        "mask_bits": 8 * len(masks),
        "entropy_bits": round(symbols.size * settings.entropy_bits(), 1),
    }
    return sections, stats


def read_settings(header: dict[str, Any], name: str, scale_mode: str) -> tuple[MaskSettings, int]:
    """Mask settings and seed, in exactly the JSON types `masks_header` writes (a bool is not a seed)."""
    masks = header.get("masks")
    try:
        if not isinstance(masks, dict):
            raise ValueError("masks is not a mapping")
        densities, init, scale, seed = (masks.get(k) for k in ("densities", "init", "scale", "seed"))
        if not isinstance(densities, list) or any(type(k) is not float for k in densities):
            raise ValueError("densities are not a list of numbers")
        if not isinstance(init, str) or not isinstance(scale, str):
            raise ValueError("init and scale must be names")
        if type(seed) is not int or not 0 <= seed < MAX_SEED:
            raise ValueError("the seed is not an integer in [0, 2**63)")
        settings = MaskSettings(tuple(densities), scale_mode, init, scale)
    except (ValueError, MethodError) as exc:
        detail = " ".join(str(exc).split())  # one line, whatever text the header smuggled in
        raise BitstreamError(f"{name} stream header is malformed ({detail}); re-encode it") from None
    return settings, seed


def decode_code(
    stream: bitstream.Stream, shapes: list[Shape], settings: MaskSettings
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The level maps (uint8, one per shape) and, for learned scales, the (layers, N) alphas of a stream;
    every length is checked first (a forged size would make the range decoder allocate it)."""
    name = stream.method
    total = sum(math.prod(s) for s in shapes)
    payload = stream.section("masks")
    expected = mask_bits(shapes, settings)
    if abs(8 * len(payload) - expected) > CODER_SLACK_BITS + CODER_EXCESS_PER_SYMBOL * total:
        raise BitstreamError(
            f"{name} stream's masks section holds {8 * len(payload)} bits where its header implies "
            f"{expected:.0f}; re-encode it"
        )
    symbols = coding.decode_symbols(payload, total, settings.num_levels + 1, settings.level_probabilities())
    alphas = None
    if settings.scale_mode == "learned":
        raw = stream.section("scales")
        if len(raw) != 4 * len(shapes) * settings.num_levels:
            raise BitstreamError(f"{name} stream's scales section has the wrong size; re-encode it")
        alphas = torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(len(shapes), -1))
        if not torch.isfinite(alphas).all():
            raise BitstreamError(f"{name} stream holds a non-finite scale; re-encode it")
    levels, offset = [], 0
    for shape in shapes:
        n = math.prod(shape)
        levels.append(torch.from_numpy(symbols[offset : offset + n].astype(np.uint8).reshape(shape)))
        offset += n
    return levels, alphas


def level_stats(
    levels: list[torch.Tensor], alphas: torch.Tensor, settings: MaskSettings, scales: list[float]
) -> dict[str, Any]:
    """What a record says of the coded level maps and alphas (`scales`: each coded layer's constant c)."""
    symbols = torch.cat([lv.reshape(-1) for lv in levels])
    counts = torch.bincount(symbols.long(), minlength=settings.num_levels + 1)
    relative = alphas / torch.tensor(scales)[:, None]
    return {
        "masked_weights": int(symbols.numel()),
        "level_fractions": [round(float(c) / symbols.numel(), 5) for c in counts],
        "alpha_over_init": {"min": round(float(relative.min()), 4), "max": round(float(relative.max()), 4)},
    }
