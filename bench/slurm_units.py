"""Slurm's own formats for a run's requests: time limits ([D-]HH:MM:SS or minutes), memory sizes (16G,
16000M) and the durations of --max-pending (90s, 30m, 12h, 2d); each bad value is one line naming the flag."""

from __future__ import annotations

import math
import re

from bench.errors import ConfigError

_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)B?$", re.IGNORECASE)
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(text: str, flag: str = "--time") -> int:
    """Slurm's time formats (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) -> whole minutes, rounded up."""
    match = _TIME.match(str(text).strip())
    if not match:
        raise ConfigError(
            f"{flag} '{text}' is not a duration: give minutes (240) or Slurm's [D-]HH:MM:SS (4:00:00, 1-00:00:00)"
        )
    days, first, second, third = match.groups()
    a, b, c = int(first), int(second or 0), int(third or 0)
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + a * 3600 + b * 60 + c
    elif third is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif second is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # minutes
        seconds = a * 60
    return math.ceil(seconds / 60)


def parse_duration_s(text: str, flag: str) -> float:
    """A duration for --max-pending: seconds with a unit (90s, 30m, 12h, 2d) or Slurm's time format."""
    value = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value)
    if match:
        return float(match.group(1)) * units[match.group(2)]
    if value == "0":
        return 0.0
    try:
        return 60.0 * parse_time(value, flag)
    except ConfigError:
        raise ConfigError(
            f"{flag} '{text}' is not a duration: give it with a unit (90s, 30m, 12h, 2d), or 0 for no limit"
        ) from None


def parse_mem_gb(text: str) -> float:
    """--mem as Slurm writes it (16G, 16000M, 1T; a bare number is megabytes) -> gigabytes."""
    match = _MEM.match(str(text).strip())
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"--mem '{text}' is not a memory size: give it as Slurm does, e.g. 16G or 16000M")
    value, unit = float(match.group(1)), (match.group(2) or "M").upper()
    return value * {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}[unit]
