"""The result store: :class:`Store`, one SQLite file of devices, artifacts, measurements
(with their raw samples), accuracy figures, predictions and graph features (see
:mod:`benchmarks.store`)."""
from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from benchmarks.device import DeviceInfo
from benchmarks.record import LatencyRecord, Stats, dumps
from benchmarks.store.rows import (CSV_FIELDS, MEASURED_SOURCE, ArtifactRow, DeviceRow, MeasurementRow, flatten_numbers,
                                 measured_top1, variant_fields)
from benchmarks.store.schema import connect, default_path, migrate
from edge.core.errors import BadInput

log = logging.getLogger(__name__)


class Store:
    """An open result store; use as a context manager or call ``close``."""

    def __init__(self, path: str | Path | None = None, create: bool = True) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._conn = connect(self.path, create)
        try:
            migrate(self._conn, self.path)
        except BaseException:
            self._conn.close()
            raise

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    # top-1 measured by running the artifact (``notes.accuracy`` of artifact.json, ``edge.gate``)
    def add_measurement(self, record: LatencyRecord, source: str = "local") -> bool:
        """Store one measurement (device, artifact, figures) in one transaction.
        False when a measurement with the same ``uid`` is already stored."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM measurements WHERE uid = ?", (record.uid,)).fetchone():
                return False
            dev = self._upsert_device(c, record.device, record.created)
            art = self._upsert_artifact(c, record.manifest, record.artifact_sha256, record.artifact_path,
                                        record.created)
            s = record.stats
            c.execute(
                """INSERT INTO measurements (uid, device, artifact, target, variant, precision, threads, affinity,
                   warmup_calls, samples_ns, n, min_ms, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, throughput,
                   load_ms, first_call_ms, peak_mb, base_mb, runtime, predicted, source, created, memory_method,
                   isolated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?,
                   ?, ?)""",
                (record.uid, dev, art, record.target, record.variant, record.precision, record.threads,
                 None if record.affinity is None else dumps(record.affinity), record.warmup_calls,
                 dumps(record.samples_ns), s.n, s.min, s.p50, s.p90, s.p99, s.mean, s.std, s.throughput,
                 record.load_ms, record.first_call_ms, record.memory.peak_mb, record.memory.base_mb,
                 dumps(record.runtime), source, record.created, record.memory.method, int(record.memory.isolated)))
            for metric, value in flatten_numbers("fidelity", record.accuracy or {}):
                self._put_accuracy(c, record.variant, record.target, record.artifact_sha256, metric, value, "",
                                   source, record.created)
            for metric, value in measured_top1(record.manifest):
                self._put_accuracy(c, record.variant, record.target, record.artifact_sha256, metric, value, "",
                                   MEASURED_SOURCE, record.created)
        return True

    def add_accuracy(self, variant: str, metric: str, value: float, target: str = "", artifact_sha256: str = "",
                     dataset: str = "", source: str = "") -> None:
        """Store (or replace) one accuracy figure, e.g. metric "top1" of a variant on a dataset.
        ``target`` "" means it holds for every target of the variant."""
        with self._tx() as c:
            self._put_accuracy(c, variant, target, artifact_sha256, metric, float(value), dataset, source,
                               time.time())

    def add_prediction(self, device: DeviceRow, target: str, variant: str, threads: int,
                       latency_ms: Mapping[str, float], peak_mb: float | None, how: Mapping[str, Any],
                       source: str = "predict") -> None:
        """Store (or replace) the predicted figures of a configuration: ``latency_ms`` maps
        min/p50/p90/p99/mean to milliseconds (p50 required), ``peak_mb`` the predicted peak
        memory, ``how`` (JSON) the predictor and its training set.  Stored with
        ``predicted = 1``, no artifact and no raw samples (``n = 0``)."""
        if "p50" not in latency_ms:
            raise ValueError("a prediction needs at least p50")
        uid = f"predicted:{device.device_id}:{device.name}:{target}:{variant}:{threads}"
        mean = latency_ms.get("mean")
        precision = variant_fields(variant)["precision"] or ""
        now = time.time()
        with self._tx() as c:
            c.execute("DELETE FROM measurements WHERE uid = ? AND predicted = 1", (uid,))
            c.execute(
                """INSERT INTO measurements (uid, device, artifact, target, variant, precision, threads, affinity,
                   warmup_calls, samples_ns, n, min_ms, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, throughput,
                   load_ms, first_call_ms, peak_mb, base_mb, runtime, predicted, source, created, memory_method,
                   isolated) VALUES (?, ?, NULL, ?, ?, ?, ?, NULL, 0, '[]', 0, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL,
                   ?, NULL, ?, 1, ?, ?, ?, 0)""",
                (uid, device.key, target, variant, precision, int(threads), latency_ms.get("min"),
                 latency_ms["p50"], latency_ms.get("p90"), latency_ms.get("p99"), mean,
                 None if not mean else 1000.0 / mean, peak_mb, dumps(how), source, now,
                 "predicted" if peak_mb is not None else ""))

    def put_features(self, variant: str, version: int, features: Mapping[str, Any], source: str = "") -> None:
        """Store (or replace) the graph features of a variant tag (``benchmarks.features``)."""
        with self._tx() as c:
            c.execute("""INSERT INTO features (variant, version, features, source, created) VALUES (?, ?, ?, ?, ?)
                         ON CONFLICT (variant, version) DO UPDATE SET features = excluded.features,
                           source = excluded.source, created = excluded.created""",
                      (variant, int(version), dumps(features), source, time.time()))

    @staticmethod
    def _put_accuracy(c: sqlite3.Connection, variant: str, target: str, sha: str, metric: str, value: float,
                      dataset: str, source: str, created: float) -> None:
        c.execute("""INSERT INTO accuracy (variant, target, artifact_sha256, metric, value, dataset, source, created)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (variant, target, artifact_sha256, metric, dataset)
                     DO UPDATE SET value = excluded.value, source = excluded.source, created = excluded.created""",
                  (variant, target, sha, metric, value, dataset, source, created))

    @staticmethod
    def _upsert_device(c: sqlite3.Connection, dev: DeviceInfo, when: float) -> int:
        c.execute("""INSERT INTO devices (device_id, name, fingerprint, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (device_id, name) DO UPDATE SET
                       fingerprint = CASE WHEN excluded.last_seen >= devices.last_seen
                                          THEN excluded.fingerprint ELSE devices.fingerprint END,
                       first_seen = MIN(devices.first_seen, excluded.first_seen),
                       last_seen = MAX(devices.last_seen, excluded.last_seen)""",
                  (dev.id, dev.name, dumps(dev.to_json()), when, when))
        return int(c.execute("SELECT id FROM devices WHERE device_id = ? AND name = ?", (dev.id, dev.name))
                   .fetchone()[0])

    @staticmethod
    def _upsert_artifact(c: sqlite3.Connection, manifest: Mapping[str, Any], sha: str, path: str, when: float) -> int:
        row = c.execute("SELECT id FROM artifacts WHERE sha256 = ?", (sha,)).fetchone()
        if row:
            if path:
                c.execute("UPDATE artifacts SET path = ? WHERE id = ?", (path, row[0]))
            return int(row[0])
        variant = str(manifest["variant"])
        f = variant_fields(variant)
        cur = c.execute(
            """INSERT INTO artifacts (sha256, target, variant, model, width, resolution, frames, precision, prune,
               input_shape, files, tools, path, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (sha, str(manifest["target"]), variant, f["model"], f["width"], f["resolution"], f["frames"],
             str(manifest.get("precision") or f["precision"]), f["prune"],
             dumps(manifest.get("input", {}).get("shape", [])), dumps(manifest.get("files", {})),
             dumps(manifest.get("tools", {})), path or None, when))
        return int(cur.lastrowid)

    # ------------------------------------------------------------------ reads
    def devices(self) -> list[DeviceRow]:
        rows = self._conn.execute("SELECT id, device_id, name, fingerprint, first_seen, last_seen FROM devices "
                                  "ORDER BY name, device_id").fetchall()
        return [DeviceRow(r[0], r[1], r[2], DeviceInfo.from_json(json.loads(r[3]), str(self.path)), r[4], r[5])
                for r in rows]

    def find_device(self, query: str) -> DeviceRow:
        """The device whose name or id (or a unique id prefix) is ``query``."""
        devs = self.devices()
        hits = [d for d in devs if query in (d.name, d.device_id)] or \
               [d for d in devs if d.device_id.startswith(query)]
        if len(hits) == 1:
            return hits[0]
        known = ", ".join(f"{d.name} [{d.device_id}]" for d in devs) or "none"
        if not hits:
            raise BadInput(f"{self.path}: no device {query!r}; devices in the store: {known}")
        raise BadInput(f"{self.path}: device {query!r} is ambiguous: "
                       + ", ".join(f"{d.name} [{d.device_id}]" for d in hits))

    def has_measurement(self, device: DeviceInfo | DeviceRow, target: str, threads: int, *,
                        artifact_sha256: str | None = None, variant: str | None = None) -> bool:
        """Whether a (non-predicted) measurement exists for this device and target at ``threads``,
        of the artifact with ``artifact_sha256`` or, when only ``variant`` is given, of any artifact
        of that variant tag (for resumable sweeps)."""
        return self.measurement_count(device, target, threads, artifact_sha256=artifact_sha256,
                                      variant=variant, limit=1) > 0

    def measurement_count(self, device: DeviceInfo | DeviceRow, target: str, threads: int, *,
                          artifact_sha256: str | None = None, variant: str | None = None,
                          limit: int | None = None) -> int:
        """How many (non-predicted) measurements ``has_measurement`` would find (at most ``limit``)."""
        if (artifact_sha256 is None) == (variant is None):
            raise ValueError("give exactly one of artifact_sha256 and variant")
        device_id = device.id if isinstance(device, DeviceInfo) else device.device_id
        sql = ("SELECT 1 FROM measurements m JOIN devices d ON d.id = m.device "
               "LEFT JOIN artifacts a ON a.id = m.artifact "
               "WHERE d.device_id = ? AND d.name = ? AND m.target = ? AND m.threads = ? AND m.predicted = 0 ")
        params: list[Any] = [device_id, device.name, target, threads]
        if artifact_sha256 is not None:
            sql += "AND a.sha256 = ?"
            params.append(artifact_sha256)
        else:
            sql += "AND m.variant = ?"
            params.append(variant)
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return int(self._conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0])

    def measurements(self, device: str | DeviceRow | None = None, target: str | None = None,
                     variant: str | None = None, include_predicted: bool = True,
                     latest_only: bool = False) -> list[MeasurementRow]:
        """Stored measurements, oldest first, filtered by device (row, name or id), target and
        variant tag; ``latest_only`` keeps the newest per (device, target, variant, threads, predicted)."""
        sql = ("SELECT m.id, m.uid, d.id, d.device_id, d.name, m.target, m.variant, m.precision, a.sha256, "
               "m.threads, m.affinity, m.n, m.min_ms, m.p50_ms, m.p90_ms, m.p99_ms, m.mean_ms, m.std_ms, "
               "m.throughput, m.load_ms, m.first_call_ms, m.peak_mb, m.base_mb, m.memory_method, m.isolated, "
               "m.predicted, m.source, m.created FROM measurements m JOIN devices d ON d.id = m.device "
               "LEFT JOIN artifacts a ON a.id = m.artifact WHERE 1 = 1 ")
        params: list[Any] = []
        if device is not None:
            dev = device if isinstance(device, DeviceRow) else self.find_device(device)
            sql += "AND d.id = ? "
            params.append(dev.key)
        if target is not None:
            sql += "AND m.target = ? "
            params.append(target)
        if variant is not None:
            sql += "AND m.variant = ? "
            params.append(variant)
        if not include_predicted:
            sql += "AND m.predicted = 0 "
        rows = self._conn.execute(sql + "ORDER BY m.created, m.id", params).fetchall()
        acc = self._accuracy()
        out = []
        for r in rows:
            f = variant_fields(r[6])
            stats = Stats(r[11], r[12], r[13], r[14], r[15], r[16], r[17], r[18])
            figures = {**acc.get((r[6], "", ""), {}), **acc.get((r[6], r[5], ""), {}),
                       **acc.get((r[6], r[5], r[8] or ""), {})}
            out.append(MeasurementRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], f["model"], f["width"],
                                      f["resolution"], f["frames"], r[7], f["prune"], r[8], r[9],
                                      None if r[10] is None else tuple(json.loads(r[10])), stats, r[19], r[20],
                                      r[21], r[22], r[23], bool(r[24]), bool(r[25]), r[26], r[27], figures))
        if latest_only:
            newest: dict[tuple[Any, ...], MeasurementRow] = {}
            for m in out:
                newest[(m.device_key, m.target, m.variant, m.threads, m.predicted)] = m
            out = sorted(newest.values(), key=lambda m: (m.created, m.id))
        return out

    def features(self, version: int) -> dict[str, dict[str, Any]]:
        """variant tag -> stored graph features of that ``version``."""
        return {v: json.loads(f) for v, f in self._conn.execute(
            "SELECT variant, features FROM features WHERE version = ?", (int(version),))}

    def artifacts(self, variant: str | None = None) -> list[ArtifactRow]:
        """Stored artifacts (of one variant tag when given), oldest first."""
        sql = "SELECT sha256, target, variant, precision, files, path FROM artifacts "
        rows = self._conn.execute(sql + ("WHERE variant = ? ORDER BY id" if variant else "ORDER BY id"),
                                  (variant,) if variant else ()).fetchall()
        return [ArtifactRow(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def accuracy(self) -> dict[tuple[str, str, str], dict[str, float]]:
        """Every accuracy figure: (variant, target, artifact sha) -> {metric[@dataset]: value}
        (target "" and sha "" where a figure holds for every target or artifact)."""
        return self._accuracy()

    def _accuracy(self) -> dict[tuple[str, str, str], dict[str, float]]:
        """(variant, target, artifact sha) -> {metric[@dataset]: value}."""
        out: dict[tuple[str, str, str], dict[str, float]] = {}
        for variant, target, sha, metric, value, dataset in self._conn.execute(
                "SELECT variant, target, artifact_sha256, metric, value, dataset FROM accuracy"):
            out.setdefault((variant, target, sha), {})[f"{metric}@{dataset}" if dataset else metric] = value
        return out

    def samples(self, measurement_id: int) -> tuple[int, ...]:
        """The raw timed-call samples (ns) of one measurement, in call order."""
        row = self._conn.execute("SELECT samples_ns FROM measurements WHERE id = ?", (measurement_id,)).fetchone()
        if row is None:
            raise BadInput(f"{self.path}: no measurement {measurement_id}")
        return tuple(json.loads(row[0]))

    # ------------------------------------------------------------------ export
    def export(self, out: str | Path) -> int:
        """Write every measurement to ``out``: ``.csv`` (one flat row each, no raw samples)
        or ``.json`` (devices, artifacts, measurements with raw samples, accuracy).
        Returns the number of measurements written."""
        out = Path(out)
        if out.suffix.lower() not in (".csv", ".json"):
            raise BadInput(f"{out}: export format is chosen by the suffix: .csv or .json")
        if out.exists() and out.resolve() == self.path.resolve():
            raise BadInput(f"{out}: that is the store itself")
        if not out.parent.is_dir():
            raise BadInput(f"{out}: folder {out.parent} does not exist")
        rows = self.measurements()
        tmp = out.with_name(out.name + ".tmp")
        if out.suffix.lower() == ".csv":
            with open(tmp, "w", newline="") as f:
                fields = [k for k in rows[0].to_json()] if rows else list(CSV_FIELDS)
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                for m in rows:
                    d = m.to_json()
                    d["affinity"] = "" if m.affinity is None else " ".join(map(str, m.affinity))
                    d["accuracy"] = dumps(m.accuracy)
                    w.writerow(d)
        else:
            tmp.write_text(dumps(self._export_json(rows), indent=1))
        os.replace(tmp, out)
        return len(rows)

    def _export_json(self, rows: Sequence[MeasurementRow]) -> dict[str, Any]:
        artifacts = [dict(zip(("sha256", "target", "variant", "precision", "input_shape", "files", "tools", "path"),
                              (r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), json.loads(r[6]), r[7])))
                     for r in self._conn.execute("SELECT sha256, target, variant, precision, input_shape, files, "
                                                 "tools, path FROM artifacts ORDER BY id")]
        accuracy = [dict(zip(("variant", "target", "artifact_sha256", "metric", "value", "dataset", "source"), r))
                    for r in self._conn.execute("SELECT variant, target, artifact_sha256, metric, value, dataset, "
                                                "source FROM accuracy ORDER BY id")]
        return {"format": "edgevid-store-export", "schema_version": self.version,
                "devices": [{"key": d.key, **d.fingerprint.to_json()} for d in self.devices()],
                "artifacts": artifacts,
                "measurements": [{**m.to_json(), "samples_ns": list(self.samples(m.id))} for m in rows],
                "accuracy": accuracy}
