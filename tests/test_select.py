"""`edgevid select`: the most accurate feasible configuration (ties to the faster),
unknown accuracy ranked last, the Pareto front, --explain, pooled measurements,
predictions marked, --validate with a real re-measurement, bad input."""
import dataclasses
import json

import pytest

from bench_helpers import device, record, tiny_artifact
from benchmarks.device import fingerprint
from benchmarks.record import Memory
from benchmarks.configs import configurations
from benchmarks.select import Budget, select
from benchmarks.store import Store
from edge.cli import main
from edge.core.errors import BadInput
from edge.core.variant import Variant
from edge.models.registry import variant as zoo_variant

V = {k: Variant("x3d_xs", w, r, f).tag for k, (w, r, f) in
     {"big": (1.0, 160, 4), "small": (0.5, 112, 4), "mid": (0.75, 128, 4), "tiny": (0.5, 64, 2)}.items()}
V["s"] = zoo_variant("x3d_s").tag
_n = iter(range(1000))


def add(s: Store, variant: str, target: str, ms: float | list[float], dev=None, files=None, created=1000.0) -> None:
    samples = ms if isinstance(ms, list) else [ms * 0.98, ms, ms * 1.02]
    s.add_measurement(record(samples, variant=variant, target=target, dev=dev,
                             files=files or {"model.onnx": f"{next(_n):064x}"}, created=created))


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store(path) as s:
        add(s, V["big"], "onnxruntime", 100)
        add(s, V["big"], "openvino", 60)
        add(s, V["small"], "onnxruntime", 30)
        add(s, V["mid"], "openvino", 45)
        add(s, V["tiny"], "onnxruntime", 10)
        add(s, V["s"], "onnxruntime", 400)
        for k, acc in (("big", 0.70), ("small", 0.60), ("mid", 0.65), ("s", 0.73)):
            s.add_accuracy(V[k], "top1", acc)
    return path


