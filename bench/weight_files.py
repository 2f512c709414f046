"""Weight files of the suite's own perceptual networks: found on disk, read as plain tensors, copied checked.

Nothing is downloaded and no pickled code runs: a file comes from an environment variable or from inside an
installed package (located with `importlib.util.find_spec`, which reads the package's location without
importing it, so a package whose code needs torchvision can still lend its weights), and is read with
`torch.load(..., weights_only=True)`. Every tensor is checked for its key and shape before it is copied, so
a wrong file is a one-line MetricError naming the file, not a silently half-loaded network.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from bench.errors import MetricError


def package_file(package: str, *parts: str) -> Path | None:
    """Where `parts` would lie inside the installed top-level `package`, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def find(env: str, fallback: Path | None, missing: str) -> Path | str:
    """The file `$env` names, else `fallback` when it exists; otherwise the reason, `missing`."""
    if os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
        return path if path.is_file() else f"{env}={path} is not a file"
    if fallback is not None and fallback.is_file():
        return fallback
    return missing


def read_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The state dict in `path`, read without unpickling code; MetricError naming `what` and the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise MetricError(f"cannot read {what} weights {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise MetricError(f"{what} weights {path} are not a state dict")
    return state


def checked(
    state: dict[str, torch.Tensor], key: str, shape: tuple[int, ...], path: Path, what: str
) -> torch.Tensor:
    """`state[key]` when it has `shape`; otherwise MetricError saying what was found."""
    value = state.get(key)
    if value is None or tuple(value.shape) != shape:
        got = "missing" if value is None else tuple(value.shape)
        raise MetricError(f"{what} weights {path}: {key} should be {shape}, got {got}")
    return value


def copy_checked(dst: torch.Tensor, state: dict[str, torch.Tensor], key: str, path: Path, what: str) -> None:
    """Copy `state[key]` into `dst`, whose shape it must have."""
    value = checked(state, key, tuple(dst.shape), path, what)
    with torch.no_grad():
        dst.copy_(value)
