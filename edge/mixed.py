"""Accuracy-aware mixed precision, the job: keep the most sensitive layers in float until
the floor is met, then keep the FASTEST measured configuration.

The floor (``quant.mixed.Floor``): with labelled held-out clips in the CalibSet
(``calib.labelled``, what ``edgevid compile --mixed`` passes for a checkpoint) and
``max_drop``, a candidate's top-1 on them may be at most ``max_drop`` below the fp32
artifact's; otherwise its top-1 agreement with fp32 on the held-out clips must reach
``min_agreement``.  Below, "fidelity" is measured on whichever clips the floor uses.

``compile_mixed(target, model, variant, workdir, calib, min_agreement)`` replaces
``target.compile`` at the int8 step of ``edge.compile.compile_variant`` (``edgevid
compile --precision int8 --mixed``) for the onnxruntime and openvino targets:

1. one fp32 ONNX export; its fp32 artifact on the same target gives the reference
   logits on the CalibSet's held-out clips and the latency baseline;
2. candidates, each a set of ONNX nodes kept float (ORT ``nodes_to_exclude``;
   NNCF ``ignored_scope`` through ``quant.openvino.ov_names``), always on top of
   the user's ``--ignore``, each compiled by the target's own quantizer and its
   top-1 agreement / cosine / SQNR measured against the fp32 artifact:

   - ``int8``: nothing more kept float;
   - ``no-depthwise``: every grouped Conv float (X3D's 3x3x3 depthwise, Ghost
     nets' cheap operations - known to lose accuracy when quantized, and the ORT
     CPU EP has no int8 grouped 3-D kernel anyway);
   - ``convs-only``: every node but Conv/Gemm/MatMul float (Swish, squeeze-
     excitation, residual adds, pools): on CPUs without VNNI the int8 elementwise
     kernels and the Q/DQ, layout reorders around them cost more than they save
     (trained X3D-XS, 2 threads, this AVX2 machine: OpenVINO 1.16x fp32 vs 1.36x
     for plain int8; ORT with ``no-depthwise`` too 1.19x vs 1.35x);
   - ``convs-only-no-depthwise``: both;
   - ``top-k``: the k most sensitive nodes (``quant.sensitivity``, ranked on the
     calibration clips, never the held-out ones) float, each with the nodes that
     read its output (so its output is not quantized for them), on top of the
     cheap candidate closest to fp32, k = 1, 2, 4, ..., all until the floor is
     met, then bisected between the last k that missed and the first that met;
     at most ``max_candidates`` candidates in all;
3. every candidate that meets the floor, and the fp32 baseline, is timed with
   ``benchmarks.harness.measure`` in ``rounds`` rotated rounds (one run, so the
   figures compare as ratios on a shared machine); the kept candidate is the one
   with the lowest median p50 - not the first found;
4. its files become the artifact in ``workdir``; ``notes.mixed`` records the
   floor, the sensitivity ranking (top rows), every candidate with its figures,
   and why the kept one won.  When no candidate meets the floor the one with the
   best agreement (then cosine) becomes the artifact, marked ``failed``, and
   ``GateFailed`` (exit 1) reports it.

The ORT candidates share one calibration (``QuantSettings.calib_cache``).  The search logic
(candidate sets, top-k growth and bisection, the choice) is :mod:`quant.mixed`.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import onnx

from benchmarks.device import fingerprint
from benchmarks.harness import BenchConfig, measure
from edge.core.errors import BadInput, GateFailed
from quant.fidelity import fidelity
from quant.mixed import MAX_CANDIDATES, RANKING_ROWS, ROUNDS, RUNS, SHAPE_OPS, TARGETS, WEIGHT_OPS, Candidate, \
    Floor, cheap_sets, choose, search
from quant.sensitivity import PROBE_CLIPS, sensitivity
from quant.settings import QuantSettings, is_depthwise, resolve_exclude
from targets.base import Artifact
from targets.onnx_io import prepare_onnx
from targets.registry import get_target

if TYPE_CHECKING:  # pragma: no cover
    from edge.core.variant import Variant
    from quant.calib import CalibSet
    from targets.base import ModelSource, Target

log = logging.getLogger(__name__)


class _Search:
    """Build and score candidates for one target (see the module docstring)."""

    def __init__(self, target: "Target", fp32_onnx: Path, variant: "Variant", calib: "CalibSet",
                 ref: np.ndarray, tmp: Path) -> None:
        self.target, self.fp32_onnx, self.variant, self.calib, self.ref, self.tmp = \
            target, fp32_onnx, variant, calib, ref, tmp
        settings = getattr(target.options, "quant", None) or QuantSettings()
        self.settings = replace(settings, exclude=(), calib_cache=str(tmp / "ort-ranges.json"))
        self.candidates: list[Candidate] = []
        self.dirs: dict[str, Path] = {}

    def clips(self) -> tuple[Any, Sequence[int | None]]:
        """The clips candidates are scored on: the labelled held-out clips when the
        CalibSet carries them (top-1 drop floor), else its held-out clips."""
        if self.calib.labelled is not None:
            return self.calib.labelled, tuple(int(y) for y in self.calib.labelled.labels)
        return self.calib.held_out, self.calib.held_out_labels

    def build(self, name: str, exclude: Sequence[str]) -> Candidate:
        exclude = tuple(dict.fromkeys(exclude))
        for c in self.candidates:  # the same float set was tried already
            if set(c.exclude) == set(exclude):
                return c
        opts = replace(self.target.options, quant=replace(self.settings, exclude=exclude))
        tgt = get_target(self.target.name, opts)
        out = self.tmp / f"c{len(self.candidates)}"
        clips, labels = self.clips()
        try:
            art = tgt.compile(self.fp32_onnx, self.variant, out, calib=self.calib)
            runner = tgt.load(art)
            try:
                got = np.concatenate([runner(c) for c in clips])
            finally:
                runner.close()
        except (BadInput, GateFailed, RuntimeError, ValueError) as e:  # recorded; the search goes on
            cand = Candidate(name, exclude, error=str(e).splitlines()[0])
        else:
            fid = fidelity(self.ref, got, labels)
            drop = None if fid.top1_fp32 is None or self.calib.labelled is None else fid.top1_fp32 - fid.top1_int8
            cand = Candidate(name, exclude, fid.agreement, fid.cosine, fid.sqnr_db, top1_drop=drop)
            self.dirs[name] = out
        log.info("mixed: %s (%d float nodes): agreement %s, top-1 drop %s", name, len(exclude), cand.agreement,
                 cand.top1_drop)
        self.candidates.append(cand)
        return cand


def time_artifacts(paths: dict[str, Path], threads: int | None, rounds: int = ROUNDS,
                   runs: int = RUNS) -> dict[str, float]:
    """Median over ``rounds`` rotated rounds of each artifact's harness p50 (ms)."""
    device = fingerprint()
    config = BenchConfig(runs=runs, warmup=1, threads=threads)
    names = list(paths)
    p50: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            p50[k].append(measure(paths[k], config, device).stats.p50)
    return {k: float(np.median(v)) for k, v in p50.items()}


