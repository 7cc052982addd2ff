"""edgevid checkpoints: atomic save, exact reload, and one clear line for every bad file."""
import collections

import pytest
import torch

from edge.checkpoint import load_checkpoint, load_model, load_pickle, save_checkpoint
from edge.cli import main
from edge.core.errors import BadInput
from edge.models import create_model
from edge.core.variant import Variant

V = Variant("x3d_xs", frames=4, resolution=64)


class NotAllowed:  # a custom class: unpickling it would need code execution
    pass


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = create_model(V, num_classes=5)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, V, 5, meta={"note": "test"})
    return model, path


def test_round_trip(ckpt):
    model, path = ckpt
    loaded, meta = load_model(path)
    assert meta.variant == V and meta.num_classes == 5 and meta.meta["note"] == "test"
    x = torch.randn(V.input_shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary left behind


def test_missing(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated(ckpt):
    _, path = ckpt
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="truncated or not a torch checkpoint"):
        load_checkpoint(path)


def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(BadInput, match="not an edgevid checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def test_code_execution_refused(tmp_path):
    torch.save({"x": NotAllowed()}, tmp_path / "evil.pt")
    with pytest.raises(BadInput, match="execute code.*weights_only=True"):
        load_pickle(tmp_path / "evil.pt")


def test_mismatched_shapes_name_the_key(ckpt, tmp_path):
    model, _ = ckpt
    narrow = create_model(V.with_(width=0.5), num_classes=5)
    path = save_checkpoint(tmp_path / "narrow.pt", narrow, V, 5)  # claims full width
    with pytest.raises(BadInput, match=r"shape mismatch at '[^']+'"):
        load_model(path)


def test_missing_key_named(ckpt, tmp_path):
    _, path = ckpt
    obj = torch.load(path, weights_only=True)
    first = next(iter(obj["state_dict"]))
    obj["state_dict"] = collections.OrderedDict((k, v) for k, v in obj["state_dict"].items() if k != first)
    torch.save(obj, tmp_path / "short.pt")
    with pytest.raises(BadInput, match=f"key '{first}' missing"):
        load_model(tmp_path / "short.pt")


def test_cli_reports_bad_checkpoint_in_one_line(tmp_path, capsys):
    (tmp_path / "junk.pyth").write_bytes(b"not a checkpoint at all")
    code = main(["convert-ckpt", "--from", "pytorchvideo", str(tmp_path / "junk.pyth"), str(tmp_path / "o.pt"),
                 "--model", "x3d_xs"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "junk.pyth" in err and "Traceback" not in err
    assert not (tmp_path / "o.pt").exists()
