"""On CUDA: every method's contract, the same seed giving the same bytes, and a GPU-encoded stream decoding on
the CPU to within one 8-bit level of the GPU's own decode. Skipped, with the reason, where no CUDA device is.

Run by `scripts/gpu_check.sh` on a machine with a GPU; docs/performance.md holds its figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import registry
from bench.budgets import get_budget
from bench.contract import Clip, Context
from bench.devices import make_deterministic

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (torch sees none)")

SMOKE = get_budget("smoke")
TARGET_BPP = 0.5
METHODS = registry.names(available_only=True)


def _encode(name: str, clip: Clip, workdir: Path, device: str, seed: int = 3) -> bytes:
    make_deterministic(device)
    method = registry.get(name)()
    config = method.plan(clip, TARGET_BPP, SMOKE)
    ctx = Context(workdir=workdir, budget=SMOKE, device=device, seed=seed)
    return method.encode(method.fit(clip.frames, config, ctx))


def _decode(name: str, data: bytes, clip: Clip, workdir: Path, device: str) -> np.ndarray:
    ctx = Context(workdir=workdir, budget=SMOKE, device=device)
    return registry.get(name)().decode(data, clip.info, ctx)


@pytest.mark.parametrize("name", METHODS)
def test_contract_on_cuda(name: str, smoke_clip: Clip, tmp_path: Path) -> None:
    data = _encode(name, smoke_clip, tmp_path / "fit", "cuda")
    decoded = _decode(name, data, smoke_clip, tmp_path / "dec", "cuda")
    assert decoded.dtype == np.uint8 and decoded.shape == smoke_clip.frames.shape
    bpp = 8 * len(data) / smoke_clip.info.pixels
    assert abs(bpp / TARGET_BPP - 1) <= 0.10


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_bytes_on_cuda(name: str, smoke_clip: Clip, tmp_path: Path) -> None:
    first = _encode(name, smoke_clip, tmp_path / "a", "cuda")
    second = _encode(name, smoke_clip, tmp_path / "b", "cuda")
    assert first == second, f"{name}: two encodes with one seed on CUDA differ"


@pytest.mark.parametrize("name", METHODS)
def test_a_gpu_stream_decodes_on_the_cpu(name: str, smoke_clip: Clip, tmp_path: Path) -> None:
    data = _encode(name, smoke_clip, tmp_path / "fit", "cuda")
    on_gpu = _decode(name, data, smoke_clip, tmp_path / "gpu", "cuda").astype(np.int16)
    on_cpu = _decode(name, data, smoke_clip, tmp_path / "cpu", "cpu").astype(np.int16)
    assert int(np.abs(on_gpu - on_cpu).max()) <= 1


def test_fp32_means_fp32(smoke_clip: Clip, tmp_path: Path) -> None:
    """A fp32 budget turns TF32 off; "tf32" turns it on (nothing else changes the matrix units)."""
    from methods.nerv_family.training import set_tf32

    set_tf32(torch.device("cuda"), "fp32")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    set_tf32(torch.device("cuda"), "tf32")
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    set_tf32(torch.device("cuda"), "fp32")
