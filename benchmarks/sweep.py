"""Sweep: compile and measure a grid of configurations into the result store, resumably.

``edgevid sweep --config SWEEP.toml [--db DB] [--device NAME]``.  The TOML file
lists values per axis (a single value may be given bare); the grid is their
product::

    model = ["x3d_xs"]
    width = [0.5, 0.75, 1.0]
    resolution = [112, 160]     # absent: each model's default
    frames = [4]                # absent: each model's default
    precision = ["fp32", "int8"]
    prune = [0.0]
    target = ["onnxruntime", "openvino"]
    threads = [1, 2]            # absent: the CPUs this process may use

    runs = 20                   # timed calls per configuration (harness)
    warmup = 3                  # warm-up calls
    warmup_s = 0.0              # ... and at least this many seconds
    min_time = 0.0              # timed calls for at least this many seconds too
    out = "sweep-artifacts"     # artifact folder, relative to this file
    device = "my-box"           # device name (default: the hostname; --device wins)
    rotate = true               # measurement order: see below
    rounds = 1                  # measurements per configuration, one per round (see below)
    seed = 0                    # the benchmark clip's seed
    isolate = true              # measure each configuration in a fresh process (honest peak memory:
                                # the sweep process holds torch after compiling)

    calib_clips = 32            # int8: calibration clips (shipped calibration set) ...
    held_out = 16               # ... and held-out clips for the fidelity gate
    calib_mode = "stride"       # frame sampling of those clips: "stride" (X3D) or "uniform"
    min_agreement = 0.99        # int8 fidelity floor (top-1 agreement with fp32); below it: skipped
    jobs = 1                    # compile in this many processes at once (measuring is always serial)
    onnx_cache = true           # export each checkpoint configuration to ONNX once, for every
                                # ONNX-fed target and precision (out/onnx-cache)
    hard_activations = false    # fpga: lower Swish/Sigmoid to ReLU6-based approximations

    [ckpt]                      # optional: checkpoint per model (default: untrained weights)
    x3d_xs = "ckpt/x3d_xs.pt"

An unknown key, or a value an axis cannot take, raises ``BadInput`` naming the
file, the axis and the value.

Phases: (1) every (variant, target) with a configuration still to measure is
compiled with ``edge.compile.compile_variant`` into ``out/TARGET/VARIANT_TAG``,
or an artifact already there is reused when it reads back and its sha256
hashes verify; (2) each configuration (variant x target x threads) with fewer
than ``rounds`` measurements on this device is measured with
``benchmarks.harness`` and stored, one transaction each.  Measurements go in
rounds: round r measures every configuration that has at most r measurements,
so with ``rounds`` > 1 each configuration is measured several times, minutes
apart, and readers pool them (``benchmarks.select.configurations``): a burst of
other work on the machine then skews one round of every configuration, not all
of one.  ``rotate``: the order within a round interleaves the targets (variant
1 on every target, then variant 2, ...), rotates which target goes first from
one variant to the next, and starts each round at a different configuration,
so no target is always measured first or last and slow drift of the machine
spreads over every target alike; without it, the grid order (target-major).

Resumable: killed at any point (SIGKILL included), a rerun measures only what is
missing.  Stored measurements are committed whole or not at all
(``benchmarks.store``); artifacts appear only complete (compile_variant builds
in a temporary folder and renames it); a configuration counts as done when the
store holds ``rounds`` measurements of it on this device
(``Store.measurement_count``).

Skipped with the reason (printed, and written to ``out/sweep.json`` with every
configuration's status): targets whose runtime is absent here, and
configurations the compiler refuses (``BadInput``/``GateFailed``: e.g. a
precision a target does not support yet, operators a target cannot run).  An
unexpected error in one configuration is recorded as "failed" and the sweep
goes on.  Torch is imported only when something has to be compiled.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from benchmarks.device import DeviceInfo
from benchmarks.harness import BenchConfig, measure
from benchmarks.record import dumps
from benchmarks.store import Store
from edge.core.errors import BadInput, GateFailed
from edge.models.registry import MODELS
from edge.core.variant import PRECISIONS, Variant
from targets.base import Artifact
from targets.registry import TARGETS, get_target

log = logging.getLogger(__name__)

AXES: tuple[str, ...] = ("model", "width", "resolution", "frames", "precision", "prune", "target", "threads")
SETTINGS: dict[str, type | tuple[type, ...]] = {
    "runs": int, "warmup": int, "warmup_s": (int, float), "min_time": (int, float), "out": str, "device": str,
    "rotate": bool, "rounds": int, "seed": int, "isolate": bool, "ckpt": dict,
    "calib_clips": int, "held_out": int, "calib_mode": str, "min_agreement": (int, float), "jobs": int,
    "onnx_cache": bool, "hard_activations": bool,
}
STATUS_FILE = "sweep.json"


@dataclass(frozen=True)
class Cell:
    """One configuration of the grid: a variant on a target at a thread count."""

    variant: Variant
    target: str
    threads: int

    @property
    def key(self) -> str:
        return f"{self.target}/{self.variant.tag}/t{self.threads}"


@dataclass(frozen=True)
class SweepConfig:
    """A parsed sweep file.  ``resolution``/``frames`` None: each model's default;
    ``threads`` None: the harness default (the CPUs this process may use)."""

    path: Path
    model: tuple[str, ...]
    width: tuple[float, ...] = (1.0,)
    resolution: tuple[int, ...] | None = None
    frames: tuple[int, ...] | None = None
    precision: tuple[str, ...] = ("fp32",)
    prune: tuple[float, ...] = (0.0,)
    target: tuple[str, ...] = ("onnxruntime",)
    threads: tuple[int, ...] | None = None
    runs: int = 20
    warmup: int = 3
    warmup_s: float = 0.0
    min_time: float = 0.0
    out: Path = Path("sweep-artifacts")
    device: str | None = None
    rotate: bool = True
    rounds: int = 1
    seed: int = 0
    isolate: bool = True
    ckpt: Mapping[str, Path] = field(default_factory=dict)
    calib_clips: int = 32
    held_out: int = 16
    calib_mode: str = "stride"
    min_agreement: float = 0.99
    jobs: int = 1
    onnx_cache: bool = True
    hard_activations: bool = False

    def bench_config(self, threads: int | None) -> BenchConfig:
        return BenchConfig(runs=self.runs, warmup=self.warmup, warmup_s=self.warmup_s, min_time_s=self.min_time,
                           threads=threads, seed=self.seed, isolate=self.isolate)

    def variants(self) -> list[Variant]:
        """The model x width x resolution x frames x precision x prune product, grid order, unique."""
        out: list[Variant] = []
        for model in self.model:
            info = MODELS[model]
            for w, r, f, p, q in itertools.product(self.width, self.resolution or (info.resolution,),
                                                   self.frames or (info.frames,), self.precision, self.prune):
                try:
                    v = Variant(model, w, r, f, p, q)
                except BadInput as e:
                    raise BadInput(f"{self.path}: {e}") from None
                if v not in out:
                    out.append(v)
        return out

    def cells(self) -> list[Cell]:
        """Every configuration in grid order: target-major, then variants, then threads."""
        threads = self.threads or (BenchConfig().resolved_threads(),)
        return [Cell(v, t, n) for t in self.target for v in self.variants() for n in threads]


# ----------------------------------------------------------------------------- parsing

def _bad(path: Path, axis: str, value: Any, why: str) -> BadInput:
    return BadInput(f"{path}: axis {axis!r}: value {value!r} {why}")


def _axis(path: Path, doc: Mapping[str, Any], axis: str, check: Callable[[Any], Any]) -> tuple[Any, ...] | None:
    if axis not in doc:
        return None
    raw = doc[axis]
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise BadInput(f"{path}: axis {axis!r} is an empty list")
    out: list[Any] = []
    for v in values:
        c = check(v)
        if c not in out:
            out.append(c)
    return tuple(out)


def _positive_int(path: Path, axis: str) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise _bad(path, axis, v, "is not a positive integer")
        return v
    return check


def _number_in(path: Path, axis: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
            span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise _bad(path, axis, v, f"is not a number in {span}")
        return float(v)
    return check


def _one_of(path: Path, axis: str, valid: Sequence[str]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in valid:
            raise _bad(path, axis, v, f"is not valid; valid values: {', '.join(valid)}")
        return v
    return check


def load_config(path: str | Path) -> SweepConfig:
    """Parse and validate a sweep file (see the module docstring)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read the sweep file ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: not valid TOML ({e})") from None
    unknown = [k for k in doc if k not in AXES and k not in SETTINGS]
    if unknown:
        raise BadInput(f"{path}: unknown axis or setting {unknown[0]!r}; axes: {', '.join(AXES)}; settings: "
                       f"{', '.join(SETTINGS)}")
    if "model" not in doc:
        raise BadInput(f"{path}: axis 'model' is required (e.g. model = [\"x3d_xs\"])")
    for key, kind in SETTINGS.items():
        if key in doc and (not isinstance(doc[key], kind) or (kind is int and isinstance(doc[key], bool))):
            raise BadInput(f"{path}: setting {key!r}: value {doc[key]!r} is not a {getattr(kind, '__name__', 'number')}")
    axes: dict[str, Any] = {
        "model": _axis(path, doc, "model", _one_of(path, "model", list(MODELS))),
        "width": _axis(path, doc, "width", _number_in(path, "width", 0.0, 1.0, True, False)),
        "resolution": _axis(path, doc, "resolution", _positive_int(path, "resolution")),
        "frames": _axis(path, doc, "frames", _positive_int(path, "frames")),
        "precision": _axis(path, doc, "precision", _one_of(path, "precision", PRECISIONS)),
        "prune": _axis(path, doc, "prune", _number_in(path, "prune", 0.0, 1.0, False, True)),
        "target": _axis(path, doc, "target", _one_of(path, "target", list(TARGETS))),
        "threads": _axis(path, doc, "threads", _positive_int(path, "threads")),
    }
    ckpt = {}
    for model, p in doc.get("ckpt", {}).items():
        if model not in MODELS:
            raise _bad(path, "ckpt", model, f"is not a model; valid models: {', '.join(MODELS)}")
        if not isinstance(p, str):
            raise _bad(path, "ckpt", p, "is not a path")
        ckpt[model] = path.parent / p
    settings = {k: doc[k] for k in SETTINGS if k in doc and k != "ckpt"}
    if "out" in settings:
        settings["out"] = path.parent / settings["out"]
    else:
        settings["out"] = path.parent / "sweep-artifacts"
    for key in ("warmup_s", "min_time", "min_agreement"):
        if key in settings:
            settings[key] = float(settings[key])
    config = SweepConfig(path=path, **{k: v for k, v in axes.items() if v is not None}, **settings,
                         ckpt=ckpt)  # type: ignore[arg-type]
    for key in ("rounds", "jobs", "calib_clips", "held_out"):
        if getattr(config, key) < 1:
            raise BadInput(f"{path}: setting {key!r}: value {getattr(config, key)!r} is not a positive integer")
    if not 0.0 <= config.min_agreement <= 1.0:
        raise BadInput(f"{path}: setting 'min_agreement': value {config.min_agreement!r} is not in [0, 1]")
    if config.calib_mode not in ("stride", "uniform"):
        raise BadInput(f"{path}: setting 'calib_mode': value {config.calib_mode!r} is not 'stride' or 'uniform'")
    try:
        config.bench_config(None)
    except BadInput as e:
        raise BadInput(f"{path}: {e}") from None
    config.variants()  # every combination is a valid variant
    return config


