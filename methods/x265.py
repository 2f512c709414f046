"""HEVC anchor through libx265 (PyAV's bundled ffmpeg)."""

from methods.classical import ClassicalCodec


class X265(ClassicalCodec):
    name = "x265"
    version = "2"
    description = "HEVC (libx265) anchor; CRF bisected to the target bpp"
    encoder = "libx265"
    raw_format = "hevc"
    extra_options = {"x265-params": "log-level=error:info=0:pools=1:frame-threads=1"}
