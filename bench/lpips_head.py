"""What LPIPS v0.1 puts around its backbone, written once for LPIPS and ST-LPIPS.

Both metrics map images in [-1, 1] to the statistics their AlexNet was trained on (the same shift and
scale), take the ReLU outputs of five layers, unit-normalise the channel vector at every position, weight
the squared differences with the 1x1 "lin" calibration (a convolution without bias, so a per-channel
weight), average over space and sum over layers. Only the backbone differs, so each network is this class
with its own `taps`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bench.errors import MetricError
from bench.weight_files import copy_checked

# LPIPS maps [-1, 1] inputs to the statistics AlexNet was trained on.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class LPIPSHead(nn.Module):
    """Distance between two image batches (N, 3, H, W) in [-1, 1]; one value per image.

    A subclass gives the backbone (`taps`), the metric's name for messages and the smallest side it takes.
    """

    name = "LPIPS"
    min_side = 1

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.lins = nn.ParameterList(
            nn.Parameter(torch.zeros(1, c, 1, 1), requires_grad=False) for c in channels
        )

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's compared layers for scaled inputs, one tensor per lin layer."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_side:
            raise MetricError(
                f"{self.name} needs frames of at least {self.min_side} px a side, got {tuple(x.shape[-2:])}"
            )
        total = x.new_zeros(x.shape[0])
        taps_x, taps_y = self.taps(self.scaled(x)), self.taps(self.scaled(y))
        for fx, fy, lin in zip(taps_x, taps_y, self.lins, strict=True):
            weighted = ((unit_channels(fx) - unit_channels(fy)) ** 2 * lin).sum(dim=1)  # the 1x1 lin conv
            total = total + weighted.mean(dim=(1, 2))
        return total

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def load_lins(self, state: dict[str, torch.Tensor], path: Path) -> None:
        """Fill the lin calibration from a state dict in the published naming (`linN.model.1.weight`)."""
        for n, param in enumerate(self.lins):
            copy_checked(param, state, f"lin{n}.model.1.weight", path, self.name)


def unit_channels(features: torch.Tensor) -> torch.Tensor:
    """Features divided by the length of their channel vector at each position (EPS keeps zeros finite)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
