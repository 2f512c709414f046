"""Timings of the NeRV family's hot paths for `bench perf`, reached through the adapters' `perf_sections`.

Each section is a function of the device and the repeat count `bench perf` was given; it prints its
measurements beside its baseline and returns them.
"""

from __future__ import annotations

from typing import Any


def train_section(device: str, repeats: int) -> dict[str, Any]:
    """Training frames/s of the family's loops against plain loops (`timing.train`): NeRV's at two sizes,
    hnerv's and hinerv's at the cpu size."""
    from methods.nerv_family.timing.train import perf_train, perf_train_hinerv, perf_train_hnerv

    return {
        "nerv": perf_train(device=device, repeats=repeats),
        "hnerv": perf_train_hnerv(device=device, repeats=repeats),
        "hinerv": perf_train_hinerv(device=device, repeats=repeats),
    }


def masks_section(device: str, repeats: int) -> dict[str, Any]:
    """Supermask against dense training steps on the rate-sized networks (`timing.masks`); CPU timings."""
    from methods.nerv_family.timing.masks import perf_masks_section

    return perf_masks_section()


def coding_section(device: str, repeats: int) -> dict[str, Any]:
    """Coded size against the entropy bound, and throughput (`timing.coding`); host code."""
    from methods.nerv_family.timing.coding import perf_coding

    return perf_coding()


def decode_section(device: str, repeats: int) -> dict[str, Any]:
    """Decoders' render speed against a plain NCHW render (`timing.decode`, best of its own 3 runs)."""
    from methods.nerv_family.timing.decode import perf_decode

    return perf_decode()
