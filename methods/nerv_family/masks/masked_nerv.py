"""The NeRV generator with every weight layer masked (the supermask methods' network)."""

from __future__ import annotations

import torch

from methods.nerv_family.backbones.nerv import NeRVConfig, NeRVGenerator, parameter_shapes
from methods.nerv_family.masks.layers import MaskFactory, effective_weights, masked_layers
from methods.nerv_family.masks.settings import MaskSettings


class MaskedNeRV(NeRVGenerator):
    """The NeRV generator with every weight layer masked. While training, each forward first computes all
    layers' effective weights in one burst (`effective_weights`), then runs the network on them; once
    `load_code` has given the layers their stored levels, each layer applies its own."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        layers = masked_layers(self)
        if all(layer.levels is None for layer in layers):
            for layer, weight in zip(layers, effective_weights(layers), strict=True):
                layer.precomputed = weight
        try:
            return super().forward(t)
        finally:
            for layer in layers:  # none outlives this forward, whatever happened in it
                layer.precomputed = None


def build_generator(arch: NeRVConfig, settings: MaskSettings, seed: int) -> MaskedNeRV:
    """The NeRV generator with every weight layer (stem, convs, head) masked, regenerated from `seed`."""
    factory = MaskFactory(settings, seed)
    return MaskedNeRV(arch, linear_layer=factory.linear, conv_layer=factory.conv)


def masked_shapes(arch: NeRVConfig) -> list[tuple[int, ...]]:
    """Shapes of the masked weights, in module order, from the architecture alone."""
    return [shape for name, shape in parameter_shapes(arch).items() if name.endswith(".weight")]
