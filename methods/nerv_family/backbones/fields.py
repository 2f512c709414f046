"""Strict reading of an architecture from a stream header: exactly the JSON types an encoder writes."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def _integer(v: Any) -> int:
    if type(v) is not int:
        raise ValueError(f"{v!r} is not an integer")
    return v


def _number(v: Any) -> float:
    if type(v) not in (int, float) or not math.isfinite(v):
        raise ValueError(f"{v!r} is not a finite number")
    return float(v)


def _integers(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list):
        raise ValueError(f"{v!r} is not a list")
    return tuple(_integer(x) for x in v)


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a string")
    return v


_PARSERS = {int: _integer, float: _number, str: _text}
_NAMES = {"int": int, "float": float, "str": str}


def strict_fields(cls: type, data: Any) -> dict[str, Any]:
    """The fields of dataclass `cls` (ints, floats, strings, tuples of ints) read from what
    `dataclasses.asdict` wrote into a header; ValueError on any other key set or type.

    A bool is not an int and a string or a float is not a size, so a forged header cannot be coerced into a
    different network.
    """
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    if not isinstance(data, dict) or set(data) != set(fields):
        raise ValueError("architecture fields do not match")
    values = {}
    for name, kind in fields.items():
        kind = kind if isinstance(kind, type) else _NAMES.get(kind)
        values[name] = _PARSERS[kind](data[name]) if kind in _PARSERS else _integers(data[name])
    return values


def prime_factors(n: int) -> list[int]:
    """The prime factors of n in ascending order (with repeats): the strides a size can be reached by."""
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors + ([n] if n > 1 else [])
