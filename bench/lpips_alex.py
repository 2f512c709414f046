"""LPIPS v0.1 with the AlexNet backbone, in plain torch.

The `lpips` package pulls in torchvision, which replaces the CPU torch build, so the network is built
here by hand: AlexNet's five convolutions under the LPIPS head (`bench.lpips_head`: input scaling,
unit-normalised channels, squared differences weighted by the 1x1 "lin" calibration, averaged over space
and summed over layers).

Nothing is downloaded. The weights come from two files the user already has:
- the AlexNet backbone: `$BENCH_LPIPS_ALEXNET`, else torch's hub cache (`<hub>/checkpoints/alexnet-owt-7be5be79.pth`);
- the lin calibration: `$BENCH_LPIPS_LIN`, else `weights/v0.1/alex.pth` inside an installed `lpips` package
  (located, never imported).
Without both, `lpips_available()` says why and the metric is reported as unavailable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bench.lpips_head import LPIPSHead
from bench.weight_files import copy_checked, find, package_file, read_state

ENV_ALEXNET = "BENCH_LPIPS_ALEXNET"
ENV_LIN = "BENCH_LPIPS_LIN"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"

# (index in the usual `features.N` naming, in channels, out channels, kernel, stride, padding)
_CONVS = (
    (0, 3, 64, 11, 4, 2),
    (3, 64, 192, 5, 1, 2),
    (6, 192, 384, 3, 1, 1),
    (8, 384, 256, 3, 1, 1),
    (10, 256, 256, 3, 1, 1),
)
CHANNELS = tuple(c[2] for c in _CONVS)
MIN_SIDE = 31  # smallest side whose features survive the two 3x3/2 max-pools before conv3


def _hub_alexnet() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def _find(env: str, fallback: Path | None, what: str) -> Path | str:
    """The weight file to use, or the reason there is none."""
    where = f" or {fallback}" if fallback is not None else ""
    return find(env, fallback, f"no {what} weights: set {env}{where}")


def weight_files() -> tuple[Path, Path] | str:
    """(backbone, lin) weight files, or the reason LPIPS cannot run."""
    backbone = _find(ENV_ALEXNET, _hub_alexnet(), "AlexNet backbone")
    lin = _find(ENV_LIN, package_file("lpips", "weights", "v0.1", "alex.pth"), "LPIPS lin (v0.1 alex.pth)")
    reasons = [r for r in (backbone, lin) if isinstance(r, str)]
    if reasons:
        return "; ".join(reasons)
    assert isinstance(backbone, Path) and isinstance(lin, Path)
    return backbone, lin


def lpips_available() -> str | None:
    """None when LPIPS can run, otherwise the reason it cannot."""
    found = weight_files()
    return found if isinstance(found, str) else None


class LPIPSAlex(LPIPSHead):
    """LPIPS v0.1 (AlexNet): distance between two image batches (N, 3, H, W) in [-1, 1], one per image."""

    name = "LPIPS"
    min_side = MIN_SIDE

    def __init__(self) -> None:
        super().__init__(CHANNELS)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for _, i, o, k, s, p in _CONVS)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ReLU outputs of conv1..conv5, with AlexNet's max-pools after conv1 and conv2."""
        taps = []
        h = x
        for index, conv in enumerate(self.convs):
            if index in (1, 2):
                h = F.max_pool2d(h, kernel_size=3, stride=2)
            h = F.relu(conv(h))
            taps.append(h)
        return taps

    def load_files(self, backbone: Path, lin: Path) -> LPIPSAlex:
        """Fill the network from the two weight files; a mismatch raises MetricError naming the file."""
        alex = read_state(backbone, self.name)
        for (index, *_), conv in zip(_CONVS, self.convs, strict=True):
            copy_checked(conv.weight, alex, f"features.{index}.weight", backbone, self.name)
            copy_checked(conv.bias, alex, f"features.{index}.bias", backbone, self.name)
        self.load_lins(read_state(lin, self.name), lin)
        return self.eval()


def load_network(backbone: Path, lin: Path, device: str) -> LPIPSAlex:
    """The network with its weights, on `device`; cached per file version, loading is the slow part."""
    return _cached(backbone, backbone.stat().st_mtime_ns, lin, lin.stat().st_mtime_ns, device)


@lru_cache(maxsize=4)
def _cached(backbone: Path, _bstamp: int, lin: Path, _lstamp: int, device: str) -> LPIPSAlex:
    return LPIPSAlex().load_files(backbone, lin).to(device)
