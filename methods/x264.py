"""H.264 anchor through libx264 (PyAV's bundled ffmpeg)."""

from methods.classical import ClassicalCodec


class X264(ClassicalCodec):
    name = "x264"
    version = "2"
    description = "H.264 (libx264) anchor; CRF bisected to the target bpp"
    encoder = "libx264"
    raw_format = "h264"
    extra_options = {"threads": "1"}
