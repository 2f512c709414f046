"""Every discovered method honours the contract on a tiny real clip (4 Bunny frames at 72x128).

plan -> fit -> encode -> decode, with the smoke budget: the decode needs only the bytes (a fresh object,
and a fresh process), the same seed gives the same bytes, the rate lands within 10 % of the target, the
bit breakdown adds up, and the frames come back as uint8 RGB of the source's shape. Variants whose streams
are of another kind (`method_variants.VARIANTS`) are held to the same contract; they train
`VARIANT_EPOCHS` epochs (the contract does not depend on quality, and their encoders cost CPU time).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from method_variants import VARIANTS, instance, method_name

from bench import bitstream, registry
from bench.contract import RATE_TOLERANCE, Clip, Context

TARGET_BPP = 0.5  # reachable by every method on 72x128x4 (about 2.3 kB)
METHODS = [*registry.names(available_only=True), *VARIANTS]
VARIANT_EPOCHS = 50  # enough for a recognisable picture at the hnerv backbone's score lr (1e-3)


def test_registry_finds_the_anchors_and_the_nerv_family() -> None:
    family = {"nerv-dense", "nerv-pruned", "supermask-fixed", "supermask-learned", "hnerv"}
    assert {"x264", "x265", "vvc", "av1", "still-frame"} | family <= set(registry.names(available_only=True))


@pytest.fixture(scope="module", params=METHODS)
def coded(request: pytest.FixtureRequest, smoke_clip: Clip, tmp_path_factory: pytest.TempPathFactory):
    cls = registry.get(method_name(request.param))
    workdir = tmp_path_factory.mktemp(method_name(request.param))
    from bench.budgets import get_budget

    ctx = Context(workdir=workdir / "fit", budget=get_budget("smoke"), seed=3)
    method = instance(request.param)
    config = method.plan(smoke_clip, TARGET_BPP, ctx.budget)
    if request.param in VARIANTS:
        config = dataclasses.replace(config, epochs=VARIANT_EPOCHS)
    state = method.fit(smoke_clip.frames, config, ctx)
    data = method.encode(state)
    return cls, config, data, workdir


def test_plan_returns_the_methods_config(coded) -> None:
    cls, config, _, _ = coded
    assert isinstance(config, cls.Config) and dataclasses.is_dataclass(config)


def test_stream_is_a_container_with_sizes(coded, smoke_clip: Clip) -> None:
    cls, _, data, _ = coded
    stream = bitstream.unpack(data, expect_method=cls.name)
    assert stream.version == cls.version
    header = stream.header
    assert (header["width"], header["height"], header["frames"]) == (128, 72, 4)
    assert sum(bitstream.breakdown(data).values()) == 8 * len(data)


def test_rate_lands_within_ten_percent(coded, smoke_clip: Clip) -> None:
    _, _, data, _ = coded
    bpp = 8 * len(data) / smoke_clip.info.pixels
    assert abs(bpp / TARGET_BPP - 1) <= RATE_TOLERANCE, f"bpp {bpp:.4f} vs target {TARGET_BPP}"


def test_decode_from_bytes_in_fresh_object_and_process(coded, smoke_clip: Clip) -> None:
    cls, _, data, workdir = coded
    ctx = Context(workdir=workdir / "decode", budget=_smoke())
    frames = cls().decode(data, smoke_clip.info, ctx)
    assert frames.dtype == np.uint8 and frames.shape == smoke_clip.frames.shape
    # Decoded well enough to be a picture of the source, not noise.
    assert np.abs(frames.astype(int) - smoke_clip.frames).mean() < 40
    stream_file = workdir / "stream.nvbs"
    stream_file.write_bytes(data)
    out = workdir / "fresh.npy"
    code = (
        "import sys, numpy as np; from pathlib import Path; from bench import registry; "
        "from bench.budgets import get_budget; from bench.contract import Context, SeqInfo; "
        f"cls = registry.get({cls.name!r}); info = SeqInfo('bunny', 128, 72, 4, 25.0); "
        f"ctx = Context(workdir=Path({str(workdir / 'fresh')!r}), budget=get_budget('smoke')); "
        f"np.save({str(out)!r}, cls().decode(Path({str(stream_file)!r}).read_bytes(), info, ctx))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert np.array_equal(np.load(out), frames)


def test_same_seed_gives_same_bytes(coded, smoke_clip: Clip) -> None:
    cls, config, data, workdir = coded
    ctx = Context(workdir=workdir / "again", budget=_smoke(), seed=3)
    method = cls()
    again = method.encode(method.fit(smoke_clip.frames, config, ctx))
    assert again == data


def _smoke():
    from bench.budgets import get_budget

    return get_budget("smoke")


def test_unknown_method_suggests_a_name() -> None:
    from bench.errors import MethodError

    with pytest.raises(MethodError, match="did you mean 'x264'"):
        registry.get("x264x")


def test_flipped_byte_makes_decode_fail_cleanly(coded, tmp_path: Path) -> None:
    """`bench decode` on a damaged stream exits 2 with a one-line error, never a traceback."""
    from bench.cli import main

    _, _, data, _ = coded
    for position in (0, len(data) // 3, len(data) // 2, len(data) - 1):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        path = tmp_path / f"damaged{position}.nvbs"
        path.write_bytes(bytes(damaged))
        assert main(["decode", str(path), "--out", str(tmp_path / "out")]) == 2
