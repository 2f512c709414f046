"""Masked layers: random fixed weights regenerated from a seed, trained scores, nested masks with fixed or
learned scales, straight-through gradients; and the helpers that read a masked model's code."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BitstreamError, MethodError
from methods.nerv_family.masks.levels import apply_levels, level_sums, nested_levels
from methods.nerv_family.masks.settings import MaskSettings, kept_counts, layer_seed


def _mask_gradients(
    grad: torch.Tensor,
    scores: torch.Tensor,
    alphas: torch.Tensor,
    weight: torch.Tensor,
    levels: torch.Tensor,
    need_alphas: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradients of W = w * (alpha_1 + ... + alpha_lambda) for one layer: straight through to the scores,
    and per-level sums to the alphas when they are learned."""
    through = grad * weight  # dL/dmask_n = through * alpha_n for every mask n
    # dW/d alpha_n = w * [lambda >= n]
    grad_alphas = level_sums(levels, through, alphas.numel()).to(alphas.device) if need_alphas else None
    # Each of the N masks passes its gradient straight to |s|, then through the abs.
    grad_scores = through.mul_(scores.sign()).mul_(alphas.sum())
    return grad_scores, grad_alphas


class _HierarchicalMasks(torch.autograd.Function):
    """The effective weights of a list of masked layers from their scores and alphas, in one autograd node;
    straight-through gradients to the scores.

    `MaskedNeRV` passes all its layers at once. Interleaved with the convolutions, each layer's handful of
    small operations ran on caches the convolutions had just flushed; in one burst they measured ~0.6 ms
    a step faster on the smallest rate-sized network (a bf16 dense step there takes ~11 ms).
    """

    @staticmethod
    def forward(ctx: Any, layers: list[MaskedLayer], *scores_then_alphas: torch.Tensor):
        count = len(layers)
        scores, alphas = scores_then_alphas[:count], scores_then_alphas[count:]
        levels = [
            nested_levels(s.detach().abs(), layer.counts) for layer, s in zip(layers, scores, strict=True)
        ]
        weights = [layer.weight for layer in layers]
        ctx.save_for_backward(*scores, *alphas, *weights, *levels)  # levels as uint8: 1 byte a weight
        return tuple(apply_levels(w, lv, a) for w, lv, a in zip(weights, levels, alphas, strict=True))

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor):
        count = len(grads)
        scores, alphas, weights, levels = (ctx.saved_tensors[i * count : (i + 1) * count] for i in range(4))
        grad_scores, grad_alphas = [], []
        for i in range(count):
            need_alphas = ctx.needs_input_grad[1 + count + i]
            g_scores, g_alphas = _mask_gradients(
                grads[i], scores[i], alphas[i], weights[i], levels[i], need_alphas
            )
            grad_scores.append(g_scores)
            grad_alphas.append(g_alphas)
        return (None, *grad_scores, *grad_alphas)


# --- masked layers ----------------------------------------------------------------------------------------


