"""Options of `bench run`, declared once: defaults, an optional YAML file, and command-line flags (which win).

Each field of `RunOptions` carries its help, and, where the text form needs one, its parser; `bench.cli`
generates the flags from these fields, so an option is never declared twice. Grid axes (methods, sequences,
rates, seeds, and the budget overrides) accept several values: comma-separated on the command line, lists
in the YAML file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.slurm_units import parse_duration_s, parse_mem_gb, parse_time

EXECUTORS = ("local", "slurm", "submitit-local")
MAX_BPP = 24.0  # 8-bit RGB, uncompressed
MATCHES = ("epochs", "time")


def _number_list(
    name: str, cast: Callable[[str], Any], positive: bool = True, maximum: float | None = None
) -> Callable[[Any], list[Any]]:
    """A parser of `1,2,3` (or a YAML list / scalar) into a list of finite numbers."""

    def parse(value: Any) -> list[Any]:
        items = value if isinstance(value, list) else str(value).split(",")
        text_form = ",".join(str(v) for v in items)
        out = []
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            try:
                if isinstance(item, bool):
                    raise ValueError
                number = cast(text)
            except ValueError:
                raise ConfigError(f"--{name} must be comma-separated numbers, got '{text_form}'") from None
            if isinstance(number, float) and not math.isfinite(number):
                raise ConfigError(f"--{name} values must be finite numbers, got '{text}'")
            if positive and number <= 0:
                raise ConfigError(f"--{name} values must be positive, got '{text}'")
            if maximum is not None and number > maximum:
                raise ConfigError(
                    f"--{name} value {text} is above {maximum:g}, more than the uncompressed frames"
                )
            out.append(number)
        if not out:
            raise ConfigError(f"--{name} was given but holds no value; drop it or give numbers")
        if len(set(out)) != len(out):
            raise ConfigError(f"--{name} lists a value twice ('{text_form}'); give each once")
        return out

    return parse


def _sizes(value: Any) -> list[tuple[int, int]]:
    """`180x320,360x640` (height x width) -> [(180, 320), (360, 640)]."""
    items = value if isinstance(value, list) else str(value).split(",")
    out = []
    for item in items:
        text = str(item).strip().lower()
        height, sep, width = text.partition("x")
        if not sep or not height.isdigit() or not width.isdigit() or int(height) < 2 or int(width) < 2:
            raise ConfigError(f"--resize must be HEIGHTxWIDTH, e.g. 180x320, got '{item}'")
        out.append((int(height), int(width)))
    if len(set(out)) != len(out):
        raise ConfigError(f"--resize lists a size twice ('{value}'); give each once")
    return out


def _names(name: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        if not text.strip(" ,"):
            raise ConfigError(f"--{name} is empty; give at least one name")
        return text

    return parse


def _methods(value: Any) -> Any:
    """A spec string, or (from YAML) a list of spec strings and {name: {param: values}} mappings."""
    if isinstance(value, list):
        if not value:
            raise ConfigError("methods is an empty list; give at least one method")
        for item in value:
            if not isinstance(item, (str, dict)):
                raise ConfigError(f"methods entries must be specs or mappings, got {item!r}")
        return value
    if isinstance(value, dict):
        return [value]
    return _names("methods")(value)


def option(default: Any, help: str, *, parse: Callable[[Any], Any] | None = None, **flag: Any) -> Any:
    """A run option: its default, its help (also the flag's), a parser of its text form, argparse extras."""
    metadata = {"help": help, "parse": parse, "flag": flag}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


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


# The `bench run` flags of the Slurm options (flag, type, help); `slurm_flags` below reads them back
# under SlurmOptions' names. In a config file the same options go under `slurm:`.
SLURM_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("--partition", str, "Slurm: partition (default: the cluster's default)"),
    ("--cpus-per-task", int, "Slurm: CPUs a task (default: min(4, a node's CPUs))"),
    ("--mem", str, "Slurm: memory a task, e.g. 16G (default: the partition's)"),
    ("--gpus", int, "Slurm: GPUs a task (default 0; 1 with --device cuda)"),
    ("--time", str, "Slurm: time limit a task, minutes or [D-]HH:MM:SS (default 240)"),
    ("--account", str, "Slurm: account charged (default: your default account)"),
    ("--slurm-array-parallelism", int, "Slurm: tasks running at once (default 32)"),
    (
        "--max-pending",
        str,
        "Slurm: stop when no job has started for this long, e.g. 30m, 12h (default 24h; 0 = no limit)",
    ),
)


