"""Every method's decoder refuses damaged, foreign and forged streams with a `BitstreamError`.

Never a crash, a hang, a huge allocation or a wrong video. Random, truncated, bit-flipped and foreign bytes
are refused by the container before a decoder runs, so they are decoded in this process. Forged streams (a
valid container, re-packed so its checksums hold, around an absurd header or mismatched sections) reach the
decoders' own code, so each is decoded in a child process forked from a preloaded server, under a memory cap
and a time limit: a decoder that would allocate gigabytes or loop fails its case instead of the session.

The valid stream of each method comes from plan -> fit -> encode on the smoke clip at 0.5 bpp with the
smoke budget cut to one epoch (the streams must be valid, not good; the format does not depend on it).
Variants whose streams are of another kind (`method_variants.VARIANTS`, e.g. the supermasks on HNeRV) are
fuzzed beside the defaults; a stream is always decoded by a fresh default object of its method.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import multiprocessing
import resource
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from method_variants import VARIANTS, instance, method_name

from bench import bitstream, registry
from bench.budgets import get_budget
from bench.cli import main
from bench.contract import Clip, Context, SeqInfo
from bench.errors import BitstreamError

METHODS = [*registry.names(available_only=True), *VARIANTS]
TARGET_BPP = 0.5
MEMORY_CAP = 1 << 30  # what one decode may add to its process; a 72x128x4 decode needs ~50 MB
TIME_LIMIT_S = 3.0  # per forged stream; a valid decode takes well under a second here
DELETE = "<delete>"  # a header value meaning "remove this key"
FUZZ = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Coded:
    data: bytes
    stream: bitstream.Stream
    frames: np.ndarray  # the decode of the valid stream: what a harmless change must reproduce exactly


@pytest.fixture(scope="module")
def coded(smoke_clip: Clip, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Coded]:
    budget = dataclasses.replace(get_budget("smoke"), epochs=1)
    out = {}
    for name in METHODS:
        cls = registry.get(method_name(name))
        ctx = Context(workdir=tmp_path_factory.mktemp(method_name(name)), budget=budget, seed=0)
        method = instance(name)
        data = method.encode(method.fit(smoke_clip.frames, method.plan(smoke_clip, TARGET_BPP, budget), ctx))
        frames = cls().decode(data, smoke_clip.info, ctx)
        out[name] = Coded(data, bitstream.unpack(data), frames)
    return out


def test_every_nerv_family_method_is_fuzzed() -> None:
    family = {"nerv-dense", "nerv-pruned", "supermask-fixed", "supermask-learned", "hnerv", "hinerv"}
    assert family | {"supermask-fixed[backbone=hnerv]", "supermask-learned[backbone=hnerv]"} <= set(METHODS)


def _decode_here(name: str, data: bytes, info: SeqInfo, workdir: Path) -> np.ndarray:
    """Decode as `bench decode` does: a fresh default object of the stream's method (variants included)."""
    ctx = Context(workdir=workdir, budget=get_budget("smoke"))
    return registry.get(method_name(name))().decode(data, info, ctx)


# --- decoding in a capped child process ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: str  # "refused" (a BitstreamError), "frames", "crash", "hang"
    detail: Any  # the message, or the decoded frames


def _vm_size() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _decode_in_child(conn: Any, cases: list[tuple[str, bytes]], info: SeqInfo, workdir: str) -> None:
    """Child side: decode each stream under an address-space cap, report one outcome per stream."""
    import torch

    resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + MEMORY_CAP, resource.RLIM_INFINITY))
    torch.set_num_threads(1)
    for name, data in cases:
        try:
            conn.send(("frames", _decode_here(name, data, info, Path(workdir))))
        except BitstreamError as exc:
            conn.send(("refused", str(exc)))
        except BaseException as exc:  # everything else is what these tests exist to catch
            lines = str(exc).strip().splitlines()
            conn.send(("crash", f"{type(exc).__name__}: {lines[0] if lines else ''}"))
    conn.close()


