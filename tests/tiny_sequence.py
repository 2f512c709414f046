"""A tiny real sequence for the fetch and reliability tests: three carphone frames as raw yuv420p (exactly
as ffmpeg decodes them), and a manifest that describes it as the sequence "Tiny"."""

from __future__ import annotations

from pathlib import Path

import yaml
from pyav_frames import pyav_frames

WIDTH, HEIGHT, FRAMES = 176, 144, 3
MEMBER = "Tiny_176x144_3f.yuv"


def tiny_yuv_bytes(video: Path) -> bytes:
    """The first `FRAMES` frames of `video` as raw yuv420p bytes."""
    return pyav_frames(video, FRAMES, "yuv420p").tobytes()


def write_manifest(
    folder: Path, url: str, sha256: str | None = None, frames: int = FRAMES, **source: object
) -> None:
    """`folder/tiny.yaml` describing Tiny, fetched from `url` (extra `source` keys go into its source)."""
    entry = {
        "name": "Tiny",
        "width": WIDTH,
        "height": HEIGHT,
        "fps": 30,
        "frames": frames,
        "pix_fmt": "yuv420p",
        "colour": "bt601",
        "sha256": sha256,
        "source": {"url": url, "member": MEMBER, **source},
    }
    folder.mkdir(exist_ok=True)
    (folder / "tiny.yaml").write_text(
        yaml.safe_dump({"dataset": "tiny", "licence": "test", "sequences": [entry]})
    )
