"""The SQLite result store: round trip, resumable-sweep queries, accuracy, migration from
an older schema, a reader during writes (WAL), refusal of corrupt/foreign/newer files
without touching them, CSV/JSON export."""
import csv
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_helpers import TINY_VARIANT, device, record
from benchmarks import store as storemod
from benchmarks.store.schema import migrate
from benchmarks.store import SCHEMA_VERSION, Store
from edge.cli import main
from edge.core.errors import BadInput

ROOT = Path(__file__).resolve().parent.parent


def test_round_trip_and_queries(tmp_path):
    db = tmp_path / "r.sqlite"
    a, b = device("orin-maxn"), device("orin-15w")  # one board, two power modes: same id, two devices
    r1 = record([5, 6, 7, 8], threads=2, dev=a, created=1.0)
    r2 = record([9, 9, 9], threads=4, dev=a, created=2.0, variant="x3d_s-w0.5-r112-f8-fp16-p0.0",
                files={"model.onnx": "cd" * 32})
    r3 = record([1, 2], threads=2, dev=b, created=3.0, target="openvino")
    with Store(db) as s:
        assert s.version == SCHEMA_VERSION
        assert [s.add_measurement(r) for r in (r1, r2, r3)] == [True, True, True]
        assert s.add_measurement(r1) is False  # same uid: not stored twice
        rows = s.measurements()
        assert [m.uid for m in rows] == [r1.uid, r2.uid, r3.uid]
        m = rows[0]
        assert (m.device_name, m.device_id, m.target, m.variant, m.threads) == ("orin-maxn", a.id, "onnxruntime",
                                                                                TINY_VARIANT, 2)
        assert (m.model, m.width, m.resolution, m.frames, m.precision, m.prune) == ("x3d_xs", 1.0, 8, 2, "fp32", 0.0)
        assert m.stats == r1.stats and m.load_ms == 12.5 and m.peak_mb == 100.0 and not m.predicted
        assert s.samples(m.id) == r1.samples_ns
        assert rows[1].width == 0.5 and rows[1].precision == "fp16"
        assert len(s.devices()) == 2 and s.devices()[0].device_id == s.devices()[1].device_id
        assert [x.uid for x in s.measurements(device="orin-15w")] == [r3.uid]
        assert [x.uid for x in s.measurements(device="orin-maxn", target="onnxruntime")] == [r1.uid, r2.uid]
        with pytest.raises(BadInput, match="ambiguous"):
            s.measurements(device=a.id)  # two names share the id
        with pytest.raises(BadInput, match="no device 'nano'"):
            s.measurements(device="nano")
        # resumable sweeps: by artifact hash or by variant + target, at a thread count
        assert s.has_measurement(a, "onnxruntime", 2, artifact_sha256=r1.artifact_sha256)
        assert s.has_measurement(a, "onnxruntime", 2, variant=TINY_VARIANT)
        assert not s.has_measurement(a, "onnxruntime", 4, variant=TINY_VARIANT)
        assert not s.has_measurement(b, "onnxruntime", 2, variant=TINY_VARIANT)
        assert not s.has_measurement(a, "openvino", 2, variant=TINY_VARIANT)
        assert not s.has_measurement(a, "onnxruntime", 2, artifact_sha256=r2.artifact_sha256)
        r4 = record([3, 3], threads=2, dev=a, created=4.0)
        s.add_measurement(r4)
        latest = s.measurements(device="orin-maxn", latest_only=True)
        assert [x.uid for x in latest] == [r2.uid, r4.uid]


def test_accuracy_and_fidelity(tmp_path):
    with Store(tmp_path / "a.sqlite") as s:
        s.add_measurement(record([4, 5], fidelity={"top1_agreement": 0.97, "sqnr_db": 31.5, "note": "text",
                                                   "per_class": {"a": 1.0}}))
        s.add_accuracy(TINY_VARIANT, "top1", 0.61, dataset="synth-val")
        s.add_accuracy(TINY_VARIANT, "top1", 0.62, dataset="synth-val")  # replaces
        m = s.measurements()[0]
        assert m.accuracy == {"fidelity.top1_agreement": 0.97, "fidelity.sqnr_db": 31.5,
                              "fidelity.per_class.a": 1.0, "top1@synth-val": 0.62}


