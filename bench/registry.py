"""Discovers method adapters lazily: every module in `methods/` that defines a `Method` subclass.

Listing reads each module's source (its classes' literal attributes: name, description, rate ladder,
`trains`, `requires`), so `bench ls methods` imports no model code and no torch; a method is imported only
when a job needs it. A module that fails to import (a missing dependency) is unavailable with the reason, so
one broken method never takes the CLI down with it. Modules named in the environment variable
`BENCH_PLUGINS` (comma-separated, importable) are discovered too, after the built-ins, so a plugin may
shadow a built-in method of the same name (for example a deliberately degraded copy that proves `bench
check` bites). An attribute that is not a literal in the source is read by importing that module.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import methods as methods_package
from bench.contract import Method, missing_requirement
from bench.errors import MethodError

CONTRACT = "bench.contract.Method"
LISTED = ("name", "description", "rate_ladder", "trains", "requires", "in_default_run")
DEFAULTS: dict[str, Any] = {
    "description": "",
    "rate_ladder": Method.rate_ladder,
    "trains": Method.trains,
    "requires": Method.requires,
    "in_default_run": Method.in_default_run,
}


@dataclass
class MethodEntry:
    """A discovered method: what its source declares, and its class once imported."""

    name: str
    module: str
    attributes: dict[str, Any] = field(default_factory=dict)
    import_error: str | None = None
    _cls: type[Method] | None = None

    @property
    def description(self) -> str:
        return str(self.attributes.get("description", ""))

    @property
    def rate_ladder(self) -> tuple[float, ...]:
        return tuple(self.attributes.get("rate_ladder", ()))

    @property
    def trains(self) -> bool:
        return bool(self.attributes.get("trains", False))

    @property
    def in_default_run(self) -> bool:
        return bool(self.attributes.get("in_default_run", True))

    @property
    def unavailable(self) -> str | None:
        """None when the method can run here, otherwise why not (checked without importing it)."""
        if self.import_error is not None:
            return self.import_error
        for requirement in self.attributes.get("requires", ()):
            reason = missing_requirement(requirement)
            if reason is not None:
                return reason
        return None

    @property
    def cls(self) -> type[Method] | None:
        """The adapter class (imports its module); None when the import fails."""
        if self._cls is None and self.import_error is None:
            try:
                module = importlib.import_module(self.module)
            except ImportError as exc:
                self.import_error = f"import failed: {exc}"
                return None
            self._cls = _class_named(module, self.name)
        return self._cls


def _class_named(module: Any, name: str) -> type[Method] | None:
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Method) and getattr(obj, "name", None) == name:
            if obj.__module__ == module.__name__:
                return obj
    return None


# --- reading sources ---------------------------------------------------------------------------------------


@dataclass
class _ClassInfo:
    module: str
    bases: list[str]  # dotted names resolved through the module's imports
    attributes: dict[str, Any]  # literal class attributes; a non-literal one maps to _UNKNOWN


_UNKNOWN = object()


@cache
def _module_classes(module_name: str) -> dict[str, _ClassInfo] | None:
    """Classes of a module by name, from its source alone; None when the source cannot be read."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    package = module_name.rsplit(".", 1)[0] if "." in module_name else ""
    imported: dict[str, str] = {}
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = (
                    module_name.rsplit(".", node.level)[0]
                    if node.level <= module_name.count(".")
                    else package
                )
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    local = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    classes: dict[str, _ClassInfo] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = []
        for base in node.bases:
            dotted = ast.unparse(base)
            head = dotted.split(".")[0]
            if head in imported:
                bases.append(imported[head] + dotted[len(head) :])
            elif head in local:
                bases.append(f"{module_name}.{dotted}")
        attributes: dict[str, Any] = {}
        for item in node.body:
            target, value = None, None
            if (
                isinstance(item, ast.Assign)
                and len(item.targets) == 1
                and isinstance(item.targets[0], ast.Name)
            ):
                target, value = item.targets[0].id, item.value
            elif (
                isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and item.value is not None
            ):
                target, value = item.target.id, item.value
            if target in LISTED and value is not None:
                attributes[target] = _literal(value, constants)
        classes[node.name] = _ClassInfo(module_name, bases, attributes)
    return classes


