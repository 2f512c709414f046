"""Output paths checked before any work is spent: a file where a file goes, a folder where a folder goes."""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError


def check_output_file(path: Path, flag: str) -> None:
    """`path` can be written as a file: it is not a folder, and its folder exists or can be made."""
    if path.is_dir():
        raise BenchError(f"{flag} {path} is a folder; give a file path (for example {path / 'out'})")
    parent = _existing_parent(path)
    if not parent.is_dir():
        raise BenchError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK):
        raise BenchError(f"{flag} {path}: folder {parent} is not writable; choose another path")


def check_output_folder(path: Path, flag: str) -> None:
    """`path` can be used as a folder: it is not a file, and it exists or can be made."""
    if path.exists() and not path.is_dir():
        raise BenchError(f"{flag} {path} is a file; give a folder path")
    parent = _existing_parent(path)
    if not parent.is_dir():
        raise BenchError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK):
        raise BenchError(f"{flag} {path}: folder {parent} is not writable; choose another path")


def _existing_parent(path: Path) -> Path:
    """The nearest existing ancestor of `path` (its folder, or above when that is still to be made)."""
    current = path.absolute().parent
    while not current.exists() and current != current.parent:
        current = current.parent
    return current
