"""Post-training int8 on the onnxruntime, openvino and tensorrt (explicit QDQ ONNX)
targets: calibration clips (quant.calib), the ORT recipe choice (quant.ort), NNCF
(quant.openvino), fidelity figures (quant.fidelity), and ``edgevid compile
--precision int8`` with its agreement floor."""
import json
import math
from pathlib import Path
import shutil

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

import calib_data
from edge.cli import main
from edge.gate import Gate
from edge.compile import compile_variant
from edge.core.errors import BadInput
from edge.models import create_model
from edge.models.common import Swish
from edge.core.variant import Variant
from helpers import randomize_bn
from quant.calib import MIN_CALIB_CLIPS, CalibSet, read_calib
from quant.fidelity import fidelity
from quant.ort import ort_recipe
from targets.base import ARTIFACT_JSON, Artifact
from targets.registry import TargetOptions, get_target

TOY = Variant("x3d_xs", frames=2, resolution=16, precision="int8")  # the toy takes x3d_xs's place in tags
SMALL = dict(frames=4, resolution=64)


class ToyNet(nn.Module):
    """Conv3d/BN3d/Swish, depthwise conv, squeeze-excitation, pool, linear: (1, 3, 2, 16, 16) -> (1, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, stride=(1, 2, 2), padding=1, bias=False)
        self.bn = nn.BatchNorm3d(8)
        self.act = Swish()
        self.dw = nn.Conv3d(8, 8, 3, padding=1, groups=8)
        self.se = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Conv3d(8, 4, 1), nn.ReLU(), nn.Conv3d(4, 8, 1),
                                nn.Sigmoid())
        self.pool = nn.AvgPool3d((2, 8, 8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(x)))
        x = self.dw(x)
        x = x * self.se(x)
        return self.fc(self.pool(x).flatten(1))


def runtime(name: str):
    target = get_target(name, TargetOptions(threads=2))
    if name != "tensorrt" and not target.available():
        pytest.skip(target.unavailable_reason())
    return target


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    model = randomize_bn(ToyNet(), TOY.input_shape).eval()
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal(TOY.input_shape, dtype=np.float32) for _ in range(8)]
    return model, clips


@pytest.fixture(scope="module")
def shipped64():
    """6 calibration + 4 held-out clips of the shipped set at 4 x 64 px."""
    return read_calib(None, (1, 3, 4, 64, 64), clips=6, held_out=4, progress=False)


# ----------------------------------------------------------------------------- calibration clips

def test_calib_split_is_disjoint_and_shaped(shipped64):
    assert len(shipped64.clips) == 6 and len(shipped64.held_out) == 4
    assert all(c.shape == (1, 3, 4, 64, 64) and c.dtype == np.float32 for c in shipped64.clips + shipped64.held_out)
    for c in shipped64.clips:
        assert not any(np.array_equal(c, h) for h in shipped64.held_out)
    assert len(shipped64.held_out_labels) == 4
    assert shipped64.record() == {"source": str(calib_data.shipped_manifest()), "clips": 6, "method": "minmax",
                                  "held_out_clips": 4}
    assert list(shipped64) == list(shipped64.clips)  # iterating gives the calibration clips only


def test_too_few_calibration_clips(tmp_path):
    for i in range(3):
        shutil.copy(calib_data.shipped_dir() / "videos" / f"clip_0000{i}.mp4", tmp_path)
    with pytest.raises(BadInput, match=r"only 3 usable clips"):
        read_calib(tmp_path, (1, 3, 2, 32, 32), clips=4, held_out=2, progress=False)
    with pytest.raises(BadInput, match=f"need at least {MIN_CALIB_CLIPS}"):
        CalibSet("x", tuple(np.zeros((1, 3, 2, 16, 16), np.float32) for _ in range(2)))
    with pytest.raises(BadInput, match="calib-clips"):
        read_calib(tmp_path, (1, 3, 2, 32, 32), clips=1, progress=False)
    with pytest.raises(BadInput, match="unknown"):
        read_calib(tmp_path, (1, 3, 2, 32, 32), method="mse", progress=False)


def test_no_readable_calibration_clips(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"not a video")
    with pytest.raises(BadInput):
        read_calib(tmp_path, (1, 3, 2, 32, 32), clips=4, held_out=2, progress=False)


@pytest.mark.parametrize("target", ["onnxruntime", "openvino", "tensorrt"])
def test_wrong_shape_clips_refused(target, toy, tmp_path):
    wrong = [np.zeros((1, 3, 2, 32, 32), np.float32)] * 4
    with pytest.raises(BadInput, match=r"calibration clip 0 has shape \(1, 3, 2, 32, 32\)"):
        runtime(target).compile(toy[0], TOY, tmp_path / "art", calib=wrong)


def test_wrong_shape_calibset_refused_before_build(tmp_path):
    calib = CalibSet("clips", tuple(np.zeros((1, 3, 2, 32, 32), np.float32) for _ in range(4)))
    with pytest.raises(BadInput, match="has shape"):
        compile_variant(Variant("x3d_xs", frames=4, resolution=64, precision="int8"), "onnxruntime",
                        tmp_path / "art", calib=calib)
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("target", ["onnxruntime", "openvino", "tensorrt"])
def test_int8_without_calibration_refused(target, toy, tmp_path):
    with pytest.raises(BadInput, match="int8 needs calibration clips"):
        runtime(target).compile(toy[0], TOY, tmp_path / "art")


# ----------------------------------------------------------------------------- recipes and figures

class _X3dBlock(nn.Module):
    """X3D's bottleneck in miniature: 1x1x1 conv, depthwise 3x3x3, Swish, 1x1x1, residual add."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.a, self.b = nn.Conv3d(3, c, 1), nn.Conv3d(c, c, 3, padding=1, groups=c)
        self.c, self.d = nn.Conv3d(c, c, 1), nn.Conv3d(c, c, (5, 1, 1), padding=(2, 0, 0), groups=c)

    def forward(self, x):
        y = torch.relu(self.a(x))
        z = self.b(y)
        z = z * torch.sigmoid(z)
        return self.d(y + self.c(z))