def _literal(node: ast.AST, constants: dict[str, Any]) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        return _UNKNOWN


def _lookup(dotted: str) -> _ClassInfo | None:
    """A class by dotted name, read from source only inside the suite's and the plugins' own packages
    (finding a submodule of anything else, torch say, would import its package)."""
    module, _, name = dotted.rpartition(".")
    if module.split(".")[0] not in _own_packages():
        return None
    classes = _module_classes(module) if module else None
    return classes.get(name) if classes else None


def _resolve(info: _ClassInfo, seen: frozenset[str] = frozenset()) -> tuple[bool, dict[str, Any]]:
    """(derives from the contract's Method, its attributes with inherited ones filled in)."""
    merged: dict[str, Any] = {}
    is_method = False
    for base in reversed(info.bases):
        if base == CONTRACT:
            is_method = True
            continue
        parent = _lookup(base)
        if parent is None or base in seen:
            continue
        derives, inherited = _resolve(parent, seen | {base})
        is_method = is_method or derives
        merged.update(inherited)
    merged.update(info.attributes)
    return is_method, merged


def _entries_of(module_name: str) -> list[MethodEntry]:
    classes = _module_classes(module_name)
    if classes is None:  # no readable source: import it to learn what it holds
        return _imported_entries(module_name)
    entries = []
    for info in classes.values():
        is_method, attributes = _resolve(info)
        name = attributes.get("name")  # inherited too: a plugin may subclass a method to shadow it
        if not is_method or not isinstance(name, str):
            continue
        filled = {**DEFAULTS, **attributes}
        if any(value is _UNKNOWN for value in filled.values()):
            entries += [e for e in _imported_entries(module_name) if e.name == name]
            continue
        entries.append(MethodEntry(name, module_name, filled))
    return entries


def _imported_entries(module_name: str) -> list[MethodEntry]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        name = module_name.rsplit(".", 1)[-1].replace("_", "-")
        return [MethodEntry(name, module_name, dict(DEFAULTS), import_error=f"import failed: {exc}")]
    entries = []
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Method) and obj.__module__ == module_name:
            if getattr(obj, "name", None) and not getattr(obj, "__abstractmethods__", None):
                attributes = {key: getattr(obj, key) for key in LISTED}
                entries.append(MethodEntry(obj.name, module_name, attributes, _cls=obj))
    return entries


def _plugin_modules() -> list[str]:
    return [m.strip() for m in os.environ.get("BENCH_PLUGINS", "").split(",") if m.strip()]


def _own_packages() -> set[str]:
    return {"methods", "bench"} | {m.split(".")[0] for m in _plugin_modules()}


@cache
def discover() -> dict[str, MethodEntry]:
    """All method adapters by name, in a stable order, without importing them."""
    entries: dict[str, MethodEntry] = {}
    builtin = [
        f"methods.{m.name}"
        for m in sorted(pkgutil.iter_modules(methods_package.__path__), key=lambda m: m.name)
        if not m.ispkg
    ]
    for module_name in builtin + _plugin_modules():
        for entry in _entries_of(module_name):
            entries[entry.name] = entry
    return entries


def names(available_only: bool = True, default_run: bool = False) -> list[str]:
    """Method names; `default_run`: only those `--methods all` runs (opt-in methods must be named)."""
    return [
        n
        for n, e in discover().items()
        if (not available_only or e.unavailable is None) and (not default_run or e.in_default_run)
    ]


def get(name: str) -> type[Method]:
    """The adapter class for `name`; an unknown name gets a "did you mean" suggestion."""
    entries = discover()
    entry = entries.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, entries, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise MethodError(f"unknown method '{name}': {hint}`bench ls methods` lists them")
    if entry.unavailable is not None:
        raise MethodError(f"method '{name}' is unavailable here: {entry.unavailable}")
    cls = entry.cls
    if cls is None:
        raise MethodError(f"method '{name}' is unavailable here: {entry.import_error or 'its class is gone'}")
    return cls
