"""ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu, ECCV 2022) with its AlexNet backbone, in plain torch.

The `stlpips-pytorch` wheel's code imports torchvision, which replaces the CPU torch build, so the suite
installs that wheel without its dependencies, never imports it, and takes only its weight file
`weights/vST0.0/alex_shift_tolerant.pth` (the whole trained backbone and the lin calibration); the network
is built here. `$BENCH_STLPIPS_WEIGHTS` names another copy of that file. Without one,
`stlpips_available()` says why and how to install it, and the metric is reported as unavailable.

The backbone is AlexNet made tolerant to small shifts: nothing is subsampled without a low-pass filter
first. conv1 runs at stride 1 (not 4), every subsampling is a 3x3 binomial blur ([1 2 1] x [1 2 1] / 16)
at stride 2 on features reflect-padded by 2 px a side, and the max-pools run at stride 1 before such a
blur. The compared layers (the LPIPS head of `bench.lpips_head` around them is LPIPS v0.1's):

    conv1 -> blur/2 -> ReLU                      tap 1 (64 channels, 1/2 resolution)
    max-pool 3x3/1 -> blur/2 -> conv2 -> ReLU    tap 2 (192, 1/4)
    max-pool 3x3/1 -> blur/2 -> conv3 -> ReLU    tap 3 (384, 1/8)
    conv4 -> ReLU                                tap 4 (256, 1/8)
    conv5 -> ReLU                                tap 5 (256, 1/8)

conv1 at full resolution makes it several times the cost of LPIPS (docs/performance.md).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bench.errors import MetricError
from bench.lpips_head import LPIPSHead
from bench.weight_files import checked, copy_checked, find, package_file, read_state

ENV_WEIGHTS = "BENCH_STLPIPS_WEIGHTS"
PACKAGE = "stlpips_pytorch"  # the wheel `stlpips-pytorch`; located, never imported
WEIGHTS_IN_PACKAGE = ("weights", "vST0.0", "alex_shift_tolerant.pth")
INSTALL = "pip install --no-deps stlpips-pytorch==0.0.2"
MODEL = "AlexNet, vST0.0 shift-tolerant"

# (prefix of the weights in the published file, in channels, out channels, kernel, padding); all stride 1
_CONVS = (
    ("net.slice1.0", 3, 64, 11, 2),
    ("net.slice2.5", 64, 192, 5, 2),
    ("net.slice3.9", 192, 384, 3, 1),
    ("net.slice4.11", 384, 256, 3, 1),
    ("net.slice5.13", 256, 256, 3, 1),
)
CHANNELS = tuple(c[2] for c in _CONVS)
# the file's copies of the blur filter, one per subsampling: after conv1, then before conv2 and conv3
_BLURS = (("net.slice1.1.filt", 64), ("net.slice2.4.filt", 64), ("net.slice3.8.filt", 192))
BLUR_TAPS = (1.0, 2.0, 1.0)  # the package's default filter size, 3
BLUR_PAD = len(BLUR_TAPS) - 1  # reflect padding on each side (the package's "pad_more")
# smallest side that every layer takes: the second blur's reflect padding needs 3 px after its max-pool
MIN_SIDE = 21


def weight_file() -> Path | str:
    """The ST-LPIPS weight file, or the reason (with the install command) there is none."""
    fallback = package_file(PACKAGE, *WEIGHTS_IN_PACKAGE)
    return find(
        ENV_WEIGHTS,
        fallback,
        f"no ST-LPIPS weights (the stlpips-pytorch wheel is not installed): {INSTALL}",
    )


def stlpips_available() -> str | None:
    """None when ST-LPIPS can run, otherwise the reason it cannot."""
    found = weight_file()
    return found if isinstance(found, str) else None


def _blur_kernel() -> torch.Tensor:
    taps = torch.tensor(BLUR_TAPS)
    kernel = taps[:, None] * taps[None, :]
    return (kernel / kernel.sum()).view(1, 1, len(BLUR_TAPS), len(BLUR_TAPS))


class STLPIPSAlex(LPIPSHead):
    """ST-LPIPS (AlexNet, vST0.0): distance between two image batches (N, 3, H, W) in [-1, 1], one per image."""

    name = "ST-LPIPS"
    min_side = MIN_SIDE

    def __init__(self) -> None:
        super().__init__(CHANNELS)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, padding=p) for _, i, o, k, p in _CONVS)
        self.register_buffer("blur", _blur_kernel())

    def blur_down(self, h: torch.Tensor) -> torch.Tensor:
        """Low-pass, then keep every second row and column: subsampling that cannot alias."""
        padded = F.pad(h, (BLUR_PAD,) * 4, mode="reflect")
        channels = h.shape[1]
        return F.conv2d(padded, self.blur.expand(channels, 1, -1, -1), stride=2, groups=channels)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        conv1, conv2, conv3, conv4, conv5 = self.convs
        h1 = F.relu_(self.blur_down(conv1(x)))
        h2 = F.relu_(conv2(self.blur_down(F.max_pool2d(h1, kernel_size=3, stride=1))))
        h3 = F.relu_(conv3(self.blur_down(F.max_pool2d(h2, kernel_size=3, stride=1))))
        h4 = F.relu_(conv4(h3))
        return [h1, h2, h3, h4, F.relu(conv5(h4))]

    def load_file(self, path: Path) -> STLPIPSAlex:
        """Fill the network from the published file; a mismatch raises MetricError naming the file."""
        state = read_state(path, self.name)
        for (prefix, *_), conv in zip(_CONVS, self.convs, strict=True):
            copy_checked(conv.weight, state, f"{prefix}.weight", path, self.name)
            copy_checked(conv.bias, state, f"{prefix}.bias", path, self.name)
        self.load_lins(state, path)
        # the fixed parts are built here; the file's copies must agree, or it is another variant
        fixed = [(key, self.blur.expand(c, 1, -1, -1)) for key, c in _BLURS]
        fixed += [("scaling_layer.shift", self.shift), ("scaling_layer.scale", self.scale)]
        for key, expected in fixed:
            if not torch.allclose(checked(state, key, tuple(expected.shape), path, self.name), expected):
                raise MetricError(f"{self.name} weights {path}: {key} differs from this network's")
        return self.eval()


def load_network(path: Path, device: str) -> STLPIPSAlex:
    """The network with its weights, on `device`; cached per file version, loading is the slow part."""
    return _cached(path, path.stat().st_mtime_ns, device)


@lru_cache(maxsize=2)
def _cached(path: Path, _stamp: int, device: str) -> STLPIPSAlex:
    return STLPIPSAlex().load_file(path).to(device)
