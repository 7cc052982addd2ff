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

Modules: ``schema`` (file, migrations), ``rows`` (the values answered), ``db`` (:class:`Store`).
"""
from benchmarks.store.db import Store
from benchmarks.store.rows import CSV_FIELDS, ArtifactRow, DeviceRow, MeasurementRow, variant_fields
from benchmarks.store.schema import DEFAULT_DB, ENV_DB, SCHEMA_VERSION, default_path

__all__ = ["CSV_FIELDS", "DEFAULT_DB", "ENV_DB", "SCHEMA_VERSION", "ArtifactRow", "DeviceRow", "MeasurementRow",
           "Store", "default_path", "variant_fields"]