# ----------------------------------------------------------------------------- running

@dataclass
class CellStatus:
    """What happened to one configuration: "measured" (now), "stored" (measured by an earlier
    run), "skipped" (with the reason), "failed" (an unexpected error, with the reason)."""

    cell: Cell
    status: str = "pending"
    reason: str = ""
    artifact: str = ""
    p50_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.cell.variant.tag, "target": self.cell.target, "threads": self.cell.threads,
                "status": self.status, "reason": self.reason, "artifact": self.artifact, "p50_ms": self.p50_ms}


@dataclass(frozen=True)
class SweepResult:
    config: Path
    db: Path
    device: DeviceInfo
    cells: tuple[CellStatus, ...]
    compiled: int
    reused: int
    seconds: float

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cells)

    def to_json(self) -> dict[str, Any]:
        return {"config": str(self.config), "db": str(self.db), "device": self.device.to_json(),
                "compiled": self.compiled, "reused": self.reused, "seconds": round(self.seconds, 3),
                "counts": {s: self.count(s) for s in ("measured", "stored", "skipped", "failed")},
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


def refused_before(folder: Path, variant: Variant, target: str, min_agreement: float) -> str | None:
    """The refusal reason when ``folder`` holds ``variant`` for ``target`` kept as failed by the
    int8 fidelity gate at an agreement below ``min_agreement``: compiling it again gives the
    same artifact (same calibration clips, same tools).  None otherwise."""
    try:
        art = Artifact.read(folder, verify=True) if (folder / "artifact.json").is_file() else None
    except BadInput:
        return None
    if art is None or art.status != "failed" or art.target != target or art.variant != variant.tag:
        return None
    agreement = (art.fidelity or {}).get("agreement")
    if not isinstance(agreement, (int, float)) or agreement >= min_agreement:
        return None
    return (f"compile refused: int8 top-1 agreement {agreement:.3f} with fp32 is below --min-agreement "
            f"{min_agreement} (kept as failed in {folder})")


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
    path = config.out / STATUS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps({"config": str(config.path), "device": device.to_json(), "updated": time.time(),
                          "cells": [s.to_json() for s in statuses]}, indent=1))
    os.replace(tmp, path)


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
            statuses[c].status, statuses[c].reason = "skipped", f"target unavailable here: {unavailable[c.target]}"
            continue
        done[c] = store.measurement_count(device, c.target, c.threads, variant=c.variant.tag, limit=config.rounds)
        if done[c] >= config.rounds:
            statuses[c].status = "stored"
    todo = [c for c in cells if statuses[c].status == "pending"]
    builds = list(dict.fromkeys((c.variant, c.target) for c in todo))
    artifacts: dict[tuple[Variant, str], Artifact] = {}
    compiled = reused = 0
    with logging_redirect_tqdm():
        with _progress(len(builds), "compile", progress) as bar:
            jobs = [(config, v, t) for v, t in builds]
            for (_, variant, target), (art, reason, failed) in build_all(jobs, config.jobs, bar):
                if art is not None:
                    artifacts[(variant, target)] = art
                    if reason == "reused":
                        reused += 1
                    else:
                        compiled += 1
                else:
                    for c in todo:
                        if (c.variant, c.target) == (variant, target):
                            statuses[c].status, statuses[c].reason = ("failed" if failed else "skipped"), reason
                    log.warning("skipped %s on %s: %s", variant.tag, target, reason)
                _write_status(config, list(statuses.values()), device)
                bar.update(1)
        todo = [c for c in todo if statuses[c].status == "pending"]
        with _progress(sum(config.rounds - done[c] for c in todo), "bench", progress) as bar:
            for r in range(config.rounds):
                for c in measure_order(todo, config.rotate, start=r):
                    if done[c] > r or statuses[c].status in ("skipped", "failed"):
                        continue
                    bar.set_postfix_str(f"round {r + 1} {c.target} {c.variant.tag} t{c.threads}", refresh=True)
                    if _measure_cell(config, store, device, c, artifacts[(c.variant, c.target)], statuses[c]):
                        done[c] += 1
                    _write_status(config, list(statuses.values()), device)
                    bar.update(1)
    _write_status(config, list(statuses.values()), device)
    return SweepResult(config.path, store.path, device, tuple(statuses.values()), compiled, reused, time.time() - t0)


