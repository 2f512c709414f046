"""What identifies a job: its spec (plain data that pickles to workers and clusters) and its content key.

The key hashes everything the result depends on: method, version and effective hyper-parameters, the
sequence's checksum and frame range, the effective budget, seed, matching protocol and metric definitions.
A method run with its defaults and a budget without overrides keep the keys they always had.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench import registry
from bench.budgets import Budget, budget_label, get_budget, with_overrides
from bench.params import build_config, variant_label
from bench.record import job_key
from bench.unkeyed import keyed_fields

__all__ = ["InputIdentity", "JobSpec", "PlannedJob", "hyper_identity", "job_identity", "job_key"]


@dataclass(frozen=True)
class JobSpec:
    """Everything that identifies one job; plain data so it pickles to worker processes and clusters."""

    method: str
    seq: str
    target_bpp: float
    budget: str
    seed: int = 0
    device: str = "cpu"
    match: str = "epochs"  # "epochs": every method gets the budget's epochs; "time": the same seconds
    size: tuple[int, int] | None = None  # (width, height) of a raw .yuv input
    results: str = "results"
    params: tuple[tuple[str, Any], ...] = ()  # method parameters set by the grid (non-defaults, sorted)
    overrides: tuple[tuple[str, Any], ...] = ()  # budget fields replaced by the grid (sorted)

    @property
    def label(self) -> str:
        return variant_label(self.method, dict(self.params))

    @property
    def budget_label(self) -> str:
        return budget_label(self.budget, dict(self.overrides))

    def effective_budget(self) -> Budget:
        return with_overrides(get_budget(self.budget), self.overrides)

    def config(self) -> Any:
        """The hyper-parameters the method's `plan` starts from."""
        return build_config(registry.get(self.method), self.params)

    def describe(self) -> str:
        return (
            f"{self.label} on {self.seq} at {self.target_bpp:g} bpp ({self.budget_label}, seed {self.seed})"
        )


@dataclass(frozen=True)
class PlannedJob:
    spec: JobSpec
    key: str
    identity: dict[str, Any]
    pixels: int = 0  # frames x height x width the budget codes (for cost estimates)


@dataclass(frozen=True)
class InputIdentity:
    """What identifies a job's input: its name, decoded geometry and a digest of the frames the budget takes
    (so a changed file, or a raw .yuv read with a corrected --size, is a new job)."""

    name: str
    width: int
    height: int
    num_frames: int
    frames_sha256: str


def hyper_identity(config: Any) -> dict[str, Any]:
    """The hyper-parameters a key hashes: every field of the config, but those its class lists in
    ``UNKEYED_DEFAULTS`` while they hold their default (`bench.unkeyed`)."""
    return keyed_fields(config)


def job_identity(spec: JobSpec, seq_checksum: str, source: InputIdentity) -> dict[str, Any]:
    """The content a job's result depends on; its hash is the job key."""
    from bench.metrics import METRICS_VERSION

    cls = registry.get(spec.method)
    budget = spec.effective_budget()
    return {
        "method": spec.method,
        "method_version": cls.version,
        "hyper": hyper_identity(spec.config()),
        "sequence_checksum": seq_checksum,
        "input": dataclasses.asdict(source),
        "frames": {"start": budget.start, "count": budget.frames, "step": budget.step, "size": budget.size},
        "budget": budget.identity(),
        "target_bpp": spec.target_bpp,
        "seed": spec.seed,
        "match": spec.match if cls.trains else "n/a",
        "metrics_version": METRICS_VERSION,
    }
