"""Hierarchical supermasks on a random, never-trained NeRV (the seed paper's method), and their adapter.

Every weight layer holds a fixed random weight `w` and bias (regenerated from a seed, never stored) and a
trained score `s` per weight. N nested masks keep the top k_1 > ... > k_N fraction of |s| in each layer,
recomputed at every step; the level ``lambda = sum_n mask_n`` in {0..N} of a weight sets its value
``W = w * sum_n alpha_n mask_n = w * (alpha_1 + ... + alpha_lambda)``. Scores get the straight-through
gradient of every mask they pass.

Where the scale lives: the buffer ``weight`` is only the random direction, with unit second moment
(``sign(w0)`` = +-1 by default, or ``w0 ~ N(0, 1)``). A layer's scale constant ``c`` lives in its alphas:
either Okoshi et al.'s ``sqrt(2 / (fan_in k_1))`` or the variance-preserving ``sqrt(2 / fan_in) /
sqrt(E[lambda^2])``. Fixed scales (Okoshi et al.'s multicoated supermasks, the baseline): ``alpha_n = c``
for every level, a constant buffer. Learned scales (the paper): ``alpha_n = c * theta_n`` ("direct") or
``c * exp(theta_n)`` ("log") with trained ``theta`` starting at the fixed model, so the alpha learning rate
is relative to ``c`` and means the same in every layer.

The level distribution p = (1 - k_1, k_1 - k_2, ..., k_N) is known before training, so the coded mask costs
H(p) bits per weight (range coded with those frequencies) and a network is sized for a rate exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench import bitstream
from bench.budgets import Budget
from bench.contract import Clip, Context, Method, SeqInfo
from bench.errors import BitstreamError, MethodError
from methods import coding
from methods.nerv import NeRVConfig, NeRVGenerator, architecture_of, choose_grid, parameter_shapes, render
from methods.nerv_header import read_network_header
from methods.training import TrainResult, train, with_budget_schedule

SCALE_MODES = ("fixed", "learned")
WEIGHT_INITS = ("signed", "normal")  # sign(w0) * c, or w0 * c with w0 ~ N(0, 1)
SCALE_RULES = ("variance", "okoshi")  # sqrt(2 / fan_in) / sqrt(E[lambda^2]), or sqrt(2 / (fan_in k_1))
ALPHA_PARAMS = ("direct", "log")  # learned alpha_n = c * theta_n, or c * exp(theta_n)


# --- mask settings and the level distribution -------------------------------------------------------------


@dataclass(frozen=True)
class MaskSettings:
    """Everything a masked layer needs besides its shape and seed."""

    densities: tuple[float, ...] = (0.3, 0.1, 0.03)  # k_1 > ... > k_N: fraction of weights in mask n
    scale_mode: str = "fixed"
    weight_init: str = "signed"
    scale_rule: str = "variance"
    alpha_param: str = "direct"

    def __post_init__(self) -> None:
        object.__setattr__(self, "densities", tuple(float(k) for k in self.densities))
        self.validate()

    def validate(self) -> None:
        k = self.densities
        problems = []
        if not k or not all(1 > a > b for a, b in zip(k, k[1:] + (0.0,), strict=True)):
            problems.append(f"densities {list(k)} must be strictly decreasing inside (0, 1)")
        for name, value, options in (
            ("scale_mode", self.scale_mode, SCALE_MODES),
            ("weight_init", self.weight_init, WEIGHT_INITS),
            ("scale_rule", self.scale_rule, SCALE_RULES),
            ("alpha_param", self.alpha_param, ALPHA_PARAMS),
        ):
            if value not in options:
                problems.append(f"{name} '{value}' is not one of {', '.join(options)}")
        if problems:
            raise MethodError(f"invalid supermask settings: {'; '.join(problems)}")

    @property
    def num_levels(self) -> int:
        return len(self.densities)

    def level_probabilities(self) -> np.ndarray:
        """p_l = P(lambda = l) for l = 0..N: (1 - k_1, k_1 - k_2, ..., k_N)."""
        k = np.array((1.0, *self.densities, 0.0))
        return k[:-1] - k[1:]

    def entropy_bits(self) -> float:
        """H(p): coded bits per masked weight."""
        p = self.level_probabilities()
        return float(-(p * np.log2(p)).sum())

    def mean_square_level(self) -> float:
        """E[lambda^2] over the level distribution."""
        p = self.level_probabilities()
        return float((np.arange(p.size) ** 2 * p).sum())

    def scale(self, fan_in: int) -> float:
        """The layer's scale constant c (alpha_n at initialisation)."""
        if self.scale_rule == "okoshi":
            return math.sqrt(2.0 / (fan_in * self.densities[0]))
        return math.sqrt(2.0 / fan_in) / math.sqrt(self.mean_square_level())


