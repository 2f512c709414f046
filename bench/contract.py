"""The method contract: what the harness gives a method and what it expects back.

A method is one class in one file of `methods/`. The harness calls, in order:

1. ``plan(clip, target_bpp, budget) -> config``: the configuration whose encoded size lands at the target
   rate (within +-`RATE_TOLERANCE`, 10 %). NeRV-family methods know their size before training; codecs may bisect on the clip.
2. ``fit(frames, config, ctx) -> state``: train or search; progress, checkpoints and device come from ``ctx``.
3. ``encode(state) -> bytes``: a stream in the container of `bench.bitstream`; its sections give the breakdown.
4. ``decode(data, info, ctx) -> frames``: on a fresh object, from the bytes alone; uint8 RGB (T, H, W, 3).
   Every stream's JSON header holds ``width``, ``height`` and ``frames``, so `bench decode` needs no record.

A method never computes a metric or a bpp, never prints, and never knows the grid it runs in.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from bench.budgets import Budget

RATE_TOLERANCE = 0.10  # `plan`'s promise: the encoded size lands within +-10 % of the target bpp


@dataclass(frozen=True)
class SeqInfo:
    """What a method may know about the clip it codes (after the budget's frame selection and resize)."""

    name: str
    width: int
    height: int
    num_frames: int
    fps: float
    checksum: str = ""

    @property
    def pixels(self) -> int:
        """Pixels in the whole clip: the denominator of bits per pixel."""
        return self.num_frames * self.height * self.width


@dataclass(frozen=True)
class Clip:
    """A prepared clip: its description and its uint8 RGB frames, shape (T, H, W, 3)."""

    info: SeqInfo
    frames: np.ndarray


class ProgressBar(Protocol):
    def update(self, n: int = 1, **stats: float) -> None: ...

    def close(self) -> None: ...


class _SilentBar:
    def update(self, n: int = 1, **stats: float) -> None:
        pass

    def close(self) -> None:
        pass


def _silent_progress(total: int, desc: str) -> ProgressBar:
    return _SilentBar()


@dataclass
class Context:
    """Everything a job lends its method: where to write, on what device, with which seed and budget."""

    workdir: Path
    budget: Budget
    device: str = "cpu"
    seed: int = 0
    time_limit_s: float | None = None
    progress: Callable[[int, str], ProgressBar] = field(default=_silent_progress)

    def checkpoint_path(self) -> Path:
        """Where a resumable method keeps its training checkpoint."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir / "checkpoint.pt"


class PerfSection(Protocol):
    """A method's timing for `bench perf`: prints each measurement beside its baseline, returns them."""

    def __call__(self, device: str, repeats: int) -> dict[str, Any]: ...


class FitFailed(Exception):
    """Raised by `fit` when training cannot go on (for example a NaN loss); the job is recorded as failed."""


class Method(ABC):
    """Base class of every method adapter. Subclasses set the class attributes and the four calls."""

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type]
    rate_ladder: ClassVar[tuple[float, ...]] = (0.05, 0.1, 0.2)  # rates it is built for (shown by `bench ls`)
    trains: ClassVar[bool] = False
    in_default_run: ClassVar[bool] = True  # False: only run when named (too costly for `--methods all`)
    requires: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the method can run here, otherwise why not (a missing module, say).

        An entry of `requires` is a Python module name, or `KIND:NAME` for a component of an ffmpeg build:
        `ffmpeg-encoder:libvvenc` (the suite's ffmpeg binary has this encoder), `ffmpeg-filter:NAME`, or
        `av-codec:NAME` (PyAV's own ffmpeg has this codec); see `bench.tools`.
        """
        for entry in cls.requires:
            reason = missing_requirement(entry)
            if reason is not None:
                return reason
        return None

    def __init__(self, config: Any | None = None) -> None:
        """`config`: the hyper-parameters `plan` starts from (the grid's `method[param=value]`); None = defaults."""
        self.base_config = config if config is not None else self.default_config()

    @classmethod
    def default_config(cls) -> Any:
        return cls.Config()

    @abstractmethod
    def plan(self, clip: Clip, target_bpp: float, budget: Budget) -> Any:
        """Return a `Config`, built from `self.base_config`, whose encoded size lands within 10 % of
        `target_bpp` on this clip."""

    @abstractmethod
    def fit(self, frames: np.ndarray, config: Any, ctx: Context) -> Any:
        """Train or search on uint8 RGB frames; return whatever `encode` needs."""

    @abstractmethod
    def encode(self, state: Any) -> bytes:
        """Everything the decoder needs, nothing else, in the `bench.bitstream` container."""

    @abstractmethod
    def decode(self, data: bytes, info: SeqInfo, ctx: Context) -> np.ndarray:
        """Rebuild uint8 RGB frames (T, H, W, 3) from the bytes alone."""

    def stats(self, state: Any) -> dict[str, Any]:
        """Facts about a fitted state for the record (parameters, non-zeros, epochs, ...); optional."""
        return {}

    @classmethod
    def perf_sections(cls) -> dict[str, PerfSection]:
        """The method's own timings for `bench perf`: section name -> function; optional.

        Methods that share a timing return the same function, and `bench perf` runs it once.
        """
        return {}


def missing_requirement(requirement: str) -> str | None:
    """Why one entry of a method's `requires` is not met here (None when it is): a Python module name, or
    `KIND:NAME` for a component of an ffmpeg build (checked by `bench.tools`)."""
    if ":" in requirement:
        from bench import tools

        return tools.missing(requirement)
    if importlib.util.find_spec(requirement) is None:
        return f"needs the Python module '{requirement}' (pip install {requirement})"
    return None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready view of a method config (a dataclass)."""
    return dataclasses.asdict(config)