@pytest.mark.parametrize("activations", ["QUInt8", "QInt8"])
def test_x86_recipe_runs_x3d_ops_in_int8_with_u8_activations(tmp_path, activations):
    """Why the x86 recipe takes U8 activations: onnxruntime's CPU EP turns the whole
    block - grouped convolutions, the Swish product, the residual add - into QLinear
    ops with U8 activations (the optimised graph onnxruntime itself writes out); with
    S8 ones (its "first choice") the trained X3D-XS kept 57 grouped Convs and every
    Mul/Add float between 189 QuantizeLinear / 369 DequantizeLinear and 86 Transposes."""
    from dataclasses import replace

    import onnxruntime as ort

    from quant.ort import quantize_onnx

    torch.onnx.export(_X3dBlock().eval(), torch.zeros(1, 3, 4, 16, 16), str(tmp_path / "m.onnx"),
                      input_names=["clip"], dynamo=False)
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((1, 3, 4, 16, 16)).astype(np.float32) for _ in range(4)]
    recipe = replace(ort_recipe("minmax", flags={"avx2"}, machine="x86_64"), activation_type=activations)
    quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", clips, recipe, "clip")
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(tmp_path / "q.onnx"), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    float_ops = [op for op in ops if op in ("Conv", "FusedConv", "Mul", "Add", "Sigmoid")]
    if activations == "QUInt8":
        assert not float_ops and ops.count("QLinearConv") == 4 and "QLinearMul" in ops and "QLinearAdd" in ops, ops
    else:
        assert float_ops, ops


