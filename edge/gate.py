"""After a compile: the artifact's own top-1 on labelled held-out clips, its int8
fidelity against fp32, and the int8 gate.

    Gate(max_drop=0.02, min_sqnr_db=20.0, min_agreement=None)
    measure_artifact(art, target, ref, calib, labelled, gate, held, ref_cache) -> Artifact

Accuracy (fp32 and int8 alike): the artifact's runner on every labelled held-out
clip (``edge.heldout``; 300 for the shipped checkpoint) -> ``notes.accuracy``:
top-1, the clip count, correct clips and the 95% Wilson interval, what ran it and
on which clips.  Without labelled clips ``notes.accuracy`` says why (top-1 ``None``).

Fidelity (int8): the same clips through the fp32 reference (PyTorch, or the fp32
ONNX export on ONNX Runtime), agreement / cosine / SQNR on all of them; without
labelled clips, on the calibration set's held-out clips.

Gate (int8), by what the clips allow:

- labelled clips: the artifact's top-1 may be at most ``max_drop`` (a fraction:
  0.02 = 2 points) below the fp32 reference's top-1 on the same clips;
- no labels (untrained weights, a user's unlabelled folder): logit fidelity, SQNR
  >= ``min_sqnr_db`` dB (20 dB: error power 1% of the logits' power; the
  untrained zoo models quantize at 35-45 dB, a broken quantization is below 10);
  agreement is not used, since untrained logits are near ties and flip;
- ``min_agreement`` (``--min-agreement``), when given: an additional agreement floor.

Below the gate the artifact is kept, marked ``failed``, and ``GateFailed`` raised.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from edge.core.errors import BadInput, GateFailed
from targets.base import Artifact, Runner, Target
from targets.registry import TargetOptions

if TYPE_CHECKING:  # pragma: no cover
    from edge.heldout import HeldOut
    from quant.accuracy import LabelledClips
    from quant.calib import CalibSet

log = logging.getLogger(__name__)

Reference = Callable[[np.ndarray], np.ndarray]  # (1, 3, T, S, S) clip -> (1, classes) fp32 logits
MAX_DROP = 0.02
MIN_SQNR_DB = 20.0


@dataclass(frozen=True)
class Gate:
    """The int8 acceptance floor (see the module doc)."""

    max_drop: float = MAX_DROP
    min_sqnr_db: float = MIN_SQNR_DB
    min_agreement: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.max_drop, (int, float)) and 0.0 <= self.max_drop <= 1.0):
            raise BadInput(f"--max-drop {self.max_drop!r}: must be a fraction in [0, 1] (0.02 = 2 top-1 points)")
        if self.min_sqnr_db != self.min_sqnr_db:  # NaN; -inf turns the check off
            raise BadInput(f"--min-sqnr {self.min_sqnr_db!r}: must be a number of dB")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise BadInput(f"--min-agreement {self.min_agreement!r}: must be in [0, 1]")

    def to_json(self) -> dict[str, object]:
        return {"max_drop": self.max_drop, "min_sqnr_db": self.min_sqnr_db, "min_agreement": self.min_agreement}


def artifact_runner(art: Artifact, tgt: Target) -> tuple[Runner | None, str]:
    """(runner, what runs it): the artifact's own runner, or ONNX Runtime (CPU) on its
    ONNX model when the target cannot run here but the model is ONNX (tensorrt unbuilt)."""
    if art.status == "ok" and tgt.available():
        return tgt.load(art), art.target
    if art.model_file.endswith(".onnx"):
        from targets.onnxruntime import OnnxRuntimeRunner, OnnxRuntimeTarget

        ort_target = OnnxRuntimeTarget(TargetOptions(device="cpu"))
        session = ort_target._session(art.model_path, ["CPUExecutionProvider"])
        return OnnxRuntimeRunner(art, session), "onnxruntime CPU on the artifact's QDQ ONNX"
    return None, ""


def reference_logits(ref: Reference, clips: "LabelledClips", cache: Path | None) -> np.ndarray:
    """fp32 logits (N, classes) of ``ref`` on ``clips``, kept in ``cache`` (a folder) when
    given, keyed by the reference's own file stem and the clips' content."""
    from quant.accuracy import run_all

    if cache is None:
        return run_all(ref, clips)
    key = hashlib.sha256(clips.clips.tobytes() + clips.labels.tobytes()).hexdigest()[:16]
    path = cache.with_name(f"{cache.stem}.ref-{key}.npy")
    if path.is_file():
        got = np.load(path)
        if len(got) == len(clips):
            return got
    logits = run_all(ref, clips)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, logits)
    tmp.replace(path)
    return logits


def measure_artifact(art: Artifact, tgt: Target, ref: Reference, reference: str, calib: "CalibSet | None",
                     labelled: "LabelledClips | None", gate: Gate, held: "HeldOut",
                     ref_cache: Path | None = None) -> Artifact:
    """Measure ``art``'s top-1 (and, int8, its fidelity and gate) and store them (module doc)."""
    from quant.accuracy import measure_top1, top1_of
    from quant.fidelity import fidelity

    runner, measured_with = artifact_runner(art, tgt)
    if runner is None:
        why = f"{art.target} cannot run here"
        log.warning("%s: accuracy and fidelity not measured (%s)", art.path, why)
        notes = {**art.notes, "accuracy": {"top1": None, "reason": why}}
        if calib is not None:
            notes["fidelity"] = f"not measured: {why}"
        return art.with_(notes=notes).write()
    try:
        got = None
        if labelled is not None:
            top1, got = measure_top1(runner, labelled, measured_with)
            art = art.with_(notes={**art.notes, "accuracy": {**top1.to_json(), **_table(art.notes)}}).write()
            log.info("%s: top-1 %s (%s)", art.path, top1.text(), measured_with)
        else:
            art = art.with_(notes={**art.notes, "accuracy": {"top1": None, "reason": held.reason,
                                                             **_table(art.notes)}}).write()
        if calib is None:
            return art
        if labelled is not None:
            want = reference_logits(ref, labelled, ref_cache)
            labels: tuple = tuple(int(y) for y in labelled.labels)
            clips_what = labelled.data
        elif calib.held_out:
            got = np.concatenate([runner(c) for c in calib.held_out])
            want = np.concatenate([ref(c) for c in calib.held_out])
            labels, clips_what = (), f"{calib.path} (held-out calibration clips)"
        else:
            log.warning("%s: fidelity not measured (no held-out clips)", art.path)
            return art.with_(notes={**art.notes, "fidelity": "not measured: no held-out clips"}).write()
    finally:
        runner.close()
    fid = fidelity(want, got, labels).to_json()
    fid.update(gate=gate.to_json(), measured_with=measured_with, reference=reference, data=clips_what)
    if labelled is not None:
        ref_top1 = top1_of(want, labelled.labels, labelled.data, reference)
        fid["reference_top1"] = ref_top1.to_json()
        fid["top1_drop"] = round(ref_top1.top1 - float(art.notes["accuracy"]["top1"]), 6)
        ref_ok = np.asarray(want).argmax(1) == labelled.labels
        got_ok = np.asarray(got).argmax(1) == labelled.labels
        # the clips behind the drop: with 300 clips a drop of d points is d * 3 more of the first than the second
        fid["discordant"] = {"fp32_only_right": int(np.sum(ref_ok & ~got_ok)),
                             "int8_only_right": int(np.sum(~ref_ok & got_ok))}
    art = art.with_(fidelity=fid).write()
    failed = verdict(fid, gate)
    if failed:
        art = art.with_(status="failed").write()
        raise GateFailed(f"{art.path}: int8 {failed}; artifact kept, marked failed")
    return art


