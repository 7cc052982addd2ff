"""``edgevid demo``: the main job end to end on what the repository ships.

1. inputs: the shipped MutualNet X3D-XS checkpoint (``edge/checkpoints``), the shipped
   calibration clips and the real sample video (``calib_data/shipped``);
2. a configuration grid (:class:`DemoPlan`): widths x resolutions x frames of the
   MutualNet model, one pruned variant, fp32 and int8;
3. compiled for every target available here (a target whose runtime is missing is
   skipped with a line saying why), int8 calibrated on the shipped clips with its
   fidelity recorded (``edge.sweep`` with ``edge.compile``);
4. measured with the harness into the SQLite store ``OUT/results.sqlite``;
5. the best configuration for the budget (``benchmarks.select``), with the reasons;
6. the cross-device HTML report and its Markdown summary (``benchmarks.report``);
7. the real sample video streamed through the run-time switcher at the budget
   (``edge.run``), on the chosen configuration's target.

Resumable: the store and the artifacts are the state.  A rerun (after Ctrl-C or
a kill) reuses every artifact that verifies and measures only what the store
lacks; the pruned checkpoint is reused when present.  Everything goes under
``OUT`` (default ``./edgevid-demo``).

Accuracy figures: every artifact, fp32 and int8, is run on the checkpoint's 300
labelled held-out synthetic clips (``edge.heldout``: regenerated, the set of the
checkpoint's table in ``edge/checkpoints/README.md``) by ``edge.compile``; its
top-1, clip count and 95% interval go into artifact.json and, with each
measurement, into the store (``top1``, ``top1_low``, ``top1_high``,
``top1_clips``).  An int8 artifact more than ``max_drop`` below fp32's top-1 on
those clips is refused and listed.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

SHIPPED_CKPT = Path(__file__).resolve().parent / "checkpoints" / "x3d_xs_mutual_synth10.pt"
SHIPPED_PRUNED = Path(__file__).resolve().parent / "checkpoints" / "x3d_xs_pruned30_synth10.pt"
MODEL = "x3d_xs"
DB_FILE = "results.sqlite"


@dataclass(frozen=True)
class TargetPlan:
    """What one target compiles: the precisions, and optionally a subset of the grid
    (``configs``: SlimConfig tags such as ``w0.25-r96-f4``; empty = every one)."""

    precisions: tuple[str, ...] = ("fp32", "int8")
    configs: tuple[str, ...] = ()
    pruned: bool = True
    hard_activations: bool = False  # fpga: Swish/Sigmoid lowered to ReLU6-based approximations
    runs: int | None = None         # timed calls, when the target is slower than the plan's default
    max_drop: float | None = None   # the plan's int8 gate unless given


@dataclass(frozen=True)
class DemoPlan:
    """The grid and the measurement settings of one demo run."""

    name: str
    widths: tuple[float, ...]
    resolutions: tuple[int, ...]
    frames: tuple[int, ...]
    prune: float                       # FLOPs cut of the pruned variant (of the full configuration); 0: none
    targets: dict[str, TargetPlan]
    runs: int = 10
    warmup: int = 2
    isolate: bool = True
    calib_clips: int = 32
    held_out: int = 16                 # calibration clips held out (fidelity only where no labelled clips exist)
    max_drop: float = 0.02             # int8 more than 2 top-1 points below fp32 is refused (and listed)
    budget_ms: float = 40.0
    stat: str = "p90"
    run_clips: int = 24                # clips of the sample video streamed by the run step
    jobs: int = 2

    def configs(self) -> list[str]:
        from edge.models.slim import config_grid

        return [c.tag for c in config_grid(self.widths, self.resolutions, self.frames)]


PLANS: dict[str, DemoPlan] = {
    "full": DemoPlan(
        "full", widths=(0.25, 0.5, 0.75, 1.0), resolutions=(96, 128), frames=(4, 8), prune=0.3,
        targets={
            "onnxruntime": TargetPlan(),
            "openvino": TargetPlan(),
            "tflite": TargetPlan(("fp32", "int8"), configs=("w0.25-r96-f4", "w1.0-r128-f8"), pruned=False),
            "fpga": TargetPlan(("int8",), configs=("w0.25-r96-f4",), pruned=False, hard_activations=True, runs=3,
                               max_drop=1.0),  # hard activations change the function: measured, not gated
            "tensorrt": TargetPlan(),
        }),
    "quick": DemoPlan(
        "quick", widths=(0.25, 0.5, 1.0), resolutions=(96,), frames=(4,), prune=0.0,
        targets={
            "onnxruntime": TargetPlan(),
            "openvino": TargetPlan(("fp32",)),
            "tensorrt": TargetPlan(),
        },
        runs=5, warmup=1, isolate=False, calib_clips=8, held_out=8, run_clips=8),
}


@dataclass(frozen=True)
class DemoPaths:
    """Where a demo run keeps everything."""

    out: Path

    @property
    def db(self) -> Path:
        return self.out / DB_FILE

    @property
    def artifacts(self) -> Path:
        return self.out / "artifacts"

    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoints"

    @property
    def report(self) -> Path:
        return self.out / "report.html"

    @property
    def summary(self) -> Path:
        return self.out / "demo.json"


def check_writable(out: Path) -> None:
    """``BadInput`` naming ``out`` when it cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise BadInput(f"{out}: output directory is not writable ({e.strerror or e})") from None