def test_ort_recipe_follows_the_cpu():
    avx2 = ort_recipe("minmax", flags={"avx2", "fma"}, machine="x86_64")
    assert avx2.reduce_range and (avx2.activation_type, avx2.weight_type) == ("QUInt8", "QInt8") and avx2.per_channel
    vnni = ort_recipe("minmax", flags={"avx2", "avx512_vnni"}, machine="x86_64")
    assert not vnni.reduce_range and vnni.activation_type == "QUInt8"
    arm = ort_recipe("entropy", flags=set(), machine="aarch64")
    assert not arm.reduce_range and arm.activation_type == arm.weight_type == "QInt8"
    trt = ort_recipe("minmax", tensorrt=True)
    assert trt.symmetric_activations and not trt.reduce_range and set(trt.op_types) >= {"Conv", "Gemm"}


def test_fidelity_figures():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 10))
    same = fidelity(ref, ref, [0] * 8)
    assert same.agreement == 1.0 and same.cosine == pytest.approx(1.0) and same.sqnr_db == float("inf")
    noise = rng.standard_normal((8, 10)) * 0.1
    f = fidelity(ref, ref + noise, [int(i) for i in ref.argmax(1)[:4]] + [None] * 4)
    assert f.sqnr_db == pytest.approx(10 * np.log10((ref ** 2).sum() / (noise ** 2).sum()))
    assert f.top1_fp32 == 1.0 and f.labelled == 4 and 0.0 <= f.agreement <= 1.0
    assert fidelity(ref, -ref).agreement < 0.5 and fidelity(ref, -ref).top1_int8 is None


# ----------------------------------------------------------------------------- targets on a toy

@pytest.mark.parametrize("name,method,why", [("openvino", "entropy", "is not offered by NNCF"),
                                             ("onnxruntime", "histogram", "is not offered")])
def test_a_calibration_method_the_runtime_does_not_offer(toy, tmp_path, name, method, why):
    model, clips = toy
    with pytest.raises(BadInput, match=f"calibration method '{method}' {why}"):
        runtime(name).compile(model, TOY, tmp_path / "art", calib=CalibSet("toy", tuple(clips[:6]), method))


def _qdq_ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_onnxruntime_int8_toy(toy, tmp_path, method):
    model, clips = toy
    target = runtime("onnxruntime")
    calib = CalibSet("toy", tuple(clips[:6]), method)
    art = target.compile(model, TOY, tmp_path / "art", calib=calib)
    ops = _qdq_ops(art.model_path)
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 5
    assert art.precision == "int8" and art.notes["quant"]["method"] == method
    assert art.notes["quant"]["calib_clips"] == 6 and art.notes["quant"]["per_channel"]
    runner = target.load(Artifact.read(art.path))
    with torch.no_grad():
        ref = model(torch.from_numpy(clips[7])).numpy()
    got = runner(clips[7])
    assert got.shape == (1, 5)
    f = fidelity(ref, got)
    assert f.cosine > 0.95 and f.sqnr_db > 10


def test_openvino_int8_toy_has_fake_quantize(toy, tmp_path):
    import openvino as ov

    model, clips = toy
    target = runtime("openvino")
    art = target.compile(model, TOY, tmp_path / "art", calib=clips[:6])
    ir = ov.Core().read_model(str(art.model_path))
    assert sum(op.get_type_name() == "FakeQuantize" for op in ir.get_ops()) >= 3
    assert art.notes["quant"]["fake_quantize"] >= 3 and art.notes["quant"]["preset"] == "performance"
    assert art.notes["quant"]["method"] == "histogram" and art.notes["quant"]["activation_ranges"] == "HISTOGRAM"
    got = target.load(Artifact.read(art.path))(clips[7])
    with torch.no_grad():
        ref = model(torch.from_numpy(clips[7])).numpy()
    assert fidelity(ref, got).cosine > 0.95


