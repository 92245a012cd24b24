"""Bjøntegaard deltas on curves whose answer is known by hand: scaled rates, shifted metrics, straight lines
in log-rate, an exactly cubic-representable 4-point set, swapped curves, partial overlap, and bad input."""

import math

import numpy as np
import pytest
from scipy.integrate import trapezoid
from scipy.interpolate import pchip_interpolate

from polycodec.metrics.bd import bd_metric, bd_rate

METHODS = ["pchip", "cubic"]

# A realistic anchor: four operating points in the style of a QP 22/27/32/37 sweep (kbit/s, PSNR dB).
RATE = [1358.24, 2486.44, 4593.60, 9487.76]
PSNR = [34.851, 36.845, 38.615, 40.037]


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method):
    assert bd_rate(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-12)
    assert bd_metric(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_every_rate_times_0_8_is_minus_20_percent(method):
    # log(0.8 R) = log R + log 0.8 at every metric value: the mean gap is log 0.8, exp(log 0.8) - 1 = -0.2.
    test_rate = [0.8 * r for r in RATE]
    assert bd_rate(RATE, PSNR, test_rate, PSNR, method) == pytest.approx(-20.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_metric_plus_one_db_at_the_same_rates_is_plus_one(method):
    assert bd_metric(RATE, PSNR, RATE, [p + 1.0 for p in PSNR], method) == pytest.approx(1.0, abs=1e-9)


# Straight lines in log-rate, worked by hand (x = PSNR in dB, L = ln(rate)):
#   anchor: (30 dB, 100) and (40 dB, 1000)  ->  L_a(x) = ln 100 + (x - 30)/10 * ln 10
#   test:   (30 dB, 100) and (40 dB, 400)   ->  L_t(x) = ln 100 + (x - 30)/10 * ln 4
# The extra points lie on the same lines, so every method reproduces the lines exactly.
#
# BD-rate, over x in [30, 40]:
#   L_t - L_a = (x - 30)/10 * ln(4/10) = (x - 30)/10 * ln 0.4, a line from 0 to ln 0.4; its mean is ln(0.4)/2,
#   so BD-rate = exp(ln(0.4)/2) - 1 = sqrt(0.4) - 1 = 0.63245553... - 1 = -36.754447 %.
# BD-PSNR, over L in [ln 100, ln 400] (the test curve stops at 400), with u = L - ln 100 in [0, ln 4]:
#   x_a(L) = 30 + 10 u / ln 10,  x_t(L) = 30 + 10 u / ln 4,
#   x_t - x_a = 10 u (1/ln 4 - 1/ln 10), a line from 0; its mean over [0, ln 4] is its value at u = ln 4 / 2:
#   5 ln 4 (1/ln 4 - 1/ln 10) = 5 (1 - ln 4 / ln 10) = 5 (1 - log10 4) = 5 * 0.39794001 = 1.98970004 dB.
LINE_X = [30.0, 32.5, 35.0, 40.0]
LINE_ANCHOR = [100 * 10 ** ((x - 30) / 10) for x in LINE_X]
LINE_TEST = [100 * 4 ** ((x - 30) / 10) for x in LINE_X]


@pytest.mark.parametrize("method", METHODS)
def test_straight_lines_in_log_rate_match_the_hand_computation(method):
    assert bd_rate(LINE_ANCHOR, LINE_X, LINE_TEST, LINE_X, method) == pytest.approx(
        (math.sqrt(0.4) - 1) * 100, abs=1e-9)
    assert bd_metric(LINE_ANCHOR, LINE_X, LINE_TEST, LINE_X, method) == pytest.approx(
        5 * (1 - math.log10(4)), abs=1e-9)


def test_two_point_curves_work_with_pchip_and_are_the_same_lines():
    ends = [0, 3]   # (30 dB, 100 / 100) and (40 dB, 1000 / 400): the lines above, from their end points only
    pick = lambda seq: [seq[i] for i in ends]  # noqa: E731
    assert bd_rate(pick(LINE_ANCHOR), pick(LINE_X), pick(LINE_TEST), pick(LINE_X)) == pytest.approx(
        (math.sqrt(0.4) - 1) * 100, abs=1e-9)


def test_only_the_overlapping_metric_interval_counts():
    # Test curve: the anchor line moved up by 2 dB, (32 dB, 100) to (42 dB, 1000). On the shared [32, 40] dB
    # the test needs 10^(-2/10) times the anchor's rate everywhere: BD-rate = (10^-0.2 - 1) * 100 = -36.904 %.
    anchor_x, test_x = [30.0, 40.0], [32.0, 42.0]
    rates = [100.0, 1000.0]
    assert bd_rate(rates, anchor_x, rates, test_x) == pytest.approx((10 ** -0.2 - 1) * 100, abs=1e-9)
    # Same rates, every metric 2 dB higher: BD-PSNR is exactly 2 over the whole shared rate interval.
    assert bd_metric(rates, anchor_x, rates, test_x) == pytest.approx(2.0, abs=1e-12)


def test_cubic_method_on_a_four_point_example_worked_by_hand():
    # QP-sweep style points at 34, 36, 38, 40 dB. With t = x - 34:
    #   anchor: ln R_a = ln 1000 + 0.2 t + 0.01 t^2       (a quadratic: a cubic fit reproduces it exactly)
    #   test:   ln R_t = ln R_a - 0.05 t
    # Gap over t in [0, 6]: -0.05 t, mean -0.05 * 3 = -0.15, so BD-rate = (e^-0.15 - 1) * 100 = -13.929 %.
    x = np.array([34.0, 36.0, 38.0, 40.0])
    t = x - 34
    la = math.log(1000) + 0.2 * t + 0.01 * t ** 2
    anchor, test = np.exp(la), np.exp(la - 0.05 * t)
    assert bd_rate(anchor, x, test, x, "cubic") == pytest.approx(math.expm1(-0.15) * 100, abs=1e-9)
    # PCHIP does not reproduce a quadratic exactly, but lands close.
    assert bd_rate(anchor, x, test, x, "pchip") == pytest.approx(math.expm1(-0.15) * 100, abs=0.2)


def test_pchip_matches_dense_numerical_integration_of_the_interpolants():
    # Independent check of the interval and integration: trapezoids on a fine grid of scipy's pchip curves.
    test_rate = [1356.24, 2451.52, 4469.00, 9787.80]
    test_psnr = [34.987, 36.970, 38.651, 40.121]
    lo, hi = max(PSNR[0], test_psnr[0]), min(PSNR[-1], test_psnr[-1])
    grid = np.linspace(lo, hi, 200001)
    gap = pchip_interpolate(test_psnr, np.log(test_rate), grid) - pchip_interpolate(PSNR, np.log(RATE), grid)
    expected = math.expm1(trapezoid(gap, grid) / (hi - lo)) * 100
    assert bd_rate(RATE, PSNR, test_rate, test_psnr) == pytest.approx(expected, abs=1e-6)
    # Points may come in any order.
    assert bd_rate(RATE[::-1], PSNR[::-1], test_rate[::-1], test_psnr[::-1]) == pytest.approx(expected, abs=1e-6)
    # The two methods differ a little on smooth real-looking curves, not wildly.
    assert bd_rate(RATE, PSNR, test_rate, test_psnr, "cubic") == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("method", METHODS)
def test_swapping_anchor_and_test_inverts_the_rate_ratio(method):
    test_rate = [1290.0, 2300.0, 4400.0, 9100.0]
    test_psnr = [34.70, 36.95, 38.80, 40.30]
    r = bd_rate(RATE, PSNR, test_rate, test_psnr, method) / 100
    back = bd_rate(test_rate, test_psnr, RATE, PSNR, method) / 100
    assert abs(r) > 0.01
    assert back == pytest.approx(1 / (1 + r) - 1, abs=1e-12)
    assert bd_metric(test_rate, test_psnr, RATE, PSNR, method) == pytest.approx(
        -bd_metric(RATE, PSNR, test_rate, test_psnr, method), abs=1e-12)


def test_lower_is_better_metrics_work_too():
    # A distance (e.g. LPIPS) falling as rate grows; test = anchor at 0.8x the rate.
    dist = [0.30, 0.20, 0.12, 0.07]
    assert bd_rate(RATE, dist, [0.8 * r for r in RATE], dist) == pytest.approx(-20.0, abs=1e-9)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="at least 2 points"):
        bd_rate([100.0], [30.0], RATE, PSNR)
    with pytest.raises(ValueError, match="at least 4 points"):
        bd_rate(RATE[:3], PSNR[:3], RATE, PSNR, method="cubic")
    with pytest.raises(ValueError, match="positive"):
        bd_rate([0.0, 100.0], [30.0, 35.0], RATE, PSNR)
    with pytest.raises(ValueError, match="positive"):
        bd_metric(RATE, PSNR, [-5.0, 100.0], [30.0, 35.0])
    with pytest.raises(ValueError, match="duplicate"):
        bd_rate([100.0, 200.0, 300.0], [30.0, 32.0, 32.0], RATE, PSNR)
    with pytest.raises(ValueError, match="duplicate"):
        bd_rate([100.0, 100.0, 300.0], [30.0, 31.0, 32.0], RATE, PSNR)
    with pytest.raises(ValueError, match="not monotone"):
        bd_rate([100.0, 200.0, 300.0], [30.0, 33.0, 32.0], RATE, PSNR)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATE, PSNR, RATE, [p + 10 for p in PSNR])
    with pytest.raises(ValueError, match="do not overlap"):
        bd_metric(RATE, PSNR, [r * 100 for r in RATE], PSNR)
    with pytest.raises(ValueError, match="opposite directions"):
        bd_rate(RATE, PSNR, RATE, PSNR[::-1])
    with pytest.raises(ValueError, match="equal length"):
        bd_rate(RATE, PSNR[:3], RATE, PSNR)
    with pytest.raises(ValueError, match="finite"):
        bd_rate(RATE, PSNR[:3] + [math.inf], RATE, PSNR)
    with pytest.raises(ValueError, match="method"):
        bd_rate(RATE, PSNR, RATE, PSNR, method="akima")
