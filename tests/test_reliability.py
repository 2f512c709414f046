"""Faults and hostile input outside the decoders: archives and downloads, faults during runs, user mistakes.

Each test provokes one fault for real (a crafted 7z, a misbehaving HTTP server on 127.0.0.1, a disk that
fills up, a signal, a method that raises or diverges, a malformed file) and checks that the suite ends in
its own one-line error or a recorded failure, leaves nothing half-written, and that a rerun completes.
docs/reliability.md lists every case with the message a user sees.
"""

from __future__ import annotations

import errno
import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import py7zr
import pytest
from PIL import Image
from plugin_methods import installed_plugin
from tiny_sequence import FRAMES, HEIGHT, MEMBER, WIDTH, write_manifest

from bench import store
from bench.budgets import get_budget
from bench.cli import main
from bench.contract import Clip, SeqInfo
from bench.data.fetch import fetch
from bench.data.manifests import load_manifests
from bench.errors import DataError

SMOKE = ["--budget", "smoke", "--seq", "bunny"]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()) if folder.exists() else []


# --- archives and downloads ----------------------------------------------------------------------------------


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, plus misbehaving routes: /endless (no length, never ends), /huge (announces 1 TB),
    /reset/<file> (half the body, then a TCP reset), /stall/<file> (half the body, then silence)."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _half(self, name: str) -> bytes:
        body = (Path(self.directory) / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        return body

    def do_GET(self) -> None:
        route, _, rest = self.path.lstrip("/").partition("/")
        if route == "endless":
            self.send_response(200)
            self.end_headers()
            self.close_connection = True
            try:
                for _ in range(1024):  # 64 MB at most, far past any limit the tests set
                    self.wfile.write(bytes(1 << 16))
            except OSError:
                pass  # the client hung up, as it should
        elif route == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(bytes(1024))
        elif route == "reset":
            self._half(rest)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif route == "stall":
            self._half(rest)
            time.sleep(30)  # until the client is killed
        else:
            super().do_GET()


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory, tiny_yuv: bytes) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("www")
    make_archive(root / "Tiny.7z", {f"Tiny/{MEMBER}": tiny_yuv, "Tiny/readme.txt": b"frames of carphone\n"})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def make_archive(path: Path, members: dict[str, bytes]) -> Path:
    """A 7z holding `members`; names are written as given, even hostile ones ('../x', '/abs/x')."""
    with py7zr.SevenZipFile(path, "w") as archive:
        for name, data in members.items():
            archive._writestr(data, name)  # the public writestr refuses hostile names, which is the point
    return path


@pytest.mark.parametrize("where", ["dotdot", "absolute"])
def test_archive_member_outside_the_cache_is_refused(
    env: tuple[Path, Path], tmp_path: Path, tiny_yuv: bytes, where: str
) -> None:
    manifests, cache = env
    escape = tmp_path / "escaped" / MEMBER
    name = f"../../../{MEMBER}" if where == "dotdot" else str(escape)
    archive = make_archive(tmp_path / "evil.7z", {name: tiny_yuv})
    write_manifest(manifests, archive.as_uri())
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    assert "outside the cache; refused" in one_line(str(exc.value))
    assert files_under(cache) == [] and not escape.exists()
    assert [p for p in tmp_path.rglob(MEMBER)] == []


def test_only_the_manifest_member_is_extracted(
    env: tuple[Path, Path], tmp_path: Path, tiny_yuv: bytes
) -> None:
    manifests, cache = env
    escape = tmp_path / "escaped.txt"
    members = {
        f"Tiny/{MEMBER}": tiny_yuv,
        "../../../escaped.txt": b"x",
        str(escape): b"y",
        "big.bin": bytes(1 << 20),
    }
    write_manifest(manifests, make_archive(tmp_path / "mixed.7z", members).as_uri())
    assert fetch("Tiny").read_bytes() == tiny_yuv
    assert files_under(cache) == [cache / "tiny" / MEMBER] and not escape.exists()
    assert [p for p in tmp_path.rglob("escaped.txt")] == []


