"""The rows the result store answers with (frozen values) and their flat fields.

    DeviceRow, ArtifactRow, MeasurementRow (``to_json``), variant_fields(tag) -> the tag's axes,
    flatten_numbers(prefix, mapping) -> (dotted name, float) pairs, CSV_FIELDS (the export's columns)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from benchmarks.device import DeviceInfo
from benchmarks.record import Stats
from edge.core.errors import BadInput
from edge.core.variant import Variant

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class DeviceRow:
    key: int
    device_id: str
    name: str
    fingerprint: DeviceInfo
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class ArtifactRow:
    """A stored artifact: content hash, target, variant tag, precision, its files' hashes
    and the folder it was last measured from (None when unknown)."""

    sha256: str
    target: str
    variant: str
    precision: str
    files: Mapping[str, str]
    path: str | None


@dataclass(frozen=True)
class MeasurementRow:
    """A stored measurement (or prediction) with its device, variant fields and stats.

    ``model``..``prune`` are parsed from the variant tag (None when it does not
    parse); ``accuracy``: metric -> value for this variant and target (the
    artifact's own figures, and target-independent ones stored with target "").
    """

    id: int
    uid: str
    device_key: int
    device_id: str
    device_name: str
    target: str
    variant: str
    model: str | None
    width: float | None
    resolution: int | None
    frames: int | None
    precision: str
    prune: float | None
    artifact_sha256: str | None
    threads: int
    affinity: tuple[int, ...] | None
    stats: Stats
    load_ms: float | None
    first_call_ms: float | None
    peak_mb: float | None
    base_mb: float | None
    memory_method: str
    isolated: bool
    predicted: bool
    source: str
    created: float
    accuracy: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "stats"}
        d["affinity"] = None if self.affinity is None else list(self.affinity)
        d["accuracy"] = dict(self.accuracy)
        return {**d, **self.stats.to_json()}


def variant_fields(tag: str) -> dict[str, Any]:
    """model, width, resolution, frames, precision, prune of a variant tag (Nones when it does not parse)."""
    try:
        v = Variant.from_tag(tag)
    except BadInput:
        log.warning("variant tag %r does not parse; its fields are stored empty", tag)
        return {"model": None, "width": None, "resolution": None, "frames": None, "precision": None, "prune": None}
    return {"model": v.model, "width": v.width, "resolution": v.resolution, "frames": v.frames,
            "precision": v.precision, "prune": v.prune}


def flatten_numbers(prefix: str, d: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            yield from flatten_numbers(name, v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
            yield name, float(v)


CSV_FIELDS = tuple(MeasurementRow.__dataclass_fields__) + ("n", "min_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
                                                          "std_ms", "throughput")


MEASURED_SOURCE = "artifact run on labelled held-out clips"
TOP1_FIELDS = {"top1": "top1", "low": "top1_low", "high": "top1_high", "clips": "top1_clips"}


def measured_top1(manifest: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The artifact's own measured top-1 from its manifest (``notes.accuracy``, written by
    ``edge.gate``) as store metrics: top1, top1_low, top1_high (95% interval), top1_clips;
    [] when it was not measured."""
    acc = (manifest.get("notes") or {}).get("accuracy") if isinstance(manifest.get("notes"), Mapping) else None
    if not isinstance(acc, Mapping) or not isinstance(acc.get("top1"), (int, float)) or "clips" not in acc:
        return []
    return [(metric, float(acc[key])) for key, metric in TOP1_FIELDS.items()
            if isinstance(acc.get(key), (int, float)) and not isinstance(acc.get(key), bool)]
