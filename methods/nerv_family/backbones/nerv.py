"""The NeRV generator: frame index -> positional encoding -> MLP stem -> conv + PixelShuffle blocks -> RGB.

Shared by every NeRV-family method. The layer factories are parameters so that a masked variant (random
fixed weights with trained scores) can reuse the exact architecture, and `count_parameters` works from the
configuration alone, so a method can size its network for a target rate before building anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import MethodError
from methods.nerv_family.backbones.fields import prime_factors, strict_fields
from methods.nerv_family.backbones.render import render_inputs

MAX_PRIME_STRIDE = (
    7  # a stride s costs a conv with s^2 times the output channels; larger primes are not useful
)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "leaky": lambda: nn.LeakyReLU(0.01),
}
OUTPUTS = ("tanh", "sigmoid")
MAX_EMBED_LEVELS = 4096
MAX_LOG_FREQUENCY = 80.0  # ln of the largest positional-encoding frequency (float32 stays finite)
MAX_EXPANSION = 64.0


@dataclass(frozen=True)
class NeRVConfig:
    """Architecture of one NeRV network; the defaults are NeRV-S at 720p."""

    embed_base: float = 1.25  # b of the positional encoding
    embed_levels: int = 40  # l: 2l inputs to the stem
    stem_dims: tuple[int, ...] = (512,)  # hidden widths of the MLP stem
    start: tuple[int, int] = (9, 16)  # (h0, w0) of the stem's output grid
    fc_dim: int = 26  # C0: channels of the stem's output grid
    expansion: float = 1.0  # C1 = C0 * expansion
    reduction: int = 2  # C_i = max(C_{i-1} // reduction, lower_width)
    lower_width: int = 96  # the narrowest conv width
    strides: tuple[int, ...] = (5, 2, 2, 2, 2)  # upscaling factor of each block
    activation: str = "gelu"  # gelu, relu, silu or leaky
    output: str = "tanh"  # "tanh": (tanh(x) + 1) / 2 as NeRV; "sigmoid"

    def __post_init__(self) -> None:
        # JSON round trips give lists; keep the frozen dataclass hashable and comparable.
        object.__setattr__(self, "stem_dims", tuple(int(d) for d in self.stem_dims))
        object.__setattr__(self, "start", tuple(int(s) for s in self.start))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))

    @property
    def embed_length(self) -> int:
        return 2 * self.embed_levels

    @property
    def output_size(self) -> tuple[int, int]:
        scale = math.prod(self.strides)
        return self.start[0] * scale, self.start[1] * scale

    def channels(self) -> list[int]:
        """Output channels of each block: C1 = C0 * expansion, then halving down to the lower width."""
        widths: list[int] = []
        current = self.fc_dim
        for i, stride in enumerate(self.strides):
            if i == 0:
                current = int(current * self.expansion)
            else:
                current = max(current // (self.reduction if stride > 1 else 1), self.lower_width)
            widths.append(current)
        return widths

    def validate(self) -> None:
        """Refuse shapes that cannot be built, with the field to fix."""
        problems = []
        if not 1 <= self.embed_levels <= MAX_EMBED_LEVELS:
            problems.append(f"embed_levels must be in 1..{MAX_EMBED_LEVELS}")
        if not (math.isfinite(self.embed_base) and 0 < self.embed_base):
            problems.append("embed_base must be a finite positive number")
        elif (self.embed_levels - 1) * math.log(max(self.embed_base, 1.0)) > MAX_LOG_FREQUENCY:
            problems.append("embed_base ** embed_levels overflows; lower either")
        if any(d < 1 for d in self.stem_dims):
            problems.append("stem dims must be >= 1")
        if len(self.start) != 2 or min(self.start) < 1:
            problems.append("start grid must be two sizes >= 1")
        if self.fc_dim < 1 or self.lower_width < 1 or self.reduction < 1:
            problems.append("fc_dim, lower_width and reduction must be >= 1")
        if any(s < 1 for s in self.strides):
            problems.append("strides must be >= 1")
        if not (math.isfinite(self.expansion) and 0 < self.expansion <= MAX_EXPANSION):
            problems.append(f"expansion must be a finite number in (0, {MAX_EXPANSION}]")
        elif self.strides and int(self.fc_dim * self.expansion) < 1:
            problems.append("fc_dim * expansion must be >= 1")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation '{self.activation}' is not one of {', '.join(ACTIVATIONS)}")
        if self.output not in OUTPUTS:
            problems.append(f"output '{self.output}' is not one of {', '.join(OUTPUTS)}")
        if problems:
            raise MethodError(f"invalid NeRV architecture: {'; '.join(problems)}")

    @classmethod
    def from_json(cls, data: Any) -> NeRVConfig:
        """Strictly parse what `dataclasses.asdict` wrote into a stream header; ValueError on anything else.

        Only the exact JSON types an encoder writes pass (a bool is not an int, a string or a float is not
        a size), so a forged header cannot be coerced into a different network.
        """
        values = strict_fields(cls, data)
        if len(values["start"]) != 2:
            raise ValueError("start must hold two sizes")
        config = cls(**values)
        config.validate()
        return config


def choose_strides(height: int, width: int, start: tuple[int, int] = (9, 16)) -> tuple[int, ...]:
    """Upscaling strides from the start grid to (height, width): prime factors, largest first (NeRV's order).

    1080p -> (5, 3, 2, 2, 2), 720p -> (5, 2, 2, 2, 2), 180x320 -> (5, 2, 2), 72x128 -> (2, 2, 2).
    """
    h0, w0 = start
    scale = height // h0 if h0 > 0 else 0
    factors = prime_factors(scale) if scale >= 1 else []
    if scale < 1 or (h0 * scale, w0 * scale) != (height, width) or any(f > MAX_PRIME_STRIDE for f in factors):
        examples = ", ".join(f"{w0 * k}x{h0 * k}" for k in (8, 20, 80, 120))
        raise MethodError(
            f"frame size {width}x{height} is not reachable from the {w0}x{h0} start grid: width and height must be "
            f"{w0}k and {h0}k with k a product of primes <= {MAX_PRIME_STRIDE} (e.g. {examples}); resize the clip"
        )
    return tuple(sorted(factors, reverse=True))


def choose_grid(
    height: int, width: int, start: tuple[int, int] = (9, 16)
) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(start, strides) for any frame size: the preferred start when it fits, else the largest smooth scale.

    The fallback divides both sides by the largest common factor made of primes <= 7, so for example
    176x144 gets a 11x9 start and strides (2, 2, 2, 2).
    """
    try:
        return start, choose_strides(height, width, start)
    except MethodError as preferred:
        common = math.gcd(height, width)
        scale = math.prod(f for f in prime_factors(common) if f <= MAX_PRIME_STRIDE) if common > 1 else 1
        if scale == 1:  # no upscaling block would fit: say which sizes work rather than build a stem-only net
            raise preferred from None
    grid = (height // scale, width // scale)
    return grid, choose_strides(height, width, grid)


_SHAPE_FIELDS = (
    "embed_base",
    "embed_levels",
    "stem_dims",
    "start",
    "fc_dim",
    "expansion",
    "reduction",
    "lower_width",
    "strides",
    "activation",
)


def architecture_of(config: object) -> NeRVConfig:
    """The generator architecture named by a method config's shape fields (the methods share them)."""
    return NeRVConfig(**{name: getattr(config, name) for name in _SHAPE_FIELDS})


@dataclass(frozen=True)
class NeRVShape:
    """The network-shape fields of nerv-dense's and nerv-pruned's configs (the same base shape for both).

    NeRV-S's stem and C0 with half its lower width, the stem capped at half the frame count; `plan` scales
    the shape to the target rate through `width`. Why these defaults: `NeRVDenseConfig`.
    """

    stem_dims: tuple[int, ...] = (512,)  # hidden widths of the MLP stem of the base shape (NeRV-S: 512)
    fc_dim: int = 26  # C0: channels of the stem's output grid in the base shape (NeRV-S: 26)
    lower_width: int = 48  # the narrowest conv width of the base shape (NeRV-S: 96)
    expansion: float = 1.0  # C1 = C0 * expansion
    reduction: int = 2  # each block's width is the previous one // reduction, down to the lower width
    embed_base: float = 1.25  # b of the positional encoding
    embed_levels: int = 40  # l: frequencies of the positional encoding (2l stem inputs)
    activation: str = "gelu"  # gelu, relu, silu or leaky
    stem_per_frame: float = 0.5  # last stem width at most this x frames (0: no cap)
    start: tuple[int, int] = (9, 16)  # preferred stem grid; other aspect ratios get their own
    strides: tuple[int, ...] = ()  # empty: chosen from the clip size
    width: float = 1.0  # conv width factor relative to the base shape (set by `plan`)

    def __post_init__(self) -> None:
        for name in ("stem_dims", "start", "strides"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    def architecture(self) -> NeRVConfig:
        return architecture_of(self)


SHAPE_FIELDS = tuple(f.name for f in dataclasses.fields(NeRVShape))


def decode_macs(config: NeRVConfig) -> int:
    """Multiply-accumulates of the generator for one frame, from the architecture (the positional encoding's
    sines and the activations are not counted)."""
    dims = [config.embed_length, *config.stem_dims, config.start[0] * config.start[1] * config.fc_dim]
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
    (h, w), c_in = config.start, config.fc_dim
    for c_out, stride in zip(config.channels(), config.strides, strict=True):
        macs += c_in * c_out * stride * stride * 9 * h * w  # the 3x3 conv runs before the shuffle
        h, w, c_in = h * stride, w * stride, c_out
    return macs + c_in * 3 * h * w


def macs_per_pixel(config: NeRVConfig) -> float:
    """`decode_macs` per output pixel, as the records report it."""
    height, width = config.output_size
    return round(decode_macs(config) / (height * width), 2)


def count_parameters(config: NeRVConfig) -> int:
    """Parameters of the network described by `config`, without building it."""
    return sum(math.prod(shape) for shape in parameter_shapes(config).values())


class PositionalEncoding(nn.Module):
    """Gamma(t) = (sin(b^i pi t), cos(b^i pi t)) for i < l, interleaved as NeRV orders them."""

    def __init__(self, base: float, levels: int) -> None:
        super().__init__()
        frequencies = torch.tensor([base**i * math.pi for i in range(levels)], dtype=torch.float64)
        self.register_buffer("frequencies", frequencies.float(), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None].float() * self.frequencies
        return torch.stack((angles.sin(), angles.cos()), dim=2).flatten(1)


class UpBlock(nn.Module):
    """Conv3x3(C_in -> C_out * s^2) -> PixelShuffle(s) -> activation."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, activation: str, conv_layer: Callable[..., nn.Module]
    ):
        super().__init__()
        self.conv = conv_layer(c_in, c_out * stride * stride, kernel_size=3, padding=1)
        self.shuffle = nn.PixelShuffle(stride)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class NeRVGenerator(nn.Module):
    """Frame indices t in [0, 1] of shape (B,) -> frames (B, 3, H, W) in [0, 1].

    Parameter names are stable (``stem.{i}``, ``blocks.{i}.conv``, ``head``) because streams list them.
    """

    def __init__(
        self,
        config: NeRVConfig,
        linear_layer: Callable[..., nn.Module] = nn.Linear,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.encoding = PositionalEncoding(config.embed_base, config.embed_levels)
        dims = [config.embed_length, *config.stem_dims, config.start[0] * config.start[1] * config.fc_dim]
        self.stem = nn.ModuleList(linear_layer(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.stem_act = ACTIVATIONS[config.activation]()
        blocks, c_in = [], config.fc_dim
        for c_out, stride in zip(config.channels(), config.strides, strict=True):
            blocks.append(UpBlock(c_in, c_out, stride, config.activation, conv_layer))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = conv_layer(c_in, 3, kernel_size=1)

    def batch_input(self, times: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """What a training batch feeds the network: its frames' times (the frames are only the target)."""
        return times

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = self.encoding(t)
        for linear in self.stem:
            x = self.stem_act(linear(x))
        h0, w0 = self.config.start
        x = x.view(x.shape[0], self.config.fc_dim, h0, w0)
        for block in self.blocks:
            x = block(x)
        x = self.head(x)
        if self.config.output == "sigmoid":
            return torch.sigmoid(x)
        return (torch.tanh(x) + 1) * 0.5


def frame_times(num_frames: int) -> torch.Tensor:
    """NeRV's frame coordinates t = i / T (float32), the generator's input for frame i."""
    return torch.arange(num_frames, dtype=torch.float32) / num_frames


def render(
    model: nn.Module, num_frames: int, batch_size: int = 4, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """All frames as uint8 (T, H, W, 3) on the CPU, through `render_inputs` on the frame times."""
    return render_inputs(model, frame_times(num_frames), batch_size, device)


def parameter_shapes(config: NeRVConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in the generator's order, from the configuration alone."""
    shapes: dict[str, tuple[int, ...]] = {}
    dims = [config.embed_length, *config.stem_dims, config.start[0] * config.start[1] * config.fc_dim]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        shapes[f"stem.{i}.weight"] = (b, a)
        shapes[f"stem.{i}.bias"] = (b,)
    c_in = config.fc_dim
    for i, (c_out, stride) in enumerate(zip(config.channels(), config.strides, strict=True)):
        shapes[f"blocks.{i}.conv.weight"] = (c_out * stride * stride, c_in, 3, 3)
        shapes[f"blocks.{i}.conv.bias"] = (c_out * stride * stride,)
        c_in = c_out
    shapes["head.weight"] = (3, c_in, 1, 1)
    shapes["head.bias"] = (3,)
    return shapes


def render_weights(
    arch: NeRVConfig, weights: dict[str, torch.Tensor], frames: int, device: str, batch_size: int = 4
) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) of the network with exactly these weights (the decoders' renderer)."""
    model = NeRVGenerator(arch)
    model.load_state_dict(weights, strict=True)
    return render(model.to(device), frames, batch_size=batch_size, device=device)
