"""A model family is one file ending in its FamilySpec plus registry lines: a family registered
inside this test (a tiny 3D ConvNet written to a temporary module) builds, prunes with its own
protected layers, slims with the prefix rule, and exports to ONNX with the same logits."""
from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest
import torch

from edge.models import registry
from edge.models.family import FamilySpec
from edge.models.registry import MODELS, ModelInfo, all_families, create_model, family_spec, variant

FAMILY_FILE = '''
import torch.nn as nn

from edge.models.common import scale_channels
from edge.models.family import FamilySpec


class TinyNet(nn.Module):
    def __init__(self, num_classes, frames, resolution, width):
        super().__init__()
        c1, c2 = scale_channels(16, width), scale_channels(32, width)
        self.stem = nn.Sequential(nn.Conv3d(3, c1, 3, padding=1, bias=False), nn.BatchNorm3d(c1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv3d(c1, c2, 3, stride=2, padding=1, bias=False), nn.BatchNorm3d(c2),
                                  nn.ReLU(), nn.Conv3d(c2, c2, 1, bias=False), nn.BatchNorm3d(c2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(c2, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.body(self.stem(x))).flatten(1))


def tiny3d(num_classes=10, frames=4, resolution=32, width=1.0):
    return TinyNet(num_classes, frames, resolution, width)


FAMILY = FamilySpec("tiny3d", protected=(r"^stem\\.", r"^fc$"), slim_rule="prefix")
'''


@pytest.fixture()
def tiny_family(tmp_path, monkeypatch):
    (tmp_path / "tiny3d_family.py").write_text(textwrap.dedent(FAMILY_FILE))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setitem(registry.FAMILIES, "tiny3d", "tiny3d_family:FAMILY")
    monkeypatch.setitem(registry.MODELS, "tiny3d", ModelInfo("tiny3d", "tiny3d", "tiny3d_family:tiny3d", 4, 32, 10,
                                                             "a family registered by a test"))
    yield "tiny3d"
    sys.modules.pop("tiny3d_family", None)


def test_every_zoo_family_has_its_spec():
    names = {f.name for f in all_families()}
    assert {info.family for info in MODELS.values()} <= names
    assert all(isinstance(family_spec(n), FamilySpec) for n in names)


def test_a_family_registered_in_a_test_builds_prunes_and_exports(tiny_family, tmp_path):
    from edge.prune import PruneOptions, prune_model
    from targets.export import export_onnx
    from quant.ort_session import ort_session

    v = variant(tiny_family)
    model = create_model(v).eval()
    assert model(torch.zeros(v.input_shape)).shape == (1, 10)
    res = prune_model(model, tiny_family, v.input_shape, PruneOptions(0.3), name=tiny_family)
    pruned = dict(res.model.named_modules())
    assert pruned["stem.0"].out_channels == 16 and pruned["body.0"].out_channels < 32  # its own protected list
    assert res.flops_cut > 0.15
    out = export_onnx(res.model.eval(), v.input_shape, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal(v.input_shape).astype(np.float32)
    sess = ort_session(out.path)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = res.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_registered_family_with_a_slim_rule_is_slimmable(tiny_family):
    from edge.models.slim import SlimConfig, SlimNet, materialize, slimmable

    assert slimmable()[tiny_family] == "prefix"
    net = SlimNet(tiny_family, num_classes=10, width_range=(0.5, 1.0))
    config = SlimConfig(0.5, 32, 4)
    net.calibrate(config, [torch.randn(2, 3, 4, 32, 32)])
    narrow = materialize(net, 0.5, 32, 4)
    assert dict(narrow.named_modules())["body.0"].out_channels == 16
    x = torch.randn(1, 3, 4, 32, 32)
    net.eval()
    with torch.no_grad():  # the slice is the narrow static model: same logits
        torch.testing.assert_close(net(x, 0.5), narrow.eval()(x), rtol=1e-4, atol=1e-5)
