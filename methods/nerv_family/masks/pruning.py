"""Pruning's 0/1 masks: global unstructured magnitude pruning, and layers that keep pruned weights at zero.

The mask lives in the layers as a buffer and multiplies the weight in every forward pass, so a pruned weight
is exactly zero in the network and gets no gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.nerv_family.backbones.nerv import NeRVConfig, NeRVGenerator


class MaskedLinear(nn.Linear):
    """A Linear whose weight is multiplied by a fixed 0/1 mask (all ones until pruned)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("mask", torch.ones_like(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MaskedConv2d(nn.Conv2d):
    """A Conv2d whose weight is multiplied by a fixed 0/1 mask (all ones until pruned)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("mask", torch.ones_like(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


def build_generator(arch: NeRVConfig) -> NeRVGenerator:
    """The NeRV generator with maskable layers; its parameters and their init are the plain generator's."""
    return NeRVGenerator(arch, linear_layer=MaskedLinear, conv_layer=MaskedConv2d)


def prunable(names: Iterable[str]) -> list[str]:
    """The parameters pruning applies to: every stem and conv weight (the head is a conv), no bias."""
    return [name for name in names if name.endswith(".weight")]


def kept_count(total: int, sparsity: float) -> int:
    """How many of `total` weights survive pruning to `sparsity` (at least one)."""
    return max(1, total - round(sparsity * total))


def magnitude_masks(
    weights: dict[str, torch.Tensor],
    sparsity: float,
    names: Iterable[str] | None = None,
    layer_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Global unstructured magnitude pruning: keep the largest |w| over all prunable tensors together.

    `names` are the tensors pruned (default: `prunable`, NeRV's). With a `layer_weight` the score is
    |w| / n_layer ** layer_weight (HiNeRV's layer-size-weighted magnitude), so large layers give up more.
    Exactly `kept_count` weights survive; a stable sort breaks ties by position, so the mask is a
    function of the weights alone.
    """
    names = prunable(weights) if names is None else list(names)
    scores = [weights[n].detach().reshape(-1).abs().cpu() for n in names]
    if layer_weight:
        scores = [s / s.numel() ** layer_weight for s in scores]
    flat = torch.cat(scores)
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.argsort(flat, descending=True, stable=True)[: kept_count(flat.numel(), sparsity)]] = True
    masks, offset = {}, 0
    for n in names:
        size = weights[n].numel()
        masks[n] = keep[offset : offset + size].reshape(weights[n].shape)
        offset += size
    return masks


@torch.no_grad()
def apply_masks(model: NeRVGenerator, masks: dict[str, torch.Tensor]) -> None:
    """Fix the masks in the model's layers and zero the pruned weights themselves."""
    for name, mask in masks.items():
        layer = model.get_submodule(name.rsplit(".", 1)[0])
        layer.mask.copy_(mask)
        layer.weight.mul_(layer.mask)


@torch.no_grad()
def effective_weights(model: NeRVGenerator) -> dict[str, torch.Tensor]:
    """The weights the network computes with (weight x mask), float32 on the CPU, standard layout."""
    out = {}
    for name, param in model.named_parameters():
        layer = model.get_submodule(name.rsplit(".", 1)[0])
        value = param * layer.mask if name.endswith(".weight") else param
        out[name] = value.detach().to("cpu", torch.float32).contiguous()
    return out
