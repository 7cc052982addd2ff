"""Slimmable models: slices have the static models' shapes, materialize is exact,
BN post-statistics per configuration, checkpoints, the shipped MutualNet X3D-XS,
and one clear line for every bad input."""
import hashlib
from pathlib import Path

import pytest
import numpy as np
import torch

from edge.checkpoint import load_model
from edge.core.errors import BadInput
from edge.models import create_model
from edge.models.slim import (slimmable, SlimConfig, SlimNet, ghost_channels, load_slim, materialize,
                              parse_configs, save_slim)
from edge.core.variant import Variant

FAMILIES = ["x3d_xs", "ghost_tsm", "convnet2d_s"]
SHAPE = (2, 32)  # frames, resolution: tiny but every model runs
SHIPPED = Path(__file__).resolve().parents[1] / "edge" / "checkpoints" / "x3d_xs_mutual_synth10.pt"


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def calibrated(name: str, widths, shapes=(SHAPE,), seed: int = 0) -> SlimNet:
    torch.manual_seed(seed)
    slim = SlimNet(name, 5, (0.25, 1.0), resolution=max(r for _, r in shapes), frames=max(f for f, _ in shapes))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial BN affine parameters
        for m in slim.net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    for w in widths:
        for f, r in shapes:
            slim.calibrate(SlimConfig(w, r, f), [torch.randn(3, 3, f, r, r, generator=g) for _ in range(2)])
    return slim.eval()


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("width", [0.25, 0.4, 0.5, 0.73, 1.0])
def test_slice_has_the_static_models_shapes(name, width):
    slim = SlimNet(name, 5, resolution=SHAPE[1], frames=SHAPE[0])
    sliced = slim.sliced(width)
    with torch.device("meta"):
        static = create_model(Variant(name, width, SHAPE[1], SHAPE[0]), 5).state_dict()
    assert sliced.keys() == static.keys()
    for k, t in static.items():
        assert tuple(sliced[k].shape) == tuple(t.shape), k


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_materialize_is_the_slimmable_model(name):
    widths = [0.25, 0.6, 0.85, 1.0]  # 0.6 and 0.85 are off the 0.25 grid
    slim = calibrated(name, widths)
    x = torch.randn(2, 3, SHAPE[0], SHAPE[1], SHAPE[1])
    for w in widths:
        static = materialize(slim, w, SHAPE[1], SHAPE[0])
        assert type(static) is type(create_model(Variant(name, w, SHAPE[1], SHAPE[0]), 5))
        with torch.no_grad():
            a, b = slim(x, w), static(x)
        assert a.shape == (2, 5)
        assert (a - b).abs().max().item() < 1e-5, w
    with torch.no_grad():  # and the widths really differ
        assert (slim(x, 0.25) - slim(x, 1.0)).abs().max().item() > 1e-3


@pytest.mark.parametrize("name", FAMILIES)
def test_full_width_is_the_full_model(name):
    slim = SlimNet(name, 5, resolution=SHAPE[1], frames=SHAPE[0])
    sliced = slim.sliced(1.0)
    for k, t in slim.net.state_dict().items():
        assert torch.equal(sliced[k], t), k


def test_gradients_reach_the_shared_weights():
    slim = SlimNet("x3d_xs", 5, resolution=SHAPE[1], frames=SHAPE[0]).train()
    slim(torch.randn(2, 3, SHAPE[0], SHAPE[1], SHAPE[1]), 0.5).sum().backward()
    w = slim.net.blocks[1].res_blocks[0].branch2.conv_a.weight  # (54, 24, 1, 1, 1) full
    n_out, n_in = slim.sliced(0.5)["blocks.1.res_blocks.0.branch2.conv_a.weight"].shape[:2]
    assert w.grad[:n_out, :n_in].abs().sum() > 0
    assert w.grad[n_out:].abs().sum() == 0 and w.grad[:, n_in:].abs().sum() == 0


