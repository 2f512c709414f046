"""LPIPS v0.1 with the AlexNet backbone, in plain torch.

The `lpips` package pulls in torchvision, which replaces the CPU torch build, so the network is built
here by hand: AlexNet's five convolutions, LPIPS's input scaling, unit-normalised channels, squared
differences weighted by the 1x1 "lin" calibration, averaged over space and summed over layers.

Nothing is downloaded. The weights come from two files the user already has:
- the AlexNet backbone: `$BENCH_LPIPS_ALEXNET`, else torch's hub cache (`<hub>/checkpoints/alexnet-owt-7be5be79.pth`);
- the lin calibration: `$BENCH_LPIPS_LIN`, else `weights/v0.1/alex.pth` inside an installed `lpips` package
  (located, never imported).
Without both, `lpips_available()` says why and the metric is reported as unavailable.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bench.errors import MetricError

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
# LPIPS maps [-1, 1] inputs to the statistics AlexNet was trained on.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10
MIN_SIDE = 31  # smallest side whose features survive the two 3x3/2 max-pools before conv3


def _hub_alexnet() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def _package_lin() -> Path | None:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"


def _find(env: str, fallback: Path | None, what: str) -> Path | str:
    """The weight file to use, or the reason there is none."""
    if os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
        return path if path.is_file() else f"{env}={path} is not a file"
    if fallback is not None and fallback.is_file():
        return fallback
    where = f" or {fallback}" if fallback is not None else ""
    return f"no {what} weights: set {env}{where}"


def weight_files() -> tuple[Path, Path] | str:
    """(backbone, lin) weight files, or the reason LPIPS cannot run."""
    backbone = _find(ENV_ALEXNET, _hub_alexnet(), "AlexNet backbone")
    lin = _find(ENV_LIN, _package_lin(), "LPIPS lin (v0.1 alex.pth)")
    reasons = [r for r in (backbone, lin) if isinstance(r, str)]
    if reasons:
        return "; ".join(reasons)
    assert isinstance(backbone, Path) and isinstance(lin, Path)
    return backbone, lin


def lpips_available() -> str | None:
    """None when LPIPS can run, otherwise the reason it cannot."""
    found = weight_files()
    return found if isinstance(found, str) else None


class LPIPSAlex(nn.Module):
    """Distance between two image batches (N, 3, H, W) in [-1, 1]; one value per image."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for _, i, o, k, s, p in _CONVS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.lins = nn.ParameterList(
            nn.Parameter(torch.zeros(1, c, 1, 1), requires_grad=False) for c in CHANNELS
        )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ReLU outputs of conv1..conv5, with AlexNet's max-pools after conv1 and conv2."""
        taps = []
        h = (x - self.shift) / self.scale
        for index, conv in enumerate(self.convs):
            if index in (1, 2):
                h = F.max_pool2d(h, kernel_size=3, stride=2)
            h = F.relu(conv(h))
            taps.append(h)
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_SIDE:
            raise MetricError(
                f"LPIPS needs frames of at least {MIN_SIDE} px a side, got {tuple(x.shape[-2:])}"
            )
        total = x.new_zeros(x.shape[0])
        for fx, fy, lin in zip(self.features(x), self.features(y), self.lins, strict=True):
            nx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
            ny = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
            weighted = ((nx - ny) ** 2 * lin).sum(dim=1)  # the 1x1 lin conv, without bias
            total = total + weighted.mean(dim=(1, 2))
        return total

    def load_files(self, backbone: Path, lin: Path) -> LPIPSAlex:
        """Fill the network from the two weight files; a mismatch raises MetricError naming the file."""
        alex = _load(backbone)
        for (index, i, o, k, _, _), conv in zip(_CONVS, self.convs, strict=True):
            _copy(conv.weight, alex, f"features.{index}.weight", (o, i, k, k), backbone)
            _copy(conv.bias, alex, f"features.{index}.bias", (o,), backbone)
        calib = _load(lin)
        for n, (param, c) in enumerate(zip(self.lins, CHANNELS, strict=True)):
            _copy(param, calib, f"lin{n}.model.1.weight", (1, c, 1, 1), lin)
        return self.eval()


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise MetricError(f"cannot read LPIPS weights {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise MetricError(f"LPIPS weights {path} are not a state dict")
    return state


def _copy(
    dst: torch.Tensor, state: dict[str, torch.Tensor], key: str, shape: tuple[int, ...], path: Path
) -> None:
    value = state.get(key)
    if value is None or tuple(value.shape) != shape:
        got = "missing" if value is None else tuple(value.shape)
        raise MetricError(f"LPIPS weights {path}: {key} should be {shape}, got {got}")
    with torch.no_grad():
        dst.copy_(value)


def load_network(backbone: Path, lin: Path, device: str) -> LPIPSAlex:
    """The network with its weights, on `device`; cached per file version, loading is the slow part."""
    return _cached(backbone, backbone.stat().st_mtime_ns, lin, lin.stat().st_mtime_ns, device)


@lru_cache(maxsize=4)
def _cached(backbone: Path, _bstamp: int, lin: Path, _lstamp: int, device: str) -> LPIPSAlex:
    return LPIPSAlex().load_files(backbone, lin).to(device)
