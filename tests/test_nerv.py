"""The NeRV generator (shapes, parameter counts, strides) and the shared training loop (schedule, resume, NaN)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from bench.contract import Clip, Context, FitFailed
from bench.errors import MethodError
from methods.nerv_family.backbones.nerv import (
    NeRVConfig,
    NeRVGenerator,
    PositionalEncoding,
    choose_grid,
    choose_strides,
    count_parameters,
    decode_macs,
    parameter_shapes,
)
from methods.nerv_family.training import lr_multiplier, native_bf16, resolve_precision, train

TINY = NeRVConfig(stem_dims=(16,), fc_dim=4, lower_width=4, strides=(2, 2, 2), embed_levels=8)


# --- architecture ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fc_dim", "strides", "expected"),
    [
        (26, (5, 2, 2, 2, 2), 3_201_905),
        (58, (5, 2, 2, 2, 2), 6_282_001),
        (112, (5, 2, 2, 2, 2), 12_524_563),
        (26, (5, 3, 2, 2, 2), 3_314_705),
        (58, (5, 3, 2, 2, 2), 6_533_041),
        (112, (5, 3, 2, 2, 2), 13_008_883),
    ],
)
def test_parameter_counts_match_nerv_s_m_l(fc_dim: int, strides: tuple[int, ...], expected: int) -> None:
    assert count_parameters(NeRVConfig(fc_dim=fc_dim, strides=strides)) == expected


def test_decoding_macs_match_a_hand_count() -> None:
    # TINY: 16 encoding inputs -> 16 -> 9 * 16 * 4; three 3x3 convs 4 -> 4 * 2^2 on 9x16, 18x32, 36x64; 1x1 head.
    hand = 16 * 16 + 16 * 576 + 4 * 16 * 9 * 144 + 4 * 16 * 9 * 576 + 4 * 16 * 9 * 2304 + 4 * 3 * 72 * 128
    assert decode_macs(TINY) == hand == 1_861_888


def test_built_model_matches_the_counted_shapes() -> None:
    config = NeRVConfig(fc_dim=26, strides=(5, 3, 2, 2, 2))
    model = NeRVGenerator(config)
    assert sum(p.numel() for p in model.parameters()) == 3_314_705
    assert {k: tuple(p.shape) for k, p in model.named_parameters()} == parameter_shapes(config)
    assert list(parameter_shapes(config)) == [k for k, _ in model.named_parameters()]


@pytest.mark.parametrize(
    ("size", "strides"),
    [
        ((1080, 1920), (5, 3, 2, 2, 2)),
        ((720, 1280), (5, 2, 2, 2, 2)),
        ((180, 320), (5, 2, 2)),
        ((72, 128), (2, 2, 2)),
    ],
)
def test_strides_for_the_usual_sizes(size: tuple[int, int], strides: tuple[int, ...]) -> None:
    assert choose_strides(*size) == strides
    assert NeRVConfig(strides=strides).output_size == size


def test_unreachable_size_names_the_sizes_that_work() -> None:
    with pytest.raises(MethodError, match=r"not reachable.*128x72"):
        choose_strides(100, 100)
    with pytest.raises(MethodError, match="primes <= 7"):
        choose_strides(9 * 11, 16 * 11)


def test_no_upscaling_at_all_is_refused_with_the_sizes_that_work() -> None:
    with pytest.raises(MethodError, match="resize the clip"):
        choose_grid(71, 101)


def test_architecture_from_a_header_is_parsed_strictly() -> None:
    fields = dataclasses.asdict(TINY)
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    assert NeRVConfig.from_json(fields) == TINY
    for change in (
        {"fc_dim": 4.0},
        {"fc_dim": True},
        {"strides": [2, 2.0, 2]},
        {"start": [9, 16, 1]},
        {"embed_base": "1.25"},
        {"embed_base": float("inf")},
        {"activation": None},
        {"extra": 1},
    ):
        with pytest.raises((ValueError, MethodError)):
            NeRVConfig.from_json({**fields, **change})
    with pytest.raises(MethodError, match="overflows"):
        NeRVConfig.from_json({**fields, "embed_base": 1e308})


def test_other_aspect_ratios_get_their_own_start_grid() -> None:
    start, strides = choose_grid(144, 176)
    assert (start, strides) == ((9, 11), (2, 2, 2, 2))
    assert NeRVConfig(start=start, strides=strides).output_size == (144, 176)


def test_positional_encoding_interleaves_sin_and_cos() -> None:
    t = torch.tensor([0.0, 0.3])
    out = PositionalEncoding(1.25, 3)(t)
    angles = [1.25**i * math.pi * 0.3 for i in range(3)]
    expected = [v for a in angles for v in (math.sin(a), math.cos(a))]
    assert out.shape == (2, 6)
    assert torch.allclose(out[1], torch.tensor(expected), atol=1e-6)
    assert torch.equal(out[0], torch.tensor([0.0, 1.0] * 3))


def test_forward_gives_frames_in_unit_range() -> None:
    torch.manual_seed(0)
    out = NeRVGenerator(TINY)(torch.tensor([0.0, 0.5, 0.75]))
    assert out.shape == (3, 3, 72, 128)
    assert out.min() >= 0 and out.max() <= 1


def test_layer_factories_build_every_layer() -> None:
    """A masked variant plugs in through the factories, called with nn.Linear / nn.Conv2d signatures."""
    calls: list[str] = []

    def linear(*args, **kwargs) -> nn.Module:
        calls.append("linear")
        return nn.Linear(*args, **kwargs)

    def conv(*args, **kwargs) -> nn.Module:
        calls.append("conv")
        return nn.Conv2d(*args, **kwargs)

    model = NeRVGenerator(TINY, linear_layer=linear, conv_layer=conv)
    assert calls == ["linear", "linear", "conv", "conv", "conv", "conv"]
    assert sum(p.numel() for p in model.parameters()) == count_parameters(TINY)


def test_invalid_architecture_is_refused() -> None:
    with pytest.raises(MethodError, match="activation"):
        NeRVGenerator(dataclasses.replace(TINY, activation="tanhh"))


# --- training loop -----------------------------------------------------------------------------------------------


def test_schedule_warms_up_then_decays_to_zero() -> None:
    assert lr_multiplier(0.0, 0.2) == pytest.approx(0.1)
    assert lr_multiplier(0.1, 0.2) == pytest.approx(0.55)
    assert lr_multiplier(0.2, 0.2) == pytest.approx(1.0)
    assert lr_multiplier(0.6, 0.2) == pytest.approx(0.5)
    assert lr_multiplier(1.0, 0.2) == pytest.approx(0.0, abs=1e-12)


def _model() -> NeRVGenerator:
    torch.manual_seed(0)
    return NeRVGenerator(TINY)


def test_training_lowers_the_loss(smoke_clip: Clip, smoke_ctx: Context) -> None:
    model = _model()
    kwargs = {"lr": 2e-2, "batch_size": 2}
    before = train(
        model, smoke_clip.frames, smoke_ctx, epochs=1, checkpoint=smoke_ctx.workdir / "a.pt", **kwargs
    )
    after = train(
        model, smoke_clip.frames, smoke_ctx, epochs=15, checkpoint=smoke_ctx.workdir / "b.pt", **kwargs
    )
    assert after.loss < 0.5 * before.loss
    assert after.psnr > before.psnr + 3
    assert (after.epochs, after.steps) == (15, 30)


def test_nerv_loss_trains_too(smoke_clip: Clip, smoke_ctx: Context) -> None:
    result = train(_model(), smoke_clip.frames, smoke_ctx, epochs=4, lr=1e-2, batch_size=4, loss="nerv")
    assert math.isfinite(result.loss) and result.loss < 1


class _Killed(Exception):
    pass


class _KillingBar:
    """Progress bar that kills the run at its n-th report, as a preempted job would die."""

    def __init__(self, after: int) -> None:
        self.left = after

    def update(self, n: int = 1, **stats: float) -> None:
        if stats:
            self.left -= 1
            if self.left == 0:
                raise _Killed

    def close(self) -> None:
        pass


def test_resume_continues_from_the_checkpoint(smoke_clip: Clip, smoke_ctx: Context, tmp_path) -> None:
    budget = dataclasses.replace(smoke_ctx.budget, checkpoint_every_s=0.0)
    whole = _model()
    full = train(
        whole, smoke_clip.frames, Context(tmp_path / "whole", budget), epochs=6, lr=1e-2, batch_size=2
    )

    ctx = Context(tmp_path / "killed", budget, progress=lambda total, desc: _KillingBar(after=3))
    with pytest.raises(_Killed):
        train(_model(), smoke_clip.frames, ctx, epochs=6, lr=1e-2, batch_size=2)
    assert ctx.checkpoint_path().exists()

    resumed_model = _model()
    resumed = train(
        resumed_model,
        smoke_clip.frames,
        Context(tmp_path / "killed", budget),
        epochs=6,
        lr=1e-2,
        batch_size=2,
    )
    assert resumed.resumed_from_step == 4  # two epochs of two steps were saved before the third report
    assert resumed.steps == full.steps == 12
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed_model.named_parameters(), strict=True):
        assert torch.equal(a, b), name

    # A finished run's checkpoint makes a rerun instant, and a different run ignores it.
    again = train(
        _model(), smoke_clip.frames, Context(tmp_path / "killed", budget), epochs=6, lr=1e-2, batch_size=2
    )
    assert again.resumed_from_step == 12 and again.psnr == resumed.psnr
    other = train(
        _model(), smoke_clip.frames, Context(tmp_path / "killed", budget), epochs=2, lr=1e-2, batch_size=2
    )
    assert other.resumed_from_step == 0
    other_precision = train(
        _model(),
        smoke_clip.frames,
        Context(tmp_path / "killed", budget),
        epochs=6,
        lr=1e-2,
        batch_size=2,
        precision="bf16",
    )
    assert other_precision.resumed_from_step == 0


def test_bf16_mixed_precision_trains_as_well_as_fp32(smoke_clip: Clip, smoke_ctx: Context) -> None:
    results, models = {}, {}
    for precision in ("fp32", "bf16"):
        models[precision] = _model()
        results[precision] = train(
            models[precision],
            smoke_clip.frames,
            smoke_ctx,
            epochs=15,
            lr=2e-2,
            batch_size=2,
            precision=precision,
            checkpoint=smoke_ctx.workdir / f"{precision}.pt",
        )
    fp32, bf16 = results["fp32"], results["bf16"]
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert abs(bf16.psnr - fp32.psnr) < 1.0, (bf16.psnr, fp32.psnr)
    # Weights stay float32 (the optimizer updates float32 masters) and differ: bf16 really ran.
    assert all(p.dtype == torch.float32 for p in models["bf16"].parameters())
    assert not torch.equal(models["bf16"].head.weight, models["fp32"].head.weight)


def test_precision_auto_picks_bf16_only_where_the_device_has_it() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16, auto, got 'fp16'"):
        resolve_precision("fp16", cpu)
    # a backbone that bf16 slows down on a CPU trains in fp32 under "auto", and in bf16 only when asked
    assert resolve_precision("auto", cpu, bf16_on_cpu=False) == "fp32"
    assert resolve_precision("bf16", cpu, bf16_on_cpu=False) == "bf16"


def test_a_backbone_that_opts_out_of_cpu_bf16_trains_in_fp32_under_auto(
    smoke_clip: Clip, smoke_ctx: Context
) -> None:
    model = _model()
    model.bf16_on_cpu = False
    result = train(model, smoke_clip.frames, smoke_ctx, epochs=1, lr=1e-2, batch_size=2, precision="auto")
    assert result.precision == "fp32"


def test_time_limit_stops_training(smoke_clip: Clip, smoke_ctx: Context) -> None:
    result = train(
        _model(), smoke_clip.frames, smoke_ctx, epochs=100_000, lr=1e-2, batch_size=2, time_limit_s=0.5
    )
    assert 0 < result.steps < 200_000
    assert result.seconds < 5


def test_nan_loss_fails_the_fit_with_the_fix(smoke_clip: Clip, smoke_ctx: Context) -> None:
    with pytest.raises(
        FitFailed,
        match=r"loss became NaN at epoch \d+ step \d+; lower the learning rate \(budget lr=1e\+30\)",
    ):
        train(_model(), smoke_clip.frames, smoke_ctx, epochs=20, lr=1e30, batch_size=2)
