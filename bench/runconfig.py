"""Options of `bench run`: defaults, an optional YAML file, and command-line flags (which win)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError


@dataclass
class SlurmOptions:
    partition: str | None = None  # Slurm partition; None = the cluster's default one
    time_min: int = 240  # time limit of a task, minutes
    gpus: int = 0  # GPUs a task; --device cuda asks at least one
    cpus: int = 0  # CPUs a task; 0 = min(4, CPUs of a node of the partition)
    array_parallelism: int = 32  # tasks of the array running at once
    mem: str | None = None  # memory a task as Slurm writes it (16G); None = the partition's default
    account: str | None = None  # account the jobs are charged to; None = the user's default
    max_pending_s: float = 86400.0  # stop when the jobs pend this long with none running; 0 = no limit
    timeout_requeues: int = (
        20  # times a task reaching its time limit is requeued to go on from its checkpoint
    )


@dataclass
class RunOptions:
    methods: str = "all"
    seq: str = "bunny"
    bpp: str | None = None  # comma-separated; None = the budget's ladder, shared by every method
    budget: str = "cpu"
    seed: int = 0
    repeats: int = 1
    match: str = "epochs"
    device: str = "cpu"
    size: str | None = None
    jobs: int = 1
    executor: str = "local"
    results: str = "results"
    force: bool = False
    dry_run: bool = False
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.repeats)]


_FIELDS = {f.name: f for f in dataclasses.fields(RunOptions)}
_SLURM_FIELDS = {f.name for f in dataclasses.fields(SlurmOptions)}
EXECUTORS = ("local", "slurm", "submitit-local")


def _check_type(key: str, value: Any, default: Any) -> Any:
    expected = type(default) if default is not None else str
    if expected is float and isinstance(value, int):
        return float(value)
    if key == "bpp" and isinstance(value, (int, float, list)):
        values = value if isinstance(value, list) else [value]
        return ",".join(str(v) for v in values)
    if key in ("methods", "seq") and isinstance(value, list):
        return ",".join(str(v) for v in value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(
            f"config key '{key}' must be {expected.__name__}, got {type(value).__name__} ({value!r})"
        )
    return value


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of option: value")
    return data


def resolve_options(cli: dict[str, Any], config_file: str | None = None) -> RunOptions:
    """Defaults <- YAML file <- flags. Unknown keys and wrong types are errors naming the key."""
    options = RunOptions()
    layers = [load_yaml(Path(config_file))] if config_file else []
    layers.append({k: v for k, v in cli.items() if v is not None})
    for layer in layers:
        for key, value in layer.items():
            key = str(key).replace("-", "_")
            if key == "slurm":
                if not isinstance(value, dict):
                    raise ConfigError("config key 'slurm' must be a mapping (partition, time_min, gpus, ...)")
                for sub, sub_value in value.items():
                    sub = str(sub)
                    if sub not in _SLURM_FIELDS:
                        raise ConfigError(
                            f"unknown slurm option '{sub}': use one of {', '.join(sorted(_SLURM_FIELDS))}"
                        )
                    default = getattr(SlurmOptions(), sub)
                    setattr(
                        options.slurm,
                        sub,
                        _check_type(f"slurm.{sub}", sub_value, default if default is not None else ""),
                    )
                continue
            if key not in _FIELDS:
                raise ConfigError(f"unknown run option '{key}': use one of {', '.join(sorted(_FIELDS))}")
            setattr(options, key, _check_type(key, value, getattr(RunOptions(), key)))
    if options.executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{options.executor}': use one of {', '.join(EXECUTORS)}")
    if options.match not in ("epochs", "time"):
        raise ConfigError(f"unknown --match '{options.match}': use 'epochs' (the papers' protocol) or 'time'")
    if options.repeats < 1 or options.jobs < 1:
        raise ConfigError("--repeats and --jobs must be at least 1")
    return options
