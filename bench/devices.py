"""The device a command asks for, checked before anything runs: one line naming the cause and the fix
instead of a traceback from deep inside torch minutes into a run."""

from __future__ import annotations

import re

from bench.errors import ConfigError

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def check_name(device: str, flag: str = "--device") -> None:
    """Raise a one-line `ConfigError` unless `device` names a device (cpu, cuda, cuda:N), wherever it runs."""
    if not _DEVICE.match(device):
        raise ConfigError(f"{flag} '{device}' is not a device: use cpu, cuda or cuda:N")


def require(device: str, flag: str = "--device") -> None:
    """Raise a one-line `ConfigError` unless `device` is 'cpu' or a CUDA device torch can use here."""
    match = _DEVICE.match(device)
    if not match:
        raise ConfigError(f"{flag} '{device}' is not a device: use cpu, cuda or cuda:N")
    if match.group(1) == "cpu":
        return
    import torch

    if torch.version.cuda is None:
        raise ConfigError(
            f"{flag} {device} asked, but this torch ({torch.__version__}) is a CPU-only build; use --device cpu, "
            f"or on a machine with an NVIDIA GPU install a CUDA build of torch"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{flag} {device} asked, but torch sees no CUDA device here (no GPU, no driver, or "
            f"CUDA_VISIBLE_DEVICES hides them); use --device cpu, or run where nvidia-smi lists a GPU"
        )
    index = int(match.group(2) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"{flag} {device} asked, but torch sees {torch.cuda.device_count()} CUDA device(s) here; "
            f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
        )


def make_deterministic(device: str) -> None:
    """On CUDA: deterministic kernels (cuDNN without autotuning, cuBLAS with a fixed workspace), so the same
    seed gives the same bytes; ops with no deterministic CUDA kernel warn instead of failing the job (the
    GPU tests show whether a method's bytes repeat). Nothing to do on the CPU, whose kernels already are."""
    if not device.startswith("cuda"):
        return
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: before any work
    import torch

    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
