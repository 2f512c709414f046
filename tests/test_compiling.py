"""A compiled training step: it runs compiled, repeats its weights for a seed, learns like the eager step, and
falls back to eager (saying why) where no kernels can be built; hinerv compiles only when asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.budgets import get_budget
from bench.contract import Context
from bench.identity import hyper_identity
from bench.params import build_config
from methods.hinerv import HiNeRVMethod
from methods.nerv_family.backbones.hinerv import HiNeRV, HiNeRVConfig
from methods.nerv_family.compiling import compile_unavailable
from methods.nerv_family.training import train

ARCH = HiNeRVConfig(
    base_size=(9, 16),
    frames=4,
    channels=8,
    scales=(2, 2, 2),
    depths=(1, 1, 1),
    exps=(2, 2, 1),
    kernels=(3, 3, 3),
    base_grid_frames=1,
    base_grid_channels=1,
    enc_grid_channels=2,
)


def _fit(frames: np.ndarray, tmp_path: Path, compile: bool) -> tuple[dict[str, torch.Tensor], object]:
    torch.manual_seed(0)
    model = HiNeRV(ARCH, (24, 32))
    ctx = Context(workdir=tmp_path, budget=get_budget("smoke"))
    result = train(model, frames, ctx, epochs=6, lr=5e-3, batch_size=24, compile=compile, precision="fp32")
    (tmp_path / "checkpoint.pt").unlink()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, result


def test_a_compiled_step_repeats_its_weights_and_learns_like_the_eager_one(
    smoke_clip, tmp_path: Path
) -> None:
    if compile_unavailable(torch.device("cpu")):
        pytest.skip("no C++ compiler here")
    frames = smoke_clip.frames
    first, compiled = _fit(frames, tmp_path, compile=True)
    again, _ = _fit(frames, tmp_path, compile=True)
    eager_weights, eager = _fit(frames, tmp_path, compile=False)
    assert compiled.compiled == "on" and eager.compiled == "off"
    assert all(torch.equal(first[k], again[k]) for k in first)  # same seed, same weights
    assert not all(torch.equal(first[k], eager_weights[k]) for k in first)  # it did run other kernels
    assert compiled.psnr == pytest.approx(eager.psnr, abs=0.1)  # ...computing the same step
    assert not torch.are_deterministic_algorithms_enabled()  # the loop's settings do not outlive it


def test_without_a_cxx_compiler_the_step_trains_eagerly_and_says_why(smoke_clip, tmp_path: Path) -> None:
    import torch._inductor.config as inductor

    with inductor.patch({"cpp.cxx": (None, "no-such-c++")}):  # restored on leaving, as a test must
        reason = compile_unavailable(torch.device("cpu"))
        _, result = _fit(smoke_clip.frames, tmp_path, compile=True)
    assert reason and "install g++" in reason and "\n" not in reason
    assert compile_unavailable(torch.device("cpu")) is None
    assert result.compiled == f"unavailable: {reason}" and np.isfinite(result.psnr)


def test_eager_keeps_the_keys_jobs_had_before_the_field() -> None:
    assert "compile" not in hyper_identity(build_config(HiNeRVMethod, ()))
    assert hyper_identity(build_config(HiNeRVMethod, (("compile", True),)))["compile"] is True
