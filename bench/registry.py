"""Discovers method adapters: every module in `methods/` that defines a `Method` subclass.

Modules holding shared model code (the NeRV generator, coding, ...) define none and are skipped. A module
that fails to import (a missing dependency) is listed as unavailable with the reason, so one broken
method never takes the CLI down with it. Modules named in the environment variable `BENCH_PLUGINS`
(comma-separated, importable) are discovered too, after the built-ins, so a plugin may shadow a built-in
method of the same name (for example a deliberately degraded copy that proves `bench check` bites).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pkgutil
from dataclasses import dataclass
from functools import cache

import methods as methods_package
from bench.contract import Method
from bench.errors import MethodError


@dataclass(frozen=True)
class MethodEntry:
    name: str
    module: str
    cls: type[Method] | None
    unavailable: str | None  # None when the method can run here

    @property
    def description(self) -> str:
        return self.cls.description if self.cls is not None else "(could not be imported)"


@cache
def discover() -> dict[str, MethodEntry]:
    """All method adapters by name, in a stable order."""
    entries: dict[str, MethodEntry] = {}
    builtin = [
        f"methods.{m.name}"
        for m in sorted(pkgutil.iter_modules(methods_package.__path__), key=lambda m: m.name)
    ]
    plugins = [m.strip() for m in os.environ.get("BENCH_PLUGINS", "").split(",") if m.strip()]
    for module_name in builtin + plugins:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            name = module_name.rsplit(".", 1)[-1].replace("_", "-")
            entries[name] = MethodEntry(name, module_name, None, f"import failed: {exc}")
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Method) and obj.__module__ == module_name and getattr(obj, "name", None):
                if not inspect.isabstract(obj):
                    entries[obj.name] = MethodEntry(obj.name, module_name, obj, obj.unavailable_reason())
    return entries


def names(available_only: bool = True) -> list[str]:
    return [n for n, e in discover().items() if not available_only or e.unavailable is None]


def get(name: str) -> type[Method]:
    """The adapter class for `name`; an unknown name gets a "did you mean" suggestion."""
    entries = discover()
    entry = entries.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, entries, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise MethodError(f"unknown method '{name}': {hint}`bench ls methods` lists them")
    if entry.unavailable is not None or entry.cls is None:
        raise MethodError(f"method '{name}' is unavailable here: {entry.unavailable}")
    return entry.cls


def resolve(spec: str) -> list[str]:
    """'all' or a comma-separated list -> method names, each checked."""
    if spec.strip() == "all":
        return names(available_only=True)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    for name in wanted:
        get(name)
    return wanted
