"""The result store's file: schema migrations, opening and checking a SQLite file.

    connect(path, create) -> sqlite3.Connection   refuses a non-SQLite or foreign file (BadInput)
    migrate(conn, path, upto)                     applies ``MIGRATIONS`` in one transaction each
    default_path() -> Path                        $EDGEVID_DB, else ./edgevid.sqlite
"""
from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

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


# ----------------------------------------------------------------------------- opening

def connect(path: Path, create: bool) -> sqlite3.Connection:
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
        check_version(conn, path)
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


def check_version(conn: sqlite3.Connection, path: Path) -> int:
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


def migrate(conn: sqlite3.Connection, path: Path, upto: int = SCHEMA_VERSION) -> None:
    """Bring the schema to version ``upto``, one transaction per step (tests pass a lower ``upto``
    to build an old store)."""
    version = check_version(conn, path)
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
