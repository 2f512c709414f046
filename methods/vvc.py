"""VVC anchor through VVenC, run by the suite's ffmpeg binary (imageio-ffmpeg), decoded by PyAV's VVC decoder.

VVenC as its experts run it for coding efficiency: random access with its hierarchical GOP of 32, an
intra (random-access) picture every second, 10-bit internal coding of the 8-bit source (the source is
shifted up 2 bits here and the decode rounded back, both exact), and perceptual QP adaptation off so that
it codes for PSNR as the JVET common test conditions do. The QP is bisected to the target. The encoder is
a subprocess with a timeout; a missing binary or a failed encode is a one-line `EncoderFailed`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from bench import tools
from methods.classical import CODING_FPS, ClassicalCodec, EncoderFailed, RateSpace

ENCODER = "libvvenc"
PRESETS = ("faster", "fast", "medium", "slow", "slower")
# x264's preset names (the budgets') -> VVenC's
BUDGET_PRESETS = {
    "ultrafast": "faster",
    "superfast": "faster",
    "veryfast": "faster",
    "faster": "faster",
    "fast": "fast",
    "medium": "medium",
    "slow": "slow",
    "slower": "slower",
    "veryslow": "slower",
    "placebo": "slower",
}
# VVenC exits with "Generic error in an external library" below QP 5 on small pictures (measured here)
QP_SPACE = RateSpace(low=5, high=63, start=32, slope=math.log(2) / 6, step=1)
TIMEOUT_BASE_S = 60.0
TIMEOUT_PER_PIXEL_S = 1e-4  # ~25x VVenC medium's single-thread time per pixel here
_VERSION = re.compile(r"libvvenc version: (\S+)")


def vvenc(
    pictures: np.ndarray, qp: int, preset: str, params: dict[str, str], qpa: bool, threads: int, name: str
) -> tuple[bytes, str]:
    """A VVC Annex-B stream of planar yuv420p `pictures` (T, H * 3 // 2, W), and VVenC's version."""
    height, width = pictures.shape[1] * 2 // 3, pictures.shape[2]
    vvenc_params = ":".join(f"{k}={v}" for k, v in params.items())
    args = ["-loglevel", "info", "-nostats", "-f", "rawvideo", "-pix_fmt", "yuv420p10le"]
    args += ["-s", f"{width}x{height}", "-r", str(CODING_FPS), "-i", "-", "-c:v", ENCODER]
    args += ["-preset", preset, "-qp", str(int(qp)), "-qpa", str(int(qpa)), "-threads", str(threads)]
    args += (["-vvenc-params", vvenc_params] if vvenc_params else []) + ["-f", "vvc", "-"]
    chunks = ((planes.astype(np.uint16) << 2).astype("<u2").tobytes() for planes in pictures)
    timeout = TIMEOUT_BASE_S + TIMEOUT_PER_PIXEL_S * pictures.shape[0] * width * height
    video, log = tools.run(args, chunks, timeout_s=timeout, error=EncoderFailed, what=f"{name}: {ENCODER}")
    if not video:
        raise EncoderFailed(
            f"{name}: {ENCODER} wrote no stream ({tools.trouble_line(log)}); check its options"
        )
    found = _VERSION.search(log)
    return video, f"VVenC {found.group(1) if found else 'unknown'} (ffmpeg {tools.version()})"


@dataclass(frozen=True)
class VVCConfig:
    qp: int = 32  # quantisation parameter (5-63); `plan` replaces it by the one that hits the target
    preset: str | None = None  # VVenC preset (faster ... slower); None = the budget's, mapped
    gop: int = 32  # random-access GOP length in pictures (VVenC's default; 8, 16 or 32)
    intra_period_s: int = 1  # seconds between intra pictures (VVenC's default), in whole GOPs
    qpa: bool = False  # perceptual QP adaptation; off codes for PSNR, as the JVET test conditions do
    threads: int = 1  # encoder threads; the stream is the same for any count


class VVC(ClassicalCodec):
    name = "vvc"
    version = "1"
    description = "VVC (VVenC) anchor, random access GOP 32; QP bisected to the target bpp"
    raw_format = "vvc"
    rate_field = "qp"
    rate_space = QP_SPACE
    presets = BUDGET_PRESETS
    preset_names = PRESETS
    Config = VVCConfig
    requires = ("av", "av-codec:vvc", "ffmpeg-encoder:libvvenc")

    def _encode(self, pictures: np.ndarray, config: VVCConfig) -> bytes:
        params = {"GOPSize": str(config.gop), "RefreshSec": str(config.intra_period_s)}
        video, self._encoder_version = vvenc(
            pictures, config.qp, self.preset_for(config), params, config.qpa, config.threads, self.name
        )
        return video

    def encoder_version(self) -> str:
        return f"VVenC (ffmpeg {tools.version()})"