_SPAWNER: Any = None


def _spawner() -> Any:
    """A fork server that imported torch and every method but never ran a kernel, so forking it is safe."""
    global _SPAWNER
    if _SPAWNER is None:
        _SPAWNER = multiprocessing.get_context("forkserver")
        modules = sorted({entry.module for entry in registry.discover().values()})
        _SPAWNER.set_forkserver_preload(["torch", "av", "constriction", "bench.registry", __name__, *modules])
    return _SPAWNER


def decode_isolated(cases: list[tuple[str, bytes]], info: SeqInfo, workdir: Path) -> list[Outcome]:
    """Outcomes of decoding each (method, bytes) in a child; a child that dies or stalls is replaced."""
    spawner = _spawner()
    outcomes: list[Outcome] = []
    while len(outcomes) < len(cases):
        receive, send = spawner.Pipe(duplex=False)
        child = spawner.Process(
            target=_decode_in_child, args=(send, cases[len(outcomes) :], info, str(workdir)), daemon=True
        )
        child.start()
        send.close()
        try:
            while len(outcomes) < len(cases):
                if not receive.poll(TIME_LIMIT_S):
                    outcomes.append(Outcome("hang", f"no answer within {TIME_LIMIT_S:g} s"))
                    break
                try:
                    outcomes.append(Outcome(*receive.recv()))
                except EOFError:
                    child.join(5)
                    outcomes.append(
                        Outcome("crash", f"the decoding process died (exit code {child.exitcode})")
                    )
                    break
        finally:
            child.kill()
            child.join()
            receive.close()
    return outcomes


def _explain(outcome: Outcome) -> str:
    if outcome.kind == "frames":
        return f"decoded a video of shape {outcome.detail.shape} instead of refusing"
    return f"{outcome.kind}: {outcome.detail}"


# --- random, truncated, bit-flipped and foreign bytes (refused by the container, in this process) ------------


def _refused(name: str, data: bytes, info: SeqInfo, workdir: Path) -> str:
    with pytest.raises(BitstreamError) as exc:
        _decode_here(name, data, info, workdir)
    message = str(exc.value)
    assert message and "\n" not in message
    return message


@FUZZ
@given(
    name=st.sampled_from(METHODS),
    data=st.binary(max_size=600) | st.binary(max_size=300).map(lambda b: bitstream.MAGIC + b"\x01" + b),
)
def test_random_bytes_are_refused(
    coded: dict[str, Coded],
    smoke_clip: Clip,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    data: bytes,
) -> None:
    _refused(name, data, smoke_clip.info, tmp_path_factory.getbasetemp())


@FUZZ
@given(name=st.sampled_from(METHODS), cut=st.integers(min_value=0, max_value=1 << 20))
def test_truncated_streams_are_refused(
    coded: dict[str, Coded], smoke_clip: Clip, tmp_path_factory: pytest.TempPathFactory, name: str, cut: int
) -> None:
    data = coded[name].data
    message = _refused(name, data[: cut % len(data)], smoke_clip.info, tmp_path_factory.getbasetemp())
    assert "truncated" in message or "magic" in message or "corrupt" in message


