"""``edgevid demo --quick`` end to end (the README's main job), its resume, and its bad input.

One quick demo run is shared by the module (it compiles, calibrates, measures, selects,
reports and streams the real sample video); the tests read what it left behind.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.store import Store
from edge.cli import main
from edge.demo import PLANS, sweeps
from targets.base import Artifact
from targets.registry import TARGETS, get_target

QUICK = PLANS["quick"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--quick", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout), time.time() - t0


def test_quick_demo_writes_every_output(demo):
    out, d, _ = demo
    for name in ("report.html", "report.md", "results.sqlite", "demo.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "demo.json").read_text())["counts"] == d["counts"]
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and "x3d_xs-w0.25-r96-f4" in html


def test_quick_demo_compiles_and_measures_the_grid(demo):
    out, d, _ = demo
    available = [t for t in QUICK.targets if get_target(t).available()]
    wanted = {(t, f"x3d_xs-w{w}-r96-f4-{p}-p0.0") for t in available for w in QUICK.widths
              for p in QUICK.targets[t].precisions}
    done = {(c["target"], c["variant"]) for c in d["cells"] if c["status"] in ("measured", "stored")}
    refused = {(c["target"], c["variant"]) for c in d["cells"] if c["status"] == "skipped"}
    assert wanted == done | refused and len(done) >= len(wanted) - 2, d["cells"]
    with Store(out / "results.sqlite", create=False) as store:
        assert len(store.measurements()) == len(done)
        acc = store.accuracy()
    # every configuration, fp32 and int8, carries its own top-1 measured on the 300 held-out clips
    for t, v in done:
        art = Artifact.read(out / "artifacts" / t / v)
        assert art.notes["classes"][:2] == ["move_left", "move_right"]
        measured = art.notes["accuracy"]
        assert measured["clips"] == 300 and 0.1 < measured["top1"] < 1.0, measured
        assert measured["low"] < measured["top1"] < measured["high"] and measured["measured_with"] == t
        if art.precision == "int8":  # the gate: at most 2 points below fp32 on the same clips
            assert art.fidelity["top1_drop"] <= 0.02 and art.fidelity["clips"] == 300
        (figures,) = [f for (var, tgt, sha), f in acc.items() if var == v and tgt == t and sha]
        assert figures["top1"] == pytest.approx(measured["top1"]) and figures["top1_clips"] == 300


def test_quick_demo_selects_and_streams_the_sample_video(demo):
    _, d, _ = demo
    chosen = d["selection"]["chosen"]
    assert chosen is not None and chosen["p90_ms"] <= d["budget"]["latency_ms"]
    run = d["run"]
    assert run["target"] == chosen["target"] and Path(d["video"]).name == "bikes.mp4"
    s = run["summary"]
    assert s["clips"] == len(run["clips"]) > 0
    assert {c["config"] for c in run["clips"]} <= {c["name"] for c in s["candidates"]}


def test_missing_runtime_is_skipped_with_a_line(demo):
    _, d, _ = demo
    missing = [t for t in QUICK.targets if t in TARGETS and not get_target(t).available()]
    assert set(d["skipped_targets"]) == set(missing)
    assert all(d["skipped_targets"][t] for t in missing)


def test_rerun_resumes_without_recompiling(demo):
    out, d, _ = demo
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "artifacts").glob("*/*/artifact.json")}
    assert main(["demo", "--quick", "--out", str(out), "--json"]) == 0
    again = json.loads((out / "demo.json").read_text())
    assert {c["status"] for c in again["cells"]} <= {"stored", "skipped"}
    assert again["counts"].get("stored", 0) == d["counts"].get("measured", 0) + d["counts"].get("stored", 0)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert again["steps_s"]["compile"] < 30


def test_unwritable_output_is_one_clear_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "--quick", "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blocker / "out") in err[0] and "not writable" in err[0]


def test_sweep_plan_covers_the_grid(tmp_path):
    """The full plan: >= 4 widths x 2 resolutions x 2 frame counts, a pruned variant, fp32 and int8."""
    from edge.demo import DemoPaths

    full = PLANS["full"]
    assert len(full.widths) >= 4 and len(full.resolutions) >= 2 and len(full.frames) >= 2 and full.prune > 0
    cfgs = sweeps(full, DemoPaths(tmp_path), None, tmp_path / "pruned.pt")
    ort = {c.variant.tag for cfg in cfgs for c in cfg.cells() if c.target == "onnxruntime"}
    assert len(ort) == 2 * (len(full.configs()) + 1)
    assert {"fp32", "int8"} == {t.split("-")[4] for t in ort}
    assert any("-p0.3" in t for t in ort)


@pytest.mark.slow
def test_killed_demo_resumes(tmp_path):
    """SIGKILL once the first artifact is written; the rerun keeps it and finishes."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "demo", "--quick", "--out", str(out), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    first: list[Path] = []
    while time.time() < deadline and not first and proc.poll() is None:
        first = list((out / "artifacts").glob("*/*/artifact.json"))
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first, "no artifact was written before the deadline"
    kept = {p: p.stat().st_mtime_ns for p in first}
    assert main(["demo", "--quick", "--out", str(out), "--json"]) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (out / "report.html").is_file()