def sample_video() -> Path:
    """The shipped real-world clip (``calib_data/shipped/real``)."""
    import calib_data

    videos = sorted((calib_data.shipped_manifest().parent / "real").glob("*.mp4"))
    if not videos:
        raise BadInput(f"{calib_data.shipped_manifest().parent / 'real'}: no sample video shipped")
    return videos[0]


def pruned_checkpoint(plan: DemoPlan, paths: DemoPaths) -> Path | None:
    """The pruned variant's checkpoint: the shipped fine-tuned one when it matches the
    plan's ratio, else pruned here from the MutualNet checkpoint (prune only, no
    fine-tune: its accuracy is then unknown) and kept in ``OUT/checkpoints``."""
    if plan.prune <= 0:
        return None
    if SHIPPED_PRUNED.is_file():
        from edge.checkpoint import load_checkpoint

        info = load_checkpoint(SHIPPED_PRUNED).meta.get("prune") or {}
        if abs(float(info.get("ratio", -1)) - plan.prune) < 1e-6:
            return SHIPPED_PRUNED
    path = paths.ckpt / f"{MODEL}-p{plan.prune}.pt"
    if not path.is_file():
        from edge.prune import prune_job

        log.info("pruning %s by %.0f%% of its FLOPs (no fine-tune)", MODEL, plan.prune * 100)
        # prefix: a MutualNet checkpoint ranks its channels by width (the narrow sub-networks are the
        # first channels); BN re-estimated on the shipped clips; no fine-tune here (benchmarks/studies/prune_accuracy)
        prune_job(MODEL, str(SHIPPED_CKPT), plan.prune, path, epochs=0, resolution=max(plan.resolutions),
                  frames=max(plan.frames), criterion="prefix", recal_clips=64)
    return path


def sweeps(plan: DemoPlan, paths: DemoPaths, device: str | None, pruned: Path | None) -> list[Any]:
    """One ``SweepConfig`` per (target, model source) of the plan."""
    from edge.sweep import SweepConfig
    from edge.models.slim import SlimConfig

    base = dict(path=paths.out / "demo", model=(MODEL,), runs=plan.runs, warmup=plan.warmup, out=paths.artifacts,
                device=device, rounds=1, isolate=plan.isolate, calib_clips=plan.calib_clips, held_out=plan.held_out,
                calib_mode="uniform", max_drop=plan.max_drop, jobs=plan.jobs, threads=None)
    out = []
    for target, tp in plan.targets.items():
        common = dict(base, target=(target,), precision=tp.precisions, hard_activations=tp.hard_activations,
                      runs=tp.runs or plan.runs,
                      max_drop=plan.max_drop if tp.max_drop is None else tp.max_drop)
        if tp.configs:
            groups = [SlimConfig.parse(t) for t in tp.configs]
            for c in groups:  # a subset: one sweep per configuration (the sweep grid is a product)
                out.append(SweepConfig(**common, width=(c.width,), resolution=(c.resolution,), frames=(c.frames,),
                                       ckpt={MODEL: SHIPPED_CKPT}))
        else:
            out.append(SweepConfig(**common, width=plan.widths, resolution=plan.resolutions, frames=plan.frames,
                                   ckpt={MODEL: SHIPPED_CKPT}))
        if pruned is not None and tp.pruned:
            full = max(plan.widths), max(plan.resolutions), max(plan.frames)
            # a folder of their own: the run step streams over the configurations whose accuracy is known
            out.append(SweepConfig(**{**common, "out": paths.artifacts / "pruned"}, width=(full[0],),
                                   resolution=(full[1],), frames=(full[2],), prune=(plan.prune,),
                                   ckpt={MODEL: pruned}))
    return out


