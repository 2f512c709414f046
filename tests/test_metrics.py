"""Metric oracles: closed-form PSNR, FLIP's known values, ffmpeg's psnr filter, MS-SSIM policy, LPIPS math."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import lpips_alex, metrics
from bench.errors import MetricError

CARPHONE_RGB_MEAN_PSNR = 23.0714  # mean of per-frame RGB PSNRs, distorted vs pristine (REFERENCES.md)
FFMPEG_CARPHONE_Y_PSNR = 24.792713  # `ffmpeg -lavfi psnr` summary, y component (REFERENCES.md)
# `ffmpeg -i distorted -i pristine -lavfi psnr`: whole-clip mean-MSE PSNR of each plane, and of all samples
FFMPEG_CARPHONE_YUV = {"y": 24.792713, "u": 36.659514, "v": 36.020387, "average": 26.403764}


def _decode(path: Path, fmt: str) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format=fmt) for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def carphone_rgb(carphone_paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    pristine, distorted = carphone_paths
    return np.stack(_decode(pristine, "rgb24")), np.stack(_decode(distorted, "rgb24"))


# ---------------------------------------------------------------- PSNR


def test_psnr_constant_offset_is_closed_form() -> None:
    ref = np.full((2, 16, 24, 3), 255, np.uint8)
    assert metrics.psnr(ref, ref - 1) == pytest.approx([20 * np.log10(255)] * 2, abs=1e-12)


def test_psnr_single_pixel_error_is_exact() -> None:
    ref = np.zeros((10, 20, 3), np.uint8)
    test = ref.copy()
    test[3, 4, 1] = 10  # squared error 100 over 600 values
    expected = 10 * np.log10(255**2 * 600 / 100)
    assert metrics.psnr(ref, test) == pytest.approx([expected], abs=1e-12)


def test_identical_frames_are_infinite_and_capped_in_the_mean() -> None:
    ref = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    test = ref.copy()
    test[1] = 255 - ref[1]
    raw = metrics.psnr(ref, test)
    assert np.isinf(raw[0]) and np.isinf(raw[2]) and np.isfinite(raw[1])
    scores = metrics.score(ref, test, metrics=["psnr"])
    assert scores.per_frame["psnr"][0] == metrics.PSNR_CAP_DB
    assert scores.mean["psnr"] == pytest.approx((2 * metrics.PSNR_CAP_DB + raw[1]) / 3)
    assert "2 frame(s) above 100 dB (2 identical)" in scores.notes["psnr"]
    json.dumps(scores.to_dict(), allow_nan=False)  # strict JSON: no inf


def test_carphone_rgb_psnr_is_the_mean_of_frames(carphone_rgb: tuple[np.ndarray, np.ndarray]) -> None:
    pristine, distorted = carphone_rgb
    per_frame = metrics.psnr(pristine, distorted)
    assert len(per_frame) == 120
    assert metrics.mean_psnr(per_frame) == pytest.approx(CARPHONE_RGB_MEAN_PSNR, abs=5e-5)


def _ffmpeg_psnr_y(distorted: Path, pristine: Path) -> float:
    """ffmpeg's own psnr filter (through PyAV's filter graph): PSNR of the mean Y MSE over all frames."""
    import av
    import av.filter

    mse_y = []
    with av.open(str(distorted)) as cd, av.open(str(pristine)) as cp:
        graph = av.filter.Graph()
        main = graph.add_buffer(template=cd.streams.video[0])
        ref = graph.add_buffer(template=cp.streams.video[0])
        psnr = graph.add("psnr")
        sink = graph.add("buffersink")
        main.link_to(psnr, 0, 0)
        ref.link_to(psnr, 0, 1)
        psnr.link_to(sink)
        graph.configure()

        def drain() -> None:
            while True:
                try:
                    mse_y.append(float(sink.pull().metadata["lavfi.psnr.mse.y"]))
                except (av.error.BlockingIOError, av.error.EOFError):
                    return

        for fd, fp in zip(cd.decode(video=0), cp.decode(video=0), strict=True):
            main.push(fd)
            ref.push(fp)
            drain()
        main.push(None)
        ref.push(None)
        drain()
    assert len(mse_y) == 120
    return float(10 * np.log10(255**2 / np.mean(mse_y)))


def test_y_plane_psnr_matches_ffmpeg_psnr_filter(carphone_paths: tuple[Path, Path]) -> None:
    pristine, distorted = carphone_paths
    h = 144
    y_ref = np.stack([f[:h] for f in _decode(pristine, "yuv420p")])
    y_test = np.stack([f[:h] for f in _decode(distorted, "yuv420p")])

    def as_rgb(y: np.ndarray) -> np.ndarray:  # Y in all three channels: the per-frame MSE is then Y's own
        return np.repeat(y[..., None], 3, axis=-1)

    clip_psnr = float(10 * np.log10(1 / metrics.mse(as_rgb(y_ref), as_rgb(y_test)).mean()))
    assert clip_psnr == pytest.approx(_ffmpeg_psnr_y(distorted, pristine), abs=1e-6)
    assert clip_psnr == pytest.approx(FFMPEG_CARPHONE_Y_PSNR, abs=5e-7)


@pytest.fixture(scope="module")
def carphone_yuv(carphone_paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    pristine, distorted = carphone_paths
    return np.stack(_decode(pristine, "yuv420p")), np.stack(_decode(distorted, "yuv420p"))


def test_yuv_plane_psnr_matches_ffmpeg_psnr_filter(carphone_yuv: tuple[np.ndarray, np.ndarray]) -> None:
    pristine, distorted = carphone_yuv
    out = metrics.yuv_plane_psnr(pristine, distorted)
    for plane in "yuv":
        assert out[f"psnr-{plane}"][1] == pytest.approx(FFMPEG_CARPHONE_YUV[plane], abs=1e-4)
    y, u, v = metrics.yuv_plane_mse(pristine, distorted).mean(axis=0)  # ffmpeg's average: all samples, 4:1:1
    assert 10 * np.log10(255**2 * 6 / (4 * y + u + v)) == pytest.approx(
        FFMPEG_CARPHONE_YUV["average"], abs=1e-4
    )
    expected = (6 * FFMPEG_CARPHONE_YUV["y"] + FFMPEG_CARPHONE_YUV["u"] + FFMPEG_CARPHONE_YUV["v"]) / 8
    assert out["psnr-yuv"][1] == pytest.approx(expected, abs=1e-4)
    per_frame_y = out["psnr-y"][0]
    assert len(per_frame_y) == 120 and float(np.mean(per_frame_y)) == pytest.approx(24.8030, abs=5e-5)


def test_sequence_psnr_beside_the_mean_of_frames(carphone_rgb: tuple[np.ndarray, np.ndarray]) -> None:
    scores = metrics.score(*carphone_rgb, metrics=["psnr", "psnr-seq"])
    assert scores.mean["psnr"] == pytest.approx(CARPHONE_RGB_MEAN_PSNR, abs=5e-5)
    assert scores.mean["psnr-seq"] == pytest.approx(23.0631, abs=5e-5)  # REFERENCES.md: whole-clip RGB PSNR
    assert scores.per_frame["psnr-seq"] == pytest.approx(scores.per_frame["psnr"], abs=1e-12)


def test_yuv_scores_of_rgb_clips_use_the_codecs_conversion(
    carphone_rgb: tuple[np.ndarray, np.ndarray],
) -> None:
    from bench.data.colour import rgb_to_yuv420p

    pristine, distorted = (x[:4] for x in carphone_rgb)
    scores = metrics.score(pristine, distorted, metrics=[*metrics.YUV_PSNR_NAMES])
    direct = metrics.yuv_plane_psnr(rgb_to_yuv420p(pristine), rgb_to_yuv420p(distorted))
    for name in metrics.YUV_PSNR_NAMES:
        assert scores.mean[name] == direct[name][1] and scores.per_frame[name] == direct[name][0].tolist()
    same = metrics.score(pristine, pristine, metrics=["psnr-y", "psnr-yuv"])
    assert same.mean == {"psnr-y": metrics.PSNR_CAP_DB, "psnr-yuv": metrics.PSNR_CAP_DB}
    odd = metrics.score(pristine[:, :, :175], distorted[:, :, :175], metrics=["psnr-u", "vmaf"])
    assert not odd.mean and all(
        odd.notes[n].startswith("unavailable: yuv420p needs even") for n in ("psnr-u", "vmaf")
    )


def test_vmaf_identical_near_100_and_distorted_far_below(carphone_rgb: tuple[np.ndarray, np.ndarray]) -> None:
    pristine, distorted = (x[:24] for x in carphone_rgb)
    same = metrics.score(pristine, pristine, metrics=["vmaf", "xpsnr"])
    worse = metrics.score(pristine, distorted, metrics=["vmaf", "xpsnr"])
    assert same.mean["vmaf"] > 99.0 and min(same.per_frame["vmaf"]) > 97.0
    assert worse.mean["vmaf"] < 50.0 and max(worse.per_frame["vmaf"]) < 60.0
    assert same.mean["xpsnr"] == metrics.PSNR_CAP_DB and 10.0 < worse.mean["xpsnr"] < 30.0
    assert worse.mean["vmaf"] == pytest.approx(np.mean(worse.per_frame["vmaf"]), abs=1e-9)
    assert "model vmaf_v0.6.1" in worse.notes["vmaf"] and worse.notes["vmaf"].startswith("libvmaf ")
    assert "xpsnr filter, luma" in worse.notes["xpsnr"] and len(worse.per_frame["xpsnr"]) == 24


def test_vmaf_without_the_binary_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bench import tools

    monkeypatch.setenv(tools.ENV_FFMPEG, str(tmp_path / "missing"))
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    scores = metrics.score(frames, frames, metrics=["psnr", "vmaf", "xpsnr"])
    assert set(scores.mean) == {"psnr"}
    assert "libvmaf" in scores.notes["vmaf"] and tools.ENV_FFMPEG in scores.notes["vmaf"]
    assert scores.notes["xpsnr"].startswith("unavailable: needs the ffmpeg filter 'xpsnr'")


# ---------------------------------------------------------------- MS-SSIM


@pytest.mark.parametrize(
    ("height", "width", "window"),
    [(1080, 1920, 11), (161, 300, 11), (160, 300, 9), (72, 128, 5), (33, 40, 3)],
)
def test_ms_ssim_window_policy(height: int, width: int, window: int) -> None:
    assert metrics.ms_ssim_window(height, width) == window
    assert (window - 1) * 16 < min(height, width)  # what pytorch-msssim requires


def test_ms_ssim_identical_is_one_and_states_its_window(carphone_rgb: tuple[np.ndarray, np.ndarray]) -> None:
    frames = carphone_rgb[0][:3]
    values, window = metrics.ms_ssim(frames, frames)
    assert window == 9  # 176x144: shorter side below 161
    assert values == pytest.approx([1.0] * 3, abs=1e-6)
    notes = metrics.score(frames, frames, metrics=["ms-ssim"]).notes["ms-ssim"]
    assert notes.startswith("window 9")


def test_ms_ssim_batches_equal_single_frames(
    carphone_rgb: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytorch_msssim import ms_ssim

    pristine, distorted = (x[:5] for x in carphone_rgb)
    monkeypatch.setattr(metrics, "_CHUNK_PIXELS", 2 * 144 * 176)  # chunks of 2, 2, 1 frames
    batched, window = metrics.ms_ssim(pristine, distorted)

    def nchw(frame: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frame).permute(2, 0, 1)[None].double() / 255

    single = [
        float(ms_ssim(nchw(p), nchw(d), data_range=1.0, win_size=window))
        for p, d in zip(pristine, distorted, strict=True)
    ]
    assert batched == pytest.approx(single, abs=1e-5)
    assert 0.5 < batched.min() < batched.max() < 1.0


def test_ms_ssim_too_small_is_recorded_unavailable() -> None:
    frames = np.zeros((1, 32, 48, 3), np.uint8)
    with pytest.raises(MetricError, match="shorter side over 32 px"):
        metrics.ms_ssim(frames, frames)
    scores = metrics.score(frames, frames)
    assert "ms-ssim" not in scores.mean and scores.notes["ms-ssim"].startswith("unavailable: MS-SSIM needs")


# ---------------------------------------------------------------- FLIP


def test_flip_identical_is_zero(carphone_rgb: tuple[np.ndarray, np.ndarray]) -> None:
    frames = carphone_rgb[0][:2]
    assert metrics.flip(frames, frames).tolist() == [0.0, 0.0]


def test_flip_black_vs_white() -> None:
    """Every pixel's error is 0.96738833; the library's own mean, 0.967345, is a float32 running sum's drift."""
    import flip_evaluator

    black = np.zeros((64, 64, 3), np.uint8)
    white = np.full((64, 64, 3), 255, np.uint8)
    ours = metrics.flip(black, white)[0]
    assert round(ours, 6) == 0.967388
    library_mean = flip_evaluator.evaluate(black / 255.0, white / 255.0, "LDR", applyMagma=False)[1]
    assert round(library_mean, 6) == 0.967345
    heat, mean = metrics.flip_map(black, white)
    assert mean == ours and heat.dtype == np.uint8 and heat.shape == (64, 64, 3)


