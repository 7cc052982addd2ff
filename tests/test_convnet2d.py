"""convnet2d: standard-operator export, temporal modules against references, use of time."""
import onnx
import pytest
import torch
import torch.nn.functional as F

from targets.export import export_onnx
from edge.flops import complexity
from edge.models import MODELS, create_model
from edge.models.convnet2d import TemporalConv, TemporalShift, frames_to_batch, shift_frames
from edge.core.variant import Variant
from edge.models.registry import variant as zoo_variant

NAMES = [name for name, info in MODELS.items() if info.family == "convnet2d"]

# Conv has BN folded in by both exporters; no Transpose, no 3D op, no ReduceMean.
ALLOWED_OPS = {"Conv", "Relu", "Add", "Concat", "Slice", "AveragePool", "Reshape", "Gemm"}


def to_time_major(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> (T*B, C, H, W)."""
    b, t = x.shape[:2]
    return x.transpose(0, 1).reshape(t * b, *x.shape[2:])


def from_time_major(y: torch.Tensor, frames: int) -> torch.Tensor:
    """(T*B, C, H, W) -> (B, T, C, H, W)."""
    return y.reshape(frames, -1, *y.shape[1:]).transpose(0, 1)


def roll_shift_reference(x: torch.Tensor, fold: int) -> torch.Tensor:
    """TSM on (B, T, C, H, W) with torch.roll, the wrapped-around frames zeroed."""
    out = x.clone()
    out[:, :, :fold] = torch.roll(x[:, :, :fold], 1, dims=1)
    out[:, 0, :fold] = 0
    out[:, :, fold:2 * fold] = torch.roll(x[:, :, fold:2 * fold], -1, dims=1)
    out[:, -1, fold:2 * fold] = 0
    return out


def graph_ops(path) -> tuple[set[str], onnx.ModelProto]:
    proto = onnx.load(path)
    return {n.op_type for n in proto.graph.node}, proto


@pytest.mark.parametrize("exporter", [
    "torchscript",
    pytest.param("dynamo", marks=pytest.mark.slow),  # ~30 s per model on 2 cores
])
@pytest.mark.parametrize("name", NAMES)
def test_export_uses_standard_2d_operators_only(name, exporter, tmp_path):
    v = Variant(name, frames=4, resolution=64)
    res = export_onnx(create_model(v, num_classes=5), v.input_shape, tmp_path / "m.onnx",
                      exporters=(exporter,))
    assert res.exporter == exporter
    ops, proto = graph_ops(res.path)
    assert ops <= ALLOWED_OPS, f"ops outside the standard set: {sorted(ops - ALLOWED_OPS)}"
    assert {"Conv", "Slice", "Concat", "Add"} <= ops  # the temporal modules survived export
    weights = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Conv":  # "Conv" also names a 3D conv: the kernel must be 2D
            assert len(weights[node.input[1]].dims) == 4, node.name
        for attr in node.attribute:
            if attr.name == "kernel_shape":
                assert len(attr.ints) == 2, node.name


@pytest.mark.parametrize("frames", [1, 2, 5])
@pytest.mark.parametrize("channels", [16, 20, 7])
def test_temporal_shift_matches_roll_reference(frames, channels):
    x = torch.randn(3, frames, channels, 4, 5)  # (B, T, C, H, W)
    got = from_time_major(TemporalShift(fold_div=8)(to_time_major(x), frames), frames)
    want = roll_shift_reference(x, channels // 8)
    assert torch.equal(got, want)
    if frames > 1 and channels >= 8:
        assert not torch.equal(got, x)


@pytest.mark.parametrize("offset", [-2, -1, 1, 2, 4])
def test_shift_frames_moves_whole_frames_and_pads_zeros(offset):
    frames = 4
    x = torch.randn(2, frames, 3, 2, 2)
    got = from_time_major(shift_frames(to_time_major(x), frames, offset), frames)
    for t in range(frames):
        src = t - offset
        want = x[:, src] if 0 <= src < frames else torch.zeros_like(x[:, 0])
        assert torch.equal(got[:, t], want)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_temporal_conv_equals_kx1_conv2d_over_time_axis(kernel):
    b, t, c, h, w, cout = 2, 6, 8, 3, 4, 12
    conv = TemporalConv(c, cout, kernel)
    x = torch.randn(b, t, c, h, w)
    got = from_time_major(conv(to_time_major(x), t), t)  # (B, T, Cout, H, W)
    # reference: a (k x 1) Conv2d over (B, C, T, H*W), time as a spatial axis
    ref = F.conv2d(x.permute(0, 2, 1, 3, 4).reshape(b, c, t, h * w), conv.as_kx1_weight(),
                   padding=(kernel // 2, 0))
    want = ref.reshape(b, cout, t, h, w).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_frames_to_batch_is_time_major():
    x = torch.randn(2, 3, 5, 4, 4)  # (B, C, T, H, W)
    want = x.permute(2, 0, 1, 3, 4).reshape(10, 3, 4, 4)
    assert torch.equal(frames_to_batch(x), want)


def _reversal_change(model: torch.nn.Module, clip: torch.Tensor) -> float:
    with torch.no_grad():
        a, b = model(clip), model(clip.flip(2))
    return float((a - b).norm() / a.norm())


@pytest.mark.parametrize("name", NAMES)
def test_reversed_clip_gives_a_clearly_different_output(name):
    torch.manual_seed(0)
    model = create_model(Variant(name, frames=4, resolution=64), num_classes=10).eval()
    clip = torch.randn(2, 3, 4, 64, 64)
    # float noise is ~1e-7 of the logits; each temporal mechanism alone moves them by ~10%
    assert _reversal_change(model, clip) > 1e-2

    temporal_convs = [b.expand for b in model.blocks if b.expand is not None and b.expand.kernel > 1]
    shifts = [b for b in model.blocks if b.shift is not None]
    assert temporal_convs and shifts
    with torch.no_grad():  # keep only the centre tap: the (3 x 1) convs become per-frame
        for tc in temporal_convs:
            c = tc.in_channels
            tc.conv.weight[:, :c] = 0
            tc.conv.weight[:, 2 * c:] = 0
    assert _reversal_change(model, clip) > 1e-2  # the shifts alone see time
    for block in shifts:
        block.shift = None
    # neither: per-frame 2D layers and a mean over time are blind to frame order
    assert _reversal_change(model, clip) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_reversal_is_seen_by_the_temporal_convs_alone(name):
    torch.manual_seed(1)
    model = create_model(Variant(name, frames=4, resolution=64), num_classes=10).eval()
    for block in model.blocks:
        block.shift = None
    assert _reversal_change(model, torch.randn(1, 3, 4, 64, 64)) > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("name, lo, hi", [("convnet2d_s", 0.3, 0.8), ("convnet2d_m", 1.0, 3.0)])
def test_default_input_complexity_in_cpu_range(name, lo, hi):
    v = zoo_variant(name)
    assert lo <= complexity(create_model(v), v.input_shape).gflops <= hi
