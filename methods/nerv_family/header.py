"""The header every NeRV-family stream shares (width, height, frames, ``arch``), built, read and checked.

Every family decoder builds its network from the header, so a forged or foreign header must be refused
before anything is allocated: sizes are bounded, the network must render the stated frame size and may not
hold more weights than the clip has samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from bench import bitstream
from bench.contract import SeqInfo
from bench.errors import BitstreamError, MethodError
from methods.nerv_family.backbones.nerv import NeRVConfig, count_parameters

MAX_FRAMES = 100_000
MAX_SIDE = 16_384
MAX_PARAMETERS = 200_000_000

Arch = TypeVar("Arch")


def network_header(arch: Any, height: int, width: int, frames: int, **parts: Any) -> dict[str, Any]:
    """A family stream's header: the architecture, the clip's size, and each method's own parts."""
    return {"arch": dataclasses.asdict(arch), **parts, "width": width, "height": height, "frames": frames}


def read_network_header(stream: bitstream.Stream, info: SeqInfo | None) -> tuple[NeRVConfig, int]:
    """Architecture and frame count of a NeRV stream, checked before anything is built or rendered."""
    return read_header(
        stream,
        info,
        NeRVConfig.from_json,
        lambda arch: (*arch.stem_dims, arch.fc_dim, arch.lower_width, *arch.strides),
        lambda arch, frames: count_parameters(arch),
    )


def read_header(
    stream: bitstream.Stream,
    info: SeqInfo | None,
    parse: Callable[[Any], Arch],
    widths: Callable[[Arch], Iterable[int]],
    coded_values: Callable[[Arch, int], int],
) -> tuple[Arch, int]:
    """Architecture (read by `parse`) and frame count of a family stream, checked before anything is built.

    Sizes must be JSON integers within plausible bounds (`Stream.header_int`) and, given the clip `info`,
    must be the clip's; no width of the network may exceed `MAX_SIDE`, it must render the stated frame size,
    and it may not code more values (`coded_values`) than the clip has samples.
    """
    name = stream.method
    width = stream.header_int("width", 1, MAX_SIDE)
    height = stream.header_int("height", 1, MAX_SIDE)
    frames = stream.header_int("frames", 1, MAX_FRAMES)
    if info is not None and (width, height, frames) != (info.width, info.height, info.num_frames):
        raise BitstreamError(
            f"{name} stream codes {width}x{height}x{frames} but the clip is "
            f"{info.width}x{info.height}x{info.num_frames}; decode it against its own clip"
        )
    try:
        arch = parse(stream.header["arch"])
    except (KeyError, ValueError, MethodError) as exc:
        detail = " ".join(str(exc).split())  # one line, whatever text the header smuggled in
        raise BitstreamError(
            f"{name} stream header's architecture is malformed ({detail}); re-encode it"
        ) from None
    if max(widths(arch)) > MAX_SIDE:
        raise BitstreamError(f"{name} stream header describes an implausibly wide network; re-encode it")
    if arch.output_size != (height, width):
        raise BitstreamError(f"{name} stream header's network does not render its frame size; re-encode it")
    # More weights than the clip has samples would cost more than raw video: no encoder writes that.
    if coded_values(arch, frames) > min(MAX_PARAMETERS, 3 * width * height * frames):
        raise BitstreamError(
            f"{name} stream header describes more weights than the clip has samples; re-encode it"
        )
    return arch, frames