def test_flip_subset_and_map(carphone_rgb: tuple[np.ndarray, np.ndarray]) -> None:
    pristine, distorted = (x[:6] for x in carphone_rgb)
    full = metrics.flip(pristine, distorted)
    assert 0.05 < full.min() and full.max() < 0.5
    scores = metrics.score(pristine, distorted, metrics=["flip"], sampled_frames=[1, 4])
    assert scores.per_frame["flip"] == pytest.approx(full[[1, 4]].tolist(), abs=0)
    assert scores.frame_subsets["flip"] == [1, 4] and "2 of 6 frames" in scores.notes["flip"]
    heat, mean = metrics.flip_map(pristine[2], distorted[2])
    assert mean == full[2] and heat.shape == (144, 176, 3) and heat.dtype == np.uint8
    same, zero = metrics.flip_map(pristine[2], pristine[2])
    assert zero == 0.0 and (same == [0, 0, 4]).all()  # magma's darkest colour
    with pytest.raises(MetricError, match="frame subset"):
        metrics.flip(pristine, distorted, frames=[6])


def test_stlpips_scores_the_same_subset(carphone_rgb: tuple[np.ndarray, np.ndarray]) -> None:
    if metrics.stlpips_available() is not None:
        pytest.skip(metrics.stlpips_available())
    pristine, distorted = (x[:4] for x in carphone_rgb)
    full = metrics.stlpips(pristine, distorted)
    scores = metrics.score(pristine, distorted, metrics=["stlpips"], sampled_frames=[0, 3])
    assert scores.per_frame["stlpips"] == pytest.approx(full[[0, 3]].tolist(), abs=1e-6)
    assert scores.frame_subsets["stlpips"] == [0, 3] and "2 of 4 frames" in scores.notes["stlpips"]


