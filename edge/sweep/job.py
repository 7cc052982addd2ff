"""Running a sweep: compile (or reuse) every artifact, then measure in rounds (see :mod:`edge.sweep`).

    run_sweep(config, store, device, progress) -> SweepResult
    build(config, variant, target) -> Built         compile_variant, or the verified artifact reused
    build_all(jobs, n_processes, bar) -> iter of (job, Built), completion order
    reusable / refused_before / artifact_dir / measure_order   the pieces the demo reuses
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterator, Sequence

from benchmarks.device import DeviceInfo
from benchmarks.harness import measure
from benchmarks.record import dumps
from benchmarks.store import Store
from edge.core.errors import BadInput, GateFailed
from edge.core.io import atomic_write_text
from edge.core.variant import Variant
from edge.sweep.config import Cell, SweepConfig
from targets.base import Artifact
from targets.registry import get_target

log = logging.getLogger(__name__)

STATUS_FILE = "sweep.json"


class CellState(StrEnum):
    """Where one configuration stands: pending, measured (now), stored (measured by an earlier run),
    skipped (with the reason), failed (an unexpected error, with the reason)."""

    PENDING = "pending"
    MEASURED = "measured"
    STORED = "stored"
    SKIPPED = "skipped"
    FAILED = "failed"


class BuildOutcome(StrEnum):
    """What :func:`build` did for one (variant, target)."""

    COMPILED = "compiled"
    REUSED = "reused"
    REFUSED = "refused"    # the compiler refused it (BadInput/GateFailed) or refused it before: skipped
    FAILED = "failed"      # an unexpected error: the configuration fails, the sweep goes on


@dataclass(frozen=True)
class Built:
    """:func:`build`'s answer: the artifact (COMPILED/REUSED), else None and the reason."""

    outcome: BuildOutcome
    artifact: Artifact | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.artifact is not None

# ----------------------------------------------------------------------------- running

@dataclass
class CellStatus:
    """What happened to one configuration (:class:`CellState`), with the reason when skipped/failed."""

    cell: Cell
    status: CellState = CellState.PENDING
    reason: str = ""
    artifact: str = ""
    p50_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.cell.variant.tag, "target": self.cell.target, "threads": self.cell.threads,
                "status": str(self.status), "reason": self.reason, "artifact": self.artifact, "p50_ms": self.p50_ms}


@dataclass(frozen=True)
class SweepResult:
    config: Path
    db: Path
    device: DeviceInfo
    cells: tuple[CellStatus, ...]
    compiled: int
    reused: int
    seconds: float

    def count(self, status: CellState | str) -> int:
        return sum(c.status == status for c in self.cells)

    def to_json(self) -> dict[str, Any]:
        return {"config": str(self.config), "db": str(self.db), "device": self.device.to_json(),
                "compiled": self.compiled, "reused": self.reused, "seconds": round(self.seconds, 3),
                "counts": {str(s): self.count(s) for s in CellState if s is not CellState.PENDING},
                "cells": [c.to_json() for c in self.cells]}


def artifact_dir(config: SweepConfig, variant: Variant, target: str) -> Path:
    return config.out / target / variant.tag


def reusable(folder: Path, variant: Variant, target: str) -> Artifact | None:
    """The artifact in ``folder`` when it is complete, verifies, and is ``variant`` on ``target``."""
    if not folder.is_dir():
        return None
    try:
        art = Artifact.read(folder, verify=True)
    except BadInput as e:
        log.warning("%s: not reusable (%s); compiling again", folder, e)
        return None
    if art.target != target or art.variant != variant.tag or art.status != "ok":
        log.warning("%s: holds %s for %s (status %s); compiling again", folder, art.variant, art.target, art.status)
        return None
    return art


def refused_before(folder: Path, variant: Variant, target: str, gate: Any) -> str | None:
    """The refusal reason when ``folder`` holds ``variant`` for ``target`` kept as failed by the
    int8 gate and its stored figures still fail ``gate`` (an ``edge.gate.Gate``): compiling
    it again gives the same artifact (same calibration clips, same tools).  None otherwise."""
    from edge.gate import verdict

    try:
        art = Artifact.read(folder, verify=True) if (folder / "artifact.json").is_file() else None
    except BadInput:
        return None
    if art is None or art.status != "failed" or art.target != target or art.variant != variant.tag:
        return None
    why = verdict(art.fidelity, gate) if art.fidelity else ""
    return f"compile refused: int8 {why} (kept as failed in {folder})" if why else None