def kept_counts(numel: int, densities: tuple[float, ...]) -> tuple[int, ...]:
    """K_n = round(k_n * numel): weights in mask n of a layer (non-increasing, so the masks nest)."""
    return tuple(min(numel, int(round(k * numel))) for k in densities)


def layer_seed(seed: int, index: int, stream: int) -> int:
    """A 63-bit seed for one layer's random stream (0: weights and bias, 1: score init), platform-independent."""
    state = np.random.SeedSequence(entropy=seed, spawn_key=(index, stream)).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


# --- the hot path: thresholds, levels, effective weights --------------------------------------------------


def memory_order(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """`x`'s elements as a 1-D tensor in the memory order of `like` (default: `x` itself; no copy then).

    For work that does not care about element order (selection, per-level sums), this avoids the copy that
    `reshape(-1)` makes of a channels-last conv weight; tensors of one layout pair up element for element.
    """
    if _channels_last_only(x if like is None else like):
        return x.permute(0, 2, 3, 1).reshape(-1)
    return x.reshape(-1)


def _shaped_like(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of `memory_order(., like)`: `flat` viewed with `like`'s shape and memory layout."""
    if _channels_last_only(like):  # memory order is N, H, W, C
        n, c, h, w = like.shape
        return flat.view(n, h, w, c).permute(0, 3, 1, 2)
    return flat.view(like.shape)


def _channels_last_only(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _on_host(*tensors: torch.Tensor) -> bool:
    """Whether numpy can work on these tensors in place (CPU, no autograd): its element-wise loops and
    reductions cost a fraction of torch's per call and, for bool and uint8, per element too."""
    return all(t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES and not t.requires_grad for t in tensors)


_NUMPY_DTYPES = (torch.float32, torch.float64, torch.uint8, torch.bool)


def nested_levels(magnitudes: torch.Tensor, counts: tuple[int, ...]) -> torch.Tensor:
    """lambda = number of levels each weight reaches, as uint8 (the nested top-k masks of `magnitudes`,
    summed), laid out like `magnitudes`.

    Level n holds exactly counts[n] weights, the largest magnitudes: the rate model and the decoder's size
    check count on it. Where the counts[n]-th largest magnitude occurs more than once (scores do collide
    in long runs), the tie is broken by position: the first tied weights in flat order reach the level.
    On the host this runs in numpy throughout: most layers are small, and per call numpy costs a fraction
    of torch.
    """
    if _on_host(magnitudes):
        return _host_levels(magnitudes, _order_statistics(memory_order(magnitudes).numpy(), counts), counts)
    return _device_levels(magnitudes, select_thresholds(magnitudes, counts), counts)


def select_thresholds(magnitudes: torch.Tensor, counts: tuple[int, ...]) -> torch.Tensor:
    """For each level n, the counts[n]-th largest magnitude (+inf when a level keeps nothing), ascending.

    One selection per layer, no sort: on the host `_order_statistics`, elsewhere one sorted top-k_1.
    """
    flat = memory_order(magnitudes)
    if _on_host(flat):
        return torch.tensor(_order_statistics(flat.numpy(), counts), dtype=flat.dtype)
    picked = torch.full((len(counts),), math.inf, dtype=flat.dtype, device=flat.device)
    kept = [k for k in counts if k > 0]
    if kept:
        top = torch.topk(flat, kept[0], sorted=True).values
        picked[: len(kept)] = top[torch.tensor([k - 1 for k in kept], device=flat.device)]
    return picked


def _order_statistics(flat: np.ndarray, counts: tuple[int, ...]) -> list[float]:
    """The counts[n]-th largest value of `flat` for each n (+inf for a count of 0); counts do not increase.

    Partition a copy once at the k_1 statistic, then only the part above it at k_2, and so on (numpy's
    single-pivot partition is SIMD-fast, about 20x its own multi-pivot call).
    """
    n = flat.size
    positions = [n - k for k in counts if k > 0]  # ascending
    values: list[float] = []
    if positions:
        part = np.partition(flat, positions[0])
        values, base = [float(part[positions[0]])], 0
        for previous, position in zip(positions[:-1], positions[1:], strict=True):
            if position != previous:
                part, base = part[previous + 1 - base :], previous + 1  # a view: the entries above `previous`
                part.partition(position - base)
            values.append(float(part[position - base]))
    return values + [math.inf] * (len(counts) - len(values))


def _host_levels(magnitudes: torch.Tensor, thresholds: list[float], counts: tuple[int, ...]) -> torch.Tensor:
    flat = memory_order(magnitudes).numpy()
    levels = np.zeros(flat.shape, dtype=np.uint8)
    reach = np.empty(flat.shape, dtype=np.bool_)
    for threshold, kept in zip(thresholds, counts, strict=True):
        np.greater_equal(flat, threshold, out=reach)
        if np.count_nonzero(reach) != kept:
            tied = _first_reaching(magnitudes, torch.tensor(threshold, dtype=magnitudes.dtype), kept)
            reach = memory_order(tied, like=magnitudes).numpy()
        np.add(levels, reach.view(np.uint8), out=levels)
    return _shaped_like(torch.from_numpy(levels), magnitudes)


def _device_levels(
    magnitudes: torch.Tensor, thresholds: torch.Tensor, counts: tuple[int, ...]
) -> torch.Tensor:
    """`nested_levels` in torch ops, with one host sync for all the level counts."""
    reaches = [magnitudes >= t for t in thresholds]
    found = torch.stack([reach.sum() for reach in reaches]).tolist()
    levels = torch.zeros_like(magnitudes, dtype=torch.uint8)
    for reach, t, kept, n in zip(reaches, thresholds, counts, found, strict=True):
        levels += reach if n == kept else _first_reaching(magnitudes, t, kept)
    return levels


def _first_reaching(magnitudes: torch.Tensor, threshold: torch.Tensor, kept: int) -> torch.Tensor:
    """The `kept` largest magnitudes when `threshold` (the kept-th largest) is tied: all above it, then the
    first tied ones in flat order. Nested across levels: a higher level keeps a prefix of the same ties."""
    reach = (magnitudes > threshold).reshape(-1)
    tied = (magnitudes == threshold).reshape(-1).nonzero().squeeze(1)
    reach[tied[: kept - int(reach.sum())]] = True
    return reach.view(magnitudes.shape)


def _lookup(table: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """table[levels], shaped and laid out like `levels`: one index_select in memory order (int32 indices:
    ~1.5x faster than torch.take, itself several times faster than advanced indexing on the CPU)."""
    return _shaped_like(table.index_select(0, memory_order(levels).int()), levels)


def level_sums(levels: torch.Tensor, values: torch.Tensor, num_levels: int) -> torch.Tensor:
    """S_n = sum of `values` where lambda >= n, for n = 1..num_levels (float32, on `values`' device).

    On the host one dot product per level (3.5-4.5x faster than torch's bincount, measured at 2.5M and 50k
    weights); elsewhere a bincount and a reversed cumulative sum.
    """
    same_layout = levels.stride() == values.stride()  # then both memory orders pair element for element
    flatten = memory_order if same_layout else torch.flatten
    flat_levels, flat_values = flatten(levels), flatten(values)
    if _on_host(flat_levels, flat_values):
        lv, v = flat_levels.numpy(), flat_values.numpy()
        sums = [np.dot(v, lv >= n) for n in range(1, num_levels + 1)]
        return torch.tensor(sums, dtype=torch.float32)
    return _device_level_sums(flat_levels, flat_values, num_levels)


def _device_level_sums(flat_levels: torch.Tensor, flat_values: torch.Tensor, num_levels: int) -> torch.Tensor:
    """`level_sums` in torch ops, for 1-D tensors paired element for element."""
    per_level = torch.bincount(flat_levels, weights=flat_values, minlength=num_levels + 1)
    return per_level.flip(0).cumsum(0).flip(0)[1:].to(flat_values.dtype)


def apply_levels(weight: torch.Tensor, levels: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """W = w * (alpha_1 + ... + alpha_lambda): the one definition used by training and decoding alike."""
    table = torch.cat((alphas.new_zeros(1), alphas.cumsum(0)))
    out = weight * _lookup(table, levels)
    # A conv's kernel follows the weight's memory layout and rounds differently in each: pin one layout (the
    # training loop's), whatever the layout of the buffers, so that a decoder renders bit-identically.
    return out.contiguous(memory_format=torch.channels_last) if out.dim() == 4 else out


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
    """Layer factories for `NeRVGenerator`: numbers the layers in construction order (the seed index)."""

    def __init__(self, settings: MaskSettings, seed: int) -> None:
        self.settings, self.seed, self.count = settings, seed, 0

    def _next(self) -> int:
        self.count += 1
        return self.count - 1

    def linear(self, *args: Any, **kwargs: Any) -> MaskedLinear:
        return MaskedLinear(*args, **kwargs, settings=self.settings, seed=self.seed, index=self._next())

    def conv(self, *args: Any, **kwargs: Any) -> MaskedConv2d:
        return MaskedConv2d(*args, **kwargs, settings=self.settings, seed=self.seed, index=self._next())


class MaskedNeRV(NeRVGenerator):
    """The NeRV generator with every weight layer masked. While training, each forward first computes all
    layers' effective weights in one burst (`effective_weights`), then runs the network on them; once
    `load_code` has given the layers their stored levels, each layer applies its own."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        layers = masked_layers(self)
        if all(layer.levels is None for layer in layers):
            for layer, weight in zip(layers, effective_weights(layers), strict=True):
                layer.precomputed = weight
        try:
            return super().forward(t)
        finally:
            for layer in layers:  # none outlives this forward, whatever happened in it
                layer.precomputed = None


def effective_weights(layers: list[MaskedLayer]) -> tuple[torch.Tensor, ...]:
    """The training-state effective weights of `layers`, all in one autograd node."""
    return _HierarchicalMasks.apply(
        layers, *(layer.scores for layer in layers), *(layer.alphas() for layer in layers)
    )


def build_generator(arch: NeRVConfig, settings: MaskSettings, seed: int) -> MaskedNeRV:
    """The NeRV generator with every weight layer (stem, convs, head) masked, regenerated from `seed`."""
    factory = MaskFactory(settings, seed)
    return MaskedNeRV(arch, linear_layer=factory.linear, conv_layer=factory.conv)


def masked_layers(model: nn.Module) -> list[MaskedLayer]:
    """The masked layers in module order (the order of the level maps in a stream)."""
    return [m for m in model.modules() if isinstance(m, MaskedLayer)]


def level_maps(model: nn.Module) -> list[torch.Tensor]:
    return [layer.level_map().cpu() for layer in masked_layers(model)]


@torch.no_grad()
def layer_alphas(model: nn.Module) -> torch.Tensor:
    """(layers, N) float32 alphas on the CPU, exactly as the forward pass uses them."""
    return torch.stack([layer.alphas().detach().cpu() for layer in masked_layers(model)])


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


def masked_shapes(arch: NeRVConfig) -> list[tuple[int, ...]]:
    """Shapes of the masked weights, in module order, from the architecture alone."""
    return [shape for name, shape in parameter_shapes(arch).items() if name.endswith(".weight")]


# --- speed ------------------------------------------------------------------------------------------------


def perf_masks(
    arch: NeRVConfig, batch_size: int = 2, steps: int = 12, seed: int = 0, precision: str = "fp32"
) -> dict[str, float]:
    """Wall-clock ms of one training step (forward, backward, Adam), dense vs both supermask variants.

    The steps run as `methods.training.train` runs them (channels-last, fused Adam, bf16 autocast when
    `precision` is "bf16") and alternate, so that a shared machine's load hits all alike; the minimum over
    `steps` is reported. ``masks_ms`` times the learned variant's mask bookkeeping alone (effective weights
    forward and backward), ``selection_ms`` the part of it that selects the thresholds and level maps.
    """
    from methods.training import keep_freed_memory

    keep_freed_memory()  # the training loop's allocator setting (it changes what large temporaries cost)
    height, width = arch.output_size
    t = torch.arange(batch_size, dtype=torch.float32) / batch_size
    target = torch.rand(batch_size, 3, height, width, generator=torch.Generator().manual_seed(seed))
    target = target.contiguous(memory_format=torch.channels_last)

    def trainer(model: nn.Module) -> Any:
        model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.999), fused=True)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(t)
            loss = (out.float() - target).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dense = NeRVGenerator(arch)
    fixed = build_generator(arch, MaskSettings(scale_mode="fixed"), seed)
    learned = build_generator(arch, MaskSettings(scale_mode="learned"), seed)
    layers = masked_layers(learned)

    def bookkeeping() -> None:
        sum(weight.sum() for weight in effective_weights(layers)).backward()

    @torch.no_grad()
    def selection() -> None:
        for layer in layers:
            nested_levels(layer.scores.abs(), layer.counts)

    steps_by_name = {
        "dense_ms": trainer(dense),
        "fixed_ms": trainer(fixed),
        "learned_ms": trainer(learned),
        "masks_ms": bookkeeping,
        "selection_ms": selection,
    }
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for rep in range(steps + 1):
        for name, step in steps_by_name.items():
            start = time.perf_counter()
            step()
            if rep:  # the first round warms up
                times[name].append(1e3 * (time.perf_counter() - start))
    out = {name: min(values) for name, values in times.items()}
    out["fixed_ratio"] = out["fixed_ms"] / out["dense_ms"]
    out["learned_ratio"] = out["learned_ms"] / out["dense_ms"]
    out["masked_weights"] = float(sum(layer.weight.numel() for layer in layers))
    return out


# --- the method adapter shared by supermask-fixed and supermask-learned ------------------------------------

RATE_TOLERANCE = 0.10
SIZE_AIM = 0.02  # the size is predictable: aim within 2 %
RENDER_BATCH = 4
TIMED_EPOCHS = 1_000_000  # under a wall-clock limit the clock, not the epoch count, ends training
CODER_SLACK_BITS = 64  # the range coder's final words
# The range coder's excess over the exact code length, per symbol: measured 1.2e-4 bits on 3M-symbol maps.
CODER_EXCESS_PER_SYMBOL = 1e-3
MAX_SEED = 1 << 63  # job seeds are 63-bit; a larger one is forged (and would build another network)


@dataclass(frozen=True)
class SupermaskConfig:
    """Hyper-parameters; `plan` fills in the sized shape and the strides. Defaults: docs/supermask_sweep.md."""

    densities: tuple[float, ...] = (0.3, 0.1, 0.03)  # k_1 > ... > k_N; H(p) = 1.245 bits a weight
    weight_init: str = "signed"  # "signed": sign(w0) * c; "normal": w0 * c with w0 ~ N(0, 1)
    scale_rule: str = "variance"  # sqrt(2 / fan_in) / sqrt(E[lambda^2]); "okoshi": sqrt(2 / (fan_in k_1))
    alpha_param: str = "direct"  # learned scales: alpha = c * theta ("direct") or c * exp(theta) ("log")
    score_lr: float = 3e-3  # Adam with NeRV's schedule; the fixed variant needs it low, learned does not mind
    alpha_lr: float = 1e-1  # learned scales only; relative to c (theta starts at 1, or 0 for "log")
    batch_size: int | None = None  # None: the budget's (cpu: 2, the sweep's best; 4 and 1 were worse)
    epochs: int | None = None  # None: the budget's
    warmup: float | None = None  # None: the budget's
    # Base shape (NeRV-S); `plan` scales the stem, C0 and the lower width together to the target rate.
    stem_dims: tuple[int, ...] = (512,)
    fc_dim: int = 26
    lower_width: int = 96
    expansion: float = 1.0
    reduction: int = 2
    embed_base: float = 1.25
    embed_levels: int = 40
    activation: str = "gelu"
    start: tuple[int, int] = (9, 16)  # preferred stem grid; other aspect ratios get their own
    strides: tuple[int, ...] = ()  # empty: chosen from the clip size
    width: float = 1.0  # width factor of the sized shape relative to the base (set by `plan`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "densities", tuple(float(k) for k in self.densities))
        for name in ("stem_dims", "start", "strides"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    def architecture(self) -> NeRVConfig:
        return architecture_of(self)

    def mask_settings(self, scale_mode: str) -> MaskSettings:
        return MaskSettings(self.densities, scale_mode, self.weight_init, self.scale_rule, self.alpha_param)


@dataclass
class SupermaskState:
    config: SupermaskConfig
    settings: MaskSettings
    seed: int
    model: NeRVGenerator  # the trained network (scores), on the training device
    levels: list[torch.Tensor]  # uint8 level map per layer, on the CPU
    alphas: torch.Tensor  # (layers, N) float32, on the CPU
    num_frames: int
    result: TrainResult
    coding: dict[str, Any] = field(default_factory=dict)  # filled by `encode`


def _header(
    arch: NeRVConfig, settings: MaskSettings, seed: int, height: int, width: int, frames: int
) -> dict:
    masks = {
        "densities": list(settings.densities),
        "init": settings.weight_init,
        "scale": settings.scale_rule,
        "seed": seed,
    }
    arch_fields = {f.name: getattr(arch, f.name) for f in dataclasses.fields(arch)}  # flat: no deep copy
    return {"arch": arch_fields, "masks": masks, "width": width, "height": height, "frames": frames}


def mask_bits(arch: NeRVConfig, settings: MaskSettings) -> float:
    """Expected coded bits of the level maps: each layer's exact level counts at -log2 p_l bits each."""
    return sum(_layer_mask_bits(math.prod(shape), settings.densities) for shape in masked_shapes(arch))


@functools.lru_cache(maxsize=65536)
def _layer_mask_bits(numel: int, densities: tuple[float, ...]) -> float:
    k = (1.0, *densities, 0.0)
    kept = (numel, *kept_counts(numel, densities), 0)
    return -sum((kept[i] - kept[i + 1]) * math.log2(k[i] - k[i + 1]) for i in range(len(k) - 1))


def predicted_bits(
    arch: NeRVConfig, settings: MaskSettings, height: int, width: int, frames: int, method: str, version: str
) -> float:
    """Stream size before training: level maps at their known entropy, alphas, header and framing."""
    sections = {"masks": b""}
    scale_bits = 0
    if settings.scale_mode == "learned":
        sections["scales"] = b""
        scale_bits = 32 * settings.num_levels * len(masked_shapes(arch))
    framing = 8 * len(
        bitstream.pack(method, version, _header(arch, settings, 0, height, width, frames), sections)
    )
    return mask_bits(arch, settings) + CODER_SLACK_BITS + scale_bits + framing


def _scaled(base: SupermaskConfig, width: float, stem: int, start: tuple[int, int], strides: tuple[int, ...]):
    return dataclasses.replace(
        base,
        stem_dims=tuple(max(1, round(d * stem / base.stem_dims[0])) for d in base.stem_dims)
        if base.stem_dims
        else (),
        fc_dim=max(1, round(base.fc_dim * width)),
        lower_width=max(1, round(base.lower_width * width)),
        width=round(float(width), 6),
        start=start,
        strides=strides,
    )


class SupermaskMethod(Method):
    """Adapter shared by both variants; `scale_mode` ("fixed" or "learned") is their only difference."""

    scale_mode: ClassVar[str]
    Config = SupermaskConfig
    rate_ladder: ClassVar[tuple[float, ...]] = (0.1, 0.2, 0.4)
    trains = True

    # -- plan --------------------------------------------------------------------------------------------
    def size_network(self, base: SupermaskConfig, info: SeqInfo, target_bpp: float) -> SupermaskConfig:
        """The shape closest to the target rate: C0 and the lower width follow a width factor, the stem width
        is then solved (integer bisection) to meet the target, and among the candidates within 2 % the one
        whose stem follows the same factor wins."""
        settings = base.mask_settings(self.scale_mode)
        start, strides = (
            (base.start, base.strides) if base.strides else choose_grid(info.height, info.width, base.start)
        )
        target = target_bpp * info.pixels
        base_stem = base.stem_dims[0] if base.stem_dims else 1

        def size(cfg: SupermaskConfig) -> float:
            return predicted_bits(
                cfg.architecture(),
                settings,
                info.height,
                info.width,
                info.num_frames,
                self.name,
                self.version,
            )

        smallest = _scaled(base, 1e-9, 1, start, strides)
        if size(smallest) > target * (1 + RATE_TOLERANCE / 2):
            raise MethodError(
                f"{self.name} cannot reach {target_bpp:g} bpp on {info.width}x{info.height}x{info.num_frames}: "
                f"its smallest network codes to about {size(smallest) / info.pixels:.3g} bpp; choose a higher target"
            )
        best: tuple[float, SupermaskConfig] | None = None
        for width in np.geomspace(1e-3, 16.0, 160):
            lo, hi = 1, 1 << 16  # stem width: size grows with it
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if size(_scaled(base, width, mid, start, strides)) <= target else (lo, mid)
            for stem in (lo, hi):
                cfg = _scaled(base, width, stem, start, strides)
                if abs(size(cfg) / target - 1) > SIZE_AIM:
                    continue
                score = abs(math.log(stem / base_stem / width)) if base.stem_dims else 0.0
                if best is None or score < best[0]:
                    best = (score, cfg)
        if best is None:
            raise MethodError(
                f"{self.name} found no network within 2 % of {target_bpp:g} bpp on this clip; try a nearby target"
            )
        return best[1]

    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> SupermaskConfig:
        return self.plan_from(self.base_config, clip, target_bpp, budget)

    def plan_from(
        self, base: SupermaskConfig, clip: Clip, target_bpp: float, budget: Budget
    ) -> SupermaskConfig:
        """`plan` starting from a given config instead of the defaults (for sweeps)."""
        return with_budget_schedule(self.size_network(base, clip.info, target_bpp), budget)

    # -- fit ---------------------------------------------------------------------------------------------
    def fit(self, frames: np.ndarray, config: SupermaskConfig, ctx: Context) -> SupermaskState:
        arch = config.architecture()
        if arch.output_size != tuple(frames.shape[1:3]):
            raise MethodError(
                f"{self.name} config renders {arch.output_size[1]}x{arch.output_size[0]} but the clip is "
                f"{frames.shape[2]}x{frames.shape[1]}; plan the config on this clip"
            )
        settings = config.mask_settings(self.scale_mode)
        model = build_generator(arch, settings, ctx.seed)
        groups = parameter_groups(model, self.scale_mode, config.score_lr, config.alpha_lr)
        epochs = config.epochs or ctx.budget.epochs
        result = train(
            model,
            frames,
            ctx,
            epochs=TIMED_EPOCHS if ctx.time_limit_s else epochs,
            lr=config.score_lr,
            batch_size=config.batch_size or ctx.budget.batch_size,
            loss="mse",
            warmup=config.warmup if config.warmup is not None else ctx.budget.warmup,
            params=groups,
            desc=self.name,
        )
        return SupermaskState(
            config,
            settings,
            ctx.seed,
            model,
            level_maps(model),
            layer_alphas(model),
            int(frames.shape[0]),
            result,
        )

    # -- encode / decode ---------------------------------------------------------------------------------
    def encode(self, state: SupermaskState) -> bytes:
        arch, settings = state.config.architecture(), state.settings
        symbols = np.concatenate([lv.reshape(-1).numpy() for lv in state.levels]).astype(np.int32)
        masks = coding.encode_symbols(symbols, settings.num_levels + 1, settings.level_probabilities())
        sections = {"masks": masks}
        if self.scale_mode == "learned":
            sections["scales"] = state.alphas.numpy().astype("<f4").tobytes()
        height, width = arch.output_size
        header = _header(arch, settings, state.seed, height, width, state.num_frames)
        state.coding = {
            "masked_weights": int(symbols.size),
            "mask_bits": 8 * len(masks),
            "entropy_bits": round(symbols.size * settings.entropy_bits(), 1),
        }
        return bitstream.pack(self.name, self.version, header, sections)

    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        stream = bitstream.unpack(data, expect_method=self.name, expect_version=self.version)
        stream.expect_sections(*(("masks", "scales") if self.scale_mode == "learned" else ("masks",)))
        arch, frames = read_network_header(stream, info)
        settings, seed = self._read_masks(stream.header)
        shapes = masked_shapes(arch)
        total = sum(math.prod(s) for s in shapes)
        self._check_masks_size(stream.section("masks"), arch, settings, total)
        symbols = coding.decode_symbols(
            stream.section("masks"), total, settings.num_levels + 1, settings.level_probabilities()
        )
        model = build_generator(arch, settings, seed)
        if self.scale_mode == "learned":
            raw = stream.section("scales")
            if len(raw) != 4 * len(shapes) * settings.num_levels:
                raise BitstreamError(f"{self.name} stream's scales section has the wrong size; re-encode it")
            alphas = torch.from_numpy(
                np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(len(shapes), -1)
            )
            if not torch.isfinite(alphas).all():
                raise BitstreamError(f"{self.name} stream holds a non-finite scale; re-encode it")
        else:
            alphas = layer_alphas(model)
        levels, offset = [], 0
        for shape in shapes:
            n = math.prod(shape)
            levels.append(torch.from_numpy(symbols[offset : offset + n].astype(np.uint8).reshape(shape)))
            offset += n
        load_code(model, levels, alphas)
        return render(model.to(ctx.device), frames, batch_size=RENDER_BATCH, device=ctx.device).numpy()

    def _read_masks(self, header: dict[str, Any]) -> tuple[MaskSettings, int]:
        """Mask settings and seed, in exactly the JSON types `_header` writes (a bool is not a seed)."""
        masks = header.get("masks")
        try:
            if not isinstance(masks, dict):
                raise ValueError("masks is not a mapping")
            densities, init, scale, seed = (masks.get(k) for k in ("densities", "init", "scale", "seed"))
            if not isinstance(densities, list) or any(type(k) is not float for k in densities):
                raise ValueError("densities are not a list of numbers")
            if not isinstance(init, str) or not isinstance(scale, str):
                raise ValueError("init and scale must be names")
            if type(seed) is not int or not 0 <= seed < MAX_SEED:
                raise ValueError("the seed is not an integer in [0, 2**63)")
            settings = MaskSettings(tuple(densities), self.scale_mode, init, scale)
        except (ValueError, MethodError) as exc:
            detail = " ".join(str(exc).split())  # one line, whatever text the header smuggled in
            raise BitstreamError(f"{self.name} stream header is malformed ({detail}); re-encode it") from None
        return settings, seed

    def _check_masks_size(self, payload: bytes, arch: NeRVConfig, settings: MaskSettings, total: int) -> None:
        """Refuse a masks section whose length is not the code length its level counts imply, before the range
        decoder is asked for `total` symbols (a forged size would make it allocate them)."""
        expected = mask_bits(arch, settings)
        if abs(8 * len(payload) - expected) > CODER_SLACK_BITS + CODER_EXCESS_PER_SYMBOL * total:
            raise BitstreamError(
                f"{self.name} stream's masks section holds {8 * len(payload)} bits where its header implies "
                f"{expected:.0f}; re-encode it"
            )

    def stats(self, state: SupermaskState) -> dict[str, Any]:
        r = state.result
        symbols = torch.cat([lv.reshape(-1) for lv in state.levels])
        counts = torch.bincount(symbols.long(), minlength=state.settings.num_levels + 1)
        init = torch.tensor([layer.scale for layer in masked_layers(state.model)])[:, None]
        relative = state.alphas / init
        out = {
            "masked_weights": int(symbols.numel()),
            "level_fractions": [round(float(c) / symbols.numel(), 5) for c in counts],
            "stem_dims": list(state.config.stem_dims),
            "fc_dim": state.config.fc_dim,
            "lower_width": state.config.lower_width,
            "alpha_over_init": {
                "min": round(float(relative.min()), 4),
                "max": round(float(relative.max()), 4),
            },
            **r.summary(),
        }
        if state.coding:
            out["coding"] = dict(state.coding)
        return out
