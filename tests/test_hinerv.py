"""hinerv: the reference's parameter counts, exact patch rendering, the interpolation, one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.budgets import get_budget
from bench.contract import Clip, SeqInfo
from bench.errors import MethodError
from methods.hinerv import HiNeRVMethod
from methods.nerv_family.backbones.hinerv import (
    HiNeRV,
    HiNeRVConfig,
    count_parameters,
    grid_parameters,
    sample_time,
    scale_plan,
)

# Parameter counts of the reference's UVG configurations (hmkx/HiNeRV cfgs/models/uvg-hinerv-{s,m,l,xl,xxl}
# _1920x1080.txt) at 1920x1080 and 600 frames (UVG's clip length, which the local grids scale with), and its
# Bunny HiNeRV-S (bunny-hinerv-s_1280x720.txt, 132 frames). Derived by building the reference's own model
# (models/hinerv.py build_model with those config files; timm's DropPath, unused at droppath 0, replaced by
# an identity) and summing its parameters: 'All' of its get_num_parameters(). Grids: its 'Encoding' plus the
# local grids of the stages.
REFERENCE = {
    # name: (channels, base grid channels, local grid channels, depths, all parameters, grid parameters)
    "S": (280, 2, 4, (3, 3, 3, 1), 3_188_933, 572_400),
    "M": (400, 4, 8, (3, 3, 3, 1), 6_489_553, 1_137_600),
    "L": (560, 8, 16, (3, 3, 3, 1), 12_818_953, 2_275_200),
    "XL": (688, 16, 32, (4, 4, 4, 1), 25_649_557, 4_550_400),
    "XXL": (864, 32, 64, (5, 5, 5, 1), 50_726_919, 9_100_800),
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_uvg_1080p_parameter_counts_match_the_reference(name: str) -> None:
    channels, base, local, depths, total, grids = REFERENCE[name]
    arch = HiNeRVConfig(channels=channels, base_grid_channels=base, enc_grid_channels=local, depths=depths)
    assert arch.output_size == (1080, 1920)
    assert count_parameters(arch) == total
    assert grid_parameters(arch) == grids


def test_bunny_720p_hinerv_s_count_matches_the_reference() -> None:
    arch = HiNeRVConfig(
        base_size=(18, 32),
        frames=132,
        scales=(5, 2, 2, 2),
        base_grid_frames=40,
        base_grid_channels=8,
        enc_grid_channels=16,
    )
    assert arch.output_size == (720, 1280)
    assert count_parameters(arch) == 3_249_819


def test_scale_plan_follows_the_reference_where_it_has_configs() -> None:
    assert scale_plan(1080, 1920) == ((18, 32), (5, 3, 2, 2))
    assert scale_plan(720, 1280) == ((18, 32), (5, 2, 2, 2))
    assert scale_plan(180, 320) == ((9, 16), (5, 2, 2))


def test_time_interpolation_is_f_interpolate() -> None:
    grid = torch.randn(5, 7)
    frames = 13
    expected = F.interpolate(grid.T[None, None], size=(7, frames), mode="bilinear", align_corners=False)[
        0, 0
    ].T
    got = sample_time(grid, torch.arange(frames), frames)
    assert torch.allclose(got, expected, atol=1e-6)


def _tiny() -> HiNeRV:
    arch = HiNeRVConfig(
        base_size=(9, 16),
        frames=8,
        channels=16,
        scales=(2, 2, 2),
        depths=(3, 3, 1),
        exps=(4, 4, 1),
        kernels=(3, 3, 3),
        base_grid_frames=2,
        base_grid_channels=1,
        enc_grid_channels=2,
    )
    torch.manual_seed(0)
    model = HiNeRV(arch)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)  # large values: any halo or mask error shows
    return model


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5])
def test_upsampling_by_slices_is_f_interpolate(scale: int) -> None:
    from methods.nerv_family.backbones.hinerv import _upsample_axis

    x = torch.randn(2, 7, 9, 5)  # NHWC, a whole frame
    ours = _upsample_axis(_upsample_axis(x, scale, 1), scale, 2)
    ref = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=scale, mode="bilinear", align_corners=False)
    assert torch.allclose(ours, ref.permute(0, 2, 3, 1), atol=1e-5)  # float rounding of 1 / scale


@torch.no_grad()
def test_patches_render_exactly_what_the_whole_frame_renders() -> None:
    model = _tiny()
    full = model(torch.tensor([[3, 0, 0], [6, 0, 0]]))
    model.set_patch((24, 32))
    frames = torch.rand(2, 3, 72, 128)
    for k in range(12):
        patches = torch.tensor([k, 11 - k])
        inputs, target = model.patch_batch(torch.tensor([3, 6]), patches, frames)
        out = model(inputs)
        for j, p in enumerate(patches.tolist()):
            r, c = p // 4, p % 4
            window = (slice(None), slice(24 * r, 24 * r + 24), slice(32 * c, 32 * c + 32))
            assert torch.allclose(out[j], full[j][window], atol=1e-5)
            assert torch.equal(target[j], frames[j][window])


@pytest.mark.parametrize(
    ("flags", "bf16"),
    [({"avx512_bf16"}, True), ({"avx512_bf16", "amx_bf16", "amx_tile"}, False), (set(), True)],
)
def test_auto_precision_trains_hinerv_in_bf16_on_a_cpu_unless_it_has_amx(
    flags: set[str], bf16: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import methods.nerv_family.backbones.hinerv as backbone
    from methods.nerv_family.training import native_bf16, resolve_precision

    monkeypatch.setattr(backbone, "cpu_flags", lambda: frozenset(flags))
    model = _tiny()
    assert model.bf16_on_cpu is bf16
    cpu = torch.device("cpu")
    if native_bf16(cpu):  # without native bf16 "auto" is fp32 whatever the backbone says
        expected = "bf16" if bf16 else "fp32"
        assert resolve_precision("auto", cpu, model.bf16_on_cpu) == expected


def test_a_patch_that_does_not_tile_is_refused() -> None:
    with pytest.raises(MethodError, match="must tile"):
        _tiny().set_patch((20, 32))


def _clip(width: int, height: int, frames: int = 4) -> Clip:
    info = SeqInfo("bunny", width, height, frames, 25.0)
    return Clip(info, np.zeros((frames, height, width, 3), np.uint8))


@pytest.mark.parametrize(("width", "height"), [(127, 72), (128, 71), (4096, 4093)])
def test_sizes_the_backbone_cannot_render_are_one_line_errors(width: int, height: int) -> None:
    with pytest.raises(MethodError) as info:
        HiNeRVMethod().plan(_clip(width, height), 0.5, get_budget("smoke"))
    assert "\n" not in str(info.value) and "resize the clip" in str(info.value)


def test_out_of_reach_rate_is_a_one_line_error() -> None:
    with pytest.raises(MethodError) as info:
        HiNeRVMethod().plan(_clip(128, 72), 0.01, get_budget("smoke"))
    assert "\n" not in str(info.value) and "cannot reach" in str(info.value)


def test_plan_lands_near_the_target_and_starts_from_the_base_config() -> None:
    from methods.hinerv import predicted_bits

    clip = _clip(320, 180, 16)
    cfg = HiNeRVMethod().plan(clip, 0.2, get_budget("cpu"))
    assert cfg.scales == (5, 2, 2) and cfg.patch_grid == HiNeRVMethod().base_config.patch_grid
    bits = predicted_bits(cfg.architecture(16), cfg)
    assert abs(bits / (0.2 * clip.info.pixels) - 1) <= 0.25