def test_tensorrt_int8_is_explicit_symmetric_qdq(toy, tmp_path):
    from onnx import numpy_helper

    model, clips = toy
    target = get_target("tensorrt")
    art = target.compile(model, TOY, tmp_path / "art", calib=clips[:6])
    onnx_path = art.path / "model.onnx"
    proto = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    quants = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert quants, "no QuantizeLinear in the TensorRT QDQ model"
    for n in quants:  # symmetric: every zero point is 0, int8
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    consumers = {i: n.op_type for n in proto.graph.node for i in n.input}
    dq_out = [n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    assert {consumers[o] for o in dq_out} <= {"Conv", "Gemm", "MatMul"}
    assert art.notes["quant"]["symmetric_activations"] and not art.notes["quant"]["reduce_range"]


def test_unsupported_precision_pairs_have_a_reason(toy, tmp_path):
    with pytest.raises(BadInput, match="fpga: precision fp16 is not supported"):
        get_target("fpga").compile(toy[0], TOY.with_(precision="fp16"), tmp_path / "a")
    tflite = get_target("tflite")
    if "int8" not in getattr(__import__("targets.tflite", fromlist=["PRECISIONS"]), "PRECISIONS", ()):
        with pytest.raises(BadInput, match="tflite: precision int8"):
            tflite.compile(toy[0], TOY, tmp_path / "b", calib=toy[1])


# ----------------------------------------------------------------------------- zoo models, compile_variant

@pytest.fixture
def realistic_models(monkeypatch):
    """compile_variant builds zoo models with BN randomised to a realistic scale."""
    import edge.compile

    def build(v):
        torch.manual_seed(0)
        return randomize_bn(create_model(v), v.input_shape)

    monkeypatch.setattr(edge.compile, "create_model", build)


SHIPPED_CKPT = Path(__file__).resolve().parents[1] / "edge" / "checkpoints" / "x3d_xs_mutual_synth10.pt"


@pytest.mark.slow
@pytest.mark.parametrize("model, target", [
    ("x3d_xs", "onnxruntime"), ("x3d_xs", "openvino"), ("ghost_tsm", "onnxruntime"), ("ghost_tsm", "openvino")])
def test_zoo_int8_compiles_with_fidelity(model, target, shipped64, realistic_models, tmp_path):
    """X3D-XS: the shipped trained checkpoint at its smallest configuration (random-weight
    X3D's near-tied logits quantize to cosine ~0.7-0.8 and say nothing about the quantizer);
    ghost_tsm has no trained weights: random weights with BN at a realistic scale."""
    runtime(target)
    if model == "x3d_xs":
        variant, ckpt = Variant(model, 0.25, 96, 4, "int8"), SHIPPED_CKPT
        calib = read_calib(None, variant.input_shape, clips=6, held_out=4, progress=False, mode="uniform")
    else:
        variant, ckpt, calib = Variant(model, precision="int8", **SMALL), None, shipped64
    art = compile_variant(variant, target, tmp_path / "art", ckpt=ckpt, options=TargetOptions(threads=2),
                          calib=calib, gate=Gate(max_drop=1.0, min_sqnr_db=-math.inf))
    fid = json.loads((art.path / ARTIFACT_JSON).read_text())["fidelity"]
    # the trained checkpoint: fidelity and top-1 on its 300 labelled held-out clips; untrained: the held-out calib clips
    assert art.status == "ok" and fid["clips"] == (300 if ckpt else 4) and fid["measured_with"] == target, fid
    if ckpt:
        acc = art.notes["accuracy"]
        assert acc["clips"] == 300 and acc["top1"] == fid["top1_int8"] and acc["measured_with"] == target
        assert fid["top1_drop"] == pytest.approx(fid["reference_top1"]["top1"] - acc["top1"], abs=1e-6)
    else:
        assert art.notes["accuracy"]["top1"] is None and "untrained" in art.notes["accuracy"]["reason"]
    assert 0.0 <= fid["agreement"] <= 1.0 and -1.0 <= fid["cosine"] <= 1.0 and fid["cosine"] > 0.9, fid
    assert fid["sqnr_db"] > 0, fid
    assert art.notes["calibration"]["clips"] == 6 and art.notes["calibration"]["method"] == "minmax"
    clip = calib.held_out[0]
    out = get_target(target).load(Artifact.read(art.path))(clip)
    assert out.shape == tuple(art.output.shape) and out.shape[0] == 1 and np.isfinite(out).all()


@pytest.mark.slow
def test_cli_gate_failure_keeps_the_artifact_marked_failed(tmp_path, capsys):
    """Untrained weights have no labelled clips: the gate is logit SQNR; 200 dB fails."""
    out = tmp_path / "art"
    rc = main(["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--precision", "int8", "--frames", "2",
               "--resolution", "32", "--calib-clips", "4", "--min-sqnr", "200", "--out", str(out), "--json"])
    cap = capsys.readouterr()
    assert rc == 1 and "below --min-sqnr 200 dB" in cap.err
    shown = json.loads(cap.out)
    manifest = json.loads((out / ARTIFACT_JSON).read_text())
    assert manifest["status"] == "failed" == shown["status"]
    assert manifest["fidelity"]["gate"]["min_sqnr_db"] == 200 and 0.0 <= manifest["fidelity"]["agreement"] <= 1.0
    assert manifest["notes"]["calibration"]["clips"] == 4 and manifest["notes"]["calibration"]["method"] == "percentile"
    assert "QuantizeLinear" in _qdq_ops(out / "model.onnx")
    with pytest.raises(BadInput, match="status is 'failed'"):
        get_target("onnxruntime").load(Artifact.read(out))


@pytest.mark.parametrize("flag, value, why", [
    ("--max-drop", "1.5", "--max-drop 1.5: must be a fraction in [0, 1]"),
    ("--max-drop", "-0.1", "--max-drop -0.1: must be a fraction in [0, 1]"),
    ("--min-agreement", "1.01", "--min-agreement 1.01: must be in [0, 1]")])
def test_cli_gate_flags_out_of_range_are_bad_input(tmp_path, capsys, flag, value, why):
    rc = main(["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--precision", "int8", "--frames", "2",
               "--resolution", "32", "--calib-clips", "4", flag, value, "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 2 and why in err and "Traceback" not in err and not (tmp_path / "a").exists()


def test_cli_calib_only_with_int8(tmp_path, capsys):
    rc = main(["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--calib", str(tmp_path),
               "--out", str(tmp_path / "a")])
    assert rc == 2 and "--calib is for --precision int8" in capsys.readouterr().err


@pytest.mark.slow
def test_tensorrt_int8_fidelity_measured_on_the_qdq_onnx(shipped64, realistic_models, tmp_path):
    if get_target("tensorrt").available():
        pytest.skip("TensorRT present: its own runner measures fidelity (covered by the GPU runs)")
    calib = read_calib(None, (1, 3, 2, 32, 32), clips=4, held_out=3, progress=False)
    art = compile_variant(Variant("x3d_xs", frames=2, resolution=32, precision="int8"), "tensorrt",
                          tmp_path / "art", calib=calib, gate=Gate(min_sqnr_db=-math.inf))
    assert art.status == "unbuilt" and art.fidelity["clips"] == 3
    assert art.fidelity["measured_with"].startswith("onnxruntime CPU") and art.fidelity["sqnr_db"] > 0


@pytest.mark.parametrize("name, expected", [("slowfast_r50", ["/blocks.0/multipathway_blocks.1/conv/Conv"]),
                                            ("x3d_xs", []), ("r2plus1d_18", []), ("s3d", [])])
def test_convs_ort_runs_slower_in_int8_stay_float_by_rule(name, expected, tmp_path):
    """Only a dense conv over <= 4 channels with temporal taps (SlowFast's Fast stem, 5x7x7 on RGB)."""
    from edge.models import create_model
    from edge.core.variant import Variant
    from quant.ort import slow_int8_convs
    from targets.export import export_onnx

    v = Variant(name, frames=8, resolution=32)
    path = export_onnx(create_model(v, num_classes=4), v.input_shape, tmp_path / "m.onnx").path
    assert slow_int8_convs(path) == expected
