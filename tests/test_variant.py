import pytest

from edge.core.errors import BadInput
from edge.models import MODELS
from edge.core.variant import PRECISIONS, Variant
from edge.models.registry import variant as zoo_variant
from edge.models.registry import variant_from_tag


@pytest.mark.parametrize("name", list(MODELS))
def test_defaults_come_from_the_registry(name):
    v = zoo_variant(name)
    info = MODELS[name]
    assert (v.frames, v.resolution, v.width, v.precision, v.prune) == (info.frames, info.resolution, 1.0, "fp32", 0.0)
    assert v.input_shape == (1, 3, info.frames, info.resolution, info.resolution)


def test_tag_reads_as_documented():
    assert Variant("x3d_s", 0.75, 160, 13, "int8", 0.3).tag == "x3d_s-w0.75-r160-f13-int8-p0.3"


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("width", [1.0, 0.75, 0.5, 0.25, 1 / 3, 0.1 + 0.2, 1e-3])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("prune", [0.0, 0.3, 0.5, 2 / 3])
def test_from_tag_is_the_exact_inverse(name, width, precision, prune):
    v = Variant(name, width, 96, 7, precision, prune)
    assert Variant.from_tag(v.tag) == v
    assert Variant.from_tag(v.tag).tag == v.tag


def test_dict_round_trip():
    v = Variant("x3d_xs", 0.5, 128, 8, "fp16", 0.3)
    assert Variant.from_dict(v.to_dict()) == v


@pytest.mark.parametrize("kwargs, words", [
    (dict(model="x3d_q"), "unknown model 'x3d_q'; valid models: x3d_xs"),
    (dict(model="x3d_s", width=0.0), "width must be in (0, 1]"),
    (dict(model="x3d_s", width=1.5), "width must be in (0, 1]"),
    (dict(model="x3d_s", width=float("nan")), "width must be in (0, 1]"),
    (dict(model="x3d_s", resolution=-160), "resolution must be a positive integer"),
    (dict(model="x3d_s", frames=-1), "frames must be a positive integer"),
    (dict(model="x3d_s", frames=4.5), "frames must be a positive integer"),
    (dict(model="x3d_s", precision="int4"), "precision must be one of fp32, fp16, int8"),
    (dict(model="x3d_s", prune=1.0), "prune ratio must be in [0, 1)"),
    (dict(model="x3d_s", prune=-0.1), "prune ratio must be in [0, 1)"),
])
def test_validation_errors_are_clear(kwargs, words):
    with pytest.raises(BadInput) as e:
        zoo_variant(**kwargs)
    assert words in str(e.value)


def test_a_variant_without_its_input_names_the_zoo_helper():
    with pytest.raises(BadInput, match=r"needs its resolution and frames \(edge.models.variant"):
        Variant("x3d_s")


@pytest.mark.parametrize("tag", ["", "x3d_s", "x3d_s-w0.5-r160-f13-int8", "x3d_s-w0.5-r160-f13-int8-p0.3-extra",
                                 "x3d_s-wabc-r160-f13-int8-p0.3", "x3d_s-w0.5-rX-f13-int8-p0.3"])
def test_malformed_tags(tag):
    with pytest.raises(BadInput, match="malformed"):
        Variant.from_tag(tag)


def test_tag_with_unknown_model_names_it():
    with pytest.raises(BadInput, match="unknown model 'nope'"):
        variant_from_tag("nope-w1.0-r160-f13-fp32-p0.0")


def test_variant_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, edge.core.variant, edge.models, targets.base, targets.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
