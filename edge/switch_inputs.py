"""What a ``Switcher`` is built from (the setup of ``edgevid run``), before any runner loads:

1. artifacts: every ``artifact.json`` below the folder (the layout of ``edgevid
   sweep``/``compile``), hashes checked; ones that cannot run here (failed
   build, absent runtime) are skipped with a warning; they must agree on the
   classes (output size, and ``notes["labels"]``/``notes["classes"]`` when given);
2. latency (p90 ms) per artifact: the result store's pooled measurements of the
   same target/variant on this device (``benchmarks.configs.configurations``,
   preferring the same thread count and artifact), else a short measurement now
   with ``benchmarks.harness`` (``measure_runs`` calls);
3. accuracy per artifact: ``notes["accuracy"]`` (a top-1 fraction, or a dict
   with "top1"), else the ``--accuracy`` JSON file (keys: variant tag,
   ``TARGET:VARIANT`` or artifact folder), else the store's "top1"; when any
   artifact has none, every artifact gets the proxy: its GFLOPs rank / n.

Imports no torch.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks.agent import find_artifacts
from benchmarks.harness import BenchConfig, measure, skip_reason
from edge.core.errors import BadInput
from edge.core.io import read_json
from edge.switch import Candidate
from targets.base import Artifact

log = logging.getLogger(__name__)

MEASURE_RUNS = 10
WARMUP_CALLS = 2


@dataclass(frozen=True)
class RunPlan:
    """What a run switches between, before any runner is loaded: the runnable artifacts
    and their candidates (same order), the shared classes, the skipped artifacts."""

    artifacts: tuple[Artifact, ...]
    candidates: tuple[Candidate, ...]
    num_classes: int
    labels: tuple[str, ...] | None
    skipped: tuple[Mapping[str, str], ...]
    threads: int


def plan_run(folder: str | Path, db: str | Path | None = None, device: str | None = None,
             accuracy_file: str | Path | None = None, threads: int | None = None,
             measure_runs: int = MEASURE_RUNS) -> RunPlan:
    """Read every runnable artifact below ``folder`` and give each its latency and accuracy
    (steps 1-3 of the module docstring).  Call it inside the CPU affinity of the run."""
    threads = BenchConfig(threads=threads).resolved_threads()
    arts, skipped = runnable_artifacts(folder)
    num_classes, labels = check_classes(arts)
    shapes = [_input_of(a) for a in arts]
    table = read_accuracy_file(accuracy_file) if accuracy_file is not None else {}
    stored_lat, stored_acc = stored_figures(arts, db, device, threads)
    latency = [stored_lat.get(str(a.path)) or measure_now(a, threads, measure_runs, device) for a in arts]
    acc, acc_src, gflops = accuracies(arts, table, stored_acc)
    candidates = [Candidate(name, a.variant, a.target, str(a.path), f, r, ms, lsrc, ac, asrc, g)
                  for name, a, (f, r), (ms, lsrc), ac, asrc, g
                  in zip(_names(arts), arts, shapes, latency, acc, acc_src, gflops)]
    return RunPlan(tuple(arts), tuple(candidates), num_classes, labels, tuple(skipped), threads)


# ----------------------------------------------------------------------------- artifacts

def runnable_artifacts(folder: str | Path) -> tuple[list[Artifact], list[dict[str, str]]]:
    """(artifacts that can run here, skipped ones with the reason)."""
    arts, skipped = [], []
    for path in find_artifacts([folder]):
        art = Artifact.read(path, verify=True)
        reason = skip_reason(art)
        if reason:
            log.warning("%s: skipped: %s", path, reason)
            skipped.append({"artifact": str(path), "reason": reason})
        else:
            arts.append(art)
    if not arts:
        raise BadInput(f"{folder}: no artifact below it can run here ({len(skipped)} skipped: "
                       + "; ".join(s["reason"] for s in skipped[:3]) + ")")
    return arts, skipped


def _labels(art: Artifact) -> tuple[str, ...] | None:
    labels = art.notes.get("labels", art.notes.get("classes"))
    return tuple(str(x) for x in labels) if isinstance(labels, (list, tuple)) else None


def check_classes(arts: Sequence[Artifact]) -> tuple[int, tuple[str, ...] | None]:
    """(number of classes, class names or None); ``BadInput`` when artifacts disagree."""
    first = arts[0]
    n, labels = int(first.output.shape[-1]), _labels(first)
    for art in arts[1:]:
        if int(art.output.shape[-1]) != n:
            raise BadInput(f"{art.path}: {art.output.shape[-1]} classes, but {first.path} has {n}; "
                           "configurations of one run must share the classes")
        other = _labels(art)
        if labels is not None and other is not None and other != labels:
            raise BadInput(f"{art.path}: class labels differ from those of {first.path}; "
                           "configurations of one run must share the classes")
        labels = labels or other
    if labels is not None and len(labels) != n:
        raise BadInput(f"{first.path}: {len(labels)} labels for {n} output classes")
    return n, labels


def _input_of(art: Artifact) -> tuple[int, int]:
    shape = tuple(art.input.shape)
    if len(shape) != 5 or shape[0] != 1 or shape[1] != 3 or shape[3] != shape[4]:
        raise BadInput(f"{art.path}: input {shape} is not a clip (1, 3, T, R, R) with a square crop")
    return int(shape[2]), int(shape[3])


def _names(arts: Sequence[Artifact]) -> list[str]:
    """Variant tags, with the target where a tag repeats, and the folder where that repeats too."""
    tags = Counter(a.variant for a in arts)
    names = [a.variant if tags[a.variant] == 1 else f"{a.target}:{a.variant}" for a in arts]
    again = Counter(names)
    return [n if again[n] == 1 else f"{n}@{a.path.name}" for n, a in zip(names, arts)]


# ----------------------------------------------------------------------------- accuracy

def _top1(value: Any, where: str) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("top1")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        raise BadInput(f"{where}: accuracy must be a top-1 fraction in [0, 1] (or a dict with 'top1'), got {value!r}")
    return float(value)


def read_accuracy_file(path: str | Path) -> dict[str, float]:
    """An ``--accuracy`` file: a JSON object mapping a variant tag, ``TARGET:VARIANT`` or an
    artifact folder to a top-1 fraction (or a dict with "top1")."""
    path = Path(path)
    data = read_json(path, "accuracy file")
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object mapping variant tags to top-1 fractions")
    out = {}
    for key, value in data.items():
        top1 = _top1(value, f"{path} [{key}]")
        if top1 is not None:
            out[str(key)] = top1
    return out


def _gflops(art: Artifact) -> float:
    """Multiply-adds (G) of the artifact's ONNX graph, else a shape-only estimate
    (width^2 x resolution^2 x frames, in arbitrary units) for non-ONNX models."""
    if art.model_file.endswith(".onnx"):
        try:
            from benchmarks.features import onnx_file_features

            return onnx_file_features(art.model_path).total_macs / 1e9
        except ImportError:
            pass
    from edge.core.variant import Variant

    v = Variant.from_tag(art.variant)
    return v.width ** 2 * v.resolution ** 2 * v.frames * 1e-6


def accuracies(arts: Sequence[Artifact], table: Mapping[str, float], stored: Mapping[str, float]
               ) -> tuple[list[float], list[str], list[float | None]]:
    """(accuracy, its source, GFLOPs or None) per artifact (see the module docstring)."""
    acc: list[float | None] = []
    src: list[str] = []
    for art in arts:
        value, how = _top1(art.notes.get("accuracy"), f"{art.path / 'artifact.json'} notes.accuracy"), "artifact"
        if value is None:
            keys = (str(art.path), str(art.path.resolve()), f"{art.target}:{art.variant}", art.variant)
            value, how = next(((table[k], "file") for k in keys if k in table), (None, ""))
        if value is None and str(art.path) in stored:
            value, how = stored[str(art.path)], "store"
        acc.append(value)
        src.append(how)
    if all(a is not None for a in acc):
        return [float(a) for a in acc if a is not None], src, [None] * len(arts)
    missing = [a.variant for a, v in zip(arts, acc) if v is None]
    log.warning("no accuracy for %s; ranking every configuration by GFLOPs instead (proxy)", ", ".join(missing))
    gflops = [_gflops(a) for a in arts]
    order = sorted(set(gflops))
    return ([(order.index(g) + 1) / len(order) for g in gflops], ["proxy: GFLOPs rank"] * len(arts),
            list(gflops))


# ----------------------------------------------------------------------------- latency

def stored_figures(arts: Sequence[Artifact], db: str | Path | None, device: str | None, threads: int
                   ) -> tuple[dict[str, tuple[float, str]], dict[str, float]]:
    """From the result store: ({artifact path: (p90 ms, source)}, {artifact path: top-1}).
    ``db`` None: the default store when it exists.  A store without measurements of
    this device gives nothing (``device`` named explicitly: ``BadInput``)."""
    from benchmarks.record import artifact_digest
    from benchmarks.configs import configurations, resolve_device
    from benchmarks.store import Store, default_path

    if db is None and not default_path().is_file():
        return {}, {}
    with Store(db if db is not None else default_path(), create=False) as store:
        try:
            dev = resolve_device(store, device)
        except BadInput as e:
            if device is not None:
                raise
            log.info("result store has no latencies for this device (%s); measuring instead", e)
            return {}, {}
        configs = configurations(store, dev)
    lat, acc = {}, {}
    for art in arts:
        same = [c for c in configs if (c.target, c.variant) == (art.target, art.variant)]
        if not same:
            continue
        sha = artifact_digest(art.files)
        best = max(same, key=lambda c: (c.threads == threads, c.artifact_sha256 == sha, c.measurements))
        lat[str(art.path)] = (best.stats.p90, f"store: {dev.name}, {best.measurements} measurement(s), "
                                              f"{best.threads} thread(s)")
        if "top1" in best.accuracy:
            acc[str(art.path)] = best.accuracy["top1"]
    return lat, acc


def measure_now(art: Artifact, threads: int, runs: int, device_name: str | None) -> tuple[float, str]:
    """p90 ms of a short harness measurement of ``art`` (``runs`` calls after 2 warm-up calls)."""
    from benchmarks.device import fingerprint

    rec = measure(art, BenchConfig(runs=runs, warmup=WARMUP_CALLS, threads=threads), fingerprint(device_name))
    return rec.stats.p90, f"measured at load: {runs} calls, {threads} thread(s)"