def test_symlink_member_is_refused(env: tuple[Path, Path], tmp_path: Path, tiny_yuv: bytes) -> None:
    """A link to a file of exactly the right bytes would pass every size and checksum test if followed."""
    manifests, cache = env
    source = tmp_path / "src"
    (source / "Tiny").mkdir(parents=True)
    (source / "payload.yuv").write_bytes(tiny_yuv)
    os.symlink("../payload.yuv", source / "Tiny" / MEMBER)
    with py7zr.SevenZipFile(tmp_path / "link.7z", "w") as archive:
        archive.write(source / "payload.yuv", "payload.yuv")
        archive.write(source / "Tiny" / MEMBER, f"Tiny/{MEMBER}")
    write_manifest(manifests, (tmp_path / "link.7z").as_uri())
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    assert "is a link or special file" in one_line(str(exc.value))
    assert files_under(cache) == []


def test_member_larger_than_the_manifest_is_refused_before_extraction(
    env: tuple[Path, Path], tmp_path: Path
) -> None:
    manifests, cache = env
    bomb = make_archive(tmp_path / "bomb.7z", {f"Tiny/{MEMBER}": bytes(16 << 20)})  # 16 MB of zeros, ~3 kB
    assert bomb.stat().st_size < 64 << 10
    write_manifest(manifests, bomb.as_uri())
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    assert (
        f"declares {16 << 20} bytes, but the manifest's frames are {WIDTH * HEIGHT * 3 // 2 * FRAMES}"
        in one_line(str(exc.value))
    )
    assert files_under(cache) == []


@pytest.mark.parametrize(
    ("route", "message"), [("endless", "sent more than"), ("huge", "announces 1000000000000")]
)
def test_download_larger_than_any_archive_of_the_sequence_is_cut(
    www: tuple[str, Path], env: tuple[Path, Path], route: str, message: str
) -> None:
    manifests, cache = env
    write_manifest(manifests, f"{www[0]}/{route}")
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    assert message in one_line(str(exc.value))
    assert files_under(cache) == []


def test_connection_reset_mid_body_then_a_rerun_completes(
    www: tuple[str, Path], env: tuple[Path, Path], tiny_yuv: bytes
) -> None:
    manifests, cache = env
    write_manifest(manifests, f"{www[0]}/reset/Tiny.7z")
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    assert "Tiny.7z" in one_line(str(exc.value))
    assert files_under(cache) == []
    write_manifest(manifests, f"{www[0]}/Tiny.7z")
    assert fetch("Tiny").read_bytes() == tiny_yuv
    assert files_under(cache) == [cache / "tiny" / MEMBER]


def test_killed_fetch_is_cleaned_up_by_the_next(
    www: tuple[str, Path], env: tuple[Path, Path], tiny_yuv: bytes
) -> None:
    manifests, cache = env
    write_manifest(manifests, f"{www[0]}/stall/Tiny.7z")
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "fetch", "Tiny"], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60  # the archive file appears once the body is flowing (then it stalls)
    while time.time() < deadline and not list((cache / "tiny").glob(".fetch-*/Tiny.7z")):
        time.sleep(0.05)
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert list((cache / "tiny").glob(".fetch-Tiny-*")), "the kill should land mid-download"
    write_manifest(manifests, f"{www[0]}/Tiny.7z")
    assert fetch("Tiny").read_bytes() == tiny_yuv
    assert files_under(cache) == [cache / "tiny" / MEMBER]  # the partial download is gone


def test_size_and_checksum_mismatches_discard_the_download(
    www: tuple[str, Path], env: tuple[Path, Path], tiny_yuv: bytes
) -> None:
    manifests, cache = env
    write_manifest(manifests, f"{www[0]}/Tiny.7z", frames=4)  # the archive holds 3 frames
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    assert "but the manifest's frames are" in one_line(str(exc.value)) and "discarded" in str(exc.value)
    write_manifest(manifests, f"{www[0]}/Tiny.7z", archive_sha256="0" * 64)
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    assert "archive sha256" in one_line(str(exc.value)) and "discarded" in str(exc.value)
    assert files_under(cache) == []


# --- faults during runs ----------------------------------------------------------------------------------------

