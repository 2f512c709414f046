"""The FLIP-map gallery: per sequence and budget, the source frame, then decode | FLIP map per method."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench import store
from bench.record import Record
from reports.points import Point

GALLERY_MAX_WIDTH = 960  # wider frames are embedded downscaled (area filter): a 1080p gallery would weigh GBs


@dataclass
class Tile:
    label: str
    decode: str
    flip: str
    caption: str


@dataclass
class Gallery:
    title: str
    frame: int | None
    target_bpp: float
    source: str
    size: str
    tiles: list[Tile]
    notes: list[str]


def png_data_uri(path: Path, max_width: int = GALLERY_MAX_WIDTH) -> tuple[str, bool]:
    """A PNG as a data: URI (the file's own bytes unless it is wider than `max_width`); True when shrunk."""
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        if image.width <= max_width and image.format == "PNG":
            data, shrunk = path.read_bytes(), False
        else:
            height = max(1, round(image.height * max_width / image.width))
            small = image.convert("RGB").resize((min(max_width, image.width), height), Image.Resampling.BOX)
            buffer = io.BytesIO()
            small.save(buffer, format="PNG")
            data, shrunk = buffer.getvalue(), image.width > max_width
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), shrunk


def _gallery_files(record: Record) -> dict[str, Path] | None:
    if record.directory is None:
        return None
    folder = record.directory / store.GALLERY
    files = {name: folder / f"{name}.png" for name in ("source", "decode", "flip")}
    return files if all(p.is_file() for p in files.values()) else None


def build_galleries(points: list[Point]) -> list[Gallery]:
    """Per sequence and budget, one frame at the target most methods share: source, then decode | FLIP each."""
    by_group: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        if any(_gallery_files(r) for r in p.records):
            by_group[(p.sequence, p.budget)].append(p)
    galleries = []
    for (sequence, budget), members in by_group.items():
        counts: dict[float, int] = defaultdict(int)
        for p in members:
            counts[p.target_bpp] += 1
        target = min(counts, key=lambda t: (-counts[t], t))
        several = len({p.match for p in members if p.match != "n/a"}) > 1
        chosen = [p for p in members if p.target_bpp == target]
        absent = sorted({p.method for p in members} - {p.method for p in chosen})
        tiles, notes, source, frame, size = [], [], "", None, ""
        for p in chosen:
            record, files = next((r, f) for r in p.records if (f := _gallery_files(r)))
            try:
                decode, shrunk = png_data_uri(files["decode"])
                flip, _ = png_data_uri(files["flip"])
                if not source:
                    source, _ = png_data_uri(files["source"])
                    frame = (record.gallery or {}).get("frame")
                    size = _image_size(files["source"])
            except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for a damaged image
                notes.append(f"{p.method}: gallery image unreadable ({exc})")
                continue
            label = f"{p.method} ({p.match})" if several and p.match != "n/a" else p.method
            tiles.append(Tile(label, decode, flip, _tile_caption(record)))
            if shrunk and not any("downscaled" in n for n in notes):
                notes.append(
                    f"Frames wider than {GALLERY_MAX_WIDTH} px are shown downscaled; the full-size PNGs "
                    f"are in each job's gallery/ folder."
                )
        if absent:
            notes.append(f"No point at {target:g} bpp (not shown): {', '.join(absent)}.")
        if tiles:
            galleries.append(Gallery(f"{sequence} · {budget}", frame, target, source, size, tiles, notes))
    return galleries


def _image_size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return f"{image.width}x{image.height}"


def _tile_caption(record: Record) -> str:
    gallery = record.gallery or {}
    parts = [f"{record.bpp:.4f} bpp" if record.bpp is not None else "bpp unknown"]
    if gallery.get("flip_mean") is not None:
        parts.append(f"FLIP {gallery['flip_mean']:.4f}")
    parts.append(f"seed {record.seed}")
    return " · ".join(parts)
