"""`edgevid sweep`: the TOML grid and its validation, measurement order, reuse of
verified artifacts, skips with reasons, resuming, and a real sweep killed with
SIGKILL (twice) and rerun."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from bench_helpers import TINY_VARIANT, tiny_artifact, unavailable_target
from benchmarks.device import fingerprint
from benchmarks.store import Store
from edge.sweep import Cell, load_config, measure_order, reusable, run_sweep
from edge.cli import main
from edge.core.errors import BadInput, GateFailed
from edge.core.variant import Variant

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ----------------------------------------------------------------------------- the grid

def test_grid_is_the_product_of_the_axes(tmp_path):
    cfg = load_config(write(tmp_path, """
model = ["x3d_xs", "x3d_s"]
width = [0.5, 1.0, 0.5]
frames = 2
precision = ["fp32", "fp16"]
target = ["onnxruntime", "openvino"]
threads = [1, 2]
runs = 7
out = "arts"
"""))
    variants = cfg.variants()
    # resolution absent: each model's default; a duplicated width counts once
    assert len(variants) == 2 * 2 * 1 * 2
    assert {v.resolution for v in variants if v.model == "x3d_s"} == {160}
    assert {v.frames for v in variants} == {2}
    cells = cfg.cells()
    assert len(cells) == len(variants) * 2 * 2
    assert len({c.key for c in cells}) == len(cells)
    assert cfg.out == tmp_path / "arts" and cfg.runs == 7 and cfg.bench_config(1).runs == 7
    assert cfg.bench_config(1).isolate  # honest peak memory by default


def test_threads_default_to_the_harness_default(tmp_path):
    from benchmarks.harness import BenchConfig

    cfg = load_config(write(tmp_path, 'model = "x3d_xs"\n'))
    assert {c.threads for c in cfg.cells()} == {BenchConfig().resolved_threads()}
    assert [c.target for c in cfg.cells()] == ["onnxruntime"]


@pytest.mark.parametrize("text, axis, value", [
    ('model = ["x3d_xs"]\nflavour = ["x"]\n', "flavour", None),
    ('model = ["resnet50"]\n', "model", "resnet50"),
    ('model = "x3d_xs"\ntarget = ["onnxruntime", "tpu"]\n', "target", "tpu"),
    ('model = "x3d_xs"\nprecision = ["int4"]\n', "precision", "int4"),
    ('model = "x3d_xs"\nwidth = [1.5]\n', "width", "1.5"),
    ('model = "x3d_xs"\nwidth = [true]\n', "width", "True"),
    ('model = "x3d_xs"\nresolution = [0]\n', "resolution", "0"),
    ('model = "x3d_xs"\nframes = [2.5]\n', "frames", "2.5"),
    ('model = "x3d_xs"\nprune = [1.0]\n', "prune", "1.0"),
    ('model = "x3d_xs"\nthreads = [-1]\n', "threads", "-1"),
    ('model = "x3d_xs"\nruns = "many"\n', "runs", "many"),
    ('model = "x3d_xs"\nruns = 0\n', "runs", None),
    ('model = "x3d_xs"\nwidth = []\n', "width", None),
    ('width = [1.0]\n', "model", None),
    ('model = "x3d_xs"\njobs = 0\n', "jobs", "0"),
    ('model = "x3d_xs"\nmin_agreement = 1.5\n', "min_agreement", "1.5"),
    ('model = "x3d_xs"\nmax_drop = 2\n', "max_drop", "2.0"),
    ('model = "x3d_xs"\naccuracy_data = "no-such-folder"\n', "accuracy_data", "no-such-folder"),
    ('model = "x3d_xs"\ncalib_mode = "random"\n', "calib_mode", "random"),
    ('model = "x3d_xs"\ncalib_clips = 0\n', "calib_clips", "0"),
])
def test_unknown_axis_or_value_names_file_axis_and_value(tmp_path, text, axis, value):
    path = write(tmp_path, text)
    with pytest.raises(BadInput) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and axis in msg
    if value is not None:
        assert value in msg


def test_bad_toml_and_missing_file(tmp_path, capsys):
    with pytest.raises(BadInput, match="not valid TOML"):
        load_config(write(tmp_path, "model = [x3d_xs\n"))
    with pytest.raises(BadInput, match="no such sweep file"):
        load_config(tmp_path / "nope.toml")
    # through the CLI: exit 2, one line naming the file, the axis and the value, no store written
    bad = write(tmp_path, 'model = "x3d_xs"\ntarget = ["tpu"]\n', "bad.toml")
    assert main(["sweep", "--config", str(bad), "--db", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgevid: error:") and "bad.toml" in err and "'target'" in err and "'tpu'" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r.sqlite").exists()


def test_rotated_order_interleaves_targets_and_rotates_the_first():
    vs = [Variant("x3d_xs", w, 32, 2) for w in (0.25, 0.5, 0.75)]
    cells = [Cell(v, t, 1) for t in ("onnxruntime", "openvino") for v in vs]
    assert measure_order(cells, False) == cells
    order = measure_order(cells, True)
    assert sorted(order, key=cells.index) == cells  # the same cells, each once
    assert [(c.variant.width, c.target) for c in order] == [
        (0.25, "onnxruntime"), (0.25, "openvino"), (0.5, "openvino"), (0.5, "onnxruntime"),
        (0.75, "onnxruntime"), (0.75, "openvino")]


# ----------------------------------------------------------------------------- running (no compiling)

def test_sweep_reuses_verified_artifacts_skips_with_reasons_and_resumes(tmp_path, capsys):
    """The tiny ONNX artifact stands in for a compiled one at the sweep's artifact path, so
    nothing is compiled (and torch is not imported); an unavailable runtime is skipped with
    its reason; a rerun measures nothing again."""
    v = Variant.from_tag(TINY_VARIANT)
    targets = ["onnxruntime"] + ([unavailable_target()] if unavailable_target() else [])
    cfg_path = write(tmp_path, f"""
