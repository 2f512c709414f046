"""The NeRV-family methods write, for a fixed seed, exactly the bytes of their committed reference streams,
and their default configurations (what job keys hash) are the committed ones (`nerv_family_streams`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nerv_family_streams import (
    FOLDER,
    METHODS,
    class_folder,
    cpu_class,
    default_configs,
    has_avx2,
    reference_versions,
    streams_in_pinned_process,
)

from bench import bitstream, registry


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not has_avx2():
        pytest.skip("the reference streams are pinned to the AVX2 kernels; this CPU has none")
    folder = tmp_path_factory.mktemp("streams")
    streams_in_pinned_process(folder)
    return folder


@pytest.mark.parametrize("name", METHODS)
def test_stream_is_bit_identical_to_the_reference(name: str, streams: Path) -> None:
    folder = class_folder()
    written_at = reference_versions(folder).get(name)
    if written_at != registry.get(name).version:
        pytest.skip(
            f"no reference stream of {name} version {registry.get(name).version} for this CPU class "
            f"({cpu_class()}; it has {written_at or 'none'}): run `python tests/nerv_family_streams.py` on one"
        )
    reference = (folder / f"{name}.nvbs").read_bytes()
    data = (streams / f"{name}.nvbs").read_bytes()
    if data != reference:
        ours, theirs = bitstream.unpack(data), bitstream.unpack(reference)
        differing = [k for k in theirs.sections if ours.sections.get(k) != theirs.sections[k]]
        header = "header, " if ours.header != theirs.header else ""
        pytest.fail(f"{name} stream differs from the reference ({header}sections {differing})")


def test_default_configs_and_versions_are_unchanged() -> None:
    committed = json.loads((FOLDER / "default_configs.json").read_text())
    assert default_configs() == committed
