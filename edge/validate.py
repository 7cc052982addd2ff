"""``edgevid select --validate``: measure the chosen configuration again on this machine.

    validate(store, selection, runs, warmup, artifacts_dir) -> Validation

The machine must be the selection's device.  A prediction without an artifact is compiled
first (``edge.compile.compile_variant``); the measurement is stored and checked against the
budget (memory and latency; the accuracy floor is the store's figure, not re-measured).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.configs import Config
from benchmarks.device import fingerprint
from benchmarks.harness import BenchConfig, measure
from benchmarks.record import Stats
from benchmarks.select import Budget, Selection, rejection_reasons
from benchmarks.store import Store
from edge.core.errors import BadInput
from edge.core.variant import Variant
from targets.base import Artifact

log = logging.getLogger(__name__)


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
        from edge.compile import compile_variant  # torch: only when there is nothing to measure yet

        path = Path(artifacts_dir) / c.target / c.variant
        log.info("compiling %s for %s into %s to validate it", c.variant, c.target, path)
        compile_variant(Variant.from_tag(c.variant), c.target, path)
        compiled = True
    art = Artifact.read(path, verify=True)
    record = measure(art, BenchConfig(runs=runs, warmup=warmup, threads=c.threads), here)
    store.add_measurement(record, source="select --validate")
    value = record.stats.get(str(selection.budget.stat))
    peak = record.memory.peak_mb
    check = Config(c.device, c.variant, c.target, c.precision, c.threads, record.stats, peak, False, 1, None,
                   str(path), c.accuracy)
    reasons = rejection_reasons(check, Budget(selection.budget.latency_ms, selection.budget.stat,
                                              selection.budget.memory_mb, None), selection.metric)
    return Validation(str(path), record.stats, peak, value, not reasons, reasons, compiled)