def test_default_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEVID_DB", str(tmp_path / "env.sqlite"))
    assert storemod.default_path() == tmp_path / "env.sqlite"
    monkeypatch.delenv("EDGEVID_DB")
    assert storemod.default_path() == Path("edgevid.sqlite")


V1_MEASUREMENT = """INSERT INTO measurements (uid, device, artifact, target, variant, precision, threads, affinity,
    warmup_calls, samples_ns, n, min_ms, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, throughput, load_ms, first_call_ms,
    peak_mb, base_mb, runtime, predicted, source, created)
    VALUES ('old1', 1, 1, 'onnxruntime', ?, 'fp32', 2, NULL, 3, '[4000000,6000000]', 2, 4, 5, 5.8, 5.98, 5, 1.41, 200,
    10, 11, 90, 30, '{}', 0, 'local', 1.0)"""


def test_migrates_an_older_schema_in_place(tmp_path):
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, db, upto=1)  # a store as schema version 1 wrote it
    dev = device()
    conn.execute("INSERT INTO devices (device_id, name, fingerprint, first_seen, last_seen) VALUES (?, ?, ?, 1, 1)",
                 (dev.id, dev.name, json.dumps(dev.to_json())))
    conn.execute("INSERT INTO artifacts (sha256, target, variant, precision, input_shape, files, tools, created) "
                 "VALUES ('s1', 'onnxruntime', ?, 'fp32', '[]', '{}', '{}', 1)", (TINY_VARIANT,))
    conn.execute(V1_MEASUREMENT, (TINY_VARIANT,))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT memory_method FROM measurements")
    conn.close()
    with Store(db) as s:
        assert s.version == SCHEMA_VERSION >= 2
        [m] = s.measurements()
        assert (m.uid, m.stats.p50, m.memory_method, m.isolated) == ("old1", 5.0, "", False)
        assert s.samples(m.id) == (4000000, 6000000)
        assert s.has_measurement(dev, "onnxruntime", 2, artifact_sha256="s1")
        s.add_accuracy(TINY_VARIANT, "top1", 0.5)  # the table version 2 added
        s.add_measurement(record([1, 2]))
        assert len(s.measurements()) == 2


def test_newer_schema_refused_untouched(tmp_path):
    db = tmp_path / "new.sqlite"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(BadInput, match="schema version 99 is newer"):
        Store(db)
    assert db.read_bytes() == before


