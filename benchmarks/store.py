"""The result store: an embedded SQLite file of devices, artifacts, measurements
and accuracy/fidelity figures.

Location: ``--db PATH``, else ``$EDGEVID_DB``, else ``./edgevid.sqlite``
(``default_path``).

Tables (schema version 3, ``PRAGMA user_version``; ``PRAGMA application_id``
marks the file as an edgevid store):

* ``devices`` - one row per (fingerprint id, user-given name), the latest
  fingerprint as JSON;
* ``artifacts`` - one row per artifact content (``sha256`` over its files'
  hashes, see ``benchmarks.record.artifact_digest``): target, variant tag and its
  fields (model, width, resolution, frames, precision, prune), input shape, file
  hashes, tool versions, last known path;
* ``measurements`` - one row per measurement: device, artifact (NULL for a
  prediction), target, variant, threads, affinity, raw samples (JSON list of
  ns), min/p50/p90/p99/mean/std (ms), throughput (clips/s), load and first-call
  time (ms), peak and base RSS (MiB) with how they were read, ``predicted``
  (0 for a measurement), ``source`` ("local" or "import:FILE"), time; ``uid``
  is unique, so importing the same results twice adds nothing;
* ``accuracy`` - metric values per (variant, target, artifact, metric, dataset):
  top-1 on labelled clips, ``fidelity.*`` figures of an artifact;
* ``features`` - per variant tag, the graph features the latency predictor fits
  (``benchmarks.features``), as JSON, per feature ``version``.

Predictions (``add_prediction``) are rows of ``measurements`` with
``predicted = 1``, no artifact and no raw samples (``n = 0``); their ``runtime``
JSON says how they were predicted.  One prediction per (device, target, variant,
threads): predicting again replaces it.

Writes: one transaction per measurement (``BEGIN IMMEDIATE``), WAL journal so
readers never block on a writer and see only committed measurements; a busy
writer is waited for up to ``BUSY_TIMEOUT_S``.  (WAL needs a local file system,
not NFS.)

Safety: a path that is not an SQLite file, an SQLite file that fails
``PRAGMA quick_check``, another application's database, or a store written by a
newer edgevid is refused with ``BadInput`` and never written to; a missing file
is created only by writers (``create=True``).  Older schema versions are
migrated forward in place, one transaction per step (``MIGRATIONS``).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from benchmarks.device import DeviceInfo
from benchmarks.record import LatencyRecord, Stats, dumps
from edge.core.errors import BadInput

log = logging.getLogger(__name__)

DEFAULT_DB = "edgevid.sqlite"
ENV_DB = "EDGEVID_DB"
APPLICATION_ID = 0x45564944  # "EVID"
BUSY_TIMEOUT_S = 30.0
SQLITE_MAGIC = b"SQLite format 3\x00"

# Schema history: MIGRATIONS[i] takes a store from version i to i + 1.  Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: devices, artifacts, measurements
        f"PRAGMA application_id = {APPLICATION_ID}",
        """CREATE TABLE devices (
            id INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            name TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            UNIQUE (device_id, name))""",
        """CREATE TABLE artifacts (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            target TEXT NOT NULL,
            variant TEXT NOT NULL,
            model TEXT, width REAL, resolution INTEGER, frames INTEGER,
            precision TEXT NOT NULL, prune REAL,
            input_shape TEXT NOT NULL,
            files TEXT NOT NULL,
            tools TEXT NOT NULL,
            path TEXT,
            created REAL NOT NULL)""",
        """CREATE TABLE measurements (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            device INTEGER NOT NULL REFERENCES devices(id),
            artifact INTEGER REFERENCES artifacts(id),
            target TEXT NOT NULL,
            variant TEXT NOT NULL,
            precision TEXT NOT NULL,
            threads INTEGER NOT NULL,
            affinity TEXT,
            warmup_calls INTEGER NOT NULL,
            samples_ns TEXT NOT NULL,
            n INTEGER NOT NULL,
            min_ms REAL, p50_ms REAL NOT NULL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL,
            throughput REAL,
            load_ms REAL, first_call_ms REAL,
            peak_mb REAL, base_mb REAL,
            runtime TEXT NOT NULL DEFAULT '{}',
            predicted INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL,
            created REAL NOT NULL)""",
        "CREATE INDEX measurements_config ON measurements (device, target, variant, threads)",
    ),
    (  # 2: how peak memory was read; accuracy/fidelity figures
        "ALTER TABLE measurements ADD COLUMN memory_method TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE measurements ADD COLUMN isolated INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE accuracy (
            id INTEGER PRIMARY KEY,
            variant TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            artifact_sha256 TEXT NOT NULL DEFAULT '',
            metric TEXT NOT NULL,
            value REAL NOT NULL,
            dataset TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            UNIQUE (variant, target, artifact_sha256, metric, dataset))""",
    ),
    (  # 3: graph features of variants (inputs of the latency predictor)
        """CREATE TABLE features (
            variant TEXT NOT NULL,
            version INTEGER NOT NULL,
            features TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            PRIMARY KEY (variant, version))""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    """``$EDGEVID_DB`` when set, else ``./edgevid.sqlite``."""
    return Path(os.environ.get(ENV_DB) or DEFAULT_DB)


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
    from edge.core.variant import Variant

    try:
        v = Variant.from_tag(tag)
    except BadInput:
        log.warning("variant tag %r does not parse; its fields are stored empty", tag)
        return {"model": None, "width": None, "resolution": None, "frames": None, "precision": None, "prune": None}
    return {"model": v.model, "width": v.width, "resolution": v.resolution, "frames": v.frames,
            "precision": v.precision, "prune": v.prune}


def _flatten(prefix: str, d: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            yield from _flatten(name, v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
            yield name, float(v)


class Store:
    """An open result store; use as a context manager or call ``close``."""

    def __init__(self, path: str | Path | None = None, create: bool = True) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._conn = _connect(self.path, create)
        try:
            _migrate(self._conn, self.path)
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
            for metric, value in _flatten("fidelity", record.accuracy or {}):
                self._put_accuracy(c, record.variant, record.target, record.artifact_sha256, metric, value, "",
                                   source, record.created)
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


CSV_FIELDS = tuple(MeasurementRow.__dataclass_fields__) + ("n", "min_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
                                                          "std_ms", "throughput")


# ----------------------------------------------------------------------------- opening

def _connect(path: Path, create: bool) -> sqlite3.Connection:
    """Open ``path`` after checking it is an intact SQLite file (or absent and ``create``)."""
    if path.exists():
        if not path.is_file():
            raise BadInput(f"{path}: result store path is not a file")
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise BadInput(f"{path}: cannot read the result store ({e.strerror})") from None
        if head and head != SQLITE_MAGIC:
            raise BadInput(f"{path}: not an SQLite database (corrupt or another kind of file); refusing to touch it")
    elif not create:
        raise BadInput(f"{path}: no such result store (measure something with `edgevid bench --db {path}` first)")
    elif not path.parent.is_dir():
        raise BadInput(f"{path}: folder {path.parent} does not exist")
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as e:
        raise BadInput(f"{path}: cannot open the result store ({e})") from None
    try:
        check = conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in check] != ["ok"]:
            raise BadInput(f"{path}: corrupt result store (integrity check: {check[0][0]}); refusing to touch it")
        app = int(conn.execute("PRAGMA application_id").fetchone()[0])
        if app not in (0, APPLICATION_ID):
            raise BadInput(f"{path}: an SQLite database of another application (id {app:#x}); refusing to touch it")
        _check_version(conn, path)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise BadInput(f"{path}: corrupt result store ({e}); refusing to touch it") from None
    except BaseException:
        conn.close()
        raise
    # the checks above only read; from here on the file may be written
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    try:
        conn.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError as e:  # a read-only file or folder
        if create:
            conn.close()
            raise BadInput(f"{path}: cannot write the result store ({e})") from None
        log.warning("%s: cannot switch the result store to WAL (%s); reading it as it is", path, e)
    return conn


def _check_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version; refuses a newer one, and a version-0 file that already has tables
    (another application's database).  Reads only."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise BadInput(f"{path}: result store schema version {version} is newer than this edgevid's "
                       f"({SCHEMA_VERSION}); upgrade edgevid")
    if version == 0:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if tables:
            raise BadInput(f"{path}: an SQLite database that is not an edgevid result store (tables: "
                           f"{', '.join(tables[:5])}); refusing to touch it")
    return version


def _migrate(conn: sqlite3.Connection, path: Path, upto: int = SCHEMA_VERSION) -> None:
    """Bring the schema to version ``upto``, one transaction per step (tests pass a lower ``upto``
    to build an old store)."""
    version = _check_version(conn, path)
    while version < upto:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])  # another process may have migrated
            if version < upto:
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
                log.info("%s: result store migrated to schema version %d", path, version + 1)
                version += 1
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
