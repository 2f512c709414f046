"""Compiling a network's training step (`torch.compile`): whether it can run here, and the compiled forward.

Compiling fuses the many small element-wise ops of a step into a few kernels, so each step runs faster; but
the first step pays for the compilation (about a minute on 2 CPU cores), so only long runs gain
(docs/performance.md measures both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def compile_unavailable(device: torch.device) -> str | None:
    """Why `torch.compile` cannot build kernels for `device` on this machine; None when it can."""
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as err:  # the compiler lookup raises its own error types, all meaning "none here"
            return f"no C++ compiler ({str(err).splitlines()[0][:120]}); install g++ to compile"
        return None
    if device.type == "cuda":
        try:
            import triton  # noqa: F401 - the GPU kernels are triton's
        except ImportError:
            return "triton is not installed; install the torch build that ships it to compile on CUDA"
        return None
    return f"compiling is not supported on {device.type}"


def training_forward(model: nn.Module, device: torch.device, wanted: bool) -> tuple[Callable, str]:
    """(the callable a training step runs, what ran: "on", "off" or "unavailable: <why>").

    Shapes are static (`dynamic=False`): a loop's batches have one shape, save a shorter last batch, which
    costs one more compilation rather than slower kernels for every step."""
    if not wanted:
        return model, "off"
    reason = compile_unavailable(device)
    if reason is not None:
        return model, f"unavailable: {reason}"
    return torch.compile(model, dynamic=False), "on"


@contextmanager
def compiled_step_settings(enabled: bool, device: torch.device) -> Iterator[None]:
    """What a compiled training step runs under, then the previous settings again.

    - Deterministic algorithms: inductor otherwise lowers a gather's backward to atomic adds, and two runs
      of one seed (hinerv version 2) ended 1.7 dB apart; with them the same seed trains the same weights,
      as eager training does.
    - On a CPU, denormal floats flushed to zero: late in a run the compiled step met denormals and ran
      slower than eager (0.92 against 0.83 s an epoch); flushed, 0.67-0.72 s (docs/performance.md).
      Eager training is left as it was: flushing changed neither its result nor its speed.
    """
    if not enabled:
        yield
        return
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flush:
            torch.set_flush_denormal(False)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
