"""tflite full-integer int8 (ai-edge-quantizer's static recipe on the converted model):
a calibrated int8 flatbuffer (int8 weights, activations and interface tensors) that
LiteRT runs close to the fp32 model, float in / float out through the runner; a
float interface is refused with the reason; bad calibration input.

Compiling needs litert-torch (the ``tflite`` extra); running needs ai-edge-litert.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.core.variant import Variant
from targets import tflite
from targets.tflite.convert import quantize_int8
from targets.registry import TargetOptions, get_target

SHAPE = (1, 3, 4, 16, 16)


class Small3d(nn.Module):
    """Conv3d + BN + ReLU, a temporal depthwise conv, residual, pool, Linear: (1, 3, 4, 16, 16) -> (1, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv3d(3, 16, (1, 3, 3), padding=(0, 1, 1))
        self.bn = nn.BatchNorm3d(16)
        self.c2 = nn.Conv3d(16, 16, (3, 1, 1), padding=(1, 0, 0), groups=16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.c1(x)))
        y = y + torch.relu(self.c2(y))
        return self.fc(y.mean(dim=(2, 3, 4)))


def _target() -> tflite.TfliteTarget:
    t = get_target("tflite", TargetOptions(threads=1))
    if not t.available():
        pytest.skip(t.unavailable_reason())
    if not t.can_compile():
        pytest.skip(tflite.EXTRA_HINT)
    return t  # type: ignore[return-value]


def _clips(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(n)]


def _model() -> nn.Module:
    from helpers import randomize_bn

    torch.manual_seed(0)
    return randomize_bn(Small3d(), SHAPE).eval()


VARIANT = Variant("convnet2d_s", resolution=16, frames=4, precision="int8")


@pytest.fixture(scope="module")
def int8_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    tmp = tmp_path_factory.mktemp("tfl8")
    t = _target()
    model = _model()
    art8 = t.compile(model, VARIANT, tmp / "int8", calib=_clips(16, 0))
    art32 = t.compile(model, Variant("convnet2d_s", resolution=16, frames=4), tmp / "fp32")
    return t, model, art8, art32


@pytest.mark.slow
def test_int8_flatbuffer_is_integer_and_close_to_fp32(int8_pair: tuple) -> None:
    t, model, art8, art32 = int8_pair
    assert art8.precision == "int8" and art8.notes["quant"]["calibration_clips"] == 16
    assert art8.notes["quant"]["io"] == "int8"
    assert art8.notes["quant"]["method"] == "histogram"  # plain clips: the target's default ranges
    assert art8.notes["quant"]["ranges_narrowed"].split()[0] != "0"
    r8 = t.load(art8)
    assert r8.delegated  # XNNPACK runs the int8 graph
    details = r8._interp.get_tensor_details()
    assert not any(np.dtype(d["dtype"]) == np.float32 for d in details)  # full integer: no float tensor left
    assert np.dtype(r8._interp.get_input_details()[0]["dtype"]) == np.int8
    assert np.dtype(r8._interp.get_output_details()[0]["dtype"]) == np.int8
    r32 = t.load(art32)
    cos, agree = [], []
    with torch.no_grad():
        for clip in _clips(12, 1):
            ref = model(torch.from_numpy(clip)).numpy()[0]
            got = r8(clip)[0]
            assert got.dtype == np.float32
            assert np.abs(r32(clip)[0] - ref).max() < 1e-3  # the fp32 artifact is the model
            cos.append(float(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got))))
            agree.append(int(np.argmax(ref) == np.argmax(got)))
    assert min(cos) > 0.99, cos
    assert np.mean(agree) >= 0.9


def test_int8_bad_calibration(tmp_path: Path) -> None:
    t = _target()
    with pytest.raises(BadInput, match="calibration clip 0 has shape"):
        t.compile(_model(), VARIANT, tmp_path / "a", calib=[np.zeros((1, 3, 2, 16, 16), np.float32)] * 4)


@pytest.mark.slow
def test_int8_minmax_ranges_are_the_quantizers_own(int8_pair: tuple, tmp_path: Path) -> None:
    """method "minmax" keeps ai-edge-quantizer's ranges; "histogram" (the default) rewrites them."""
    from quant.calib import CalibSet

    t, model, art8, _ = int8_pair
    mm = t.compile(model, VARIANT, tmp_path / "mm", calib=CalibSet("clips", tuple(_clips(16, 0)), "minmax"))
    assert mm.notes["quant"]["method"] == "minmax" and "ranges_narrowed" not in mm.notes["quant"]

    def scales(art) -> dict[str, float]:
        it = t.load(art)._interp
        return {d["name"]: d["quantization"][0] for d in it.get_tensor_details() if d["quantization"][0]}

    a, b = scales(mm), scales(art8)
    assert sum(a[n] != pytest.approx(b[n], rel=1e-3) for n in set(a) & set(b)) >= 2


def test_int8_method_the_target_does_not_offer(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="calibration method 'entropy' is not offered; valid methods: histogram"):
        quantize_int8(tmp_path / "m.tflite", _clips(4, 0), "entropy")