@FUZZ
@given(name=st.sampled_from(METHODS), where=st.lists(st.integers(min_value=0), min_size=1, max_size=3))
def test_bit_flips_are_refused(
    coded: dict[str, Coded],
    smoke_clip: Clip,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    where: list[int],
) -> None:
    damaged = bytearray(coded[name].data)
    bits = {w % (8 * len(damaged)) for w in where}
    for bit in bits:
        damaged[bit // 8] ^= 1 << (bit % 8)
    _refused(name, bytes(damaged), smoke_clip.info, tmp_path_factory.getbasetemp())


@FUZZ
@given(
    pair=st.permutations(METHODS).map(lambda p: p[:2]),
    cut=st.integers(min_value=0, max_value=1 << 16),
    tail=st.binary(min_size=1, max_size=64),
)
def test_spliced_and_padded_streams_are_refused(
    coded: dict[str, Coded],
    smoke_clip: Clip,
    tmp_path_factory: pytest.TempPathFactory,
    pair: list[str],
    cut: int,
    tail: bytes,
) -> None:
    assume(method_name(pair[0]) != method_name(pair[1]))  # one method's decoder reads all its variants
    first, second = (coded[n].data for n in pair)
    workdir = tmp_path_factory.getbasetemp()
    _refused(pair[0], first[: cut % len(first)] + second[cut % len(second) :], smoke_clip.info, workdir)
    _refused(pair[0], first + tail, smoke_clip.info, workdir)


def _foreign_files() -> dict[str, bytes]:
    """Bytes a user may pass by mistake: images, records, archives, an empty file, another container."""
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    return {
        "empty file": b"",
        "png image": png.getvalue(),
        "json record": json.dumps({"status": "ok", "bpp": 0.5}).encode(),
        "7z archive": bytes.fromhex("377abcaf271c0004") + bytes(24),
        "magic only": bitstream.MAGIC,
        "future format": bitstream.MAGIC + b"\x02" + bytes(40),
        "u32 lengths of 4 GB": bitstream.MAGIC + b"\x01\x04demo\x011" + struct.pack("<I", 0xFFFFFFFF),
    }


@pytest.mark.parametrize("name", METHODS)
def test_foreign_streams_and_files_are_refused(
    coded: dict[str, Coded], smoke_clip: Clip, tmp_path: Path, name: str
) -> None:
    for other, entry in coded.items():
        if method_name(other) != method_name(name):
            assert f"'{method_name(other)}'" in _refused(name, entry.data, smoke_clip.info, tmp_path)
        elif other != name:  # a variant of the same method: its header names what the decoder must build
            assert np.array_equal(_decode_here(name, entry.data, smoke_clip.info, tmp_path), entry.frames)
    for label, data in _foreign_files().items():
        try:
            _refused(name, data, smoke_clip.info, tmp_path)
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


# --- forged streams: valid containers around absurd headers or mismatched sections (in a child) -------------

# (id, header path, value). Every header holds width/height/frames (the contract); the other paths apply to
# the methods whose header has them, and are skipped for the rest.
HEADER_CASES: dict[str, tuple[tuple[str, ...], Any]] = {
    "width-1e9": (("width",), 10**9),
    "width-negative": (("width",), -128),
    "width-string": (("width",), "128"),
    "width-float": (("width",), 128.0),
    "width-bool": (("width",), True),
    "width-missing": (("width",), DELETE),
    "height-doubled": (("height",), 144),
    "frames-negative": (("frames",), -4),
    "frames-zero": (("frames",), 0),
    "frames-fewer": (("frames",), 3),
    "frames-100000": (("frames",), 100_000),
    "frames-1e12": (("frames",), 10**12),
    "frames-null": (("frames",), None),
    "frames-missing": (("frames",), DELETE),
    "arch-missing": (("arch",), DELETE),
    "arch-not-a-mapping": (("arch",), "nerv"),
    "arch-huge-stem": (("arch", "stem_dims"), [16000, 16000, 16000]),
    "arch-wide-stem": (("arch", "stem_dims"), [8000, 8000]),
    "arch-negative-stem": (("arch", "stem_dims"), [-1]),
    "arch-float-stem": (("arch", "stem_dims"), [5.5]),
    "arch-embed-levels-16384": (("arch", "embed_levels"), 16384),
    "arch-embed-base-1e308": (("arch", "embed_base"), 1e308),
    "arch-embed-base-inf": (("arch", "embed_base"), float("inf")),
    "arch-embed-base-string": (("arch", "embed_base"), "x"),
    "arch-start-one-value": (("arch", "start"), [9]),
    "arch-start-three-values": (("arch", "start"), [9, 16, 1]),
    "arch-float-strides": (("arch", "strides"), [2.0, 2, 2]),
    "arch-expansion-string": (("arch", "expansion"), "1"),
    "arch-unknown-activation": (("arch", "activation"), "__import__"),
    "arch-unknown-field": (("arch", "pickle"), "os.system"),
    "coding-levels-zero": (("coding", "levels"), 0),
    "coding-levels-one": (("coding", "levels"), 1),
    "coding-levels-65535": (("coding", "levels"), 65535),
    "coding-levels-bool": (("coding", "levels"), True),
    "coding-levels-missing": (("coding", "levels"), DELETE),
    "pruning-kept-zero": (("pruning", "kept"), 0),
    "pruning-kept-1e12": (("pruning", "kept"), 10**12),
    "pruning-kept-bool": (("pruning", "kept"), True),
    "masks-missing": (("masks",), DELETE),
    "masks-seed-negative": (("masks", "seed"), -1),
    "masks-seed-bool": (("masks", "seed"), True),
    "masks-seed-2e64": (("masks", "seed"), 2**64),
    "masks-seed-string": (("masks", "seed"), "0"),
    "masks-densities-empty": (("masks", "densities"), []),
    "masks-densities-equal": (("masks", "densities"), [0.5, 0.5, 0.5]),
    "masks-densities-fewer": (("masks", "densities"), [0.3, 0.1]),
    "masks-densities-300-levels": (("masks", "densities"), [1 - 1e-6 * i for i in range(1, 301)]),
    "masks-densities-string": (("masks", "densities"), "abc"),
    "masks-init-unknown": (("masks", "init"), "x"),
    "backbone-nerv": (("backbone",), "nerv"),
    "backbone-unknown": (("backbone",), "resnet"),
    "backbone-bool": (("backbone",), True),
    "backbone-missing": (("backbone",), DELETE),
    "embedding-missing": (("embedding",), DELETE),
    "embedding-not-a-mapping": (("embedding",), [63]),
    "embedding-levels-zero": (("embedding", "levels"), 0),
    "embedding-levels-bool": (("embedding", "levels"), True),
    "embedding-levels-65535": (("embedding", "levels"), 65535),
    "arch-embed-grid-zero": (("arch", "embed_grid"), [0, 1]),
    "arch-embed-grid-doubled": (("arch", "embed_grid"), [2, 2]),
    "arch-embed-channels-1e6": (("arch", "embed_channels"), 10**6),
    "arch-fc-dim-1e9": (("arch", "fc_dim"), 10**9),
    "arch-strides-h-float": (("arch", "strides_h"), [3.0, 3, 2, 2, 2]),
    "arch-strides-w-shorter": (("arch", "strides_w"), [4, 4, 2, 2]),
    "arch-reduction-string": (("arch", "reduction"), "1.2"),
    "arch-kernel-max-99": (("arch", "kernel_max"), 99),
}
SECTION_CASES = [
    "emptied",
    "cut-1-byte",
    "cut-4-bytes",
    "halved",
    "padded-4-zero-bytes",
    "padded-100-zero-bytes",
    "doubled",
    "missing",
    "extra",
    "swapped",
    "foreign",
    "other-version",
]

# Decoders known to fail a case, as {method: {case: the fix}}; each case is a strict xfail, so once its
# decoder is fixed it passes and the entry must go (see docs/reliability.md).
KNOWN_FAILURES: dict[str, dict[str, str]] = {}


def _params(cases: list[str]) -> list[Any]:
    """(method, case) pairs, strictly expected to fail where KNOWN_FAILURES says so."""
    params = []
    for name in METHODS:
        for case in cases:
            reason = KNOWN_FAILURES.get(name, {}).get(case)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(name, case, id=f"{name}-{case}", marks=marks))
    return params


