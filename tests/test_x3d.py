"""X3D: published complexity, parity with PyTorchVideo, ``edgevid convert-ckpt``.

The generic per-model tests (forward shapes, ONNX export) live elsewhere.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import pvref
from edge.checkpoint import load_into, load_model
from edge.cli import main
from edge.convert import from_pytorchvideo, pytorchvideo_key
from edge.models import x3d
from edge.models.common import scale_channels

X3D_MODELS = ("x3d_xs", "x3d_s", "x3d_m", "x3d_l")

# Feichtenhofer 2020, Table / SlowFast MODEL_ZOO.md: params (400 classes), GFLOPs
# (multiply-adds, one clip at the model's frames x crop).
PUBLISHED = {
    "x3d_xs": (3.8e6, 0.60),
    "x3d_s": (3.8e6, 1.96),
    "x3d_m": (3.8e6, 4.73),
    "x3d_l": (6.2e6, 18.37),
}

needs_pytorchvideo = pytest.mark.skipif(not pvref.available(), reason="pytorchvideo (extra 'reference') not installed")


# (PyTorchVideo model, clips, its logits)
Reference = tuple[torch.nn.Module, torch.Tensor, torch.Tensor]


def _pytorchvideo_format_state(num_classes: int = 10) -> dict[str, torch.Tensor]:
    """An X3D-XS state dict under PyTorchVideo's key names, without PyTorchVideo
    (``pytorchvideo_key`` only swaps two names, so it maps both ways)."""
    ours = x3d.x3d_xs(num_classes=num_classes, frames=1, resolution=32).state_dict()
    return {pytorchvideo_key(k): v for k, v in ours.items()}


def _slow_for(*names: str) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in names else n for n in X3D_MODELS]


# ----------------------------------------------------------------------------- published figures

@pytest.mark.parametrize("name", _slow_for("x3d_m", "x3d_l"))
def test_models_command_matches_published_table(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json", name]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    params, gflops = PUBLISHED[name]
    assert row["name"] == name and row["num_classes"] == 400
    assert row["params"] == pytest.approx(params, rel=0.02)
    assert row["gflops"] == pytest.approx(gflops, rel=0.02)


def test_stage_depths_and_widths() -> None:
    """Depth factor 2.2 gives 3/5/11/7 blocks, 5.0 gives 5/10/25/15; SE on every other block."""
    for build, depths in ((x3d.x3d_s, [3, 5, 11, 7]), (x3d.x3d_l, [5, 10, 25, 15])):
        model = build(frames=1, resolution=32)
        stages = model.blocks[1:5]
        assert [len(s.res_blocks) for s in stages] == depths
        assert [s.res_blocks[0].branch2.conv_b.out_channels for s in stages] == [54, 108, 216, 432]
        se = [isinstance(b.branch2.norm_b[1], x3d.SqueezeExcitation) for b in stages[2].res_blocks]
        assert se == [i % 2 == 0 for i in range(depths[2])]


def test_width_scales_every_channel() -> None:
    """Same keys at every width; every output-channel count scaled by scale_channels."""
    full = x3d.x3d_s(frames=1, resolution=32).state_dict()
    half_model = x3d.x3d_s(frames=1, resolution=32, width=0.5)
    half = half_model.state_dict()
    assert list(full) == list(half)
    for key, tensor in full.items():
        if tensor.dim() and key != "blocks.5.proj.weight" and key != "blocks.5.proj.bias":
            assert half[key].shape[0] == scale_channels(tensor.shape[0], 0.5, x3d.CHANNEL_DIVISOR), key
    assert half["blocks.0.conv.conv_xy.weight"].shape == (16, 3, 1, 3, 3)  # 24 * 0.5 -> 16 (multiple of 8)
    assert half_model.blocks[5].proj.in_features == 1024 and half_model.blocks[5].proj.out_features == 400
    assert half_model.eval()(torch.zeros(1, 3, 1, 32, 32)).shape == (1, 400)


# ----------------------------------------------------------------------------- PyTorchVideo parity

@pytest.fixture(scope="module")
def pv_xs() -> Reference:
    """PyTorchVideo X3D-XS at its default 4 x 160 with 10 classes, two clips and its logits."""
    if not pvref.available():
        pytest.skip("pytorchvideo (extra 'reference') not installed")
    ref = pvref.pytorchvideo_x3d("x3d_xs", num_classes=10, seed=3)
    clip = pvref.clip(2, 4, 160, seed=4)
    with torch.no_grad():
        logits = ref(clip)
    # The comparisons below mean something only if logits depend on the clip.
    assert (logits[0] - logits[1]).abs().max() > 0.05
    return ref, clip, logits


def _max_diff(model: torch.nn.Module, clip: torch.Tensor, expected: torch.Tensor) -> float:
    with torch.no_grad():
        got = model.eval()(clip)
    assert got.shape == expected.shape
    return float((got - expected).abs().max())


@needs_pytorchvideo
@pytest.mark.reference
@pytest.mark.parametrize("name, frames, crop", [
    ("x3d_s", 3, 72),  # 72 is not a multiple of 32: head pool kernel ceil(72/32) = 3
    ("x3d_m", 2, 96),
    pytest.param("x3d_l", 2, 64, marks=pytest.mark.slow),
    pytest.param("x3d_l", 16, 312, marks=pytest.mark.slow),  # default shape
])
def test_logits_match_pytorchvideo(name: str, frames: int, crop: int) -> None:
    """float32, eval mode: the same ops in the same order, so the difference is ~0."""
    ref = pvref.pytorchvideo_x3d(name, num_classes=400, frames=frames, crop=crop, seed=1)
    clip = pvref.clip(2, frames, crop, seed=2)
    with torch.no_grad():
        expected = ref(clip)
    assert expected.shape == (2, 400) and (expected[0] - expected[1]).abs().max() > 0.05
    model = getattr(x3d, name)(num_classes=400, frames=frames, resolution=crop)
    load_into(model, {pytorchvideo_key(k): v for k, v in ref.state_dict().items()}, "reference")
    assert _max_diff(model, clip, expected) < 1e-5


@pytest.mark.reference
def test_logits_match_pytorchvideo_xs_default_shape(pv_xs: Reference
                                                    ) -> None:
    ref, clip, expected = pv_xs
    model, num_classes = from_pytorchvideo(ref.state_dict(), "x3d_xs")
    assert num_classes == 10 and (model.frames, model.resolution) == (4, 160)
    assert _max_diff(model, clip, expected) < 1e-5


@pytest.mark.reference
def test_key_mapping_is_a_bijection_with_swapped_stem_names(
        pv_xs: Reference) -> None:
    theirs = pv_xs[0].state_dict()
    ours = x3d.x3d_xs(num_classes=10).state_dict()
    assert {pytorchvideo_key(k): v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}
    assert theirs["blocks.0.conv.conv_t.weight"].shape == (24, 3, 1, 3, 3)  # PyTorchVideo's spatial conv
    assert ours["blocks.0.conv.conv_xy.weight"].shape == (24, 3, 1, 3, 3)
    assert ours["blocks.0.conv.conv_t.weight"].shape == (24, 1, 5, 1, 1)


# ----------------------------------------------------------------------------- convert-ckpt

def _convert(src: Path, dst: Path, model: str = "x3d_xs") -> int:
    return main(["convert-ckpt", "--from", "pytorchvideo", str(src), str(dst), "--model", model])


@pytest.mark.reference
def test_convert_ckpt_reproduces_pytorchvideo(pv_xs: Reference,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, clip, expected = pv_xs
    src, dst = tmp_path / "X3D_XS.pyth", tmp_path / "out" / "x3d_xs.pt"
    torch.save({"model_state": ref.state_dict(), "cfg": "unused"}, src)
    assert _convert(src, dst) == 0
    out = capsys.readouterr()
    assert f"wrote {dst}" in out.out and "10 classes" in out.out and out.err == ""

    model, ckpt = load_model(dst)
    assert ckpt.num_classes == 10 and ckpt.variant.model == "x3d_xs"
    assert ckpt.meta["source_format"] == "pytorchvideo"
    assert ckpt.meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert _max_diff(model, clip, expected) < 1e-5


@pytest.mark.reference
def test_convert_ckpt_bare_state_dict(pv_xs: Reference, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    state = pv_xs[0].state_dict()
    src, dst = tmp_path / "bare.pyth", tmp_path / "bare.pt"
    torch.save(state, src)
    assert main(["convert-ckpt", "--from", "pytorchvideo", str(src), str(dst), "--model", "x3d_s", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"dst": str(dst), "model": "x3d_s", "num_classes": 10, "tensors": len(state)}
    model, ckpt = load_model(dst)
    assert ckpt.variant.frames == 13  # X3D-XS weights serve X3D-S (same network) at its own input
    loaded = model.state_dict()
    assert all(torch.equal(loaded[pytorchvideo_key(k)], v) for k, v in state.items())


def _bad(args_src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str = "x3d_xs") -> str:
    assert _convert(args_src, tmp_path / "out.pt", model) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("edgevid: error: "), err
    assert not (tmp_path / "out.pt").exists()
    return err


def test_convert_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _bad(tmp_path / "nope.pyth", tmp_path, capsys)
    assert "nope.pyth" in err and "not found" in err


def test_convert_truncated_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "cut.pyth"
    torch.save({"model_state": _pytorchvideo_format_state()}, src)
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    err = _bad(src, tmp_path, capsys)
    assert "cut.pyth" in err and "truncated" in err


@pytest.mark.parametrize("payload", [[1, 2, 3], {"epoch": 3, "lr": 0.1}], ids=["list", "dict-of-numbers"])
def test_convert_not_a_state_dict(payload: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "other.pyth"
    torch.save(payload, src)
    err = _bad(src, tmp_path, capsys)
    assert "other.pyth" in err and "not a state dict" in err


def test_convert_state_dict_of_another_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "resnet.pyth"
    torch.save({"model_state": {"fc.weight": torch.zeros(10, 4)}}, src)
    err = _bad(src, tmp_path, capsys)
    assert "resnet.pyth" in err and "blocks.5.proj.weight" in err and "not a PyTorchVideo checkpoint of x3d_xs" in err


def test_convert_into_a_deeper_model_names_first_missing_key(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """X3D-XS/S/M weights (depth factor 2.2) into X3D-L (5.0): res2 has 3 blocks, L needs 5."""
    src = tmp_path / "x3d_xs.pyth"
    torch.save({"model_state": _pytorchvideo_format_state()}, src)
    err = _bad(src, tmp_path, capsys, model="x3d_l")
    assert "x3d_xs.pyth" in err
    assert "'blocks.1.res_blocks.3.branch2.conv_a.weight' missing" in err


def test_convert_mismatched_shape_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _pytorchvideo_format_state()
    state["blocks.3.res_blocks.2.branch2.conv_a.weight"] = torch.zeros(200, 96, 1, 1, 1)
    src = tmp_path / "wide.pyth"
    torch.save({"model_state": state}, src)
    err = _bad(src, tmp_path, capsys)
    assert "'blocks.3.res_blocks.2.branch2.conv_a.weight'" in err and "(200, 96, 1, 1, 1)" in err
    assert "(216, 96, 1, 1, 1)" in err


def test_convert_to_a_model_pytorchvideo_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "x.pyth"
    torch.save({"model_state": {"blocks.5.proj.weight": torch.zeros(10, 2048)}}, src)
    err = _bad(src, tmp_path, capsys, model="ghost_tsm")
    assert "'ghost_tsm'" in err and "x3d_xs, x3d_s, x3d_m, x3d_l" in err


class Payload:
    """A custom class: unpickling it needs this module's code."""

    def __init__(self) -> None:
        self.weights = {"blocks.5.proj.weight": torch.zeros(10, 2048)}


def test_convert_refuses_pickle_that_runs_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "evil.pyth"
    torch.save(Payload(), src)
    err = _bad(src, tmp_path, capsys)
    assert "evil.pyth" in err and "refused" in err and "weights_only" in err