# ---------------------------------------------------------------- validation and score()


@pytest.mark.parametrize(
    ("ref", "test", "match"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((3, 8, 8), np.uint8), np.zeros((3, 8, 8), np.uint8), r"RGB last"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8), r"RGB last"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), "8x8.*9x8"),
        (np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3, 8, 8, 3), np.uint8), "2 frame.*3 frame"),
        ([[0]], np.zeros((8, 8, 3), np.uint8), "numpy array"),
    ],
)
def test_bad_inputs_raise_one_line(ref: np.ndarray, test: np.ndarray, match: str) -> None:
    for fn in (metrics.psnr, metrics.flip, metrics.score):
        with pytest.raises(MetricError, match=match) as info:
            fn(ref, test)
        assert "\n" not in str(info.value)


def test_unknown_metric_suggests_a_name() -> None:
    frames = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(MetricError, match="did you mean 'ms-ssim'"):
        metrics.score(frames, frames, metrics=["psnr", "msssim"])


def test_score_record_is_json_ready(carphone_rgb: tuple[np.ndarray, np.ndarray]) -> None:
    pristine, distorted = (x[:3] for x in carphone_rgb)
    record = metrics.score(pristine, distorted, metrics="psnr,ms_ssim,flip").to_dict()
    assert set(record["mean"]) == {"psnr", "ms-ssim", "flip"}
    full = metrics.score(pristine, distorted).to_dict()
    assert set(full["mean"]) == set(metrics.DEFAULT_METRICS) and set(full["per_frame"]) == set(full["mean"])
    json.dumps(full, allow_nan=False)
    assert all(len(v) == 3 for v in record["per_frame"].values())
    assert record["mean"]["psnr"] == pytest.approx(np.mean(record["per_frame"]["psnr"]))
    assert record["metrics_version"] == metrics.METRICS_VERSION
    json.dumps(record, allow_nan=False)


