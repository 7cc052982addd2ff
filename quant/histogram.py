"""Activation ranges from a running histogram: the error-minimising range and percentiles.

API:

- ``RunningHistogram(bins=2048)``: ``add(x)`` folds an array of any shape into a
  histogram whose range grows to cover every value seen (old counts are re-binned
  onto the wider grid, which is at least twice as wide, so this happens a few
  times per tensor); ``lo`` / ``hi`` (observed extremes), ``counts``, ``edges``.
- ``mse_range(hist, bits=8, symmetric=False) -> (lo, hi)``: the range of a uniform
  ``bits``-bit quantizer that minimises the expected squared error over the
  histogram: clipping error of the tails plus rounding error inside, computed by
  quantizing every bin centre.  Candidate ends are the observed extremes, the
  quantiles 1 - {1e-6 .. 1e-2} of each tail and 0.8 / 0.6 / 0.5 / 0.4 of each
  extreme (every pair is tried); the range always contains 0 (a zero point must
  exist).  This is what NNCF's HISTOGRAM range estimator does for OpenVINO, written
  for the runtimes whose quantizers have only min/max (LiteRT's ai-edge-quantizer).
- ``percentile_range(hist, percentile=99.999) -> (lo, hi)``: the two-sided
  percentile range (onnxruntime's Percentile calibrator default), containing 0.

Why: on the shipped X3D-XS at w1.0-r128-f8, LiteRT int8 logits against fp32 on 100
held-out clips had an SQNR of 12.4 dB with ai-edge-quantizer's ranges (a moving
average of per-clip min/max), 20.3 dB with the global min/max, 26.8 dB with
``mse_range`` (same 32 calibration clips, same speed).

No torch.
"""
from __future__ import annotations

import numpy as np

BINS = 2048
TAIL_QUANTILES: tuple[float, ...] = (1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
EXTREME_FRACTIONS: tuple[float, ...] = (0.8, 0.6, 0.5, 0.4)


class RunningHistogram:
    """A histogram over a range that widens as values arrive (module doc)."""

    def __init__(self, bins: int = BINS) -> None:
        if bins < 16:
            raise ValueError(f"a running histogram needs at least 16 bins, got {bins}")
        self.bins = bins
        self.counts = np.zeros(bins, dtype=np.float64)
        self.a = self.b = 0.0  # histogram range, always containing 0 and [lo, hi]
        self.lo, self.hi = np.inf, -np.inf
        self.total = 0

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.a, self.b, self.bins + 1)

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).ravel()
        x = x[np.isfinite(x)]
        if not x.size:
            return
        lo, hi = float(x.min()), float(x.max())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        if self.total == 0 or lo < self.a or hi > self.b:
            self._widen(min(lo, 0.0), max(hi, 0.0))
        self.counts += np.histogram(x, bins=self.bins, range=(self.a, self.b))[0]
        self.total += x.size

    def _widen(self, lo: float, hi: float) -> None:
        if self.total == 0:
            span = max(hi - lo, 1e-12)
            self.a, self.b = (lo - 0.05 * span if lo < 0 else 0.0), (hi + 0.05 * span if hi > 0 else 0.0)
            if self.b <= self.a:
                self.b = self.a + 1e-12
            return
        width = self.b - self.a
        a, b = min(self.a, lo), max(self.b, hi)
        grow = 2 * width - (b - a)  # grow at least 2x so that re-binning stays rare
        if grow > 0:  # on the side(s) that had to move: a non-negative tensor keeps a = 0
            left, right = self.a - a, b - self.b
            a, b = a - grow * left / (left + right), b + grow * right / (left + right)
        centres = (self.edges[:-1] + self.edges[1:]) / 2
        self.counts = np.histogram(centres, bins=self.bins, range=(a, b), weights=self.counts)[0]
        self.a, self.b = a, b


def _quantiles(hist: RunningHistogram) -> tuple[np.ndarray, np.ndarray]:
    centres = (hist.edges[:-1] + hist.edges[1:]) / 2
    return centres, np.cumsum(hist.counts) / max(hist.counts.sum(), 1e-300)


def mse_range(hist: RunningHistogram, bits: int = 8, symmetric: bool = False) -> tuple[float, float]:
    """The error-minimising quantizer range of ``hist`` (module doc); (lo, hi) with lo <= 0 <= hi."""
    lo, hi = min(hist.lo, 0.0), max(hist.hi, 0.0)
    if hist.total == 0 or hi <= lo:
        return lo if np.isfinite(lo) else 0.0, hi if np.isfinite(hi) else 0.0
    centres, cum = _quantiles(hist)
    his = {hi} | {hi * f for f in EXTREME_FRACTIONS}
    los = {lo} | {lo * f for f in EXTREME_FRACTIONS}
    for q in TAIL_QUANTILES:
        his.add(max(float(centres[min(len(centres) - 1, np.searchsorted(cum, 1 - q))]), 0.0))
        los.add(min(float(centres[min(len(centres) - 1, np.searchsorted(cum, q))]), 0.0))
    if symmetric:
        ends = np.array(sorted({max(abs(v), 1e-12) for v in his | los}))
        low, high = -ends[:, None], ends[:, None]
        steps = 2 ** bits - 2  # a symmetric int8 grid: -127 .. 127
    else:
        grid_lo, grid_hi = np.meshgrid(np.array(sorted(los)), np.array(sorted(his)), indexing="ij")
        low, high = grid_lo.reshape(-1, 1), grid_hi.reshape(-1, 1)
        steps = 2 ** bits - 1
    step = np.maximum(high - low, 1e-12) / steps
    clipped = np.clip(centres[None, :], low, high)
    err = (np.round((clipped - low) / step) * step + low - centres[None, :]) ** 2
    best = int(np.argmin(err @ hist.counts))
    return float(low[best, 0]), float(high[best, 0])


def percentile_range(hist: RunningHistogram, percentile: float = 99.999) -> tuple[float, float]:
    """The ``percentile`` / 100 - ``percentile`` range of ``hist``, widened to contain 0."""
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must lie in (50, 100], got {percentile}")
    lo, hi = min(hist.lo, 0.0), max(hist.hi, 0.0)
    if hist.total == 0 or hi <= lo or percentile == 100.0:
        return lo if np.isfinite(lo) else 0.0, hi if np.isfinite(hi) else 0.0
    centres, cum = _quantiles(hist)
    q = 1 - percentile / 100
    low = float(centres[min(len(centres) - 1, np.searchsorted(cum, q))])
    high = float(centres[min(len(centres) - 1, np.searchsorted(cum, 1 - q))])
    return max(min(low, 0.0), lo), min(max(high, 0.0), hi)
