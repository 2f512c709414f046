"""Every metric the suite reports, computed in one place on uint8 RGB frames.

Inputs are uint8 RGB, either a clip (T, H, W, 3) or one frame (H, W, 3); reference and test must match in
shape. Values are per frame; a clip's figure is the mean of its frames (as NeRV reports PSNR).

- PSNR: RGB scaled to [0, 1], exact integer squared error. Identical frames give +inf; the per-frame
  values stored in `Scores` and their mean count any frame above `PSNR_CAP_DB` (100 dB) as 100 dB, so a
  lossless frame cannot turn a mean into inf. A distinct 8-bit frame only exceeds 100 dB when no more
  than about 40 code values differ by one in a whole 1080p frame, so the cap changes no lossy result.
- MS-SSIM: pytorch-msssim, data_range 1, channels_last, Gaussian sigma 1.5. Its five scales need the
  shorter side > (win - 1) * 16: window 11 from 161 px, otherwise the largest odd window that fits,
  down to 3 (33 px). Smaller frames have no MS-SSIM: `ms_ssim` raises, `score` records why.
  The window used is always stated in the notes.
- FLIP: LDR-FLIP of flip-evaluator at its default 67.02 ppd on float32 sRGB in [0, 1]. The mean is taken
  in float64 over the error map. The library's own mean is a float32 running sum that drifts (black vs
  white 64x64, every pixel 0.967388: it reports 0.967345; up to 2e-5 on 1080p frames), enough to change
  the 4th decimal of published figures.
- LPIPS (AlexNet, v0.1): see `bench.lpips_alex`; reported as unavailable, with the reason, when its
  weight files are absent.
- ST-LPIPS (`stlpips`; shift-tolerant LPIPS, AlexNet, vST0.0): see `bench.stlpips_alex`; its weights come
  with the stlpips-pytorch wheel the install adds; without it, reported as unavailable with the command.
- Sequence PSNR (`psnr-seq`): PSNR of the clip's mean RGB MSE, beside the mean of per-frame PSNRs.
- YUV 4:2:0 PSNR (`psnr-y`, `psnr-u`, `psnr-v`, and `psnr-yuv` = (6 Y + U + V) / 8, as the MPEG test
  conditions weight them): on the planes ffmpeg's scaler makes of the RGB frames (BT.601, limited range,
  the conversion a codec's input gets). The clip figure of each plane is the PSNR of its mean MSE, as
  ffmpeg's psnr filter reports it; the per-frame values are each frame's own.
- VMAF (`vmaf`, model vmaf_v0.6.1 built into libvmaf) and XPSNR (`xpsnr`, luma; chroma in its note) by
  the libvmaf and xpsnr filters of the suite's ffmpeg binary (`bench.tools`), in one run on the same
  planes. VMAF's clip figure is the mean of its frames; XPSNR's is the filter's own clip figure. Without
  the binary or the filter they are recorded as unavailable, with the reason (`bench.ffmpeg_metrics`).

For these clip-level metrics `Scores.mean` holds the clip figure, which is not the mean of `per_frame`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from bench.errors import MetricError
from bench.ffmpeg_metrics import FFMPEG_METRICS, ffmpeg_scores, missing_filter
from bench.frame_pairs import check_pair
from bench.lpips_alex import lpips_available
from bench.lpips_head import LPIPSHead
from bench.stlpips_alex import MODEL as STLPIPS_MODEL
from bench.stlpips_alex import stlpips_available

__all__ = [
    "METRICS_VERSION",
    "METRIC_NAMES",
    "Scores",
    "flip",
    "flip_map",
    "lpips",
    "lpips_available",
    "mean_psnr",
    "ms_ssim",
    "ms_ssim_window",
    "mse",
    "psnr",
    "score",
    "stlpips",
    "stlpips_available",
    "yuv_plane_psnr",
]

METRICS_VERSION = "3"  # 3: ST-LPIPS joined the default set
YUV_PSNR_NAMES = ("psnr-y", "psnr-u", "psnr-v", "psnr-yuv")
METRIC_NAMES = ("psnr", "psnr-seq", *YUV_PSNR_NAMES, "ms-ssim", "flip", "lpips", "stlpips", *FFMPEG_METRICS)
# LPIPS needs weights the install cannot bring (torchvision's AlexNet): asked for by name, or by bench
# score when present. ST-LPIPS's weights come with the install, so every run records it.
# the per-frame image metrics that cost ~1-7 s a 1080p frame on a CPU: long clips score them on a subset
SAMPLED_METRICS = ("flip", "lpips", "stlpips")
DEFAULT_METRICS = ("psnr", "psnr-seq", *YUV_PSNR_NAMES, "ms-ssim", "flip", "stlpips", *FFMPEG_METRICS)
YUV_WEIGHTS = (6, 1, 1)  # Y, U, V: the MPEG / JVET weighting of PSNR-YUV
PSNR_CAP_DB = 100.0
MS_SSIM_WIN = 11
MS_SSIM_MIN_WIN = 3
_MS_SSIM_DOWNSAMPLES = 4
_CHUNK_PIXELS = 1 << 22  # frames per torch batch: about two 1080p frames
_STLPIPS_CHUNK_SHARE = 4  # ST-LPIPS keeps 64 channels at half resolution per frame: smaller batches


def mse(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-frame mean squared error on RGB in [0, 1] (exact: integer squared error, then one division)."""
    ref, test = check_pair(ref, test)
    count = ref.shape[1] * ref.shape[2] * 3
    sse = np.empty(len(ref), dtype=np.float64)
    for t in range(len(ref)):
        diff = ref[t].astype(np.int32) - test[t].astype(np.int32)
        sse[t] = float(np.einsum("ijk,ijk->", diff, diff, dtype=np.int64))
    return sse / (count * 255.0**2)


