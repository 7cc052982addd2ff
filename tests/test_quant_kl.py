"""quant.kl: TensorRT's KL threshold on |x|, and the entropy ranges that use it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from quant.kl import entropy_range, fold_abs, kl_threshold

RNG = np.random.default_rng(0)
SAMPLES = {
    "gauss": RNG.standard_normal(400_000),
    "laplace": RNG.laplace(0, 1, 400_000),
    "uniform": RNG.uniform(-1, 1, 400_000),
}


def hist_of(x: np.ndarray, bins: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    t = float(np.abs(x).max())
    return np.histogram(x, bins, range=(-t, t))


def test_fold_abs_keeps_mass_and_edges():
    h, e = hist_of(SAMPLES["gauss"])
    counts, edges = fold_abs(h, e)
    assert counts.sum() == h.sum() and counts.size == 1024 and edges[0] == pytest.approx(0, abs=1e-9)
    assert edges[-1] == pytest.approx(e[-1])
    with pytest.raises(ValueError):
        fold_abs(h[:-1], e[:-1])


def test_uniform_is_not_clipped_and_tails_are():
    """A uniform distribution has no tail to clip; Gaussian and Laplacian ones are clipped
    inside their maximum, the heavier tail (Laplace) relatively more, as the literature finds
    (Gaussian about 3.5-4.5 sigma for 8 bits)."""
    lo, hi = entropy_range(*hist_of(SAMPLES["uniform"]), -1, 1, symmetric=True)
    assert hi == pytest.approx(1.0, rel=0.02) and lo == -hi
    g = entropy_range(*hist_of(SAMPLES["gauss"]), -5, 5, symmetric=True)[1]
    assert 3.0 < g < 0.99 * np.abs(SAMPLES["gauss"]).max()
    lap = entropy_range(*hist_of(SAMPLES["laplace"]), -14, 14, symmetric=True)[1]
    assert lap / np.abs(SAMPLES["laplace"]).max() < g / np.abs(SAMPLES["gauss"]).max()


def test_relu_output_is_not_clipped_to_the_smallest_candidate():
    """onnxruntime's search returns its smallest candidate (65/512 of the range) for ReLU
    outputs; here a one-sided tensor gets about the threshold of its two-sided parent."""
    x = SAMPLES["gauss"]
    parent = entropy_range(*hist_of(x), float(x.min()), float(x.max()), symmetric=False)[1]
    relu = np.maximum(x, 0)
    lo, hi = entropy_range(*hist_of(relu), 0.0, float(relu.max()), symmetric=False)
    assert lo == 0.0 and hi > 0.8 * parent and hi > 0.5 * relu.max()


def test_empty_or_tiny_histograms_keep_the_full_range():
    edges = np.linspace(0, 2, 65)
    assert kl_threshold(np.zeros(64), edges) == 2.0
    assert kl_threshold(np.ones(64), edges, levels=128) == 2.0


@pytest.mark.slow
def test_entropy_keeps_the_range_of_tensors_read_by_add_or_mul(tmp_path):
    """In a residual block with a Swish-like gate, the tensors read by Add/Mul keep their
    MinMax range while a tensor read only by a Conv gets the KL threshold."""
    import torch
    from torch import nn

    from quant.ort import entropy_ranges, ort_recipe, _ClipReader

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.a(x))
            return x + self.b(y) * torch.sigmoid(x)

    torch.onnx.export(Block().eval(), torch.zeros(1, 3, 16, 16), str(tmp_path / "m.onnx"), input_names=["x"],
                      dynamo=False)
    data = [RNG.laplace(0, 1, (1, 3, 16, 16)).astype(np.float32) for _ in range(8)]
    entropy_ranges(tmp_path / "m.onnx", _ClipReader("x", data), ort_recipe("entropy"), tmp_path / "r.json")
    ranges = json.loads((tmp_path / "r.json").read_text())["data"]

    def hi(name: str) -> float:
        v = ranges[name]["highest"]
        return float(np.ravel(v["data"] if isinstance(v, dict) else v)[0])

    assert hi("x") == pytest.approx(max(float(d.max()) for d in data), rel=1e-5)  # read by Add and Mul
    relu = next(k for k in ranges if "Relu" in k)  # read by the second Conv only: clipped inside its maximum
    edges = ranges[relu]["hist_edges"]
    observed = float(np.max(np.abs(edges["data"] if isinstance(edges, dict) else edges)))
    assert 0 < hi(relu) < 0.95 * observed
