"""The tflite (LiteRT) target and the exact Conv3d -> Conv2d lowering it compiles
through (targets.tflite.lower2d): lowering exactness on randomised 3D modules, a toy net,
every registered model and PyTorchVideo's X3D; compile + load + run parity with
PyTorch; artifact integrity; bad input.

Compiling needs litert-torch (the ``tflite`` extra); running needs ai-edge-litert
or tflite-runtime.  Tests skip with the reason when either is absent.
"""
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import pvref
from edge.core.errors import BadInput
from targets.export import export_onnx
from edge.models import create_model
from edge.models.common import Swish
from edge.core.variant import Variant
from helpers import distinct_models, randomize_bn
from targets import tflite
from targets.tflite import target as tflite_target
from targets.tflite.fold import fold_batchnorm
from targets.tflite.lower2d import has_3d, to_2d, to_frames_first
from targets.tflite.temporal import TemporalConv2d
from edge.core.io import sha256_file
from targets.base import ARTIFACT_JSON, Artifact
from targets.registry import TargetOptions, get_target

LOWER_TOL = 1e-4
MAX_ABS, MIN_COS = 1e-3, 0.9999
SMALL = dict(frames=4, resolution=64)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def target() -> tflite.TfliteTarget:
    return get_target("tflite", TargetOptions(threads=2))  # type: ignore[return-value]


def runtime() -> tflite.TfliteTarget:
    """The target, or skip when no interpreter (runs) or no litert-torch (compiles)."""
    t = target()
    if not t.available():
        pytest.skip(t.unavailable_reason())
    if not t.can_compile():
        pytest.skip(tflite.EXTRA_HINT)
    return t


# ----------------------------------------------------------------------------- lowering: single modules

class One(nn.Module):
    """Wraps one module so that fx traces it as a call_module node."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


def _random_module(rng: random.Random) -> nn.Module:
    kind = rng.choice(["conv", "conv", "conv", "dwconv", "avg", "max", "adaptive", "bn"])
    k = [rng.randint(1, 3) for _ in range(3)]
    s = [rng.randint(1, 2) for _ in range(3)]
    if kind in ("conv", "dwconv"):
        groups = 3 if kind == "dwconv" else rng.choice([1, 3])
        d = [rng.randint(1, 2) for _ in range(3)]
        padding: object = tuple(rng.randint(0, 2) for _ in range(3))
        if rng.random() < 0.2:
            padding, s = "same", [1, 1, 1]
        mode = rng.choice(["zeros", "zeros", "zeros", "replicate", "reflect", "circular"])
        return nn.Conv3d(3, groups * rng.randint(1, 3), k, s, padding, d, groups, bias=rng.random() < 0.5,
                         padding_mode=mode)
    if kind == "avg":
        return nn.AvgPool3d(k, s, [rng.randint(0, kk // 2) for kk in k], ceil_mode=rng.random() < 0.5,
                            count_include_pad=rng.random() < 0.5, divisor_override=rng.choice([None, None, 5]))
    if kind == "max":
        return nn.MaxPool3d(k, s, [rng.randint(0, kk // 2) for kk in k], [rng.randint(1, 2) for _ in range(3)],
                            ceil_mode=rng.random() < 0.5)
    if kind == "adaptive":
        cls = rng.choice([nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d])
        return cls(tuple(rng.choice([1, 2, 3, None]) for _ in range(3)))
    bn = nn.BatchNorm3d(3)
    return randomize_bn(bn, seed=rng.randint(0, 99))


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("temporal", ["sum", "concat"])
def test_single_3d_module_lowers_exactly(seed, temporal):
    """Randomised kernel, stride, padding (incl. 'same' and non-zero padding modes),
    dilation, groups (depthwise incl.), pool options, over random T, H, W."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for _ in range(5):
        m = One(_random_module(rng)).eval()
        t, h, w = rng.randint(1, 7), rng.randint(3, 9), rng.randint(3, 9)
        x = torch.randn(1, 3, t, h, w)
        try:
            with torch.no_grad():
                ref = m(x)
        except RuntimeError:  # a configuration PyTorch itself refuses at this size
            continue
        low = to_2d(m, t, (h, w), temporal=temporal)
        assert not has_3d(low), low
        with torch.no_grad():
            out = low(x)
        assert out.shape == ref.shape, (m, t, h, w)
        # (max pools over windows that lie wholly in the padding give -inf in both)
        torch.testing.assert_close(out, ref, atol=LOWER_TOL, rtol=0, msg=lambda e: f"{m}, T={t}, {h}x{w}: {e}")


