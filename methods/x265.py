"""HEVC anchor through libx265 (PyAV's bundled ffmpeg); its version SEI is switched off (info=0)."""

from bench.tools import pyav_library_version
from methods.classical import PyAVCodec


class X265(PyAVCodec):
    name = "x265"
    version = "3"
    description = "HEVC (libx265) anchor; CRF bisected to the target bpp"
    encoder = "libx265"
    raw_format = "hevc"
    extra_options = {"x265-params": "log-level=error:info=0:pools=1:frame-threads=1"}
    requires = ("av",)

    def encoder_version(self) -> str:
        return f"libx265 {pyav_library_version('libx265', 'x265_version_str')}"
