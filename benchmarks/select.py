"""Budget selection: the most accurate configuration a device can run within a budget.

``edgevid select [--db DB] [--device D] --latency-ms X [--stat p90] [--memory-mb M]
[--min-accuracy A] [--metric top1] [--explain] [--predict] [--validate] [--json]``

Candidates are the configurations (variant x target x threads; the variant
carries model, width, resolution, frames, precision and prune) stored for the
device.  A configuration's figures pool the raw samples of all its stored
measurements of its newest artifact (``configurations``); with ``--predict``
the predictor (``benchmarks.predict``) first fills in configurations measured
elsewhere or known only by their accuracy, and those count as candidates,
marked "predicted" wherever shown (a measurement always wins over a prediction
of the same configuration).

Accuracy: the store's accuracy table, metric ``top1`` by default (a figure
stored for a dataset reads ``top1@DATASET``; ``--metric`` chooses another, e.g.
``fidelity.top1_agreement``).  Configurations without the metric have unknown
accuracy: no proxy stands in; they rank after every configuration with a known
accuracy (by latency among themselves), fail an accuracy floor, and the output
says how many there are.

Choice: feasible = latency statistic <= bound, peak memory <= bound (unknown
memory fails a memory bound), accuracy >= floor; the most accurate feasible
configuration wins, ties to the faster.  The Pareto front (no other
configuration is at least as accurate and at least as fast) is printed; with
``--explain``, every configuration ranked above the choice and why it was
rejected.  ``--validate`` measures the chosen configuration again with the
harness (compiling it first when it is a prediction without an artifact),
stores the measurement and checks it meets the budget (exit 1 if not).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from benchmarks.record import Stats
from benchmarks.store import DeviceRow, MeasurementRow, Store
from edge.core.errors import BadInput

log = logging.getLogger(__name__)

LATENCY_STATS: tuple[str, ...] = ("min", "p50", "p90", "p99", "mean")
DEFAULT_METRIC = "top1"


@dataclass(frozen=True)
class Budget:
    """Latency bound (ms) on a statistic, optional peak-memory bound (MiB) and accuracy floor."""

    latency_ms: float
    stat: str = "p90"
    memory_mb: float | None = None
    min_accuracy: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.latency_ms, (int, float)) and math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise BadInput(f"--latency-ms must be a positive number of milliseconds, got {self.latency_ms!r}")
        if self.stat not in LATENCY_STATS:
            raise BadInput(f"--stat {self.stat!r}: valid statistics: {', '.join(LATENCY_STATS)}")
        if self.memory_mb is not None and not (math.isfinite(self.memory_mb) and self.memory_mb > 0):
            raise BadInput(f"--memory-mb must be a positive number of MiB, got {self.memory_mb!r}")
        if self.min_accuracy is not None and not math.isfinite(self.min_accuracy):
            raise BadInput(f"--min-accuracy must be a number, got {self.min_accuracy!r}")

    def to_json(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "stat": self.stat, "memory_mb": self.memory_mb,
                "min_accuracy": self.min_accuracy}

    def text(self, metric: str) -> str:
        parts = [f"{self.stat} <= {self.latency_ms:g} ms"]
        if self.memory_mb is not None:
            parts.append(f"peak <= {self.memory_mb:g} MiB")
        if self.min_accuracy is not None:
            parts.append(f"{metric} >= {self.min_accuracy:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Config:
    """One configuration on one device with its pooled figures.

    ``stats``: over the pooled raw samples of its measurements (a prediction's
    figures when ``predicted``); ``peak_mb``: the largest peak of the pooled
    measurements, of the isolated ones when there are any; ``measurements``: how
    many were pooled;
    ``accuracy``: every accuracy figure of the variant on this target.
    """

    device: DeviceRow
    variant: str
    target: str
    precision: str
    threads: int
    stats: Stats
    peak_mb: float | None
    predicted: bool
    measurements: int
    artifact_sha256: str | None
    artifact_path: str | None
    accuracy: dict[str, float] = field(default_factory=dict)

    def latency(self, stat: str) -> float:
        return float(getattr(self.stats, stat))

    @property
    def source(self) -> str:
        return "predicted" if self.predicted else "measured"

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device.name, "variant": self.variant, "target": self.target,
                "precision": self.precision, "threads": self.threads, **self.stats.to_json(),
                "peak_mb": self.peak_mb, "predicted": self.predicted, "source": self.source,
                "measurements": self.measurements, "artifact_sha256": self.artifact_sha256,
                "artifact_path": self.artifact_path, "accuracy": dict(self.accuracy)}


def _pool(store: Store, rows: Sequence[MeasurementRow]) -> tuple[Stats, int]:
    samples: list[int] = []
    for m in rows:
        samples += store.samples(m.id)
    if not samples:  # rows imported without samples cannot be pooled: the newest one stands
        return rows[-1].stats, 1
    return Stats.from_ns(samples), len(rows)


def configurations(store: Store, device: DeviceRow, include_predicted: bool = False) -> list[Config]:
    """Every configuration stored for ``device`` (see ``Config``): measurements of the newest
    artifact pooled; predictions only where ``include_predicted`` and nothing is measured."""
    rows = store.measurements(device=device)
    paths = {a.sha256: a.path for a in store.artifacts()}
    groups: dict[tuple[str, str, int], list[MeasurementRow]] = {}
    for m in rows:
        groups.setdefault((m.target, m.variant, m.threads), []).append(m)
    out: list[Config] = []
    for (target, variant, threads), ms in groups.items():
        measured = [m for m in ms if not m.predicted]
        if measured:
            newest = measured[-1].artifact_sha256
            same = [m for m in measured if m.artifact_sha256 == newest]
            stats, n = _pool(store, same)
            # isolated readings (a fresh process per measurement) when there are any: an in-process
            # peak also holds whatever the measuring process had loaded before (torch, other runtimes)
            iso = [m.peak_mb for m in same if m.peak_mb is not None and m.isolated]
            peaks = iso or [m.peak_mb for m in same if m.peak_mb is not None]
            last = same[-1]
            out.append(Config(device, variant, target, last.precision, threads, stats, max(peaks) if peaks else None,
                              False, n, newest, paths.get(newest or ""), dict(last.accuracy)))
        elif include_predicted:
            p = ms[-1]
            out.append(Config(device, variant, target, p.precision, threads, p.stats, p.peak_mb, True, 0, None, None,
                              dict(p.accuracy)))
    return sorted(out, key=lambda c: (c.target, c.variant, c.threads))


def resolve_device(store: Store, query: str | None) -> DeviceRow:
    """The device to select for: ``query`` (name or id), else the store's only device, else
    this machine.  A store without measurements for it raises ``BadInput``."""
    devices = store.devices()
    if not devices:
        raise BadInput(f"{store.path}: no measurements in DB for device {query or '(any)'}; "
                       f"measure with `edgevid bench` or `edgevid sweep` first")
    if query is not None:
        try:
            dev = store.find_device(query)
        except BadInput:
            known = ", ".join(f"{d.name} [{d.device_id}]" for d in devices)
            raise BadInput(f"{store.path}: no measurements in DB for device {query!r}; devices in the store: "
                           f"{known}") from None
    elif len(devices) == 1:
        dev = devices[0]
    else:
        from benchmarks.device import fingerprint

        here = fingerprint(None)
        hits = [d for d in devices if (d.device_id, d.name) == (here.id, here.name)]
        if len(hits) != 1:
            raise BadInput(f"{store.path}: measurements of several devices ("
                           + ", ".join(f"{d.name} [{d.device_id}]" for d in devices) + "); choose one with --device")
        dev = hits[0]
    if not store.measurements(device=dev, include_predicted=False):
        raise BadInput(f"{store.path}: no measurements in DB for device {dev.name} [{dev.device_id}]")
    return dev


def resolve_metric(configs: Sequence[Config], metric: str | None) -> str:
    """``metric`` when given; else "top1" or the one "top1@DATASET" the store holds
    (several datasets: ``BadInput`` asking for ``--metric``)."""
    if metric:
        return metric
    keys = sorted({k for c in configs for k in c.accuracy if k == DEFAULT_METRIC
                   or k.startswith(DEFAULT_METRIC + "@")})
    if len(keys) > 1:
        raise BadInput(f"top-1 figures on several datasets ({', '.join(keys)}); choose one with --metric")
    return keys[0] if keys else DEFAULT_METRIC


@dataclass(frozen=True)
class Ranked:
    config: Config
    accuracy: float | None
    latency: float
    reasons: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {**self.config.to_json(), "accuracy_value": self.accuracy, "latency_ms": self.latency,
                "feasible": self.feasible, "reasons": list(self.reasons)}


def rejection_reasons(c: Config, budget: Budget, metric: str) -> tuple[str, ...]:
    reasons = []
    lat = c.latency(budget.stat)
    if lat > budget.latency_ms:
        reasons.append(f"{budget.stat} {lat:.2f} ms > {budget.latency_ms:g} ms")
    if budget.memory_mb is not None:
        if c.peak_mb is None:
            reasons.append(f"peak memory unknown (bound {budget.memory_mb:g} MiB)")
        elif c.peak_mb > budget.memory_mb:
            reasons.append(f"peak {c.peak_mb:.0f} MiB > {budget.memory_mb:g} MiB")
    if budget.min_accuracy is not None:
        acc = c.accuracy.get(metric)
        if acc is None:
            reasons.append(f"{metric} unknown (floor {budget.min_accuracy:g})")
        elif acc < budget.min_accuracy:
            reasons.append(f"{metric} {acc:.4f} < floor {budget.min_accuracy:g}")
    return tuple(reasons)


def rank(configs: Sequence[Config], budget: Budget, metric: str) -> list[Ranked]:
    """Known accuracy first (most accurate first, ties to the faster), then unknown accuracy by latency."""
    ranked = [Ranked(c, c.accuracy.get(metric), c.latency(budget.stat), rejection_reasons(c, budget, metric))
              for c in configs]
    return sorted(ranked, key=lambda r: (r.accuracy is None, -(r.accuracy or 0.0), r.latency, r.config.target,
                                         r.config.variant))


def pareto_front(ranked: Sequence[Ranked]) -> list[Ranked]:
    """Configurations with known accuracy that no other beats on both accuracy and latency
    (fastest first)."""
    known = sorted((r for r in ranked if r.accuracy is not None), key=lambda r: (r.latency, -(r.accuracy or 0.0)))
    front: list[Ranked] = []
    best = -math.inf
    for r in known:
        assert r.accuracy is not None
        if r.accuracy > best:
            front.append(r)
            best = r.accuracy
    return front


@dataclass(frozen=True)
class Selection:
    device: DeviceRow
    budget: Budget
    metric: str
    ranked: tuple[Ranked, ...]
    chosen: Ranked | None
    front: tuple[Ranked, ...]
    predicted_used: bool

    @property
    def rejected_better(self) -> list[Ranked]:
        """Configurations ranked above the choice (all of them when nothing is feasible)."""
        out = []
        for r in self.ranked:
            if r is self.chosen:
                break
            out.append(r)
        return out

    @property
    def unknown_accuracy(self) -> int:
        return sum(r.accuracy is None for r in self.ranked)

    def to_json(self) -> dict[str, Any]:
        return {"device": {"name": self.device.name, "id": self.device.device_id}, "budget": self.budget.to_json(),
                "metric": self.metric, "chosen": None if self.chosen is None else self.chosen.to_json(),
                "front": [r.to_json() for r in self.front],
                "rejected": [r.to_json() for r in self.rejected_better],
                "candidates": len(self.ranked), "unknown_accuracy": self.unknown_accuracy,
                "predicted_used": self.predicted_used}


def select(store: Store, budget: Budget, device: str | None = None, metric: str | None = None,
           predict: bool = False) -> Selection:
    """Choose the configuration for ``budget`` on ``device`` (see the module docstring)."""
    dev = resolve_device(store, device)
    if predict:
        from benchmarks.predict import predict_missing

        predict_missing(store, dev)
    configs = configurations(store, dev, include_predicted=predict)
    metric = resolve_metric(configs, metric)
    ranked = rank(configs, budget, metric)
    chosen = next((r for r in ranked if r.feasible), None)
    return Selection(dev, budget, metric, tuple(ranked), chosen, tuple(pareto_front(ranked)),
                     any(c.predicted for c in configs))


# ----------------------------------------------------------------------------- validation

@dataclass(frozen=True)
class Validation:
    artifact: str
    stats: Stats
    peak_mb: float | None
    value: float
    meets: bool
    reasons: tuple[str, ...]
    compiled: bool

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact, **self.stats.to_json(), "peak_mb": self.peak_mb,
                "latency_ms": self.value, "meets": self.meets, "reasons": list(self.reasons),
                "compiled": self.compiled}


def validate(store: Store, selection: Selection, runs: int = 20, warmup: int = 3,
             artifacts_dir: str | Path = "edgevid-artifacts") -> Validation:
    """Measure the chosen configuration again on this machine (which must be the selection's
    device), store the measurement, and check it against the budget (memory and latency;
    the accuracy floor is the store's figure and is not re-measured)."""
    from benchmarks.device import fingerprint
    from benchmarks.harness import BenchConfig, measure
    from targets.base import Artifact

    r = selection.chosen
    if r is None:
        raise BadInput("--validate: nothing to validate, no configuration meets the budget")
    c = r.config
    here = fingerprint(selection.device.name)
    if here.id != selection.device.device_id:
        raise BadInput(f"--validate: the selection is for device {selection.device.name} "
                       f"[{selection.device.device_id}], but this machine is [{here.id}]; run it on that device")
    compiled = False
    path = Path(c.artifact_path) if c.artifact_path else None
    if path is None or not path.is_dir():
        from edge.compile import compile_variant
        from edge.core.variant import Variant

        path = Path(artifacts_dir) / c.target / c.variant
        log.info("compiling %s for %s into %s to validate it", c.variant, c.target, path)
        compile_variant(Variant.from_tag(c.variant), c.target, path)
        compiled = True
    art = Artifact.read(path, verify=True)
    record = measure(art, BenchConfig(runs=runs, warmup=warmup, threads=c.threads), here)
    store.add_measurement(record, source="select --validate")
    value = float(getattr(record.stats, selection.budget.stat))
    peak = record.memory.peak_mb
    check = Config(c.device, c.variant, c.target, c.precision, c.threads, record.stats, peak, False, 1, None,
                   str(path), c.accuracy)
    reasons = rejection_reasons(check, Budget(selection.budget.latency_ms, selection.budget.stat,
                                              selection.budget.memory_mb, None), selection.metric)
    return Validation(str(path), record.stats, peak, value, not reasons, reasons, compiled)