def run(capsys, *argv):
    rc = main(["select", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_most_accurate_feasible_with_front_and_explanations(db, capsys):
    rc, out, _ = run(capsys, "--db", db, "--latency-ms", 50, "--stat", "p50", "--explain", "--json")
    assert rc == 0
    d = json.loads(out)
    assert (d["chosen"]["variant"], d["chosen"]["target"]) == (V["mid"], "openvino")
    assert d["metric"] == "top1" and d["unknown_accuracy"] == 1 and d["candidates"] == 6
    # the front: no other configuration at least as accurate and as fast (fastest first)
    assert [(r["variant"], r["target"]) for r in d["front"]] == [
        (V["small"], "onnxruntime"), (V["mid"], "openvino"), (V["big"], "openvino"), (V["s"], "onnxruntime")]
    # every better-accuracy configuration, with why it was rejected
    rejected = {(r["variant"], r["target"]): r["reasons"] for r in d["rejected"]}
    assert set(rejected) == {(V["s"], "onnxruntime"), (V["big"], "openvino"), (V["big"], "onnxruntime")}
    assert rejected[(V["big"], "openvino")] == ["p50 60.00 ms > 50 ms"]
    # text form
    rc, out, _ = run(capsys, "--db", db, "--latency-ms", 50, "--stat", "p50", "--explain")
    assert f"chosen: {V['mid']} on openvino" in out and "[measured]" in out and "Pareto front" in out
    assert "why rejected" in out and "p50 400.00 ms > 50 ms" in out
    assert "1 configuration(s) have no top1 figure: accuracy unknown, ranked after" in out


def test_ties_go_to_the_faster_and_floors_and_bounds_apply(db):
    with Store(db, create=False) as s:
        assert select(s, Budget(80, "p50")).chosen.config.target == "openvino"  # big: 0.70 on both targets
        assert select(s, Budget(500, "p50")).chosen.config.variant == V["s"]
        assert select(s, Budget(500, "p50", min_accuracy=0.74)).chosen is None
        sel = select(s, Budget(500, "p90", memory_mb=50))  # every record peaks at 100 MiB
        assert sel.chosen is None and all("peak 100 MiB > 50 MiB" in r.reasons for r in sel.ranked)
        assert select(s, Budget(500, "p90", memory_mb=150)).chosen.config.variant == V["s"]
        # p90 is the default statistic: 'big' on openvino has p90 > 60
        assert select(s, Budget(60.0)).chosen.config.variant == V["mid"]


def test_unknown_accuracy_ranks_last_and_fails_a_floor(db, capsys):
    with Store(db, create=False) as s:
        sel = select(s, Budget(15, "p50"))
        assert sel.chosen.config.variant == V["tiny"] and sel.chosen.accuracy is None
        assert [r.accuracy is None for r in sel.ranked] == [False] * 5 + [True]
        assert select(s, Budget(15, "p50", min_accuracy=0.1)).chosen is None
    rc, out, err = run(capsys, "--db", db, "--latency-ms", 15, "--stat", "p50", "--min-accuracy", 0.1, "--explain")
    assert rc == 1 and "chosen: none" in out and "top1 unknown (floor 0.1)" in out
    assert "no configuration of testbox meets the budget" in err


def test_measurements_of_the_newest_artifact_are_pooled(db):
    with Store(db) as s:
        add(s, V["small"], "onnxruntime", [20.0, 20.0, 20.0], files={"model.onnx": "f" * 64}, created=2000.0)
        add(s, V["small"], "onnxruntime", [10.0, 10.0, 10.0], files={"model.onnx": "f" * 64}, created=2001.0)
        [c] = [c for c in configurations(s, s.find_device("testbox")) if c.variant == V["small"]]
        assert c.measurements == 2 and c.stats.n == 6 and c.stats.p50 == pytest.approx(15.0)
        assert c.artifact_sha256 is not None and not c.predicted and c.peak_mb == 100.0
        # an isolated reading (fresh process) stands for the peak memory when there is one
        iso = record([12.0] * 3, variant=V["small"], files={"model.onnx": "f" * 64}, created=2002.0)
        s.add_measurement(dataclasses.replace(iso, memory=Memory(60.0, 30.0, "VmHWM", True)))
        [c] = [c for c in configurations(s, s.find_device("testbox")) if c.variant == V["small"]]
        assert c.measurements == 3 and c.peak_mb == 60.0


def test_metric_choice(db, capsys):
    with Store(db) as s:
        s.add_accuracy(V["tiny"], "fidelity.top1_agreement", 0.99)
        sel = select(s, Budget(15, "p50"), metric="fidelity.top1_agreement")
        assert sel.chosen.accuracy == 0.99 and sel.unknown_accuracy == 5
        s.add_accuracy(V["small"], "top1", 0.5, dataset="kinetics")
        s.add_accuracy(V["mid"], "top1", 0.6, dataset="ucf")
        with pytest.raises(BadInput, match="several datasets .*--metric"):
            select(s, Budget(15, "p50"))
        assert select(s, Budget(50, "p50"), metric="top1@ucf").chosen.config.variant == V["mid"]


def test_predictions_are_candidates_only_with_predict_and_marked(tmp_path, capsys):
    from test_predict import seeded_store

    with seeded_store(tmp_path / "p.sqlite")[0] as s:
        vs = [m.variant for m in s.measurements()]
        for i, v in enumerate(vs):
            s.add_accuracy(v, "top1", 0.1 + 0.01 * i)
    rc, out, _ = run(capsys, "--db", tmp_path / "p.sqlite", "--latency-ms", 1e6, "--json")
    assert rc == 0 and not json.loads(out)["chosen"]["predicted"] and not json.loads(out)["predicted_used"]
    rc, out, _ = run(capsys, "--db", tmp_path / "p.sqlite", "--latency-ms", 1e6, "--predict", "--json")
    d = json.loads(out)
    assert d["chosen"]["predicted"] and d["chosen"]["source"] == "predicted" and d["chosen"]["accuracy"]["top1"] == 0.7
    assert d["predicted_used"]
    rc, out, _ = run(capsys, "--db", tmp_path / "p.sqlite", "--latency-ms", 1e6, "--predict")
    assert "[PREDICTED, not measured]" in out and "≈" in out and "predicted: latency from benchmarks.predict" in out


def test_validate_re_measures_the_choice(tmp_path, capsys):
    art = tiny_artifact(tmp_path / "art")
    db = tmp_path / "v.sqlite"
    here = fingerprint("valbox")
    # a stored figure far faster than the artifact really is: the re-measurement exposes it
    fake = dataclasses.replace(record([1e-4] * 3, dev=here, files=dict(art.files), threads=1),
                               artifact_path=str(art.path))
    with Store(db) as s:
        s.add_measurement(fake)
    rc, out, _ = run(capsys, "--db", db, "--latency-ms", 0.0005, "--validate", "--runs", 5, "--json")
    d = json.loads(out)
    assert rc == 1 and d["chosen"] is not None and not d["validation"]["meets"]
    assert d["validation"]["reasons"][0].startswith("p90 ")
    # a generous budget: the re-measurement meets it, and is stored
    rc, out, _ = run(capsys, "--db", db, "--latency-ms", 10000, "--validate", "--runs", 5)
    assert rc == 0 and "validation: re-measured" in out and "meets the budget" in out
    with Store(db, create=False) as s:
        rows = s.measurements()
        assert len(rows) == 3 and {r.source for r in rows} == {"local", "select --validate"}


def test_validate_refuses_another_device(db, capsys):
    rc, _, err = run(capsys, "--db", db, "--latency-ms", 50, "--stat", "p50", "--validate")
    assert rc == 2 and "this machine is" in err


def test_bad_input(tmp_path, db, capsys):
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    rc, _, err = run(capsys, "--db", empty, "--latency-ms", 50)
    assert rc == 2 and "no measurements in DB for device" in err and str(empty) in err
    rc, _, err = run(capsys, "--db", tmp_path / "missing.sqlite", "--latency-ms", 50)
    assert rc == 2 and "no such result store" in err and not (tmp_path / "missing.sqlite").exists()
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"garbage" * 100)
    rc, _, err = run(capsys, "--db", corrupt, "--latency-ms", 50)
    assert rc == 2 and "not an SQLite database" in err and corrupt.read_bytes() == b"garbage" * 100
    rc, _, err = run(capsys, "--db", db, "--latency-ms", 50, "--device", "jetson")
    assert rc == 2 and "no measurements in DB for device 'jetson'" in err and "testbox" in err
    for argv, msg in ((("--latency-ms", -1), "--latency-ms"), (("--latency-ms", 5, "--stat", "p42"), "p42"),
                      (("--latency-ms", 5, "--memory-mb", 0), "--memory-mb")):
        rc, _, err = run(capsys, "--db", db, *argv)
        assert rc == 2 and msg in err
    # two devices, neither this machine: --device is needed
    with Store(db) as s:
        add(s, V["big"], "onnxruntime", 50, dev=device("phone", cpus=8))
    rc, _, err = run(capsys, "--db", db, "--latency-ms", 50)
    assert rc == 2 and "choose one with --device" in err
    rc, out, _ = run(capsys, "--db", db, "--latency-ms", 60, "--stat", "p50", "--device", "phone", "--json")
    assert rc == 0 and json.loads(out)["chosen"]["device"] == "phone"
