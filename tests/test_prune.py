"""Structured pruning: FLOPs targets, ONNX parity of pruned models, pruned checkpoints
that rebuild without the original, compile of a pruned variant, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.checkpoint import save_checkpoint
from edge.cli import main
from edge.core.errors import BadInput
from edge.flops import complexity
from edge.models import MODELS, create_model
from edge.prune import PruneOptions, load_pruned, prune_job, prune_model, resync
from edge.core.variant import Variant
from helpers import onnx_parity_bound, randomize_bn


def small(name: str) -> Variant:
    """A small input: 4 frames (1 for per-frame image models) at 64 x 64."""
    return Variant(name, frames=4 if MODELS[name].frames > 1 else 1, resolution=64)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_outside_range_refused(ratio):
    with pytest.raises(BadInput, match="ratio"):
        PruneOptions(ratio)


def test_cli_bad_ratio_and_criterion_exit_2(tmp_path, capsys):
    assert main(["prune", "--model", "x3d_xs", "--ratio", "1.2", "--out", str(tmp_path / "p.pt")]) == 2
    assert "ratio" in capsys.readouterr().err
    assert main(["prune", "--model", "nope", "--ratio", "0.3", "--out", str(tmp_path / "p.pt")]) == 2


def test_cli_defaults_to_the_checkpoints_configuration_else_the_models(tmp_path, capsys):
    """prune --ckpt without --frames/--resolution works at the checkpoint's own input (a
    checkpoint saved at 6 x 48 here), and without --ckpt at the model's (X3D-XS: 4 x 160)."""
    import json

    v = Variant("x3d_xs", width=0.5, frames=6, resolution=48)
    ckpt = save_checkpoint(tmp_path / "c.pt", create_model(v, num_classes=5), v, 5)
    assert main(["prune", "--model", "x3d_xs", "--ckpt", str(ckpt), "--ratio", "0.3", "--out",
                 str(tmp_path / "p.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [1, 3, 6, 48, 48]
    assert main(["prune", "--model", "x3d_xs", "--ratio", "0.3", "--out", str(tmp_path / "q.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [1, 3, 4, 160, 160]


def test_unknown_layer_type_named():
    v = small("convnet2d_s")
    m = create_model(v, num_classes=5)
    m.fc = torch.nn.Sequential(torch.nn.LayerNorm(m.fc.in_features), m.fc)
    with pytest.raises(BadInput, match=r"fc\.0.*LayerNorm"):
        prune_model(m, "convnet2d", v.input_shape, PruneOptions(0.3))


def test_checkpoint_of_other_model_refused(tmp_path):
    v = small("convnet2d_s")
    path = save_checkpoint(tmp_path / "c.pt", create_model(v, num_classes=5), v, 5)
    with pytest.raises(BadInput, match="convnet2d_s, not x3d_xs"):
        prune_job("x3d_xs", str(path), 0.3, tmp_path / "o.pt", frames=4, resolution=64)


CASES = [(n, r) for n in MODELS for r in (0.3, 0.5)]


@pytest.mark.slow
@pytest.mark.parametrize("name, ratio", CASES)
def test_pruned_model_hits_flops_exports_and_matches_onnxruntime(name, ratio, tmp_path):
    import onnxruntime as ort

    from targets.export import export_onnx

    v = small(name)
    model = randomize_bn(create_model(v, num_classes=10), v.input_shape)
    res = prune_model(model, MODELS[name].family, v.input_shape, PruneOptions(ratio))
    assert abs(res.flops_cut - ratio) <= 0.05, res.flops_cut
    assert res.after.params < res.before.params
    assert complexity(model, v.input_shape).macs == res.before.macs  # original untouched
    pm = randomize_bn(res.model, v.input_shape, seed=1)
    x = torch.randn(v.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = pm(x).numpy()
    assert ref.shape == (1, 10) and np.isfinite(ref).all()
    export_onnx(pm, v.input_shape, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - ref).max() < onnx_parity_bound(name, ref), np.abs(got - ref).max()


@pytest.mark.slow
def test_ghost_module_resynced_after_pruning():
    from edge.models.ghost import GhostModule

    v = small("ghost_tsm")
    res = prune_model(create_model(v, num_classes=10), "ghost", v.input_shape, PruneOptions(0.3))
    mods = [m for m in res.model.modules() if isinstance(m, GhostModule)]
    # every bottleneck's expansion is pruned, also where the concat feeds conv_dw or SE (groups rooted
    # at ghost1.primary_conv, see edge.prune._roots_in_definition_order)
    orig = dict(create_model(v, num_classes=10).named_modules())
    ghost1 = [(n, m) for n, m in res.model.named_modules() if n.endswith(".ghost1")]
    assert len(ghost1) == 16
    for n, m in ghost1:
        assert m.primary_conv[0].out_channels < orig[n].primary_conv[0].out_channels, n
    assert sum(m.out_chs for m in mods) < sum(m.out_chs for m in create_model(v, num_classes=10).modules()
                                              if isinstance(m, GhostModule))
    for m in mods:
        assert m.out_chs == m.primary_conv[0].out_channels + m.cheap_operation[0].out_channels
    resync(res.model)  # idempotent


@pytest.mark.slow
def test_pruned_checkpoint_round_trip_and_compile(tmp_path):
    from edge.compile import compile_variant

    v = small("convnet2d_s")
    src = create_model(v, num_classes=7)
    randomize_bn(src, v.input_shape)
    ck = save_checkpoint(tmp_path / "src.pt", src, v, 7)
    out = tmp_path / "pruned.pt"
    r = prune_job("convnet2d_s", str(ck), 0.3, out, frames=4, resolution=64, round_to=8)
    assert abs(r["flops_cut"] - 0.3) <= 0.05 and r["params_after"] < r["params_before"]
    pv = v.with_(prune=0.3)
    model = load_pruned(out, pv)  # from create_model + the recorded spec only
    x = torch.randn(v.input_shape)
    assert complexity(model, v.input_shape).macs == pytest.approx(r["gflops_after"] * 1e9, rel=1e-6)
    with pytest.raises(BadInput, match="pruned at ratio 0.3"):
        load_pruned(out, v.with_(prune=0.5))
    with pytest.raises(BadInput, match="shape mismatch"):  # unpruned variant, pruned checkpoint
        compile_variant(v, "onnxruntime", tmp_path / "art0", ckpt=out)
    art = compile_variant(pv, "onnxruntime", tmp_path / "art", ckpt=out)
    assert art.status == "ok" and art.variant == pv.tag
    assert art.notes["check"]["max_abs_diff"] < 1e-3
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
    with pytest.raises(BadInput, match="needs --ckpt"):
        compile_variant(pv, "onnxruntime", tmp_path / "art2")


def test_kd_finetune_lowers_the_distillation_loss():
    from edge.prune import finetune_kd, kd_loss

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 4 * 4, 5))
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 4 * 4, 5))
    x = torch.randn(32, 3, 2, 4, 4)
    y = teacher(x).argmax(1).detach()
    with torch.no_grad():
        before = float(kd_loss(student(x), teacher(x), y))
    losses = finetune_kd(student, teacher, x, y, epochs=20, lr=1e-2)
    with torch.no_grad():
        after = float(kd_loss(student(x), teacher(x), y))
    assert len(losses) == 20 and after < 0.5 * before
