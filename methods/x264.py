"""H.264 anchor through libx264 (PyAV's bundled ffmpeg), without the encoder's version text.

libx264 writes its version and every option as text into an SEI message (user data unregistered, about
560 bytes) in the first access unit. No decoder needs it, so it is cut from the Annex-B stream before the
stream is measured or stored; the version it names goes to the record through `stats` instead.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from methods.classical import PyAVCodec

SEI = 6  # nal_unit_type of an H.264 SEI NAL unit
USER_DATA_UNREGISTERED = 5  # the SEI payload type x264 writes its text into
_START = re.compile(b"\x00{2,}\x01")
_VERSION = re.compile(rb"x264 - core (\d+)( r\d+ [0-9a-f]+)?")


def _unescape(payload: bytes) -> bytes:
    """The RBSP of a NAL unit: emulation-prevention bytes (00 00 03) removed."""
    return payload.replace(b"\x00\x00\x03", b"\x00\x00")


def _sei_payload_types(rbsp: bytes) -> list[int] | None:
    """Payload types of the SEI messages in an SEI RBSP, or None when it does not parse."""
    types, at = [], 0
    while at < len(rbsp) and rbsp[at:] != b"\x80":  # rbsp_trailing_bits
        values = []
        for _ in range(2):  # payloadType, then payloadSize: runs of 0xFF plus a last byte
            value = 0
            while at < len(rbsp) and rbsp[at] == 0xFF:
                value, at = value + 255, at + 1
            if at >= len(rbsp):
                return None
            values.append(value + rbsp[at])
            at += 1
        types.append(values[0])
        at += values[1]
    return types if at <= len(rbsp) else None


def strip_user_data_sei(stream: bytes) -> bytes:
    """The Annex-B stream without the SEI NAL units that hold only user-data-unregistered messages.

    A start code is a run of two or more zero bytes and a one (a NAL unit never ends in a zero byte, and
    emulation prevention keeps the pattern out of its payload), so a dropped unit takes its whole start
    code with it.
    """
    marks = list(_START.finditer(stream))
    if not marks:
        return stream
    kept = [stream[: marks[0].start()]]
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(stream)
        nal = stream[mark.end() : end]
        if nal and nal[0] & 0x1F == SEI:
            types = _sei_payload_types(_unescape(nal[1:]))
            if types and all(t == USER_DATA_UNREGISTERED for t in types):
                continue
        kept.append(stream[mark.start() : end])
    return b"".join(kept)


class X264(PyAVCodec):
    name = "x264"
    version = "3"
    description = "H.264 (libx264) anchor; CRF bisected to the target bpp; version SEI stripped"
    encoder = "libx264"
    raw_format = "h264"
    extra_options = {"threads": "1"}
    requires = ("av",)

    def _encode(self, pictures: np.ndarray, config: Any) -> bytes:
        video = super()._encode(pictures, config)
        found = _VERSION.search(video)
        if found:
            self._encoder_version = "libx264 " + found.group(0).decode("ascii").removeprefix("x264 - ")
        return strip_user_data_sei(video)

    def encoder_version(self) -> str:
        return self._encoder_version or "libx264 (version unknown: no stream coded yet)"
