"""Ghost-module family (edge/models/ghost.py): published figures of GhostNet-1.0x,
the C-Ghost module, Ghost bottleneck, temporal shift and G-Ghost stage, and the
temporal behaviour of the three registered models.

The generic per-model tests (forward shapes, ONNX vs onnxruntime) live elsewhere.
"""
from __future__ import annotations

import io

import onnx
import pytest
import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.flops import complexity, count_macs, count_params
from edge.models import gghost, ghost

# GhostNet paper, Table 7 / reference.md: GhostNet 1.0x, 224 x 224.
GHOSTNET_PARAMS = 5.2e6
GHOSTNET_MACS = 142e6


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics so an eval-mode net is not near-identity/zero."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
    return model.eval()


# ----------------------------------------------------------------- published figures

def test_ghostnet_100_params_and_macs_match_paper():
    c = complexity(ghost.ghostnet_100(), (1, 3, 1, 224, 224))
    assert c.params == pytest.approx(GHOSTNET_PARAMS, rel=0.03)
    assert c.macs == pytest.approx(GHOSTNET_MACS, rel=0.03)


def test_ghostnet_100_paper_channels_at_width_1():
    net = ghost.ghostnet_100()
    assert net.conv_stem.out_channels == 16
    outs = [b.ghost2.out_chs for stage in net.blocks[:-1] for b in stage]
    mids = [b.ghost1.out_chs for stage in net.blocks[:-1] for b in stage]
    assert outs == [16, 24, 24, 40, 40, 80, 80, 80, 80, 112, 112, 160, 160, 160, 160, 160]
    assert mids == [16, 48, 72, 72, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960, 960, 960]
    assert net.blocks[-1][0].conv.out_channels == 960
    assert net.conv_head.out_channels == 1280


def test_image_and_shift_nets_share_state_dict_layout():
    """ghost_tsm adds no weights: a GhostNet checkpoint loads into it unchanged."""
    image = ghost.ghostnet_100(num_classes=400).state_dict()
    video = ghost.ghost_tsm(num_classes=400).state_dict()
    assert {k: v.shape for k, v in image.items()} == {k: v.shape for k, v in video.items()}
    for key in ("conv_stem.weight", "blocks.0.0.ghost1.primary_conv.0.weight",
                "blocks.0.0.ghost1.cheap_operation.0.weight", "blocks.3.0.se.conv_reduce.weight",
                "blocks.1.0.shortcut.2.weight", "blocks.9.0.conv.weight", "conv_head.weight",
                "classifier.weight"):
        assert key in image


# ----------------------------------------------------------------- C-Ghost module

@pytest.mark.parametrize("n", [7, 8, 15, 16])
def test_ghost_module_keeps_n_channels(n):
    module = ghost.GhostModule(5, n).eval()
    assert module.primary_conv[0].out_channels == (n + 1) // 2  # m = ceil(n / 2)
    cheap = module.cheap_operation[0]
    assert cheap.groups == cheap.in_channels == (n + 1) // 2  # depthwise
    assert cheap.kernel_size == (3, 3)
    assert module(torch.randn(2, 5, 9, 9)).shape == (2, n, 9, 9)


def test_ghost_module_has_about_half_the_macs_of_a_conv():
    ghost_macs = count_macs(ghost.GhostModule(64, 64), (1, 64, 16, 16))
    conv_macs = count_macs(nn.Conv2d(64, 64, 1, bias=False), (1, 64, 16, 16))
    assert 0.45 * conv_macs < ghost_macs < 0.6 * conv_macs


def test_ghost_module_ghost_maps_come_from_intrinsic_maps():
    """The second half of the output is the depthwise conv of the first half."""
    module = _randomise_bn(ghost.GhostModule(6, 8))
    out = module(torch.randn(1, 6, 7, 7))
    intrinsic, ghosts = out[:, :4], out[:, 4:]
    with torch.no_grad():
        assert torch.allclose(module.cheap_operation(intrinsic), ghosts, atol=1e-6)


# ----------------------------------------------------------------- Ghost bottleneck