def psnr(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB on RGB in [0, 1]; +inf for identical frames."""
    err = mse(ref, test)
    with np.errstate(divide="ignore"):
        return -10.0 * np.log10(err)


def mean_psnr(values: np.ndarray) -> float:
    """Mean of per-frame PSNRs, each capped at PSNR_CAP_DB so identical frames count as 100 dB."""
    return float(np.mean(np.minimum(values, PSNR_CAP_DB)))


def _torch_device(device: str):  # -> torch.device
    import torch

    try:
        dev = torch.device(device)
        torch.zeros(1, device=dev)
    except (RuntimeError, AssertionError) as exc:
        reason = str(exc).splitlines()[0].split(". ")[0][:120]
        raise MetricError(f"device {device!r} is not usable here ({reason}); try cpu") from None
    return dev


def _batches(ref: np.ndarray, test: np.ndarray, device: str, low: float, high: float, share: int = 1):
    """Chunks of both clips (`_CHUNK_PIXELS / share` pixels at most, or one frame) as channels_last float32
    tensors scaled from [0, 255] to [low, high]."""
    import torch

    dev = _torch_device(device)
    step = max(1, _CHUNK_PIXELS // share // (ref.shape[1] * ref.shape[2]))
    for start in range(0, len(ref), step):
        pair = []
        for clip in (ref, test):
            x = torch.from_numpy(clip[start : start + step].copy()).to(dev)  # a copy: inputs may be read-only
            x = x.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
            pair.append(x * ((high - low) / 255.0) + low)
        yield pair[0], pair[1]


def ms_ssim_window(height: int, width: int) -> int:
    """The Gaussian window MS-SSIM uses at this size: 11, or the largest odd one its 4 downsamplings allow."""
    shorter = min(height, width)
    win = min(MS_SSIM_WIN, (shorter - 1) // 2**_MS_SSIM_DOWNSAMPLES + 1)
    win -= 1 - win % 2
    if win < MS_SSIM_MIN_WIN:
        raise MetricError(
            f"MS-SSIM needs the shorter side over {(MS_SSIM_MIN_WIN - 1) * 2**_MS_SSIM_DOWNSAMPLES} px "
            f"(window {MS_SSIM_MIN_WIN}, 5 scales), got {width}x{height}; use larger frames or other metrics"
        )
    return win


def ms_ssim(ref: np.ndarray, test: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, int]:
    """Per-frame MS-SSIM (data_range 1) and the window size used."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ref, test = check_pair(ref, test)
    win = ms_ssim_window(ref.shape[1], ref.shape[2])
    values = []
    with torch.inference_mode():
        for x, y in _batches(ref, test, device, 0.0, 1.0):
            values.append(_ms_ssim(x, y, data_range=1.0, size_average=False, win_size=win).double().cpu())
    return torch.cat(values).numpy(), win


def _flip_input(frame: np.ndarray) -> np.ndarray:
    """A uint8 HxWx3 frame as the float32 HxWx3 sRGB [0, 1] array LDR-FLIP needs, checked before use.

    The library reads whatever it is given without complaint (uint8 unscaled, CHW as HWC, values above 1),
    so the guard is here.
    """
    image = np.ascontiguousarray(frame, dtype=np.float32) / np.float32(255.0)
    if image.dtype != np.float32 or image.ndim != 3 or image.shape[2] != 3:
        raise MetricError(f"FLIP input must be float32 HxWx3, got {image.dtype} {image.shape}")
    if not (np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0):
        raise MetricError("FLIP input must lie in [0, 1]")
    return image


def _flip_error(ref_frame: np.ndarray, test_frame: np.ndarray) -> np.ndarray:
    """The LDR-FLIP error map (HxW float32 in [0, 1]) of one frame pair."""
    import flip_evaluator

    try:
        error, _, _ = flip_evaluator.evaluate(
            _flip_input(ref_frame), _flip_input(test_frame), "LDR", applyMagma=False, computeMeanError=False
        )
    except SystemExit as exc:  # the library exits on arguments it rejects
        raise MetricError(f"FLIP rejected its inputs (exit {exc.code})") from None
    return error[..., 0]


def _flip_mean(error: np.ndarray) -> float:
    return float(np.mean(error, dtype=np.float64))


def flip(ref: np.ndarray, test: np.ndarray, frames: Sequence[int] | None = None) -> np.ndarray:
    """Per-frame mean LDR-FLIP (0 = identical, lower is better), on `frames` (indices) or on every frame."""
    ref, test = check_pair(ref, test)
    indices = _frame_indices(frames, len(ref))
    return np.array([_flip_mean(_flip_error(ref[t], test[t])) for t in indices], dtype=np.float64)


def flip_map(ref_frame: np.ndarray, test_frame: np.ndarray) -> tuple[np.ndarray, float]:
    """The magma-coloured FLIP map of one frame (uint8 HxWx3) and its mean.

    The colours are the FLIP tool's own: its error quantised to 256 levels through matplotlib's magma table.
    """
    from matplotlib import colormaps

    ref, test = check_pair(ref_frame, test_frame)
    if len(ref) != 1:
        raise MetricError(f"flip_map takes one frame each, got {len(ref)}; pass ref[i], test[i]")
    error = _flip_error(ref[0], test[0])
    levels = np.round(np.clip(error, 0.0, 1.0) * 255.0).astype(np.uint8)
    colours = colormaps["magma"](levels)[..., :3]
    return np.round(colours * 255.0).astype(np.uint8), _flip_mean(error)


def _frame_indices(frames: Sequence[int] | None, count: int) -> list[int]:
    if frames is None:
        return list(range(count))
    indices = [int(i) for i in frames]
    bad = [i for i in indices if not 0 <= i < count]
    if bad or not indices or len(set(indices)) != len(indices):
        raise MetricError(f"frame subset must be distinct indices in [0, {count}), got {list(frames)[:8]}")
    return indices


def lpips(ref: np.ndarray, test: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Per-frame LPIPS (AlexNet, v0.1; lower is better). MetricError with the reason when weights are absent."""
    from bench.lpips_alex import load_network, weight_files

    ref, test = check_pair(ref, test)
    found = weight_files()
    if isinstance(found, str):
        raise MetricError(f"LPIPS unavailable: {found}")
    return _distances(load_network(*found, str(_torch_device(device))), ref, test, device)


def stlpips(ref: np.ndarray, test: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Per-frame ST-LPIPS (AlexNet, vST0.0 shift-tolerant; lower is better). MetricError with the reason
    (and the install command) when its weights are absent."""
    from bench.stlpips_alex import load_network, weight_file

    ref, test = check_pair(ref, test)
    found = weight_file()
    if isinstance(found, str):
        raise MetricError(f"ST-LPIPS unavailable: {found}")
    net = load_network(found, str(_torch_device(device)))
    return _distances(net, ref, test, device, share=_STLPIPS_CHUNK_SHARE)


def _distances(net: LPIPSHead, ref: np.ndarray, test: np.ndarray, device: str, share: int = 1) -> np.ndarray:
    """One value per frame pair from an LPIPS-family network, fed [-1, 1] batches."""
    import torch

    values = []
    with torch.inference_mode():
        for x, y in _batches(ref, test, device, -1.0, 1.0, share):
            values.append(net(x, y).double().cpu())
    return torch.cat(values).numpy()


@dataclass
class Scores:
    """Per-frame values and means of one decode; `notes` say how each metric was computed or why it is absent."""

    per_frame: dict[str, list[float]] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    frame_subsets: dict[str, list[int]] = field(default_factory=dict)  # metrics scored on some frames only
    metrics_version: str = METRICS_VERSION

    def to_dict(self) -> dict:
        """Plain JSON-ready data (all values finite)."""
        return asdict(self)


def _metric_names(metrics: Sequence[str] | str) -> list[str]:
    """Canonical metric names from a list or a comma-separated string; "all" means every metric."""
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    if [n.strip().lower() for n in names] == ["all"]:
        return list(METRIC_NAMES)
    out = []
    for raw in names:
        name = raw.strip().lower().replace("_", "-")
        if name not in METRIC_NAMES:
            close = difflib.get_close_matches(name, METRIC_NAMES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MetricError(
                f"unknown metric {raw.strip()!r}; {hint}choose from {', '.join(METRIC_NAMES)} (or all)"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise MetricError(f"no metric asked for; choose from {', '.join(METRIC_NAMES)}")
    return out


def score(
    ref: np.ndarray,
    test: np.ndarray,
    metrics: Sequence[str] | str = DEFAULT_METRICS,
    device: str = "cpu",
    sampled_frames: Sequence[int] | None = None,
) -> Scores:
    """Score a decode against its source. Metrics that cannot run here are left out, with the reason in notes.

    MS-SSIM (frames too small), LPIPS and ST-LPIPS (no weights, frames too small), the YUV metrics (odd
    frame sizes) and VMAF / XPSNR (no ffmpeg binary with the filter) can be unavailable; bad inputs or a
    bad frame subset raise MetricError.
    """
    ref, test = check_pair(ref, test)
    names = _metric_names(metrics)
    inputs = _Inputs(ref, test, device, sampled_frames, tuple(n for n in names if n in FFMPEG_METRICS))
    out = Scores()
    for name in names:
        try:
            values, note, clip = _SCORERS[name](inputs)
        except _Unavailable as exc:
            out.notes[name] = f"unavailable: {exc}"
            continue
        out.per_frame[name] = values.tolist()
        out.mean[name] = float(values.mean()) if clip is None else float(clip)
        if note:
            out.notes[name] = note
        if name in SAMPLED_METRICS and sampled_frames is not None:
            out.frame_subsets[name] = _frame_indices(sampled_frames, len(ref))
    return out


class _Unavailable(Exception):
    """A metric that cannot run on these inputs or on this machine; `score` records the reason."""


def _psnr_db(mse_255: np.ndarray | float) -> np.ndarray:
    """PSNR in dB of 8-bit mean squared errors, capped at PSNR_CAP_DB (identical planes included)."""
    with np.errstate(divide="ignore"):
        return np.minimum(10.0 * np.log10(255.0**2 / np.asarray(mse_255, dtype=np.float64)), PSNR_CAP_DB)


def yuv_plane_mse(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-frame mean squared error of the Y, U and V planes, shape (T, 3), of planar yuv420p clips
    (T, H * 3 // 2, W) on the 0-255 scale (exact integer sums)."""
    height = ref.shape[1] * 2 // 3
    quarter = height // 4  # rows of the packed U (then V) plane
    bounds = ((0, height), (height, height + quarter), (height + quarter, height + 2 * quarter))
    out = np.empty((len(ref), 3), np.float64)
    for t in range(len(ref)):
        diff = ref[t].astype(np.int32) - test[t].astype(np.int32)
        for p, (a, b) in enumerate(bounds):
            plane = diff[a:b]
            out[t, p] = float(np.einsum("ij,ij->", plane, plane, dtype=np.int64)) / plane.size
    return out


def yuv_plane_psnr(ref: np.ndarray, test: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """`psnr-y`, `psnr-u`, `psnr-v`, `psnr-yuv` of planar yuv420p clips: (per-frame values, clip figure).

    A plane's clip figure is the PSNR of its mean MSE over the clip (ffmpeg's psnr filter); `psnr-yuv`
    weights the plane figures 6:1:1, per frame and for the clip.
    """
    mse = yuv_plane_mse(ref, test)
    per_frame = _psnr_db(mse)
    clip = _psnr_db(mse.mean(axis=0))
    weights = np.array(YUV_WEIGHTS, np.float64) / sum(YUV_WEIGHTS)
    out = {name: (per_frame[:, p], float(clip[p])) for p, name in enumerate(YUV_PSNR_NAMES[:3])}
    out["psnr-yuv"] = (per_frame @ weights, float(clip @ weights))
    return out


@dataclass
class _Inputs:
    """One scoring call's inputs, with the work metrics share (the YUV planes, the ffmpeg run) done once."""

    ref: np.ndarray
    test: np.ndarray
    device: str
    sampled_frames: Sequence[int] | None  # the frames SAMPLED_METRICS score (None: all)
    ffmpeg_metrics: tuple[str, ...]  # the ffmpeg-computed metrics asked for: all run in one process

    @cached_property
    def rgb_mse(self) -> np.ndarray:
        return mse(self.ref, self.test)

    @cached_property
    def planes(self) -> tuple[np.ndarray, np.ndarray]:
        from bench.data.colour import rgb_to_yuv420p
        from bench.errors import DataError

        try:
            return rgb_to_yuv420p(self.ref), rgb_to_yuv420p(self.test)
        except DataError as exc:
            raise _Unavailable(f"{exc}; the YUV metrics score 4:2:0 planes") from None

    @cached_property
    def yuv_psnr(self) -> dict[str, tuple[np.ndarray, float]]:
        return yuv_plane_psnr(*self.planes)

    @cached_property
    def ffmpeg(self) -> dict[str, tuple[np.ndarray, float, str]]:
        runnable = [n for n in self.ffmpeg_metrics if missing_filter(n) is None]
        try:
            return ffmpeg_scores(*self.planes, runnable, cap_db=PSNR_CAP_DB)
        except MetricError as exc:
            raise _Unavailable(str(exc)) from None


def _score_psnr(inputs: _Inputs) -> tuple[np.ndarray, str, float | None]:
    with np.errstate(divide="ignore"):
        raw = -10.0 * np.log10(inputs.rgb_mse)
    over = int(np.sum(raw > PSNR_CAP_DB))
    if not over:
        return raw, "", None
    identical = int(np.sum(np.isinf(raw)))
    cap = f"{PSNR_CAP_DB:g} dB"
    return (
        np.minimum(raw, PSNR_CAP_DB),
        f"{over} frame(s) above {cap} ({identical} identical) counted as {cap}",
        None,
    )


def _score_psnr_seq(inputs: _Inputs) -> tuple[np.ndarray, str, float | None]:
    errors = inputs.rgb_mse
    with np.errstate(divide="ignore"):
        per_frame = np.minimum(-10.0 * np.log10(errors), PSNR_CAP_DB)
        clip = min(float(-10.0 * np.log10(errors.mean())), PSNR_CAP_DB)
    return per_frame, "RGB PSNR of the clip's mean MSE; per-frame values are each frame's PSNR", clip


def _yuv_scorer(name: str):
    def scorer(inputs: _Inputs) -> tuple[np.ndarray, str, float | None]:
        values, clip = inputs.yuv_psnr[name]
        weighting = " weighted 6:1:1 (Y:U:V)" if name == "psnr-yuv" else ""
        note = f"yuv420p BT.601 limited{weighting}; clip figure from the mean MSE (ffmpeg's psnr)"
        return values, note, clip

    return scorer


def _ffmpeg_scorer(name: str):
    def scorer(inputs: _Inputs) -> tuple[np.ndarray, str, float | None]:
        reason = missing_filter(name)
        if reason is not None:
            raise _Unavailable(reason)
        values, clip, note = inputs.ffmpeg[name]
        return values, note, clip

    return scorer


def _score_ms_ssim(inputs: _Inputs) -> tuple[np.ndarray, str, float | None]:
    ref, test = inputs.ref, inputs.test
    try:
        ms_ssim_window(ref.shape[1], ref.shape[2])
    except MetricError as exc:
        raise _Unavailable(str(exc)) from None
    values, win = ms_ssim(ref, test, device=inputs.device)
    if win == MS_SSIM_WIN:
        return values, f"window {win}", None
    short = min(ref.shape[1:3])
    return values, f"window {win} (shorter side {short} px < 161 px needed for window {MS_SSIM_WIN})", None


def _score_flip(inputs: _Inputs) -> tuple[np.ndarray, str, float | None]:
    values = flip(inputs.ref, inputs.test, frames=inputs.sampled_frames)
    return values, "LDR-FLIP, 67.02 ppd" + _sampled_note(inputs, len(values)), None


def _sampled_note(inputs: _Inputs, scored: int) -> str:
    return "" if inputs.sampled_frames is None else f", on {scored} of {len(inputs.ref)} frames"


def _network_scorer(available: Callable[[], str | None], distances: Callable[..., np.ndarray], model: str):
    """The scorer of an LPIPS-family metric: unavailable, with the reason, without weights or too small."""

    def scorer(inputs: _Inputs) -> tuple[np.ndarray, str, float | None]:
        _torch_device(inputs.device)  # a wrong device is the caller's error, not an unavailable metric
        reason = available()
        if reason is not None:
            raise _Unavailable(reason)
        ref, test = inputs.ref, inputs.test
        if inputs.sampled_frames is not None:
            indices = _frame_indices(inputs.sampled_frames, len(ref))
            ref, test = ref[indices], test[indices]
        try:
            return distances(ref, test, device=inputs.device), model + _sampled_note(inputs, len(ref)), None
        except MetricError as exc:  # unreadable weight files, frames too small
            raise _Unavailable(str(exc)) from None

    return scorer


_SCORERS = {
    "psnr": _score_psnr,
    "psnr-seq": _score_psnr_seq,
    **{name: _yuv_scorer(name) for name in YUV_PSNR_NAMES},
    "ms-ssim": _score_ms_ssim,
    "flip": _score_flip,
    "lpips": _network_scorer(lpips_available, lpips, "AlexNet, v0.1"),
    "stlpips": _network_scorer(stlpips_available, stlpips, STLPIPS_MODEL),
    **{name: _ffmpeg_scorer(name) for name in FFMPEG_METRICS},
}
