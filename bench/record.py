"""The result record: one typed object per job attempt, the only thing runner, check, report and scripts read.

A record is written as JSON by `bench.store` and read back through `Record.from_dict`, which checks every
field's type, upgrades older layouts (schema 1: the layout before `schema_version` existed) and verifies
that the record is what it claims to be: its key is recomputed from its stored identity, so a record edited
by hand (another method, another seed) no longer passes for a seed of some other point.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError

SCHEMA_VERSION = 2
STATUSES = ("ok", "failed", "skipped")


class RecordError(BenchError):
    """A record that is not valid JSON of the schema, or whose content contradicts its key."""


def job_key(identity: dict[str, Any]) -> str:
    """The content key of a job: its method name and a hash of everything its result depends on."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", str(identity["method"]))  # a key names a directory
    return f"{prefix}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass
class Record:
    """Identity, rate, metrics, timings and provenance of one job (finished, failed or skipped)."""

    key: str
    status: str  # "ok", "failed" or "skipped"
    method: str
    method_version: str
    seed: int
    device: str
    target_bpp: float
    match: str  # "epochs", "time" or "n/a" (codecs)
    budget: dict[str, Any]  # the effective budget (a named budget with any overrides applied)
    identity: dict[str, Any]  # what the key hashes
    sequence: dict[str, Any] = field(
        default_factory=dict
    )  # name, width, height, num_frames, fps, checksum, spec
    params: dict[str, Any] = field(default_factory=dict)  # method parameters the grid set (non-defaults)
    budget_overrides: dict[str, Any] = field(default_factory=dict)  # budget fields changed from the named one
    reason: str | None = None  # why it failed or was skipped
    stage: str | None = None  # where it failed (load, plan, fit, encode, decode, score, worker)
    traceback: str | None = None
    config: dict[str, Any] | None = None  # the planned config the method ran
    bytes: int | None = None  # stream size
    bpp: float | None = None
    bpp_deviation: float | None = None
    breakdown_bits: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # mean, per_frame, notes, frame_subsets, version
    stats: dict[str, Any] = field(default_factory=dict)  # what the method reports (params, epochs, ...)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    decode_fps: float | None = None  # frames decoded per second (the harness's own decode, from bytes)
    provenance: dict[str, Any] = field(default_factory=dict)
    gallery: dict[str, Any] | None = None
    stream_sha256: str | None = None
    schema_version: int = SCHEMA_VERSION
    directory: Path | None = field(default=None, compare=False)  # where it was read from (not stored)

    # -- names ------------------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def seq_name(self) -> str:
        return str(self.sequence.get("name") or self.sequence.get("spec") or "?")

    @property
    def budget_name(self) -> str:
        return str(self.budget.get("name", "?"))

    @property
    def budget_label(self) -> str:
        from bench.budgets import budget_label

        return budget_label(self.budget_name, self.budget_overrides)

    @property
    def frames_label(self) -> str:
        """The budget label restricted to the overrides that change the coded frames (count, step, size)."""
        from bench.budgets import FRAME_FIELDS, budget_label

        kept = {k: v for k, v in self.budget_overrides.items() if k in FRAME_FIELDS}
        return budget_label(self.budget_name, kept)

    def budget_label_except(self, field: str) -> str:
        """The budget label without one override: what runs along an axis of that field share."""
        from bench.budgets import budget_label

        return budget_label(self.budget_name, {k: v for k, v in self.budget_overrides.items() if k != field})

    @property
    def label(self) -> str:
        """The method as curves and tables name it: `method[param=value,...]` when run with non-defaults."""
        from bench.params import variant_label

        return variant_label(self.method, self.params)

    def mean(self, metric: str) -> float | None:
        value = (self.metrics.get("mean") or {}).get(metric)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def seconds(self) -> float | None:
        return sum(self.timings.values()) if self.timings else None

    # -- JSON -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "directory"}
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "record") -> Record:
        """A record from its JSON form, type-checked, upgraded from older layouts, key verified."""
        if not isinstance(data, dict):
            raise RecordError(f"{source} is not a JSON object")
        data = dict(data)
        version = data.pop("schema_version", 1)
        if version not in (1, SCHEMA_VERSION):
            raise RecordError(
                f"{source} has schema version {version!r}; this suite reads 1 and {SCHEMA_VERSION}"
            )
        data.pop("_dir", None)
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "directory"}
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name == "schema_version":
                continue
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise RecordError(f"{source} lacks '{name}'")
                continue
            value = data[name]
            if not _is_instance(value, hints[name]):
                raise RecordError(
                    f"{source} field '{name}' should be {_describe(hints[name])}, got {type(value).__name__}"
                )
            values[name] = float(value) if hints[name] is float else value
        record = cls(**values)
        if record.status not in STATUSES:
            raise RecordError(f"{source} has status '{record.status}'; expected one of {', '.join(STATUSES)}")
        if not math.isfinite(record.target_bpp) or record.target_bpp <= 0:
            raise RecordError(f"{source} has target_bpp {record.target_bpp}; expected a positive number")
        if record.ok:
            for name in ("bpp", "bytes"):
                if getattr(record, name) is None:
                    raise RecordError(f"{source} is a finished record without '{name}'")
            if not isinstance(record.metrics.get("mean"), dict):
                raise RecordError(f"{source} is a finished record without metrics.mean")
        record.verify_identity(source)
        return record

    def verify_identity(self, source: str = "record") -> None:
        """The stored key must be the hash of the stored identity, and the identity must name this job."""
        try:
            expected = job_key(self.identity)
        except (KeyError, TypeError, ValueError):
            raise RecordError(f"{source} has an identity without a method") from None
        if expected != self.key:
            raise RecordError(f"{source}: key {self.key} is not the hash of its identity ({expected})")
        for name in ("method", "seed", "target_bpp"):
            if name in self.identity and self.identity[name] != getattr(self, name):
                raise RecordError(
                    f"{source}: {name} {getattr(self, name)!r} contradicts its identity ({self.identity[name]!r})"
                )


def stream_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_stream(record: Record, path: Path) -> str | None:
    """None when the stream file beside a finished record is the one it was measured from, else why not.

    A record without its stream file (results shared as JSON only, such as a study's committed records) is
    still a result: nothing contradicts it; `bench decode` needs the stream, the report does not."""
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"stream {path} cannot be read ({exc.strerror or exc})"
    if record.bytes is not None and len(data) != record.bytes:
        return f"stream {path} holds {len(data)} bytes, the record says {record.bytes}: it was swapped or damaged"
    if record.stream_sha256 is not None and stream_digest(data) != record.stream_sha256:
        return f"stream {path} does not match the record's sha256: it was swapped or damaged"
    return None


# --- type checks of JSON values -------------------------------------------------------------------------------


def _is_instance(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is dict or tp is dict:
        return "an object"
    return {float: "a number", int: "an integer", str: "a string"}.get(tp, str(tp))
