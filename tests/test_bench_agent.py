"""The on-device agent: results JSON (measured, skipped, invalid), `edgevid bench --import`
round trip, unknown schema versions refused, and the agent in a venv that has only
numpy + onnxruntime."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench_helpers import TINY_VARIANT, tiny_artifact, unavailable_target
from benchmarks import agent
from benchmarks.record import LatencyRecord
from benchmarks.store import Store
from edge.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def results(tmp_path):
    """Agent run over: a good artifact, one of an unavailable target, a tampered one."""
    arts = tmp_path / "arts"
    tiny_artifact(arts / "a_good", fidelity={"cosine": 0.9999})
    absent = unavailable_target()
    if absent:
        tiny_artifact(arts / "b_absent", target=absent)
    bad = tiny_artifact(arts / "c_tampered")
    bad.model_path.write_bytes(b"not a model")
    out = tmp_path / "results.json"
    rc = agent.main([str(arts), "--out", str(out), "--runs", "4", "--warmup", "1", "--threads", "1",
                     "--device", "jetson-orin-nano"])
    return rc, out, absent, arts


def test_agent_writes_results_with_skips(results):
    rc, out, absent, arts = results
    assert rc == 2  # the tampered artifact
    doc = json.loads(out.read_text())
    assert doc["format"] == "edgevid-bench-results" and doc["schema_version"] == agent.SCHEMA_VERSION
    assert doc["device"]["name"] == "jetson-orin-nano" and doc["config"]["runs"] == 4
    [r] = doc["results"]
    assert r["variant"] == TINY_VARIANT and r["target"] == "onnxruntime" and len(r["samples_ns"]) == 4
    assert r["accuracy"] == {"cosine": 0.9999} and r["manifest"]["files"]
    kinds = {Path(s["artifact"]).name: (s["kind"], s["reason"]) for s in doc["skipped"]}
    assert kinds["c_tampered"][0] == "invalid" and "sha256 does not match" in kinds["c_tampered"][1]
    if absent:
        kind, reason = kinds["b_absent"]
        assert kind == "unavailable" and reason
    rec = LatencyRecord.from_json(r)
    assert rec.stats.n == 4 and rec.threads == 1


def test_import_round_trip(results, tmp_path, capsys):
    _, out, _, _ = results
    doc = json.loads(out.read_text())
    db = tmp_path / "store.sqlite"
    assert main(["bench", "--import", str(out), "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"imported 1 measurement(s) for device jetson-orin-nano [{doc['device']['id']}]")
    assert "skipped on the device:" in text and "c_tampered" in text
    with Store(db, create=False) as s:
        [m] = s.measurements(device="jetson-orin-nano")
        r = doc["results"][0]
        assert m.uid == r["uid"] and s.samples(m.id) == tuple(r["samples_ns"])
        assert m.stats.p50 == pytest.approx(r["stats"]["p50_ms"]) and m.threads == 1
        assert m.source == f"import:{out}" and m.accuracy == {"fidelity.cosine": 0.9999}
        dev = s.find_device("jetson-orin-nano")
        assert dev.fingerprint.to_json() == doc["device"]
    # importing the same file again adds nothing; --device renames
    assert main(["bench", "--import", str(out), "--db", str(db), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["imported"], again["already_stored"]) == (0, 1)
    doc["results"][0]["uid"] = "other"
    out2 = tmp_path / "renamed.json"
    out2.write_text(json.dumps(doc))
    assert main(["bench", "--import", str(out2), "--db", str(db), "--device", "orin-15w"]) == 0
    with Store(db, create=False) as s:
        assert [m.device_name for m in s.measurements()] == ["jetson-orin-nano", "orin-15w"]


@pytest.mark.parametrize("change, message", [
    ({"schema_version": 99}, "results schema version 99 is not supported"),
    ({"schema_version": None}, "results schema version None is not supported"),
    ({"format": "other"}, "not an edgevid agent results file"),
])
def test_import_refuses_unknown_versions_and_formats(results, tmp_path, capsys, change, message):
    _, out, _, _ = results
    doc = {**json.loads(out.read_text()), **change}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    db = tmp_path / "s.sqlite"
    assert main(["bench", "--import", str(bad), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edgevid: error: {bad}: ") and message in err and "\n" not in err
    assert not db.exists()


def test_import_refuses_malformed_files(tmp_path, results, capsys):
    _, out, _, _ = results
    db = tmp_path / "s.sqlite"
    (tmp_path / "x.json").write_text("{not json")
    assert main(["bench", "--import", str(tmp_path / "x.json"), "--db", str(db)]) == 2
    assert "not a JSON results file" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    doc["results"][0]["artifact_sha256"] = "0" * 64  # does not match the manifest's hashes
    (tmp_path / "y.json").write_text(json.dumps(doc))
    assert main(["bench", "--import", str(tmp_path / "y.json"), "--db", str(db)]) == 2
    assert "results[0]: malformed latency record" in capsys.readouterr().err
    assert main(["bench", "--import", str(tmp_path / "none.json"), "--db", str(db)]) == 2
    assert "no such results file" in capsys.readouterr().err


@pytest.mark.slow
def test_agent_in_a_venv_with_only_numpy_and_onnxruntime(tmp_path):
    """A fresh venv with numpy + onnxruntime (pip, from the local wheel cache / index) runs the
    agent from the project folder; torch, onnx and opencv are absent there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy", "onnxruntime"], capture_output=True,
                         text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"cannot install numpy + onnxruntime into a venv here: {pip.stderr.strip()[-300:]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONNOUSERSITE="1")
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; "
                            "print([m for m in ('torch', 'onnx', 'cv2', 'onnxslim') if u.find_spec(m)])"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stderr  # really only numpy + onnxruntime (+ their deps)
    art = tiny_artifact(tmp_path / "arts" / "a")
    out = tmp_path / "r.json"
    run = subprocess.run([str(py), "-m", "benchmarks.agent", str(art.path), "--out", str(out), "--runs", "3",
                          "--device", "tiny-venv"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"wrote 1 measurement(s) to {out}" in run.stdout
    res = agent.read_results(out)
    [rec] = res.records
    assert res.device.name == "tiny-venv" and rec.stats.n == 3 and "numpy" in res.device.runtimes
    # --isolate also works there (the subprocess finds the project through PYTHONPATH)
    iso = subprocess.run([str(py), "-m", "benchmarks.agent", str(art.path), "--out", str(out), "--runs", "2",
                          "--isolate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert iso.returncode == 0, iso.stderr
    assert agent.read_results(out).records[0].memory.isolated
