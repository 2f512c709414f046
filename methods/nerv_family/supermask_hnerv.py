"""Supermasks on the HNeRV backbone (``supermask-learned[backbone=hnerv]``, ``supermask-fixed[backbone=hnerv]``).

The network is HNeRV with every weight layer of its random ConvNeXt encoder and of its decoder masked
(`methods.nerv_family.masks.masked_hnerv`); as on NeRV only the scores (and the learned scales) train. The
receiver needs the decoder and each frame's embedding, so the stream holds the decoder's level code (seed,
level maps, learned alphas; `masks.level_code`) and the embeddings the trained masked encoder gives every
frame, quantized and range coded as hnerv codes its own (`hnerv_stream`). The encoder's masks stay with
the sender. Sizing: the embeddings' cost is fixed by the clip, the decoder's level maps take the rest,
found by hnerv's decoder search with the level code's exact size model. Called by `SupermaskMethod`,
which dispatches on the config's (and, decoding, the header's) backbone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench import bitstream
from bench.contract import RATE_TOLERANCE, Context, SeqInfo
from bench.errors import MethodError
from methods.nerv_family.adapter import RENDER_BATCH, framing_bits
from methods.nerv_family.backbones.hnerv import HNeRVConfig, embedding_values, macs_per_pixel
from methods.nerv_family.backbones.render import render_inputs
from methods.nerv_family.header import network_header
from methods.nerv_family.hnerv_stream import (
    EMBED_BITS,
    EMBEDDING_SECTIONS,
    clip_grid,
    decode_embeddings,
    embed_frames,
    embedding_bits,
    encode_embeddings,
    read_hnerv_header,
    refuse_embeddings_over,
    size_decoder,
    with_grid,
)
from methods.nerv_family.masks import level_code
from methods.nerv_family.masks.layers import (
    layer_alphas,
    layer_scales,
    level_maps,
    load_code,
    parameter_groups,
)
from methods.nerv_family.masks.masked_hnerv import (
    MaskedHNeRV,
    build_masked_decoder,
    build_masked_hnerv,
    decoder_mask_shapes,
    encoder_masked_weights,
)
from methods.nerv_family.masks.settings import MaskSettings

if TYPE_CHECKING:
    from methods.nerv_family.supermask_base import SupermaskConfig, SupermaskMethod, SupermaskState

BACKBONE = "hnerv"
EMBED_LEVELS = (1 << EMBED_BITS) - 1
BASE = HNeRVConfig()  # the base shape: the reference's Bunny model (C0 68, lower width 12, 16 channels)
# Where no shape is predicted within SIZE_AIM: the nearest within half the contract's tolerance.
FALLBACK_BAND = RATE_TOLERANCE / 2


# The masked encoder's scores (and scales) train at this share of the decoder's lr, as hnerv's encoder does
# (`methods.hnerv.ENCODER_LR_SHARE`): on the cpu clip (seed 0, 120 epochs) 0.1 beat a share of 1 by
# 0.2-1.7 dB at 0.1 and 0.2 bpp for both variants (docs/supermask_hnerv.md).
ENCODER_LR_SHARE_MASKED = 0.1
MAX_ENCODER_LR = 10.0


def architecture(config: SupermaskConfig) -> HNeRVConfig:
    """The sized architecture of a planned config; a one-line error for an unplanned one."""
    if config.hnerv_arch is None:
        raise MethodError(
            "supermask config on the hnerv backbone has no sized architecture yet; plan it on a clip"
        )
    return config.hnerv_arch


def _header(arch: HNeRVConfig, settings: MaskSettings, seed: int, frames: int) -> dict[str, Any]:
    height, width = arch.output_size
    return network_header(
        arch,
        height,
        width,
        frames,
        masks=level_code.masks_header(settings, seed),
        embedding={"levels": EMBED_LEVELS},
        backbone=BACKBONE,
    )


def sections(settings: MaskSettings) -> tuple[str, ...]:
    return (*level_code.section_names(settings.scale_mode), *EMBEDDING_SECTIONS)


def coded_values(arch: HNeRVConfig, frames: int) -> int:
    """Values a stream codes: a level per decoder weight, and the embeddings."""
    return sum(math.prod(s) for s in decoder_mask_shapes(arch)) + embedding_values(arch, frames)


def predicted_bits(
    arch: HNeRVConfig, settings: MaskSettings, frames: int, method: str, version: str
) -> float:
    """Stream size before training: the decoder's level code at its known size, the embeddings at the
    quantizer's bits (an upper bound), header and framing."""
    framing = framing_bits(method, version, _header(arch, settings, 0, frames), sections(settings))
    code = level_code.code_bits(decoder_mask_shapes(arch), settings)
    return code + embedding_bits(arch, frames, EMBED_BITS) + framing


# --- plan ---------------------------------------------------------------------------------------------------


