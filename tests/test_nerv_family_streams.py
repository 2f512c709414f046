"""The NeRV-family methods write, for a fixed seed, exactly the bytes of their committed reference streams,
and their default configurations (what job keys hash) are the committed ones (`nerv_family_streams`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nerv_family_streams import FOLDER, METHODS, default_configs, reference_stream

from bench import bitstream
from bench.contract import Clip


@pytest.mark.parametrize("name", METHODS)
def test_stream_is_bit_identical_to_the_reference(name: str, smoke_clip: Clip, tmp_path: Path) -> None:
    reference = (FOLDER / f"{name}.nvbs").read_bytes()
    data = reference_stream(name, smoke_clip, tmp_path)
    if data != reference:
        ours, theirs = bitstream.unpack(data), bitstream.unpack(reference)
        differing = [k for k in theirs.sections if ours.sections.get(k) != theirs.sections[k]]
        header = "header, " if ours.header != theirs.header else ""
        pytest.fail(f"{name} stream differs from the reference ({header}sections {differing})")


def test_default_configs_and_versions_are_unchanged() -> None:
    committed = json.loads((FOLDER / "default_configs.json").read_text())
    assert default_configs() == committed
