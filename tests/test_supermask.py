"""Hierarchical supermasks: the masked layers, the level code, and both adapters on a real clip."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import bitstream
from bench.contract import Clip, Context
from bench.errors import BitstreamError, MethodError
from methods.nerv_family.backbones.nerv import NeRVConfig, NeRVGenerator, render
from methods.nerv_family.masks.layers import (
    MaskedConv2d,
    MaskedLinear,
    layer_alphas,
    level_maps,
    load_code,
    masked_layers,
)
from methods.nerv_family.masks.levels import (
    _device_level_sums,
    _device_levels,
    apply_levels,
    level_sums,
    nested_levels,
    select_thresholds,
)
from methods.nerv_family.masks.masked_nerv import build_generator
from methods.nerv_family.masks.settings import MaskSettings, kept_counts
from methods.nerv_family.supermask_base import RENDER_BATCH
from methods.supermask_fixed import SupermaskFixed
from methods.supermask_learned import SupermaskLearned

SMALL = NeRVConfig(stem_dims=(24,), fc_dim=3, lower_width=8, strides=(2, 2, 2))  # renders 72x128


def _reference_weight(
    scores: torch.Tensor, weight: torch.Tensor, alphas: torch.Tensor, densities
) -> torch.Tensor:
    """The textbook form: N top-k masks of |s| by a full sort, each with its own straight-through estimator."""
    magnitudes = scores.abs()
    order = magnitudes.detach().reshape(-1).argsort(descending=True)
    total = torch.zeros_like(weight)
    for alpha, k in zip(alphas, kept_counts(scores.numel(), densities), strict=True):
        hard = torch.zeros(scores.numel())
        hard[order[:k]] = 1.0
        mask = hard.reshape(scores.shape) + magnitudes - magnitudes.detach()  # STE
        total = total + alpha * mask
    return weight * total


@pytest.mark.parametrize("densities", [(0.3, 0.1, 0.03), (0.5,), (0.6, 0.2)])
def test_straight_through_gradients_match_the_textbook_form(densities) -> None:
    layer = MaskedLinear(40, 30, settings=MaskSettings(densities, scale_mode="learned"), seed=5, index=2)
    x = torch.randn(7, 40, generator=torch.Generator().manual_seed(0))
    layer(x).square().sum().backward()
    scores = layer.scores.detach().clone().requires_grad_(True)
    alphas = layer.alphas().detach().clone().requires_grad_(True)
    ref = _reference_weight(scores, layer.weight, alphas, densities)
    torch.nn.functional.linear(x, ref, layer.bias).square().sum().backward()
    torch.testing.assert_close(layer.effective_weight().detach(), ref.detach())  # (hard + |s|) - |s| rounds
    assert layer.scores.grad is not None and layer.scores.grad.abs().sum() > 0
    torch.testing.assert_close(layer.scores.grad, scores.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(layer.theta.grad, alphas.grad * layer.scale, rtol=1e-4, atol=1e-6)


def test_masks_are_nested_top_k_with_the_right_densities() -> None:
    settings = MaskSettings((0.3, 0.1, 0.03))
    layer = MaskedConv2d(12, 20, 3, padding=1, settings=settings, seed=1, index=0)
    levels = layer.level_map().reshape(-1)
    order = layer.scores.detach().abs().reshape(-1).argsort(descending=True)
    for n, k in enumerate(kept_counts(levels.numel(), settings.densities), start=1):
        mask = levels >= n  # mask n; nested by construction of the level
        assert int(mask.sum()) == k == round(settings.densities[n - 1] * levels.numel())
        assert mask[order[:k]].all()


@pytest.mark.parametrize("densities", [(0.3, 0.1, 0.03), (0.3, 0.28, 0.02)])  # the second repeats counts
@pytest.mark.parametrize("numel", [1, 2, 5, 10, 33, 1000, 4099])
def test_one_selection_finds_the_order_statistics(numel: int, densities) -> None:
    values = torch.rand(numel, generator=torch.Generator().manual_seed(numel))
    counts = kept_counts(numel, densities)
    got = select_thresholds(values, counts)
    ranked = values.sort(descending=True).values
    for threshold, k in zip(got, counts, strict=True):
        assert threshold == (ranked[k - 1] if k else math.inf)
    assert torch.all(got[:-1] <= got[1:])


def test_random_weights_regenerate_from_the_seed_alone() -> None:
    settings = MaskSettings()
    torch.manual_seed(123)  # the global generator plays no part
    a = build_generator(SMALL, settings, seed=7)
    torch.manual_seed(999)
    b = build_generator(SMALL, settings, seed=7)
    c = build_generator(SMALL, settings, seed=8)
    for la, lb, lc in zip(masked_layers(a), masked_layers(b), masked_layers(c), strict=True):
        assert torch.equal(la.weight, lb.weight) and torch.equal(la.bias, lb.bias)
        assert torch.equal(la.scores, lb.scores)
        assert not torch.equal(la.weight, lc.weight)
        assert set(la.weight.unique().tolist()) == {-1.0, 1.0}  # the signed constant: the scale is in alpha
    first, second = masked_layers(a)[2:4]
    assert not torch.equal(first.weight.reshape(-1)[:100], second.weight.reshape(-1)[:100])
    assert "weight" not in dict(a.named_parameters()) and "stem.0.weight" in dict(a.named_buffers())


def test_scale_constants() -> None:
    settings = MaskSettings((0.3, 0.1, 0.03))
    assert settings.level_probabilities() == pytest.approx([0.7, 0.2, 0.07, 0.03])
    assert settings.entropy_bits() == pytest.approx(1.2449, abs=1e-4)
    assert settings.scale(200) == pytest.approx(math.sqrt(2 / 200) / math.sqrt(0.2 + 4 * 0.07 + 9 * 0.03))
    okoshi = dataclasses.replace(settings, scale_rule="okoshi")
    assert okoshi.scale(200) == pytest.approx(math.sqrt(2 / (200 * 0.3)))
    # Variance preserving: Var(W) * fan_in = 2 over the level distribution.
    layer = MaskedLinear(400, 300, settings=settings, seed=3)
    assert float(layer.effective_weight().detach().var() * 400) == pytest.approx(2.0, rel=0.05)
    with pytest.raises(MethodError, match="densities"):
        MaskSettings((0.1, 0.3))


def test_fixed_and_learned_differ_only_in_alpha_trainability() -> None:
    fixed = build_generator(SMALL, MaskSettings(scale_mode="fixed"), seed=4)
    learned = build_generator(SMALL, MaskSettings(scale_mode="learned"), seed=4)
    t = torch.tensor([0.0, 0.5])
    assert torch.equal(fixed(t), learned(t))  # step 0 is the fixed-scale model
    assert torch.equal(layer_alphas(fixed), layer_alphas(learned))
    for lf, ll in zip(masked_layers(fixed), masked_layers(learned), strict=True):
        assert torch.equal(lf.weight, ll.weight) and torch.equal(lf.scores, ll.scores)
    fixed_params = {n for n, p in fixed.named_parameters() if p.requires_grad}
    learned_params = {n for n, p in learned.named_parameters() if p.requires_grad}
    assert learned_params - fixed_params == {n for n in learned_params if n.endswith(".theta")}
    assert fixed_params == {n for n in learned_params if n.endswith(".scores")}
    assert len(learned_params - fixed_params) == len(masked_layers(learned))


def test_level_map_round_trip() -> None:
    settings = MaskSettings(scale_mode="learned", alpha_param="log")
    trained = build_generator(SMALL, settings, seed=2)
    with torch.no_grad():
        for layer in masked_layers(trained):
            layer.scores.add_(torch.randn_like(layer.scores))
            layer.theta.add_(0.1)
    fresh = build_generator(SMALL, settings, seed=2)
    load_code(fresh, level_maps(trained), layer_alphas(trained))
    for a, b in zip(masked_layers(trained), masked_layers(fresh), strict=True):
        assert torch.equal(a.effective_weight().detach(), b.effective_weight())
        assert torch.equal(a.level_map(), b.level_map())
    t = torch.tensor([0.25])
    assert torch.equal(trained(t), fresh(t))
    # The buffers' memory layout (the training loop converts the model) does not change a single bit.
    assert torch.equal(trained.to(memory_format=torch.channels_last)(t), fresh(t))


# --- the adapters on the smoke clip ----------------------------------------------------------------------


def _fit(cls, clip: Clip, ctx: Context, target: float = 0.5, **changes):
    method = cls()
    config = dataclasses.replace(method.plan(clip, target, ctx.budget), **changes)
    return method, config, method.fit(clip.frames, config, ctx)


@pytest.fixture(scope="module")
def fitted_both(smoke_clip: Clip, tmp_path_factory) -> dict:
    """Both variants fitted once on the smoke clip: name -> (method, config, state, bytes, workdir)."""
    from bench.budgets import get_budget

    out = {}
    for cls in (SupermaskFixed, SupermaskLearned):
        workdir = tmp_path_factory.mktemp(cls.name)
        ctx = Context(workdir=workdir / "fit", budget=get_budget("smoke"), seed=11)
        method, config, state = _fit(cls, smoke_clip, ctx, epochs=3)
        out[cls.name] = (method, config, state, method.encode(state), workdir)
    return out


@pytest.fixture(params=[SupermaskFixed.name, SupermaskLearned.name])
def fitted(request, fitted_both: dict):
    return fitted_both[request.param]


def test_mask_section_sits_at_the_entropy(fitted) -> None:
    method, _, state, data, _ = fitted
    stream = bitstream.unpack(data, expect_method=method.name)
    weights = sum(lv.numel() for lv in state.levels)
    bound = weights * state.settings.entropy_bits()
    assert abs(8 * len(stream.section("masks")) / bound - 1) <= 0.01
    assert ("scales" in stream.sections) == (method.scale_mode == "learned")
    assert stream.header["masks"]["seed"] == 11


def test_training_moves_the_masks_and_only_learned_moves_alphas(fitted) -> None:
    method, _, state, _, _ = fitted
    untrained = build_generator(state.config.architecture(), state.settings, state.seed)
    changed = sum(int((a != b).sum()) for a, b in zip(level_maps(untrained), state.levels, strict=True))
    assert changed > 0
    moved = not torch.equal(layer_alphas(untrained), state.alphas)
    assert moved == (method.scale_mode == "learned")


def test_decode_is_bit_identical_to_the_trained_model(fitted, smoke_clip: Clip) -> None:
    method, _, state, data, workdir = fitted
    ctx = Context(workdir=workdir / "decode", budget=_budget())
    decoded = type(method)().decode(data, smoke_clip.info, ctx)
    trained = render(state.model, smoke_clip.info.num_frames, batch_size=RENDER_BATCH).numpy()
    assert decoded.dtype == np.uint8 and decoded.shape == smoke_clip.frames.shape
    assert np.array_equal(decoded, trained)


def test_decode_in_a_fresh_process(fitted_both: dict, smoke_clip: Clip, tmp_path: Path) -> None:
    """Nothing but the bytes crosses: a new interpreter regenerates the network and renders the same frames."""
    streams = {}
    for name, (_, _, _, data, _) in fitted_both.items():
        streams[name] = tmp_path / f"{name}.nvbs"
        streams[name].write_bytes(data)
    code = (
        "import sys, numpy as np; from pathlib import Path; from bench import registry; "
        "from bench.budgets import get_budget; from bench.contract import Context, SeqInfo; "
        "info = SeqInfo('bunny', 128, 72, 4, 25.0); "
        f"ctx = Context(workdir=Path({str(tmp_path / 'fresh')!r}), budget=get_budget('smoke')); "
        "[np.save(p + '.npy', registry.get(n)().decode(Path(p).read_bytes(), info, ctx)) "
        "for n, p in zip(sys.argv[1::2], sys.argv[2::2])]"
    )
    args = [str(x) for name, path in streams.items() for x in (name, path)]
    subprocess.run([sys.executable, "-c", code, *args], check=True, timeout=120)
    for name, (_, _, state, _, _) in fitted_both.items():
        trained = render(state.model, smoke_clip.info.num_frames, batch_size=RENDER_BATCH).numpy()
        assert np.array_equal(np.load(str(streams[name]) + ".npy"), trained)


def test_same_seed_and_config_give_identical_bytes(fitted, smoke_clip: Clip, tmp_path: Path) -> None:
    method, config, _, data, _ = fitted
    ctx = Context(workdir=tmp_path / "again", budget=_budget(), seed=11)
    again = type(method)()
    assert again.encode(again.fit(smoke_clip.frames, config, ctx)) == data


def test_corrupt_or_foreign_streams_are_refused(fitted, smoke_clip: Clip, tmp_path: Path) -> None:
    method, _, _, data, _ = fitted
    stream = bitstream.unpack(data)
    ctx = Context(workdir=tmp_path, budget=_budget())
    bad = dict(stream.header, masks={**stream.header["masks"], "densities": [0.1, 0.3]})
    with pytest.raises(BitstreamError, match="header"):
        method.decode(bitstream.pack(method.name, method.version, bad, stream.sections), smoke_clip.info, ctx)
    other = SupermaskLearned if method.scale_mode == "fixed" else SupermaskFixed
    with pytest.raises(BitstreamError, match="written by method"):
        other().decode(data, smoke_clip.info, ctx)


@pytest.mark.parametrize("target", [0.3, 1.0])
def test_plan_predicts_the_size(target: float, smoke_clip: Clip, smoke_ctx: Context) -> None:
    method, _, state = _fit(SupermaskLearned, smoke_clip, smoke_ctx, target, epochs=1)
    bpp = 8 * len(method.encode(state)) / smoke_clip.info.pixels
    assert abs(bpp / target - 1) <= 0.03  # the size is known before training; the contract allows 10 %


def test_plan_refuses_an_unreachable_rate(smoke_clip: Clip, smoke_ctx: Context) -> None:
    with pytest.raises(MethodError, match="cannot reach"):
        SupermaskFixed().plan(smoke_clip, 0.01, smoke_ctx.budget)


def _budget():
    from bench.budgets import get_budget

    return get_budget("smoke")


@pytest.mark.parametrize("shape", [(7, 5), (6, 4, 3, 3), (6, 1, 3, 3), (1, 4, 1, 1)])
def test_effective_weights_do_not_depend_on_the_buffers_memory_layout(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(shape, generator=g)
    levels = torch.randint(0, 4, shape, dtype=torch.uint8, generator=g)
    alphas = torch.rand(3, generator=g)
    expected = weight * torch.cat((alphas.new_zeros(1), alphas.cumsum(0)))[levels.long()]
    layouts = (
        (torch.contiguous_format, torch.channels_last) if len(shape) == 4 else (torch.contiguous_format,)
    )
    for weight_layout in layouts:
        for levels_layout in layouts:
            out = apply_levels(
                weight.contiguous(memory_format=weight_layout),
                levels.contiguous(memory_format=levels_layout),
                alphas,
            )
            assert torch.equal(out, expected), (weight_layout, levels_layout)
    if len(shape) == 4:  # neither layout: strides of a transposed copy
        odd = levels.transpose(2, 3).contiguous().transpose(2, 3)
        assert torch.equal(apply_levels(weight, odd, alphas), expected)


def test_tied_magnitudes_still_give_each_level_exactly_its_count() -> None:
    # Heavy ties: 1000 magnitudes drawn from 7 values, so every threshold value occurs many times.
    magnitudes = torch.randint(0, 7, (40, 25), generator=torch.Generator().manual_seed(3)).float()
    counts = kept_counts(magnitudes.numel(), (0.3, 0.1, 0.03))
    levels = nested_levels(magnitudes, counts)
    assert [int((levels >= n).sum()) for n in (1, 2, 3)] == list(counts)
    # The k largest by (magnitude, then first position), and nested: the ranking defines every level.
    order = sorted(range(magnitudes.numel()), key=lambda i: (-float(magnitudes.reshape(-1)[i]), i))
    rank = torch.empty(magnitudes.numel(), dtype=torch.long)
    rank[torch.tensor(order)] = torch.arange(magnitudes.numel())
    expected = sum((rank < k).to(torch.uint8) for k in counts).view(magnitudes.shape)
    assert torch.equal(levels, expected)


def test_a_stream_whose_scores_collide_still_decodes(fitted, smoke_clip: Clip) -> None:
    """Long runs make scores collide at a threshold; the level counts (and so the mask section's length,
    which the decoder checks) must not move."""
    import copy

    from bench.budgets import get_budget

    method, _, state, _, workdir = fitted
    model = copy.deepcopy(state.model)  # the fixture's state is shared
    with torch.no_grad():
        for layer in masked_layers(model):
            layer.scores.copy_((layer.scores * 50).round() / 50)  # a few dozen distinct values per layer
    levels = level_maps(model)
    assert [int((lv >= 1).sum()) for lv in levels] == [layer.counts[0] for layer in masked_layers(model)]
    data = method.encode(dataclasses.replace(state, model=model, levels=levels))
    decoded = method.decode(data, smoke_clip.info, Context(workdir / "collided", get_budget("smoke")))
    assert decoded.shape == smoke_clip.frames.shape


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("tied", [False, True])
def test_host_and_device_level_maps_agree(layout: str, tied: bool) -> None:
    """The CPU computes levels in numpy, other devices in torch ops: one definition, so identical maps."""
    g = torch.Generator().manual_seed(11)
    magnitudes = torch.rand(16, 12, 3, 3, generator=g)
    if tied:
        magnitudes = (magnitudes * 6).round()
    if layout == "channels_last":
        magnitudes = magnitudes.contiguous(memory_format=torch.channels_last)
    counts = kept_counts(magnitudes.numel(), (0.3, 0.1, 0.03))
    host = nested_levels(magnitudes, counts)
    device = _device_levels(magnitudes, select_thresholds(magnitudes, counts), counts)
    assert host.stride() == magnitudes.stride()  # laid out like the scores: lookups pair up in memory
    assert torch.equal(host, device)
    assert [int((host >= n).sum()) for n in (1, 2, 3)] == list(counts)


@pytest.mark.parametrize("levels_layout", [torch.contiguous_format, torch.channels_last])
def test_per_level_sums_match_a_bincount(levels_layout) -> None:
    g = torch.Generator().manual_seed(4)
    levels = torch.randint(0, 4, (9, 6, 3, 3), dtype=torch.uint8, generator=g)
    values = torch.randn(9, 6, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)
    per_level = torch.bincount(levels.reshape(-1), weights=values.reshape(-1).double(), minlength=4)
    expected = per_level.flip(0).cumsum(0).flip(0)[1:].float()
    got = level_sums(levels.contiguous(memory_format=levels_layout), values, 3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    on_device = _device_level_sums(levels.reshape(-1), values.reshape(-1), 3)  # the path other devices take
    torch.testing.assert_close(on_device, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale_mode", ["fixed", "learned"])
def test_one_burst_of_masks_equals_layer_by_layer(scale_mode: str) -> None:
    """`MaskedNeRV` computes all layers' weights in one autograd node; the output and every gradient are
    those of the layer-by-layer path (the plain NeRV forward over the same layers), bit for bit."""
    model = build_generator(SMALL, MaskSettings(scale_mode=scale_mode), seed=3)
    t = torch.tensor([0.0, 0.5])
    grads = []
    for forward in (model.forward, lambda x: NeRVGenerator.forward(model, x)):
        model.zero_grad(set_to_none=True)
        out = forward(t)
        out.square().mean().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_burst, burst), (out_layers, layers) = grads
    assert torch.equal(out_burst, out_layers)
    assert len(burst) == len(layers) == len(list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(burst, layers, strict=True))


def test_no_precomputed_weight_outlives_a_forward() -> None:
    model = build_generator(SMALL, MaskSettings(), seed=3)
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 5))  # a malformed input fails inside the network
    assert all(layer.precomputed is None for layer in masked_layers(model))
