"""Rate-distortion helpers: interpolation at a matched bpp, BD-rate / BD-PSNR and the reasons they are withheld."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.rd import MIN_POINTS, bd_psnr, bd_rate, curve_problem, interpolate_at

BPP = np.array([0.05, 0.1, 0.2, 0.4, 0.8])
PSNR = np.array([27.1, 29.8, 32.2, 34.1, 35.6])  # a concave RD curve, as real codecs draw


def test_bd_of_a_curve_against_itself_is_zero() -> None:
    assert bd_rate(BPP, PSNR, BPP, PSNR).value == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(BPP, PSNR, BPP, PSNR).value == pytest.approx(0.0, abs=1e-9)


def test_ten_percent_fewer_bits_for_the_same_psnr_is_minus_ten_percent() -> None:
    result = bd_rate(BPP, PSNR, 0.9 * BPP, PSNR)
    assert result.ok and result.value == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate(0.9 * BPP, PSNR, BPP, PSNR).value == pytest.approx(100 / 0.9 - 100, abs=1e-6)


def test_bd_psnr_of_a_shifted_curve_is_the_shift() -> None:
    assert bd_psnr(BPP, PSNR, BPP, PSNR + 0.5).value == pytest.approx(0.5, abs=1e-9)
    assert bd_psnr(BPP, PSNR, BPP, PSNR - 1.0).value == pytest.approx(-1.0, abs=1e-9)


def test_point_order_does_not_matter() -> None:
    order = [3, 0, 4, 1, 2]
    assert bd_rate(BPP[order], PSNR[order], 0.9 * BPP, PSNR).value == pytest.approx(-10.0, abs=1e-6)


def test_interpolation_at_matched_bpp_on_a_known_line() -> None:
    # PSNR = 30 + 6 log2(bpp / 0.1): straight in log rate, so log interpolation is exact anywhere inside
    rates = [0.1, 0.2, 0.4, 0.8]
    line = [30 + 6 * math.log2(r / 0.1) for r in rates]
    for target in (0.1, 0.15, 0.3, 0.55, 0.8):
        assert interpolate_at(rates, line, target) == pytest.approx(30 + 6 * math.log2(target / 0.1))
    # a line in bpp itself is exact with linear interpolation
    assert interpolate_at([1.0, 2.0, 4.0], [10.0, 20.0, 40.0], 3.0, log_rate=False) == pytest.approx(30.0)
    assert interpolate_at(rates, line, 0.05) is None and interpolate_at(rates, line, 1.0) is None


def test_interpolation_averages_points_at_the_same_bpp() -> None:
    assert interpolate_at([0.1, 0.1, 0.2], [30.0, 32.0, 35.0], 0.1) == pytest.approx(31.0)


def test_short_curves_get_a_reason_not_a_number() -> None:
    result = bd_rate(BPP[:3], PSNR[:3], BPP, PSNR)
    assert result.value is None and result.reason == f"anchor: 3 points (BD needs {MIN_POINTS})"
    assert bd_psnr(BPP, PSNR, BPP[:2], PSNR[:2]).reason == f"test: 2 points (BD needs {MIN_POINTS})"


def test_curves_that_barely_overlap_get_a_reason() -> None:
    result = bd_rate(BPP, PSNR, BPP, PSNR + 7.0)  # PSNR ranges overlap by 1.5 of 15.5 dB
    assert result.value is None and result.reason.startswith("quality ranges overlap 10%")
    far = bd_psnr(BPP, PSNR, BPP * 20, PSNR)  # rates a factor 20 apart
    assert far.value is None and "bpp ranges overlap" in far.reason


def test_non_monotone_or_repeated_points_get_a_reason() -> None:
    wobbly = PSNR.copy()
    wobbly[3] = wobbly[1]
    assert curve_problem(BPP, wobbly) == "quality does not rise with bpp"
    assert curve_problem([0.1, 0.1, 0.2, 0.4], [30, 31, 32, 33]) == "two points at the same bpp"
    assert curve_problem([0.1, 0.2, float("nan"), 0.4], [30, 31, 32, 33]) == "missing or non-positive values"
    assert bd_rate(BPP, PSNR, BPP, wobbly).reason == "test: quality does not rise with bpp"
