"""Install a method plugin (a module of Method subclasses) for one test: `BENCH_PLUGINS` names it and the
registry rediscovers, as a user's plugin is found."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench import registry


@contextmanager
def installed_plugin(
    folder: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str
) -> Iterator[None]:
    """`source` as the importable module `module` in `folder`, discovered while the block runs."""
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("BENCH_PLUGINS", module)
    registry.discover.cache_clear()
    try:
        yield
    finally:
        registry.discover.cache_clear()
        sys.modules.pop(module, None)
