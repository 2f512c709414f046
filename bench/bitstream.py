"""The one container every method's stream uses.

Layout (all integers little-endian)::

    magic "NVBS" | format u8 | name_len u8 | name | version_len u8 | version | header_len u32 | header JSON
    | crc32 of everything before it (u32) | n_sections u16
    then per section: key_len u8 | key | payload_len u32 | crc32(key, payload_len, payload) u32 | payload

Every byte is covered by a checksum or by a length that is checked, so a flipped, missing or extra byte
is refused with a `BitstreamError` naming what is wrong. The section count is the one field outside both
(it follows the header's checksum), so a stream must hold at least one section: a stream cut after its
header and given a count of zero is then refused rather than read as an empty stream. The container never unpickles anything.
The size breakdown is read off the bytes: the framing is charged to ``container``, the JSON to ``header``
and each payload to its section name, so the parts sum to ``8 * len(data)``.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BitstreamError

MAGIC = b"NVBS"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20
MAX_SECTIONS = 1024


@dataclass
class Stream:
    """A decoded container: who wrote it, its JSON header and its named binary sections."""

    method: str
    version: str
    header: dict[str, Any]
    sections: dict[str, bytes] = field(default_factory=dict)

    def section(self, key: str) -> bytes:
        try:
            return self.sections[key]
        except KeyError:
            raise BitstreamError(
                f"stream of '{self.method}' lacks section '{key}': it was written by another version; re-encode it"
            ) from None

    def expect_sections(self, *keys: str) -> None:
        """Refuse a stream whose sections are not exactly `keys`: a decoder reads everything it is given."""
        for key in keys:
            self.section(key)
        extra = sorted(set(self.sections) - set(keys))
        if extra:
            raise BitstreamError(
                f"stream of '{self.method}' holds unexpected section '{extra[0]}'; it was forged or written by "
                f"another version; re-encode it"
            )

    def header_int(self, key: str, low: int, high: int) -> int:
        """A header field that must be an integer in [low, high]: checked before anything is sized by it."""
        value = self.header.get(key)
        if type(value) is not int:  # a bool, float or string is a forged or foreign header
            shown = "missing" if key not in self.header else f"{type(value).__name__} {value!r:.40}"
            raise BitstreamError(
                f"stream of '{self.method}': header field '{key}' must be an integer, got {shown}; re-encode it"
            )
        if not low <= value <= high:
            raise BitstreamError(
                f"stream of '{self.method}': header field '{key}' = {value} is outside {low}..{high}; re-encode it"
            )
        return value


def _short(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if not 0 < len(raw) < 256:
        raise ValueError(f"{what} must be 1..255 bytes of UTF-8, got {len(raw)}")
    return bytes([len(raw)]) + raw


def pack(method: str, version: str, header: dict[str, Any], sections: dict[str, bytes]) -> bytes:
    """Serialise a stream. `header` must be JSON-serialisable; sections are raw bytes."""
    head = bytearray(MAGIC)
    head.append(FORMAT_VERSION)
    head += _short(method, "method name")
    head += _short(version, "method version")
    header_json = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(header_json) > MAX_HEADER_BYTES:
        raise ValueError(f"header of {len(header_json)} bytes exceeds {MAX_HEADER_BYTES}")
    head += struct.pack("<I", len(header_json)) + header_json
    head += struct.pack("<I", zlib.crc32(head))
    if not 0 < len(sections) <= MAX_SECTIONS:
        raise ValueError(f"a stream holds 1..{MAX_SECTIONS} sections, got {len(sections)}")
    head += struct.pack("<H", len(sections))
    out = bytearray(head)
    for key, payload in sections.items():
        framed = _short(key, "section name") + struct.pack("<I", len(payload))
        out += framed + struct.pack("<I", zlib.crc32(bytes(payload), zlib.crc32(framed))) + payload
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise BitstreamError(
                f"stream is truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left; the file is incomplete, re-encode or re-copy it"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def short_text(self, what: str) -> str:
        n = self.take(1, what)[0]
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BitstreamError(f"stream is corrupt: {what} is not UTF-8") from None


def _parse(data: bytes) -> tuple[Stream, dict[str, int]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:4] != MAGIC:
        raise BitstreamError(
            "not a stream of this suite (bad magic bytes); pass a file written by `bench run`"
        )
    r = _Reader(data)
    r.take(4, "magic")
    fmt = r.take(1, "format version")[0]
    if fmt != FORMAT_VERSION:
        raise BitstreamError(f"unsupported container format {fmt} (this suite reads {FORMAT_VERSION})")
    method = r.short_text("method name")
    version = r.short_text("method version")
    (header_len,) = struct.unpack("<I", r.take(4, "header length"))
    if header_len > MAX_HEADER_BYTES:
        raise BitstreamError(f"stream is corrupt: header length {header_len} exceeds {MAX_HEADER_BYTES}")
    header_json = r.take(header_len, "header")
    (crc,) = struct.unpack("<I", r.take(4, "header checksum"))
    if zlib.crc32(data[: r.pos - 4]) != crc:
        raise BitstreamError(
            "stream is corrupt: header checksum mismatch (a byte changed); re-encode or re-copy it"
        )
    try:
        header = json.loads(header_json)
    except ValueError:
        raise BitstreamError("stream is corrupt: header is not valid JSON") from None
    if not isinstance(header, dict):
        raise BitstreamError("stream is corrupt: header is not a JSON object")
    (n_sections,) = struct.unpack("<H", r.take(2, "section count"))
    if n_sections > MAX_SECTIONS:
        raise BitstreamError(f"stream is corrupt: {n_sections} sections exceed {MAX_SECTIONS}")
    if n_sections == 0:
        raise BitstreamError(
            "stream is corrupt: it holds no sections (cut after its header?); re-encode or re-copy it"
        )
    bits = {"container": 8 * (r.pos - header_len), "header": 8 * header_len}
    sections: dict[str, bytes] = {}
    for _ in range(n_sections):
        start = r.pos
        key = r.short_text("section name")
        (length,) = struct.unpack("<I", r.take(4, f"length of section '{key}'"))
        (crc,) = struct.unpack("<I", r.take(4, f"checksum of section '{key}'"))
        framed = data[start : r.pos - 4]
        payload = r.take(length, f"section '{key}'")
        if zlib.crc32(payload, zlib.crc32(framed)) != crc:
            raise BitstreamError(
                f"stream is corrupt: checksum mismatch in section '{key}'; re-encode or re-copy it"
            )
        if key in sections:
            raise BitstreamError(f"stream is corrupt: section '{key}' appears twice")
        sections[key] = payload
        bits["container"] += 8 * (r.pos - start - length)
        bits[key] = 8 * length
    if r.pos != len(data):
        raise BitstreamError(f"stream has {len(data) - r.pos} unexpected trailing bytes; re-copy the file")
    return Stream(method, version, header, sections), bits


def unpack(data: bytes, expect_method: str | None = None, expect_version: str | None = None) -> Stream:
    """Parse and verify a stream; refuse a stream of another method, or of another version of it."""
    stream, _ = _parse(data)
    if expect_method is not None and stream.method != expect_method:
        raise BitstreamError(
            f"stream was written by method '{stream.method}', not '{expect_method}'; decode it with '{stream.method}'"
        )
    if expect_version is not None and stream.version != expect_version:
        raise BitstreamError(
            f"stream was written by {stream.method} version {stream.version}, this suite decodes version "
            f"{expect_version}; re-encode it with this version"
        )
    return stream


def breakdown(data: bytes) -> dict[str, int]:
    """Bits per part (``container``, ``header`` and each section); the values sum to ``8 * len(data)``."""
    _, bits = _parse(data)
    return bits


def peek_method(data: bytes) -> tuple[str, str]:
    """(method name, version) of a verified stream, to pick its decoder."""
    stream = unpack(data)
    return stream.method, stream.version