def build_all(builds: Sequence[tuple[SweepConfig, Variant, str]], jobs: int, bar: Any
              ) -> Iterator[tuple[tuple[SweepConfig, Variant, str], tuple[Artifact | None, str, bool]]]:
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
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(build, *job): job for job in builds}
        for fut in as_completed(futures):
            job = futures[fut]
            bar.set_postfix_str(f"{job[2]} {job[1].tag}", refresh=True)
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - a dead worker fails its configuration, not the sweep
                result = (None, f"compile failed: {type(e).__name__}: {e}", True)
            yield job, result


def build(config: SweepConfig, variant: Variant, target: str) -> tuple[Artifact | None, str, bool]:
    """Compile (or reuse) ``variant`` for ``target`` into :func:`artifact_dir`:
    (artifact, "reused" | "compiled", False) or (None, reason, failed?)."""
    folder = artifact_dir(config, variant, target)
    refused = refused_before(folder, variant, target, config.min_agreement)
    if refused is not None:
        return None, refused, False
    art = reusable(folder, variant, target)
    if art is not None:
        log.info("reusing %s", folder)
        return art, "reused", False
    from edge.compile import compile_variant  # torch: only when something must be compiled

    try:
        calib = None
        if variant.precision == "int8":
            from quant.calib import read_calib

            calib = read_calib(None, variant.input_shape, clips=config.calib_clips, held_out=config.held_out,
                               progress=False, mode=config.calib_mode)
        from targets.registry import TargetOptions

        options = TargetOptions(hard_activations=True) if config.hard_activations else None
        art = compile_variant(variant, target, folder, ckpt=config.ckpt.get(variant.model), options=options,
                              calib=calib, min_agreement=config.min_agreement,
                              onnx_cache=config.out / "onnx-cache" if config.onnx_cache else None)
    except (BadInput, GateFailed) as e:
        return None, f"compile refused: {str(e).splitlines()[0]}", False
    except Exception as e:  # noqa: BLE001 - one broken configuration must not end a long sweep
        log.debug("compiling %s for %s failed", variant.tag, target, exc_info=True)
        return None, f"compile failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", True
    if art.status != "ok":
        return None, f"compile produced an artifact with status {art.status!r}", True
    return art, "compiled", False


def _measure_cell(config: SweepConfig, store: Store, device: DeviceInfo, cell: Cell, art: Artifact,
                  status: CellStatus) -> bool:
    """Measure one configuration once and store it; True when a measurement was stored."""
    status.artifact = str(art.path)
    try:
        record = measure(art, config.bench_config(cell.threads), device)
    except BadInput as e:
        status.status, status.reason = "skipped", f"cannot measure: {e}"
        log.warning("skipped %s: %s", cell.key, status.reason)
        return False
    except Exception as e:  # noqa: BLE001
        log.debug("measuring %s failed", cell.key, exc_info=True)
        status.status, status.reason = "failed", f"measurement failed: {type(e).__name__}: {e}"
        log.warning("%s: %s", cell.key, status.reason)
        return False
    store.add_measurement(record, source=f"sweep:{config.path}")
    status.status, status.p50_ms = "measured", record.stats.p50
    return True
