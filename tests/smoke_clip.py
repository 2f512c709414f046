"""The smoke budget's clip, built one way for the fixtures and for the scripts that write test data."""

from __future__ import annotations

from pathlib import Path

from pyav_frames import pyav_frames

from bench.contract import Clip, SeqInfo


def smoke_clip_from(bunny: Path) -> Clip:
    """The first 4 Bunny frames, area-downscaled 720p -> 72x128."""
    import torch

    frames = pyav_frames(bunny, 4, "rgb24")
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    small = torch.nn.functional.interpolate(x, size=(72, 128), mode="area")
    small = small.round().clamp(0, 255).byte().permute(0, 2, 3, 1).contiguous().numpy()
    info = SeqInfo(name="bunny", width=128, height=72, num_frames=4, fps=25.0, checksum="test")
    return Clip(info=info, frames=small)
