"""`edgevid bench`: real ONNX Runtime artifacts measured end to end into a store,
skips, bad input, the default store location."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench_helpers import TINY_VARIANT, tiny_artifact
from benchmarks.device import fingerprint
from benchmarks.store import Store
from edge.cli import main
from targets.registry import TARGETS, get_target

ROOT = Path(__file__).resolve().parent.parent


def unavailable_target() -> str:
    for name in TARGETS:
        try:
            if not get_target(name).available():
                return name
        except ImportError:
            return name
    pytest.skip("every registered target's runtime is installed here")


def test_bench_real_artifacts_into_a_store(tmp_path, capsys):
    a = tiny_artifact(tmp_path / "arts" / "a", seed=0)
    tiny_artifact(tmp_path / "arts" / "b", seed=1, variant="x3d_xs-w0.5-r8-f2-fp32-p0.0")
    db = tmp_path / "r.sqlite"
    assert main(["bench", str(tmp_path / "arts"), "--db", str(db), "--runs", "6", "--warmup", "2", "--threads", "1",
                 "--device", "bench-box", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"]["name"] == "bench-box" and out["skipped"] == []
    assert [m["variant"] for m in out["measurements"]] == [TINY_VARIANT, "x3d_xs-w0.5-r8-f2-fp32-p0.0"]
    for m in out["measurements"]:
        s = m["stats"]
        assert len(m["samples_ns"]) == s["n"] == 6 and m["threads"] == 1 and m["warmup_calls"] == 2
        assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
    with Store(db, create=False) as s:
        rows = s.measurements(device="bench-box")
        assert [r.uid for r in rows] == [m["uid"] for m in out["measurements"]]
        assert rows[0].stats.p50 == pytest.approx(out["measurements"][0]["stats"]["p50_ms"])
        dev = fingerprint("bench-box")
        assert s.has_measurement(dev, "onnxruntime", 1, variant=TINY_VARIANT)
        assert s.has_measurement(dev, "onnxruntime", 1, artifact_sha256=rows[1].artifact_sha256)
        assert rows[0].artifact_sha256 != rows[1].artifact_sha256
    # text output, a second measurement of one artifact
    assert main(["bench", str(a.path), "--db", str(db), "--runs", "3", "--device", "bench-box"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("bench-box [")
    assert TINY_VARIANT in text and "p50 ms" in text and f"stored 1 measurement(s) in {db}" in text
    with Store(db, create=False) as s:
        assert len(s.measurements()) == 3


def test_unavailable_target_is_skipped_with_its_reason(tmp_path, capsys):
    name = unavailable_target()
    tiny_artifact(tmp_path / "arts" / "ok")
    tiny_artifact(tmp_path / "arts" / "other", target=name)
    db = tmp_path / "r.sqlite"
    assert main(["bench", str(tmp_path / "arts"), "--db", str(db), "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert f"skipped {tmp_path / 'arts' / 'other'}: " in out
    with Store(db, create=False) as s:
        assert [m.target for m in s.measurements()] == ["onnxruntime"]


def test_tampered_artifact_refused_before_anything_is_measured(tmp_path, capsys):
    tiny_artifact(tmp_path / "arts" / "a")
    bad = tiny_artifact(tmp_path / "arts" / "b")
    bad.model_path.write_bytes(bad.model_path.read_bytes()[:-4])
    db = tmp_path / "r.sqlite"
    assert main(["bench", str(tmp_path / "arts"), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edgevid: error: {bad.model_path}: sha256 does not match artifact.json (truncated or modified); " \
                  "recompile"
    with Store(db, create=False) as s:
        assert s.measurements() == []


@pytest.mark.parametrize("argv, message", [
    (["bench"], "give ARTIFACT folders"),
    (["bench", "--import", "x.json", "--export", "y.csv"], "give ARTIFACT folders"),
    (["bench", "nowhere"], "nowhere: no such artifact folder"),
    (["bench", ".", "--runs", "0"], "--runs must be"),
    (["bench", ".", "--affinity", "x"], "--affinity: expected CPU numbers like 0,2-3, got 'x'"),
])
def test_bad_usage_exit_2(tmp_path, monkeypatch, argv, message, capsys):
    monkeypatch.chdir(tmp_path)
    tiny_artifact(tmp_path / "a")
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_default_store_is_edgevid_db_env_then_cwd(tmp_path, monkeypatch):
    art = tiny_artifact(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEVID_DB", str(tmp_path / "env.sqlite"))
    assert main(["bench", str(art.path), "--runs", "1"]) == 0
    assert (tmp_path / "env.sqlite").is_file() and not (tmp_path / "edgevid.sqlite").exists()
    monkeypatch.delenv("EDGEVID_DB")
    assert main(["bench", str(art.path), "--runs", "1"]) == 0
    assert (tmp_path / "edgevid.sqlite").is_file()


def test_isolated_bench_through_the_cli(tmp_path, capsys):
    art = tiny_artifact(tmp_path / "a")
    db = tmp_path / "r.sqlite"
    assert main(["bench", str(art.path), "--db", str(db), "--runs", "2", "--isolate", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["measurements"][0]
    assert m["memory"]["isolated"] and m["memory"]["peak_mb"] > 0
    with Store(db, create=False) as s:
        assert s.measurements()[0].isolated


@pytest.mark.slow
def test_compile_then_bench_a_zoo_model_with_the_console_script(tmp_path):
    """edgevid compile x3d_xs (small input) for onnxruntime, then edgevid bench it in a fresh process."""
    exe = [sys.executable, "-m", "edge.cli"]
    art = tmp_path / "x3d_xs"
    c = subprocess.run(exe + ["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--resolution", "64",
                              "--frames", "4", "--out", str(art)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert c.returncode == 0, c.stderr
    db = tmp_path / "r.sqlite"
    b = subprocess.run(exe + ["bench", str(art), "--db", str(db), "--runs", "5", "--threads", "2", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr
    m = json.loads(b.stdout)["measurements"][0]
    assert m["variant"] == "x3d_xs-w1.0-r64-f4-fp32-p0.0" and m["stats"]["n"] == 5 and m["threads"] == 2
    with Store(db, create=False) as s:
        [row] = s.measurements()
        assert (row.model, row.resolution, row.frames) == ("x3d_xs", 64, 4)
