"""Method parameters: what a method's `Config` declares, and `name[param=value,...]` grid specs parsed by it.

A method's hyper-parameters are the fields of its `Config` dataclass; each field's trailing comment in the
source is its one-line meaning. A spec such as ``supermask-learned[alpha_lr=0.01|0.1,densities=0.3/0.1/0.03]``
names a method and some of its fields: ``|`` separates grid values (each one a job), ``/`` the items of a
tuple. Values are parsed by the field's type, so a typo or a wrong type is refused before anything runs.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import io
import itertools
import math
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError

NONE_WORDS = ("none", "null")


@dataclass(frozen=True)
class Param:
    """One hyper-parameter of a method: its name, type (as written), default and one-line meaning."""

    name: str
    type: Any
    default: Any
    help: str

    @property
    def type_name(self) -> str:
        return _type_name(self.type)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is tuple:
        inner = (
            f"{_type_name(args[0])}, ..."
            if len(args) == 2 and args[1] is Ellipsis
            else ", ".join(_type_name(a) for a in args)
        )
        return f"tuple[{inner}]"
    return str(tp)


def _field_comments(config_cls: type) -> dict[str, str]:
    """Trailing comments of the field lines of a dataclass and its bases (the nearest definition wins)."""
    comments: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body
        fields = body[0].body if body and isinstance(body[0], ast.ClassDef) else []
        line_field = {
            node.lineno: node.target.id
            for node in fields
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        }
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT and token.start[0] in line_field:
                comments[line_field[token.start[0]]] = token.string.lstrip("#").strip()
    return comments


def parameters(method_cls: type) -> list[Param]:
    """Every hyper-parameter of a method adapter class, in declaration order."""
    config_cls = method_cls.Config
    hints = typing.get_type_hints(config_cls)
    comments = _field_comments(config_cls)
    defaults = method_cls.default_config()
    return [
        Param(f.name, hints.get(f.name, str), getattr(defaults, f.name), comments.get(f.name, ""))
        for f in dataclasses.fields(config_cls)
    ]


# --- parsing values by type ---------------------------------------------------------------------------------


def parse_value(text: str, tp: Any) -> Any:
    """A command-line value as the field's type; ValueError with what was expected."""
    text = text.strip()
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in NONE_WORDS:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return parse_value(text, option)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"expected {_type_name(tp)}, got '{text}'")
    if origin is typing.Literal:
        for option in args:
            if str(option) == text:
                return option
        raise ValueError(f"expected one of {', '.join(repr(a) for a in args)}, got '{text}'")
    if origin is tuple:
        items = [t for t in text.split("/")] if text else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(item, args[0]) for item in items)
        if len(items) != len(args):
            raise ValueError(f"expected {len(args)} items separated by '/', got '{text}'")
        return tuple(parse_value(item, a) for item, a in zip(items, args, strict=True))
    if tp is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"expected true or false, got '{text}'")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got '{text}'") from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got '{text}'") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got '{text}'")
        return value
    if tp is str:
        if not text:
            raise ValueError("expected a non-empty text")
        return text
    raise ValueError(f"parameters of type {_type_name(tp)} cannot be set from the command line")


def coerce_value(value: Any, tp: Any) -> Any:
    """A value from a YAML file (already typed) checked against the field's type, via its text form."""
    if isinstance(value, (list, tuple)):
        return parse_value("/".join(str(v) for v in value), tp)
    if value is None:
        return parse_value("none", tp)
    return parse_value(str(value).lower() if isinstance(value, bool) else str(value), tp)


# --- specs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodVariant:
    """One method with some of its parameters set; `params` is sorted, values as the field's type."""

    method: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return variant_label(self.method, dict(self.params))


def format_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "/".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def variant_label(method: str, params: dict[str, Any]) -> str:
    """`method[a=1,b=x]`: how reports and summaries name a method run with non-default parameters."""
    if not params:
        return method
    inner = ",".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))
    return f"{method}[{inner}]"


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on `separator` outside square brackets; unbalanced brackets are an error."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
            if depth > 1:
                raise ConfigError(f"malformed method spec '{text}': nested '['")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"malformed method spec '{text}': ']' without '['")
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ConfigError(f"malformed method spec '{text}': '[' without ']'")
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_spec(item: str) -> tuple[str, dict[str, list[str]]]:
    """'name[a=1|2,b=x]' -> ('name', {'a': ['1', '2'], 'b': ['x']}) with the values still text."""
    item = item.strip()
    if "[" not in item:
        if "]" in item or "=" in item:
            raise ConfigError(f"malformed method spec '{item}': write name[param=value,...]")
        return item, {}
    name, _, rest = item.partition("[")
    if not rest.endswith("]") or not name.strip():
        raise ConfigError(f"malformed method spec '{item}': write name[param=value,...]")
    body = rest[:-1]
    params: dict[str, list[str]] = {}
    for assignment in (a.strip() for a in body.split(",")):
        if not assignment:
            raise ConfigError(f"malformed method spec '{item}': an empty parameter")
        key, eq, value = assignment.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"malformed method spec '{item}': '{assignment}' is not param=value")
        if key in params:
            raise ConfigError(f"method spec '{item}' sets '{key}' twice; give it once (use | for a grid)")
        params[key] = [v.strip() for v in value.split("|")]
    return name.strip(), params


def unknown_parameter(method: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(
        f"method '{method}' has no parameter '{name}': {hint}its parameters are {', '.join(known)} "
        f"(`bench ls params {method}`)"
    )


def expand(
    method: str, method_cls: type, raw: dict[str, list[Any]], from_text: bool = True
) -> list[MethodVariant]:
    """Every combination of the given values, each parsed by its field's type; defaults dropped."""
    table = {p.name: p for p in parameters(method_cls)}
    axes: list[list[tuple[str, Any]]] = []
    for name, values in raw.items():
        if name not in table:
            raise unknown_parameter(method, name, list(table))
        parsed = []
        for value in values:
            try:
                typed = (
                    parse_value(value, table[name].type)
                    if from_text
                    else coerce_value(value, table[name].type)
                )
            except ValueError as exc:
                raise ConfigError(
                    f"method '{method}' parameter '{name}' ({table[name].type_name}): {exc}"
                ) from None
            parsed.append((name, typed))
        axes.append(parsed)
    variants = []
    for combo in itertools.product(*axes):
        changed = tuple(sorted((k, v) for k, v in combo if v != table[k].default))
        variants.append(MethodVariant(method, changed))
    return variants


def build_config(method_cls: type, params: tuple[tuple[str, Any], ...]) -> Any:
    """The method's default config with `params` set; a config that refuses them is a one-line error."""
    defaults = method_cls.default_config()
    if not params:
        return defaults
    try:
        return dataclasses.replace(defaults, **dict(params))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method '{method_cls.name}' refuses {dict(params)}: {exc}") from None
