"""No silently wrong result, no traceback: inputs identified by content, outputs checked before work,
odd images refused, and random command lines that only ever exit 0 or 2."""

from __future__ import annotations

import io
import os
import struct
import zlib
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import store
from bench.cli import main

SMOKE = ["--budget", "smoke", "--bpp", "1.0"]


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _yuv_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A smooth moving pattern as raw yuv420p."""
    y, x = np.mgrid[0:height, 0:width]
    planes = []
    for t in range(frames):
        luma = ((x * 2 + y + 6 * t) % 256).astype(np.uint8)
        chroma = np.full((height // 2, width // 2), 128, np.uint8)
        planes += [luma.tobytes(), chroma.tobytes(), chroma.tobytes()]
    path.write_bytes(b"".join(planes))
    return path


def _png_folder(folder: Path, frames: int = 4) -> Path:
    from PIL import Image

    folder.mkdir()
    y, x = np.mgrid[0:72, 0:128]
    for t in range(frames):
        rgb = np.stack([(x + 4 * t) % 256, (y * 3) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{t:03d}.png")
    return folder


# --- inputs are identified by content ---------------------------------------------------------------------------


def test_a_corrected_yuv_size_is_a_new_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = _yuv_clip(tmp_path / "clip.yuv", 176, 144, 4)
    results = str(tmp_path / "res")
    base = ["run", "--methods", "x264", "--seq", str(clip), *SMOKE, "--results", results]
    assert main([*base, "--size", "176x144"]) == 0
    capsys.readouterr()
    assert main([*base, "--size", "144x176"]) == 0
    assert "already finished" not in capsys.readouterr().out
    records = store.load_results(Path(results))
    # two inputs of two geometries: two jobs; the newest is the one the point shows, the other is superseded
    assert len(records.finished) == 1 and len(records.rejected) == 1
    assert records.finished[0].identity["input"]["width"] == 144
    assert "superseded" in records.rejected[0].reason


def test_a_changed_png_folder_is_a_new_job_and_never_a_second_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    folder = _png_folder(tmp_path / "frames")
    results = tmp_path / "res"
    run = ["run", "--methods", "x264", "--seq", str(folder), *SMOKE, "--results", str(results)]
    assert main(run) == 0
    Image.fromarray(np.zeros((72, 128, 3), np.uint8)).save(folder / "002.png")
    capsys.readouterr()
    assert main(run) == 0
    assert "already finished" not in capsys.readouterr().out
    assert main(["report", "--results", str(results)]) == 0
    summary = (results / "summary.md").read_text()
    assert "| x264 | frames | smoke | n/a | 0 |" in summary  # one seed, not "0, 0"
    assert "superseded" in summary


def test_the_same_frames_under_another_name_carry_their_own_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _png_folder(tmp_path / "first")
    second = tmp_path / "second"
    second.mkdir()
    for png in first.iterdir():
        (second / png.name).write_bytes(png.read_bytes())
    results = str(tmp_path / "res")
    assert main(["run", "--methods", "x264", "--seq", str(first), *SMOKE, "--results", results]) == 0
    capsys.readouterr()
    assert main(["run", "--methods", "x264", "--seq", str(second), *SMOKE, "--results", results]) == 0
    out = capsys.readouterr().out
    assert "already finished" not in out and "second" in out


# --- outputs checked before any work ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("done")
    assert main(["run", "--methods", "x264", "--seq", "bunny", *SMOKE, "--results", str(results)]) == 0
    return results


def _stream(results: Path) -> str:
    (job,) = store.jobs_dir(results).iterdir()
    return str(job / store.STREAM)


def test_output_paths_are_checked_first(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["report", "--results", str(finished), "--out", str(tmp_path)], "is a folder; give a file path"),
        (["report", "--results", str(finished), "--out", str(a_file / "r.html")], "is a file, not a folder"),
        (["results", "--results", str(finished), "--out", str(tmp_path)], "is a folder; give a file path"),
        (["decode", _stream(finished), "--out", str(a_file)], "is a file; give a folder path"),
        (["decode", _stream(finished), "--out", str(tmp_path)], "holds other files"),
        (
            ["decode", _stream(finished), "--out", str(tmp_path / "d"), "--device", "gpu"],
            "--device 'gpu' is not a device",
        ),
        (["score", "x", "y", "--flip-map", str(tmp_path)], "--flip-map"),
        (["fetch", "Jockey", "--cache-dir", str(a_file)], "--cache-dir"),
        (["run", "--methods", "x264", "--seq", "bunny", "--budget", "smoke", "--bpp", "1e9"], "is above 24"),
        (["run", "--methods", "", "--dry-run"], "--methods is empty"),
        (["run", "--seq", "", "--dry-run"], "--seq is empty"),
        (["run", "--results", "", "--dry-run"], "--results is empty"),
        (["run", "--methods", "x264", "--bpp", "0.5,0.5", "--dry-run"], "lists a value twice"),
        (
            ["run", "--methods", "x264", "--seed", str(2**40), "--dry-run"],
            "seed 1099511627776 is out of range",
        ),
        (["run", "--methods", "x264", "--device", "gpu", "--dry-run"], "--device 'gpu' is not a device"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in one_line(capsys.readouterr().err), argv


def test_decode_replaces_an_earlier_decode(finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    for i in range(10):  # an earlier, longer decode
        (out / f"frame_{i:05d}.png").write_bytes(b"old")
    assert main(["decode", _stream(finished), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:05d}.png" for i in range(4)]


def test_parquet_without_pyarrow_is_one_line(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    assert (
        main(["results", "--results", str(finished), "--format", "parquet", "--out", str(tmp_path / "t.pq")])
        == 2
    )
    assert "needs pyarrow (pip install pyarrow)" in one_line(capsys.readouterr().err)


def test_job_folders_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert main(["run", "--methods", "x264", "--seq", "bunny", *SMOKE, "--results", str(tmp_path)]) == 0
    finally:
        os.umask(old)
    (job,) = store.jobs_dir(tmp_path).iterdir()
    assert job.stat().st_mode & 0o777 == 0o755


def test_non_utf8_thresholds_and_config_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes("bounds: []\n# caf\xe9\n".encode("latin-1"))
    assert main(["check", "--results", str(tmp_path), "--thresholds", str(bad)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().out
    assert main(["run", "--config", str(bad), "--dry-run"]) == 2
    assert "is not UTF-8 text" in one_line(capsys.readouterr().err)


# --- odd images --------------------------------------------------------------------------------------------------


def _png16(path: Path, width: int = 8, height: int = 8) -> None:
    """A 16-bit RGB PNG, written by hand (Pillow writes none)."""
    rows = b"".join(b"\0" + struct.pack(">" + "H" * 3 * width, *([40000] * 3 * width)) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_16_bit_and_transparent_pngs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    deep = tmp_path / "deep.png"
    _png16(deep)
    clear = tmp_path / "clear.png"
    rgba = np.full((8, 8, 4), 200, np.uint8)
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(clear)
    opaque = tmp_path / "opaque.png"
    Image.fromarray(np.full((8, 8, 4), 255, np.uint8), "RGBA").save(opaque)
    assert main(["score", str(deep), str(deep), "--metrics", "psnr"]) == 2
    assert "is not 8 bits a channel (mode 'RGB', 16-bit)" in one_line(capsys.readouterr().err)
    assert main(["score", str(clear), str(clear), "--metrics", "psnr"]) == 2
    assert "has transparent pixels" in one_line(capsys.readouterr().err)
    assert main(["score", str(opaque), str(opaque), "--metrics", "psnr"]) == 0  # an opaque alpha is fine


# --- random command lines ----------------------------------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "x264",
        "all",
        "nerv-dense[lr=x]",
        "bunny",
        "smoke",
        "cpu",
        "nan",
        "-1",
        "0",
        "1e9",
        "",
        "a,b",
        "[",
        "]",
        "x264[crf=20|30]",
        "180x320",
        "0x0",
        "cuda",
        "gpu",
        "epochs",
        "time",
        "/dev/null",
        "missing.yaml",
    ]
)
FLAGS = {
    "run": [
        "--methods",
        "--seq",
        "--bpp",
        "--budget",
        "--epochs",
        "--frames",
        "--resize",
        "--lr",
        "--seed",
        "--repeats",
        "--seeds",
        "--match",
        "--device",
        "--size",
        "--jobs",
        "--executor",
        "--config",
    ],
    "report": ["--results", "--out", "--anchor"],
    "results": ["--results", "--format", "--out"],
    "check": ["--results", "--thresholds"],
    "ls": [],
    "decode": ["--out", "--device"],
    "score": ["--metrics", "--size", "--flip-map", "--device"],
}
GENERATED: list[int] = []


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(sorted(FLAGS)),
    pairs=st.lists(st.tuples(st.integers(0, 16), WORDS), max_size=4),
    positional=st.lists(WORDS, max_size=2),
)
def test_random_command_lines_exit_0_or_2_without_a_traceback(
    tmp_path: Path, command: str, pairs: list[tuple[int, str]], positional: list[str]
) -> None:
    flags = FLAGS[command]
    argv = [command, *positional]
    for index, value in pairs:
        if flags:
            argv += [flags[index % len(flags)], value]
    if command == "run":
        argv += ["--dry-run", "--results", str(tmp_path / "fuzz")]  # plan, never train
    out, err = io.StringIO(), io.StringIO()
    before = sorted(p.name for p in tmp_path.iterdir())
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
    GENERATED.append(1)
    assert code in (0, 2), (argv, err.getvalue())
    assert "Traceback" not in err.getvalue() + out.getvalue(), argv
    if code == 2:
        assert sorted(p.name for p in tmp_path.iterdir()) == before, argv  # nothing left behind


def test_lpips_alone_without_weights_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from bench import metrics

    if metrics.lpips_available() is None:
        pytest.skip("LPIPS weights are installed here: the metric can be computed")
    image = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(image)
    assert main(["score", str(image), str(image), "--metrics", "lpips"]) == 2
    assert "--metrics lpips cannot be computed here: no AlexNet backbone weights" in one_line(
        capsys.readouterr().err
    )
