"""The ConvNeXt encoder of HNeRV (Liu et al., "A ConvNet for the 2020s"; as HNeRV's reference code builds it).

One stage per stride: a patchify convolution (kernel = stride) with a channels-first LayerNorm (after it on
the first stage, before it on the others), then `blocks` ConvNeXt blocks (depth-wise 7x7, LayerNorm,
1x1 to 4x, GELU, 1x1 back, layer scale 1e-6, residual). Weights start truncated-normal (std 0.02), biases
zero. Strides may differ between rows and columns, so clip shapes other than the reference's reach a small
embedding grid. The convolution and linear layers are parameters (as the decoders'), so that a masked
variant (random fixed weights with trained scores) reuses the exact architecture.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

LAYER_SCALE_INIT = 1e-6
INIT_STD = 0.02


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # LayerNorm over the last dimension of the NHWC view: one fused kernel, and for a channels-last
        # tensor the permutes are free.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depth-wise 7x7 -> LayerNorm -> Linear(4C) -> GELU -> Linear(C) -> layer scale, plus the input."""

    def __init__(
        self,
        dim: int,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        linear_layer: Callable[..., nn.Module] = nn.Linear,
        layer_scale: float = LAYER_SCALE_INIT,
    ) -> None:
        super().__init__()
        self.dwconv = conv_layer(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = linear_layer(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = linear_layer(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtEncoder(nn.Module):
    """Frames (B, 3, H, W) -> embeddings (B, dims[-1], H / prod(strides_h), W / prod(strides_w)).

    `conv_layer` and `linear_layer` build the weight layers (nn.Conv2d and nn.Linear: the reference); only
    those two classes get the truncated-normal init, so a masked layer keeps its own.
    """

    def __init__(
        self,
        dims: tuple[int, ...],
        strides: tuple[tuple[int, int], ...],
        blocks: int,
        in_channels: int = 3,
        *,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        linear_layer: Callable[..., nn.Module] = nn.Linear,
        layer_scale: float = LAYER_SCALE_INIT,
    ) -> None:
        super().__init__()
        self.downsample = nn.ModuleList()
        self.stages = nn.ModuleList()
        previous = in_channels
        for i, (dim, stride) in enumerate(zip(dims, strides, strict=True)):
            conv = conv_layer(previous, dim, kernel_size=stride, stride=stride)
            if i == 0:
                self.downsample.append(nn.Sequential(conv, ChannelsFirstLayerNorm(dim)))
            else:
                self.downsample.append(nn.Sequential(ChannelsFirstLayerNorm(previous), conv))
            stage = [ConvNeXtBlock(dim, conv_layer, linear_layer, layer_scale) for _ in range(blocks)]
            self.stages.append(nn.Sequential(*stage))
            previous = dim
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample, self.stages, strict=True):
            x = stage(downsample(x))
        return x
