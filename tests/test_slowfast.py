"""SlowFast-R50 4x16: the published parameter count and GFLOPs, the in-graph pathway
split, and logits equal to PyTorchVideo's ``create_slowfast`` given the same two
pathway tensors and the same (randomised) weights."""
import numpy as np
import pytest
import torch

import pvref
from edge.flops import complexity
from edge.models.slowfast import ALPHA, slowfast_r50

needs_pytorchvideo = pytest.mark.skipif(not pvref.available(), reason="pytorchvideo (extra 'reference') not installed")


def test_parameters_and_gflops_are_the_published_ones():
    model = slowfast_r50()
    assert sum(p.numel() for p in model.parameters()) == 34_480_216  # PyTorchVideo: 34.48M
    assert round(complexity(slowfast_r50(resolution=256), (1, 3, 32, 256, 256)).gflops, 1) == 36.1  # the paper's


def test_the_slow_pathway_is_every_eighth_frame():
    """Changing a frame the Slow pathway skips moves the logits only through the Fast one:
    with the Fast pathway's weights zeroed, only frames 0, 8, 16, 24 matter."""
    torch.manual_seed(0)
    model = slowfast_r50(num_classes=5, frames=32, resolution=64).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".multipathway_blocks.1." in name or "conv_fast_to_slow" in name:
                p.zero_()
        x = torch.randn(1, 3, 32, 64, 64)
        base = model(x)
        skipped, kept = x.clone(), x.clone()
        skipped[:, :, 3] += 5.0
        kept[:, :, 2 * ALPHA] += 5.0
        assert torch.allclose(model(skipped), base, atol=1e-5)
        assert not torch.allclose(model(kept), base, atol=1e-3)


@pytest.mark.reference
@needs_pytorchvideo
@pytest.mark.parametrize("frames, crop", [(16, 64), (32, 96)])
def test_logits_match_pytorchvideo(frames: int, crop: int) -> None:
    ref = pvref.pytorchvideo_slowfast(num_classes=10, frames=frames, crop=crop, seed=3)
    model = slowfast_r50(num_classes=10, frames=frames, resolution=crop).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = pvref.clip(2, frames, crop, seed=7)
    with torch.no_grad():
        want, got = ref([x[:, :, ::ALPHA], x]), model(x)
    assert want.std() > 0.1
    assert (got - want).abs().max().item() < 1e-4 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("frames", [1, 4, 9])
def test_clips_shorter_than_alpha_still_have_one_slow_frame(frames: int) -> None:
    model = slowfast_r50(num_classes=3, frames=frames, resolution=32).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, frames, 32, 32))
    assert out.shape == (1, 3) and np.isfinite(out.numpy()).all()


def test_the_artifact_records_which_frames_each_pathway_sees(tmp_path):
    from edge.compile import compile_variant
    from edge.core.variant import Variant

    art = compile_variant(Variant("slowfast_r50", frames=16, resolution=32), "onnxruntime", tmp_path / "art")
    assert art.input.shape == (1, 3, 16, 32, 32)  # one video input
    assert art.notes["input_sampling"] == {"fast": "all 16 frames",
                                           "slow": "frames [0, 8] (every 8th, from frame 0)"}
