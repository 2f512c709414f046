"""AV1 anchor through SVT-AV1 (libsvtav1 in PyAV's bundled ffmpeg), decoded by dav1d.

SVT-AV1's defaults are its experts' setting for coding efficiency: random access (hierarchical mini-GOPs
of 16), tuned for PSNR, a keyframe every ~5 s. The stream is a low-overhead OBU stream (no IVF framing).
One thread (lp=1), so the stream never depends on the machine.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from bench.tools import pyav_library_version
from methods.classical import PyAVCodec, RateSpace


@dataclass(frozen=True)
class AV1Config:
    crf: int = 35  # SVT-AV1 constant rate factor (1-63); `plan` sets the one that hits the target
    preset: str | None = None  # SVT-AV1 preset "0" (slowest) to "13"; None = the budget's, mapped
    gop: int = 0  # keyframe interval in frames; 0 = SVT-AV1's default


class AV1(PyAVCodec):
    name = "av1"
    version = "1"
    description = "AV1 (SVT-AV1) anchor, random access; CRF bisected to the target bpp"
    encoder = "libsvtav1"
    raw_format = "obu"
    Config = AV1Config
    rate_space = RateSpace(low=1, high=63, start=35, slope=math.log(2) / 8, step=1)
    # x264's preset names (the budgets') -> SVT-AV1 presets of about the same place on its speed scale
    presets = {
        "ultrafast": "10",
        "superfast": "9",
        "veryfast": "8",
        "faster": "8",
        "fast": "7",
        "medium": "6",
        "slow": "5",
        "slower": "4",
        "veryslow": "3",
        "placebo": "2",
    }
    preset_names = tuple(str(p) for p in range(14))
    requires = ("av", "av-codec:libsvtav1", "av-codec:libdav1d")

    def _options(self, config: Any) -> dict[str, str]:
        params = "lp=1" + (f":keyint={config.gop}" if config.gop else "")
        return {"crf": str(int(config.crf)), "preset": self.preset_for(config), "svtav1-params": params}

    def _encode(self, pictures: Any, config: Any) -> bytes:
        os.environ.setdefault(
            "SVT_LOG", "1"
        )  # errors only: the library prints its banner to stderr otherwise
        return super()._encode(pictures, config)

    def encoder_version(self) -> str:
        return f"SVT-AV1 {pyav_library_version('libSvtAv1Enc', 'svt_av1_get_version', function=True)}"
