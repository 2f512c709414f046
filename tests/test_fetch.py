"""`bench fetch` for real: a 7z of real frames served over HTTP on 127.0.0.1, into a temporary cache."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import py7zr
import pytest
from tiny_sequence import FRAMES, HEIGHT, MEMBER, WIDTH, write_manifest

from bench.cli import main
from bench.data import load_sequence
from bench.data.catalog import list_sequences
from bench.data.fetch import fetch
from bench.errors import DataError


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class ShortHandler(QuietHandler):
    """Promises more bytes than it sends, as a dropped connection does."""

    def do_GET(self) -> None:
        body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 1000))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


@dataclass(frozen=True)
class Served:
    url: str  # a well-behaved server
    short_url: str  # one whose responses stop short of their Content-Length
    root: Path  # the folder both serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_yuv: bytes) -> Iterator[Served]:
    """Serves a folder holding Tiny.7z (the .yuv inside a sub-folder, plus a .txt, as UVG archives do)."""
    root = tmp_path_factory.mktemp("www")
    with py7zr.SevenZipFile(root / "Tiny.7z", "w") as archive:
        archive.writestr(tiny_yuv, f"Tiny/{MEMBER}")
        archive.writestr(b"a note beside the frames\n", "Tiny/readme.txt")
    servers = [
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
        for handler in (QuietHandler, ShortHandler)
    ]
    for httpd in servers:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield Served(*(f"http://127.0.0.1:{httpd.server_address[1]}" for httpd in servers), root)
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_fetch_downloads_checks_and_extracts(
    server: Served, env: tuple[Path, Path], tiny_yuv: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests, cache = env
    write_manifest(manifests, f"{server.url}/Tiny.7z", hashlib.sha256(tiny_yuv).hexdigest())
    assert list_sequences()[0]["status"] == "fetch needed"

    path = fetch("tiny")
    assert path == cache / "tiny" / MEMBER and path.read_bytes() == tiny_yuv
    assert files_under(cache) == [path]  # no archive, no temporary folder, no .txt left behind
    seq = load_sequence("Tiny")
    assert (seq.num_frames, seq.width, seq.height) == (FRAMES, WIDTH, HEIGHT)
    assert seq.checksum == hashlib.sha256(tiny_yuv).hexdigest()
    assert list_sequences()[0]["status"] == "local"

    capsys.readouterr()
    assert fetch("TINY") == path
    assert "already present" in capsys.readouterr().err


def test_fetch_through_the_cli_with_a_file_url(
    server: Served,
    env: tuple[Path, Path],
    tmp_path: Path,
    tiny_yuv: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifests, _ = env
    write_manifest(manifests, "https://example.invalid/Tiny.7z", None)  # never contacted
    cache = tmp_path / "elsewhere"
    url = (server.root / "Tiny.7z").as_uri()
    assert main(["fetch", "Tiny", "--url", url, "--cache-dir", str(cache)]) == 0
    printed = capsys.readouterr()
    assert str(cache / "tiny" / MEMBER) in printed.out
    assert f"sha256 {hashlib.sha256(tiny_yuv).hexdigest()}" in printed.err  # to be recorded in the manifest
    assert files_under(cache) == [cache / "tiny" / MEMBER]


def test_checksum_mismatch_discards_the_download(server: Served, env: tuple[Path, Path]) -> None:
    manifests, cache = env
    write_manifest(manifests, f"{server.url}/Tiny.7z", "0" * 64)
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    message = str(exc.value)
    assert "\n" not in message and "sha256" in message and "discarded" in message
    assert files_under(cache) == []


def test_server_404_is_one_clean_line(server: Served, env: tuple[Path, Path]) -> None:
    manifests, cache = env
    url = f"{server.url}/Missing.7z"
    write_manifest(manifests, url, None)
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    message = str(exc.value)
    assert "\n" not in message and url in message and "HTTP 404" in message
    assert "by hand" in message and str(cache / "tiny" / MEMBER) in message
    assert files_under(cache) == []


def test_unreachable_server_and_short_body(server: Served, env: tuple[Path, Path]) -> None:
    manifests, cache = env
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_manifest(manifests, f"http://127.0.0.1:{port}/Tiny.7z", None)
    with pytest.raises(DataError, match=f"cannot download http://127.0.0.1:{port}/Tiny.7z"):
        fetch("Tiny")
    assert files_under(cache) == []
    write_manifest(manifests, f"{server.short_url}/Tiny.7z", None)
    with pytest.raises(DataError) as exc:
        fetch("Tiny")
    assert "\n" not in str(exc.value) and "Tiny.7z" in str(exc.value)
    assert files_under(cache) == []


def test_not_an_archive_is_discarded(server: Served, env: tuple[Path, Path]) -> None:
    manifests, cache = env
    (server.root / "Broken.7z").write_bytes((server.root / "Tiny.7z").read_bytes()[:100])
    write_manifest(manifests, f"{server.url}/Broken.7z", None)
    with pytest.raises(DataError, match="not a readable 7z archive"):
        fetch("Tiny")
    assert files_under(cache) == []


def _dataset_manifest(folder: Path, dataset: str, urls: dict[str, str]) -> None:
    """One manifest file of `dataset` whose sequences download from `urls`; sequence N's archive holds
    N.yuv (the Tiny frames), as each UVG archive holds its own sequence."""
    import yaml

    entries = [
        {
            "name": name,
            "width": WIDTH,
            "height": HEIGHT,
            "fps": 30,
            "frames": FRAMES,
            "pix_fmt": "yuv420p",
            "colour": "bt601",
            "sha256": None,
            "source": {"url": url, "member": f"{name}.yuv"},
        }
        for name, url in urls.items()
    ]
    folder.mkdir(exist_ok=True)
    (folder / f"{dataset}.yaml").write_text(
        yaml.safe_dump({"dataset": dataset, "licence": "test", "sequences": entries})
    )


def _archives(server: Served, tiny_yuv: bytes, names: list[str]) -> dict[str, str]:
    """Serve one archive per name, N.7z holding N/N.yuv; returns their URLs."""
    for name in names:
        with py7zr.SevenZipFile(server.root / f"{name}.7z", "w") as archive:
            archive.writestr(tiny_yuv, f"{name}/{name}.yuv")
    return {name: f"{server.url}/{name}.7z" for name in names}


def test_fetch_of_a_dataset_fetches_every_sequence_of_it(
    server: Served, env: tuple[Path, Path], tiny_yuv: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests, cache = env
    names = ["Alpha", "Beta", "Gamma"]
    _dataset_manifest(manifests, "uvg", _archives(server, tiny_yuv, names))
    _dataset_manifest(manifests, "other", _archives(server, tiny_yuv, ["Delta"]))
    assert main(["fetch", "uvg"]) == 0
    out = capsys.readouterr().out
    for name in names:
        assert f"{name}: {cache / 'uvg' / f'{name}.yuv'}" in out
        assert (cache / "uvg" / f"{name}.yuv").read_bytes() == tiny_yuv
    assert not (cache / "other").exists()  # another dataset's sequence is not fetched
    from bench.grid import expand_sequences

    assert expand_sequences("uvg") == names  # what `bench run --seq uvg` runs


def test_one_failed_download_does_not_stop_the_dataset(
    server: Served, env: tuple[Path, Path], tiny_yuv: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests, cache = env
    urls = _archives(server, tiny_yuv, ["Alpha", "Gamma"])
    _dataset_manifest(manifests, "uvg", {"Alpha": urls["Alpha"], "Beta": f"{server.url}/Missing.7z", **urls})
    assert main(["fetch", "uvg"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("error: Beta: cannot download") and "HTTP 404" in line for line in err)
    assert err[-1] == (
        "error: 1 of 3 sequences could not be fetched (Beta; reasons above); "
        "run the same command again to fetch only those"
    )
    assert sorted(p.name for p in files_under(cache)) == ["Alpha.yuv", "Gamma.yuv"]
    capsys.readouterr()
    _dataset_manifest(manifests, "uvg", {**urls, "Beta": urls["Alpha"].replace("Alpha", "Beta")})
    _archives(server, tiny_yuv, ["Beta"])
    assert main(["fetch", "uvg"]) == 0  # the rerun fetches the missing one; the others are kept
    assert "Alpha is already present" in capsys.readouterr().err
    assert sorted(p.name for p in files_under(cache)) == ["Alpha.yuv", "Beta.yuv", "Gamma.yuv"]


def test_uvg_names_the_seven_sequences_of_the_manifest() -> None:
    from bench.data.manifests import expand_datasets

    seven = ["Beauty", "Bosphorus", "HoneyBee", "Jockey", "ReadySteadyGo", "ShakeNDry", "YachtRide"]
    assert expand_datasets(["uvg"]) == seven
    assert expand_datasets(["UVG", "bunny"]) == [*seven, "bunny"]


def test_url_with_a_dataset_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "uvg", "--url", "file:///nowhere/x.7z"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "--url names one archive, but 7 sequences were asked" in line
