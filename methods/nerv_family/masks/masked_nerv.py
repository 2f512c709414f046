"""The NeRV generator with every weight layer masked (the supermask methods' network)."""

from __future__ import annotations

import torch

from methods.nerv_family.backbones.nerv import NeRVConfig, NeRVGenerator, parameter_shapes
from methods.nerv_family.masks.layers import MaskFactory, weights_in_one_burst
from methods.nerv_family.masks.settings import MaskSettings


class MaskedNeRV(NeRVGenerator):
    """The NeRV generator with every weight layer masked. While training, each forward first computes all
    layers' effective weights in one burst (`weights_in_one_burst`), then runs the network on them; once
    `load_code` has given the layers their stored levels, each layer applies its own."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        with weights_in_one_burst(self):
            return super().forward(t)


def build_generator(arch: NeRVConfig, settings: MaskSettings, seed: int) -> MaskedNeRV:
    """The NeRV generator with every weight layer (stem, convs, head) masked, regenerated from `seed`."""
    factory = MaskFactory(settings, seed)
    return MaskedNeRV(arch, linear_layer=factory.linear, conv_layer=factory.conv)


def masked_shapes(arch: NeRVConfig) -> list[tuple[int, ...]]:
    """Shapes of the masked weights, in module order, from the architecture alone."""
    return [shape for name, shape in parameter_shapes(arch).items() if name.endswith(".weight")]
