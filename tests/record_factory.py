"""Records built in tests the way the runner builds them: the key is the hash of the identity, so they verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.record import Record, job_key


def make_record(**fields: Any) -> Record:
    """A record whose key is the hash of its identity (method, seed, target, match, budget, sequence...),
    as the runner writes them; `identity` adds what else tells two test records apart."""
    identity = {
        "method": fields["method"],
        "seed": fields.get("seed", 0),
        "target_bpp": fields["target_bpp"],
        "match": fields.get("match", "n/a"),
        "budget": fields["budget"]["name"],
        "sequence": fields.get("sequence", {}).get("name"),
        **fields.pop("identity", {}),
    }
    defaults = {"method_version": "1", "seed": 0, "device": "cpu", "match": "n/a"}
    return Record(**{**defaults, **fields}, key=job_key(identity), identity=identity)


def write_claim_records(
    folder: Path,
    claim: dict,
    differences: dict[int, float],
    base: float = 25.0,
    match: str = "n/a",
    bpp: float = 0.3,
    precision: dict[str, str] | None = None,
) -> Path:
    """Records of both sides of a claim: the worse method at `base`, the better at base + difference per seed
    (for a lower-is-better metric the better one is lower by it); `precision`: method -> what it trained in."""
    from bench import store
    from bench.budgets import get_budget
    from bench.check import _METRICS

    name, higher_is_better = _METRICS[claim["metric"].replace("-", "_")]
    sign = 1 if higher_is_better else -1
    for seed, diff in differences.items():
        for method, value in (
            (claim["worse"], base + 0.1 * seed),
            (claim["better"], base + 0.1 * seed + sign * diff),
        ):
            record = make_record(
                method=method,
                seed=seed,
                target_bpp=bpp,
                status="ok",
                budget=get_budget(claim["budget"]).to_dict(),
                sequence={"name": claim["sequence"]},
                bytes=100,
                bpp=bpp,
                metrics={"mean": {name: value}},
                match=match,
                stats={"precision": precision[method]} if precision and method in precision else {},
            )
            store.write_result(folder, record.key, record, b"x" * 100)
    return folder
