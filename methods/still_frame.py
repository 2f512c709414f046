"""The floor: the clip's most representative frame, intra-coded once at the target rate, shown for every frame.

The frame is the one that minimises the clip's mean squared error when repeated for all frames (found
exactly, from each frame's distance to all others). It is coded as one VVC intra picture by VVenC, the
strongest intra coder the suite runs: on Bunny at the cpu budget it gave a higher floor than AV1 intra
(SVT-AV1), HEVC intra (x265) or JPEG (Pillow) at every rate of the ladder, by 0.1 / 0.3 / 0.8 dB at
0.05 bpp, and it still reaches 0.4 bpp where x265 at CRF 0 barely does. All the clip's bits go to that
one picture. A method that models time must beat this; one that does not is broken or underfit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from methods.classical import ClassicalCodec
from methods.vvc import BUDGET_PRESETS, ENCODER, PRESETS, QP_SPACE, vvenc


@dataclass(frozen=True)
class StillFrameConfig:
    qp: int = 32  # VVC intra quantisation parameter (5-63); `plan` sets the one that hits the target
    preset: str | None = None  # VVenC preset (faster ... slower); None = the budget's, mapped
    qpa: bool = False  # perceptual QP adaptation; off codes for PSNR
    threads: int = 1  # encoder threads; the stream is the same for any count


def representative_frame(frames: np.ndarray) -> int:
    """Index of the frame t minimising sum_s ||f_s - f_t||^2 (ties: the earliest).

    sum_s ||f_s - f_t||^2 = sum_s ||f_s||^2 - 2 <f_t, sum_s f_s> + T ||f_t||^2, computed exactly in
    integers from one pass over the clip.
    """
    flat = frames.reshape(len(frames), -1).astype(np.int64)
    total = flat.sum(axis=0)
    norms = np.einsum("ij,ij->i", flat, flat)
    cost = len(frames) * norms - 2 * (flat @ total)
    return int(np.argmin(cost))


class StillFrame(ClassicalCodec):
    name = "still-frame"
    version = "1"
    description = "floor: the clip's most representative frame as one VVC intra picture, repeated"
    raw_format = "vvc"
    rate_field = "qp"
    rate_space = QP_SPACE
    # VVenC's medium spends 3.2 s on one 320x180 intra picture for the size fast reaches in 0.7 s (11,408 vs
    # 11,375 bytes at QP 27, measured here), so the default budget's medium runs fast for this one picture.
    presets = {**BUDGET_PRESETS, "medium": "fast"}
    preset_names = PRESETS
    Config = StillFrameConfig
    rate_ladder = (0.05, 0.1, 0.2)
    requires = ("av", "av-codec:vvc", "ffmpeg-encoder:libvvenc")

    def _pictures(self, frames: np.ndarray) -> np.ndarray:
        t = representative_frame(frames)
        return frames[t : t + 1]

    def coded_pictures(self, frames: int) -> int:
        return 1

    def _present(self, pictures: np.ndarray, frames: int) -> np.ndarray:
        return np.repeat(pictures, frames, axis=0)

    def _encode(self, pictures: np.ndarray, config: StillFrameConfig) -> bytes:
        video, self._encoder_version = vvenc(
            pictures, config.qp, self.preset_for(config), {}, config.qpa, config.threads, self.name
        )
        return video

    def encoder_version(self) -> str:
        return f"{ENCODER} (VVenC)"
