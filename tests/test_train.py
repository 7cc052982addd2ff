"""edgevid train / eval on a tiny synthetic set: learning, determinism, resume,
atomic checkpoints, DDP with two CPU processes, and bad input."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from calib_data.synth import write_dataset
from edge.checkpoint import load_checkpoint
from edge.cli import main
from edge.models.slim import load_slim
from edge.train import TrainConfig, lr_at, sub_configs, train

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(widths=(0.25, 0.5), resolutions=(32,), frames=(2,))


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, 8, seed=5, frames=8, size=48)
    return out


def mutual_cfg(data, out, **kw):
    base = dict(model="convnet2d_s", data=str(data), out=str(out), mutual=True, epochs=2, batch_size=4, lr=3e-3,
                calib_clips=4, save_every=1000, **TINY)
    base.update(kw)
    return TrainConfig(**base)


def weights(path):
    ckpt = load_checkpoint(path)
    return ckpt.state_dict, ckpt.meta


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_plain_training_fits_a_tiny_set(data, tmp_path):
    cfg = TrainConfig(model="x3d_xs", data=str(data), out=str(tmp_path / "p.pt"), epochs=12, batch_size=8,
                      lr=3e-3, warmup_epochs=0.0, widths=(0.5,), resolutions=(32,), frames=(2,), val=str(data))
    r = train(cfg, progress=False)
    losses = [h["loss"] for h in r.history]
    assert len(losses) == 12
    assert min(losses[-3:]) < 0.6 * losses[0]
    assert r.history[-1]["train_acc"] >= 0.5  # 8 clips, 10 classes: fitting, not chance
    assert r.accuracy[0]["config"] == "w0.5-r32-f2" and r.accuracy[0]["clips"] == 8
    _, meta = weights(r.out)
    assert meta["done"] and meta["train"]["epochs"] == 12 and meta["classes"][0] == "move_left"
    assert list((tmp_path / "p.pt.cache").glob("clips-f2-r32.npy"))


@pytest.mark.slow
def test_same_seed_same_weights(data, tmp_path):
    a = train(mutual_cfg(data, tmp_path / "a.pt", epochs=1), progress=False)
    b = train(mutual_cfg(data, tmp_path / "b.pt", epochs=1), progress=False)
    c = train(mutual_cfg(data, tmp_path / "c.pt", epochs=1, seed=1), progress=False)
    wa, ma = weights(a.out)
    wb, mb = weights(b.out)
    wc, _ = weights(c.out)
    assert_same(wa, wb)
    for cfg_tag in ma["slim"]["bn_stats"]:
        assert_same(ma["slim"]["bn_stats"][cfg_tag], mb["slim"]["bn_stats"][cfg_tag])
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(data, tmp_path):
    whole = train(mutual_cfg(data, tmp_path / "whole.pt"), progress=False)
    cfg = mutual_cfg(data, tmp_path / "sliced.pt")
    first = train(cfg, progress=False, stop_after=1)  # stops inside the first epoch
    assert first.steps == 1
    _, meta = weights(cfg.out)
    assert meta["step"] == 1 and not meta["done"] and "optimizer" in meta
    assert train(cfg, resume=True, progress=False, stop_after=2).steps == 3
    assert train(cfg, resume=True, progress=False).steps == 4
    wa, ma = weights(whole.out)
    wb, mb = weights(cfg.out)
    assert_same(wa, wb)
    assert ma["slim"]["table"] == mb["slim"]["table"] == ["w0.25-r32-f2", "w0.5-r32-f2"]
    for tag in ma["slim"]["table"]:
        assert_same(ma["slim"]["bn_stats"][tag], mb["slim"]["bn_stats"][tag])


@pytest.mark.slow
def test_checkpoint_write_is_atomic(data, tmp_path, monkeypatch):
    cfg = mutual_cfg(data, tmp_path / "m.pt", epochs=1)
    train(cfg, progress=False, stop_after=1)
    before = (tmp_path / "m.pt").read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train(cfg, resume=True, progress=False)
    monkeypatch.undo()
    assert (tmp_path / "m.pt").read_bytes() == before  # the old checkpoint is intact
    assert not list(tmp_path.glob("*.tmp"))  # and no partial file is left
    assert weights(tmp_path / "m.pt")[1]["step"] == 1


def test_mutual_step_configurations():
    cfg = TrainConfig(model="x3d_xs", data="d", out="o", mutual=True, widths=(0.25, 0.5, 1.0),
                      resolutions=(96, 128), frames=(4, 8))
    subs = sub_configs(cfg, 7)
    assert subs == sub_configs(cfg, 7) and len(subs) == 3
    assert subs[0][0] == 0.25
    assert all(0.25 <= w <= 1.0 and r in (96, 128) and f in (4, 8) for w, r, f in subs)
    assert {w for s in range(50) for w, _, _ in sub_configs(cfg, s)[1:]} >= {0.3, 0.65, 0.95}
    lrs = [lr_at(cfg, s, 10) for s in range(100)]
    assert lrs[9] == pytest.approx(cfg.lr) and lrs[0] < lrs[5] < lrs[9] > lrs[50] > lrs[99] >= 0


@pytest.mark.slow
def test_cli_train_eval_and_bad_input(data, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    args = ["train", "--model", "convnet2d_s", "--data", str(data), "--out", str(out), "--mutual", "--epochs", "1",
            "--batch-size", "4", "--widths", "0.25,0.5", "--resolutions", "32", "--frames", "2",
            "--calib-clips", "4", "--ship", str(tmp_path / "ship.pt"), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert "optimizer" in load_checkpoint(out).meta and "optimizer" not in load_checkpoint(tmp_path / "ship.pt").meta
    shipped, _ = load_slim(tmp_path / "ship.pt")
    assert shipped.net.stem[0].weight.dtype == torch.float32
    assert load_checkpoint(tmp_path / "ship.pt").state_dict["stem.0.weight"].dtype == torch.float16

    assert main(["eval", "--model", "convnet2d_s", "--ckpt", str(out), "--data", str(data), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["config"] for r in rows] == ["w0.25-r32-f2", "w0.5-r32-f2"]
    assert all(r["clips"] == 8 and 0 <= r["top1"] <= 1 and r["top1_1frame"] is not None and r["gflops"] > 0
               for r in rows)
    # a configuration outside the table, calibrated on the fly
    assert main(["eval", "--model", "convnet2d_s", "--ckpt", str(out), "--data", str(data), "--configs",
                 "w0.4-r48-f4", "--calib", str(data), "--no-single-frame"]) == 0
    text = capsys.readouterr().out
    assert "w0.4-r48-f4" in text and "top-1" in text

    def fails(argv, message):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err

    ev = ["eval", "--model", "convnet2d_s", "--ckpt", str(out), "--data", str(data)]
    fails(ev + ["--configs", "w0.1-r32-f2"], "outside the trained range [0.25, 0.5]")
    fails(ev + ["--configs", "w0.4-r32-f2"], "not in the BN post-statistics table")
    fails(ev + ["--configs", "w0.4-r32"], "malformed configuration")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(out.read_bytes()[:1000])
    fails(["eval", "--model", "convnet2d_s", "--ckpt", str(bad), "--data", str(data)], "truncated or not a torch")
    fails(["eval", "--model", "ghost_tsm", "--ckpt", str(out), "--data", str(data)],
          "holds convnet2d_s, not ghost_tsm")
    fails(args[:-3], "exists; pass --resume")
    fails([a if a != "0.25,0.5" else "0.3,0.5" for a in args[:-3]] + ["--resume"],
          "--resume with a different configuration (widths differ)")
    fails(["train", "--model", "x3d_xs", "--data", str(data), "--out", str(tmp_path / "x.pt"), "--widths",
           "0.5,1.0"], "need --mutual")
    fails(["train", "--model", "gghost_tsm", "--data", str(data), "--out", str(tmp_path / "x.pt"), "--mutual"],
          "not slimmable")
    fails(["train", "--model", "x3d_xs", "--data", str(data), "--out", str(tmp_path / "x.pt"), "--batch-size",
           "64", "--resolutions", "32", "--frames", "2"], "fewer than one batch of 64")
    fails(["train", "--model", "x3d_xs", "--data", str(data), "--out", str(tmp_path / "x.pt"), "--widths", "a"],
          "--widths: expected comma-separated float values")


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_weights(data, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        import torch.distributed as dist
        from edge.train import TrainConfig, train
        torch.set_num_threads(1)
        cfg = TrainConfig(model="convnet2d_s", data={str(data)!r}, out={str(tmp_path / 'ddp.pt')!r}, mutual=True,
                          epochs=1, batch_size=4, lr=3e-3, calib_clips=4, widths=(0.25, 0.5), resolutions=(32,),
                          frames=(2,))
        model_holder = {{}}
        import edge.train.loop as t
        build = t.build_model
        t.build_model = lambda *a: model_holder.setdefault("m", build(*a))
        r = train(cfg, progress=False)
        assert dist.get_world_size() == 2 and r.steps == 2
        torch.save(model_holder["m"].net.state_dict(), {str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.pt")
        dist.destroy_process_group()
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", str(script)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    assert_same(w0, w1)
    assert load_slim(tmp_path / "ddp.pt")[0].table() and weights(tmp_path / "ddp.pt")[1]["done"]
    torch.manual_seed(0)
    from edge.models.slim import SlimNet

    fresh = SlimNet("convnet2d_s", 10, (0.25, 0.5), 32, 2).net.state_dict()
    assert any(not torch.equal(w0[k], fresh[k]) for k in w0 if k.endswith("weight"))  # it did train
