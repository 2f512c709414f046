"""HiNeRV (Kwan et al., NeurIPS 2023): frame index -> temporal feature grids -> upsampling stages -> frame.

The network follows the reference code (hmkx/HiNeRV, `models/hinerv.py`, `encoding.py`, `layers.py`):

- Base encoding: `base_grid_levels` learned grids of shape (T_l, h0, w0, C_l), T_l = T_g / 2^l and
  C_l = C_g * 2^l (the reference's ``--base-grid-level-scale 2 1 1 0.5``), linearly interpolated along time
  at the frame's index (align_corners=False) and concatenated: the h0 x w0 feature map of the frame.
- Stem: a k x k convolution (with bias) to `channels`.
- One stage per scale s_i: LayerNorm (no affine) -> bilinear upsampling by s_i (align_corners=False) -> plus
  the hierarchical local encoding -> `depths[i]` ConvNeXt blocks (depth-wise k x k, LayerNorm without affine,
  Linear to exps[i] x width, GELU, Linear; no biases; residual where widths match). Widths halve per stage
  (C_i = ceil(C_{i-1} // reduce), the reference's ``divide_to_multiple``).
- Local encoding ("temp_local_grid"): `enc_grid_levels` grids (T_l, s^2 C_l) with one row per frame at the
  first level (T_l = T / 2^l, C_l = C_e * 2^l, C_e = C_e0 / 2^stage), interpolated at the frame's index, mapped
  to the stage's width by a Linear (with bias); the pixel at (y, x) gets the vector of its position
  (y mod s, x mod s) inside its upsampling cell.
- Head: Linear to RGB (with bias) and a sigmoid.

Patches: every stage can compute any window of its output in full-frame coordinates, with a halo that the
convolutions consume and a mask that zeroes what lies outside the frame (the zero padding a full-frame pass
sees); upsampling clamps at the frame's edges, not the window's. So a patch renders what the full frame
renders there (to float rounding, tested), which is what makes the reference's patch-based training a pure
change of batching. Patches must be multiples of the total scale (the reference's `min_patch_size`), so
every upsampling and every cell encoding is the same shifted pattern for every patch: slices, not gathers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import MethodError
from bench.provenance import cpu_flags
from methods.nerv_family.backbones.fields import prime_factors, strict_fields

MAX_SCALE = 5  # the reference's largest upsampling factor
MAX_STAGES = 8
MAX_KERNEL = 15
MAX_WIDTH = 16_384  # no width or grid size beyond this (a forged header must not allocate)
MAX_BASE_SIDE = 64  # a base map larger than this is not a clip HiNeRV's scales suit (1080p: 18x32)
LN_EPS = 1e-6  # the reference's LayerNorm epsilon
GRID_INIT = 1e-3  # grids start uniform in [-GRID_INIT, GRID_INIT] (the reference's grid_init_scale)
# The reference's level scales: base grids halve in time and double in channels per level; local grids
# halve in time and double in channels per level, and halve their channels per stage (depth scale 0.5).
LEVEL_TIME_SCALE = 2
LEVEL_CHANNEL_SCALE = 2
STAGE_CHANNEL_SCALE = 0.5


@dataclass(frozen=True)
class HiNeRVConfig:
    """Architecture of one HiNeRV network; the defaults are the reference's UVG HiNeRV-S at 1920x1080."""

    base_size: tuple[int, int] = (18, 32)  # (rows, columns) of the base feature map: the frame / prod(scales)
    frames: int = 600  # frames the encodings span (the local grids keep one row per frame)
    channels: int = 280  # width of the stem and the first stage (--channels)
    reduce: float = 2.0  # each later stage's width is the previous one // reduce (--channels-reduce)
    min_width: int = 1  # no stage narrower than this (--channels-min; a 1-wide LayerNorm outputs zeros)
    scales: tuple[int, ...] = (5, 3, 2, 2)  # upsampling factor of each stage (--scales-hw)
    depths: tuple[int, ...] = (3, 3, 3, 1)  # ConvNeXt blocks per stage (--depths)
    exps: tuple[float, ...] = (4.0, 4.0, 4.0, 1.0)  # hidden width / width of each stage's blocks (--exps)
    kernels: tuple[int, ...] = (3, 3, 3, 3)  # depth-wise kernel of each stage's blocks (--kernels)
    stem_kernel: int = 3  # the stem convolution's kernel (--stem-kernels)
    base_grid_frames: int = 150  # temporal size of the first base grid (--base-grid-size 150 -1 -1 C)
    base_grid_channels: int = 2  # channels of the first base grid (S: 2, M: 4, L: 8)
    base_grid_levels: int = 2  # base grids (--base-grid-level)
    enc_grid_channels: int = 4  # channels of the first local grid of the first stage (S: 4, M: 8, L: 16)
    enc_grid_levels: int = 3  # local grids per stage (--enc-grid-level)

    def __post_init__(self) -> None:
        for name in ("base_size", "scales", "depths", "kernels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "exps", tuple(float(v) for v in self.exps))

    @property
    def output_size(self) -> tuple[int, int]:
        total = math.prod(self.scales)
        return self.base_size[0] * total, self.base_size[1] * total

    def widths(self) -> list[int]:
        """Output width of each stage (the first keeps `channels`)."""
        out, current = [], self.channels
        for i in range(len(self.scales)):
            if i:
                current = max(int(current // self.reduce), self.min_width)
            out.append(int(current))
        return out

    def base_grids(self) -> list[tuple[int, int]]:
        """(frames, channels) of each base grid level."""
        return [
            (
                max(1, int(self.base_grid_frames / LEVEL_TIME_SCALE**level)),
                self.base_grid_channels * LEVEL_CHANNEL_SCALE**level,
            )
            for level in range(self.base_grid_levels)
        ]

    def enc_grids(self, stage: int) -> list[tuple[int, int]]:
        """(frames, channels) of each local grid level of a stage."""
        first = max(int(self.enc_grid_channels * STAGE_CHANNEL_SCALE**stage), 1)
        return [
            (max(1, int(self.frames / LEVEL_TIME_SCALE**level)), first * LEVEL_CHANNEL_SCALE**level)
            for level in range(self.enc_grid_levels)
        ]

    def validate(self) -> None:
        """Refuse shapes that cannot be built, with the field to fix."""
        problems = []
        stages = len(self.scales)
        if (
            not 1 <= stages <= MAX_STAGES
            or not len(self.depths) == len(self.exps) == len(self.kernels) == stages
        ):
            problems.append(f"scales, depths, exps and kernels must be as long, 1..{MAX_STAGES} stages")
        if any(not 1 <= s <= MAX_SCALE for s in self.scales):
            problems.append(f"scales must be in 1..{MAX_SCALE}")
        if any(not 1 <= d <= 16 for d in self.depths):
            problems.append("depths must be in 1..16")
        if any(not (math.isfinite(e) and 0.0 < e <= 16.0) for e in self.exps):
            problems.append("exps must be finite in (0, 16]")
        if any(not (1 <= k <= MAX_KERNEL and k % 2) for k in (*self.kernels, self.stem_kernel)):
            problems.append(f"kernels must be odd, 1..{MAX_KERNEL}")
        if len(self.base_size) != 2 or not all(1 <= v <= MAX_BASE_SIDE for v in self.base_size):
            problems.append(f"base_size must be two sizes in 1..{MAX_BASE_SIDE}")
        if not (math.isfinite(self.reduce) and 1.0 <= self.reduce <= 16.0):
            problems.append("reduce must be a finite number in [1, 16]")
        small = (
            self.frames,
            self.channels,
            self.min_width,
            self.base_grid_frames,
            self.base_grid_channels,
            self.enc_grid_channels,
        )
        if min(small) < 1 or not 1 <= self.base_grid_levels <= 4 or not 1 <= self.enc_grid_levels <= 4:
            problems.append("frames, channels and grid sizes must be >= 1, grid levels 1..4")
        sizes = (
            self.channels,
            self.min_width,
            self.base_grid_frames,
            self.base_grid_channels,
            self.enc_grid_channels,
        )
        if max(sizes) > MAX_WIDTH or self.frames > MAX_WIDTH * 8:
            problems.append(f"widths and grid sizes must be at most {MAX_WIDTH}")
        if problems:
            raise MethodError(f"invalid HiNeRV architecture: {'; '.join(problems)}")

    @classmethod
    def from_json(cls, data: Any) -> HiNeRVConfig:
        """Strictly parse what `dataclasses.asdict` wrote into a stream header; ValueError on anything else."""
        if isinstance(data, dict) and isinstance(data.get("exps"), list):
            exps = data["exps"]
            if not all(type(e) in (int, float) for e in exps):
                raise ValueError("exps must be numbers")
            values = strict_fields(cls, {**data, "exps": [1] * len(exps)})
            values["exps"] = tuple(float(e) for e in exps)
        else:
            raise ValueError("architecture fields do not match")
        config = cls(**values)
        config.validate()
        return config


# --- scales for a clip ------------------------------------------------------------------------------------


def scale_plan(height: int, width: int, largest_total: int = 60) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(base_size, scales): the largest total scale up to the reference's 60 (1080p: 5, 3, 2, 2) that divides
    both sides, as prime factors of at most `MAX_SCALE`, largest first (720p: 5, 2, 2, 2 as in the reference's
    Bunny configs; 180x320: 5, 2, 2; 72x128: 2, 2, 2)."""
    common = math.gcd(height, width)
    for total in range(min(largest_total, common), 1, -1):
        factors = prime_factors(total)
        if common % total or max(factors) > MAX_SCALE:
            continue
        base = (height // total, width // total)
        if max(base) <= MAX_BASE_SIDE:
            return base, tuple(sorted(factors, reverse=True))
    raise MethodError(
        f"frame size {width}x{height} is not one HiNeRV can render: both sides must share a factor of 2..60 "
        f"built from scales <= {MAX_SCALE}, leaving a base map of at most {MAX_BASE_SIDE} per side "
        "(e.g. 128x72, 320x180, 1280x720, 1920x1080); resize the clip"
    )


# --- windows: a patch's extent at every stage ---------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """Start (relative to the patch's offset scaled to that resolution) and length of each computed window:
    the base map, and every stage's output; rows or columns alike."""

    base: tuple[int, int]
    stages: tuple[tuple[int, int], ...]


def plan_windows(arch: HiNeRVConfig, length: int, full: int, axis_full: bool) -> Windows:
    """Windows along one axis for an output patch of `length` (of `full`): exact outputs need each stage's
    blocks' halo and the interpolation's two source taps. A full-frame pass needs no halo."""
    if axis_full:
        sizes = [full]
        for s in reversed(arch.scales):
            sizes.append(sizes[-1] // s)
        sizes.reverse()
        return Windows((0, sizes[0]), tuple((0, n) for n in sizes[1:]))
    lo, hi = 0, length
    stages = []
    for i in reversed(range(len(arch.scales))):
        halo = arch.depths[i] * (arch.kernels[i] // 2)
        lo, hi = lo - halo, hi + halo
        stages.append((lo, hi - lo))
        s = arch.scales[i]
        lo, hi = (2 * lo + 1 - s) // (2 * s), (2 * (hi - 1) + 1 - s) // (2 * s) + 2
    halo = arch.stem_kernel // 2
    return Windows((lo - halo, hi - lo + 2 * halo), tuple(reversed(stages)))


# --- the network --------------------------------------------------------------------------------------------


def _grid(frames: int, width: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(frames, width).uniform_(-GRID_INIT, GRID_INIT))


def sample_time(grid: torch.Tensor, frame: torch.Tensor, frames: int) -> torch.Tensor:
    """Rows of `grid` (G, ...) linearly interpolated at frame indices (B,) of a clip of `frames`
    (F.interpolate / grid_sample with align_corners=False and border clamping, as the reference does)."""
    size = grid.shape[0]
    src = ((frame.to(torch.float32) + 0.5) * (size / frames) - 0.5).clamp(0, size - 1)
    i0 = src.floor().long()
    i1 = (i0 + 1).clamp(max=size - 1)
    w = (src - i0).view(-1, *([1] * (grid.dim() - 1))).to(grid.dtype)
    return grid[i0] * (1 - w) + grid[i1] * w


class LocalEncoding(nn.Module):
    """One stage's hierarchical local encoding: a vector per position in the s x s upsampling cell, per frame."""

    def __init__(self, arch: HiNeRVConfig, stage: int, width: int) -> None:
        super().__init__()
        self.scale, self.frames = arch.scales[stage], arch.frames
        levels = arch.enc_grids(stage)
        self.grids = nn.ParameterList([_grid(t, self.scale**2 * c) for t, c in levels])
        self.channels = [c for _, c in levels]
        self.linear = nn.Linear(sum(self.channels), width)
        nn.init.zeros_(self.linear.bias)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, s, s, width) for frame indices (B,)."""
        s = self.scale
        parts = [
            sample_time(g, frame, self.frames).view(-1, s, s, c)
            for g, c in zip(self.grids, self.channels, strict=True)
        ]
        return self.linear(torch.cat(parts, dim=-1))


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over channels (no affine) in float32: under bf16 autocast the convolutions hand it bf16
    maps, on which the CPU kernel ran 2-2.5x slower than on float32 (docs/performance.md)."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=LN_EPS)


class ConvNeXtBlock(nn.Module):
    """The reference's ConvNeXt block on NHWC maps: depth-wise conv, LayerNorm, Linear, GELU, Linear."""

    def __init__(self, c_in: int, c_out: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.dconv = nn.Conv2d(c_in, c_in, kernel, padding=kernel // 2, groups=c_in, bias=False)
        self.fc1 = nn.Linear(c_in, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, c_out, bias=False)
        self.residual = c_in == c_out

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        y = self.dconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        y = _layer_norm(y)
        y = self.fc2(F.gelu(self.fc1(y)))
        if mask is not None:
            y = y * mask
        return x + y if self.residual else y


class Stage(nn.Module):
    """Upsample (after a LayerNorm), add the local encoding, then the ConvNeXt blocks."""

    def __init__(self, arch: HiNeRVConfig, index: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.scale = arch.scales[index]
        self.encoding = LocalEncoding(arch, index, c_in)
        hidden = int(c_out * arch.exps[index])
        k = arch.kernels[index]
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(c_in if j == 0 else c_out, c_out, hidden, k) for j in range(arch.depths[index])
        )


def _upsample_axis(x: torch.Tensor, scale: int, dim: int) -> torch.Tensor:
    """Bilinear upsampling by an integer `scale` (align_corners=False) along `dim` of a window, edges clamped.

    Output position q * s + r reads source q + t_r with t_r = (r + 0.5) / s - 0.5, the same offset for every
    q: so each phase r is a blend of two shifted slices, and the step has no gathers (whose backward is a
    scatter-add, non-deterministic once compiled). The window's ends repeat its edge values, which is what
    clamping does where the window is the frame."""
    if scale == 1:
        return x
    n = x.shape[dim]
    padded = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
    phases = []
    for r in range(scale):
        t = (r + 0.5) / scale - 0.5
        low = 0 if t < 0 else 1  # the slice of source q - 1 (t < 0) or q
        weight = 1 + t if t < 0 else t  # on the next source
        a = padded.narrow(dim, low, n)
        phases.append(a if weight == 0 else a * (1 - weight) + padded.narrow(dim, low + 1, n) * weight)
    return torch.stack(phases, dim + 1).flatten(dim, dim + 1)


def _edge_weights(out_pos: torch.Tensor, scale: int, full_in: int, in_start: torch.Tensor, in_len: int):
    """(B, n) factors that make the window's upsampling clamp at the frame's edges, not the window's.

    A window that reaches past the frame holds zeros there (the zero padding of a full-frame pass), so an
    output inside the frame whose outer tap lies past the edge got only `w` x the edge value, where the
    full frame's clamped interpolation gives all of it: it is divided by `w`."""
    src = (out_pos.to(torch.float32) + 0.5) / scale - 0.5
    inside = (out_pos >= 0) & (out_pos < full_in * scale)
    before = inside & (src < 0) & (in_start[:, None] < 0)
    after = inside & (src > full_in - 1) & (in_start[:, None] + in_len > full_in)
    ones = torch.ones_like(src)
    return torch.where(before, 1 / (src + 1), torch.where(after, 1 / (full_in - src), ones))


def _spread(local: torch.Tensor, start: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """The cell encodings (B, s, s, C) tiled over a window of `size` whose first row and column lie at
    `start` (full-frame positions at the stage's resolution; patch offsets are multiples of s)."""
    s = local.shape[1]
    (r0, c0), (n, m) = (start[0] % s, start[1] % s), size
    tiled = local.repeat(1, -(-(r0 + n) // s), -(-(c0 + m) // s), 1)
    return tiled[:, r0 : r0 + n, c0 : c0 + m]


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, H, W, C) at per-sample rows index (B, n) -> (B, n, W, C).

    `torch.gather` with a broadcast index, not advanced indexing: the same values, but its backward is a
    scatter-add that runs 2.5-9x faster on the CPU than advanced indexing's accumulating `index_put_`
    (docs/performance.md)."""
    b, _, w, c = x.shape
    return torch.gather(x, 1, index[:, :, None, None].expand(b, index.shape[1], w, c))


def _gather_cols(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, H, W, C) at per-sample columns index (B, n) -> (B, H, n, C)."""
    b, h, _, c = x.shape
    return torch.gather(x, 2, index[:, None, :, None].expand(b, h, index.shape[1], c))


class HiNeRV(nn.Module):
    """The HiNeRV network. Input: (B, 3) int64 rows (frame, row, column) of each patch's top-left output
    pixel; output: (B, 3, ph, pw) in [0, 1], where `patch` is (ph, pw) (default: the whole frame)."""

    @property
    def bf16_on_cpu(self) -> bool:
        """Whether "auto" may train it in bf16 on a CPU. Its step is gathers, LayerNorms and small matrices:
        on a CPU with AMX bf16 autocast made it ~1.1x slower, on AVX-512 bf16 without AMX 1.5x faster at
        the same PSNR (docs/performance.md)."""
        return "amx_bf16" not in cpu_flags()

    def __init__(self, arch: HiNeRVConfig, patch: tuple[int, int] | None = None) -> None:
        super().__init__()
        arch.validate()
        self.arch = arch
        self.height, self.width = arch.output_size
        self.base_grids = nn.ParameterList(
            [_grid(t, arch.base_size[0] * arch.base_size[1] * c) for t, c in arch.base_grids()]
        )
        widths = arch.widths()
        base_channels = sum(c for _, c in arch.base_grids())
        self.stem = nn.Conv2d(base_channels, widths[0], arch.stem_kernel, padding=arch.stem_kernel // 2)
        self.stages = nn.ModuleList(
            Stage(arch, i, widths[i - 1] if i else widths[0], widths[i]) for i in range(len(arch.scales))
        )
        self.head = nn.Linear(widths[-1], 3)
        for module in (self.stem, self.head):
            nn.init.zeros_(module.bias)
        self.set_patch(patch)

    def set_patch(self, patch: tuple[int, int] | None) -> None:
        """Render patches of this size (multiples of the total scale that tile the frame), or whole frames."""
        ph, pw = patch or (self.height, self.width)
        total = math.prod(self.arch.scales)
        if ph % total or pw % total or self.height % ph or self.width % pw:
            raise MethodError(
                f"HiNeRV patch {pw}x{ph} must tile the {self.width}x{self.height} frame in multiples of {total}"
            )
        self.patch = (ph, pw)
        self.grid = (self.height // ph, self.width // pw)
        self.rows = plan_windows(self.arch, ph, self.height, ph == self.height)
        self.cols = plan_windows(self.arch, pw, self.width, pw == self.width)

    @property
    def patches_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    def batch_input(self, times: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Whole frames: the frame indices of times t = i / T, at the top-left corner."""
        index = torch.round(times * self.arch.frames).long()
        return torch.stack([index, torch.zeros_like(index), torch.zeros_like(index)], dim=1)

    def patch_batch(
        self, frame: torch.Tensor, patch: torch.Tensor, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(network input, target patches) for patch numbers `patch` (B,) of frames (B, 3, H, W)."""
        ph, pw = self.patch
        gr, gc = self.grid
        row, col = patch // gc, patch % gc
        inputs = torch.stack([frame, row * ph, col * pw], dim=1)
        b = frames.shape[0]
        tiles = frames.reshape(b, 3, gr, ph, gc, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gr * gc, 3, ph, pw)
        return inputs, tiles[torch.arange(b, device=frames.device), patch].contiguous(
            memory_format=torch.channels_last
        )

    def _positions(self, offset: torch.Tensor, window: tuple[int, int], ratio: int) -> torch.Tensor:
        """Full-frame positions (B, n) of a window at a resolution `ratio` times coarser than the output."""
        start, length = window
        base = offset // ratio + start
        return base[:, None] + torch.arange(length, device=offset.device)[None, :]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        arch = self.arch
        frame, y0, x0 = inputs[:, 0], inputs[:, 1], inputs[:, 2]
        b = inputs.shape[0]
        total = math.prod(arch.scales)
        h0, w0 = arch.base_size
        # base map of the frame, cut to the base window (rows clamped, then zeroed outside the frame)
        base = torch.cat(
            [
                sample_time(g, frame, arch.frames).view(b, h0, w0, c)
                for g, (_, c) in zip(self.base_grids, arch.base_grids(), strict=True)
            ],
            dim=-1,
        )
        rows = self._positions(y0, self.rows.base, total)
        cols = self._positions(x0, self.cols.base, total)
        x = _gather_cols(_gather_rows(base, rows.clamp(0, h0 - 1)), cols.clamp(0, w0 - 1))
        mask = self._mask(rows, cols, h0, w0)
        x = x if mask is None else x * mask
        x = self.stem(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x if mask is None else x * mask
        full = (h0, w0)
        ratio = total
        in_rows, in_cols = rows, cols
        in_starts = (self.rows.base[0], self.cols.base[0])  # window starts relative to the patch's offset
        for i, stage in enumerate(self.stages):
            s = stage.scale
            ratio //= s
            out_full = (full[0] * s, full[1] * s)
            rows = self._positions(y0, self.rows.stages[i], ratio)
            cols = self._positions(x0, self.cols.stages[i], ratio)
            x = _layer_norm(x)
            (r_start, r_len), (c_start, c_len) = self.rows.stages[i], self.cols.stages[i]
            x = _upsample_axis(x, s, 1).narrow(1, r_start - s * in_starts[0], r_len)
            x = _upsample_axis(x, s, 2).narrow(2, c_start - s * in_starts[1], c_len)
            if self.patch[0] < self.height:  # a whole-frame axis has no window past the frame to undo
                x = x * _edge_weights(rows, s, full[0], in_rows[:, 0], in_rows.shape[1])[:, :, None, None]
            if self.patch[1] < self.width:
                x = x * _edge_weights(cols, s, full[1], in_cols[:, 0], in_cols.shape[1])[:, None, :, None]
            x = x + _spread(stage.encoding(frame), (r_start, c_start), (r_len, c_len))
            mask = self._mask(rows, cols, *out_full)
            x = x if mask is None else x * mask
            for block in stage.blocks:
                x = block(x, mask)
            full, in_rows, in_cols = out_full, rows, cols
            in_starts = (r_start, c_start)
        # crop the halo: the patch starts at -start of the last window
        (r_start, _), (c_start, _) = self.rows.stages[-1], self.cols.stages[-1]
        ph, pw = self.patch
        x = x[:, -r_start : -r_start + ph, -c_start : -c_start + pw]
        return torch.sigmoid(self.head(x)).permute(0, 3, 1, 2)

    @staticmethod
    def _mask(rows: torch.Tensor, cols: torch.Tensor, height: int, width: int) -> torch.Tensor | None:
        """(B, n, m, 1) ones inside the frame, zeros outside; None when the window is the frame.

        A compiled step always multiplies by the mask: asking whether it is all ones would read a tensor's
        value, which splits the compiled graph (and the multiply is fused there, nearly free)."""
        inside_r = (rows >= 0) & (rows < height)
        inside_c = (cols >= 0) & (cols < width)
        if not torch.compiler.is_compiling() and bool(inside_r.all()) and bool(inside_c.all()):
            return None
        return (inside_r[:, :, None] & inside_c[:, None, :]).unsqueeze(-1).to(torch.float32)


# --- counts -------------------------------------------------------------------------------------------------


def parameter_shapes(arch: HiNeRVConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in the network's order (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = HiNeRV(arch)
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def is_grid(name: str) -> bool:
    return "grids." in name


def prunable(names: Any) -> list[str]:
    """The weights pruning applies to (the reference's): convolution and Linear weights of the stem, blocks
    and head; the grids and the encodings' Linear layers stay dense (its ``no_prune_prefix``)."""
    return [n for n in names if n.endswith(".weight") and ".encoding." not in n]


def count_parameters(arch: HiNeRVConfig) -> int:
    return sum(math.prod(s) for s in parameter_shapes(arch).values())


def grid_parameters(arch: HiNeRVConfig) -> int:
    return sum(math.prod(s) for n, s in parameter_shapes(arch).items() if is_grid(n))


def decode_macs(arch: HiNeRVConfig) -> int:
    """Multiply-accumulates to render one frame (stem, blocks, encodings' Linear layers, head)."""
    h, w = arch.base_size
    widths = arch.widths()
    base_channels = sum(c for _, c in arch.base_grids())
    macs = h * w * base_channels * widths[0] * arch.stem_kernel**2
    c_in = widths[0]
    for i, s in enumerate(arch.scales):
        h, w = h * s, w * s
        macs += s * s * sum(c for _, c in arch.enc_grids(i)) * c_in  # the Linear runs once per cell position
        hidden = int(widths[i] * arch.exps[i])
        for j in range(arch.depths[i]):
            c = c_in if j == 0 else widths[i]
            macs += h * w * (c * arch.kernels[i] ** 2 + c * hidden + hidden * widths[i])
        c_in = widths[i]
    return macs + h * w * widths[-1] * 3


def macs_per_pixel(arch: HiNeRVConfig) -> float:
    h, w = arch.output_size
    return decode_macs(arch) / (h * w)
