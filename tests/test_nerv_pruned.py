"""nerv-pruned: global magnitude pruning, a fixed mask through fine-tuning, charged positions, and a decode
identical to the quantized model in training with exactly the pruned sparsity."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import bitstream
from bench.budgets import get_budget
from bench.contract import Clip, Context, SeqInfo
from bench.errors import BitstreamError, MethodError
from methods.nerv_family import coding
from methods.nerv_family.backbones.nerv import NeRVConfig, NeRVGenerator, parameter_shapes, render_weights
from methods.nerv_family.masks.pruning import (
    apply_masks,
    build_generator,
    effective_weights,
    kept_count,
    magnitude_masks,
)
from methods.nerv_family.masks.sparse_coding import binary_entropy
from methods.nerv_family.training import train
from methods.nerv_pruned import NeRVPruned, NeRVPrunedConfig, code_network, decode_weights, predicted_bits

CPU_CLIP = SeqInfo("bunny", 320, 180, 16, 25.0)
SMOKE_INFO = SeqInfo("bunny", 128, 72, 4, 25.0)
TARGET = 0.6  # bpp on the 4-frame 72x128 smoke clip


@pytest.mark.parametrize("target", [0.05, 0.1, 0.2, 0.4])
def test_plan_sizes_the_network_for_the_target(target: float) -> None:
    clip = Clip(CPU_CLIP, np.zeros((16, 180, 320, 3), np.uint8))
    budget = get_budget("cpu")
    config = NeRVPruned().plan(clip, target, budget)
    arch = config.architecture()
    assert arch.output_size == (180, 320)
    bits = predicted_bits(arch, config.sparsity, config.bits, 180, 320, 16)
    assert abs(bits / CPU_CLIP.pixels / target - 1) < 0.02
    assert (config.sparsity, config.epochs, config.lr, config.target_bpp) == (0.4, 150, budget.lr, target)
    assert config.epoch_split(config.epochs) == (120, 30)  # 80 % dense, 20 % fine-tuning with the mask


def test_prediction_charges_the_positions() -> None:
    arch = NeRVConfig(stem_dims=(8,), fc_dim=4, lower_width=8, strides=(5, 2, 2))
    shapes = parameter_shapes(arch)
    weights = sum(math.prod(s) for n, s in shapes.items() if n.endswith(".weight"))
    dense = predicted_bits(arch, 0.0, 8, 180, 320, 16)
    pruned = predicted_bits(arch, 0.4, 8, 180, 320, 16)
    survivors_saved = (weights - kept_count(weights, 0.4)) * 6.6
    positions = weights * binary_entropy(kept_count(weights, 0.4) / weights)
    assert pruned == pytest.approx(dense - survivors_saved + positions, abs=16)


def test_unreachable_rate_and_bad_sparsity_are_refused(smoke_clip: Clip) -> None:
    with pytest.raises(MethodError, match="cannot reach 0.01 bpp.*choose a higher target"):
        NeRVPruned().plan(smoke_clip, 0.01, get_budget("smoke"))
    with pytest.raises(MethodError, match="sparsity must be in"):
        NeRVPrunedConfig(sparsity=1.0).validate()


def test_magnitude_pruning_is_global_over_weights_only() -> None:
    gen = torch.Generator().manual_seed(0)
    weights = {
        "stem.0.weight": torch.randn(30, 20, generator=gen),  # large weights: keeps more than 60 %
        "stem.0.bias": torch.randn(30, generator=gen),
        "blocks.0.conv.weight": 0.3 * torch.randn(16, 4, 3, 3, generator=gen),
        "blocks.0.conv.bias": torch.randn(16, generator=gen),
    }
    masks = magnitude_masks(weights, 0.4)
    assert set(masks) == {"stem.0.weight", "blocks.0.conv.weight"}
    total = 600 + 576
    kept = [weights[n][m].abs() for n, m in masks.items()]
    pruned = [weights[n][~m].abs() for n, m in masks.items()]
    assert sum(k.numel() for k in kept) == kept_count(total, 0.4) == 706
    assert torch.cat(kept).min() >= torch.cat(pruned).max()
    assert masks["stem.0.weight"].float().mean() > 0.6 > masks["blocks.0.conv.weight"].float().mean()


def test_fine_tuning_keeps_pruned_weights_exactly_zero(smoke_clip: Clip, tmp_path: Path) -> None:
    arch = NeRVConfig(stem_dims=(4,), fc_dim=4, lower_width=4, strides=(2, 2, 2))
    model = build_generator(arch)
    masks = magnitude_masks(dict(model.named_parameters()), 0.5)
    apply_masks(model, masks)
    before = effective_weights(model)
    ctx = Context(tmp_path, get_budget("smoke"))
    train(model, smoke_clip.frames, ctx, epochs=3, lr=1e-2, batch_size=2, warmup=0.0)
    after = effective_weights(model)
    for name, mask in masks.items():
        raw = dict(model.named_parameters())[name].detach().cpu()
        assert torch.count_nonzero(raw[~mask]) == 0 and torch.count_nonzero(after[name][~mask]) == 0
        if mask.any():  # a layer may be pruned away entirely
            assert not torch.equal(after[name][mask], before[name][mask])  # the survivors did train
    # The masked generator computes what a plain generator with the pruned weights computes.
    plain = NeRVGenerator(arch)
    plain.load_state_dict(after)
    times = torch.tensor([0.0, 0.5])
    assert torch.allclose(model.eval()(times), plain.eval()(times), atol=1e-6)


@pytest.fixture(scope="module")
def fitted(smoke_clip: Clip, tmp_path_factory: pytest.TempPathFactory):
    method = NeRVPruned()
    config = dataclasses.replace(method.plan(smoke_clip, TARGET, get_budget("smoke")), epochs=40, lr=1e-2)
    workdir = tmp_path_factory.mktemp("nerv-pruned")
    state = method.fit(smoke_clip.frames, config, Context(workdir / "fit", get_budget("smoke"), seed=5))
    return method, config, state, method.encode(state), workdir


def test_decode_is_bit_identical_to_the_quantized_model_in_training(fitted, smoke_clip: Clip) -> None:
    method, config, state, data, workdir = fitted
    in_training = code_network(state).weights
    _, decoded_weights, _ = decode_weights(data)
    assert all(torch.equal(decoded_weights[n], w) for n, w in in_training.items())
    rendered = render_weights(config.architecture(), in_training, 4, "cpu").numpy()
    decoded = NeRVPruned().decode(data, SMOKE_INFO, Context(workdir / "decode", get_budget("smoke")))
    assert decoded.dtype == np.uint8 and decoded.shape == smoke_clip.frames.shape
    assert np.array_equal(decoded, rendered)
    mean_colour = np.abs(smoke_clip.frames - smoke_clip.frames.mean(axis=(0, 1, 2))).mean()
    assert np.abs(decoded.astype(int) - smoke_clip.frames).mean() < 0.7 * mean_colour


def test_decoded_network_has_exactly_the_pruned_sparsity(fitted) -> None:
    method, config, state, data, _ = fitted
    _, weights, _ = decode_weights(data)
    prunable = [w for n, w in weights.items() if n.endswith(".weight")]
    total = sum(w.numel() for w in prunable)
    zeros = sum(int((w == 0).sum()) for w in prunable)
    assert zeros == total - kept_count(total, config.sparsity)
    assert all(torch.equal(weights[n] != 0, m) for n, m in state.masks.items())  # zero exactly where pruned
    stats = method.stats(state)
    assert stats["sparsity"] == pytest.approx(config.sparsity, abs=1 / total)
    assert stats["nonzeros"] == sum(int(torch.count_nonzero(w)) for w in weights.values())
    assert stats["parameters"] == sum(w.numel() for w in weights.values())


def test_rate_lands_on_the_target_with_the_positions_charged(fitted, smoke_clip: Clip) -> None:
    method, config, state, data, _ = fitted
    bits = 8 * len(data)
    assert 0.95 * TARGET <= bits / smoke_clip.info.pixels <= TARGET
    arch = config.architecture()
    assert abs(predicted_bits(arch, config.sparsity, config.bits, 72, 128, 4) / bits - 1) <= 0.10
    parts = bitstream.breakdown(data)
    assert set(parts) == {"container", "header", "positions", "weights", "side"}
    assert sum(parts.values()) == bits
    stats = method.stats(state)
    entropy = stats["prunable_weights"] * binary_entropy(stats["kept_weights"] / stats["prunable_weights"])
    assert entropy <= parts["positions"] == stats["position_bits"] <= entropy + 64 + 8


def test_rerun_resumes_from_its_checkpoints(fitted, smoke_clip: Clip) -> None:
    method, config, state, data, workdir = fitted
    again = method.fit(smoke_clip.frames, config, Context(workdir / "fit", get_budget("smoke"), seed=5))
    assert again.dense.resumed_from_step == state.dense.steps > 0
    assert again.finetune.resumed_from_step == state.finetune.steps > 0
    assert method.encode(again) == data


def test_time_limit_is_split_between_the_phases(smoke_clip: Clip, tmp_path: Path) -> None:
    method = NeRVPruned()
    config = method.plan(smoke_clip, TARGET, get_budget("smoke"))
    ctx = Context(tmp_path, get_budget("smoke"), time_limit_s=1.5)
    state = method.fit(smoke_clip.frames, config, ctx)
    assert state.finetune is not None and state.finetune.steps > 0
    assert state.dense.seconds < 1.5 * 0.8 + 0.5 and state.finetune.seconds < 1.5 * 0.2 + 0.5


def test_forged_headers_and_positions_are_refused(fitted) -> None:
    _, _, state, data, _ = fitted
    stream = bitstream.unpack(data)

    def decode(header: dict, sections: dict | None = None) -> None:
        decode_weights(bitstream.pack(stream.method, stream.version, header, sections or stream.sections))

    total = sum(m.numel() for m in state.masks.values())
    for kept in (0, total + 1, "12", None):
        with pytest.raises(BitstreamError):
            decode({**stream.header, "pruning": {"kept": kept}})
    for change in ({"stem_dims": [10**6]}, {"fc_dim": -3}, {"strides": [2, 2]}, {"bogus": 1}):
        with pytest.raises(BitstreamError):
            decode({**stream.header, "arch": {**stream.header["arch"], **change}})
    with pytest.raises(BitstreamError, match="'frames' = 1000000000 is outside"):
        decode({**stream.header, "frames": 10**9})
    # A positions map with one survivor fewer than the header says is refused, not rendered.
    bitmap = torch.cat([m.reshape(-1) for m in state.masks.values()]).numpy().astype(np.int32)
    kept = int(bitmap.sum())
    bitmap[np.flatnonzero(bitmap)[0]] = 0
    positions = coding.encode_symbols(bitmap, 2, np.array([total - kept, kept], dtype=np.float64))
    with pytest.raises(BitstreamError, match="positions do not match"):
        decode(stream.header, {**stream.sections, "positions": positions})
