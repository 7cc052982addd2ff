"""FPGA target: compile = export + lower + check, the artifact, ``check-ops`` and
``lower`` on the command line, and bad input."""
from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import pvref
from helpers import distinct_models
from edge.cli import main
from edge.core.errors import BadInput, GateFailed
from targets.export import export_onnx
from edge.models import MODELS, create_model
from edge.models.common import Swish
from edge.core.variant import Variant
from targets.base import Artifact
from targets.checker import check
from targets.fpga import FpgaTarget
from targets.opset import FPGA_OPSET
from targets.registry import TARGETS, TargetOptions, get_target

needs_pytorchvideo = pytest.mark.skipif(not pvref.available(), reason="pytorchvideo (extra 'reference') not installed")


def small_variant(name: str) -> Variant:
    frames = MODELS[name].frames
    return Variant(name, resolution=64, frames=min(frames, 4))


def ort_run(path: str | Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


class Toy3d(nn.Module):
    """The X3D ingredients at toy size: 1x3x3 and 3x3x3 depthwise Conv3d, BN3d, ReLU,
    SE (mean over T, H, W), AvgPool3d head, Linear.  Swish only with ``swish``."""

    def __init__(self, swish: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.bn1 = nn.BatchNorm3d(8)
        self.dw = nn.Conv3d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn2 = nn.BatchNorm3d(8)
        self.se = nn.Sequential(nn.Conv3d(8, 4, 1), nn.ReLU(), nn.Conv3d(4, 8, 1), nn.Sigmoid()) if swish else None
        self.act = Swish() if swish else nn.ReLU()
        self.pool = nn.AvgPool3d((2, 4, 4))
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.stem(x)))
        x = self.bn2(self.dw(x))
        if self.se is not None:
            x = x * self.se(x.mean(dim=(2, 3, 4), keepdim=True))
        x = self.pool(self.act(x))
        return self.fc(x.mean(dim=(2, 3, 4)))