class ToyNet(nn.Module):
    """Conv3d/BN3d/Swish, depthwise Conv3d, SE via AdaptiveAvgPool3d, MaxPool3d,
    a strided temporal conv, AvgPool3d head: (1, 3, 4, 16, 16) -> (1, 5)."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (3, 3, 3), stride=(1, 2, 2), padding=1, bias=False)
        self.bn = nn.BatchNorm3d(8)
        self.act = Swish()
        self.dw = nn.Conv3d(8, 8, 3, padding=1, groups=8)
        self.se = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Conv3d(8, 4, 1), nn.ReLU(), nn.Conv3d(4, 8, 1),
                                nn.Sigmoid())
        self.down = nn.Conv3d(8, 12, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        self.mp = nn.MaxPool3d((1, 2, 2))
        self.pool = nn.AvgPool3d((2, 4, 4))
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(x)))
        x = self.dw(x)
        x = x * self.se(x)
        x = self.mp(torch.relu(self.down(x)))
        return self.fc(self.pool(x).flatten(1))


TOY_VARIANT = Variant("x3d_xs", frames=4, resolution=16)  # the toy takes x3d_xs's place in tags


@pytest.fixture(scope="module")
def toy():
    """(model, clip, torch logits) of the toy at TOY_VARIANT's input shape."""
    torch.manual_seed(0)
    model = randomize_bn(ToyNet())
    clip = np.random.default_rng(1).standard_normal(TOY_VARIANT.input_shape, dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(clip)).numpy()
    return model, clip, ref


@pytest.mark.parametrize("temporal", ["sum", "concat"])
def test_toy_lowers_exactly_and_bn_folds(toy, temporal):
    model, clip, ref = toy
    low = to_2d(model, TOY_VARIANT.frames, TOY_VARIANT.resolution, temporal=temporal)
    assert not has_3d(low)
    x = torch.from_numpy(clip)
    with torch.no_grad():
        assert np.abs(low(x).numpy() - ref).max() < LOWER_TOL
        fold_batchnorm(low)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in low.modules())
        assert np.abs(low(x).numpy() - ref).max() < LOWER_TOL
    with torch.no_grad():  # the original is untouched
        assert np.array_equal(model(x).numpy(), ref)


def test_lowering_refuses_what_it_cannot_trace_or_size():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) if x.sum() > 0 else x  # data-dependent: fx cannot trace it

    with pytest.raises(BadInput, match="resolution"):
        to_2d(Branchy(), 2)
    with pytest.raises(BadInput, match="fx cannot trace"):
        to_2d(Branchy(), 2, 8)
    with pytest.raises(BadInput, match="temporal mode"):
        to_2d(Branchy(), 2, 8, temporal="fast")


# ----------------------------------------------------------------------------- lowering: the zoo

def _zoo_params() -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n == "x3d_l" else n for n in distinct_models()]


PATHWAYS = {"slowfast_r50": 2}  # SlowFast slices its Slow clip off the 5-D input, then both enter (T, C, H, W)


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_model_lowers_exactly(name):
    variant = Variant(name, frames=3, resolution=32)
    torch.manual_seed(0)
    model = randomize_bn(create_model(variant, num_classes=11))
    low = to_2d(model, variant.frames, variant.resolution)
    assert not has_3d(low)
    if not has_3d(model):
        assert low is model  # Ghost / 2D ConvNet: already 2D inside
        return
    x = torch.randn(variant.input_shape)
    with torch.no_grad():
        ref = model(x)
        assert (low(x) - ref).abs().max().item() < LOWER_TOL
    # the whole network stays (T, C, H, W): one permutation at the entry (of each pathway), none
    # around the convs
    nodes = list(low.graph.nodes)
    assert sum(n.target is to_frames_first for n in nodes) == PATHWAYS.get(name, 1)
    assert sum(isinstance(m, TemporalConv2d) for m in low.modules()) == \
        sum(isinstance(m, nn.Conv3d) for m in model.modules())


@pytest.mark.reference
def test_pytorchvideo_x3d_lowers_exactly_without_a_family_hook():
    if not pvref.available():
        pytest.skip("pytorchvideo (extra 'reference') not installed")
    model = pvref.pytorchvideo_x3d("x3d_xs", num_classes=10, frames=3, crop=32)
    x = pvref.clip(1, 3, 32)
    low = to_2d(model, 3, 32)
    assert not has_3d(low)
    with torch.no_grad():
        assert (low(x) - model(x)).abs().max().item() < LOWER_TOL


