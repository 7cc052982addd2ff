"""The runtime targets (onnxruntime, openvino, tensorrt): fp32 parity with PyTorch
over every registered model, fp16, artifact integrity, bad input, the TensorRT
constraint check and engine-build plumbing, and ``edgevid compile``."""
import json
import os
import sys
import types

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper

from edge.cli import main
from edge.compile import compile_variant
from edge.core.errors import BadInput, GateFailed
from targets.export import export_onnx
from edge.models import create_model
from edge.models.common import Swish
from edge.core.variant import Variant
from helpers import distinct_models, randomize_bn
from targets import tensorrt as trt_target
from quant.spec import TensorSpec
from targets.base import ARTIFACT_JSON, Artifact
from targets.registry import TARGETS, TargetOptions, get_target

RUNTIME_TARGETS = ["onnxruntime", "openvino", "tensorrt"]
SMALL = dict(frames=4, resolution=64)
MAX_ABS, MIN_COS = 1e-3, 0.9999


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def runtime(name: str, **options) -> object:
    """The target, or skip with its reason when its runtime is absent here."""
    target = get_target(name, TargetOptions(threads=2, **options))
    if not target.available():
        pytest.skip(target.unavailable_reason())
    return target


# ----------------------------------------------------------------------------- a toy model

class ToyNet(nn.Module):
    """Conv3d/BN3d/Swish + squeeze-excitation + AvgPool3d + linear: (1, 3, 2, 16, 16) -> (1, 5)."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (3, 3, 3), stride=(1, 2, 2), padding=1, bias=False)
        self.bn = nn.BatchNorm3d(8)
        self.act = Swish()
        self.dw = nn.Conv3d(8, 8, 3, padding=1, groups=8)
        self.se = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Conv3d(8, 4, 1), nn.ReLU(), nn.Conv3d(4, 8, 1),
                                nn.Sigmoid())
        self.pool = nn.AvgPool3d((2, 8, 8))
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(x)))
        x = self.dw(x)
        x = x * self.se(x)
        return self.fc(self.pool(x).flatten(1))


TOY_VARIANT = Variant("x3d_xs", frames=2, resolution=16)  # the toy takes x3d_xs's place in tags


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(model, onnx path, clip, torch logits) of the toy at TOY_VARIANT's input shape."""
    torch.manual_seed(0)
    model = randomize_bn(ToyNet())
    path = export_onnx(model, TOY_VARIANT.input_shape, tmp_path_factory.mktemp("toy") / "toy.onnx").path
    clip = np.random.default_rng(1).standard_normal(TOY_VARIANT.input_shape, dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(clip)).numpy()
    return model, path, clip, ref


@pytest.fixture(scope="module")
def toy_artifacts(toy, tmp_path_factory):
    """One fp32 toy artifact per runtime target (a fresh copy per test via ``copy_artifact``)."""
    out = {}
    for name in RUNTIME_TARGETS:
        out[name] = get_target(name, TargetOptions(threads=2)).compile(
            toy[1], TOY_VARIANT, tmp_path_factory.mktemp(name) / "art")
    return out


def copy_artifact(art: Artifact, dest) -> Artifact:
    import shutil

    shutil.copytree(art.path, dest)
    return Artifact.read(dest)


# ----------------------------------------------------------------------------- parity over the zoo

@pytest.fixture(scope="module")
def zoo_export(tmp_path_factory):
    """name -> (variant, onnx path, clip, torch logits), exported once per model."""
    cache = {}

    def get(name: str):
        if name not in cache:
            variant = Variant(name, **SMALL)
            torch.manual_seed(0)
            model = randomize_bn(create_model(variant, num_classes=11))
            path = export_onnx(model, variant.input_shape, tmp_path_factory.mktemp(name) / "m.onnx").path
            clip = np.random.default_rng(0).standard_normal(variant.input_shape, dtype=np.float32)
            with torch.no_grad():
                ref = model(torch.from_numpy(clip)).numpy()
            cache[name] = (variant, path, clip, ref)
        return cache[name]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("target", RUNTIME_TARGETS)
