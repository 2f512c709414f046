"""Records built in tests the way the runner builds them: the key is the hash of the identity, so they verify."""

from __future__ import annotations

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