model = "x3d_xs"
width = [1.0]
resolution = [8]
frames = [2]
precision = ["fp32"]
target = {json.dumps(targets)}
threads = [1, 2]
runs = 3
warmup = 1
isolate = false
out = "arts"
""")
    tiny_artifact(tmp_path / "arts" / "onnxruntime" / v.tag)
    db = tmp_path / "r.sqlite"
    assert main(["sweep", "--config", str(cfg_path), "--db", str(db), "--device", "box", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    status = {(c["target"], c["variant"], c["threads"]): c for c in out["cells"]}
    for t in (1, 2):
        assert status[("onnxruntime", v.tag, t)]["status"] == "measured"
        assert status[("onnxruntime", v.tag, t)]["p50_ms"] > 0
    if len(targets) > 1:
        for t in (1, 2):
            cell = status[(targets[1], v.tag, t)]
            assert cell["status"] == "skipped" and cell["reason"].startswith("target unavailable here")
    assert out["compiled"] == 0 and out["reused"] == 1
    assert out["counts"]["failed"] == 0
    # the status file beside the artifacts says the same
    doc = json.loads((tmp_path / "arts" / "sweep.json").read_text())
    assert {c["status"] for c in doc["cells"]} == ({"measured", "skipped"} if len(targets) > 1 else {"measured"})
    with Store(db, create=False) as s:
        rows = s.measurements(device="box")
        assert sorted(r.threads for r in rows) == [1, 2]
        assert all(r.source == f"sweep:{cfg_path}" for r in rows)
    # rerun: nothing measured again, nothing lost; text output lists the skip reasons
    assert main(["sweep", "--config", str(cfg_path), "--db", str(db), "--device", "box", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "0 measured now, 2 already stored" in text
    if len(targets) > 1:
        assert "target unavailable here" in text
    with Store(db, create=False) as s:
        assert sorted(r.uid for r in s.measurements()) == sorted(r.uid for r in rows)


def test_refused_and_broken_compiles_are_recorded_and_the_sweep_goes_on(tmp_path, capsys, monkeypatch):
    """A configuration the compiler refuses (BadInput, e.g. a precision a target does not
    support yet, or GateFailed) is skipped with the compiler's reason, printed and recorded;
    an unexpected error is recorded as failed (exit 1); the other configurations are measured."""
    v = Variant.from_tag(TINY_VARIANT)
    calls = []

    def compile_variant(variant, target, out_dir, ckpt=None, options=None, calib=None, gate=None,
                        onnx_cache=None, accuracy_data=None):
        calls.append(variant.tag)
        if variant.precision == "int8":
            raise BadInput(f"{target}: precision int8 is not supported yet (supported: fp32, fp16)")
        if variant.precision == "fp16":
            raise GateFailed(f"{variant.tag}: {target} cannot run 2 op(s)")
        raise RuntimeError("exporter crashed")

    monkeypatch.setitem(sys.modules, "edge.compile", types.SimpleNamespace(compile_variant=compile_variant))
    cfg_path = write(tmp_path, 'model = "x3d_xs"\nwidth = [1.0, 0.5]\nresolution = 8\nframes = 2\n'
                               'precision = ["int8", "fp16", "fp32"]\nthreads = 1\nruns = 2\nisolate = false\n')
    tiny_artifact(tmp_path / "sweep-artifacts" / "onnxruntime" / v.tag)  # w1.0 fp32: reused, measured
    assert main(["sweep", "--config", str(cfg_path), "--db", str(tmp_path / "r.sqlite"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    line = {ln.split()[2]: ln for ln in out.splitlines() if ln.startswith(("skipped", "failed", "measured"))}
    assert line[v.with_(precision="int8").tag].startswith("skipped") and "int8 is not supported yet" in \
        line[v.with_(precision="int8").tag]
    assert line[v.with_(precision="fp16").tag].startswith("skipped") and "cannot run 2 op(s)" in \
        line[v.with_(precision="fp16").tag]
    assert line[v.with_(width=0.5).tag].startswith("failed") and "RuntimeError: exporter crashed" in \
        line[v.with_(width=0.5).tag]
    assert line[v.tag].startswith("measured")
    assert "1 measured now" in out and "4 skipped, 1 failed" in out
    assert v.tag not in calls  # the verified artifact was reused
    doc = json.loads((tmp_path / "sweep-artifacts" / "sweep.json").read_text())
    reasons = {c["variant"]: (c["status"], c["reason"]) for c in doc["cells"]}
    assert reasons[v.with_(precision="int8").tag][0] == "skipped" and "int8" in reasons[v.with_(precision="int8").tag][1]


def test_reusable_refuses_tampered_or_foreign_artifacts(tmp_path):
    v = Variant.from_tag(TINY_VARIANT)
    art = tiny_artifact(tmp_path / "a")
    assert reusable(art.path, v, "onnxruntime") is not None
    assert reusable(art.path, v, "openvino") is None  # another target's folder content
    assert reusable(art.path, v.with_(width=0.5), "onnxruntime") is None
    assert reusable(tmp_path / "missing", v, "onnxruntime") is None
    with open(art.path / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert reusable(art.path, v, "onnxruntime") is None


def test_run_sweep_library_call_counts(tmp_path):
    v = Variant.from_tag(TINY_VARIANT)
    cfg = load_config(write(tmp_path, 'model = "x3d_xs"\nresolution = 8\nframes = 2\nthreads = 1\nruns = 2\n'
                                      'isolate = false\nrotate = false\n'))
    tiny_artifact(cfg.out / "onnxruntime" / v.tag)
    with Store(tmp_path / "r.sqlite") as s:
        r1 = run_sweep(cfg, s, fingerprint("box"), progress=False)
        r2 = run_sweep(cfg, s, fingerprint("box"), progress=False)
        r3 = run_sweep(cfg, s, fingerprint("other-box"), progress=False)  # another device: measured again
    assert (r1.count("measured"), r2.count("measured"), r2.count("stored"), r3.count("measured")) == (1, 0, 1, 1)


def test_rounds_measure_each_configuration_several_times_and_top_up(tmp_path):
    from benchmarks.configs import configurations

    v = Variant.from_tag(TINY_VARIANT)
    text = ('model = "x3d_xs"\nwidth = [1.0, 0.5]\nresolution = 8\nframes = 2\nthreads = 1\nruns = 2\n'
            'isolate = false\nrounds = {}\n')
    cfg = load_config(write(tmp_path, text.format(1)))
    for w in (1.0, 0.5):
        tiny_artifact(cfg.out / "onnxruntime" / v.with_(width=w).tag, variant=v.with_(width=w).tag)
    dev = fingerprint("box")
    with Store(tmp_path / "r.sqlite") as s:
        assert run_sweep(cfg, s, dev, progress=False).count("measured") == 2
        r = run_sweep(load_config(write(tmp_path, text.format(3))), s, dev, progress=False)
        assert r.count("measured") == 2 and r.reused == 2
        assert [s.measurement_count(dev, "onnxruntime", 1, variant=v.with_(width=w).tag) for w in (1.0, 0.5)] == [3, 3]
        assert run_sweep(load_config(write(tmp_path, text.format(3))), s, dev, progress=False).count("stored") == 2
        # readers pool the rounds
        pooled = configurations(s, s.find_device("box"))
        assert [c.measurements for c in pooled] == [3, 3] and all(c.stats.n == 6 for c in pooled)
    with pytest.raises(BadInput, match="'rounds'"):
        load_config(write(tmp_path, text.format(0)))


def test_each_round_starts_elsewhere():
    cells = [Cell(Variant("x3d_xs", w, 32, 2), t, 1) for t in ("onnxruntime", "openvino") for w in (0.25, 0.5)]
    first = measure_order(cells, True, start=0)
    assert measure_order(cells, True, start=1) == first[1:] + first[:1]
    assert measure_order(cells, True, start=len(cells)) == first


# ----------------------------------------------------------------------------- SIGKILL and resume (real compile)

def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def _start(cfg: Path, db: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "sweep", "--config", str(cfg), "--db", str(db),
                             "--device", "killbox", "--no-progress", "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before it could be killed: {proc.stderr.read()[-2000:]}")
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("sweep did not reach the kill point in time")


@pytest.mark.slow
def test_sigkilled_sweep_resumes_without_loss_or_duplicates(tmp_path):
    cfg = write(tmp_path, """
