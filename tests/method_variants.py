"""Method variants that the method-wide tests (contract, fuzzed decoders) run beside every registered
method's defaults: ``name[param=value]`` specs whose streams are of another kind than the default's."""

from __future__ import annotations

from typing import Any

from bench import registry
from bench.params import build_config, expand, parse_spec

VARIANTS = ("supermask-fixed[backbone=hnerv]", "supermask-learned[backbone=hnerv]")


def method_name(label: str) -> str:
    """The registered method of a label (a plain name or a variant spec)."""
    return parse_spec(label)[0]


def instance(label: str) -> Any:
    """The method object a label plans and fits with (its variant's parameters set)."""
    name, raw = parse_spec(label)
    cls = registry.get(name)
    (variant,) = expand(name, cls, raw)
    return cls(build_config(cls, variant.params))
