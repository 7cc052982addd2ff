"""Generic checks run over every registered model: forward shapes at two input
sizes, complexity figures, static ONNX export and onnxruntime parity."""
import numpy as np
import onnx
import pytest
import torch

from targets.export import INPUT_NAME, export_onnx
from edge.flops import complexity
from edge.models import MODELS, create_model
from edge.core.variant import Variant
from helpers import SAME_NET_AT_A_FIXED_INPUT, onnx_parity_bound, randomize_bn

SMALL = [(4, 64), (6, 96)]  # (frames, resolution)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("frames, resolution", SMALL)
def test_forward_shape(name, frames, resolution):
    model = create_model(Variant(name, frames=frames, resolution=resolution), num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, frames, resolution, resolution))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name, same", sorted(SAME_NET_AT_A_FIXED_INPUT.items()))
def test_models_skipped_at_a_fixed_input_build_the_same_network(name, same):
    """The slow zoo tests run only one of the models that SAME_NET_AT_A_FIXED_INPUT pairs:
    at one input they must be the same network (same modules, weights, logits)."""
    outs = []
    for n in (name, same):
        torch.manual_seed(0)
        model = create_model(Variant(n, frames=4, resolution=64), num_classes=7).eval()
        with torch.no_grad():
            outs.append((repr(model), model.state_dict(), model(torch.ones(1, 3, 4, 64, 64))))
    (rep_a, sd_a, out_a), (rep_b, sd_b, out_b) = outs
    assert rep_a == rep_b
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert torch.equal(out_a, out_b)


@pytest.mark.parametrize("name", list(MODELS))
def test_width_multiplier_shrinks_the_model(name):
    v = Variant(name, frames=4, resolution=64)
    full = complexity(create_model(v), v.input_shape)
    half = complexity(create_model(v.with_(width=0.5)), v.input_shape)
    assert 0 < half.params < full.params
    assert 0 < half.macs < full.macs


# SlowFast's Slow pathway (most of its compute) sees every 8th frame: 4 and 8 frames are both one slow frame
FRAME_STEP = {"slowfast_r50": 8}


@pytest.mark.parametrize("name", list(MODELS))
def test_macs_grow_with_frames_and_resolution(name):
    frames = 4 * FRAME_STEP.get(name, 1)
    small = Variant(name, frames=frames, resolution=64)
    c1 = complexity(create_model(small), small.input_shape)
    c2 = complexity(create_model(small.with_(frames=2 * frames)), small.with_(frames=2 * frames).input_shape)
    c3 = complexity(create_model(small.with_(resolution=128)), small.with_(resolution=128).input_shape)
    assert c2.params == c1.params == c3.params  # shapes change compute, not weights
    assert c2.macs > 1.8 * c1.macs  # every layer runs per frame (2x frames, ~2x compute)
    assert c3.macs > 3.0 * c1.macs  # 2x side: ~4x compute, less the resolution-independent head


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_export_matches_onnxruntime(name, tmp_path):
    import onnxruntime as ort

    v = Variant(name, frames=4, resolution=64)
    torch.manual_seed(0)  # weights are drawn from the global generator: same model every run
    model = randomize_bn(create_model(v, num_classes=11), v.input_shape)
    res = export_onnx(model, v.input_shape, tmp_path / "m.onnx")
    proto = onnx.load(res.path)
    assert res.opset >= 17
    assert res.output_shape == (1, 11)
    for value in list(proto.graph.input) + list(proto.graph.output):  # static shapes only
        dims = value.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") and d.dim_value > 0 for d in dims), value.name
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    x = np.random.default_rng(0).standard_normal(v.input_shape).astype(np.float32)
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < onnx_parity_bound(name, want)