def toy(swish: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = Toy3d(swish)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


TOY_VARIANT = Variant("x3d_xs", resolution=16, frames=4)  # names the input shape (1, 3, 4, 16, 16)


@pytest.fixture(scope="module")
def toy_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy.onnx"
    export_onnx(toy(), TOY_VARIANT.input_shape, path)
    return path


@pytest.fixture(scope="module")
def x3d_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    v = small_variant("x3d_xs")
    path = tmp_path_factory.mktemp("x3d") / "x3d_xs.onnx"
    export_onnx(create_model(v, num_classes=10), v.input_shape, path)
    return path


# ----------------------------------------------------------------------------- target

def test_target_is_registered_and_available() -> None:
    target = get_target("fpga")
    assert isinstance(target, FpgaTarget) and target.available() and target.unavailable_reason() == ""


def test_compile_and_load_toy(tmp_path: Path) -> None:
    """nn.Module in, lowered ONNX artifact out; the runner matches PyTorch; a tampered
    artifact is refused."""
    model = toy()
    target = FpgaTarget(TargetOptions(threads=1))
    art = target.compile(model, TOY_VARIANT, tmp_path / "art")
    assert art.status == "ok" and art.target == "fpga" and list(art.files) == ["model.onnx"]
    assert check(art.model_path, FPGA_OPSET) == []
    assert art.notes["lowering"]["vs_source"]["max_abs_diff"] < 1e-5
    runner = target.load(Artifact.read(art.path))
    clip = np.random.default_rng(1).standard_normal(TOY_VARIANT.input_shape).astype(np.float32)
    got = runner(clip)
    with torch.no_grad():
        want = model(torch.from_numpy(clip)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    runner.close()
    with pytest.raises(BadInput, match="compiled for input shape"):
        target.load(art)(clip[:, :, :2])
    data = art.model_path.read_bytes()
    art.model_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="sha256"):
        target.load(art)


def test_compile_int8_refuses_calibration_clips_of_the_wrong_shape(tmp_path: Path, toy_onnx: Path) -> None:
    clips = [np.zeros((1, 3, 4, 8, 8), np.float32)] * 4  # int8 itself: tests/test_pow2.py
    with pytest.raises(BadInput, match=r"calibration clip 0 has shape \(1, 3, 4, 8, 8\)"):
        FpgaTarget(TargetOptions()).compile(toy_onnx, TOY_VARIANT.with_(precision="int8"), tmp_path, calib=clips)


def test_compile_gate_fails_without_hard_activations(tmp_path: Path) -> None:
    """Swish/SE sigmoid stay Sigmoid without --hard-activations: a 'failed' artifact, GateFailed naming them."""
    target = FpgaTarget(TargetOptions())
    with pytest.raises(GateFailed, match=r"(?s)2 node\(s\) outside the fpga operator set.*Sigmoid"):
        target.compile(toy(swish=True), TOY_VARIANT, tmp_path)
    art = Artifact.read(tmp_path)
    assert art.status == "failed" and len(art.notes["reasons"]) == 2
    with pytest.raises(BadInput, match="status is 'failed'"):
        target.load(art)
    hard = FpgaTarget(TargetOptions(hard_activations=True)).compile(toy(swish=True), TOY_VARIANT, tmp_path / "h")
    assert hard.status == "ok" and hard.notes["lowering"]["hard_activations"] is True
    assert 0 < hard.notes["lowering"]["vs_source"]["max_abs_diff"] < 1.0


def _zoo_params() -> list:
    return [pytest.param(name, marks=pytest.mark.slow) for name in distinct_models()]  # X3D-S/M = X3D-XS here


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_model_compiles_into_the_fpga_set(name: str, tmp_path: Path) -> None:
    """Every registered model lowers into the FPGA set with zero reasons (X3D and S3D-G,
    whose Swish / SE / feature gates are sigmoids, with hard activations); the exact ones
    match PyTorch."""
    v = small_variant(name)
    model = create_model(v, num_classes=10).eval()
    hard = MODELS[name].family == "x3d" or name == "s3dg"
    target = FpgaTarget(TargetOptions(hard_activations=hard))
    art = target.compile(model, v, tmp_path)
    assert art.status == "ok" and target.check(art.model_path) == []
    clip = np.random.default_rng(0).standard_normal(v.input_shape).astype(np.float32)
    got = target.load(art)(clip)
    with torch.no_grad():
        want = model(torch.from_numpy(clip)).numpy()
    cosine = float((got * want).sum() / (np.linalg.norm(got) * np.linalg.norm(want)))
    if not hard:
        assert np.abs(got - want).max() < 1e-3 and cosine > 0.9999
    assert art.notes["lowering"]["vs_source"]["max_abs_diff"] < (1.0 if hard else 1e-4)


# ----------------------------------------------------------------------------- check-ops

@pytest.mark.slow
def test_check_ops_lists_every_conv3d_of_unlowered_x3d(x3d_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-ops", "--target", "fpga", str(x3d_onnx), "--json"]) == 1
    reasons = json.loads(capsys.readouterr().out)["reasons"]
    model = onnx.load(str(x3d_onnx))
    inits = {i.name: len(i.dims) for i in model.graph.initializer}
    conv3d = [n.name for n in model.graph.node if n.op_type == "Conv" and inits.get(n.input[1]) == 5]
    assert len(conv3d) > 40
    for name in conv3d:
        (line,) = [r for r in reasons if r.startswith(f"node '{name}' (Conv): ")]
        assert "3-D conv" in line and "2-D only" in line


@pytest.mark.slow
def test_lower_cli_on_our_x3d(x3d_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "low.onnx"
    assert main(["lower", "--target", "fpga", "--hard-activations", str(x3d_onnx), str(out)]) == 0
    assert "every node inside the fpga operator set" in capsys.readouterr().out
    assert main(["check-ops", "--target", "fpga", str(out)]) == 0


def test_check_ops_works_for_every_registered_target(toy_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ran = []
    for name in TARGETS:
        module = TARGETS[name].split(":")[0]
        if importlib.util.find_spec(module) is None:
            continue  # that target's module is not written yet
        target = get_target(name)
        code = main(["check-ops", "--target", name, str(toy_onnx), "--json"])
        data = json.loads(capsys.readouterr().out)
        assert code == (1 if data["reasons"] else 0) and data["target"] == name
        assert data["reasons"] == target.check(toy_onnx)
        ran.append(name)
    assert "fpga" in ran and "onnxruntime" in ran


def test_check_ops_and_lower_on_toy(toy_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-ops", "--target", "fpga", str(toy_onnx)]) == 1
    text = capsys.readouterr().out
    assert "3-D conv (kernel 3x3x3)" in text and "node(s) rejected by fpga" in text
    out = tmp_path / "low.onnx"
    assert main(["lower", "--target", "fpga", str(toy_onnx), str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reasons"] == [] and data["vs_source"]["max_abs_diff"] < 1e-5
    x = np.random.default_rng(2).standard_normal(TOY_VARIANT.input_shape).astype(np.float32)
    np.testing.assert_allclose(ort_run(out, x), ort_run(toy_onnx, x), atol=1e-5)
    assert main(["check-ops", "--target", "fpga", str(out)]) == 0
    assert "every node accepted by fpga" in capsys.readouterr().out


# ----------------------------------------------------------------------------- foreign ONNX

@pytest.mark.slow
@needs_pytorchvideo
def test_lower_pytorchvideo_x3d_exported_by_torch_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PyTorchVideo's create_x3d (its own head: permute, Linear, permute, pool, view),
    exported by torch.onnx without our simplifier: OUT matches IN on ONNX Runtime; with
    --hard-activations every node is inside the set."""
    model = pvref.pytorchvideo_x3d("x3d_xs", num_classes=10, frames=4, crop=64)
    x = pvref.clip(1, 4, 64, seed=5)
    src = tmp_path / "pv_x3d.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, deliberately
        torch.onnx.export(model, (x,), str(src), dynamo=False, opset_version=17, input_names=["video"],
                          output_names=["scores"])
    out = tmp_path / "pv_x3d_fpga.onnx"
    assert main(["lower", "--target", "fpga", str(src), str(out)]) == 1  # exact: Sigmoids remain, listed
    assert "Sigmoid is not in the fpga operator set" in capsys.readouterr().out
    want, got = ort_run(src, x.numpy()), ort_run(out, x.numpy())
    assert got.shape == want.shape == (1, 10)
    assert np.abs(got - want).max() < 1e-4 * max(1.0, float(np.abs(want).max()))
    hard = tmp_path / "pv_x3d_hard.onnx"
    assert main(["lower", "--target", "fpga", "--hard-activations", str(src), str(hard)]) == 0
    assert main(["check-ops", "--target", "fpga", str(hard)]) == 0


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
@pytest.mark.parametrize("command", ["check-ops", "lower"])
def test_bad_onnx_is_one_line_exit_2(damage: str, command: str, toy_onnx: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    data = toy_onnx.read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "empty":
        bad.write_bytes(b"")
    args = ["check-ops", "--target", "fpga", str(bad)] if command == "check-ops" else \
        ["lower", "--target", "fpga", str(bad), str(tmp_path / "out.onnx")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert not (tmp_path / "out.onnx").exists()


def test_lower_refuses_unknown_target_and_targets_without_an_opset(toy_onnx: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lower", "--target", "nope", str(toy_onnx), str(tmp_path / "o.onnx")]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err
    assert main(["lower", "--target", "onnxruntime", str(toy_onnx), str(tmp_path / "o.onnx")]) == 2
    assert "no operator set" in capsys.readouterr().err
    assert main(["check-ops", "--target", "nope", str(toy_onnx)]) == 2
    assert main(["lower", "--target", "fpga", str(toy_onnx), str(tmp_path / "no" / "o.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_compile_variant_keeps_the_failed_artifact_in_out(tmp_path: Path) -> None:
    """Through edge.compile the failed artifact lands in --out (marked failed) and the message names --out."""
    from edge.compile import compile_variant

    out = tmp_path / "art"
    with pytest.raises(GateFailed) as e:
        compile_variant(Variant("x3d_xs", frames=2, resolution=32), "fpga", out)
    assert str(out) in str(e.value) and ".art." not in str(e.value)
    assert Artifact.read(out).status == "failed"
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # no temporary folder left
