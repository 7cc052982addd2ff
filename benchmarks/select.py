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

Accuracy: the store's accuracy table, metric ``top1`` by default - for an
artifact built by ``edgevid compile``, its own top-1 on the checkpoint's labelled
held-out clips, shown with its 95% interval and clip count (``top1_low``,
``top1_high``, ``top1_clips``) - (a figure
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
rejected.  ``--validate`` (:mod:`edge.validate`) measures the chosen configuration
again with the harness (compiling it first when it is a prediction without an
artifact), stores the measurement and checks it meets the budget (exit 1 if not).

    select(store, budget, device, metric, predict) -> Selection
    rank(configs, budget, metric) -> [Ranked]; pareto_front(ranked); rejection_reasons(config, budget, metric)
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

from benchmarks.configs import Config, configurations, resolve_device, resolve_metric
from benchmarks.predict import Exporter, predict_missing
from benchmarks.store import DeviceRow, Store
from edge.core.enums import Statistic
from edge.core.errors import BadInput

log = logging.getLogger(__name__)

LATENCY_STATS: tuple[str, ...] = tuple(s.value for s in Statistic)


@dataclass(frozen=True)
class Budget:
    """Latency bound (ms) on a statistic, optional peak-memory bound (MiB) and accuracy floor."""

    latency_ms: float
    stat: Statistic = Statistic.P90
    memory_mb: float | None = None
    min_accuracy: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.latency_ms, (int, float)) and math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise BadInput(f"--latency-ms must be a positive number of milliseconds, got {self.latency_ms!r}")
        if self.stat not in LATENCY_STATS:
            raise BadInput(f"--stat {self.stat!r}: valid statistics: {', '.join(LATENCY_STATS)}")
        object.__setattr__(self, "stat", Statistic(self.stat))
        if self.memory_mb is not None and not (math.isfinite(self.memory_mb) and self.memory_mb > 0):
            raise BadInput(f"--memory-mb must be a positive number of MiB, got {self.memory_mb!r}")
        if self.min_accuracy is not None and not math.isfinite(self.min_accuracy):
            raise BadInput(f"--min-accuracy must be a number, got {self.min_accuracy!r}")

    def to_json(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "stat": str(self.stat), "memory_mb": self.memory_mb,
                "min_accuracy": self.min_accuracy}

    def text(self, metric: str) -> str:
        parts = [f"{self.stat} <= {self.latency_ms:g} ms"]
        if self.memory_mb is not None:
            parts.append(f"peak <= {self.memory_mb:g} MiB")
        if self.min_accuracy is not None:
            parts.append(f"{metric} >= {self.min_accuracy:g}")
        return ", ".join(parts)


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
           predict: bool = False, export: Exporter | None = None) -> Selection:
    """Choose the configuration for ``budget`` on ``device`` (see the module docstring);
    ``export``: how the predictor gets a graph no stored artifact has (``benchmarks.predict``)."""
    dev = resolve_device(store, device)
    if predict:
        predict_missing(store, dev, export=export)
    configs = configurations(store, dev, include_predicted=predict)
    metric = resolve_metric(configs, metric)
    ranked = rank(configs, budget, metric)
    chosen = next((r for r in ranked if r.feasible), None)
    return Selection(dev, budget, metric, tuple(ranked), chosen, tuple(pareto_front(ranked)),
                     any(c.predicted for c in configs))