def size_network(
    method: SupermaskMethod, base: SupermaskConfig, info: SeqInfo, target_bpp: float
) -> SupermaskConfig:
    """`base` with the decoder closest to the target rate once the embeddings are paid for: hnerv's search
    (C0 bisected per lower width, the C0 / lower width ratio nearest the base's within 2 %)."""
    settings = base.mask_settings(method.scale_mode)
    grid = clip_grid(info, ((), (), ()))
    smallest = with_grid(BASE, 1, 1, grid)
    smallest.validate()
    refuse_embeddings_over(method.name, smallest, info, target_bpp, EMBED_BITS, level_code.SIZE_AIM)
    arch = size_decoder(
        method,
        lambda fc, lower: with_grid(BASE, fc, lower, grid),
        lambda a: predicted_bits(a, settings, info.num_frames, method.name, method.version),
        BASE.fc_dim / BASE.lower_width,
        info,
        target_bpp,
        (level_code.SIZE_AIM, FALLBACK_BAND),
    )
    return dataclasses.replace(base, hnerv_arch=arch, width=round(arch.lower_width / BASE.lower_width, 6))


# --- fit ----------------------------------------------------------------------------------------------------


def fit(method: SupermaskMethod, frames: np.ndarray, config: SupermaskConfig, ctx: Context) -> SupermaskState:
    """Train the scores of the masked encoder and decoder; keep the decoder's code and the embeddings."""
    from methods.nerv_family.supermask_base import SupermaskState

    arch = architecture(config)
    method.check_frame_size(arch.output_size, frames)
    settings = config.mask_settings(method.scale_mode)
    model = build_masked_hnerv(arch, settings, ctx.seed)
    result = method.train_masks(model, frames, config, ctx)
    embeddings = embed_frames(model, frames, ctx.device)
    return SupermaskState(
        config,
        settings,
        ctx.seed,
        model,
        level_maps(model.decoder),
        layer_alphas(model.decoder),
        int(frames.shape[0]),
        result,
        embeddings=embeddings,
    )


def parameter_groups_split(
    model: MaskedHNeRV, scale_mode: str, score_lr: float, config: SupermaskConfig
) -> list[dict[str, Any]]:
    """Adam groups: the decoder's scores (and scales) at `score_lr`, the encoder's at its share of it (none
    at a share of 0: the encoder's random masks stay as initialised). The config resolves the share on HNeRV."""
    share = float(config.encoder_lr)  # type: ignore[arg-type]
    groups = parameter_groups(model.decoder, scale_mode, score_lr, config.alpha_lr)
    if share > 0:
        groups += parameter_groups(model.encoder, scale_mode, score_lr * share, config.alpha_lr * share)
    else:
        for param in model.encoder.parameters():
            param.requires_grad_(False)
    return groups


def render_code(
    arch: HNeRVConfig,
    settings: MaskSettings,
    seed: int,
    levels: list[torch.Tensor],
    alphas: torch.Tensor | None,
    embeddings: torch.Tensor,
    device: str,
) -> np.ndarray:
    """uint8 frames (T, H, W, 3): the decoder regenerated from `seed` with this level code, on these
    (dequantized) embeddings; `alphas` None: the fixed scales. The encoder side and the decoder both."""
    decoder = build_masked_decoder(arch, settings, seed)
    load_code(decoder, levels, alphas if alphas is not None else layer_alphas(decoder))
    return render_inputs(decoder.to(device), embeddings.contiguous(), RENDER_BATCH, device).numpy()


def rendered(state: SupermaskState, device: str = "cpu") -> np.ndarray:
    """The frames a decoder of this state's stream renders (the encoder side's reconstruction)."""
    _, embedded = encode_embeddings(state.embeddings, EMBED_LEVELS)
    arch = architecture(state.config)
    embeddings = embedded.dequantized["embeddings"]
    return render_code(arch, state.settings, state.seed, state.levels, state.alphas, embeddings, device)


# --- encode / decode ----------------------------------------------------------------------------------------


def encode(method: SupermaskMethod, state: SupermaskState) -> bytes:
    arch = architecture(state.config)
    code, coding = level_code.encode_code(state.levels, state.alphas, state.settings)
    embedded_sections, embedded = encode_embeddings(state.embeddings, EMBED_LEVELS)
    state.coding = {**coding, "embeddings": {k: v for k, v in embedded.stats.items() if k != "tensors"}}
    header = _header(arch, state.settings, state.seed, state.num_frames)
    return bitstream.pack(method.name, method.version, header, {**code, **embedded_sections})


def decode(method: SupermaskMethod, stream: bitstream.Stream, info: SeqInfo, ctx: Context) -> np.ndarray:
    """Frames from a stream on this backbone, every part checked before it is used."""
    stream.expect_sections(*level_code.section_names(method.scale_mode), *EMBEDDING_SECTIONS)
    arch, frames = read_hnerv_header(stream, info, coded_values)
    settings, seed = level_code.read_settings(stream.header, method.name, method.scale_mode)
    levels, alphas = level_code.decode_code(stream, decoder_mask_shapes(arch), settings)
    embeddings = decode_embeddings(stream, arch, frames)
    return render_code(arch, settings, seed, levels, alphas, embeddings, ctx.device)


def stats(method: SupermaskMethod, state: SupermaskState) -> dict[str, Any]:
    arch = architecture(state.config)
    decoder = state.model.decoder
    out = {
        **level_code.level_stats(state.levels, state.alphas, state.settings, layer_scales(decoder)),
        "encoder_masked_weights": encoder_masked_weights(state.model),
        "embedding_values": embedding_values(arch, state.num_frames),
        "macs_per_pixel": macs_per_pixel(arch),
        "fc_dim": arch.fc_dim,
        "lower_width": arch.lower_width,
        "embed_grid": list(arch.embed_grid),
        **state.result.summary(),
    }
    if state.coding:
        out["coding"] = dict(state.coding)
    return out
