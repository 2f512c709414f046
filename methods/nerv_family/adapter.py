"""The adapter base of the NeRV family: what every family method does the same way.

Sizing: a family network's coded size is known (or predicted) before training, so `plan` searches shapes
by bisection on one width while another follows a grid (`closest_shape`), and refuses a rate that even
the smallest network overshoots (`refuse_unreachable`). Fitting: the clip must be the size the planned
network renders, and initial weights are drawn on the CPU from the job's seed, so that every device trains
the same network (`check_frame_size`, `seeded`, `epochs_for`). Streams: the header names the architecture
and the clip's size (`methods.nerv_family.header`), and the framing (container plus header) is measured by
packing the header with empty sections, so a size model charges it exactly (`framing_bits`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from bench import bitstream
from bench.contract import RATE_TOLERANCE, Context, Method, PerfSection, SeqInfo
from bench.errors import MethodError

RENDER_BATCH = 4  # frames a render step decodes (the encoder side and the decoder render alike)
TIMED_EPOCHS = 1_000_000  # under a wall-clock limit the clock, not the epoch count, ends training
CODER_FINAL_BITS = 64  # the range coder ends on up to two 32-bit words

Shape = TypeVar("Shape")
T = TypeVar("T")


def bisect_geometric(below: Callable[[float], bool], lo: float, hi: float, steps: int) -> tuple[float, float]:
    """(lo, hi) bracketing the point where `below(x)` (true for small x) turns false, after `steps` halvings
    of the ratio hi / lo."""
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if below(mid) else (lo, mid)
    return lo, hi


def bisect_integer(below: Callable[[int], bool], lo: int, hi: int) -> tuple[int, int]:
    """(lo, lo + 1) bracketing the integer where `below(n)` (true for small n) turns false."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if below(mid) else (lo, mid)
    return lo, hi


def closest_shape(
    widths: Iterable[float],
    bracket: Callable[[float], Iterable[Shape]],
    size: Callable[[Shape], float],
    target: float,
    band: float,
    score: Callable[[Shape, float, float], float],
) -> Shape | None:
    """The best-scoring shape predicted within `band` of `target` bits.

    For each width on a grid, `bracket(width)` gives the shapes on either side of the target (solved by
    bisection on a second dimension); `score(shape, width, miss)` ranks those whose relative size miss is
    inside the band (lower is better, the first of equals wins).
    """
    best: tuple[float, Shape] | None = None
    for width in widths:
        for shape in bracket(width):
            miss = abs(size(shape) / target - 1)
            if miss > band:
                continue
            value = score(shape, width, miss)
            if best is None or value < best[0]:
                best = (value, shape)
    return None if best is None else best[1]


def framing_bits(method: str, version: str, header: dict[str, Any], sections: Iterable[str]) -> int:
    """Container and header bits of a stream: everything but the sections' payloads."""
    return 8 * len(bitstream.pack(method, version, header, dict.fromkeys(sections, b"")))


class NeRVFamilyMethod(Method):
    """Base of the NeRV-family adapters (no `name`: the registry lists only its subclasses)."""

    trains: ClassVar[bool] = True

    # -- plan ----------------------------------------------------------------------------------------------
    def refuse_unreachable(self, smallest_bits: float, info: SeqInfo, target_bpp: float) -> None:
        """A MethodError when even the smallest network overshoots the target by more than half the tolerance."""
        if smallest_bits > target_bpp * info.pixels * (1 + RATE_TOLERANCE / 2):
            raise MethodError(
                f"{self.name} cannot reach {target_bpp:g} bpp on {info.width}x{info.height}x{info.num_frames}: "
                f"its smallest network codes to about {smallest_bits / info.pixels:.3g} bpp; choose a higher target"
            )

    def no_shape_found(self, target_bpp: float, band: float) -> MethodError:
        return MethodError(
            f"{self.name} found no network within {band:.0%} of {target_bpp:g} bpp on this clip; "
            "try a nearby target"
        )

    # -- fit -----------------------------------------------------------------------------------------------
    def check_frame_size(self, renders: tuple[int, int], frames: np.ndarray) -> None:
        """Refuse a config planned for another clip size (`renders` is the network's (height, width))."""
        if tuple(renders) != tuple(frames.shape[1:3]):
            raise MethodError(
                f"{self.name} config renders {renders[1]}x{renders[0]} but the clip is "
                f"{frames.shape[2]}x{frames.shape[1]}; plan the config on this clip"
            )

    @staticmethod
    def seeded(build: Callable[[], T], seed: int) -> T:
        """`build()` with torch's global generator seeded on the CPU alone: the same weights on every device."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build()

    @staticmethod
    def epochs_for(epochs: int, ctx: Context) -> int:
        """The epoch count to train for: under a wall-clock limit the clock ends training, not the count."""
        return TIMED_EPOCHS if ctx.time_limit_s else epochs

    def train_trained(
        self, model: Any, frames: np.ndarray, config: Any, ctx: Context, params: list | None = None
    ) -> Any:
        """Train a network whose weights learn, with the config's schedule (epochs, lr, batch size, loss,
        warm-up; None = the budget's): the fit of nerv-dense and hnerv. `params`: Adam groups (default:
        every weight at the config's lr)."""
        from methods.nerv_family.training import train

        return train(
            model,
            frames,
            ctx,
            epochs=self.epochs_for(config.epochs or ctx.budget.epochs, ctx),
            lr=config.lr or ctx.budget.lr,
            batch_size=config.batch_size or ctx.budget.batch_size,
            loss=config.loss,
            warmup=config.warmup,
            params=params,
            desc=self.name,
        )

    # -- bench perf ----------------------------------------------------------------------------------------
    @classmethod
    def perf_sections(cls) -> dict[str, PerfSection]:
        from methods.nerv_family import timing

        return {
            "train": timing.train_section,
            "coding": timing.coding_section,
            "decode": timing.decode_section,
        }

    # -- streams -------------------------------------------------------------------------------------------
    def framing_bits(self, header: dict[str, Any], sections: Iterable[str]) -> int:
        """Container and header bits of this method's stream with `header` and these sections."""
        return framing_bits(self.name, self.version, header, sections)
