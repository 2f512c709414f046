"""VMAF and XPSNR of yuv420p clips, computed by the libvmaf and xpsnr filters of the suite's ffmpeg binary.

Both metrics run in one ffmpeg process on planes `bench.metrics` has already converted, so scoring a clip
starts ffmpeg once whatever is asked for. VMAF is model vmaf_v0.6.1 built into libvmaf, its clip figure
the mean of its frames; XPSNR is luma, its clip figure the filter's own, chroma in its note.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.errors import MetricError

FFMPEG_METRICS = ("vmaf", "xpsnr")
VMAF_MODEL = "vmaf_v0.6.1"

_FILTERS = {"vmaf": "libvmaf", "xpsnr": "xpsnr"}


def missing_filter(name: str) -> str | None:
    """Why the ffmpeg filter of metric `name` cannot run here, or None."""
    from bench import tools

    return tools.missing(f"ffmpeg-filter:{_FILTERS[name]}")


_XPSNR_CLIP = re.compile(r"XPSNR\s+y:\s*(\S+)\s+u:\s*(\S+)\s+v:\s*(\S+)")
_XPSNR_FRAME = re.compile(r"n:\s*(\d+)\s+XPSNR y:\s*(\S+)\s+XPSNR u:\s*(\S+)\s+XPSNR v:\s*(\S+)")
FFMPEG_TIMEOUT_BASE_S = 60.0
FFMPEG_TIMEOUT_PER_PIXEL_S = 2e-6  # ~20x libvmaf's time per pixel here


def _side_by_side(ref: np.ndarray, test: np.ndarray):
    """Each frame pair as one yuv420p picture twice as wide, [ref | test], plane by plane (bytes per frame)."""
    height, width = ref.shape[1] * 2 // 3, ref.shape[2]
    quarter = height // 4
    for r, t in zip(ref, test, strict=True):
        parts = [np.concatenate([r[:height], t[:height]], axis=1)]
        for a in (height, height + quarter):
            half = (height // 2, width // 2)
            parts.append(
                np.concatenate([r[a : a + quarter].reshape(half), t[a : a + quarter].reshape(half)], axis=1)
            )
        yield b"".join(np.ascontiguousarray(p).tobytes() for p in parts)


def _db(text: str, cap_db: float) -> float:
    return cap_db if text.lower() in ("inf", "+inf") else min(float(text), cap_db)


def ffmpeg_scores(
    ref: np.ndarray, test: np.ndarray, names: Sequence[str] = FFMPEG_METRICS, *, cap_db: float
) -> dict[str, tuple[np.ndarray, float, str]]:
    """VMAF and / or XPSNR of planar yuv420p clips by the suite's ffmpeg binary, in one run.

    Returns {name: (per-frame values, clip figure, note)}. The two clips travel side by side in one
    raw stream on stdin and are cropped apart inside the filter graph (crops are exact), so nothing is
    written to disk but the filters' own logs. XPSNR figures above `cap_db`, and identical planes' inf,
    are read as `cap_db` (the cap of every PSNR the suite records).
    """
    from bench import tools

    count, height, width = ref.shape[0], ref.shape[1] * 2 // 3, ref.shape[2]
    wanted = [n for n in FFMPEG_METRICS if n in names]
    if not wanted:
        return {}
    k = len(wanted)
    graph = [
        "[0:v]split=2[a][b]",
        f"[a]crop={width}:{height}:0:0{',split=2' if k == 2 else ''}" + "".join(f"[r{i}]" for i in range(k)),
        f"[b]crop={width}:{height}:{width}:0{',split=2' if k == 2 else ''}"
        + "".join(f"[d{i}]" for i in range(k)),
    ]
    threads = min(2, os.cpu_count() or 1)
    for i, name in enumerate(wanted):
        if name == "vmaf":
            options = f"model=version={VMAF_MODEL}:n_threads={threads}:log_fmt=json:log_path=vmaf.json"
            graph.append(f"[d{i}][r{i}]libvmaf={options}[o{i}]")
        else:
            graph.append(f"[d{i}][r{i}]xpsnr=stats_file=xpsnr.txt[o{i}]")
    args = ["-loglevel", "info", "-nostats", "-f", "rawvideo", "-pix_fmt", "yuv420p"]
    args += ["-s", f"{2 * width}x{height}", "-i", "-", "-filter_complex", ";".join(graph)]
    for i in range(k):
        args += ["-map", f"[o{i}]", "-f", "null", "-"]
    timeout = FFMPEG_TIMEOUT_BASE_S + FFMPEG_TIMEOUT_PER_PIXEL_S * 2 * count * height * width
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as folder:
        _, log = tools.run(
            args,
            _side_by_side(ref, test),
            timeout_s=timeout,
            error=MetricError,
            what="ffmpeg (VMAF / XPSNR)",
            cwd=folder,
        )
        out = {}
        if "vmaf" in wanted:
            out["vmaf"] = _read_vmaf(Path(folder) / "vmaf.json", count)
        if "xpsnr" in wanted:
            out["xpsnr"] = _read_xpsnr(Path(folder) / "xpsnr.txt", log, count, cap_db)
    return out


def _read_vmaf(path: Path, count: int) -> tuple[np.ndarray, float, str]:
    try:
        log = json.loads(path.read_text())
        values = np.array([float(f["metrics"]["vmaf"]) for f in log["frames"]], np.float64)
        version = str(log.get("version", "unknown"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MetricError(
            f"libvmaf wrote no readable log ({type(exc).__name__}); check the ffmpeg binary"
        ) from None
    if len(values) != count:
        raise MetricError(f"libvmaf scored {len(values)} of {count} frames; check the ffmpeg binary")
    note = f"libvmaf {version}, model {VMAF_MODEL} (built in; trained for 1080p viewing), on yuv420p BT.601 limited"
    return values, float(values.mean()), note


def _read_xpsnr(path: Path, log: str, count: int, cap_db: float) -> tuple[np.ndarray, float, str]:
    try:
        frames = [_XPSNR_FRAME.search(line) for line in path.read_text().splitlines()]
    except OSError:
        raise MetricError("the xpsnr filter wrote no stats file; check the ffmpeg binary") from None
    values = np.array([_db(m.group(2), cap_db) for m in frames if m], np.float64)
    clip = _XPSNR_CLIP.search(log)
    if len(values) != count or clip is None:
        raise MetricError(f"the xpsnr filter scored {len(values)} of {count} frames; check the ffmpeg binary")
    y, u, v = (_db(x, cap_db) for x in clip.groups())
    note = f"ffmpeg xpsnr filter, luma (chroma: u {u:.4f}, v {v:.4f} dB); clip figure the filter's own"
    return values, y, note
