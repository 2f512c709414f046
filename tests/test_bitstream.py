"""The container refuses every damaged or foreign stream with its own error, and its breakdown adds up."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bench import bitstream
from bench.errors import BitstreamError

SECTIONS = {"weights": bytes(range(200)), "scales": b"\x00\x01\x02\x03", "empty": b""}
HEADER = {"width": 128, "height": 72, "frames": 4, "seed": 7, "note": "naïve"}


@pytest.fixture(scope="module")
def stream_bytes() -> bytes:
    return bitstream.pack("demo", "3", HEADER, SECTIONS)


def test_round_trip(stream_bytes: bytes) -> None:
    stream = bitstream.unpack(stream_bytes, expect_method="demo")
    assert (stream.method, stream.version, stream.header) == ("demo", "3", HEADER)
    assert stream.sections == SECTIONS


def test_breakdown_sums_to_all_bits(stream_bytes: bytes) -> None:
    bits = bitstream.breakdown(stream_bytes)
    assert sum(bits.values()) == 8 * len(stream_bytes)
    assert bits["weights"] == 8 * 200 and bits["scales"] == 32 and bits["empty"] == 0
    assert bits["header"] > 0 and bits["container"] > 0


def test_every_single_byte_flip_is_refused(stream_bytes: bytes) -> None:
    for i in range(len(stream_bytes)):
        damaged = bytearray(stream_bytes)
        damaged[i] ^= 0x40
        with pytest.raises(BitstreamError):
            bitstream.unpack(bytes(damaged))


def test_every_truncation_is_refused(stream_bytes: bytes) -> None:
    for n in range(len(stream_bytes)):
        with pytest.raises(BitstreamError):
            bitstream.unpack(stream_bytes[:n])


def test_trailing_bytes_are_refused(stream_bytes: bytes) -> None:
    with pytest.raises(BitstreamError, match="trailing"):
        bitstream.unpack(stream_bytes + b"\x00")


def test_foreign_bytes_and_method_are_refused(stream_bytes: bytes) -> None:
    with pytest.raises(BitstreamError, match="magic"):
        bitstream.unpack(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(BitstreamError, match="written by method 'demo'"):
        bitstream.unpack(stream_bytes, expect_method="x264")


def test_missing_section_names_itself(stream_bytes: bytes) -> None:
    with pytest.raises(BitstreamError, match="lacks section 'masks'"):
        bitstream.unpack(stream_bytes).section("masks")


def test_errors_are_one_line(stream_bytes: bytes) -> None:
    with pytest.raises(BitstreamError) as info:
        bitstream.unpack(stream_bytes[:-3])
    assert "\n" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_end_in_our_error(data: bytes) -> None:
    try:
        bitstream.unpack(data)
    except BitstreamError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=10_000))
def test_random_tails_after_valid_prefix(tail: bytes, cut: int) -> None:
    valid = bitstream.pack("demo", "1", {"a": 1}, {"s": b"xyz"})
    damaged = valid[: cut % len(valid)] + tail
    assume(damaged != valid)  # a tail that restores the cut bytes gives back the valid stream
    with pytest.raises(BitstreamError):
        bitstream.unpack(damaged)


def test_a_stream_cut_after_its_header_with_a_zero_count_is_refused() -> None:
    """The section count follows the header's checksum: zero sections is what such a forgery reads as."""
    valid = bitstream.pack("demo", "1", {"a": 1}, {"s": b"xyz"})
    after_header = len(valid) - len(b"xyz") - (1 + 1 + 4 + 4) - 2
    with pytest.raises(BitstreamError, match="no sections"):
        bitstream.unpack(valid[:after_header] + b"\x00\x00")
    with pytest.raises(ValueError, match="1..1024 sections"):
        bitstream.pack("demo", "1", {"a": 1}, {})