@pytest.mark.parametrize("name", distinct_models())
def test_fp32_parity_with_pytorch(name, target, zoo_export, tmp_path):
    tgt = runtime(target)
    variant, path, clip, ref = zoo_export(name)
    art = tgt.compile(path, variant, tmp_path / "art")
    runner = tgt.load(Artifact.read(art.path))
    try:
        out = runner(clip)
    finally:
        runner.close()
    assert out.shape == ref.shape == (1, 11)
    assert np.abs(out - ref).max() < MAX_ABS, np.abs(out - ref).max()
    assert cosine(out, ref) > MIN_COS


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_toy_fp32_parity_and_artifact_contents(target, toy, toy_artifacts):
    tgt = runtime(target)
    art = Artifact.read(toy_artifacts[target].path)
    assert art.target == target and art.precision == "fp32" and art.status == "ok"
    assert art.input.shape == TOY_VARIANT.input_shape and art.output.shape == (1, 5)
    runner = tgt.load(art)
    out = runner(toy[2])
    assert np.abs(out - toy[3]).max() < MAX_ABS and cosine(out, toy[3]) > MIN_COS
    out[:] = 0  # the runner hands out its own copy
    assert np.abs(runner(toy[2]) - toy[3]).max() < MAX_ABS
    runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner(toy[2])


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_fp16_stays_close(target, toy, tmp_path):
    tgt = runtime(target)
    art = tgt.compile(toy[1], TOY_VARIANT.with_(precision="fp16"), tmp_path / "art")
    assert art.precision == "fp16"
    out = tgt.load(art)(toy[2])
    assert cosine(out, toy[3]) > 0.999
    assert np.abs(out - toy[3]).max() < 0.05 * np.abs(toy[3]).max() + 1e-3


def test_openvino_fp16_ir_stores_half_precision_weights(toy, toy_artifacts, tmp_path):
    tgt = runtime("openvino")
    fp16 = tgt.compile(toy[1], TOY_VARIANT.with_(precision="fp16"), tmp_path / "art")
    fp32 = toy_artifacts["openvino"]
    assert (fp16.path / "model.bin").stat().st_size < 0.6 * (fp32.path / "model.bin").stat().st_size


def test_openvino_blob_used_and_ir_fallback(toy, toy_artifacts, tmp_path):
    tgt = runtime("openvino")
    art = copy_artifact(toy_artifacts["openvino"], tmp_path / "art")
    assert art.notes["front_end"] == "onnx" and art.notes["blob"] == "model.cpu.blob"
    assert set(art.files) == {"model.xml", "model.bin", "model.cpu.blob"}
    assert tgt.load(art).loaded_from == "blob"
    # another OpenVINO version built the blob: compile the IR instead, same numbers
    other = art.with_(tools={**art.tools, "openvino": "0.0.0"}).write()
    runner = tgt.load(Artifact.read(other.path))
    assert runner.loaded_from == "ir"
    assert np.abs(runner(toy[2]) - toy[3]).max() < MAX_ABS


# ----------------------------------------------------------------------------- artifact integrity

@pytest.mark.parametrize("target", RUNTIME_TARGETS)
@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_tampered_or_truncated_artifact_refused(target, damage, toy_artifacts, tmp_path):
    art = copy_artifact(toy_artifacts[target], tmp_path / "art")
    f = art.model_path
    data = f.read_bytes()
    if damage == "flip":
        f.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    else:
        f.unlink()
    expected = "missing from the artifact" if damage == "delete" else "sha256 does not match"
    with pytest.raises(BadInput, match=expected):
        Artifact.read(art.path)
    with pytest.raises(BadInput, match=expected):  # load re-verifies an Artifact read earlier
        get_target(target).load(art)


@pytest.mark.parametrize("content", ["{not json", '{"format": "edgevid-artifact", "version": 1}', ""])
def test_corrupt_artifact_json_refused(content, toy_artifacts, tmp_path):
    art = copy_artifact(toy_artifacts["onnxruntime"], tmp_path / "art")
    (art.path / ARTIFACT_JSON).write_text(content)
    with pytest.raises(BadInput, match=ARTIFACT_JSON):
        Artifact.read(art.path)


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_manifest_shape_edited_refused(target, toy_artifacts, tmp_path):
    """artifact.json is not hashed: an input shape edited there is caught against the model file."""
    art = copy_artifact(toy_artifacts[target], tmp_path / "art")
    edited = art.with_(input=TensorSpec(art.input.name, (1, 3, 8, 16, 16))).write()
    with pytest.raises(BadInput, match=r"artifact.json says input shape \(1, 3, 8, 16, 16\)"):
        runtime(target).load(Artifact.read(edited.path))