def test_ghost_slices_keep_intrinsic_and_ghost_maps():
    idx = ghost_channels(160, 80)
    assert idx.tolist() == list(range(40)) + list(range(80, 120))
    assert ghost_channels(16, 16).tolist() == list(range(16))
    slim = SlimNet("ghost_tsm", 5, resolution=SHAPE[1], frames=SHAPE[0])
    sliced = slim.sliced(0.5)
    full_dw = slim.net.blocks[1][0].conv_dw.weight  # stride-2 depthwise on 48 = [24 intrinsic, 24 ghost] maps
    n = sliced["blocks.1.0.conv_dw.weight"].shape[0]
    assert torch.equal(sliced["blocks.1.0.conv_dw.weight"], full_dw[ghost_channels(48, n)])
    assert not torch.equal(sliced["blocks.1.0.conv_dw.weight"], full_dw[:n])


def test_temporal_conv_slices_keep_every_tap():
    from edge.models.convnet2d import TemporalConv

    slim = SlimNet("convnet2d_s", 5, resolution=SHAPE[1], frames=SHAPE[0])
    name, full = next((n, m) for n, m in slim.net.named_modules() if isinstance(m, TemporalConv) and m.kernel > 1)
    w = slim.sliced(0.5)[f"{name}.conv.weight"]
    c = w.shape[1] // full.kernel
    kx1 = full.as_kx1_weight()  # (out, in, k, 1)
    assert torch.equal(w.reshape(w.shape[0], full.kernel, c).permute(0, 2, 1).unsqueeze(-1),
                       kx1[:w.shape[0], :c])


@pytest.mark.slow
def test_bn_post_statistics_differ_per_configuration():
    shapes = [(2, 32), (2, 48), (4, 32)]
    slim = calibrated("x3d_xs", [0.5], shapes)
    stats = [slim.bn_stats[SlimConfig(0.5, r, f).tag] for f, r in shapes]
    key = "blocks.1.res_blocks.0.branch2.norm_a.running_var"
    assert not torch.allclose(stats[0][key], stats[1][key])
    assert not torch.allclose(stats[0][key], stats[2][key])
    slim.calibrate(SlimConfig(0.5, 32, 2), [torch.randn(3, 3, 2, 32, 32) * 3 for _ in range(2)])
    assert not torch.allclose(slim.bn_stats[SlimConfig(0.5, 32, 2).tag][key], stats[0][key])


@pytest.mark.slow
def test_checkpoint_round_trip(tmp_path):
    slim = calibrated("x3d_xs", [0.25, 1.0])
    path = save_slim(tmp_path / "s.pt", slim, {"note": "x"})
    loaded, meta = load_slim(path, "x3d_xs")
    assert meta["note"] == "x" and loaded.width_range == (0.25, 1.0)
    assert [c.tag for c in loaded.table()] == ["w0.25-r32-f2", "w1.0-r32-f2"]
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        for w in (0.25, 1.0):
            assert torch.equal(loaded(x, w), slim(x, w))
        # the plain loader gives the full model with the full configuration's statistics
        full, _ = load_model(path)
        assert (full(x) - loaded(x, 1.0)).abs().max() < 1e-5
    half, _ = load_slim(save_slim(tmp_path / "h.pt", slim, half=True))
    assert half.net.blocks[0].conv.conv_xy.weight.dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(half(x, 0.25), slim(x, 0.25), atol=5e-2)
        assert (materialize(half, 0.25)(x) - half(x, 0.25)).abs().max() < 1e-5
    assert path.stat().st_size > (tmp_path / "h.pt").stat().st_size * 1.6


def test_bad_input():
    slim = calibrated("x3d_xs", [0.5])
    x = torch.randn(1, 3, *SHAPE[:1], SHAPE[1], SHAPE[1])
    with pytest.raises(BadInput, match=r"width 0.1 is outside the trained range \[0.25, 1.0\]"):
        slim(x, 0.1)
    with pytest.raises(BadInput, match=r"w0.75-r32-f2 .* not in the BN post-statistics table"):
        slim(x, 0.75)
    with pytest.raises(BadInput, match="not in the BN post-statistics table"):
        materialize(slim, 0.5, 48, 2)
    with pytest.raises(BadInput, match="outside the trained range"):
        materialize(slim, 1.0 + 1e-3)  # width > 1 is no width at all
    with pytest.raises(BadInput, match="wider than the full model"):
        slim.sliced(0.98)  # 0.98 * 54 rounds up to 56 channels: not a slice
    with pytest.raises(BadInput, match="not slimmable"):
        SlimNet("gghost_tsm", 5)
    with pytest.raises(BadInput, match="malformed configuration"):
        SlimConfig.parse("w0.5-112-f8")
    assert [c.tag for c in parse_configs("w0.5-r112-f8, w1-r128-f4")] == ["w0.5-r112-f8", "w1.0-r128-f4"]


