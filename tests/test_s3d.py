"""S3D / S3D-G: the published parameter count, torchvision's module layout, the
separable convolutions, feature gating against its equation, and the pooling
windows at inputs smaller than the paper's."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from edge.core.errors import BadInput
from edge.models import create_model
from edge.core.variant import Variant
from edge.models.s3d import INCEPTION, SelfGating, s3d, s3dg


def params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_s3d_has_torchvisions_parameter_count():
    assert params(s3d()) == 8_320_048  # torchvision.models.video.s3d, 400 classes


def test_s3dg_adds_one_gate_per_gated_output():
    """A gate is a C x C matrix and a bias: after features.3 (192) and each branch of each block."""
    gated = [192] + [c for b in INCEPTION.values() for c in (b[1], b[3], b[5], b[6])]
    assert params(s3dg()) - params(s3d()) == sum(c * c + c for c in gated)


def test_state_dict_keys_follow_torchvisions_layout():
    keys = set(s3d(num_classes=10).state_dict())
    for k in ("features.0.0.0.weight", "features.0.1.1.running_mean", "features.3.1.0.weight",
              "features.5.branch1.1.0.0.weight", "features.5.branch3.1.0.weight", "features.15.branch0.0.weight",
              "classifier.1.weight", "classifier.1.bias"):
        assert k in keys, k


def test_every_3d_conv_is_separable():
    """Every conv is 1x1x1, (1, k, k) or (k, 1, 1): no full k x k x k kernel."""
    for m in s3d().modules():
        if isinstance(m, nn.Conv3d):
            kt, kh, kw = m.kernel_size
            assert kt == 1 or (kh, kw) == (1, 1), m


def test_self_gating_is_its_equation():
    torch.manual_seed(0)
    gate = SelfGating(6).eval()
    x = torch.randn(2, 6, 3, 5, 4)
    w = gate.fc.weight.detach().numpy()[:, :, 0, 0, 0]
    b = gate.fc.bias.detach().numpy()
    xn = x.numpy()
    want = np.empty_like(xn)
    for n in range(2):
        pooled = xn[n].reshape(6, -1).mean(axis=1)
        g = 1 / (1 + np.exp(-(w @ pooled + b)))
        want[n] = xn[n] * g[:, None, None, None]
    with torch.no_grad():
        got = gate(x).numpy()
    assert np.abs(got - want).max() < 1e-5


def test_windows_are_torchvisions_at_the_paper_input_and_cut_below_it():
    full = s3d(frames=16, resolution=224)
    assert full.features[13].kernel_size == (2, 2, 2) and full.avgpool.kernel_size == (2, 7, 7)
    small = s3d(frames=4, resolution=64)
    assert small.features[13].kernel_size == (1, 2, 2) and small.avgpool.kernel_size == (1, 2, 2)
    with torch.no_grad():
        assert small.eval()(torch.randn(1, 3, 4, 64, 64)).shape == (1, 400)


def test_longer_clips_pool_over_time_like_torchvision():
    """At 32 frames the head's (2, 7, 7) window slides over 2 temporal positions, then a mean."""
    m = s3d(frames=32, resolution=224, num_classes=5).eval()
    assert m.avgpool.kernel_size == (2, 7, 7)
    with torch.no_grad():
        feats = m.features(torch.randn(1, 3, 32, 224, 224))
        assert feats.shape[2:] == (4, 7, 7)


def test_registered_with_the_paper_input():
    from edge.models.registry import variant as zoo_variant

    v = zoo_variant("s3d")
    assert (v.frames, v.resolution) == (64, 224)
    assert params(create_model(Variant("s3dg", frames=8, resolution=32), num_classes=10)) > 0


def test_a_crop_under_32_is_refused():
    with pytest.raises(BadInput, match="at least 32"):
        s3d(frames=8, resolution=16)