model = "x3d_xs"
width = [0.25, 0.5]
resolution = [32]
frames = [2]
target = ["onnxruntime", "openvino"]
threads = [1]
runs = 3
min_time = 1.0
isolate = false
out = "arts"
""")
    db = tmp_path / "r.sqlite"
    arts = tmp_path / "arts"
    # 1: killed while compiling, once the first artifact is complete
    _kill_when(_start(cfg, db), lambda: any(arts.glob("*/*/artifact.json")))
    first = sorted(arts.glob("*/*/artifact.json"))
    assert first and _count(db) == 0
    first_mtimes = {p: p.stat().st_mtime_ns for p in first}
    # 2: killed while measuring, after the first measurement is committed
    _kill_when(_start(cfg, db), lambda: _count(db) >= 1)
    with Store(db, create=False) as s:
        before = {m.uid: (m.target, m.variant) for m in s.measurements()}
    assert 1 <= len(before) < 4
    assert all(p.stat().st_mtime_ns == t for p, t in first_mtimes.items())  # reused, not rebuilt
    built = {p: p.stat().st_mtime_ns for p in arts.glob("*/*/artifact.json")}
    assert len(built) == 4
    # 3: to the end
    proc = _start(cfg, db)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out)
    assert result["compiled"] == 0 and result["counts"] == {"measured": 4 - len(before), "stored": len(before),
                                                             "skipped": 0, "failed": 0}
    assert {p: p.stat().st_mtime_ns for p in arts.glob("*/*/artifact.json")} == built
    with Store(db, create=False) as s:
        rows = s.measurements()
    assert len(rows) == 4  # one per configuration: nothing duplicated
    assert len({(m.target, m.variant, m.threads) for m in rows}) == 4
    assert {m.uid: (m.target, m.variant) for m in rows if m.uid in before} == before  # nothing lost