@dataclass
class RunOptions:
    methods: Any = option(
        "all",
        "'all' (default) or comma-separated method specs: name or name[param=value,...]; "
        "'|' between values is a grid axis, '/' separates tuple items (`bench ls params METHOD`)",
        parse=_methods,
    )
    seq: str = option(
        "bunny", "sequence name(s) (default bunny), 'uvg', or a video/.yuv/PNG-folder", parse=_names("seq")
    )
    bpp: list[float] | None = option(
        None,
        "comma-separated target bits per pixel (default: the budget's ladder)",
        parse=_number_list("bpp", float, maximum=MAX_BPP),
    )
    budget: str = option("cpu", "smoke | ci | cpu (default) | study | paper")
    epochs: list[int] | None = option(
        None,
        "override the budget's training epochs; several values form a grid axis",
        parse=_number_list("epochs", int),
    )
    frames: list[int] | None = option(
        None, "override the budget's frame count; a grid axis", parse=_number_list("frames", int)
    )
    step: list[int] | None = option(
        None,
        "override the budget's frame step (2: every other frame, so the clip spans twice the time); a grid axis",
        parse=_number_list("step", int),
    )
    resize: list[tuple[int, int]] | None = option(
        None, "override the budget's frame size, HEIGHTxWIDTH (e.g. 180x320); a grid axis", parse=_sizes
    )
    lr: list[float] | None = option(
        None, "override the budget's peak learning rate; a grid axis", parse=_number_list("lr", float)
    )
    train_seconds: list[float] | None = option(
        None,
        "override the budget's training seconds under --match time; a grid axis",
        parse=_number_list("train-seconds", float),
    )
    seed: int = option(0, "first seed (default 0)", type=int)
    repeats: int = option(1, "seeds per point (seed, seed+1, ...)", type=int)
    seeds: list[int] | None = option(
        None,
        "explicit comma-separated seeds (instead of --seed/--repeats)",
        parse=_number_list("seeds", int, False),
    )
    match: str = option(
        "epochs",
        "epochs: every trained method gets the budget's epochs (default); time: the same training seconds",
        choices=list(MATCHES),
    )
    device: str = option("cpu", "cpu (default) or cuda")
    size: str | None = option(None, "WxH, for raw .yuv inputs")
    jobs: int = option(1, "local worker processes (default 1: in-process)", type=int)
    executor: str = option(
        "local",
        "local (default), slurm (via submitit), submitit-local (submitit's local executor)",
        choices=list(EXECUTORS),
    )
    results: str = option("results", "results directory (default ./results)")
    force: bool = option(False, "redo jobs that already have a record")
    dry_run: bool = option(False, "list the jobs with an estimated time each and in total; run nothing")
    yes: bool = option(False, "run a grid of more than 10,000 jobs without asking")
    slurm: SlurmOptions = field(
        default_factory=SlurmOptions, metadata={"help": None, "parse": None, "flag": {}}
    )

    def seed_list(self) -> list[int]:
        if self.seeds:
            return list(self.seeds)
        return [self.seed + i for i in range(self.repeats)]

    def budget_axes(self) -> dict[str, list[Any]]:
        """The budget overrides as grid axes: field name -> values (only those given)."""
        axes = {
            "epochs": self.epochs,
            "frames": self.frames,
            "step": self.step,
            "size": self.resize,
            "lr": self.lr,
            "train_seconds": self.train_seconds,
        }
        return {name: values for name, values in axes.items() if values}


RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunOptions)}
_SLURM_FIELDS = {f.name for f in dataclasses.fields(SlurmOptions)}


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of option: value")
    return data


