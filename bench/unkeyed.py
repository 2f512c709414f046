"""Fields added after job keys existed: left out of a key while they hold their default.

A class lists them in ``UNKEYED_DEFAULTS``; at their default they do not enter the dict a key hashes, so
every earlier key (and the default's) stays what it was, without a version bump that would orphan every
record. Method configs and budgets use it alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def keyed_fields(obj: Any) -> dict[str, Any]:
    """`dataclasses.asdict(obj)` without the ``UNKEYED_DEFAULTS`` fields that hold their default."""
    values = dataclasses.asdict(obj)
    for f in dataclasses.fields(obj):
        if f.name in getattr(type(obj), "UNKEYED_DEFAULTS", ()):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            if getattr(obj, f.name) == default:
                del values[f.name]
    return values