def test_artifact_of_another_target_refused(toy_artifacts):
    art = Artifact.read(toy_artifacts["onnxruntime"].path)
    with pytest.raises(BadInput, match="compiled for target 'onnxruntime', not 'openvino'"):
        get_target("openvino").load(art)


# ----------------------------------------------------------------------------- bad clips

@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_clip_of_wrong_shape_names_both_shapes(target, toy_artifacts):
    runner = runtime(target).load(Artifact.read(toy_artifacts[target].path))
    bad = np.zeros((1, 3, 4, 16, 16), np.float32)
    with pytest.raises(BadInput) as e:
        runner(bad)
    assert str(TOY_VARIANT.input_shape) in str(e.value) and "(1, 3, 4, 16, 16)" in str(e.value)


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_clip_refused(target, value, toy, toy_artifacts):
    """Documented behaviour (targets.base.check_clip): NaN/Inf input is refused, not propagated."""
    runner = runtime(target).load(Artifact.read(toy_artifacts[target].path))
    clip = toy[2].copy()
    clip[0, 1, 1, 2, 3] = value
    with pytest.raises(BadInput, match="NaN or Inf"):
        runner(clip)


def test_float64_clip_of_right_shape_is_accepted(toy, toy_artifacts):
    runner = runtime("onnxruntime").load(Artifact.read(toy_artifacts["onnxruntime"].path))
    out = runner(toy[2].astype(np.float64))
    assert out.dtype == np.float32 and np.abs(out - toy[3]).max() < MAX_ABS


# ----------------------------------------------------------------------------- bad models and options

@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_corrupt_onnx_refused(target, toy, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(toy[1].read_bytes()[:200])
    with pytest.raises(BadInput, match="bad.onnx"):
        get_target(target).check(bad)
    with pytest.raises(BadInput, match="bad.onnx"):
        get_target(target).compile(bad, TOY_VARIANT, tmp_path / "art")


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_onnx_of_other_shape_than_variant_refused(target, toy, tmp_path):
    with pytest.raises(BadInput, match=r"needs \(1, 3, 4, 16, 16\)"):
        get_target(target).compile(toy[1], TOY_VARIANT.with_(frames=4), tmp_path / "art")


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_int8_refused_until_quant(target, toy, tmp_path):
    with pytest.raises(BadInput, match="int8"):
        get_target(target).compile(toy[1], TOY_VARIANT.with_(precision="int8"), tmp_path / "art")


def _model(nodes, inputs, outputs, opset=17, initializers=(), domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   *(helper.make_opsetid(d, 1) for d in domains)])


CLIP = helper.make_tensor_value_info("clip", TensorProto.FLOAT, [1, 3, 2, 8, 8])
LOGITS = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])


@pytest.fixture
def det_onnx(tmp_path):
    """A static model with an op (Det) that ONNX Runtime runs and TensorRT/OpenVINO cannot take."""
    m = _model([helper.make_node("ReduceMean", ["clip"], ["m"], axes=[2], keepdims=0, name="mean"),
                helper.make_node("Det", ["m"], ["logits"], name="det")], [CLIP], [LOGITS])
    onnx.save(m, tmp_path / "det.onnx")
    return tmp_path / "det.onnx"


def test_model_a_target_cannot_take_lists_reasons(det_onnx, tmp_path):
    v = Variant("x3d_xs", frames=2, resolution=8)
    assert get_target("onnxruntime").check(det_onnx) == []
    assert get_target("openvino").check(det_onnx) == ["op Det-17: no conversion rule in the OpenVINO ONNX front end"]
    with pytest.raises(GateFailed, match="Det"):
        get_target("openvino").compile(det_onnx, v, tmp_path / "ov")
    with pytest.raises(GateFailed, match=r"node 'det' \(Det\): not supported"):
        get_target("tensorrt").compile(det_onnx, v, tmp_path / "trt")


def test_custom_op_rejected_by_onnxruntime(tmp_path):
    m = _model([helper.make_node("ReduceMean", ["clip"], ["m"], axes=[2, 3, 4], keepdims=0),
                helper.make_node("Foo", ["m"], ["logits"], name="foo", domain="custom.x")],
               [CLIP], [LOGITS], domains=["custom.x"])
    onnx.save(m, tmp_path / "custom.onnx")
    (reason,) = get_target("onnxruntime").check(tmp_path / "custom.onnx")
    assert "Foo" in reason and "custom.x" in reason


