"""Value types of a latency measurement: ``Stats``, ``Memory``, ``LatencyRecord``,
and their JSON form (used by the store, the on-device agent and ``--json``).

Units: latencies in milliseconds (raw samples in integer nanoseconds, as read
from ``time.perf_counter_ns``), memory in MiB, throughput in clips per second.
Imports no torch and no runtime.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from benchmarks.device import DeviceInfo
from edge.core.errors import BadInput


@dataclass(frozen=True)
class Stats:
    """Summary of ``n`` timed calls (ms).

    Percentiles: numpy's default linear interpolation between order statistics.
    ``std``: sample standard deviation (ddof=1; 0 for one sample).
    ``throughput``: clips/s at batch 1 with calls back to back = n / (sum of the
    timed calls), i.e. 1000 / mean (harness overhead between calls excluded).
    """

    n: int
    min: float
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    throughput: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> "Stats":
        if len(samples_ns) == 0:
            raise ValueError("no samples")
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
        return cls(int(ms.size), float(ms.min()), float(p50), float(p90), float(p99), float(ms.mean()), std,
                   float(ms.size / (ms.sum() / 1e3)))

    def get(self, stat: str) -> float:
        """One statistic by name (``min``, ``p50``, ``p90``, ``p99``, ``mean``)."""
        if stat not in ("min", "p50", "p90", "p99", "mean", "std"):
            raise BadInput(f"unknown latency statistic {stat!r}; valid: min, p50, p90, p99, mean, std")
        return float(getattr(self, stat))

    def to_json(self) -> dict[str, float]:
        return {"n": self.n, "min_ms": self.min, "p50_ms": self.p50, "p90_ms": self.p90, "p99_ms": self.p99,
                "mean_ms": self.mean, "std_ms": self.std, "throughput": self.throughput}


@dataclass(frozen=True)
class Memory:
    """Peak resident memory of the process while the runner loaded and ran (MiB).

    ``peak_mb``: the process' peak RSS over load + warm-up + timed runs;
    ``base_mb``: its RSS just before the load (interpreter, numpy, runtime
    library already imported), so ``peak_mb - base_mb`` is what the runner added;
    ``method`` says how it was read (see ``benchmarks.harness``); ``isolated``:
    measured in a fresh subprocess.  ``None`` where the OS offers no reading.
    """

    peak_mb: float | None
    base_mb: float | None
    method: str
    isolated: bool = False

    @property
    def growth_mb(self) -> float | None:
        if self.peak_mb is None or self.base_mb is None:
            return None
        return max(0.0, self.peak_mb - self.base_mb)

    def to_json(self) -> dict[str, Any]:
        return {"peak_mb": self.peak_mb, "base_mb": self.base_mb, "method": self.method, "isolated": self.isolated}


def artifact_digest(files: Mapping[str, str]) -> str:
    """sha256 identifying an artifact by its files: over the sorted ``name sha256`` lines
    of the manifest's ``files`` (artifact.json itself is not hashed: its notes may change)."""
    text = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class LatencyRecord:
    """One artifact measured on one device.

    ``manifest``: the artifact's ``artifact.json`` content (variant, target,
    precision, file hashes, tools, fidelity), so a record can be stored without
    the artifact at hand.  ``samples_ns``: every timed call, in call order.
    ``accuracy``: the artifact's fidelity/accuracy figures when it carries any.
    """

    uid: str
    device: DeviceInfo
    target: str
    variant: str
    precision: str
    artifact_sha256: str
    artifact_path: str
    manifest: Mapping[str, Any]
    threads: int
    affinity: tuple[int, ...] | None
    warmup_calls: int
    samples_ns: tuple[int, ...]
    stats: Stats
    load_ms: float
    first_call_ms: float
    memory: Memory
    accuracy: Mapping[str, Any] | None = None
    runtime: Mapping[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "device": self.device.to_json(), "target": self.target, "variant": self.variant,
                "precision": self.precision, "artifact_sha256": self.artifact_sha256,
                "artifact_path": self.artifact_path, "manifest": dict(self.manifest), "threads": self.threads,
                "affinity": None if self.affinity is None else list(self.affinity),
                "warmup_calls": self.warmup_calls, "samples_ns": list(self.samples_ns),
                "stats": self.stats.to_json(), "load_ms": self.load_ms, "first_call_ms": self.first_call_ms,
                "memory": self.memory.to_json(), "accuracy": None if self.accuracy is None else dict(self.accuracy),
                "runtime": dict(self.runtime), "created": self.created}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "record") -> "LatencyRecord":
        """Inverse of ``to_json``; the stats are recomputed from the raw samples."""
        try:
            samples = tuple(int(x) for x in d["samples_ns"])
            if not samples or min(samples) < 0:
                raise ValueError("samples_ns must be a non-empty list of non-negative integers")
            mem = d["memory"]
            memory = Memory(_opt_float(mem.get("peak_mb")), _opt_float(mem.get("base_mb")), str(mem["method"]),
                            bool(mem.get("isolated", False)))
            manifest = dict(d["manifest"])
            sha = str(d["artifact_sha256"])
            if sha != artifact_digest({str(k): str(v) for k, v in manifest["files"].items()}):
                raise ValueError("artifact_sha256 does not match the manifest's file hashes")
            affinity = d.get("affinity")
            first = d.get("first_call_ms")
            return cls(str(d["uid"]), DeviceInfo.from_json(d["device"], where), str(d["target"]), str(d["variant"]),
                       str(d["precision"]), sha, str(d.get("artifact_path", "")), manifest, int(d["threads"]),
                       None if affinity is None else tuple(int(c) for c in affinity), int(d.get("warmup_calls", 0)),
                       samples, Stats.from_ns(samples), float(d["load_ms"]),
                       samples[0] / 1e6 if first is None else float(first), memory, d.get("accuracy"),
                       dict(d.get("runtime", {})), float(d.get("created", 0.0)))
        except BadInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadInput(f"{where}: malformed latency record ({type(e).__name__}: {e})") from None


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def finite(obj: Any) -> Any:
    """``obj`` with numpy scalars made Python numbers, tuples made lists and NaN/Inf made None
    (strict JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (see ``finite``); compact unless ``indent``."""
    return json.dumps(finite(obj), sort_keys=True, indent=indent, allow_nan=False, default=str,
                      separators=None if indent else (",", ":"))