def verdict(fid: Mapping[str, Any], gate: Gate) -> str:
    """Why ``gate`` refuses an artifact with fidelity record ``fid`` ("" when it passes);
    the figures are those :func:`measure_artifact` stores (``top1_drop`` when labelled)."""
    labelled = fid.get("top1_drop") is not None
    sqnr = fid["sqnr_db"]
    sqnr_text = sqnr if isinstance(sqnr, str) else f"{sqnr:.1f}"
    tail = f"(agreement {fid['agreement']:.3f}, cosine {fid['cosine']:.4f}, SQNR {sqnr_text} dB on {fid['clips']} clips)"
    if labelled and fid["top1_drop"] > gate.max_drop + 1e-12:
        ref, d = fid["reference_top1"], fid.get("discordant") or {}
        split = f"; right only in fp32 on {d['fp32_only_right']}, only in int8 on {d['int8_only_right']}" if d else ""
        return (f"top-1 {fid['top1_int8']:.3f} is {fid['top1_drop'] * 100:.1f} points below fp32's {ref['top1']:.3f} "
                f"on {fid['labelled']} labelled held-out clips{split}, more than --max-drop {gate.max_drop:g} {tail}")
    if not labelled and not isinstance(sqnr, str) and sqnr < gate.min_sqnr_db:
        return (f"logit SQNR {sqnr_text} dB against fp32 is below --min-sqnr {gate.min_sqnr_db:g} dB "
                f"(no labelled clips: the gate uses logit fidelity) {tail}")
    if gate.min_agreement is not None and fid["agreement"] < gate.min_agreement:
        return f"top-1 agreement {fid['agreement']:.3f} with fp32 is below --min-agreement {gate.min_agreement} {tail}"
    return ""


def _table(notes: dict) -> dict[str, object]:
    """The checkpoint table's row (fp32 PyTorch top-1, params, GFLOPs) kept beside the measured figure."""
    row = notes.get("accuracy_table")
    return {"table": row} if isinstance(row, dict) else {}