def test_onnxruntime_unavailable_device_refused(toy_artifacts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA EP")
    with pytest.raises(BadInput, match="CUDAExecutionProvider"):
        get_target("onnxruntime", TargetOptions(device="cuda")).load(toy_artifacts["onnxruntime"])
    with pytest.raises(BadInput, match="valid devices: cpu, cuda, tensorrt"):
        get_target("onnxruntime", TargetOptions(device="npu")).load(toy_artifacts["onnxruntime"])
    runner = get_target("onnxruntime", TargetOptions(device="cpu")).load(toy_artifacts["onnxruntime"])
    assert runner.providers == ["CPUExecutionProvider"]


def test_openvino_unavailable_device_refused(toy_artifacts):
    import openvino as ov

    if "NPU" in ov.Core().available_devices:
        pytest.skip("this machine has an NPU")
    with pytest.raises(BadInput, match="device 'NPU' is not available here; available devices: CPU"):
        get_target("openvino", TargetOptions(device="npu")).load(toy_artifacts["openvino"])


def test_openvino_threads_reach_the_compiled_model(toy_artifacts):
    runner = get_target("openvino", TargetOptions(threads=1)).load(toy_artifacts["openvino"])
    assert runner._compiled.get_property("INFERENCE_NUM_THREADS") == 1


# ----------------------------------------------------------------------------- TensorRT without TensorRT

def test_tensorrt_check_passes_our_exports(toy):
    assert trt_target.check_onnx(onnx.load(toy[1])) == []


def _tensor(name, dims, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


@pytest.mark.parametrize("case, expected", [
    ("dynamic", "input 'x': dynamic shape ['batch', 3, 8, 8]"),
    ("unique", "node 'u' (Unique): not supported by the TensorRT 10.x ONNX parser"),
    ("custom", "node 'c' (Foo): custom domain 'my.ops'; TensorRT needs a plugin"),
    ("pool1d", "node 'p' (MaxPool): 2D or 3D pooling only"),
    ("pool_dilated", "node 'p' (MaxPool): dilations must be empty or all ones"),
    ("resize_cubic", "node 'r' (Resize): mode must be nearest or linear"),
    ("qdq_zero_point", "node 'q' (QuantizeLinear): `y_zero_point` must be 0"),
    ("int64_big", "initializer 'big' (INT64): values outside the int32 range"),
    ("opset", "opset 21 outside TensorRT 10.x's range 9-20"),
    ("string", "element type STRING is not supported"),
])
def test_tensorrt_check_rules(case, expected):
    x = _tensor("x", [1, 3, 8, 8])
    y = _tensor("y", [1, 3, 8, 8])
    if case == "dynamic":
        m = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_tensor("x", ["batch", 3, 8, 8])],
                   [_tensor("y", ["batch", 3, 8, 8])])
    elif case == "unique":
        m = _model([helper.make_node("Unique", ["x"], ["y"], name="u")], [x], [_tensor("y", [1])])
    elif case == "custom":
        m = _model([helper.make_node("Foo", ["x"], ["y"], name="c", domain="my.ops")], [x], [y], domains=["my.ops"])
    elif case == "pool1d":
        m = _model([helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[3], pads=[1, 1])],
                   [_tensor("x", [1, 3, 8])], [_tensor("y", [1, 3, 8])])
    elif case == "pool_dilated":
        m = _model([helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[3, 3], pads=[2, 2, 2, 2],
                                     dilations=[2, 2])], [x], [y])
    elif case == "resize_cubic":
        scales = helper.make_tensor("s", TensorProto.FLOAT, [4], [1, 1, 1, 1])
        m = _model([helper.make_node("Resize", ["x", "", "s"], ["y"], name="r", mode="cubic")], [x], [y],
                   initializers=[scales])
    elif case == "qdq_zero_point":
        inits = [helper.make_tensor("sc", TensorProto.FLOAT, [], [0.1]),
                 helper.make_tensor("zp", TensorProto.INT8, [], [3])]
        m = _model([helper.make_node("QuantizeLinear", ["x", "sc", "zp"], ["q8"], name="q"),
                    helper.make_node("DequantizeLinear", ["q8", "sc"], ["y"], name="dq")], [x], [y],
                   initializers=inits)
    elif case == "int64_big":
        inits = [helper.make_tensor("big", TensorProto.INT64, [1], [2**40])]
        m = _model([helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT64, name="cast"),
                    helper.make_node("Add", ["xi", "big"], ["y"], name="add")], [x],
                   [_tensor("y", [1, 3, 8, 8], TensorProto.INT64)], initializers=inits)
    elif case == "opset":
        m = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y], opset=21)
    else:  # string
        m = _model([helper.make_node("Identity", ["x"], ["y"], name="i")], [_tensor("x", [2], TensorProto.STRING)],
                   [_tensor("y", [2], TensorProto.STRING)])
    reasons = trt_target.check_onnx(m)
    assert any(expected in r for r in reasons), reasons


