"""Reference frames as PyAV (ffmpeg) decodes them: what the tests hold the suite's readers against."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def pyav_frames(path: Path, count: int, fmt: str) -> np.ndarray:
    """The first `count` frames of `path` in pixel format `fmt` (e.g. "rgb24", "yuv420p"), stacked."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format=fmt))
            if len(frames) == count:
                break
    return np.stack(frames)
