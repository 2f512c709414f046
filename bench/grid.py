"""The job grid: method variants x sequences x budget variants x rates x seeds, expanded before anything runs.

Every axis is checked up front (unknown methods or parameters, empty or duplicated lists, sequences too
short for the budget), so a typo costs nothing. A grid of more than `MAX_JOBS_UNASKED` jobs needs `--yes`.
"""

from __future__ import annotations

import itertools
from typing import Any

from bench import registry
from bench.budgets import FRAME_FIELDS, Budget, get_budget, with_overrides
from bench.errors import ConfigError
from bench.identity import InputIdentity, JobSpec, PlannedJob, job_identity, job_key
from bench.params import MethodVariant, expand, parse_spec, split_top_level
from bench.runconfig import RunOptions

MAX_JOBS_UNASKED = 10_000


def _variants_of_text(item: str) -> list[MethodVariant]:
    if item == "all":
        return [MethodVariant(name) for name in registry.names(default_run=True)]
    name, raw = parse_spec(item)
    return expand(name, registry.get(name), raw)


def _variants_of_mapping(entry: dict[str, Any]) -> list[MethodVariant]:
    """{name: {param: value or [values]}} from a config file; a list is a grid axis, except that a flat list
    of numbers given to a tuple-typed parameter is one tuple (give a list of lists for a grid of tuples)."""
    from bench.params import parameters

    variants = []
    for name, params in entry.items():
        cls = registry.get(str(name))
        params = params or {}
        if not isinstance(params, dict):
            raise ConfigError(f"methods entry '{name}' must map parameter names to values, got {params!r}")
        table = {p.name: p for p in parameters(cls)}
        raw: dict[str, list[Any]] = {}
        for key, value in params.items():
            is_tuple = key in table and table[key].type_name.startswith("tuple")
            if isinstance(value, list) and not (is_tuple and not any(isinstance(v, list) for v in value)):
                raw[str(key)] = value
            else:
                raw[str(key)] = [value]
        variants += expand(str(name), cls, raw, from_text=False)
    return variants


def method_variants(spec: Any) -> list[MethodVariant]:
    """The method axis of a grid, from `--methods` text or a config file's list; duplicates refused."""
    items = spec if isinstance(spec, list) else split_top_level(str(spec))
    variants: list[MethodVariant] = []
    for item in items:
        if isinstance(item, dict):
            found = _variants_of_mapping(item)
        else:
            text = str(item).strip()
            if not text:
                raise ConfigError(f"--methods '{spec}' holds an empty entry; remove the stray comma")
            found = _variants_of_text(text)
        for variant in found:
            if variant in variants:
                raise ConfigError(f"method '{variant.label}' is listed twice; give it once")
            variants.append(variant)
    if not variants:
        raise ConfigError("no method to run: `bench ls methods` lists them")
    return variants


def budget_variants(budget: str, axes: dict[str, list[Any]]) -> list[tuple[tuple[str, Any], ...]]:
    """Each combination of the budget overrides, as the fields that really differ from the named budget."""
    base = get_budget(budget).to_dict()
    out = []
    names = sorted(axes)
    for combo in itertools.product(*(axes[n] for n in names)):
        changes = []
        for name, value in zip(names, combo, strict=True):
            reference = base[name]
            if name == "size" and reference is not None:
                reference = tuple(reference)
            if value != reference:
                changes.append((name, value))
        if tuple(changes) not in out:
            out.append(tuple(changes))
    return out


def expand_sequences(spec: str) -> list[str]:
    """'uvg' stands for the 7 UVG sequences; otherwise a comma-separated list of names or paths."""
    from bench.data.manifests import expand_datasets

    names: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        for name in expand_datasets([item]):
            if name in names:
                raise ConfigError(f"sequence '{name}' is listed twice; give it once")
            names.append(name)
    if not names:
        raise ConfigError("--seq names no sequence: `bench ls sequences` lists them")
    return names


def plan_grid(options: RunOptions, size: tuple[int, int] | None = None) -> list[PlannedJob]:
    """Expand the grid; every sequence is opened (and checksummed) once, before any job runs."""
    from bench.data import load_sequence

    variants = method_variants(options.methods)
    budgets = budget_variants(options.budget, options.budget_axes())
    sequences = expand_sequences(options.seq)
    seeds = options.seed_list()
    named = get_budget(options.budget)
    ladder = options.bpp or list(named.bpp_ladder)
    count = len(variants) * len(budgets) * len(sequences) * len(ladder) * len(seeds)
    if count > MAX_JOBS_UNASKED and not options.yes:
        raise ConfigError(
            f"this grid expands to {count:,} jobs (more than {MAX_JOBS_UNASKED:,}); check it with --dry-run, "
            "then add --yes to run it"
        )
    jobs: list[PlannedJob] = []
    keys: set[str] = set()
    for seq in sequences:
        sequence = load_sequence(seq, size=size)
        for overrides in budgets:
            budget: Budget = with_overrides(named, overrides)
            # a sequence too short for the budget fails every job alike: say so once, before anything runs
            frames = sequence.frame_range(
                budget.start, budget.frames, budget.step, asker=f"budget '{budget.name}'"
            )
            height, width = budget.size or (sequence.height, sequence.width)
            source = InputIdentity(
                seq, sequence.width, sequence.height, sequence.num_frames, sequence.frames_digest(frames)
            )
            for variant in variants:
                trains = registry.get(variant.method).trains
                # codecs do not train: an epochs or lr override leaves them one job (one key) per rate
                kept = overrides if trains else tuple((k, v) for k, v in overrides if k in FRAME_FIELDS)
                for bpp in ladder:
                    for seed in seeds:
                        spec = JobSpec(
                            method=variant.method,
                            seq=seq,
                            target_bpp=float(bpp),
                            budget=options.budget,
                            seed=seed,
                            device=options.device,
                            match=options.match,
                            size=size,
                            results=options.results,
                            params=variant.params,
                            overrides=kept,
                        )
                        identity = job_identity(spec, sequence.checksum, source)
                        key = job_key(identity)
                        if key not in keys:
                            keys.add(key)
                            jobs.append(PlannedJob(spec, key, identity, len(frames) * height * width))
    return jobs