FAULTY_PLUGIN = '''
"""Methods that fail in `fit` while BENCH_TEST_FAULTS is set: a crash, running out of memory, divergence."""
import os

from bench.contract import FitFailed
from methods.nerv_dense import NeRVDense, NeRVDenseConfig
from methods.x264 import X264


class _FailsWhenAsked:
    def fit(self, frames, config, ctx):
        if os.environ.get("BENCH_TEST_FAULTS"):
            raise self.fault()
        return super().fit(frames, config, ctx)


class Crashing(_FailsWhenAsked, X264):
    name = "x264-crashing"

    def fault(self):
        return RuntimeError("kaboom\\nand a second line nobody should see")


class OutOfMemory(_FailsWhenAsked, X264):
    name = "x264-oom"

    def fault(self):
        return MemoryError()


class TorchOutOfMemory(_FailsWhenAsked, X264):
    name = "x264-torch-oom"

    def fault(self):
        return RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 8589934592 bytes"
        )


class Diverging(_FailsWhenAsked, X264):
    name = "x264-diverging"

    def fault(self):
        return FitFailed("loss became NaN at epoch 1 step 2; lower the learning rate")


class NervDiverging(NeRVDense):
    """nerv-dense at an absurd learning rate: its loss really becomes NaN."""

    name = "nerv-diverging"
    version = "1-lr1e9"

    @classmethod
    def default_config(cls):
        return NeRVDenseConfig(lr=1e9)
'''


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with installed_plugin(tmp_path / "plugins", monkeypatch, "faulty_methods", FAULTY_PLUGIN):
        yield


def _failures(results: Path) -> dict[str, dict]:
    return {
        r["method"]: r for r in (json.loads(p.read_text()) for p in store.failed_dir(results).glob("*.json"))
    }


def _leftovers(results: Path) -> list[str]:
    """Anything half-written: staging directories, temporary files, job directories without a record."""
    found = [str(p) for p in results.rglob(".tmp-*")]
    if store.jobs_dir(results).is_dir():
        found += [str(d) for d in store.jobs_dir(results).iterdir() if not (d / store.RECORD).is_file()]
    return found


