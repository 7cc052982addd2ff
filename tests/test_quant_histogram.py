"""quant.histogram: the running histogram and the ranges chosen from it (error-minimising,
percentile), checked against quantizing the samples themselves."""
from __future__ import annotations

import numpy as np
import pytest

from quant.histogram import RunningHistogram, mse_range, percentile_range


def _mse(x: np.ndarray, lo: float, hi: float, steps: int = 255) -> float:
    d = (hi - lo) / steps
    q = np.round((np.clip(x, lo, hi) - lo) / d) * d + lo
    return float(np.mean((q - x) ** 2))


def test_running_histogram_keeps_every_value_as_its_range_grows():
    rng = np.random.default_rng(0)
    h = RunningHistogram(bins=256)
    parts = [rng.standard_normal(1000) * s for s in (0.1, 1.0, 5.0, 20.0)]  # the range grows three times
    for p in parts:
        h.add(p)
    x = np.concatenate(parts)
    assert h.total == x.size and h.counts.sum() == pytest.approx(x.size)
    assert h.a <= x.min() and h.b >= x.max() and (h.lo, h.hi) == (pytest.approx(x.min()), pytest.approx(x.max()))
    relu = RunningHistogram()
    for s in (1.0, 3.0, 9.0):
        relu.add(np.maximum(rng.standard_normal(1000) * s, 0))
    assert relu.a == 0.0  # a non-negative tensor keeps all its bins on [0, b]
    h.add(np.array([np.nan, np.inf]))  # non-finite values are ignored
    assert h.total == x.size


def test_mse_range_clips_a_heavy_tail_and_beats_min_max():
    rng = np.random.default_rng(1)
    x = rng.laplace(size=400_000)  # a heavy tail: the extremes are rare and far out
    h = RunningHistogram()
    for part in np.array_split(x, 8):
        h.add(part)
    lo, hi = mse_range(h)
    assert x.min() < lo < 0 < hi < x.max() and hi < 0.9 * x.max()
    best = _mse(x, lo, hi)
    assert best < 0.9 * _mse(x, float(x.min()), float(x.max()))
    assert best <= 1.05 * min(_mse(x, lo * f, hi * f) for f in (0.7, 0.85, 1.15, 1.3))  # a minimum, not a guess
    u = RunningHistogram()
    u.add(rng.uniform(-1, 1, 100_000))
    lo, hi = mse_range(u)  # nothing to clip in a uniform tensor: (nearly) the full range
    assert lo < -0.97 and hi > 0.97
    relu = RunningHistogram()
    relu.add(np.maximum(rng.standard_normal(100_000), 0))
    assert mse_range(relu)[0] == 0.0 and mse_range(relu, symmetric=True)[0] == -mse_range(relu, symmetric=True)[1]


def test_percentile_range_and_edge_cases():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1_000_000)
    h = RunningHistogram(bins=4096)
    h.add(x)
    lo, hi = percentile_range(h, 99.9)
    assert lo == pytest.approx(np.percentile(x, 0.1), abs=0.02)
    assert hi == pytest.approx(np.percentile(x, 99.9), abs=0.02)
    assert percentile_range(h, 100.0) == (pytest.approx(x.min()), pytest.approx(x.max()))
    with pytest.raises(ValueError, match="percentile"):
        percentile_range(h, 40.0)
    pos = RunningHistogram()
    pos.add(np.full(100, 3.0))  # a constant positive tensor: the range still contains 0
    assert mse_range(pos)[0] == 0.0 and mse_range(pos)[1] >= 3.0 - 1e-6
    assert mse_range(RunningHistogram()) == (0.0, 0.0)