@pytest.mark.slow
def test_corrupt_and_plain_checkpoints_refused(tmp_path):
    from edge.checkpoint import save_checkpoint

    slim = calibrated("x3d_xs", [0.5])
    path = save_slim(tmp_path / "s.pt", slim)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInput, match="truncated or not a torch checkpoint"):
        load_slim(path)
    plain = save_checkpoint(tmp_path / "p.pt", create_model(Variant("x3d_xs", frames=2, resolution=32), 5),
                            Variant("x3d_xs", frames=2, resolution=32), 5)
    with pytest.raises(BadInput, match="not a slimmable checkpoint"):
        load_slim(plain)
    with pytest.raises(BadInput, match="holds x3d_xs, not ghost_tsm"):
        load_slim(save_slim(tmp_path / "t.pt", slim), "ghost_tsm")


def test_every_slimmable_model_is_registered():
    from edge.models import MODELS

    assert set(slimmable()) <= set(MODELS)


# ----------------------------------------------------------------------------- the shipped checkpoint

def test_shipped_checkpoint_matches_its_readme():
    readme = (SHIPPED.parent / "README.md").read_text()
    digest = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert digest in readme
    assert sum(p.stat().st_size for p in SHIPPED.parent.glob("*.pt")) < 20e6


@pytest.mark.slow
def test_shipped_checkpoint_table():
    slim, meta = load_slim(SHIPPED, "x3d_xs")
    assert slim.width_range == (0.25, 1.0) and slim.num_classes == 10
    tags = [c.tag for c in slim.table()]
    assert len(tags) == 24 and "w0.25-r96-f4" in tags and "w1.0-r128-f8" in tags
    assert meta["train"]["mutual"] and len(meta["accuracy"]) == 24
    acc = {r["config"]: r for r in meta["accuracy"]}
    assert acc["w1.0-r128-f8"]["top1"] > 0.5 > acc["w1.0-r128-f8"]["top1_1frame"] + 0.3


@pytest.mark.slow
def test_shipped_checkpoint_recognises_held_out_motion():
    """The smallest configuration on the shipped calibration clips (another seed
    than the training set): well above the 10% of chance."""
    import calib_data
    from edge.evaluate import evaluate, models_of

    slim, meta = load_slim(SHIPPED, "x3d_xs")
    rows = evaluate(models_of(slim), calib_data.shipped_manifest(), [SlimConfig(0.25, 96, 4)], batch_size=20,
                    classes=meta["classes"], limit=60, count=False)
    assert rows[0].clips == 60
    assert rows[0].top1 > 0.3
    assert rows[0].top1_1frame < rows[0].top1


@pytest.mark.slow
def test_compile_materialises_a_shipped_configuration(tmp_path):
    """compile_variant on the slimmable checkpoint builds the configuration's static model
    (same logits as the SlimNet at that configuration) and records its accuracy and classes."""
    from edge.compile import compile_variant
    from edge.models.slim import load_slim
    from edge.core.variant import Variant
    from targets.base import Artifact
    from targets.registry import get_target

    slim, meta = load_slim(SHIPPED)
    v = Variant("x3d_xs", 0.5, 96, 4)
    art = compile_variant(v, "onnxruntime", tmp_path / "a", ckpt=SHIPPED)
    row = next(r for r in meta["accuracy"] if r["config"] == "w0.5-r96-f4")
    assert art.notes["accuracy_table"]["top1"] == row["top1"]
    # the artifact itself on the regenerated 300 held-out clips: the table's figure, within a clip or two
    measured = art.notes["accuracy"]
    assert measured["clips"] == 300 and abs(measured["top1"] - row["top1"]) <= 2 / 300, measured
    assert art.notes["classes"] == meta["classes"]
    x = torch.randn(1, 3, 4, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = slim(x, width=0.5).numpy()
    got = get_target("onnxruntime").load(Artifact.read(tmp_path / "a"))(x.numpy())
    assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max())
    with pytest.raises(BadInput, match="not in the BN post-statistics"):
        compile_variant(Variant("x3d_xs", 0.5, 100, 4), "onnxruntime", tmp_path / "b", ckpt=SHIPPED)