def _corrupt_store(path: Path) -> None:
    with Store(path) as s:
        for i in range(60):
            s.add_measurement(record([1.0 + i, 2.0], created=float(i)))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 4 * page
    data[page: 3 * page] = b"\x5a" * (2 * page)  # pages 2 and 3: table b-trees now garbage
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["text", "garbled", "foreign", "foreign-tables"])
def test_corrupt_or_foreign_file_refused_and_left_untouched(tmp_path, kind, capsys):
    db = tmp_path / "bad.sqlite"
    if kind == "text":
        db.write_text("device,p50\nx,1\n")
    elif kind == "garbled":
        _corrupt_store(db)
    else:
        conn = sqlite3.connect(db)
        if kind == "foreign":
            conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE notes (x TEXT)")
        conn.commit()
        conn.close()
    before = db.read_bytes()
    with pytest.raises(BadInput, match=str(db)):
        Store(db)
    assert db.read_bytes() == before
    assert not Path(str(db) + "-wal").exists()
    assert main(["bench", "--export", str(tmp_path / "x.csv"), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edgevid: error: {db}: ") and "\n" not in err
    assert db.read_bytes() == before and not (tmp_path / "x.csv").exists()


def test_missing_store_for_reading_is_not_created(tmp_path):
    db = tmp_path / "none.sqlite"
    with pytest.raises(BadInput, match="no such result store"):
        Store(db, create=False)
    assert not db.exists()
    with pytest.raises(BadInput, match="does not exist"):
        Store(tmp_path / "no" / "dir.sqlite")


WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from bench_helpers import record
from benchmarks.store import Store
with Store({db!r}) as s:
    for i in range({n}):
        s.add_measurement(record([float(i + 1)] * 5, created=float(i)))
        time.sleep({pause})
print("done")
"""


def writer(db: Path, n: int, pause: float) -> list[str]:
    """A process that adds ``n`` measurements, one transaction each, ``pause`` s apart."""
    return [sys.executable, "-c", WRITER.format(tests=str(Path(__file__).parent), db=str(db), n=n, pause=pause)]


def test_reader_holding_a_snapshot_does_not_block_the_writer(tmp_path):
    """WAL: a reader inside a read transaction sees a fixed snapshot, the writer commits meanwhile,
    and every measurement a reader sees is complete."""
    db = tmp_path / "c.sqlite"
    with Store(db) as s:
        s.add_measurement(record([1.0]))
    reader = sqlite3.connect(db, isolation_level=None, timeout=0.1)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 1
    n = 40
    w = subprocess.run(writer(db, n, 0), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert w.returncode == 0 and w.stdout.strip() == "done", w.stderr
    assert reader.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 1  # its snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == n + 1
    reader.close()


def test_concurrent_reader_sees_only_whole_measurements(tmp_path):
    db = tmp_path / "c2.sqlite"
    Store(db).close()
    n = 60
    w = subprocess.Popen(writer(db, n, 0.02), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    with Store(db, create=False) as s:
        deadline = time.time() + 120
        while time.time() < deadline:
            rows = s.measurements()
            for m in rows:  # each row visible with its device, artifact and samples
                assert len(s.samples(m.id)) == m.stats.n == 5 and m.device_name == "testbox"
            seen.append(len(rows))
            if w.poll() is not None:
                break
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        assert len(s.measurements()) == n
    assert seen == sorted(seen)
    assert len(set(seen) - {0, n}) >= 2  # it did read while the writer was half-way


def test_export_csv_and_json(tmp_path):
    db = tmp_path / "e.sqlite"
    recs = [record([5, 6, 7], created=1.0), record([1, 2, 3, 4], threads=1, created=2.0,
                                                   fidelity={"cosine": 0.999})]
    with Store(db) as s:
        for r in recs:
            s.add_measurement(r)
        assert s.export(tmp_path / "out.csv") == 2
        assert s.export(tmp_path / "out.json") == 2
        with pytest.raises(BadInput, match="suffix"):
            s.export(tmp_path / "out.txt")
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["uid"] for r in rows] == [r.uid for r in recs]
    for row, r in zip(rows, recs):
        assert float(row["p50_ms"]) == pytest.approx(r.stats.p50) and int(row["threads"]) == r.threads
        assert row["variant"] == r.variant and row["device_name"] == "testbox" and row["model"] == "x3d_xs"
    assert json.loads(rows[1]["accuracy"]) == {"fidelity.cosine": 0.999}
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["format"] == "edgevid-store-export" and doc["schema_version"] == SCHEMA_VERSION
    assert [m["samples_ns"] for m in doc["measurements"]] == [list(r.samples_ns) for r in recs]
    assert doc["devices"][0]["cpu_model"] == "Test CPU" and len(doc["artifacts"]) == 1
    assert doc["accuracy"][0]["metric"] == "fidelity.cosine"
    # through the CLI too
    assert main(["bench", "--db", str(db), "--export", str(tmp_path / "cli.csv")]) == 0
    assert (tmp_path / "cli.csv").read_text() == (tmp_path / "out.csv").read_text()
