"""Pruning jobs beyond one shot: the iterative path, slimmable (MutualNet) checkpoints as
the source, BN re-estimation, the fast depthwise backward and the resumable KD fine-tune."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from edge.checkpoint import save_checkpoint
from edge.core.errors import BadInput
from edge.flops import complexity
from edge.models import create_model
from edge.prune import (KDSchedule, fast_depthwise3d, finetune_kd_resumable, load_pruned, prune_job,
                        recalibrate_bn)
from edge.core.variant import Variant
from helpers import randomize_bn

SHIPPED = "edge/checkpoints/x3d_xs_mutual_synth10.pt"


@pytest.mark.parametrize("name, size, iterative, epochs", [
    ("convnet2d_s", (2, 32), 2, 0),
    pytest.param("convnet2d_s", (4, 64), 3, 0, marks=pytest.mark.slow),
    pytest.param("x3d_xs", (4, 64), 2, 1, marks=pytest.mark.slow),  # KD fine-tune on 12 shipped clips per step
])
def test_iterative_reaches_target_and_rebuilds(name, size, iterative, epochs, tmp_path):
    v = Variant(name, frames=size[0], resolution=size[1])
    src = randomize_bn(create_model(v, num_classes=10), v.input_shape)
    ck = save_checkpoint(tmp_path / "src.pt", src, v, 10)
    out = tmp_path / "it.pt"
    r = prune_job(name, str(ck), 0.4, out, frames=size[0], resolution=size[1], iterative=iterative, epochs=epochs,
                  limit=12 if epochs else None)
    assert abs(r["flops_cut"] - 0.4) <= 0.05, r["flops_cut"]
    assert r["iterative"] == iterative and len(r["losses"]) == iterative * epochs
    model = load_pruned(out, v.with_(prune=0.4))  # create_model + the recorded spec, no original
    cx = complexity(model, v.input_shape)
    assert cx.macs == pytest.approx(r["gflops_after"] * 1e9, rel=1e-6)
    assert 1 - cx.macs / complexity(src, v.input_shape).macs == pytest.approx(r["flops_cut"], abs=1e-9)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(v.input_shape))).all()


def test_iterative_below_one_refused(tmp_path):
    with pytest.raises(BadInput, match="iterative"):
        prune_job("convnet2d_s", None, 0.3, tmp_path / "o.pt", iterative=0)


@pytest.mark.parametrize("stride, kernel, padding", [((1, 1, 1), 3, 1), ((1, 1, 1), (5, 1, 1), (2, 0, 0)),
                                                     ((1, 2, 2), 3, 1)])
def test_fast_depthwise_backward_equals_aten(stride, kernel, padding):
    conv = nn.Conv3d(6, 6, kernel, stride=stride, padding=padding, groups=6, bias=False).double()
    x = torch.randn(3, 6, 5, 9, 9, dtype=torch.double, requires_grad=True)
    y = conv(x)
    g = torch.randn_like(y)
    y.backward(g)
    gx, gw = x.grad.clone(), conv.weight.grad.clone()
    x.grad = conv.weight.grad = None
    with fast_depthwise3d(conv) as n:
        y2 = conv(x)
        y2.backward(g)
    assert n == (1 if stride == (1, 1, 1) else 0)  # strided layers keep ATen's backward
    assert "forward" not in vars(conv)  # restored
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(x.grad, gx)
    torch.testing.assert_close(conv.weight.grad, gw)


def test_fast_depthwise_switches_only_x3d_depthwise_layers():
    m = create_model(Variant("x3d_xs", frames=4, resolution=64), num_classes=10)
    dw = [c for c in m.modules() if isinstance(c, nn.Conv3d) and c.groups > 1 and c.stride == (1, 1, 1)]
    with fast_depthwise3d(m) as n:
        assert n == len(dw) > 0


def test_recalibrate_bn_restores_statistics():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))
    clips = np.random.default_rng(0).integers(0, 256, (12, 3, 2, 4, 4), dtype=np.uint8)  # 3 equal batches
    recalibrate_bn(m, clips, batch=4)
    from calib_data.tensor import to_tensor

    with torch.no_grad():
        h = m[0](to_tensor(clips))
    torch.testing.assert_close(m[1].running_mean, h.mean((0, 2, 3, 4)), rtol=1e-4, atol=1e-5)
    assert not m.training and m[1].momentum == 0.1


def test_resumable_finetune_resumes_to_the_same_weights(tmp_path):
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (24, 3, 2, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, 24)

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
                             nn.Flatten(), nn.Dropout(0.2), nn.Linear(4, 3))

    t_logits = torch.randn(24, 3, generator=torch.Generator().manual_seed(1))
    sched = KDSchedule(epochs=2, lr=1e-2, batch=4, warmup=2, save_every=1, eval_every=3)
    full = net()
    h_full = finetune_kd_resumable(full, clips, labels, t_logits, sched, tmp_path / "a.pt", evaluate=lambda m: 0.5)
    assert [h["step"] for h in h_full] == [3, 6, 9, 12] and h_full[-1]["epoch"] == 2.0

    class Stop(Exception):
        pass

    part = net()
    stopped = KDSchedule(epochs=2, lr=1e-2, batch=4, warmup=2, save_every=1, eval_every=3)
    calls = []

    def evaluate(m: nn.Module) -> float:
        calls.append(1)
        if len(calls) == 3:  # dies during the third evaluation (step 9), after saving step 8
            raise Stop
        return 0.5

    with pytest.raises(Stop):
        finetune_kd_resumable(part, clips, labels, t_logits, stopped, tmp_path / "b.pt", evaluate=evaluate)
    resumed = net()
    h = finetune_kd_resumable(resumed, clips, labels, t_logits, stopped, tmp_path / "b.pt", evaluate=lambda m: 0.5)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert [r["step"] for r in h] == [3, 6, 9, 12]
    with pytest.raises(BadInput, match="another schedule"):
        finetune_kd_resumable(net(), clips, labels, t_logits, KDSchedule(epochs=1, batch=4), tmp_path / "b.pt")


@pytest.mark.slow
def test_slimmable_checkpoint_is_pruned_at_its_configuration(tmp_path):
    """The shipped MutualNet checkpoint: pruned at a configuration of its table from that
    configuration's BN post-statistics; a configuration outside the table is refused."""
    from edge.models.slim import load_slim, materialize
    from edge.prune import load_teacher

    v = Variant("x3d_xs", frames=4, resolution=96)
    teacher = load_teacher(SHIPPED, v)
    ref = materialize(load_slim(SHIPPED)[0], 1.0, 96, 4)
    x = torch.randn(v.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), ref(x))
    r = prune_job("x3d_xs", SHIPPED, 0.3, tmp_path / "p.pt", frames=4, resolution=96, criterion="prefix",
                  recal_clips=16)
    assert abs(r["flops_cut"] - 0.3) <= 0.05 and r["recal_clips"] == 16
    model = load_pruned(tmp_path / "p.pt", v.with_(prune=0.3))
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
    # BN statistics re-estimated on the 16 clips (the stem's BN is not pruned, its statistics still move)
    key = "blocks.0.norm.running_var"
    assert model.state_dict()[key].shape == teacher.state_dict()[key].shape
    assert not torch.allclose(model.state_dict()[key], teacher.state_dict()[key])
    with pytest.raises(BadInput, match="w1.0-r64-f4.*not in the BN post-statistics"):
        prune_job("x3d_xs", SHIPPED, 0.3, tmp_path / "q.pt", frames=4, resolution=64)