def _typed(key: str, value: Any, default: Any) -> Any:
    """A plain (unparsed) option checked against its default's type."""
    expected = type(default) if default is not None else str
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(
            f"config key '{key}' must be {expected.__name__}, got {type(value).__name__} ({value!r})"
        )
    return value


def _set_slurm(options: RunOptions, value: Any) -> None:
    if not isinstance(value, dict):
        raise ConfigError("config key 'slurm' must be a mapping (partition, time_min, gpus, ...)")
    for sub, sub_value in value.items():
        sub = str(sub)
        if sub not in _SLURM_FIELDS:
            raise ConfigError(f"unknown slurm option '{sub}': use one of {', '.join(sorted(_SLURM_FIELDS))}")
        default = getattr(SlurmOptions(), sub)
        setattr(options.slurm, sub, _typed(f"slurm.{sub}", sub_value, default if default is not None else ""))


def resolve_options(cli: dict[str, Any], config_file: str | None = None) -> RunOptions:
    """Defaults <- YAML file <- flags (None = not given). Unknown keys and wrong types name the key."""
    options = RunOptions()
    layers = [load_yaml(Path(config_file))] if config_file else []
    layers.append({k: v for k, v in cli.items() if v is not None and v is not False})
    for layer in layers:
        for key, value in layer.items():
            key = str(key).replace("-", "_")
            if key == "slurm":
                _set_slurm(options, value)
                continue
            if key not in RUN_FIELDS:
                close = difflib.get_close_matches(key, RUN_FIELDS, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(
                    f"unknown run option '{key}': {hint}use one of {', '.join(sorted(RUN_FIELDS))}"
                )
            parse = RUN_FIELDS[key].metadata["parse"]
            if value is None:
                setattr(options, key, None)
            elif parse is not None:
                setattr(options, key, parse(value))
            else:
                setattr(options, key, _typed(key, value, getattr(RunOptions(), key)))
    if options.executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{options.executor}': use one of {', '.join(EXECUTORS)}")
    if options.match not in MATCHES:
        raise ConfigError(f"unknown --match '{options.match}': use 'epochs' (the papers' protocol) or 'time'")
    if options.repeats < 1 or options.jobs < 1:
        raise ConfigError("--repeats and --jobs must be at least 1")
    if not options.results.strip():
        raise ConfigError("--results is empty; name a results directory")
    for seed in options.seed_list():
        if not 0 <= seed < 2**31:
            raise ConfigError(f"seed {seed} is out of range: seeds are integers from 0 to 2**31 - 1")
    return options


def add_run_flags(parser: Any) -> None:
    """The `bench run` flags: one per `RunOptions` field, then the Slurm resource flags."""
    for name, f in RUN_FIELDS.items():
        if name == "slurm":
            continue
        flag = "--" + name.replace("_", "-")
        extras = dict(f.metadata["flag"])
        if f.type in ("bool",) or isinstance(f.default, bool):
            parser.add_argument(flag, action="store_true", default=None, help=f.metadata["help"])
        else:
            parser.add_argument(flag, default=None, help=f.metadata["help"], **extras)
    for flag, kind, help_text in SLURM_FLAGS:
        parser.add_argument(flag, type=kind, default=None, help=help_text)


def slurm_flags(args: Any) -> dict[str, Any]:
    """The Slurm options given as `bench run` flags, parsed, under SlurmOptions' names (unset ones left out)."""
    flags = {
        "partition": getattr(args, "partition", None),
        "cpus": getattr(args, "cpus_per_task", None),
        "mem": getattr(args, "mem", None),
        "gpus": getattr(args, "gpus", None),
        "account": getattr(args, "account", None),
        "array_parallelism": getattr(args, "slurm_array_parallelism", None),
    }
    if flags["mem"] is not None:
        parse_mem_gb(flags["mem"])  # a bad size is refused here, as a bad --time is, before Slurm is sought
    if getattr(args, "time", None) is not None:
        flags["time_min"] = parse_time(args.time, "--time")
    if getattr(args, "max_pending", None) is not None:
        flags["max_pending_s"] = parse_duration_s(args.max_pending, "--max-pending")
    return {k: v for k, v in flags.items() if v is not None}
