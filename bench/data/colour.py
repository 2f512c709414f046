"""YUV -> RGB conversion, done by ffmpeg's own scaler (through PyAV) so that it matches ffmpeg exactly.

The NeRV family scores RGB frames that ffmpeg produced from yuv420p with its default matrix, BT.601 at
limited range; a textbook formula differs from that by up to 3 code values, which moves PSNR. So the
conversion is not re-implemented here: a planar frame is handed to libswscale, the same code the ffmpeg
command runs. `bt709` asks the scaler for the BT.709 matrix instead (UVG is BT.709 by its own
description, though the published numbers use the ffmpeg default).

A colour name always means the same matrix: the tags of a decoded video are not consulted, so the same
name gives the same frames whether a clip arrives as raw YUV or as an mp4.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import ColorRange

from bench.errors import DataError

# colour name -> libswscale matrix
COLOURS: dict[str, str] = {"bt601": "ITU601", "bt709": "ITU709"}
DEFAULT_COLOUR = "bt601"


def check_colour(colour: str) -> str:
    """The colour name, lower-cased, or a DataError naming the choices."""
    name = colour.lower()
    if name not in COLOURS:
        raise DataError(f"unknown colour conversion '{colour}': choose one of {', '.join(COLOURS)}")
    return name


def frame_to_rgb(frame: av.VideoFrame, colour: str = DEFAULT_COLOUR) -> np.ndarray:
    """One decoded or wrapped frame -> uint8 RGB (H, W, 3) with the named matrix.

    The range is the frame's own when it says full range (JPEG-style sources), otherwise limited.
    """
    full = frame.color_range == ColorRange.JPEG or frame.format.name.startswith("yuvj")
    rgb = frame.reformat(
        format="rgb24",
        src_colorspace=COLOURS[check_colour(colour)],
        src_color_range="JPEG" if full else "MPEG",
    )
    return rgb.to_ndarray()


def yuv420p_to_rgb(planar: np.ndarray, colour: str = DEFAULT_COLOUR) -> np.ndarray:
    """Planar 8-bit yuv420p -> uint8 RGB.

    `planar` is one frame laid out as in a raw .yuv file, shape (H * 3 // 2, W): the Y rows, then the U
    and V planes packed into H // 2 more rows; or a stack of such frames (T, H * 3 // 2, W). Returns
    (H, W, 3) or (T, H, W, 3).
    """
    if planar.ndim == 3:
        out = np.empty((len(planar), planar.shape[1] * 2 // 3, planar.shape[2], 3), np.uint8)
        for t, frame in enumerate(planar):
            out[t] = yuv420p_to_rgb(frame, colour)
        return out
    if planar.ndim != 2 or planar.dtype != np.uint8 or planar.shape[0] % 3 or planar.shape[1] % 2:
        raise DataError(
            f"yuv420p frames must be uint8 arrays of shape (H*3/2, W) with even H and W, got {planar.dtype} "
            f"{planar.shape}"
        )
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(planar), format="yuv420p")
    return frame_to_rgb(frame, colour)


def rgb_to_yuv420p(frames: np.ndarray, colour: str = DEFAULT_COLOUR) -> np.ndarray:
    """uint8 RGB (T, H, W, 3) with even H and W -> planar yuv420p (T, H * 3 // 2, W), limited range.

    The conversion ffmpeg applies to rgb24 input before coding it (libswscale, the named matrix), so
    metrics on YUV planes see what a codec would.
    """
    count, height, width = frames.shape[:3]
    if height % 2 or width % 2:
        raise DataError(f"yuv420p needs even frame sizes, got {width}x{height}")
    out = np.empty((count, height * 3 // 2, width), np.uint8)
    matrix = COLOURS[check_colour(colour)]
    for t, frame in enumerate(frames):
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        out[t] = rgb.reformat(format="yuv420p", dst_colorspace=matrix, dst_color_range="MPEG").to_ndarray()
    return out
