"""Power-of-two int8 quantization for the fpga target (quant.pow2) and the int8
fpga artifact: scales are powers of two, zero points 0, int8 only, bias on the
int32 grid, the operator-set check passes, and ``load`` runs the simulator."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import numpy_helper

from edge.cli import main
from edge.core.errors import BadInput
from edge.core.variant import Variant
from quant.pow2 import frac_for_tensor, frac_maxabs, fractions, quant_points, quantize, quantize_array
from targets.base import Artifact
from targets.checker import check
from targets.fpga import FpgaTarget, SimRunner
from targets.onnxruntime import OnnxRuntimeRunner
from targets.opset import FPGA_OPSET
from targets.registry import TargetOptions


def test_frac_maxabs_covers_the_max_without_clipping() -> None:
    assert frac_maxabs(1.0) == 6  # 127 / 64 = 1.98 >= 1; 127 / 128 < 1
    assert frac_maxabs(127.0) == 0
    assert frac_maxabs(128.0) == -1
    assert frac_maxabs(0.01) == 13  # 127 / 8192 = 0.0155
    assert frac_maxabs(0.0) == 0
    for m in (0.003, 0.7, 5.0, 300.0):
        f = frac_maxabs(m)
        assert 127 * 2.0 ** -f >= m > 127 * 2.0 ** -(f + 1)


def test_mse_fraction_clips_outliers_and_quantize_array_rounds_half_even() -> None:
    x = np.concatenate([np.linspace(-1, 1, 1000), [8.0]])  # one outlier
    assert frac_for_tensor(x, "maxabs") == frac_maxabs(8.0) == 3
    assert frac_maxabs(8.0) < frac_for_tensor(x, "mse") <= frac_maxabs(8.0) + 3
    assert quantize_array(np.array([0.5, 1.5, -0.5, 300.0, -300.0]), 0).tolist() == [0, 2, 0, 127, -128]


class Tiny(nn.Module):
    """Conv + BN + ReLU, a residual Add, hard-sigmoid gate (Mul), global pool, Linear: (1, 3, 8, 8) -> (1, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.c1(x)))
        y = y + self.c2(y)
        y = y * nn.functional.hardsigmoid(y)
        return self.fc(y.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny_lowered(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    from targets.export import export_onnx
    from targets.lowering import lower

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export_onnx(Tiny().eval(), (1, 3, 8, 8), path)
    return lower(onnx.load(str(path)), FPGA_OPSET)


def _clips(n: int, shape: tuple[int, ...] = (1, 3, 8, 8), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("method", ["mse", "maxabs"])
def test_qdq_model_is_pow2_symmetric_int8_and_passes_the_check(tiny_lowered: onnx.ModelProto, method: str) -> None:
    qdq, report = quantize(tiny_lowered, _clips(4), method)
    assert check(qdq, FPGA_OPSET) == []
    consts = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    qnodes = [n for n in qdq.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qnodes and len(fractions(qdq)) == len(qnodes)
    for n in qnodes:
        s = float(consts[n.input[1]])
        assert math.log2(s) == round(math.log2(s))
        assert consts[n.input[2]].dtype == np.int8 and int(consts[n.input[2]]) == 0
        if n.op_type == "DequantizeLinear" and n.input[0] in consts:
            assert consts[n.input[0]].dtype == np.int8
    ops = {n.op_type for n in qdq.graph.node}
    assert {"Conv", "Add", "Mul", "Gemm", "GlobalAveragePool"} <= ops
    # every weight of Conv/Gemm comes from an int8 DequantizeLinear; bias is an int32 on the 2^-(fx+fw) grid
    producer = {o: n for n in qdq.graph.node for o in n.output}
    frac_of_dq = {n.output[0]: -round(math.log2(float(consts[n.input[1]]))) for n in qnodes
                  if n.op_type == "DequantizeLinear"}
    for n in qdq.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            assert producer[n.input[1]].op_type == "DequantizeLinear"
            if len(n.input) > 2:
                fx = frac_of_dq[_through_structural(n.input[0], producer)]
                e = fx + frac_of_dq[n.input[1]]
                b = consts[n.input[2]].astype(np.float64) * 2.0 ** e
                assert np.array_equal(b, np.rint(b)) and np.all(np.abs(b) < 2 ** 31)
    assert report.clips == 4 and report.method == method


def _through_structural(name: str, producer: dict[str, onnx.NodeProto]) -> str:
    while producer[name].op_type != "DequantizeLinear":
        name = producer[name].input[0]
    return name


def test_quant_points_fuse_relu_and_skip_structural_ops(tiny_lowered: onnx.ModelProto) -> None:
    from quant.pow2 import fold_constants

    pts = quant_points(fold_constants(tiny_lowered))
    producers = {o: n.op_type for n in tiny_lowered.graph.node for o in n.output}
    # the first conv's output is quantized after its ReLU, never before it
    assert "Relu" in {producers.get(p) for p in pts}
    assert not any(producers.get(p) in ("Reshape", "Transpose", "Slice") for p in pts[1:])


def test_quantized_model_is_close_to_fp32(tiny_lowered: onnx.ModelProto) -> None:
    import onnxruntime as ort

    from quant.intsim import Simulator

    qdq, _ = quantize(tiny_lowered, _clips(8))
    ref = ort.InferenceSession(tiny_lowered.SerializeToString(), providers=["CPUExecutionProvider"])
    sim = Simulator(qdq)
    for x in _clips(4, seed=1):
        a = ref.run(None, {ref.get_inputs()[0].name: x})[0].ravel()
        b = sim(x).ravel()
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.98


def test_bad_calibration_clips(tiny_lowered: onnx.ModelProto) -> None:
    with pytest.raises(BadInput, match="no calibration clips"):
        quantize(tiny_lowered, [])
    with pytest.raises(BadInput, match="shape"):
        quantize(tiny_lowered, _clips(2, (1, 3, 4, 4)))
    bad = _clips(1)
    bad[0][0, 0, 0, 0] = np.nan
    with pytest.raises(BadInput, match="NaN"):
        quantize(tiny_lowered, bad)
    with pytest.raises(BadInput, match="method"):
        quantize(tiny_lowered, _clips(2), "median")


# ----------------------------------------------------------------------------- the int8 fpga artifact
class Toy3d(nn.Module):
    """Conv3d stem (lowered to 2-D convs over time), ReLU, pooled head: (1, 3, 4, 16, 16) -> (1, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, (3, 3, 3), padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.stem(x)).mean(dim=(2, 3, 4)))


def test_fpga_int8_compile_load_sim_and_ort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    variant = Variant("x3d_xs", resolution=16, frames=4, precision="int8")
    clips = _clips(6, variant.input_shape)
    art = FpgaTarget(TargetOptions()).compile(Toy3d().eval(), variant, tmp_path, calib=clips)
    assert art.status == "ok" and art.precision == "int8"
    q = art.notes["quant"]
    assert q["calibration_clips"] == 6 and q["resources"]["macs"] > 0 and q["resources"]["peak_buffer_bytes"] > 0
    model = onnx.load(str(art.model_path))
    assert check(model, FPGA_OPSET) == []
    assert main(["check-ops", "--target", "fpga", str(art.model_path)]) == 0
    sim = FpgaTarget(TargetOptions()).load(Artifact.read(tmp_path))
    ortr = FpgaTarget(TargetOptions(device="ort")).load(Artifact.read(tmp_path))
    assert isinstance(sim, SimRunner) and isinstance(ortr, OnnxRuntimeRunner)
    x = clips[0]
    a, b = sim(x), ortr(x)
    assert a.shape == b.shape == (1, 5)
    # the logits are the final Gemm's int32 accumulator at fraction e = f_in + f_w (no int8 requantization)
    assert model.graph.node[-1].op_type == "Gemm"
    fr = fractions(model)
    by_out = {n.output[0]: n for n in model.graph.node}

    def dq(t: str) -> str:  # through Reshape/Flatten to the DequantizeLinear that writes the value
        n = by_out[t]
        return n.name if n.op_type == "DequantizeLinear" else dq(n.input[0])

    e = sum(fr[dq(i)] for i in model.graph.node[-1].input[:2])
    assert e > 0 and np.array_equal(a * 2.0 ** e, np.rint(a * 2.0 ** e))
    assert np.abs(a - b).max() <= 0.05 * np.abs(b).max()  # device rounds half up, ORT half to even
    with pytest.raises(BadInput, match="shape"):
        sim(np.zeros((1, 3, 4, 8, 8), np.float32))
    with pytest.raises(BadInput, match="unknown device"):
        FpgaTarget(TargetOptions(device="gpu")).load(art)
    assert json.loads((tmp_path / "artifact.json").read_text())["notes"]["quant"]["method"] in ("mse", "maxabs")