@pytest.mark.parametrize("in_chs,mid,out,k,stride,se", [
    (16, 48, 16, 3, 1, 0.0),
    (16, 48, 24, 3, 2, 0.0),
    (24, 72, 40, 5, 2, 0.25),
    (40, 120, 40, 5, 1, 0.25),
])
def test_ghost_bottleneck_shapes(in_chs, mid, out, k, stride, se):
    block = ghost.GhostBottleneck(in_chs, mid, out, k, stride, se).eval()
    y = block(torch.randn(2, in_chs, 16, 16))
    assert y.shape == (2, out, 16 // stride, 16 // stride)
    assert (block.se is not None) == (se > 0)
    assert (block.conv_dw is not None) == (stride > 1)
    assert (len(block.shortcut) == 0) == (in_chs == out and stride == 1)


def test_ghost_bottleneck_identity_shortcut_and_se_gate():
    block = _randomise_bn(ghost.GhostBottleneck(16, 32, 16, 3, 1, se_ratio=0.25))
    assert block.se.conv_reduce.out_channels == 8  # 32 * 0.25, multiple of 4
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        block.ghost2.primary_conv[1].weight.zero_()
        block.ghost2.primary_conv[1].bias.zero_()
        block.ghost2.cheap_operation[1].weight.zero_()
        block.ghost2.cheap_operation[1].bias.zero_()
        assert torch.equal(block(x), x)  # residual branch silenced: identity shortcut


def test_se_gate_exports_as_a_standard_onnx_op():
    se = ghost.SqueezeExcite(16).eval()
    buf = io.BytesIO()
    torch.onnx.export(se, (torch.randn(1, 16, 4, 4),), buf, dynamo=False, opset_version=17)
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert ops & {"HardSigmoid", "Clip"}
    assert "Sigmoid" not in ops


# ----------------------------------------------------------------- temporal shift

def test_temporal_shift_moves_one_eighth_each_way_with_zero_padding():
    b, t, c = 2, 4, 16
    x = torch.arange(b * t * c, dtype=torch.float32).reshape(b * t, c, 1, 1) + 1
    y = ghost.TemporalShift(frames=t)(x).reshape(b, t, c)
    v = x.reshape(b, t, c)
    fold = c // 8
    assert torch.equal(y[:, :-1, :fold], v[:, 1:, :fold])  # from the next frame
    assert torch.equal(y[:, -1, :fold], torch.zeros(b, fold))  # no wraparound
    assert torch.equal(y[:, 1:, fold:2 * fold], v[:, :-1, fold:2 * fold])  # from the previous frame
    assert torch.equal(y[:, 0, fold:2 * fold], torch.zeros(b, fold))
    assert torch.equal(y[:, :, 2 * fold:], v[:, :, 2 * fold:])  # untouched
    # clips in the batch do not leak into each other
    assert torch.equal(ghost.TemporalShift(t)(x[t:]), y[1:].reshape(t, c, 1, 1))


def test_temporal_shift_single_frame_and_few_channels():
    x = torch.randn(3, 16, 2, 2) + 5
    y = ghost.TemporalShift(frames=1)(x)
    assert torch.equal(y[:, :4], torch.zeros(3, 4, 2, 2))
    assert torch.equal(y[:, 4:], x[:, 4:])
    x = torch.randn(4, 7, 2, 2)  # fewer than 8 channels: nothing to shift
    assert torch.equal(ghost.TemporalShift(frames=2)(x), x)


# ----------------------------------------------------------------- G-Ghost stage

def test_gghost_stage_channels_and_cheap_path():
    stage = gghost.GGhostStage(32, 64, depth=5, stride=2, group_width=8, cheap_ratio=0.5).eval()
    assert stage.raw_chs + stage.cheap_chs == 64
    assert stage.raw_chs == 30 and stage.cheap_chs == 34  # raw is a multiple of 6 = 8 * 3/4
    assert [b.conv1.in_channels for b in stage.layers] == [30, 30, 30]  # deep path is narrow
    assert stage(torch.randn(2, 32, 16, 16)).shape == (2, 64, 8, 8)


def test_gghost_stage_is_cheaper_than_a_plain_stage():
    stage = gghost.GGhostStage(32, 64, depth=5, stride=2, group_width=8)
    plain = nn.Sequential(gghost.RegBottleneck(32, 64, 2, 8),
                          *(gghost.RegBottleneck(64, 64, 1, 8) for _ in range(4)))
    stage_macs = count_macs(stage, (1, 32, 32, 32))
    assert stage_macs < 0.8 * count_macs(plain, (1, 32, 32, 32))
    # the cheap channels cost less than one deep block on the deep channels
    cheap_macs = (count_macs(stage.cheap, (1, stage.cheap_chs, 16, 16))
                  + count_macs(stage.merge, (1, 64 + 3 * stage.raw_chs, 16, 16)))
    deep_block_macs = count_macs(stage.layers[0], (1, stage.raw_chs, 16, 16))
    assert cheap_macs < 0.5 * deep_block_macs


def test_gghost_stage_needs_three_blocks():
    with pytest.raises(BadInput):
        gghost.GGhostStage(32, 64, depth=2)


# ----------------------------------------------------------------- temporal behaviour

def _reversal_change(model: nn.Module, frames: int) -> float:
    """How much reversing the frames moves the logits, relative to how much a
    different clip moves them (scale-free: random-init nets squash differences)."""
    g = torch.Generator().manual_seed(1)
    clip, other = torch.randn(2, 2, 3, frames, 32, 32, generator=g)
    with torch.no_grad():
        y = model(clip)
        return ((y - model(clip.flip(2))).norm() / (y - model(other)).norm()).item()


@pytest.mark.parametrize("name", ["ghost_tsm", "gghost_tsm"])
def test_temporal_models_depend_on_frame_order(name):
    torch.manual_seed(0)
    build = getattr(gghost if name.startswith("gghost") else ghost, name)
    model = _randomise_bn(build(num_classes=10, frames=4, resolution=32))
    assert _reversal_change(model, 4) > 0.02


def test_ghostnet_100_ignores_frame_order_and_averages_frames():
    torch.manual_seed(0)
    model = _randomise_bn(ghost.ghostnet_100(num_classes=10, frames=4, resolution=32))
    assert _reversal_change(model, 4) < 1e-4
    clip = torch.randn(1, 3, 3, 32, 32)
    with torch.no_grad():
        per_frame = torch.stack([model(clip[:, :, i:i + 1]) for i in range(3)]).mean(0)
        assert torch.allclose(model(clip), per_frame, atol=1e-6, rtol=1e-4)


def test_temporal_shift_adds_no_weights_and_no_macs():
    shape = (1, 3, 2, 32, 32)
    image = ghost.ghostnet_100(num_classes=10)
    video = ghost.ghost_tsm(num_classes=10, frames=2)
    assert count_params(image) == count_params(video)
    assert count_macs(image, shape) == count_macs(video, shape)


def test_gghost_tsm_default_cost_is_cpu_sized():
    c = complexity(gghost.gghost_tsm(), (1, 3, 8, 160, 160))
    assert 0.5e9 <= c.macs <= 2e9


def test_shift_models_reject_a_different_frame_count():
    model = ghost.ghost_tsm(num_classes=10, frames=4).eval()
    with pytest.raises(BadInput, match="frames"):
        model(torch.randn(1, 3, 5, 32, 32))
    with pytest.raises(BadInput, match="B, 3, T, H, W"):
        model(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("kwargs", [dict(frames=0), dict(width=0.0), dict(num_classes=0),
                                    dict(resolution=16)])
def test_builders_reject_bad_arguments(kwargs):
    with pytest.raises(BadInput):
        gghost.gghost_tsm(**kwargs)


# ----------------------------------------------------------------- width

@pytest.mark.parametrize("name", ["ghostnet_100", "ghost_tsm", "gghost_tsm"])
def test_width_half_builds_and_runs(name):
    build = getattr(gghost if name.startswith("gghost") else ghost, name)
    half = build(num_classes=10, frames=2, resolution=64, width=0.5).eval()
    full = build(num_classes=10, frames=2, resolution=64, width=1.0)
    with torch.no_grad():
        y = half(torch.randn(2, 3, 2, 64, 64))
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    assert count_params(half) < 0.6 * count_params(full)
