"""The HTML report: built from real records, loaded from disk in headless Chromium, escaping, exports.

Records come from two real sources: `bench run` of the codecs on the smoke budget, and a JPEG ladder on
real Bunny frames (PIL's encoder, scored by bench.metrics) written with `store.write_result`, for the cases
a short codec run cannot produce (several seeds, odd names, UVG-sized sequences, failures).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from record_factory import make_record

from bench import store
from bench.budgets import get_budget
from bench.cli import main
from bench.contract import Clip
from bench.errors import BenchError
from reports.build import build_report, report_command
from reports.gallery import png_data_uri

EVIL = "<script>alert(1)</script>"
ARTIFACTS = Path(
    os.environ.get("BENCH_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")
)


# --- records -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def codec_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x264 and x265 at three targets on the smoke budget, as `bench run` writes them."""
    results = tmp_path_factory.mktemp("codecs")
    args = [
        "run",
        "--methods",
        "x264,x265",
        "--seq",
        "bunny",
        "--budget",
        "smoke",
        "--bpp",
        "0.3,0.6,1.0",
        "--results",
        str(results),
    ]
    assert main(args) == 0
    return results


Coded = tuple[int, np.ndarray, dict[str, Any]]


@pytest.fixture(scope="module")
def jpeg(smoke_clip: Clip) -> Callable[[int, int], Coded]:
    """JPEG-code the smoke clip at a quality and chroma subsampling (0 = 4:4:4, 2 = 4:2:0): bytes, decode, scores."""
    from PIL import Image

    from bench import metrics

    cache: dict[tuple[int, int], Coded] = {}

    def code(quality: int, subsampling: int) -> Coded:
        if (quality, subsampling) not in cache:
            size, decoded = 0, []
            for frame in smoke_clip.frames:
                buffer = io.BytesIO()
                Image.fromarray(frame).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
                size += buffer.tell()
                decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
            out = np.stack(decoded)
            scores = metrics.score(smoke_clip.frames, out, metrics="psnr,flip")  # MS-SSIM: see the codec runs
            cache[(quality, subsampling)] = (size, out, scores.to_dict())
        return cache[(quality, subsampling)]

    return code


def write_failure(results: Path, **fields: Any) -> None:
    record = make_record(**fields)
    store.write_failure(results, record.key, record)


def write_record(
    results: Path,
    clip: Clip,
    coded: Coded,
    *,
    method: str,
    sequence: str,
    target: float,
    seed: int = 0,
    match: str = "n/a",
    budget: dict[str, Any] | None = None,
    size: tuple[int, int] | None = None,
    stats: dict[str, Any] | None = None,
) -> None:
    """One finished job in the runner's record format, with its gallery frame, published atomically."""
    from PIL import Image

    from bench.metrics import flip_map
    from bench.provenance import provenance

    size_bytes, decoded, scores = coded
    frames, index = clip.frames, len(clip.frames) // 2
    width, height = size or (clip.info.width, clip.info.height)
    bpp = 8 * size_bytes / frames[..., 0].size
    heat, flip_mean = flip_map(frames[index], decoded[index])
    record = make_record(
        method=method,
        seed=seed,
        target_bpp=target,
        match=match,
        budget=budget or get_budget("smoke").to_dict(),
        status="ok",
        sequence={
            "name": sequence,
            "width": width,
            "height": height,
            "num_frames": len(frames),
            "fps": 25.0,
            "checksum": "test",
            "spec": sequence,
        },
        config={"quality": "see breakdown"},
        bytes=size_bytes,
        bpp=bpp,
        bpp_deviation=bpp / target - 1,
        breakdown_bits={"jpeg": 8 * size_bytes},
        metrics=scores,
        stats=stats or {},
        timings={"plan_s": 0.0, "fit_s": 0.0, "encode_s": 0.01, "decode_s": 0.005, "score_s": 0.1},
        provenance=provenance("cpu"),
        gallery={"frame": index, "flip_mean": flip_mean},
        identity={"width": width},
    )

    def gallery(directory: Path) -> None:
        folder = directory / store.GALLERY
        folder.mkdir()
        for name, image in (("source", frames[index]), ("decode", decoded[index]), ("flip", heat)):
            Image.fromarray(image).save(folder / f"{name}.png")

    store.write_result(
        results, record.key, record, b"".join([b"JPEG"] * size_bytes)[:size_bytes], extra=gallery
    )


QUALITIES = {0.6: 20, 1.0: 40, 1.6: 70, 2.6: 90}  # target bpp -> JPEG quality on these 72x128 frames