def measure_order(cells: Sequence[Cell], rotate: bool, start: int = 0) -> list[Cell]:
    """Grid order, or (``rotate``) targets interleaved per variant with the first target
    rotating, beginning ``start`` configurations in (cyclically)."""
    if not rotate:
        return list(cells)
    targets = list(dict.fromkeys(c.target for c in cells))
    groups: dict[tuple[Variant, int], dict[str, Cell]] = {}
    for c in cells:
        groups.setdefault((c.variant, c.threads), {})[c.target] = c
    out: list[Cell] = []
    for i, by_target in enumerate(groups.values()):
        order = targets[i % len(targets):] + targets[:i % len(targets)]
        out += [by_target[t] for t in order if t in by_target]
    k = start % len(out) if out else 0
    return out[k:] + out[:k]


def _write_status(config: SweepConfig, statuses: Sequence[CellStatus], device: DeviceInfo) -> None:
    config.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config.out / STATUS_FILE, dumps({"config": str(config.path), "device": device.to_json(),
                                                       "updated": time.time(),
                                                       "cells": [s.to_json() for s in statuses]}, indent=1))


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="cfg", disable=not enabled or total == 0, dynamic_ncols=True)


def run_sweep(config: SweepConfig, store: Store, device: DeviceInfo, progress: bool = True) -> SweepResult:
    """Compile and measure every configuration of ``config`` not yet measured on ``device``."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    t0 = time.time()
    cells = config.cells()
    statuses = {c: CellStatus(c) for c in cells}
    unavailable: dict[str, str] = {}
    for t in config.target:
        tgt = get_target(t)
        if not tgt.available():
            unavailable[t] = tgt.unavailable_reason() or f"{t} runtime not available"
    done: dict[Cell, int] = {}
    for c in cells:
        if c.target in unavailable:
            statuses[c].status, statuses[c].reason = CellState.SKIPPED, f"target unavailable here: {unavailable[c.target]}"
            continue
        done[c] = store.measurement_count(device, c.target, c.threads, variant=c.variant.tag, limit=config.rounds)
        if done[c] >= config.rounds:
            statuses[c].status = CellState.STORED
    todo = [c for c in cells if statuses[c].status is CellState.PENDING]
    builds = list(dict.fromkeys((c.variant, c.target) for c in todo))
    artifacts: dict[tuple[Variant, str], Artifact] = {}
    compiled = reused = 0
    with logging_redirect_tqdm():
        with _progress(len(builds), "compile", progress) as bar:
            jobs = [(config, v, t) for v, t in builds]
            for (_, variant, target), built in build_all(jobs, config.jobs, bar):
                if built.artifact is not None:
                    artifacts[(variant, target)] = built.artifact
                    if built.outcome is BuildOutcome.REUSED:
                        reused += 1
                    else:
                        compiled += 1
                else:
                    state = CellState.FAILED if built.outcome is BuildOutcome.FAILED else CellState.SKIPPED
                    for c in todo:
                        if (c.variant, c.target) == (variant, target):
                            statuses[c].status, statuses[c].reason = state, built.reason
                    log.warning("skipped %s on %s: %s", variant.tag, target, built.reason)
                _write_status(config, list(statuses.values()), device)
                bar.update(1)
        todo = [c for c in todo if statuses[c].status is CellState.PENDING]
        with _progress(sum(config.rounds - done[c] for c in todo), "bench", progress) as bar:
            for r in range(config.rounds):
                for c in measure_order(todo, config.rotate, start=r):
                    if done[c] > r or statuses[c].status in (CellState.SKIPPED, CellState.FAILED):
                        continue
                    bar.set_postfix_str(f"round {r + 1} {c.target} {c.variant.tag} t{c.threads}", refresh=True)
                    if _measure_cell(config, store, device, c, artifacts[(c.variant, c.target)], statuses[c]):
                        done[c] += 1
                    _write_status(config, list(statuses.values()), device)
                    bar.update(1)
    _write_status(config, list(statuses.values()), device)
    return SweepResult(config.path, store.path, device, tuple(statuses.values()), compiled, reused, time.time() - t0)


def build_all(builds: Sequence[tuple[SweepConfig, Variant, str]], jobs: int, bar: Any
              ) -> Iterator[tuple[tuple[SweepConfig, Variant, str], Built]]:
    """:func:`build` every (config, variant, target), in this process or (``jobs`` > 1)
    in that many worker processes; results in completion order.  ``bar``: a tqdm bar."""
    if jobs == 1 or len(builds) < 2:
        for job in builds:
            bar.set_postfix_str(f"{job[2]} {job[1].tag}", refresh=True)
            yield job, build(*job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fork of a process holding torch's and the runtimes' thread pools can hang
    from edge.core.chatter import apply_setup, current_setup

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=apply_setup,
                             initargs=(current_setup(),)) as pool:
        futures = {pool.submit(build, *job): job for job in builds}
        for fut in as_completed(futures):
            job = futures[fut]
            bar.set_postfix_str(f"{job[2]} {job[1].tag}", refresh=True)
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - a dead worker fails its configuration, not the sweep
                result = Built(BuildOutcome.FAILED, reason=f"compile failed: {type(e).__name__}: {e}")
            yield job, result


def build(config: SweepConfig, variant: Variant, target: str) -> Built:
    """Compile (or reuse) ``variant`` for ``target`` into :func:`artifact_dir`."""
    folder = artifact_dir(config, variant, target)
    refused = refused_before(folder, variant, target, config.gate)
    if refused is not None:
        return Built(BuildOutcome.REFUSED, reason=refused)
    art = reusable(folder, variant, target)
    if art is not None:
        log.info("reusing %s", folder)
        return Built(BuildOutcome.REUSED, art)
    from edge.compile import compile_variant  # torch: only when something must be compiled

    try:
        calib = None
        if variant.precision == "int8":
            from quant.calib import default_method, read_calib

            calib = read_calib(None, variant.input_shape, clips=config.calib_clips, held_out=config.held_out,
                               progress=False, mode=config.calib_mode, method=default_method(target))
        from targets.registry import TargetOptions

        options = TargetOptions(hard_activations=True) if config.hard_activations else None
        art = compile_variant(variant, target, folder, ckpt=config.ckpt.get(variant.model), options=options,
                              calib=calib, gate=config.gate, accuracy_data=config.accuracy_data,
                              onnx_cache=config.out / "onnx-cache" if config.onnx_cache else None)
    except (BadInput, GateFailed) as e:
        return Built(BuildOutcome.REFUSED, reason=f"compile refused: {str(e).splitlines()[0]}")
    except Exception as e:  # noqa: BLE001 - one broken configuration must not end a long sweep
        log.debug("compiling %s for %s failed", variant.tag, target, exc_info=True)
        return Built(BuildOutcome.FAILED,
                     reason=f"compile failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if art.status != "ok":
        return Built(BuildOutcome.FAILED, reason=f"compile produced an artifact with status {str(art.status)!r}")
    return Built(BuildOutcome.COMPILED, art)


def _measure_cell(config: SweepConfig, store: Store, device: DeviceInfo, cell: Cell, art: Artifact,
                  status: CellStatus) -> bool:
    """Measure one configuration once and store it; True when a measurement was stored."""
    status.artifact = str(art.path)
    try:
        record = measure(art, config.bench_config(cell.threads), device)
    except BadInput as e:
        status.status, status.reason = CellState.SKIPPED, f"cannot measure: {e}"
        log.warning("skipped %s: %s", cell.key, status.reason)
        return False
    except Exception as e:  # noqa: BLE001
        log.debug("measuring %s failed", cell.key, exc_info=True)
        status.status, status.reason = CellState.FAILED, f"measurement failed: {type(e).__name__}: {e}"
        log.warning("%s: %s", cell.key, status.reason)
        return False
    store.add_measurement(record, source=f"sweep:{config.path}")
    status.status, status.p50_ms = CellState.MEASURED, record.stats.p50
    return True