def compile_all(configs: Sequence[Any], store: Any, device: Any, jobs: int, progress: bool) -> None:
    """Compile every artifact the sweeps still need to measure, in one pool of ``jobs``
    processes (each loads torch and the checkpoint once, not once per sweep)."""
    from tqdm import tqdm

    from edge.sweep import artifact_dir, build_all, refused_before, reusable

    todo = []
    for cfg in configs:
        for cell in cfg.cells():
            if store.measurement_count(device, cell.target, cell.threads, variant=cell.variant.tag, limit=1) >= 1:
                continue
            job = (cfg, cell.variant, cell.target)
            folder = artifact_dir(cfg, cell.variant, cell.target)
            if job in todo or refused_before(folder, cell.variant, cell.target, cfg.gate) is not None:
                continue
            if reusable(folder, cell.variant, cell.target) is None:
                todo.append(job)
    with tqdm(total=len(todo), desc="compile", unit="artifact", disable=not progress, dynamic_ncols=True) as bar:
        for (_, variant, target), built in build_all(todo, jobs, bar):
            if not built.ok:
                log.warning("%s on %s: %s", variant.tag, target, built.reason)
            bar.update(1)


def measured_accuracy(artifacts: Path) -> int:
    """How many artifacts below ``artifacts`` carry a measured top-1 (the store got each one
    with its measurement)."""
    from targets.base import Artifact

    n = 0
    for path in sorted(artifacts.glob("**/artifact.json")):
        try:
            acc = Artifact.read(path.parent, verify=False).notes.get("accuracy")
        except BadInput as e:
            log.warning("%s: unreadable (%s)", path.parent, e)
            continue
        n += isinstance(acc, dict) and isinstance(acc.get("top1"), (int, float))
    return n


def run_demo(plan: DemoPlan, out: str | Path, device: str | None = None, progress: bool = True,
             budget_ms: float | None = None) -> dict[str, Any]:
    """Every step of the demo (module doc); returns the summary also written to ``OUT/demo.json``."""
    from benchmarks.device import fingerprint
    from benchmarks.select import Budget, select
    from benchmarks.store import Store
    from edge.sweep import run_sweep
    from targets.registry import get_target

    t0 = time.time()
    paths = DemoPaths(Path(out))
    check_writable(paths.out)
    plan = plan if budget_ms is None else replace(plan, budget_ms=budget_ms)
    budget = Budget(plan.budget_ms, plan.stat)
    video = sample_video()
    steps: dict[str, float] = {}

    skipped_targets = {}
    for name in plan.targets:
        tgt = get_target(name)
        if not tgt.available():
            skipped_targets[name] = tgt.unavailable_reason() or f"{name} runtime not available"
            log.warning("skipping target %s: %s", name, skipped_targets[name])
    live = {k: v for k, v in plan.targets.items() if k not in skipped_targets}
    plan = replace(plan, targets=live)

    t = time.time()
    pruned = pruned_checkpoint(plan, paths)
    steps["prune"] = time.time() - t
    info = fingerprint(device)
    cells: list[Any] = []
    t = time.time()
    configs = sweeps(plan, paths, device, pruned)
    with Store(paths.db) as store:
        compile_all(configs, store, info, plan.jobs, progress)
        steps["compile"] = time.time() - t
        t = time.time()
        for cfg in configs:  # every artifact is there now: the sweeps reuse them and measure
            res = run_sweep(replace(cfg, jobs=1), store, info, progress=progress)
            cells += list(res.cells)
        steps["bench"] = time.time() - t
        n_acc = measured_accuracy(paths.artifacts)
        t = time.time()
        sel = select(store, budget, info.name, "top1")
        selection = sel.to_json()
        from benchmarks.report import write_report

        report = write_report(store, paths.report, metric="top1")
        steps["select+report"] = time.time() - t
    chosen = selection.get("chosen")
    run = None
    t = time.time()
    if chosen is not None:
        run = stream_sample(video, paths, chosen["target"], plan, device)
    steps["run"] = time.time() - t
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    summary = {
        "plan": plan.name, "out": str(paths.out), "db": str(paths.db), "device": info.name,
        "budget": budget.to_json(), "video": str(video), "skipped_targets": skipped_targets,
        "cells": [c.to_json() for c in cells], "counts": counts, "accuracy_figures": n_acc,
        "selection": selection, "report": report, "run": run, "seconds": round(time.time() - t0, 1),
        "steps_s": {k: round(v, 1) for k, v in steps.items()},
        "pruned_ckpt": None if pruned is None else str(pruned),
    }
    tmp = paths.summary.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, paths.summary)
    return summary


def stream_sample(video: Path, paths: DemoPaths, target: str, plan: DemoPlan, device: str | None) -> dict[str, Any]:
    """Stream ``video`` through the switcher over ``target``'s artifacts at the plan's budget."""
    from edge.run import default_window, open_switcher, stream, summarize
    from edge.switch import SwitchConfig

    setup = open_switcher(paths.artifacts / target, SwitchConfig(plan.budget_ms), db=paths.db, device=device)
    try:
        window = default_window(setup, None)
        results = list(stream(str(video), setup, window, max(1, window // 2), plan.run_clips))
        summary = summarize(results, setup)
    finally:
        setup.close()
    return {"target": target, "window": window, "stride": max(1, window // 2),
            "clips": [r.to_json() for r in results],
            "summary": summary.to_json()}
