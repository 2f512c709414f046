"""HNeRV (Chen et al., CVPR 2023): frame -> ConvNeXt encoder -> tiny embedding -> HNeRV decoder -> frame.

The decoder follows the reference code (haochen-rye/HNeRV, `model_all.py`): a 1x1 convolution from the
embedding's channels to C0, then one HNeRV block per stride, conv(k_i) -> PixelShuffle(s_i) -> GELU with
kernel sizes k_i = min(k_min + 2i, k_max) (the reference's ``--ks 0_1_5``: 1, 3, 5, 5, 5) and widths
C_i = max(round(C_{i-1} / reduction), lower_width) (``--reduce 1.2``), and a 3x3 head to RGB with output
(tanh(x) + 1) / 2. Only the decoder and the embeddings are coded; the encoder stays with the sender.

Strides are given per axis (the reference's are square) so that any clip whose sides factor into small
strides gets an embedding grid of a few positions: the reference's 2x4 grid at 640x1280 (stride 320)
cannot exist at 180x320, whose sides share only the factor 20. `stride_plan` chooses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import MethodError
from methods.nerv_family.backbones.convnext import ConvNeXtEncoder
from methods.nerv_family.backbones.fields import prime_factors, strict_fields

MAX_STRIDE = 7  # a stride s costs a conv with s^2 times the output channels; the reference's largest is 5
MAX_STAGES = 12
MAX_KERNEL = 15
MAX_GRID_SIDE = 8  # a clip needing a larger embedding grid is not one HNeRV's strides suit (reference: 2x4)


@dataclass(frozen=True)
class HNeRVConfig:
    """Architecture of one HNeRV network; the defaults are the reference's Bunny 1.5M model at 640x1280."""

    embed_grid: tuple[int, int] = (2, 4)  # (rows, columns) of the embedding of one frame
    strides_h: tuple[int, ...] = (5, 4, 4, 2, 2)  # row stride of each encoder stage and decoder block
    strides_w: tuple[int, ...] = (5, 4, 4, 2, 2)  # column stride of each encoder stage and decoder block
    embed_channels: int = 16  # channels of the embedding (the reference's --enc_dim 64_16)
    enc_width: int = 64  # channels of the encoder's stages but the last (--enc_dim 64_16)
    enc_blocks: int = 1  # ConvNeXt blocks per encoder stage (--num_blks 1_1)
    fc_dim: int = 68  # C0: channels out of the decoder's first 1x1 conv (the reference solves it: 68)
    reduction: float = 1.2  # C_i = max(round(C_{i-1} / reduction), lower_width) (--reduce 1.2)
    lower_width: int = 12  # the narrowest decoder width (--lower_width 12)
    kernel_min: int = 1  # k_i = min(kernel_min + 2 i, kernel_max) (--ks 0_1_5)
    kernel_max: int = 5  # the largest decoder kernel (--ks 0_1_5)

    def __post_init__(self) -> None:
        for name in ("embed_grid", "strides_h", "strides_w"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @property
    def strides(self) -> tuple[tuple[int, int], ...]:
        return tuple(zip(self.strides_h, self.strides_w, strict=True))

    @property
    def output_size(self) -> tuple[int, int]:
        return self.embed_grid[0] * math.prod(self.strides_h), self.embed_grid[1] * math.prod(self.strides_w)

    def channels(self) -> list[int]:
        """Output channels of each decoder block."""
        widths, current = [], self.fc_dim
        for _ in self.strides_h:
            current = int(max(round(current / self.reduction), self.lower_width))
            widths.append(current)
        return widths

    def kernels(self) -> list[int]:
        return [min(self.kernel_min + 2 * i, self.kernel_max) for i in range(len(self.strides_h))]

    def encoder_dims(self) -> tuple[int, ...]:
        return (self.enc_width,) * (len(self.strides_h) - 1) + (self.embed_channels,)

    def validate(self) -> None:
        """Refuse shapes that cannot be built, with the field to fix."""
        problems = []
        if len(self.embed_grid) != 2 or min(self.embed_grid) < 1:
            problems.append("embed_grid must be two sizes >= 1")
        if len(self.strides_h) != len(self.strides_w) or not 1 <= len(self.strides_h) <= MAX_STAGES:
            problems.append(f"strides_h and strides_w must be as long, 1..{MAX_STAGES} stages")
        if any(not 1 <= s <= MAX_STRIDE for s in (*self.strides_h, *self.strides_w)):
            problems.append(f"strides must be in 1..{MAX_STRIDE}")
        if min(self.embed_channels, self.enc_width, self.enc_blocks + 1, self.fc_dim, self.lower_width) < 1:
            problems.append("embed_channels, enc_width, fc_dim and lower_width must be >= 1, enc_blocks >= 0")
        if not (math.isfinite(self.reduction) and 0.1 <= self.reduction <= 16):
            problems.append("reduction must be a finite number in [0.1, 16]")
        if not (1 <= self.kernel_min <= self.kernel_max <= MAX_KERNEL and self.kernel_min % 2 == 1):
            problems.append(f"kernels must be odd with 1 <= kernel_min <= kernel_max <= {MAX_KERNEL}")
        if problems:
            raise MethodError(f"invalid HNeRV architecture: {'; '.join(problems)}")

    @classmethod
    def from_json(cls, data: Any) -> HNeRVConfig:
        """Strictly parse what `dataclasses.asdict` wrote into a stream header; ValueError on anything else."""
        values = strict_fields(cls, data)
        if len(values["embed_grid"]) != 2:
            raise ValueError("embed_grid must hold two sizes")
        config = cls(**values)
        config.validate()
        return config


# --- strides for a clip -----------------------------------------------------------------------------------


def _splits(n: int, stages: int, largest: int) -> list[int] | None:
    """n as `stages` strides of at most `largest`, large ones first, as even as the primes allow (the
    reference's 320 = 5, 4, 4, 2, 2): the two smallest factors merge while there are too many; None if
    they cannot."""
    factors = sorted(prime_factors(n))
    if any(f > largest for f in factors):
        return None
    while len(factors) > stages:
        pairs = [(a * b, i, j) for i, a in enumerate(factors) for j, b in enumerate(factors) if i < j]
        fitting = [p for p in sorted(pairs) if p[0] <= largest]
        if not fitting:
            return None
        product, i, j = fitting[0]
        factors = sorted([f for k, f in enumerate(factors) if k not in (i, j)] + [product])
    return sorted(factors, reverse=True) + [1] * (stages - len(factors))


def stride_plan(
    height: int, width: int, stages: int, max_stride: int
) -> tuple[tuple[int, int], tuple, tuple]:
    """(embed_grid, strides_h, strides_w): the smallest embedding grid whose sides upscale to the frame by
    `stages` strides each of at most `max_stride` (ties: the grid closest to the frame's aspect ratio).

    180x320 with 5 stages of at most 5 gets a 1x1 grid, rows (5, 3, 3, 2, 2), columns (5, 4, 4, 2, 2);
    72x128 a 1x1 grid; 1080x1920 a 2x2 grid.
    """
    best: tuple[tuple[int, float], tuple[tuple[int, int], tuple, tuple]] | None = None
    for rows in (d for d in range(1, min(height, MAX_GRID_SIDE) + 1) if height % d == 0):
        sh = _splits(height // rows, stages, max_stride)
        if sh is None:
            continue
        for cols in (d for d in range(1, min(width, MAX_GRID_SIDE) + 1) if width % d == 0):
            sw = _splits(width // cols, stages, max_stride)
            if sw is None:
                continue
            rank = (rows * cols, abs(math.log(rows * width / (cols * height))))
            if best is None or rank < best[0]:
                best = (rank, ((rows, cols), tuple(sh), tuple(sw)))
            break  # more columns only grow the grid
    if best is None:
        raise MethodError(
            f"frame size {width}x{height} is not reachable by HNeRV's {stages} strides of at most {max_stride}: "
            f"each side must be at most {MAX_GRID_SIDE} times a product of {stages} factors <= {max_stride} "
            "(e.g. 320x180, 640x360, 1280x720, 1920x1080); resize the clip"
        )
    return best[1]


# --- the networks ---------------------------------------------------------------------------------------


class Shuffle(nn.Module):
    """PixelShuffle with separate row and column factors (nn.PixelShuffle where they are equal)."""

    def __init__(self, rows: int, cols: int) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols
        self.square = nn.PixelShuffle(rows) if rows == cols else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.square is not None:
            return self.square(x)
        n, c, h, w = x.shape
        c //= self.rows * self.cols
        x = x.reshape(n, c, self.rows, self.cols, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(n, c, h * self.rows, w * self.cols)


class HNeRVBlock(nn.Module):
    """conv(k) (C_in -> C_out * s_h * s_w) -> PixelShuffle(s_h, s_w) -> GELU."""

    def __init__(
        self, c_in: int, c_out: int, stride: tuple[int, int], kernel: int, conv: Callable[..., nn.Module]
    ):
        super().__init__()
        self.conv = conv(c_in, c_out * stride[0] * stride[1], kernel_size=kernel, padding=(kernel - 1) // 2)
        self.shuffle = Shuffle(*stride)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class HNeRVDecoder(nn.Module):
    """Embeddings (B, C_e, h, w) -> frames (B, 3, H, W) in [0, 1]: everything a stream codes.

    Parameter names are stable (``stem``, ``blocks.{i}.conv``, ``head``) because streams list them.
    """

    def __init__(self, config: HNeRVConfig, conv_layer: Callable[..., nn.Module] = nn.Conv2d) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.stem = conv_layer(config.embed_channels, config.fc_dim, kernel_size=1)
        self.stem_act = nn.GELU()
        blocks, c_in = [], config.fc_dim
        for c_out, stride, kernel in zip(config.channels(), config.strides, config.kernels(), strict=True):
            blocks.append(HNeRVBlock(c_in, c_out, stride, kernel, conv_layer))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = conv_layer(c_in, 3, kernel_size=3, padding=1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem(embeddings))
        for block in self.blocks:
            x = block(x)
        return (torch.tanh(self.head(x)) + 1) * 0.5


class HNeRVModel(nn.Module):
    """Frames (B, 3, H, W) in [0, 1] -> the same frames rebuilt through the embedding (the training model).

    `conv_layer` builds the decoder's convolutions; `encoder` replaces the reference's ConvNeXt encoder (a
    masked one, say), built by the caller so that its layers are numbered apart from the decoder's.
    """

    def __init__(
        self,
        config: HNeRVConfig,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        config.validate()
        self.config = config
        if encoder is None:
            encoder = ConvNeXtEncoder(config.encoder_dims(), config.strides, config.enc_blocks)
        self.encoder = encoder
        self.decoder = HNeRVDecoder(config, conv_layer)

    def batch_input(self, times: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """What a training batch feeds the network: the frames themselves (the encoder's input)."""
        return frames

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(frames))


# --- counting from the configuration alone ---------------------------------------------------------------


def decoder_shapes(config: HNeRVConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every decoder parameter, in the decoder's order (what a stream codes)."""
    shapes: dict[str, tuple[int, ...]] = {
        "stem.weight": (config.fc_dim, config.embed_channels, 1, 1),
        "stem.bias": (config.fc_dim,),
    }
    c_in = config.fc_dim
    for i, (c_out, (sh, sw), k) in enumerate(
        zip(config.channels(), config.strides, config.kernels(), strict=True)
    ):
        shapes[f"blocks.{i}.conv.weight"] = (c_out * sh * sw, c_in, k, k)
        shapes[f"blocks.{i}.conv.bias"] = (c_out * sh * sw,)
        c_in = c_out
    shapes["head.weight"] = (3, c_in, 3, 3)
    shapes["head.bias"] = (3,)
    return shapes


def decoder_parameters(config: HNeRVConfig) -> int:
    return sum(math.prod(s) for s in decoder_shapes(config).values())


def encoder_parameters(config: HNeRVConfig) -> int:
    """Parameters of the ConvNeXt encoder (never coded), counted from the configuration."""
    total, previous = 0, 3
    for dim, (sh, sw) in zip(config.encoder_dims(), config.strides, strict=True):
        total += previous * dim * sh * sw + dim + 2 * (dim if previous == 3 else previous)  # conv + LayerNorm
        block = dim * 49 + dim + 2 * dim + dim * 4 * dim + 4 * dim + 4 * dim * dim + dim + dim
        total += config.enc_blocks * block
        previous = dim
    return total


def embedding_values(config: HNeRVConfig, frames: int) -> int:
    return frames * config.embed_channels * config.embed_grid[0] * config.embed_grid[1]


def decode_macs(config: HNeRVConfig) -> int:
    """Multiply-accumulates of the decoder for one frame, from the architecture."""
    h, w = config.embed_grid
    macs = config.embed_channels * config.fc_dim * h * w
    c_in = config.fc_dim
    for c_out, (sh, sw), k in zip(config.channels(), config.strides, config.kernels(), strict=True):
        macs += c_in * c_out * sh * sw * k * k * h * w  # the conv runs on the grid before the shuffle
        h, w, c_in = h * sh, w * sw, c_out
    return macs + c_in * 3 * 9 * h * w


def macs_per_pixel(config: HNeRVConfig) -> float:
    """`decode_macs` per output pixel, as the records report it."""
    height, width = config.output_size
    return round(decode_macs(config) / (height * width), 2)