# ----------------------------------------------------------------------------- target: availability and check

def test_available_and_reason_agree():
    t = target()
    assert t.available() == (t.unavailable_reason() == "")
    assert t.available() == (tflite.interpreter_module() is not None)


def test_check_lists_each_3d_conv_and_pool_of_an_x3d_onnx(toy, tmp_path):
    model = toy[0]
    path = export_onnx(model, TOY_VARIANT.input_shape, tmp_path / "toy.onnx").path
    reasons = target().check(path)
    n_conv3d = sum(isinstance(m, nn.Conv3d) for m in model.modules())
    conv = [r for r in reasons if tflite.LOWER_REASON in r]
    assert len(conv) == n_conv3d, reasons
    assert all("(Conv)" in r and "3-D convolution" in r for r in conv)
    assert any(tflite.POOL_REASON in r and "(MaxPool)" in r for r in reasons)


class Frames2d(nn.Module):
    """Frames folded into the batch, Conv2d, MaxPool2d, mean: (1, 3, T, H, W) -> (1, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[0].transpose(0, 1)
        return self.pool(self.conv(x)).mean(dim=(0, 2, 3))[None]


def test_check_accepts_a_2d_model(tmp_path):
    path = export_onnx(Frames2d(), TOY_VARIANT.input_shape, tmp_path / "c.onnx").path
    assert target().check(path) == []


def test_check_rejects_dynamic_input(tmp_path):
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(nn.Conv2d(3, 4, 3), (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False,
                      input_names=["clip"], dynamic_axes={"clip": {0: "batch"}})
    reasons = target().check(path)
    assert len(reasons) == 1 and "graph input 'clip'" in reasons[0] and "dynamic" in reasons[0]


# ----------------------------------------------------------------------------- target: compile refusals

def test_compile_from_onnx_is_refused_with_the_reason(tmp_path):
    with pytest.raises(BadInput, match="no ONNX importer"):
        target().compile(tmp_path / "m.onnx", TOY_VARIANT, tmp_path / "art")


def test_compile_without_the_extra_names_it(toy, tmp_path, monkeypatch):
    monkeypatch.setattr(tflite.TfliteTarget, "can_compile", lambda self: False)
    with pytest.raises(BadInput, match=r"pip install -e \.\[tflite\]"):
        target().compile(toy[0], TOY_VARIANT, tmp_path / "art")


# ----------------------------------------------------------------------------- target: compile, load, run

@pytest.fixture(scope="module")
def toy_artifact(toy, tmp_path_factory):
    return runtime().compile(toy[0], TOY_VARIANT, tmp_path_factory.mktemp("tflite") / "art")


def copy_artifact(art: Artifact, dest) -> Artifact:
    shutil.copytree(art.path, dest)
    return Artifact.read(dest)


def test_toy_parity_and_artifact_contents(toy, toy_artifact):
    _, clip, ref = toy
    runner = target().load(toy_artifact)
    out = runner(clip)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() < MAX_ABS and cosine(out, ref) > MIN_COS
    assert runner.delegated  # XNNPACK took the graph
    assert runner.artifact is toy_artifact
    runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner(clip)
    art = Artifact.read(toy_artifact.path)
    assert art.target == "tflite" and art.model_file == tflite.MODEL_FILE and art.precision == "fp32"
    assert art.input.shape == TOY_VARIANT.input_shape and art.output.shape == (1, 5)
    assert art.tools["litert-torch"] and "lowering" in art.notes


def test_runner_imports_no_torch(toy, toy_artifact, tmp_path):
    """A board with only numpy + LiteRT: load and run with torch made unimportable."""
    np.save(tmp_path / "clip.npy", toy[1])
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        from targets.base import Artifact
        from targets.registry import TargetOptions, get_target
        runner = get_target("tflite", TargetOptions(threads=1)).load(Artifact.read({str(toy_artifact.path)!r}))
        np.save({str(tmp_path / "out.npy")!r}, runner(np.load({str(tmp_path / "clip.npy")!r})))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parents[1]))
    assert np.abs(np.load(tmp_path / "out.npy") - toy[2]).max() < MAX_ABS


@pytest.mark.slow
def test_fp16_weights_stay_close(toy, toy_artifact, tmp_path):
    art = runtime().compile(toy[0], TOY_VARIANT.with_(precision="fp16"), tmp_path / "art16")
    assert art.precision == "fp16" and "float16" in art.notes["fp16"]
    interp = tflite.interpreter_module().Interpreter(model_path=str(art.model_path))
    n_conv = sum(isinstance(m, (nn.Conv3d, nn.Linear)) for m in toy[0].modules())
    # every conv/FC weight stored in float16 (the 3-tap convs have one weight per tap)
    assert sum(d["dtype"] == np.float16 for d in interp.get_tensor_details()) >= n_conv
    out = target().load(art)(toy[1])
    assert np.abs(out - toy[2]).max() < 2e-2 and cosine(out, toy[2]) > 0.999


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_tampered_or_truncated_model_refused_by_hash(damage, toy_artifact, tmp_path):
    art = copy_artifact(toy_artifact, tmp_path / "a")
    f = art.model_path
    data = f.read_bytes()
    if damage == "flip":
        f.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    else:
        f.unlink()
    with pytest.raises(BadInput, match="sha256|missing"):
        target().load(art)


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.99])
def test_truncated_model_with_recomputed_hash_refused_by_the_interpreter(keep, toy_artifact, tmp_path):
    art = copy_artifact(toy_artifact, tmp_path / "a")
    data = art.model_path.read_bytes()
    art.model_path.write_bytes(data[: int(len(data) * keep)])
    art = art.with_(files={**art.files, art.model_file: sha256_file(art.model_path)}).write()
    with pytest.raises(BadInput, match="LiteRT cannot load the model"):
        target().load(Artifact.read(art.path))


def test_not_a_flatbuffer_refused(toy_artifact, tmp_path):
    art = copy_artifact(toy_artifact, tmp_path / "a")
    art.model_path.write_bytes(b"\0" * 64)
    art = art.with_(files={**art.files, art.model_file: sha256_file(art.model_path)}).write()
    with pytest.raises(BadInput, match="not a TFLite flatbuffer"):
        target().load(Artifact.read(art.path))


def test_artifact_of_another_shape_refused(toy_artifact, tmp_path):
    art = copy_artifact(toy_artifact, tmp_path / "a")
    (art.path / ARTIFACT_JSON).unlink()
    art = Artifact.create(art.path, target="tflite", variant=art.variant, precision="fp32",
                          input=art.input.__class__("clip", (1, 3, 8, 16, 16)), output=art.output,
                          model_file=art.model_file)
    with pytest.raises(BadInput, match=r"\(1, 3, 4, 16, 16\).*\(1, 3, 8, 16, 16\)"):
        target().load(art)


def test_clip_of_wrong_shape_names_both_shapes(toy_artifact):
    runner = target().load(toy_artifact)
    with pytest.raises(BadInput, match=r"\(1, 3, 4, 16, 16\).*\(1, 3, 5, 16, 16\)"):
        runner(np.zeros((1, 3, 5, 16, 16), np.float32))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_clip_refused(value, toy, toy_artifact):
    clip = toy[1].copy()
    clip[0, 0, 0, 0, 0] = value
    with pytest.raises(BadInput, match="NaN or Inf"):
        target().load(toy_artifact)(clip)


def test_load_without_an_interpreter_says_what_to_install(toy_artifact, monkeypatch):
    monkeypatch.setattr(tflite_target, "interpreter_module", lambda: None)
    t = target()
    assert not t.available() and "ai-edge-litert" in t.unavailable_reason()
    with pytest.raises(BadInput, match="ai-edge-litert"):
        t.load(toy_artifact)


# ----------------------------------------------------------------------------- parity over the zoo

@pytest.mark.slow
@pytest.mark.parametrize("name", distinct_models())
def test_fp32_parity_with_pytorch(name, tmp_path):
    """compile (lower + litert-torch) + load + run vs PyTorch at 4 x 64 (~1 min each)."""
    t = runtime()
    variant = Variant(name, **SMALL)
    torch.manual_seed(0)
    model = randomize_bn(create_model(variant, num_classes=11))
    clip = np.random.default_rng(0).standard_normal(variant.input_shape, dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(clip)).numpy()
    out = t.load(t.compile(model, variant, tmp_path / "art"))(clip)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < MAX_ABS and cosine(out, ref) > MIN_COS
