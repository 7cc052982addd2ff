"""Measured accuracy: the Wilson interval, labelled held-out clips, the int8 gate, and
compile recording the artifact's own top-1 (edge.heldout, edge.gate, quant.accuracy)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calib_data.tensor import to_tensor
from edge.core.errors import BadInput
from edge.gate import Gate, verdict
from edge.heldout import SHIPPED_HELD_OUT, accuracy_source, labelled_clips, parse_synth
from quant.accuracy import LabelledClips, top1_of, wilson


def test_wilson_interval_matches_the_closed_form_and_stays_in_range():
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 300)[0] == 0.0 and wilson(300, 300)[1] == 1.0
    low, high = wilson(197, 300)
    assert low < 197 / 300 < high and 0.09 < high - low < 0.12  # +- ~5.4 points at n = 300


def test_top1_of_counts_arg_max_hits():
    logits = np.eye(4)[[0, 1, 2, 3, 0]]
    got = top1_of(logits, np.array([0, 1, 2, 0, 0]), "x", "onnxruntime")
    assert (got.correct, got.clips, got.top1) == (4, 5, 0.8) and got.low < 0.8 < got.high
    assert got.to_json()["interval"] == "95% Wilson"


def test_labelled_clips_are_normalised_like_the_evaluation_path():
    u8 = np.random.default_rng(0).integers(0, 256, (3, 3, 2, 8, 8), dtype=np.uint8)
    clips = LabelledClips("mem", u8, np.array([0, 1, 2]))
    got = list(clips)
    assert len(got) == 3 and got[0].shape == (1, 3, 2, 8, 8) and got[0].dtype == np.float32
    np.testing.assert_allclose(got[1], to_tensor(u8[1:2]).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="labelled clips must be"):
        LabelledClips("mem", u8, np.array([0, 1]))


@pytest.mark.parametrize("kw, why", [
    ({"max_drop": 1.5}, "--max-drop 1.5"), ({"max_drop": -0.01}, "--max-drop -0.01"),
    ({"min_agreement": 1.2}, "--min-agreement 1.2"), ({"min_sqnr_db": math.nan}, "--min-sqnr")])
def test_gate_refuses_values_out_of_range(kw, why):
    with pytest.raises(BadInput, match=why.replace(".", r"\.")):
        Gate(**kw)


def test_verdict_uses_top1_drop_with_labels_and_sqnr_without():
    labelled = {"top1_drop": 0.03, "top1_int8": 0.6, "labelled": 300, "reference_top1": {"top1": 0.63},
                "sqnr_db": 5.0, "agreement": 0.8, "cosine": 0.99, "clips": 300,
                "discordant": {"fp32_only_right": 20, "int8_only_right": 11}}
    why = verdict(labelled, Gate(max_drop=0.02))
    assert "3.0 points below fp32's 0.630" in why and "only in fp32 on 20, only in int8 on 11" in why
    assert verdict(labelled, Gate(max_drop=0.03)) == ""  # low SQNR alone does not refuse a labelled artifact
    unlabelled = {"sqnr_db": 39.0, "agreement": 0.5, "cosine": 0.9999, "clips": 16}
    assert verdict(unlabelled, Gate()) == ""  # untrained near-tied logits flip: agreement is not the gate
    assert "below --min-sqnr 40 dB" in verdict(unlabelled, Gate(min_sqnr_db=40))
    assert "below --min-agreement 0.9" in verdict(unlabelled, Gate(min_agreement=0.9))
    assert verdict({**unlabelled, "sqnr_db": "inf"}, Gate()) == ""


def test_held_out_source_names_why_there_is_none(tmp_path):
    assert accuracy_source(None).path is None and "untrained" in accuracy_source(None).reason
    with pytest.raises(BadInput, match="no such file"):
        accuracy_source(None, tmp_path / "missing")
    with pytest.raises(BadInput, match="synth:CLIPS:SEED"):
        parse_synth("synth:many")
    assert parse_synth("synth:300:2") == SHIPPED_HELD_OUT[next(iter(SHIPPED_HELD_OUT))]


def test_unlabelled_accuracy_data_leaves_top1_unknown_with_the_reason(tmp_path):
    from calib_data.synth import write_dataset

    write_dataset(tmp_path / "d", 2, seed=1)
    src = accuracy_source(None, tmp_path / "d" / "videos")  # a plain folder of videos: no labels
    assert src.path is None and "no labelled clips" in src.reason and labelled_clips(src, (1, 3, 4, 32, 32)) is None


def test_generated_held_out_set_is_read_at_the_model_shape(tmp_path):
    src = accuracy_source(None, "synth:6:3", cache=tmp_path)
    assert (src.path / "manifest.csv").is_file() and "synth-6-seed3" in src.what
    again = accuracy_source(None, "synth:6:3", cache=tmp_path)  # generated once
    assert again.path == src.path
    clips = labelled_clips(src, (1, 3, 4, 32, 32))
    assert len(clips) == 6 and clips.clips.shape == (6, 3, 4, 32, 32) and set(clips.labels) <= set(range(10))
    with pytest.raises(BadInput, match="classes"):
        labelled_clips(src, (1, 3, 4, 32, 32), classes=[f"c{i}" for i in range(10)])


@pytest.mark.slow
def test_compile_records_the_artifacts_own_top1_and_gates_int8_on_the_drop(tmp_path, monkeypatch):
    """fp32 and int8 artifacts carry their top-1 on the labelled clips; the int8 gate is the
    drop against fp32 on those clips; untrained weights are seeded (same seed, same file)."""
    from edge.compile import compile_variant
    from edge.core.errors import GateFailed
    from edge.core.io import sha256_file
    from edge.core.variant import Variant
    from quant.calib import read_calib

    monkeypatch.setenv("EDGEVID_CACHE", str(tmp_path / "cache"))
    v = Variant("x3d_xs", 1.0, 32, 2)
    fp32 = compile_variant(v, "onnxruntime", tmp_path / "fp32", accuracy_data="synth:12:5")
    acc = fp32.notes["accuracy"]
    assert acc["clips"] == 12 and acc["measured_with"] == "onnxruntime" and 0 <= acc["top1"] <= 1
    assert acc["low"] <= acc["top1"] <= acc["high"] and "synth-12-seed5" in acc["data"]
    calib = read_calib(None, v.with_(precision="int8").input_shape, clips=4, held_out=2, progress=False)
    int8 = compile_variant(v.with_(precision="int8"), "onnxruntime", tmp_path / "int8", calib=calib,
                           accuracy_data="synth:12:5", gate=Gate(max_drop=1.0))
    fid = int8.fidelity
    assert fid["clips"] == 12 and fid["top1_drop"] == pytest.approx(fid["reference_top1"]["top1"]
                                                                    - int8.notes["accuracy"]["top1"], abs=1e-6)
    assert fid["reference_top1"]["top1"] == pytest.approx(acc["top1"], abs=2 / 12 + 1e-9)
    d = fid["discordant"]
    assert (d["fp32_only_right"] - d["int8_only_right"]) / 12 == pytest.approx(fid["top1_drop"], abs=1e-6)
    with pytest.raises(GateFailed, match="below --min-sqnr"):  # no labels: SQNR gate
        compile_variant(v.with_(precision="int8"), "onnxruntime", tmp_path / "bad", calib=calib,
                        gate=Gate(min_sqnr_db=500))
    assert json.loads((tmp_path / "bad" / "artifact.json").read_text())["status"] == "failed"
    again = compile_variant(v, "onnxruntime", tmp_path / "again")
    other = compile_variant(v, "onnxruntime", tmp_path / "other", seed=1)
    assert sha256_file(again.model_path) == sha256_file(fp32.model_path) != sha256_file(other.model_path)


@pytest.mark.slow
def test_compile_keeps_third_party_chatter_in_the_log_file(tmp_path, capsys):
    """onnxruntime's quantizer advice and the like go to DIR.log, not the terminal."""
    from edge.cli import main

    out = tmp_path / "art"
    rc = main(["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--precision", "int8", "--frames", "2",
               "--resolution", "32", "--calib-clips", "4", "--out", str(out)])
    cap = capsys.readouterr()
    log = (tmp_path / "art.log").read_text()
    assert rc == 0 and "pre-processing" in log, log[-2000:]
    assert "pre-processing" not in cap.out + cap.err and "Traceback" not in cap.err
    assert "top-1 unknown: untrained weights" in cap.out


def test_a_calibration_set_smaller_than_asked_is_used_and_says_so(tmp_path, caplog):
    from calib_data.synth import write_dataset
    from quant.calib import read_calib

    write_dataset(tmp_path / "d", 8, seed=4)
    with caplog.at_level("WARNING", logger="quant.calib"):
        calib = read_calib(tmp_path / "d", (1, 3, 2, 32, 32), clips=10, held_out=4, progress=False)
    assert len(calib.clips) == 6 and len(calib.held_out) == 2 and calib.record()["clips"] == 6
    assert "asked for 10 calibration clips, only 8 usable clips there: using 6" in caplog.text


def test_captured_turns_fd_level_writes_into_log_records(caplog):
    """What a runtime's C++ core writes to fds 1/2 itself (absl, XNNPACK) is logged, not printed."""
    import os

    from edge.core.chatter import captured

    with caplog.at_level("INFO", logger="some_runtime"), captured("some_runtime"):
        os.write(1, b"Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"W0000 absl warning line\n")
        print("a python-level line")
    lines = [r.getMessage() for r in caplog.records if r.name == "some_runtime"]
    assert "Created TensorFlow Lite XNNPACK delegate for CPU." in lines
    assert "W0000 absl warning line" in lines and "a python-level line" in lines
