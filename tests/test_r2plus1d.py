"""R(2+1)D-50: the published parameter count, logits equal to PyTorchVideo's
``create_r2plus1d`` with the same (randomised) weights, and ``convert-ckpt``."""
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import pvref
from edge.checkpoint import load_model
from edge.cli import main
from edge.convert import from_pytorchvideo, pytorchvideo_models
from edge.models.r2plus1d import midplanes, r2plus1d_18, r2plus1d_r50

needs_pytorchvideo = pytest.mark.skipif(not pvref.available(), reason="pytorchvideo (extra 'reference') not installed")


def test_parameter_count_is_pytorchvideos():
    assert sum(p.numel() for p in r2plus1d_r50().parameters()) == 28_107_600  # PyTorchVideo zoo: 28.11M


def test_r18_has_torchvisions_parameter_count_and_compute():
    from edge.flops import complexity

    assert sum(p.numel() for p in r2plus1d_18().parameters()) == 31_505_325  # torchvision r2plus1d_18
    assert round(complexity(r2plus1d_18(), (1, 3, 16, 112, 112)).gflops, 2) == 40.52  # its 40.52 GFLOPS


def test_r18_inner_width_is_the_papers_rule():
    """M_i keeps a (2+1)D block's parameters equal to a full 3x3x3 conv's (to rounding)."""
    for c_in, c_out in ((64, 64), (64, 128), (256, 512)):
        m = midplanes(c_in, c_out)
        assert m * (9 * c_in + 3 * c_out) <= 27 * c_in * c_out < (m + 1) * (9 * c_in + 3 * c_out)
    assert midplanes(64, 64) == 144 and midplanes(256, 512) == 921  # torchvision's layer2/layer4 first blocks


@pytest.mark.parametrize("build", [r2plus1d_r50, r2plus1d_18])
def test_every_conv_is_2d_or_1d_in_time(build):
    """(2+1)D: no conv has both a temporal and a spatial extent."""
    for m in build(num_classes=10).modules():
        if isinstance(m, nn.Conv3d):
            kt, kh, kw = m.kernel_size
            assert kt == 1 or (kh, kw) == (1, 1), m


def test_head_window_is_pytorchvideos_at_16x224_and_cut_below():
    assert r2plus1d_r50(frames=16, resolution=224).blocks[5].pool.kernel_size == (4, 7, 7)
    assert r2plus1d_r50(frames=8, resolution=112).blocks[5].pool.kernel_size == (2, 4, 4)


@pytest.mark.reference
@needs_pytorchvideo
@pytest.mark.parametrize("frames, crop", [(8, 64), (6, 96)])
def test_logits_match_pytorchvideo(frames: int, crop: int) -> None:
    ref = pvref.pytorchvideo_r2plus1d(num_classes=10, frames=frames, crop=crop, seed=2)
    model = r2plus1d_r50(num_classes=10, frames=frames, resolution=crop).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = pvref.clip(2, frames, crop, seed=5)
    with torch.no_grad():
        want, got = ref(x), model(x)
    assert want.std() > 0.1  # logits that depend on the weights, not near-zero
    assert (got - want).abs().max().item() < 1e-4 * max(1.0, want.abs().max().item())


def test_pytorchvideo_converts_into_r2plus1d():
    assert "r2plus1d_r50" in pytorchvideo_models()


@pytest.mark.slow
@pytest.mark.reference
@needs_pytorchvideo
def test_convert_ckpt_reproduces_pytorchvideo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A .pyth of create_r2plus1d at its zoo configuration (16 x 224) -> an edgevid checkpoint
    whose model gives PyTorchVideo's logits."""
    ref = pvref.pytorchvideo_r2plus1d(num_classes=7, frames=16, crop=224, seed=4)
    src, dst = tmp_path / "R2PLUS1D_16x4_R50.pyth", tmp_path / "out" / "r2p.pt"
    torch.save({"model_state": ref.state_dict()}, src)
    assert main(["convert-ckpt", "--from", "pytorchvideo", str(src), str(dst), "--model", "r2plus1d_r50"]) == 0
    assert "7 classes" in capsys.readouterr().out
    model, ckpt = load_model(dst)
    assert ckpt.variant.model == "r2plus1d_r50" and (ckpt.variant.frames, ckpt.variant.resolution) == (16, 224)
    assert ckpt.meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    x = pvref.clip(1, 16, 224, seed=6)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() < 1e-4


def test_an_x3d_checkpoint_into_r2plus1d_names_the_first_key(tmp_path: Path) -> None:
    from edge.core.errors import BadInput
    from edge.models.x3d import x3d_xs

    state = x3d_xs(num_classes=10).state_dict()
    with pytest.raises(BadInput, match=r"blocks\.0\.(conv|norm)"):
        from_pytorchvideo(state, "r2plus1d_r50")
