"""HNeRV with every weight layer masked: the random ConvNeXt encoder and the HNeRV decoder (the supermask
methods' network on the ``hnerv`` backbone).

Every convolution and linear layer, of the encoder and of the decoder, holds random fixed weights drawn
from the seed and trained scores, exactly as on NeRV. The two parts are numbered apart (the encoder's
layers from `ENCODER_FIRST_INDEX`), so the decoder's random weights regenerate from the seed without
building the encoder, which never leaves the sender. Nothing else trains: the encoder's LayerNorms keep
their identity affine map, and its layer scales are a fixed 1 (the reference's 1e-6 is the start of a
trained parameter; frozen there, it would switch every ConvNeXt block off).
"""

from __future__ import annotations

import torch
from torch import nn

from methods.nerv_family.backbones.convnext import ConvNeXtEncoder
from methods.nerv_family.backbones.hnerv import HNeRVConfig, HNeRVDecoder, HNeRVModel, decoder_shapes
from methods.nerv_family.masks.layers import MaskFactory, masked_layers, weights_in_one_burst
from methods.nerv_family.masks.settings import MaskSettings

ENCODER_FIRST_INDEX = 1 << 20  # seed index of the encoder's first layer; the decoder's start at 0
MASKED_LAYER_SCALE = 1.0  # the ConvNeXt blocks' fixed layer scale in the masked encoder


class MaskedHNeRV(HNeRVModel):
    """HNeRV with every weight layer masked. While training, each forward computes all layers' effective
    weights (encoder and decoder) in one burst (`weights_in_one_burst`), as `MaskedNeRV` does."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        with weights_in_one_burst(self):
            return super().forward(frames)


def build_masked_hnerv(arch: HNeRVConfig, settings: MaskSettings, seed: int) -> MaskedHNeRV:
    """The training network: masked encoder and decoder regenerated from `seed`; only scores (and learned
    scales) require gradients."""
    layers = MaskFactory(settings, seed, first=ENCODER_FIRST_INDEX)
    encoder = ConvNeXtEncoder(
        arch.encoder_dims(),
        arch.strides,
        arch.enc_blocks,
        conv_layer=layers.conv,
        linear_layer=layers.linear,
        layer_scale=MASKED_LAYER_SCALE,
    )
    model = MaskedHNeRV(arch, conv_layer=MaskFactory(settings, seed).conv, encoder=encoder)
    trained = {id(p) for layer in masked_layers(model) for p in layer.parameters(recurse=False)}
    for param in model.parameters():
        if id(param) not in trained:
            param.requires_grad_(False)
    return model


def build_masked_decoder(arch: HNeRVConfig, settings: MaskSettings, seed: int) -> HNeRVDecoder:
    """The masked decoder alone, with the very random weights it has inside `build_masked_hnerv`."""
    return HNeRVDecoder(arch, conv_layer=MaskFactory(settings, seed).conv)


def decoder_mask_shapes(arch: HNeRVConfig) -> list[tuple[int, ...]]:
    """Shapes of the decoder's masked weights, in module order (the level maps a stream codes)."""
    return [shape for name, shape in decoder_shapes(arch).items() if name.endswith(".weight")]


def encoder_masked_weights(model: nn.Module) -> int:
    """How many weights the encoder masks (trained, never coded)."""
    return sum(layer.weight.numel() for layer in masked_layers(model.encoder))
