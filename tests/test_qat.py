"""Quantization-aware fine-tuning (quant.qat): the ONNX graph run by PyTorch equals
ONNX Runtime; fake quantization equals the pow2 QDQ export; QAT recovers what PTQ
loses on a separable toy task; the export compiles for the fpga and runs on the
integer simulator; resume; the per-channel int8 scheme; bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from calib_data.tensor import to_tensor
from calib_data.transforms import MEAN, STD
from edge.core.errors import BadInput
from targets.export import export_onnx
from edge.qat import prepare
from edge.core.variant import Variant
from quant.pow2 import quantize
from quant.qat import GraphNet, QatConfig, evaluate, finetune, int8_points, qat_graph
from targets.lowering import lower
from targets.opset import FPGA_OPSET

SHAPE = (1, 3, 2, 8, 8)


def _ort(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[k:k + 1]})[0] for k in range(len(x))])


class Small3d(nn.Module):
    """Conv3d + BN + hard-swish, temporal depthwise conv, SE-like sigmoid gate, pool, Linear: (1, 3, 2, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1))
        self.bn = nn.BatchNorm3d(8)
        self.c2 = nn.Conv3d(8, 8, (3, 3, 3), padding=1, groups=8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.hardswish(self.bn(self.c1(x)))
        y = y + self.c2(y) * torch.sigmoid(y.mean(dim=(2, 3, 4), keepdim=True))
        return self.fc(y.mean(dim=(2, 3, 4)))


def _small(tmp: Path) -> onnx.ModelProto:
    from helpers import randomize_bn

    torch.manual_seed(0)
    m = randomize_bn(Small3d()).eval()
    export_onnx(m, SHAPE, tmp / "small.onnx")
    return onnx.load(str(tmp / "small.onnx"))


def _clips(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(n)]


# ----------------------------------------------------------------------------- the graph as a module
@pytest.mark.parametrize("target", [pytest.param("fpga", marks=pytest.mark.slow), "onnxruntime"])
def test_graphnet_float_equals_onnxruntime(target: str, tmp_path: Path) -> None:
    src = _small(tmp_path)
    net = prepare(src, target)
    net.quantize = False
    x = np.concatenate(_clips(3))
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    ref = _run(_ort(net.to_onnx()), x)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if target == "fpga":  # the lowered graph: no 3-D op, BN folded, sigmoid made hard
        ops = {n.op_type for n in net.model.graph.node}
        assert "BatchNormalization" not in ops and "Sigmoid" not in ops
    else:  # BN folded into the conv, otherwise the exported graph
        assert "BatchNormalization" not in {n.op_type for n in net.model.graph.node}
        np.testing.assert_allclose(ref, _run(_ort(src), x), rtol=1e-4, atol=1e-5)


def test_fake_quant_forward_equals_the_pow2_qdq_export(tmp_path: Path) -> None:
    """Same fractions as quant.pow2.quantize; with ONNX's rounding the same logits as its QDQ model on ORT,
    with the device's (default, round half up) the same logits as the integer simulator (to float rounding)."""
    from quant.intsim import Simulator

    src = _small(tmp_path)
    calib = _clips(8)
    x = np.concatenate(_clips(6, seed=1))
    for rounding in ("half_even", "half_up"):
        net = prepare(src, "fpga", rounding=rounding)
        net.calibrate(calib)
        qdq, report = quantize(net.to_onnx(), calib, "mse")
        assert report.activations == net.act_fracs
        with torch.no_grad():
            got = net(torch.from_numpy(x)).numpy()
        ref = _run(_ort(qdq), x) if rounding == "half_even" else \
            np.concatenate([Simulator(qdq)(x[k:k + 1]) for k in range(len(x))])
        scale = np.abs(ref).max()
        assert np.abs(got - ref).max() <= 1e-6 * scale, (rounding, np.abs(got - ref).max())
    with torch.no_grad():  # and fake quantization does change the logits
        net.quantize = False
        assert np.abs(net(torch.from_numpy(x)).numpy() - ref).max() > 1e-4 * scale


def test_fake_quantize_half_up_rounds_and_passes_gradients() -> None:
    from quant.qat import fake_quantize_half_up

    x = torch.tensor([0.25, -0.25, 0.75, -0.75, 0.3, 100.0, -100.0], requires_grad=True)
    y = fake_quantize_half_up(x, 1)  # grid 1/2: ties go up; saturates at 127/2 and -64
    assert y.tolist() == [0.5, 0.0, 1.0, -0.5, 0.5, 63.5, -64.0]
    y.sum().backward()
    assert x.grad.tolist() == [1, 1, 1, 1, 1, 0, 0]


def test_int8_scheme_per_channel_weights(tmp_path: Path) -> None:
    net = prepare(_small(tmp_path), "onnxruntime")
    assert net.scheme == "int8" and net.input_name in net.points
    assert set(net.points) == set(int8_points(net.model))
    net.calibrate(_clips(4))
    conv = next(n for n in net.nodes if n.op == "Conv")
    w = net.params[net._pkey[conv.ins[1]]]
    wq = net._fq_param(conv, 1, w, {}).detach()
    for c in range(w.shape[0]):  # every output channel on its own grid: max |w_c| -> 127
        step = w[c].abs().max() / 127
        q = wq[c] / step
        assert torch.allclose(q, q.round(), atol=1e-3) and q.abs().max().round() == 127
    x = torch.from_numpy(np.concatenate(_clips(2)))
    with torch.no_grad():
        yq = net(x)
        net.quantize = False
        yf = net(x)
    assert 0 < (yq - yf).abs().max() < 0.2 * yf.abs().max()


# ----------------------------------------------------------------------------- QAT on a separable toy task
class Toy(nn.Module):
    """Class = sign of channel 0, read through a conv whose informative output is tiny (0.05 x) next to an
    irrelevant output channel 1000 x larger: per-tensor power-of-two quantization rounds the informative
    weight (scale 1/2) and activation (scale >= 1/4) to zero, so PTQ is at chance; fp32 is exact."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 1)
        self.bn = nn.BatchNorm3d(2)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 0.05
            self.conv.weight[1, 1] = 50.0
            self.conv.bias.zero_()
            self.bn.weight.copy_(torch.tensor([1.0, 1.0]))
            self.bn.running_var.fill_(1.0)
            self.bn.bias.zero_()
            self.bn.running_mean.zero_()
            self.bn.running_var.fill_(1.0)
            self.fc.weight.copy_(torch.tensor([[100.0, 0.0], [-100.0, 0.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3, 4)))


def _toy_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 clips (n, 3, 2, 8, 8) (normalised as calib_data.tensor.to_tensor does) and labels (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, *SHAPE[1:]))
    x[:, 0] = np.where(y == 0, 1.0, -1.0)[:, None, None, None]
    return np.clip(np.rint((x * STD + MEAN) * 255), 0, 255).astype(np.uint8), y


def _top1(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


@pytest.mark.slow
def test_qat_recovers_what_ptq_loses_and_exports_for_the_fpga(tmp_path: Path) -> None:
    from targets.fpga import FpgaTarget
    from targets.registry import TargetOptions

    torch.manual_seed(0)
    model = Toy().eval()
    export_onnx(model, SHAPE, tmp_path / "toy.onnx")
    src = onnx.load(str(tmp_path / "toy.onnx"))
    train_x, train_y = _toy_data(256, 0)
    val_x, val_y = _toy_data(200, 1)
    calib = [to_tensor(train_x[k:k + 1], torch.device("cpu")).numpy() for k in range(16)]
    xv = to_tensor(val_x, torch.device("cpu")).numpy()
    with torch.no_grad():
        fp32 = _top1(model(torch.from_numpy(xv)).numpy(), val_y)
    lowered = lower(src, FPGA_OPSET, hard_activations=True)
    ptq = _top1(_run(_ort(quantize(lowered, calib, "mse")[0]), xv), val_y)
    assert fp32 == 1.0 and ptq <= 0.6, (fp32, ptq)

    net = prepare(src, "fpga")
    cfg = QatConfig(epochs=3, batch_size=32, lr=0.1)
    res = finetune(net, train_x, train_y, calib, cfg, out=tmp_path / "qat.pt", val=(val_x, val_y))
    assert res.epochs_done == 3 and len(res.history) == 3
    qat = evaluate(net, val_x, val_y)
    assert qat >= 0.95, (ptq, qat, res.history)

    # the fine-tuned model through the normal compile path: pow2 int8 artifact, same scales, same logits
    (tmp_path / "qat.onnx").write_bytes(net.to_onnx().SerializeToString())
    target = FpgaTarget(TargetOptions(hard_activations=True))
    art = target.compile(tmp_path / "qat.onnx", Variant("convnet2d_s", resolution=8, frames=2, precision="int8"),
                         tmp_path / "art", calib=calib)
    assert art.status != "failed"
    qdq = onnx.load(str(art.model_path))
    with torch.no_grad():
        mine = net(torch.from_numpy(xv)).numpy()
    sim = target.load(art)  # the integer simulator (the device: what QAT's rounding follows)
    dev = np.concatenate([sim(xv[k:k + 1]) for k in range(len(xv))])
    assert np.abs(mine - dev).max() <= 1e-6 * np.abs(dev).max()
    assert _top1(dev, val_y) >= 0.95
    theirs = _run(_ort(qdq), xv)  # the QDQ model on ORT (round half to even)
    assert (dev.argmax(1) == theirs.argmax(1)).mean() >= 0.99


def test_finetune_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    model = Toy().eval()
    export_onnx(model, SHAPE, tmp_path / "toy.onnx")
    src = onnx.load(str(tmp_path / "toy.onnx"))
    x, y = _toy_data(64, 0)
    calib = [to_tensor(x[k:k + 1], torch.device("cpu")).numpy() for k in range(4)]
    cfg = QatConfig(epochs=2, batch_size=16, lr=0.01)
    full = prepare(src, "fpga")
    finetune(full, x, y, calib, cfg, out=tmp_path / "a.pt")

    class Stop(Exception):
        pass

    def stop(_: dict) -> None:
        raise Stop

    part = prepare(src, "fpga")
    with pytest.raises(Stop):
        finetune(part, x, y, calib, cfg, out=tmp_path / "b.pt", on_epoch=stop)
    again = prepare(src, "fpga")
    res = finetune(again, x, y, calib, cfg, out=tmp_path / "b.pt")
    assert res.epochs_done == 2 and len(res.history) == 2
    for k, p in full.params.items():
        assert torch.equal(p, again.params[k]), k
    assert full.act_fracs == again.act_fracs
    with pytest.raises(BadInput, match="another configuration"):
        finetune(prepare(src, "fpga"), x, y, calib, QatConfig(epochs=3, batch_size=16, lr=0.01),
                 out=tmp_path / "b.pt")


# ----------------------------------------------------------------------------- bad input
def test_bad_input(tmp_path: Path) -> None:
    src = _small(tmp_path)
    with pytest.raises(BadInput, match="not supported"):
        prepare(src, "tflite")
    with pytest.raises(BadInput, match="scheme"):
        qat_graph(src, "int4")
    net = prepare(src, "fpga")
    with pytest.raises(BadInput, match="input of shape"):
        net(torch.zeros(1, 3, 4, 8, 8))
    with pytest.raises(RuntimeError, match="not calibrated"):
        net(torch.zeros(1, *SHAPE[1:]))
    with pytest.raises(BadInput, match="clips"):
        finetune(net, np.zeros((2, *SHAPE[1:]), np.uint8), np.zeros(3, np.int64), _clips(2), QatConfig())
    g = onnx.helper.make_graph([onnx.helper.make_node("Erf", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    odd = GraphNet(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)]))
    with pytest.raises(BadInput, match="Erf is not supported"):
        odd(torch.zeros(2, 4))


# ----------------------------------------------------------------------------- edgevid qat
@pytest.mark.slow
def test_cli_qat_writes_a_resumable_run_and_an_fpga_artifact(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``edgevid qat`` on a tiny synthetic set: fine-tuned model, checkpoint, int8 fpga artifact that matches
    the QAT module on the held-out calibration clips; a rerun resumes (no further step)."""
    import json

    from calib_data.synth import write_dataset
    from edge.cli import main
    from targets.base import Artifact

    write_dataset(tmp_path / "data", 12, seed=3, frames=4, size=32)
    argv = ["qat", "--model", "convnet2d_s", "--target", "fpga", "--data", str(tmp_path / "data"),
            "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--calib-clips", "4", "--width", "0.25",
            "--resolution", "32", "--frames", "4", "--out", str(tmp_path / "run"), "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["scheme"] == "pow2" and d["epochs"] == 1 and d["steps"] == 3
    art = Artifact.read(tmp_path / "run" / "artifact")
    assert art.precision == "int8" and art.target == "fpga" and art.notes["qat"]["epochs"] == 1
    fid = d["fidelity_vs_qat_module"]  # the device (simulator) vs the QAT module (same rounding)
    assert fid["clips"] >= 2 and fid["agreement"] == 1.0 and fid["cosine"] > 0.999999, fid
    assert (tmp_path / "run" / "qat.pt").is_file() and (tmp_path / "run" / "qat_model.onnx").is_file()
    assert main(argv) == 0  # resumed: the finished run is not trained again
    assert json.loads(capsys.readouterr().out)["steps"] == 3