def test_pruned_checkpoint_evaluates_and_keeps_its_source_sampling(tmp_path):
    """edgevid eval rebuilds a pruned checkpoint from its channel spec; the pruned net's
    clips are read as its source's were (the shipped checkpoint: uniform)."""
    from edge.checkpoint import clip_sampling, load_checkpoint
    from edge.evaluate import evaluate_checkpoint
    from edge.models.slim import SlimConfig

    v = Variant("convnet2d_s", frames=2, resolution=32)
    src = randomize_bn(create_model(v, num_classes=10), v.input_shape)
    from calib_data.synth import CLASSES

    ck = save_checkpoint(tmp_path / "src.pt", src, v, 10, {"train": {}, "classes": list(CLASSES)})
    prune_job("convnet2d_s", str(ck), 0.3, tmp_path / "p.pt", frames=2, resolution=32)
    assert clip_sampling(load_checkpoint(tmp_path / "p.pt").meta) == "uniform" == clip_sampling(load_checkpoint(ck).meta)
    assert clip_sampling({"sampling": "stride", "train": {}}) == "stride"
    with pytest.raises(BadInput, match="neither"):
        clip_sampling({"sampling": "random"})
    rows = evaluate_checkpoint(tmp_path / "p.pt", "convnet2d_s", "calib_data/shipped",
                               [SlimConfig(1.0, 32, 2)], limit=8, single_frame=False, device="cpu")
    assert len(rows) == 1 and rows[0].clips == 8 and 0.0 <= rows[0].top1 <= 1.0


def test_unreachable_ratio_names_model_and_max_cut(tmp_path):
    with pytest.raises(BadInput, match=r"^convnet2d_s: FLOPs cut 0.98 unreachable - the max reachable cut is "
                                       r"0\.\d{3} \(channel ratio 0.95 .*\^stem"):
        prune_job("convnet2d_s", None, 0.98, tmp_path / "o.pt", frames=2, resolution=32)
    assert not (tmp_path / "o.pt").exists()