def test_tensorrt_check_accepts_open_ended_slices():
    """INT64_MAX as a Slice end (torch's x[:, 1:]) is clamped exactly by TensorRT: no reason."""
    inits = [helper.make_tensor("st", TensorProto.INT64, [1], [1]),
             helper.make_tensor("en", TensorProto.INT64, [1], [2**63 - 1]),
             helper.make_tensor("ax", TensorProto.INT64, [1], [1])]
    m = _model([helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"], name="s")],
               [_tensor("x", [1, 3, 8, 8])], [_tensor("y", [1, 2, 8, 8])], initializers=inits)
    assert trt_target.check_onnx(m) == []


@pytest.mark.skipif(get_target("tensorrt").available(), reason="TensorRT is installed here")
def test_tensorrt_without_runtime_writes_unbuilt_artifact(toy, toy_artifacts):
    tgt = get_target("tensorrt")
    assert not tgt.available() and "TensorRT is not installed" in tgt.unavailable_reason()
    art = Artifact.read(toy_artifacts["tensorrt"].path)
    assert art.status == "unbuilt" and art.model_file == "model.onnx" and set(art.files) == {"model.onnx"}
    assert art.notes["engine"] == f"not built: {tgt.unavailable_reason()}"
    assert trt_target.check_onnx(onnx.load(art.model_path)) == []
    with pytest.raises(BadInput) as e:
        tgt.load(art)
    assert str(e.value) == f"{art.path}: TensorRT runtime not available on this machine: {tgt.unavailable_reason()}"


@pytest.mark.parametrize("precision, flag", [("fp32", None), ("fp16", "--fp16"), ("int8", "--int8")])
def test_trtexec_command_line(precision, flag):
    cmd = trt_target.trtexec_command("/opt/trt/bin/trtexec", "/a/model.onnx", "/a/model.engine", precision)
    assert cmd[:4] == ["/opt/trt/bin/trtexec", "--onnx=/a/model.onnx", "--saveEngine=/a/model.engine",
                       "--skipInference"]
    assert ("--fp16" in cmd) == (flag == "--fp16") and ("--int8" in cmd) == (flag == "--int8")


def test_trtexec_build_runs_the_command_and_reports_failure(tmp_path):
    """A stand-in trtexec (a shell script) proves the command runs and a failed build is reported."""
    fake = tmp_path / "trtexec"
    fake.write_text("#!/bin/sh\necho '[I] TensorRT version: 10.3.0'\n"
                    "for a in \"$@\"; do case $a in --saveEngine=*) echo engine > \"${a#*=}\";; "
                    "--fp16) echo 'no fp16 here' >&2; exit 3;; esac; done\n")
    fake.chmod(0o755)
    assert trt_target.build_with_trtexec(str(fake), tmp_path / "m.onnx", tmp_path / "m.engine", "fp32") == "10.3.0"
    assert (tmp_path / "m.engine").read_text() == "engine\n"
    with pytest.raises(GateFailed, match="no fp16 here"):
        trt_target.build_with_trtexec(str(fake), tmp_path / "m.onnx", tmp_path / "n.engine", "fp16")


@pytest.mark.skipif(get_target("tensorrt").available(), reason="TensorRT is installed here")
def test_tensorrt_compile_builds_with_trtexec_on_path(toy, tmp_path, monkeypatch):
    """With only trtexec (no Python package) the engine is built, and load says it cannot run it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "trtexec").write_text("#!/bin/sh\necho 'TensorRT version: 10.3.0'\n"
                                     "for a in \"$@\"; do case $a in --saveEngine=*) echo plan > \"${a#*=}\";; "
                                     "esac; done\n")
    (bin_dir / "trtexec").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    tgt = get_target("tensorrt")
    art = tgt.compile(toy[1], TOY_VARIANT.with_(precision="fp16"), tmp_path / "art")
    assert art.status == "ok" and art.model_file == "model.engine" and set(art.files) == {"model.engine", "model.onnx"}
    assert art.tools["tensorrt"] == "10.3.0" and art.notes["engine"] == f"built with {bin_dir / 'trtexec'}"
    with pytest.raises(BadInput, match="TensorRT runtime not available on this machine: .*can be built, not run"):
        tgt.load(Artifact.read(art.path))


class _FakeTrt(types.SimpleNamespace):
    """The slice of the TensorRT Python API the builder uses, recording what it is asked."""

    def __init__(self, parse_ok=True):
        calls = {"flags": [], "pool": None}
        ns = types.SimpleNamespace

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger): ...

            def parse_from_file(self, path):
                calls["parsed"] = path
                return parse_ok

            def get_error(self, i):
                return "In node 3 (Det): UNSUPPORTED_NODE"

        config = ns(set_flag=lambda f: calls["flags"].append(f),
                    set_memory_pool_limit=lambda pool, size: calls.update(pool=(pool, size)))
        builder = ns(create_network=lambda flags: "network", create_builder_config=lambda: config,
                     build_serialized_network=lambda network, cfg: b"ENGINE")
        super().__init__(Logger=type("Logger", (), {"WARNING": 2, "ERROR": 1, "__init__": lambda s, lvl: None}),
                         Builder=lambda logger: builder, OnnxParser=Parser, calls=calls,
                         BuilderFlag=ns(FP16="FP16", INT8="INT8"), MemoryPoolType=ns(WORKSPACE="WS"))


@pytest.mark.parametrize("precision, flags", [("fp32", []), ("fp16", ["FP16"]), ("int8", ["INT8"])])
def test_tensorrt_python_api_build_sequence(precision, flags, tmp_path, monkeypatch):
    fake = _FakeTrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    trt_target.build_with_python_api(tmp_path / "m.onnx", tmp_path / "m.engine", precision)
    assert (tmp_path / "m.engine").read_bytes() == b"ENGINE"
    assert fake.calls["flags"] == flags and fake.calls["parsed"] == str(tmp_path / "m.onnx")
    assert fake.calls["pool"] == ("WS", trt_target.WORKSPACE_BYTES)


def test_tensorrt_python_api_parser_errors_reported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", _FakeTrt(parse_ok=False))
    with pytest.raises(GateFailed, match=r"In node 3 \(Det\): UNSUPPORTED_NODE"):
        trt_target.build_with_python_api(tmp_path / "m.onnx", tmp_path / "m.engine", "fp32")
    assert not (tmp_path / "m.engine").exists()


# ----------------------------------------------------------------------------- edgevid compile

def test_unknown_target_exit_2_lists_valid_ones(capsys, tmp_path):
    assert main(["compile", "--model", "x3d_xs", "--target", "tpu", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edgevid: error: unknown target 'tpu'; valid targets: {', '.join(TARGETS)}"


def test_compile_refuses_to_overwrite_a_folder_that_is_not_an_artifact(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="not empty and holds no artifact"):
        compile_variant(Variant("x3d_xs", **SMALL), "onnxruntime", tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_compile_refuses_bad_numbers(capsys, tmp_path):
    assert main(["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--frames", "0",
                 "--out", str(tmp_path / "a")]) == 2
    assert "--frames must be a positive integer" in capsys.readouterr().err


@pytest.mark.slow
def test_compile_cli_writes_a_loadable_artifact(capsys, tmp_path):
    out = tmp_path / "art"
    args = ["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--precision", "fp32", "--resolution", "32",
            "--frames", "2", "--threads", "2", "--out", str(out), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["artifact"] == str(out) and summary["status"] == "ok"
    assert summary["variant"] == "x3d_xs-w1.0-r32-f2-fp32-p0.0" and summary["input"] == [1, 3, 2, 32, 32]
    assert summary["notes"]["check"]["max_abs_diff"] < MAX_ABS and summary["notes"]["check"]["cosine"] > MIN_COS
    art = Artifact.read(out)
    runner = get_target("onnxruntime").load(art)
    assert runner(np.zeros(art.input.shape, np.float32)).shape == (1, 400)
    # compiling again over the artifact replaces it; nothing else is left behind but the log beside it
    assert main(args[:-1]) == 0
    assert str(out) in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "art.log"]
    assert Artifact.read(out).files.keys() == {"model.onnx"}
