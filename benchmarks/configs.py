"""A device's configurations as the store holds them, pooled: what selection, prediction,
the report and the run-time switcher read.

    configurations(store, device, include_predicted=False) -> [Config]   sorted (target, variant, threads)
    resolve_device(store, query) -> DeviceRow     a name or id, else the only device, else this machine
    resolve_metric(configs, metric) -> str        "top1", or the one "top1@DATASET" the store holds

A configuration (variant x target x threads) pools the raw samples of all its stored
measurements of its newest artifact; a prediction stands only where nothing is measured.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from benchmarks.record import Stats
from benchmarks.store import DeviceRow, MeasurementRow, Store
from edge.core.enums import Statistic
from edge.core.errors import BadInput

DEFAULT_METRIC = "top1"


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

    def latency(self, stat: Statistic | str) -> float:
        return self.stats.get(str(stat))

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


def accuracy_text(accuracy: Mapping[str, float], metric: str, digits: int = 3) -> str:
    """``metric``'s value as shown in tables: with its 95% interval and clip count when the
    store holds them (``top1_low``/``top1_high``/``top1_clips``, a measured top-1), "-" if unknown."""
    value = accuracy.get(metric)
    if value is None:
        return "-"
    low, high, n = (accuracy.get(f"{metric}_{k}") for k in ("low", "high", "clips"))
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]" + ("" if n is None else f" n={n:.0f}")
