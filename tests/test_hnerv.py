"""hnerv: the reference architecture's parameter counts, strides for a clip, sizing for a rate, a decode from
the bytes identical to the quantized model, and one-line refusals of what it cannot code or read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench import bitstream
from bench.budgets import get_budget
from bench.contract import Clip, Context, SeqInfo
from bench.errors import BitstreamError, MethodError
from methods.hnerv import HNeRVMethod, predicted_bits, quantized, render_decoder
from methods.nerv_family.backbones.hnerv import (
    HNeRVConfig,
    HNeRVModel,
    Shuffle,
    decode_macs,
    decoder_parameters,
    decoder_shapes,
    embedding_values,
    encoder_parameters,
    stride_plan,
)

CPU_CLIP = SeqInfo("bunny", 320, 180, 16, 25.0)

# --- the reference configuration -------------------------------------------------------------------------
# HNeRV's README command for Bunny, 1.5M parameters: --crop_list 640_1280 --enc_strds 5 4 4 2 2
# --enc_dim 64_16 --dec_strds 5 4 4 2 2 --ks 0_1_5 --reduce 1.2 --modelsize 1.5 --lower_width 12 (132
# frames); its training script solves C0 = 68 for that size. The defaults of `HNeRVConfig` are that model.
#  - decoder, 1,488,276: the shapes of the 14 decoder tensors stored in the repository's quantized Bunny
#    checkpoint (checkpoints/quant_vid.pth, the model trained by that command), head included: 1x1 16->68,
#    then 1x1 68->57*25, 3x3 57->48*16, 5x5 48->40*16, 5x5 40->33*4, 5x5 33->28*4, 3x3 head 28->3. The
#    training script's printed "Decoder" count leaves out the head's 759 (1,487,517); a stream codes it.
#  - embeddings, 16,896: the checkpoint's quantized embedding tensor, 132 x 16 x 2 x 4.
#  - encoder, 306,160: counted by hand from the reference's ConvNeXt code (model_all.py), one block per
#    stage, dims 64, 64, 64, 64, 16: stage convs 3*64*25+64, 64*64*16+64 (twice), 64*64*4+64, 64*16*4+16,
#    five LayerNorms of 64 channels (2*64 each); blocks 36,480 each at 64 channels (7x7 depth-wise 3,200,
#    LayerNorm 128, 64->256 16,640, 256->64 16,448, layer scale 64) and 2,976 at 16 channels.
REFERENCE = HNeRVConfig()
REFERENCE_DECODER = 1_488_276
REFERENCE_EMBEDDINGS = 16_896
REFERENCE_ENCODER = (
    ((3 * 64 * 25 + 64) + 2 * (64 * 64 * 16 + 64) + (64 * 64 * 4 + 64) + (64 * 16 * 4 + 16) + 5 * 2 * 64)
    + 4 * 36_480
    + 2_976
)


def test_reference_bunny_model_has_the_reference_counts() -> None:
    assert REFERENCE.channels() == [57, 48, 40, 33, 28] and REFERENCE.kernels() == [1, 3, 5, 5, 5]
    assert decoder_parameters(REFERENCE) == REFERENCE_DECODER
    assert embedding_values(REFERENCE, 132) == REFERENCE_EMBEDDINGS
    assert encoder_parameters(REFERENCE) == REFERENCE_ENCODER == 306_160
    model = HNeRVModel(REFERENCE)
    assert sum(p.numel() for p in model.decoder.parameters()) == REFERENCE_DECODER
    assert sum(p.numel() for p in model.encoder.parameters()) == REFERENCE_ENCODER
    assert {k: tuple(p.shape) for k, p in model.decoder.named_parameters()} == decoder_shapes(REFERENCE)
    with torch.no_grad():
        embedding = model.embed(torch.rand(1, 3, 640, 1280))
    assert embedding.shape == (1, 16, 2, 4)


def test_anisotropic_shuffle_is_pixel_shuffle_per_axis() -> None:
    x = torch.arange(2 * 6 * 2 * 3, dtype=torch.float32).reshape(2, 6, 2, 3)
    assert torch.equal(Shuffle(2, 2)(x[:, :4]), nn.PixelShuffle(2)(x[:, :4]))
    out = Shuffle(2, 3)(x)  # out[c, h * 2 + i, w * 3 + j] = in[c * 6 + i * 3 + j, h, w]
    assert out.shape == (2, 1, 4, 9)
    for i in range(2):
        for j in range(3):
            assert torch.equal(out[:, 0, i::2, j::3], x[:, i * 3 + j])


@pytest.mark.parametrize(
    ("size", "grid", "rows", "cols"),
    [
        ((180, 320), (1, 1), (5, 3, 3, 2, 2), (5, 4, 4, 2, 2)),
        ((72, 128), (1, 1), (3, 3, 2, 2, 2), (4, 4, 2, 2, 2)),
        ((1080, 1920), (2, 2), (5, 4, 3, 3, 3), (5, 4, 4, 4, 3)),
    ],
)
def test_strides_for_the_usual_sizes(size, grid, rows, cols) -> None:
    assert stride_plan(*size, 5, 5) == (grid, rows, cols)
    config = HNeRVConfig(embed_grid=grid, strides_h=rows, strides_w=cols)
    assert config.output_size == size


def test_clip_sizes_the_strides_cannot_produce_are_refused_in_one_line() -> None:
    for size in ((97, 128), (144, 176)):
        with pytest.raises(MethodError) as exc:
            stride_plan(*size, 5, 5)
        assert "resize the clip" in str(exc.value) and "\n" not in str(exc.value)
    clip = Clip(SeqInfo("odd", 176, 144, 4, 25.0), np.zeros((4, 144, 176, 3), np.uint8))
    with pytest.raises(MethodError, match="not reachable by HNeRV"):
        HNeRVMethod().plan(clip, 0.5, get_budget("smoke"))


def test_decoding_macs_match_a_hand_count() -> None:
    config = HNeRVConfig(
        embed_grid=(1, 1), strides_h=(3, 3, 2, 2, 2), strides_w=(4, 4, 2, 2, 2), fc_dim=3, lower_width=1
    )
    assert config.channels() == [2, 2, 2, 2, 2]
    hand = (
        16 * 3 * 1  # 1x1 stem on the 1x1 grid
        + 3 * 2 * 12 * 1 * 1  # block 0: 1x1 conv to 2 * 3 * 4 channels on 1x1
        + 2 * 2 * 12 * 9 * 12  # block 1: 3x3 on 3x4
        + 2 * 2 * 4 * 25 * 144  # block 2: 5x5 on 9x16
        + 2 * 2 * 4 * 25 * 576  # block 3: 5x5 on 18x32
        + 2 * 2 * 4 * 25 * 2304  # block 4: 5x5 on 36x64
        + 2 * 3 * 9 * 9216  # 3x3 head on 72x128
    )
    assert decode_macs(config) == hand == 1_712_568


# --- the method ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.05, 0.1, 0.2, 0.4])
def test_plan_sizes_the_decoder_for_the_target(target: float) -> None:
    clip = Clip(CPU_CLIP, np.zeros((16, 180, 320, 3), np.uint8))
    config = HNeRVMethod().plan(clip, target, get_budget("cpu"))
    arch = config.architecture()
    assert arch.output_size == (180, 320)
    assert abs(predicted_bits(arch, config, 16) / CPU_CLIP.pixels / target - 1) <= 0.05
    assert (config.epochs, config.target_bpp) == (get_budget("cpu").epochs, target)


def test_an_embedding_that_cannot_fit_the_rate_is_refused_in_one_line() -> None:
    clip = Clip(CPU_CLIP, np.zeros((16, 180, 320, 3), np.uint8))
    wide = HNeRVMethod(dataclasses.replace(HNeRVMethod.default_config(), embed_channels=600))
    with pytest.raises(MethodError) as exc:
        wide.plan(clip, 0.05, get_budget("cpu"))
    assert "embeddings alone" in str(exc.value) and "\n" not in str(exc.value)


@pytest.fixture(scope="module")
def fitted(smoke_clip: Clip, tmp_path_factory: pytest.TempPathFactory):
    method = HNeRVMethod()
    config = dataclasses.replace(method.plan(smoke_clip, 0.5, get_budget("smoke")), epochs=8)
    workdir = tmp_path_factory.mktemp("hnerv")
    state = method.fit(smoke_clip.frames, config, Context(workdir / "fit", get_budget("smoke"), seed=5))
    return method, config, state, method.encode(state), workdir


def test_decode_is_bit_identical_to_the_quantized_model(fitted, smoke_clip: Clip) -> None:
    method, config, state, data, workdir = fitted
    levels = bitstream.unpack(data).header["coding"]["levels"]
    weights, embeddings = quantized(state, levels)
    in_training = render_decoder(config.architecture(), weights, embeddings, "cpu").numpy()
    decoded = HNeRVMethod().decode(data, smoke_clip.info, Context(workdir / "decode", get_budget("smoke")))
    assert decoded.dtype == np.uint8 and decoded.shape == smoke_clip.frames.shape
    assert np.array_equal(decoded, in_training)


def test_stream_codes_decoder_and_embeddings_only(fitted, smoke_clip: Clip) -> None:
    method, config, state, data, _ = fitted
    parts = bitstream.breakdown(data)
    assert set(parts) == {"container", "header", "weights", "side", "embeddings", "embedding_side"}
    assert sum(parts.values()) == 8 * len(data) <= 0.5 * smoke_clip.info.pixels
    stats = method.stats(state)
    assert stats["parameters"] == decoder_parameters(config.architecture())
    assert stats["embedding_values"] == embedding_values(config.architecture(), 4)
    assert stats["macs_per_pixel"] == round(decode_macs(config.architecture()) / (72 * 128), 2)


def test_short_or_forged_embeddings_are_refused_in_one_line(fitted, smoke_clip: Clip, tmp_path: Path) -> None:
    _, _, _, data, _ = fitted
    stream = bitstream.unpack(data)
    ctx = Context(tmp_path, get_budget("smoke"))

    def refused(header: dict, sections: dict) -> str:
        forged = bitstream.pack(stream.method, stream.version, header, sections)
        with pytest.raises(BitstreamError) as exc:
            HNeRVMethod().decode(forged, smoke_clip.info, ctx)
        assert "\n" not in str(exc.value)
        return str(exc.value)

    for key in ("embeddings", "embedding_side"):
        for damaged in (stream.sections[key][:-4], stream.sections[key] + bytes(4), b""):
            assert "corrupt" in refused(stream.header, {**stream.sections, key: damaged})
    without = {k: v for k, v in stream.sections.items() if k != "embeddings"}
    assert "embeddings" in refused(stream.header, without)
    for levels in (0, True, "63", 1 << 20):
        refused({**stream.header, "embedding": {"levels": levels}}, stream.sections)
    refused({**stream.header, "embedding": None}, stream.sections)
    arch = stream.header["arch"]
    for change in ({"embed_grid": [2, 1]}, {"embed_channels": 10**6}, {"strides_h": [3, 3, 2, 2]}):
        refused({**stream.header, "arch": {**arch, **change}}, stream.sections)


def test_encoder_lr_zero_keeps_the_drawn_encoder_and_a_share_trains_it(
    smoke_clip: Clip, tmp_path: Path
) -> None:
    from bench.identity import hyper_identity
    from methods.hnerv import embed_frames

    method = HNeRVMethod()
    planned = dataclasses.replace(method.plan(smoke_clip, 0.5, get_budget("smoke")), epochs=4)
    assert planned.encoder_lr == 0.1 and hyper_identity(planned)["encoder_lr"] == 0.1  # keyed like any field
    drawn = method.seeded(lambda: HNeRVModel(planned.architecture()), 5)
    untrained = embed_frames(drawn, smoke_clip.frames, "cpu")
    states = {
        share: method.fit(
            smoke_clip.frames,
            dataclasses.replace(planned, encoder_lr=share),
            Context(tmp_path / str(share), get_budget("smoke"), seed=5),
        )
        for share in (0.0, 0.1)
    }
    assert torch.equal(states[0.0].embeddings, untrained)  # frozen: the random encoder's embeddings
    assert not torch.equal(states[0.1].embeddings, untrained)  # a small share still trains it
    assert states[0.0].result.steps == states[0.1].result.steps > 0


@pytest.mark.parametrize("share", [-0.5, float("nan"), 11.0])
def test_an_encoder_lr_outside_its_range_is_refused_in_one_line(share: float) -> None:
    from methods.hnerv import HNeRVMethodConfig

    with pytest.raises(MethodError) as exc:
        HNeRVMethodConfig(encoder_lr=share)
    assert "encoder_lr" in str(exc.value) and "\n" not in str(exc.value)