# ---------------------------------------------------------------- LPIPS


@pytest.fixture
def no_lpips_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(lpips_alex.ENV_ALEXNET, raising=False)
    monkeypatch.delenv(lpips_alex.ENV_LIN, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache


def test_lpips_without_weights_is_unavailable(no_lpips_weights: None) -> None:
    reason = metrics.lpips_available()
    assert reason is not None and lpips_alex.ENV_ALEXNET in reason and lpips_alex.ENV_LIN in reason
    frames = np.zeros((1, 40, 40, 3), np.uint8)
    scores = metrics.score(frames, frames, metrics=["psnr", "lpips"])
    assert "lpips" not in scores.mean and "lpips" not in scores.per_frame
    assert scores.notes["lpips"] == f"unavailable: {reason}"
    with pytest.raises(MetricError, match="LPIPS unavailable"):
        metrics.lpips(frames, frames)


def _random_weights(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Weight files in the published layouts (torch hub AlexNet, lpips v0.1 lin), randomly initialised."""
    gen = torch.Generator().manual_seed(seed)
    net = lpips_alex.LPIPSAlex()
    backbone = {}
    for (index, *_), conv in zip(lpips_alex._CONVS, net.convs, strict=True):
        backbone[f"features.{index}.weight"] = torch.randn(conv.weight.shape, generator=gen) * 0.05
        backbone[f"features.{index}.bias"] = torch.randn(conv.bias.shape, generator=gen) * 0.05
    backbone["classifier.1.weight"] = torch.zeros(4, 9216)  # present in the real file, unused by LPIPS
    lin = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen)
        for i, c in enumerate(lpips_alex.CHANNELS)
    }
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / lpips_alex.ALEXNET_FILE, directory / "alex.pth"
    torch.save(backbone, paths[0])
    torch.save(lin, paths[1])
    return paths


def test_lpips_network_with_random_weights(
    no_lpips_weights: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    carphone_rgb: tuple[np.ndarray, np.ndarray],
) -> None:
    backbone, lin = _random_weights(tmp_path / "w")
    monkeypatch.setenv(lpips_alex.ENV_ALEXNET, str(backbone))
    monkeypatch.setenv(lpips_alex.ENV_LIN, str(lin))
    assert metrics.lpips_available() is None
    net = lpips_alex.load_network(backbone, lin, "cpu")
    assert torch.equal(net.convs[2].weight, torch.load(backbone, weights_only=True)["features.6.weight"])
    assert torch.equal(net.lins[4], torch.load(lin, weights_only=True)["lin4.model.1.weight"])

    pristine, distorted = (x[:3] for x in carphone_rgb)
    assert metrics.lpips(pristine, pristine).tolist() == [0.0, 0.0, 0.0]
    forward = metrics.lpips(pristine, distorted)
    assert (forward > 0).all()
    assert metrics.lpips(distorted, pristine) == pytest.approx(forward, rel=1e-5)  # symmetric by construction
    # unit-normalised non-negative features differ by at most 2 in squared norm, per layer
    assert (forward <= 2 * sum(float(w.sum()) for w in torch.load(lin, weights_only=True).values())).all()
    scores = metrics.score(pristine, distorted, metrics=["lpips"])
    assert (
        scores.per_frame["lpips"] == pytest.approx(forward.tolist())
        and scores.notes["lpips"] == "AlexNet, v0.1"
    )


def test_lpips_hub_cache_and_bad_files(
    no_lpips_weights: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    backbone, lin = _random_weights(hub)
    monkeypatch.setenv(lpips_alex.ENV_LIN, str(lin))
    assert metrics.lpips_available() is None  # the backbone found in torch's hub cache
    assert lpips_alex.weight_files() == (backbone, lin)

    torch.save({"lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, tmp_path / "bad.pth")
    monkeypatch.setenv(lpips_alex.ENV_LIN, str(tmp_path / "bad.pth"))
    frames = np.zeros((1, 40, 40, 3), np.uint8)
    note = metrics.score(frames, frames, metrics=["lpips"]).notes["lpips"]
    assert note.startswith("unavailable:") and "lin0.model.1.weight should be (1, 64, 1, 1)" in note

    (tmp_path / "junk.pth").write_text("not a checkpoint")
    monkeypatch.setenv(lpips_alex.ENV_LIN, str(tmp_path / "junk.pth"))
    with pytest.raises(MetricError, match="cannot read LPIPS weights"):
        metrics.lpips(frames, frames)


def test_unusable_device_is_a_one_line_error() -> None:
    frames = np.zeros((1, 40, 40, 3), np.uint8)
    for device in ("gpu", "mps"):
        with pytest.raises(MetricError, match=f"device '{device}' is not usable here") as info:
            metrics.score(frames, frames, metrics=["ms-ssim"], device=device)
        assert "\n" not in str(info.value) and len(str(info.value)) < 200
