"""What every metric is given: uint8 RGB frames (T, H, W, 3), a reference and a test of one shape; anything
else is a one-line `MetricError` naming both inputs, before any library sees them."""

from __future__ import annotations

import numpy as np

from bench.errors import MetricError


def as_frames(x: np.ndarray, name: str = "frames") -> np.ndarray:
    """`x` as a (T, H, W, 3) uint8 array; a single (H, W, 3) frame becomes T = 1."""
    if not isinstance(x, np.ndarray):
        raise MetricError(f"{name} must be a numpy array of uint8 RGB frames, got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise MetricError(f"{name} must be uint8 RGB (0-255), got {x.dtype}; convert before scoring")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or 0 in x.shape:
        raise MetricError(f"{name} must have shape (T, H, W, 3) or (H, W, 3) with RGB last, got {x.shape}")
    return x


def _describe(x: np.ndarray) -> str:
    return f"{x.shape[0]} frame(s) of {x.shape[2]}x{x.shape[1]}"


def check_pair(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as (T, H, W, 3) uint8 of the same shape, or a MetricError naming both sizes."""
    ref, test = as_frames(ref, "reference"), as_frames(test, "test")
    if ref.shape != test.shape:
        raise MetricError(
            f"reference ({_describe(ref)}) and test ({_describe(test)}) differ; score inputs of equal size"
        )
    return ref, test