def test_faults_inside_methods_are_recorded_and_the_grid_goes_on(
    plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "res"
    monkeypatch.setenv("BENCH_TEST_FAULTS", "1")
    methods = "x264-crashing,x264-oom,x264-torch-oom,x264-diverging,nerv-diverging,x264"
    assert main(["run", "--methods", methods, "--bpp", "0.5", *SMOKE, "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert [r.method for r in store.iter_records(results)] == ["x264"]  # the healthy job finished
    failed = _failures(results)
    assert {m: r["status"] for m, r in failed.items()} == dict.fromkeys(
        ["x264-crashing", "x264-oom", "x264-torch-oom", "x264-diverging", "nerv-diverging"], "failed"
    )
    reasons = {m: one_line(r["reason"]) for m, r in failed.items()}
    assert reasons["x264-crashing"] == "RuntimeError during fit: kaboom"
    assert reasons["x264-oom"].startswith("out of memory during fit (MemoryError)")
    assert reasons["x264-torch-oom"].startswith("out of memory during fit (RuntimeError: [enforce fail")
    assert reasons["x264-diverging"] == "loss became NaN at epoch 1 step 2; lower the learning rate"
    assert (
        reasons["nerv-diverging"].startswith("loss became NaN at epoch 1")
        and "lr=1e+09" in reasons["nerv-diverging"]
    )
    assert "second line" in failed["x264-crashing"]["traceback"]  # the detail is kept, not shown
    assert "failed: x264-oom at 0.5 bpp: out of memory during fit" in out
    assert _leftovers(results) == []

    monkeypatch.delenv("BENCH_TEST_FAULTS")  # memory freed: the rerun completes the grid
    assert main(["run", "--methods", "x264-oom,x264", "--bpp", "0.5", *SMOKE, "--results", str(results)]) == 0
    assert "1 of 2 jobs already finished" in capsys.readouterr().out
    assert {r.method for r in store.iter_records(results)} == {"x264", "x264-oom"}
    assert "x264-oom" not in _failures(results)  # its failed attempt is superseded


def _fill_disk_on(monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """Writing JSON whose path contains `when` writes half the bytes, then the disk is full."""
    real = store._write_json

    def write(path: Path, payload: dict) -> None:
        if when not in str(path):
            return real(path, payload)
        text = json.dumps(payload)
        path.write_text(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(store, "_write_json", write)


def test_disk_full_while_publishing_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "res"
    args = ["run", "--methods", "x264", "--bpp", "0.5", *SMOKE, "--results", str(results)]
    with monkeypatch.context() as patch:
        _fill_disk_on(patch, f"{os.sep}.tmp-")
        assert main(args) == 2
    err = one_line(capsys.readouterr().err)
    assert "cannot write the result of job x264-" in err and "No space left on device" in err
    assert "rerun" in err
    assert list(store.iter_records(results)) == [] and _leftovers(results) == []
    assert main(args) == 0  # space freed: the rerun publishes the job whole
    (record,) = store.iter_records(results)
    assert (Path(record.directory) / store.STREAM).stat().st_size == record.bytes


def test_disk_full_while_recording_a_failure(
    plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "res"
    monkeypatch.setenv("BENCH_TEST_FAULTS", "1")
    _fill_disk_on(monkeypatch, f"{os.sep}failed{os.sep}")
    assert main(["run", "--methods", "x264-crashing", "--bpp", "0.5", *SMOKE, "--results", str(results)]) == 2
    assert "cannot write the failure record of job x264-crashing-" in one_line(capsys.readouterr().err)
    assert _leftovers(results) == [] and list(store.failed_dir(results).iterdir()) == []


def test_sigterm_stops_the_run_cleanly_and_a_rerun_completes(tmp_path: Path) -> None:
    results = tmp_path / "res"
    args = ["run", "--methods", "x264", "--bpp", "0.4,0.6,0.9", *SMOKE, "--results", str(results)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(store.jobs_dir(results).glob(f"[!.]*/{store.RECORD}")):
        time.sleep(0.02)  # until the first job is published (staging directories start with a dot)
    proc.send_signal(signal.SIGTERM)  # the second job is in flight
    stopped = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert time.time() - stopped < 10  # it stopped, it did not finish the grid first
    assert "stopped by SIGTERM" in one_line(err.decode())
    finished = list(store.iter_records(results))
    assert 1 <= len(finished) < 3 and _leftovers(results) == []
    for record in finished:
        assert (Path(record.directory) / store.STREAM).stat().st_size == record.bytes
    assert main(args) == 0
    assert len(list(store.iter_records(results))) == 3


def test_damaged_record_is_named_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "res"
    job = store.jobs_dir(results) / "x264-0123456789abcdef"
    job.mkdir(parents=True)
    (job / store.RECORD).write_text('{"status": "ok", "bpp": 0.5')  # cut short by hand
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("bounds:\n  - {method: x264, sequence: bunny, budget: smoke, min_psnr: 20}\n")
    assert main(["results", "--results", str(results)]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"record {job / store.RECORD} cannot be read" in err and "delete its job directory" in err
    # check lists the damaged record as a failed check with its reason, beside the others
    assert main(["check", "--results", str(results), "--thresholds", str(thresholds)]) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL record verifies  x264-0123456789abcdef" in out
        and f"record {job / store.RECORD} cannot be read" in out
    )


# --- mistakes in user input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("methods: x264\nbogus: 1\n", "unknown run option 'bogus'"),
        ("1: 2\n", "unknown run option '1'"),
        ("repeats: many\n", "config key 'repeats' must be int, got str"),
        ("seed: 1.5\n", "config key 'seed' must be int, got float"),
        ("force: 'yes'\n", "config key 'force' must be bool, got str"),
        ("slurm: {partitio: x}\n", "unknown slurm option 'partitio'"),
        ("slurm: {time_min: 4h}\n", "config key 'slurm.time_min' must be int, got str"),
        ("slurm: 5\n", "config key 'slurm' must be a mapping"),
        ("[1, 2]\n", "must hold a mapping of option: value"),
        ("bpp: [0.5, x]\n", "--bpp must be comma-separated numbers, got '0.5,x'"),
        ("bpp: -1\n", "--bpp values must be positive"),
        ("jobs: 0\n", "--repeats and --jobs must be at least 1"),
        ("executor: kube\n", "unknown executor 'kube'"),
        ("budget: tiny\n", "unknown budget 'tiny': choose one of"),
        ("methods: x246\n", "unknown method 'x246': did you mean"),
        ("methods: [x264\n", "is not valid YAML"),
    ],
)
def test_run_config_mistakes_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--dry-run", "--results", str(tmp_path / "res")]) == 2
    assert message in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bound:\n  - {method: x264}\n", "has unknown key 'bound' (did you mean 'bounds'?)"),
        ("bounds:\n  - {method: x264, sequence: [bunny], budget: smoke}\n", "bounds[0].sequence in"),
        (
            "claims:\n  - {better: a, worse: b, metric: [psnr], min_difference: 1, sequence: s, budget: smoke}\n",
            "must be a string",
        ),
        (
            "claims:\n  - {better: a, worse: b, metric: psnr, min_difference: .nan, sequence: s, budget: smoke}\n",
            "other than inf",
        ),
        ("bounds:\n  - {1: 2, method: x264, sequence: s, budget: smoke}\n", "has unknown key '1'"),
        ("7\n", "must be a mapping with 'bounds' and/or 'claims' lists"),
    ],
)
def test_threshold_mistakes_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    assert main(["check", "--results", str(tmp_path), "--thresholds", str(path)]) == 2
    assert message in one_line(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a manifest must be a mapping"),
        ("dataset: d\nlicence: l\nsequences: {name: x}\n", "key 'sequences' must be a list"),
        (
            "dataset: d\nlicence: l\nsequences: [{name: x, width: 2, height: 2, fps: 30000/0, frames: 1, "
            "pix_fmt: yuv420p, colour: bt601, sha256: null, source: {url: 'http://h/x.7z', member: x.yuv}}]\n",
            "key 'fps' must be a positive number",
        ),
        (
            "dataset: d\nlicence: l\nsequences: [{name: x, width: 2, height: 2, fps: 30, frames: 1, "
            "pix_fmt: yuv420p, colour: bt601, sha256: null, source: {url: 'ftp://h/x.7z', member: x.yuv}}]\n",
            "key 'url' must be an http(s) or file URL",
        ),
    ],
)
def test_manifest_mistakes_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    (tmp_path / "mine.yaml").write_text(text)
    monkeypatch.setenv("BENCH_MANIFESTS", str(tmp_path))
    with pytest.raises(DataError) as exc:
        load_manifests()
    assert message in one_line(str(exc.value))


def _png_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def carphone_rgb(carphone_paths: tuple[Path, Path]) -> np.ndarray:
    with av.open(str(carphone_paths[0])) as container:
        return np.stack(
            [f.to_ndarray(format="rgb24") for _, f in zip(range(2), container.decode(video=0), strict=False)]
        )


def test_sequence_shorter_than_the_budget_is_refused_before_any_job(
    tmp_path: Path, carphone_rgb: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _png_folder(tmp_path / "two", list(carphone_rgb))
    results = tmp_path / "res"
    assert (
        main(
            ["run", "--methods", "x264", "--seq", str(folder), "--budget", "smoke", "--results", str(results)]
        )
        == 2
    )
    err = one_line(capsys.readouterr().err)
    assert "budget 'smoke' asks for 4 frames" in err and "'two' has 2 frames" in err
    assert not results.exists()


def test_mixed_resolution_folder_is_refused_before_any_job(
    tmp_path: Path, carphone_rgb: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _png_folder(tmp_path / "mixed", [carphone_rgb[0], carphone_rgb[1][:72, :88]])
    results = tmp_path / "res"
    assert (
        main(
            ["run", "--methods", "x264", "--seq", str(folder), "--budget", "smoke", "--results", str(results)]
        )
        == 2
    )
    assert "all frames must share one size" in one_line(capsys.readouterr().err)
    assert not results.exists()


def test_frame_size_out_of_reach_is_a_skip_with_its_reason(
    tmp_path: Path, carphone_rgb: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    """101x71 (both sides prime) gives NeRV no upsampling strides; x264 needs even sizes. Both are skipped at
    plan, with their reason, and the run still succeeds (a skip is not a failure)."""
    folder = _png_folder(tmp_path / "odd", [f[:71, :101] for f in carphone_rgb])
    results = tmp_path / "res"
    args = ["run", "--methods", "nerv-dense,x264", "--seq", str(folder), "--budget", "paper", "--bpp", "0.5"]
    assert main([*args, "--results", str(results)]) == 0
    capsys.readouterr()
    skipped = _failures(results)
    assert {m: (r["status"], r["stage"]) for m, r in skipped.items()} == {
        "nerv-dense": ("skipped", "plan"),
        "x264": ("skipped", "plan"),
    }
    assert "frame size 101x71 is not reachable" in skipped["nerv-dense"]["reason"]
    assert "resize the clip" in skipped["nerv-dense"]["reason"]
    assert skipped["x264"]["reason"] == (
        "x264 needs even frame sizes for yuv420p, got 101x71; crop or resize the clip to even sizes"
    )


def _plan_nerv(width: int, height: int):
    from methods.nerv_dense import NeRVDense

    clip = Clip(SeqInfo("odd", width, height, 2, 25.0), np.zeros((2, height, width, 3), np.uint8))
    return NeRVDense().plan(clip, 0.5, get_budget("paper"))


def test_nerv_reaches_100x70_through_its_own_start_grid() -> None:
    config = _plan_nerv(100, 70)
    assert (config.start, config.strides) == ((7, 10), (5, 2))
