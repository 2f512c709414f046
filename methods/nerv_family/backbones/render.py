"""Rendering a network's frames: the one function the encoder side and every decoder go through."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def render_inputs(
    model: nn.Module, inputs: torch.Tensor, batch_size: int = 4, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) on the CPU of `model` run on `inputs` (T, ...) in batches: round(255 * out),
    clamped.

    Both the training process and the decoder render through this one function (same batch size, same
    device, same memory layout), which is what makes a decode bit-identical to the quantized model seen in
    training. Channels-last convolutions render ~2x faster than NCHW on the CPU (180x320 and 1080p).
    """
    model.to(memory_format=torch.channels_last).eval()
    chunks = []
    for i in range(0, inputs.shape[0], batch_size):
        out = model(inputs[i : i + batch_size].to(device))
        chunks.append((out * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(chunks)
