"""`bench perf coding`: the range coder's size against the entropy bound, and its throughput."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def perf_coding(count: int = 1_000_000) -> dict[str, Any]:
    """Range coding of 8-bit weight-like symbols and of 4-level masks: bits / entropy bound, MB/s."""
    from methods.nerv_family.coding import decode_symbols, empirical_entropy_bits, encode_symbols

    rng = np.random.default_rng(0)
    weights = np.clip(np.round(rng.laplace(127.5, 12.0, count)), 0, 255).astype(np.int64)
    probabilities = np.array([0.7, 0.2, 0.07, 0.03])
    levels = rng.choice(4, size=count, p=probabilities).astype(np.int64)
    result: dict[str, Any] = {}
    for name, symbols, alphabet, known in (
        ("weights", weights, 256, None),
        ("level maps", levels, 4, probabilities),
    ):
        begin = time.perf_counter()
        data = encode_symbols(symbols, alphabet, known)
        encode_s = time.perf_counter() - begin
        begin = time.perf_counter()
        back = decode_symbols(data, count, alphabet, known)
        decode_s = time.perf_counter() - begin
        assert np.array_equal(np.asarray(back), symbols)
        if known is None:
            bound = empirical_entropy_bits(symbols, alphabet)
        else:
            bound = float(-np.log2(probabilities[symbols]).sum())
        ratio = 8 * len(data) / bound
        result[name] = {
            "ratio": ratio,
            "encode_MBps": count / encode_s / 1e6,
            "decode_MBps": count / decode_s / 1e6,
        }
        print(
            f"coding {name}: {8 * len(data):,} bits vs entropy bound {bound:,.0f} ({ratio:.4f}x), "
            f"encode {count / encode_s / 1e6:.1f} MB/s, decode {count / decode_s / 1e6:.1f} MB/s "
            "(one-byte symbols)"
        )
    return result