def _forge_header(header: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any] | None:
    """A copy of `header` with `path` set to `value` (or removed); None when the header has no such place."""
    forged = copy.deepcopy(header)
    parent: Any = forged
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or (path[-1] not in parent and (value == DELETE or len(path) == 1)):
        return None
    if value == DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return forged


def _section_variants(name: str, coded: dict[str, Coded], case: str) -> dict[str, bitstream.Stream]:
    """Forged streams of `name` for one kind of section damage, keyed by what was done."""
    stream = coded[name].stream
    sections = stream.sections
    keys = list(sections)
    each = {
        "emptied": lambda p: b"",
        "cut-1-byte": lambda p: p[:-1],
        "cut-4-bytes": lambda p: p[:-4],
        "halved": lambda p: p[: len(p) // 2],
        "padded-4-zero-bytes": lambda p: p + bytes(4),
        "padded-100-zero-bytes": lambda p: p + bytes(100),
        "doubled": lambda p: p + p,
    }
    variants: dict[str, dict[str, bytes]] = {}
    if case in each:
        variants = {f"{case} '{k}'": {**sections, k: each[case](sections[k])} for k in keys if sections[k]}
    elif case == "missing" and len(keys) > 1:  # zero sections: the container refuses (test_bitstream)
        variants = {f"without '{k}'": {o: v for o, v in sections.items() if o != k} for k in keys}
    elif case == "extra":
        variants = {"with an extra section": {**sections, "extra": bytes(16)}}
    elif case == "swapped" and len(keys) > 1:
        variants = {
            "payloads rotated": dict(zip(keys, [sections[k] for k in keys[1:] + keys[:1]], strict=True))
        }
    elif case == "foreign":
        variants = {f"sections of {o}": c.stream.sections for o, c in coded.items() if o != name}
    elif case == "other-version":
        return {"version": dataclasses.replace(stream, version=f"{stream.version}-other")}
    return {what: dataclasses.replace(stream, sections=s) for what, s in variants.items()}


class ForgedOutcomes:
    """Every forged stream of a method, decoded in one batch (one child, replaced when it dies or stalls)."""

    def __init__(self, coded: dict[str, Coded], info: SeqInfo, workdir: Path) -> None:
        self.coded, self.info, self.workdir = coded, info, workdir
        self.results: dict[tuple[str, str], list[tuple[str, Outcome]]] = {}

    def _streams(self, name: str) -> dict[str, dict[str, bitstream.Stream]]:
        base = self.coded[name].stream
        out: dict[str, dict[str, bitstream.Stream]] = {}
        for case, (path, value) in HEADER_CASES.items():
            header = _forge_header(base.header, path, value)
            out[case] = {} if header is None else {case: dataclasses.replace(base, header=header)}
        for case in SECTION_CASES:
            out[case] = _section_variants(name, self.coded, case)
        return out

    def of(self, name: str, case: str) -> list[tuple[str, Outcome]]:
        if (name, case) not in self.results:
            streams = self._streams(name)
            flat = [(c, what, s) for c, variants in streams.items() for what, s in variants.items()]
            packed = [(name, bitstream.pack(s.method, s.version, s.header, s.sections)) for _, _, s in flat]
            outcomes = decode_isolated(packed, self.info, self.workdir)
            for c in streams:
                self.results[(name, c)] = []
            for (c, what, _), outcome in zip(flat, outcomes, strict=True):
                self.results[(name, c)].append((what, outcome))
        return self.results[(name, case)]


@pytest.fixture(scope="module")
def forged(
    coded: dict[str, Coded], smoke_clip: Clip, tmp_path_factory: pytest.TempPathFactory
) -> ForgedOutcomes:
    return ForgedOutcomes(coded, smoke_clip.info, tmp_path_factory.mktemp("forged"))


def _assert_refused(results: list[tuple[str, Outcome]]) -> None:
    wrong = [f"{what}: {_explain(o)}" for what, o in results if o.kind != "refused" or "\n" in o.detail]
    assert not wrong, "; ".join(wrong)


@pytest.mark.parametrize(("name", "case"), _params(list(HEADER_CASES)))
def test_forged_header_is_refused(forged: ForgedOutcomes, name: str, case: str) -> None:
    results = forged.of(name, case)
    if not results:
        pytest.skip(f"{name}'s header has no '{'.'.join(HEADER_CASES[case][0])}'")
    _assert_refused(results)


@pytest.mark.parametrize(("name", "case"), _params(SECTION_CASES))
def test_forged_sections_are_refused(forged: ForgedOutcomes, name: str, case: str) -> None:
    results = forged.of(name, case)
    if not results:
        pytest.skip(f"{name}'s stream has a single section")
    _assert_refused(results)


ABSURD = [
    None,
    True,
    "",
    "128",
    "x\x00",
    [],
    ["a"],
    {},
    {"k": 1},
    float("nan"),
    float("inf"),
    1e308,
    -(2**63),
]
ABSURD += [2**64, DELETE]


def _leaves(header: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in header.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += _leaves(value, (*prefix, key))
    return paths


@pytest.mark.parametrize(("name", "case"), _params(["absurd-values"]))
def test_absurd_header_values_are_refused_or_harmless(
    coded: dict[str, Coded], smoke_clip: Clip, tmp_path: Path, name: str, case: str
) -> None:
    """Any header field set to a value no encoder writes: refused, or (a field the decoder does not read)
    the very same video. Drawn deterministically (a batch per example), so every run sees the same cases."""
    entry = coded[name]
    failures: list[str] = []

    @settings(max_examples=2, deadline=None, database=None, derandomize=True, phases=[Phase.generate])
    @given(
        st.lists(
            st.tuples(st.sampled_from(_leaves(entry.stream.header)), st.sampled_from(ABSURD)),
            min_size=12,
            max_size=12,
            unique_by=lambda pair: (pair[0], repr(pair[1])),
        )
    )
    def check(changes: list[tuple[tuple[str, ...], Any]]) -> None:
        forged = []
        for path, value in changes:
            header = _forge_header(entry.stream.header, path, value)
            assert header is not None
            forged.append(
                (
                    name,
                    bitstream.pack(entry.stream.method, entry.stream.version, header, entry.stream.sections),
                )
            )
        for (path, value), outcome in zip(
            changes, decode_isolated(forged, smoke_clip.info, tmp_path), strict=True
        ):
            harmless = outcome.kind == "frames" and np.array_equal(outcome.detail, entry.frames)
            if outcome.kind != "refused" and not harmless:
                failures.append(f"{'.'.join(path)} = {value!r}: {_explain(outcome)}")

    check()
    assert not failures, "; ".join(failures)


# --- `bench decode` on forged files --------------------------------------------------------------------------


def test_bench_decode_refuses_absurd_headers_before_decoding(
    coded: dict[str, Coded], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = coded["x264"].stream
    cases = {
        "frames": ({"frames": 10**10}, "header field 'frames'"),
        "pixels": ({"frames": 10**9}, "more than the"),
        "types": ({"height": "72"}, "must be an integer"),
    }
    for label, (change, message) in cases.items():
        path = tmp_path / f"{label}.nvbs"
        path.write_bytes(
            bitstream.pack(stream.method, stream.version, {**stream.header, **change}, stream.sections)
        )
        assert main(["decode", str(path), "--out", str(tmp_path / label)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / label).exists()
    unknown = tmp_path / "unknown.nvbs"
    unknown.write_bytes(bitstream.pack("no-such-method", "1", stream.header, stream.sections))
    assert main(["decode", str(unknown), "--out", str(tmp_path / "u")]) == 2
    assert "unknown method 'no-such-method'" in capsys.readouterr().err