class MaskedLayer(nn.Module):
    """Shared state of `MaskedLinear` and `MaskedConv2d`: random buffers, scores, alphas, the level code.

    In training the levels come from the scores at every forward; after `load_code` they come from a
    stored level map and stored alphas (the decoder's path), through the same `apply_levels`.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    levels: torch.Tensor | None
    coded_alphas: torch.Tensor | None

    def _setup(
        self,
        weight_shape: tuple[int, ...],
        fan_in: int,
        bias: bool,
        settings: MaskSettings,
        seed: int,
        index: int,
        device: Any,
        dtype: Any,
    ) -> None:
        if dtype not in (None, torch.float32):
            raise MethodError(f"masked layers compute in float32, got dtype {dtype}")
        if seed < 0:
            raise MethodError(f"the network seed must be >= 0, got {seed}")
        self.settings, self.seed, self.index, self.fan_in = settings, seed, index, fan_in
        self.scale = settings.scale(fan_in)
        self.counts = kept_counts(math.prod(weight_shape), settings.densities)
        # Random tensors are drawn on the CPU (identical on any device), then moved.
        gen = torch.Generator().manual_seed(layer_seed(seed, index, 0))
        w0 = torch.randn(weight_shape, generator=gen)
        self.register_buffer("weight", (w0.sign() if settings.weight_init == "signed" else w0).to(device))
        bound = 1.0 / math.sqrt(fan_in)  # nn.Linear / nn.Conv2d's default bias range
        out = weight_shape[0]
        self.register_buffer(
            "bias", (torch.rand(out, generator=gen) * 2 - 1).mul_(bound).to(device) if bias else None
        )
        score_gen = torch.Generator().manual_seed(layer_seed(seed, index, 1))
        # Kaiming uniform as edge-popup (a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        scores = (torch.rand(weight_shape, generator=score_gen) * 2 - 1).mul_(bound)
        self.scores = nn.Parameter(scores.to(device))
        n = settings.num_levels
        if settings.scale_mode == "fixed":
            self.register_buffer("fixed_alphas", torch.full((n,), self.scale, device=device))
            self.theta = None
        else:
            start = torch.ones(n) if settings.alpha_param == "direct" else torch.zeros(n)
            self.theta = nn.Parameter(start.to(device))
        self.register_buffer("levels", None)
        self.register_buffer("coded_alphas", None)
        self.precomputed: torch.Tensor | None = None

    def alphas(self) -> torch.Tensor:
        """alpha_1..alpha_N of this layer (differentiable in learned mode)."""
        if self.coded_alphas is not None:
            return self.coded_alphas
        if self.theta is None:
            return self.fixed_alphas
        return (self.theta if self.settings.alpha_param == "direct" else self.theta.exp()) * self.scale

    def effective_weight(self) -> torch.Tensor:
        if self.levels is not None:
            return apply_levels(self.weight, self.levels, self.alphas())
        if self.precomputed is not None:  # `MaskedNeRV` computed all layers' weights for this forward
            weight, self.precomputed = self.precomputed, None
            return weight
        return effective_weights([self])[0]

    @torch.no_grad()
    def level_map(self) -> torch.Tensor:
        """The integer level map lambda (uint8, the weight's shape) in use now."""
        if self.levels is not None:
            return self.levels.clone()
        magnitudes = self.scores.detach().abs()
        return nested_levels(magnitudes, self.counts)

    @torch.no_grad()
    def load_code(self, levels: torch.Tensor, alphas: torch.Tensor) -> None:
        """Use a stored level map and stored alphas from now on (the decoder's state)."""
        if tuple(levels.shape) != tuple(self.weight.shape) or alphas.shape != (self.settings.num_levels,):
            raise BitstreamError("stream is corrupt: a level map or its scales do not fit the network")
        device = self.weight.device
        self.levels = levels.to(device=device, dtype=torch.uint8)
        self.coded_alphas = alphas.to(device=device, dtype=torch.float32)

    def extra_repr(self) -> str:
        k = ", ".join(f"{d:g}" for d in self.settings.densities)
        return f"{tuple(self.weight.shape)}, densities=({k}), scales={self.settings.scale_mode}, index={self.index}"


class MaskedLinear(MaskedLayer):
    """nn.Linear's signature; the weight is random and fixed, its hierarchical mask is trained."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        settings: MaskSettings | None = None,
        seed: int = 0,
        index: int = 0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._setup(
            (out_features, in_features),
            in_features,
            bias,
            settings or MaskSettings(),
            seed,
            index,
            device,
            dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class MaskedConv2d(MaskedLayer):
    """nn.Conv2d's signature (zero padding only); random fixed weight, trained hierarchical mask."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        settings: MaskSettings | None = None,
        seed: int = 0,
        index: int = 0,
    ) -> None:
        super().__init__()
        if padding_mode != "zeros":
            raise MethodError(f"MaskedConv2d supports padding_mode 'zeros' only, got '{padding_mode}'")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if in_channels % groups or out_channels % groups:
            raise MethodError(
                f"channels {in_channels} -> {out_channels} are not divisible by groups={groups}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        fan_in = in_channels // groups * kh * kw
        self._setup(
            (out_channels, in_channels // groups, kh, kw),
            fan_in,
            bias,
            settings or MaskSettings(),
            seed,
            index,
            device,
            dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class MaskFactory:
    """Layer factories for a backbone: numbers the layers in construction order (the seed index), from
    `first` on, so that two parts of one network (HNeRV's encoder and decoder) draw apart."""

    def __init__(self, settings: MaskSettings, seed: int, first: int = 0) -> None:
        self.settings, self.seed, self.count = settings, seed, first

    def _next(self) -> int:
        self.count += 1
        return self.count - 1

    def linear(self, *args: Any, **kwargs: Any) -> MaskedLinear:
        return MaskedLinear(*args, **kwargs, settings=self.settings, seed=self.seed, index=self._next())

    def conv(self, *args: Any, **kwargs: Any) -> MaskedConv2d:
        return MaskedConv2d(*args, **kwargs, settings=self.settings, seed=self.seed, index=self._next())


def effective_weights(layers: list[MaskedLayer]) -> tuple[torch.Tensor, ...]:
    """The training-state effective weights of `layers`, all in one autograd node."""
    return _HierarchicalMasks.apply(
        layers, *(layer.scores for layer in layers), *(layer.alphas() for layer in layers)
    )


@contextmanager
def weights_in_one_burst(model: nn.Module) -> Iterator[None]:
    """While training (no stored code loaded), compute every masked layer's effective weight of `model` at
    once (`effective_weights`) for the forward pass run inside; none outlives it, whatever happens there."""
    layers = masked_layers(model)
    if all(layer.levels is None for layer in layers):
        for layer, weight in zip(layers, effective_weights(layers), strict=True):
            layer.precomputed = weight
    try:
        yield
    finally:
        for layer in layers:
            layer.precomputed = None


def masked_layers(model: nn.Module) -> list[MaskedLayer]:
    """The masked layers in module order (the order of the level maps in a stream)."""
    return [m for m in model.modules() if isinstance(m, MaskedLayer)]


def level_maps(model: nn.Module) -> list[torch.Tensor]:
    return [layer.level_map().cpu() for layer in masked_layers(model)]


@torch.no_grad()
def layer_alphas(model: nn.Module) -> torch.Tensor:
    """(layers, N) float32 alphas on the CPU, exactly as the forward pass uses them."""
    return torch.stack([layer.alphas().detach().cpu() for layer in masked_layers(model)])


def layer_scales(model: nn.Module) -> list[float]:
    """Each masked layer's scale constant c (its alphas at initialisation), in module order."""
    return [layer.scale for layer in masked_layers(model)]


def load_code(model: nn.Module, levels: list[torch.Tensor], alphas: torch.Tensor) -> None:
    layers = masked_layers(model)
    if len(levels) != len(layers) or alphas.shape[0] != len(layers):
        raise BitstreamError("stream is corrupt: its level maps do not match the network's layers")
    for layer, lv, a in zip(layers, levels, alphas, strict=True):
        layer.load_code(lv, a)


def scale_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [layer.theta for layer in masked_layers(model) if layer.theta is not None]


def score_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [layer.scores for layer in masked_layers(model)]


def parameter_groups(
    model: nn.Module, scale_mode: str, score_lr: float, alpha_lr: float
) -> list[dict[str, Any]]:
    """Adam groups of a supermask network: the scores, plus the scales when they are learned."""
    groups: list[dict[str, Any]] = [{"params": score_parameters(model), "lr": score_lr}]
    if scale_mode == "learned":
        groups.append({"params": scale_parameters(model), "lr": alpha_lr})
    return groups
