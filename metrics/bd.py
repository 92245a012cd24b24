"""Bjøntegaard delta: the average gap between two rate-distortion curves.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", ITU-T VCEG-M33, 2001, fits each
curve with a cubic polynomial and integrates the gap over the range both curves cover. The HEVC and VVC common
test conditions (F. Bossen, JCTVC-L1100, 2013, and its VVC successors) replaced the polynomial, which can swing
wildly between points, with piecewise cubic Hermite interpolation (PCHIP, Fritsch & Carlson 1980) in their
spreadsheets: it passes through every point and stays monotone between them. PCHIP is the default here; the
cubic polynomial stays available as ``method="cubic"`` for comparison with older reports. Logs are natural
logs; the ratio ``exp(mean gap)`` equals VCEG-M33's ``10 ** (mean gap in log10)``.

A curve is given as parallel sequences of rates (any positive unit: bits per pixel, kbit/s, bytes, the same
for both curves) and metric values (PSNR in dB, MS-SSIM, ...), one entry per coded operating point, in any
order. Each curve must be strictly monotone: a distinct metric for each distinct rate, moving one way.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import PchipInterpolator

Method = Literal["pchip", "cubic"]
_MIN_POINTS = {"pchip": 2, "cubic": 4}


def _curve(rate: ArrayLike, metric: ArrayLike, name: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(log_rate, metric)`` arrays of shape ``(N,)``, sorted by rate."""
    r = np.asarray(rate, dtype=np.float64)
    m = np.asarray(metric, dtype=np.float64)
    if r.ndim != 1 or m.ndim != 1 or r.shape != m.shape:
        raise ValueError(f"{name}: rate and metric must be 1-D and of equal length, got shapes {r.shape} and {m.shape}")
    need = _MIN_POINTS[method]
    if len(r) < need:
        raise ValueError(f"{name}: method={method!r} needs at least {need} points per curve, got {len(r)}")
    if not (np.isfinite(r).all() and np.isfinite(m).all()):
        raise ValueError(f"{name}: rates and metrics must be finite (leave out a lossless point with PSNR = inf)")
    if (r <= 0).any():
        raise ValueError(f"{name}: rates must be positive (they are compared in log domain), got {r.tolist()}")
    order = np.argsort(r, kind="stable")
    r, m = r[order], m[order]
    dr, dm = np.diff(r), np.diff(m)
    if (dr == 0).any() or (dm == 0).any():
        raise ValueError(f"{name}: duplicate rates or duplicate metric values; each point must have its own "
                         f"rate and metric (rates {r.tolist()}, metrics {m.tolist()})")
    if not ((dm > 0).all() or (dm < 0).all()):
        raise ValueError(f"{name}: the curve is not monotone (metric goes up and down as rate grows: rates "
                         f"{r.tolist()}, metrics {m.tolist()}); BD values are undefined for such a curve")
    return np.log(r), m


def _curves(anchor_rate: ArrayLike, anchor_metric: ArrayLike, test_rate: ArrayLike, test_metric: ArrayLike,
            method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both curves validated: ``(anchor_log_rate, anchor_metric, test_log_rate, test_metric)``."""
    if method not in _MIN_POINTS:
        raise ValueError(f"method must be one of {sorted(_MIN_POINTS)}, got {method!r}")
    la, ma = _curve(anchor_rate, anchor_metric, "anchor", method)
    lt, mt = _curve(test_rate, test_metric, "test", method)
    if (ma[-1] > ma[0]) != (mt[-1] > mt[0]):
        raise ValueError("anchor and test curves run in opposite directions (metric rises with rate on one and "
                         "falls on the other): are they the same metric?")
    return la, ma, lt, mt


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over ``[lo, hi]`` of the curve through the points ``(x, y)``, ``x`` strictly increasing."""
    if method == "pchip":
        return float(PchipInterpolator(x, y).integrate(lo, hi))
    # Centre x before fitting: a cubic in raw PSNR (x ~ 40, x^3 ~ 6e4) is needlessly ill-conditioned.
    centre = 0.5 * (lo + hi)
    antiderivative = np.polyint(np.polyfit(x - centre, y, 3))
    return float(np.polyval(antiderivative, hi - centre) - np.polyval(antiderivative, lo - centre))


def _mean_gap(xa: np.ndarray, ya: np.ndarray, xt: np.ndarray, yt: np.ndarray, method: str, what: str) -> float:
    """Mean of ``y_test(x) - y_anchor(x)`` over the ``x`` interval both curves cover."""
    oa, ot = np.argsort(xa), np.argsort(xt)  # the interpolants need increasing x
    xa, ya, xt, yt = xa[oa], ya[oa], xt[ot], yt[ot]
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not hi > lo:
        raise ValueError(f"the curves do not overlap in {what}: anchor covers [{xa[0]:.6g}, {xa[-1]:.6g}], "
                         f"test covers [{xt[0]:.6g}, {xt[-1]:.6g}]")
    return (_integral(xt, yt, lo, hi, method) - _integral(xa, ya, lo, hi, method)) / (hi - lo)


def bd_rate(anchor_rate: ArrayLike, anchor_metric: ArrayLike, test_rate: ArrayLike, test_metric: ArrayLike,
            method: Method = "pchip") -> float:
    """BD-rate: average bitrate difference of test vs anchor at equal quality, in percent.

    Negative means the test codec needs fewer bits for the same metric (-20.0 = 20 % saving). Each curve's
    ``log(rate)`` is interpolated as a function of the metric (``"pchip"``: piecewise cubic Hermite through the
    points; ``"cubic"``: VCEG-M33's least-squares cubic polynomial), both are integrated over the metric
    interval the two curves share, and the mean log-rate gap ``D`` is returned as ``(exp(D) - 1) * 100``.
    No extrapolation: only the shared metric interval counts.

    Inputs: 1-D sequences of equal length per curve, at least 2 points (pchip) or 4 (cubic), positive rates,
    finite metrics, strictly monotone curves. Raises ``ValueError`` otherwise, or when the curves do not overlap.
    """
    la, ma, lt, mt = _curves(anchor_rate, anchor_metric, test_rate, test_metric, method)
    gap = _mean_gap(ma, la, mt, lt, method, "metric")
    return float(np.expm1(gap) * 100.0)


def bd_metric(anchor_rate: ArrayLike, anchor_metric: ArrayLike, test_rate: ArrayLike, test_metric: ArrayLike,
              method: Method = "pchip") -> float:
    """BD-metric (BD-PSNR for PSNR): average metric difference of test minus anchor at equal rate.

    In the metric's own unit (dB for PSNR); positive means the test codec scores higher at the same rate
    (better for PSNR / SSIM-like metrics, worse for distances such as LPIPS). Each curve's metric is
    interpolated as a function of ``log(rate)`` and the curves are compared over the log-rate interval both
    cover. Same methods, inputs and errors as :func:`bd_rate`.
    """
    la, ma, lt, mt = _curves(anchor_rate, anchor_metric, test_rate, test_metric, method)
    return _mean_gap(la, ma, lt, mt, method, "log rate")