def compile_mixed(target: "Target", model: "ModelSource", variant: "Variant", workdir: str | Path,
                  calib: "CalibSet", min_agreement: float, max_candidates: int = MAX_CANDIDATES,
                  rounds: int = ROUNDS, runs: int = RUNS, max_drop: float | None = None) -> Artifact:
    """Search mixed-precision candidates and write the kept one into ``workdir``
    (see the module docstring); ``GateFailed`` when none meets the floor: ``max_drop``
    (top-1 drop on ``calib.labelled``) when both are given, else ``min_agreement``."""
    floor = Floor(max_drop, "top1_drop") if max_drop is not None and calib.labelled is not None \
        else Floor(min_agreement)
    if target.name not in TARGETS:
        raise BadInput(f"--mixed: mixed precision is for {', '.join(TARGETS)}, not {target.name}")
    if not calib.held_out:
        raise BadInput(f"{calib.path}: --mixed needs held-out clips to measure fidelity on")
    workdir = Path(workdir)
    with tempfile.TemporaryDirectory(prefix=".mixed-", dir=workdir.parent) as tmpname:
        tmp = Path(tmpname)
        fp32_onnx, _ = prepare_onnx(model, variant, tmp / "fp32.onnx")
        fp32_variant = variant.with_(precision="fp32")
        fp32_art = target.compile(fp32_onnx, fp32_variant, tmp / "fp32")
        runner = target.load(fp32_art)
        scored_on = calib.labelled if floor.metric == "top1_drop" else calib.held_out
        try:
            ref = np.concatenate([runner(c) for c in scored_on])
        finally:
            runner.close()
        graph = onnx.load(str(fp32_onnx))
        user = getattr(target.options, "quant", None) or QuantSettings()
        base = resolve_exclude(graph, user.exclude)
        depthwise = [n.name for n in graph.graph.node if is_depthwise(n)]
        eltwise = [n.name for n in graph.graph.node if n.op_type not in WEIGHT_OPS + SHAPE_OPS]
        op_type = {n.name: n.op_type for n in graph.graph.node}
        s = _Search(target, fp32_onnx, variant, calib, ref, tmp)
        ranked: list[Any] = []
        consumers: dict[str, list[str]] = {}
        for n in graph.graph.node:
            for t in n.input:
                consumers.setdefault(t, []).append(n.name)
        by_name = {n.name: n for n in graph.graph.node}

        def ranking() -> list[list[str]]:
            plain = s.dirs.get("int8")
            qdq = plain / "model.onnx" if target.name == "onnxruntime" and plain is not None else None
            ranked.extend(sensitivity(fp32_onnx, list(calib.clips), list(calib.clips[:PROBE_CLIPS]), calib.method,
                                      qdq_onnx=qdq, calib_cache=s.settings.calib_cache))
            # a node and the nodes reading its output: excluding only the node would leave its output
            # quantized for its (quantized) consumers, and that output quantization is part of its loss
            return [[r.node, *(c for o in by_name[r.node].output for c in consumers.get(o, []))] for r in ranked]

        cands = search(s, cheap_sets(base, depthwise, eltwise), ranking, floor, max_candidates)
        timed = {c.name: s.dirs[c.name] for c in cands if c.meets(floor)}
        times = time_artifacts({"fp32": tmp / "fp32", **timed}, target.options.threads, rounds, runs) \
            if timed else {}
        cands = [replace(c, p50_ms=times.get(c.name)) for c in cands]
        baseline = times.get("fp32")
        choice = choose(cands, floor, baseline)
        if choice.best is None:
            raise GateFailed(f"{variant.tag}: --mixed: {choice.why}: "
                             + "; ".join(f"{c.name}: {c.error}" for c in cands if c.error))
        record = {
            "floor": floor.value if floor.metric == "agreement" else floor.text(),
            "measured_against": f"{target.name} fp32 artifact on {len(scored_on)} "
                                + ("labelled held-out clips" if floor.metric == "top1_drop" else "held-out clips"),
            "kept": choice.kept.name if choice.kept else None, "why": choice.why,
            "excluded_nodes": list(choice.best.exclude),
            "excluded_op_types": sorted({op_type.get(n, "?") for n in choice.best.exclude}),
            "fp32_p50_ms": baseline, "timing": f"benchmarks.harness, {rounds} rotated rounds x {runs} runs, "
                                               f"threads {target.options.threads or 'all'}",
            "ranking": [r.to_json() for r in ranked[:RANKING_ROWS]] if ranked else
            "not computed (a cheap candidate met the floor)",
            "candidates": [c.to_json(baseline) for c in cands],
        }
        for f in list(workdir.iterdir()) if workdir.exists() else []:
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        shutil.copytree(s.dirs[choice.best.name], workdir, dirs_exist_ok=True)
    art = Artifact.read(workdir)
    art = art.with_(notes={**art.notes, "mixed": record}).write()
    if choice.kept is None:
        best = choice.best
        fid = {"clips": len(scored_on), "agreement": best.agreement, "cosine": best.cosine,
               "sqnr_db": best.sqnr_db if best.sqnr_db is None or np.isfinite(best.sqnr_db) else "inf",
               "floor": floor.text(), "top1_drop": best.top1_drop,
               "measured_with": f"{target.name} fp32 artifact (mixed-precision search)"}
        art.with_(status="failed", fidelity=fid).write()
        raise GateFailed(f"{workdir}: --mixed: {choice.why}; artifact kept (the best found), marked failed")
    log.info("mixed: %s", choice.why)
    return art