def jpeg_ladder(
    results: Path,
    clip: Clip,
    jpeg: Callable[[int, int], Coded],
    method: str,
    subsampling: int,
    sequence: str = "bunny",
    targets: tuple[float, ...] = tuple(QUALITIES),
    seeds: int = 1,
    **kw: Any,
) -> None:
    for target in targets:
        for seed in range(seeds):
            # a seed moves the operating point a little, as a training seed would
            coded = jpeg(QUALITIES[target] + 3 * seed, subsampling)
            write_record(
                results, clip, coded, method=method, sequence=sequence, target=target, seed=seed, **kw
            )


def data_uri_text(uri: str) -> str:
    return base64.b64decode(uri.split(",", 1)[1]).decode("utf-8")


def figure_svgs(html: str) -> list[str]:
    """The RD figures of a report (one per view), not its speed or convergence figures."""
    found = re.findall(r'src="(data:image/svg\+xml;base64,[^"]+)" alt="RD curves', html)
    return [data_uri_text(m) for m in found]


# --- headless Chromium over the DevTools protocol --------------------------------------------------------------


def chromium_binary() -> str | None:
    candidate = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
    return candidate if candidate and Path(candidate).is_file() else None


class Chromium:
    """One headless page: console errors, uncaught exceptions and dialogs recorded, JS evaluated, screenshots."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-port=0",
        "--window-size=1280,900",
    )

    def __init__(self, binary: str, workdir: Path) -> None:
        profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))  # fresh: no stale port file
        self.ws = None
        self.log = open(workdir / "chromium.log", "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        try:
            self._connect(profile / "DevToolsActivePort", workdir / "chromium.log")
        except BaseException:
            self.close()
            raise

    def _connect(self, port_file: Path, log: Path) -> None:
        import websocket

        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start; see {log}")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            page = next(t for t in json.load(reply) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self.last_id = 0
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        self.ws.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def open(self, path: Path) -> None:
        self.call("Page.navigate", url=path.resolve().as_uri())
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Everything the page would show as an error in the console, plus any dialog (alert) it opened."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(
                    f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
                )
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params.get('message')}")
        return found

    def screenshot(self, path: Path) -> Path:
        height = min(int(self.evaluate("document.documentElement.scrollHeight")), 16000)
        self.call(
            "Emulation.setDeviceMetricsOverride", width=1280, height=height, deviceScaleFactor=1, mobile=False
        )
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def browser(tmp_path: Path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("headless Chromium not found: install Debian's `chromium` or set CHROMIUM_BIN")
    chromium = Chromium(binary, tmp_path)
    try:
        yield chromium
    finally:
        chromium.close()


IMAGES_JS = """Promise.all(Array.from(document.querySelectorAll('img[src]')).map(function (img) {
  return img.decode().then(function () { return [img.className, img.naturalWidth]; },
                           function () { return [img.className, 0]; });
}))"""

COLUMN_JS = """(function (key) {
  var table = document.getElementById('points-table');
  var col = Array.from(table.tHead.rows[0].cells).findIndex(function (th) { return th.dataset.key === key; });
  return Array.from(table.tBodies[0].rows).map(function (r) { return r.cells[col].dataset.sort; });
})"""


# --- tests ---------------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_report_of_codec_runs_loads_cleanly_in_chromium(codec_results: Path, browser: Chromium) -> None:
    out = build_report(codec_results)
    html = out.read_text(encoding="utf-8")
    assert "default-src 'none'" in html and "http://" not in html and "https://" not in html
    assert "anchor &#39;nerv-dense&#39; has no results here; using &#39;x264&#39;" in html
    assert (out.parent / "summary.md").is_file() and (out.parent / "points.csv").is_file()

    browser.open(out)
    images = browser.evaluate(IMAGES_JS)
    figures_ = [w for cls, w in images if "figure" in cls and "speed" not in cls]
    gallery = [w for cls, w in images if "gallery-img" in cls]
    assert len(figures_) == 1 and all(w > 300 for w in figures_)
    assert len(gallery) == 1 + 2 * 2 and all(w == 128 for w in gallery)  # source + decode and FLIP per codec
    bd = browser.evaluate(
        "Array.from(document.querySelectorAll('#bd-table tbody td')).map(c => c.textContent)"
    )
    assert bd[3] == "x265" and bd[5] == "n/a" and "anchor: 3 points (BD needs 4)" in bd[7], bd

    browser.evaluate("document.querySelector('#points-table th[data-key=psnr]').click()")
    ascending = [float(v) for v in browser.evaluate(f"{COLUMN_JS}('psnr')")]
    browser.evaluate("document.querySelector('#points-table th[data-key=psnr]').click()")
    descending = [float(v) for v in browser.evaluate(f"{COLUMN_JS}('psnr')")]
    assert (
        ascending == sorted(ascending)
        and descending == sorted(ascending, reverse=True)
        and len(ascending) == 6
    )

    browser.evaluate("document.querySelector('img.gallery-img').click()")
    assert browser.evaluate("document.getElementById('lightbox').hidden") is False
    assert browser.evaluate("document.querySelector('#lightbox img').naturalWidth") == 128
    browser.evaluate("document.getElementById('lightbox').click()")

    shot = browser.screenshot(ARTIFACTS / "report.png")
    print(f"report screenshot: {shot}")
    assert browser.errors() == []
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width == 1280 and image.height > 900


def test_names_are_escaped_as_text(
    tmp_path: Path, smoke_clip: Clip, jpeg: Callable[[int, int], Coded]
) -> None:
    results = tmp_path / "results"
    jpeg_ladder(results, smoke_clip, jpeg, EVIL, 2, sequence=EVIL, targets=(1.0,))
    write_failure(
        results,
        method=EVIL,
        status="failed",
        reason=f"bad {EVIL}",
        target_bpp=0.6,
        seed=0,
        budget=get_budget("smoke").to_dict(),
        sequence={"name": EVIL},
    )
    html = build_report(results).read_text(encoding="utf-8")
    assert EVIL not in html
    assert html.count("<script") == 1  # the report's own sorting / lightbox script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert any(EVIL in svg or "&lt;script&gt;alert(1)&lt;/script&gt;" in svg for svg in figure_svgs(html))
    assert EVIL in (tmp_path / "results" / "summary.md").read_text()


@pytest.mark.browser
def test_escaped_names_stay_text_in_chromium(
    tmp_path: Path, smoke_clip: Clip, jpeg: Callable[[int, int], Coded], browser: Chromium
) -> None:
    results = tmp_path / "results"
    jpeg_ladder(results, smoke_clip, jpeg, EVIL, 2, sequence=EVIL, targets=(1.0,))
    browser.open(build_report(results))
    assert browser.evaluate("document.scripts.length") == 1
    assert EVIL in browser.evaluate("document.getElementById('points-table').innerText")
    assert browser.errors() == []


def test_seeds_fold_into_mean_and_std(
    tmp_path: Path, smoke_clip: Clip, jpeg: Callable[[int, int], Coded]
) -> None:
    results = tmp_path / "results"
    jpeg_ladder(
        results,
        smoke_clip,
        jpeg,
        "jpeg-420",
        2,
        targets=(0.6, 1.0),
        seeds=2,
        match="epochs",
        stats={"parameters": 123456, "nonzeros": 65432},
    )
    out = build_report(results, tmp_path / "site" / "index.html", anchor="jpeg-420")
    rows = list(csv.DictReader(open(tmp_path / "site" / "points.csv")))
    assert len(rows) == 2 and all(r["n_seeds"] == "2" and r["seeds"] == "0;1" for r in rows)
    by_seed = {r.seed: r for r in store.iter_records(results) if r.target_bpp == 0.6}
    psnrs = [by_seed[s].mean("psnr") for s in (0, 1)]
    row = next(r for r in rows if float(r["target_bpp"]) == 0.6)
    assert float(row["psnr"]) == pytest.approx(np.mean(psnrs))
    assert float(row["psnr_std"]) == pytest.approx(np.std(psnrs, ddof=1)) and float(row["psnr_std"]) > 0
    html = out.read_text(encoding="utf-8")
    assert '<span class="sd">±' in html and "bars show ± 1 sample std" in html
    assert "123,456" in html and "65,432" in html  # params / non-zeros from the records' stats
    from bench.budgets import get_budget

    epochs = get_budget("smoke").epochs
    assert f"every trained method gets the budget&#39;s {epochs} epochs" in html


def test_bd_against_anchor_and_marks_short_curves(
    tmp_path: Path, smoke_clip: Clip, jpeg: Callable[[int, int], Coded]
) -> None:
    results = tmp_path / "results"
    jpeg_ladder(results, smoke_clip, jpeg, "jpeg-444", 0)
    jpeg_ladder(results, smoke_clip, jpeg, "jpeg-420", 2)
    jpeg_ladder(results, smoke_clip, jpeg, "jpeg-short", 2, targets=(0.6, 1.0, 1.6))
    out = build_report(results, anchor="jpeg-444")
    md = (out.parent / "summary.md").read_text()
    (full,) = [line for line in md.splitlines() if "| jpeg-420 | 4 |" in line]
    (short,) = [line for line in md.splitlines() if "| jpeg-short | 3 |" in line]
    rate = float(full.split("|")[6])
    assert -100 < rate < 100 and rate != 0
    assert "test: 3 points (BD needs 4)" in short and short.count("—") == 2
    assert "has no results here" not in out.read_text(encoding="utf-8")


def test_published_overlay_only_where_comparable(
    tmp_path: Path, smoke_clip: Clip, jpeg: Callable[[int, int], Coded]
) -> None:
    """Full-frame 1920x1080 UVG records get HiNeRV / NeRV overlays (Jockey, UVG average); smaller ones do not."""
    full = {**get_budget("paper").to_dict(), "name": "full"}
    uvg = ["Beauty", "Bosphorus", "HoneyBee", "Jockey", "ReadySteadyGo", "ShakeNDry", "YachtRide"]
    comparable = tmp_path / "comparable"
    for name in uvg:
        jpeg_ladder(
            comparable,
            smoke_clip,
            jpeg,
            "jpeg-420",
            2,
            sequence=name,
            targets=(1.0,),
            budget=full,
            size=(1920, 1080),
        )
    html = build_report(comparable).read_text(encoding="utf-8")
    svgs = figure_svgs(html)
    assert len(svgs) == 8  # 7 sequences and their average
    assert sum("published: HiNeRV (NeurIPS 2023)" in s for s in svgs) == 2  # Jockey and the average
    assert sum("published: NeRV (NeurIPS 2021)" in s for s in svgs) == 1
    # HNeRV's own points coded a 1920x960 crop; only its 1080p re-measurement (UVG average) is comparable.
    assert sum("published: HNeRV (CVPR 2023), re-measured at 1080p" in s for s in svgs) == 1
    assert sum("HNeRV" in s for s in svgs) == 1
    assert "UVG average (7 sequences)" in html and "Not shown: HNeRV (CVPR 2023)" in html

    small = tmp_path / "small"
    jpeg_ladder(small, smoke_clip, jpeg, "jpeg-420", 2, sequence="Jockey", targets=(1.0,))
    html = build_report(small).read_text(encoding="utf-8")
    assert not any("published:" in s for s in figure_svgs(html))
    assert "Not shown: HiNeRV (NeurIPS 2023) points for this sequence (1920x1080" in html
    assert "this run coded 128x72, on a subset of the frames" in html


def test_failed_and_skipped_jobs_with_reasons(
    tmp_path: Path, smoke_clip: Clip, jpeg: Callable[[int, int], Coded]
) -> None:
    results = tmp_path / "results"
    jpeg_ladder(results, smoke_clip, jpeg, "jpeg-420", 2, targets=(0.6,))
    base = {
        "method": "nerv-dense",
        "seed": 0,
        "target_bpp": 0.05,
        "budget": get_budget("smoke").to_dict(),
        "sequence": {"name": "bunny"},
    }
    write_failure(results, **base, status="failed", stage="fit", reason="loss became NaN at step 12")
    write_failure(
        results,
        **base,
        status="skipped",
        stage="plan",
        reason="no configuration reaches 0.05 bpp",
        identity={"b": 1},
    )
    args = Namespace(results=str(results), out=None, anchor="nerv-dense")
    assert report_command(args) == 0
    html = (results / "report.html").read_text(encoding="utf-8")
    assert "loss became NaN at step 12" in html and "no configuration reaches 0.05 bpp" in html
    md = (results / "summary.md").read_text()
    assert "1 failed, 1 skipped" in md and "| failed | nerv-dense | bunny | 0.05 | 0 | loss became NaN" in md

    only_failures = tmp_path / "only-failures"
    write_failure(only_failures, **base, status="failed", reason="out of memory")
    html = build_report(only_failures).read_text(encoding="utf-8")
    assert "No finished job in these results" in html and "out of memory" in html


def test_missing_results_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no results in .*bench run --results"):
        build_report(tmp_path / "nothing")


def test_wide_gallery_frames_are_embedded_downscaled(tmp_path: Path, bunny_path: Path) -> None:
    import av
    from PIL import Image

    with av.open(str(bunny_path)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    Image.fromarray(frame).save(tmp_path / "wide.png")
    Image.fromarray(frame[:72, :128]).save(tmp_path / "small.png")
    uri, shrunk = png_data_uri(tmp_path / "wide.png")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
        assert shrunk and image.size == (960, 540)
    uri, shrunk = png_data_uri(tmp_path / "small.png")
    assert not shrunk and base64.b64decode(uri.split(",", 1)[1]) == (tmp_path / "small.png").read_bytes()


def test_one_view_per_matching_protocol_with_codecs_in_each(
    tmp_path: Path, smoke_clip: Clip, jpeg: Callable[[int, int], Coded]
) -> None:
    results = tmp_path / "results"
    for match in ("epochs", "time"):
        jpeg_ladder(results, smoke_clip, jpeg, "trained", 2, targets=(1.0,), match=match)
    jpeg_ladder(results, smoke_clip, jpeg, "codec", 0, targets=(1.0,))
    html = build_report(results).read_text(encoding="utf-8")
    assert (
        "bunny · budget smoke · matching: epochs" in html and "bunny · budget smoke · matching: time" in html
    )
    assert "every trained method gets 4 s of training on the same hardware" in html
    assert all("codec" in svg for svg in figure_svgs(html)) and len(figure_svgs(html)) == 2
    assert "trained (epochs)" in html and "trained (time)" in html  # gallery labels tell the two apart
