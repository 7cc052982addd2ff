"""The latency harness: statistics, warm-up/run counting on a fake clock, thread and
affinity pinning, peak memory, isolation, skip reasons, torch-free measurement of a
real ONNX Runtime artifact; and the device fingerprint."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bench_helpers
from bench_helpers import FakeClock, FakeTarget, tiny_artifact
from benchmarks import device as devmod
from benchmarks import harness
from benchmarks.harness import BenchConfig, measure, parse_affinity, skip_reason
from benchmarks.record import LatencyRecord, Stats
from edge.core.errors import BadInput
from targets.base import Artifact

ROOT = Path(__file__).resolve().parent.parent
DEV = bench_helpers.device()


# ----------------------------------------------------------------------------- statistics

def test_stats_math_on_known_samples():
    ms = np.arange(1, 101, dtype=np.float64)  # 1..100 ms
    s = Stats.from_ns([int(x * 1e6) for x in ms])
    assert s.n == 100 and s.min == 1.0
    assert s.p50 == pytest.approx(50.5) and s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)
    assert s.mean == pytest.approx(50.5) and s.std == pytest.approx(np.std(ms, ddof=1))
    assert s.throughput == pytest.approx(100 / 5.05)  # 100 clips in 5.05 s
    one = Stats.from_ns([3_000_000])
    assert (one.min, one.p50, one.p99, one.std, one.throughput) == (3.0, 3.0, 3.0, 0.0, pytest.approx(1000 / 3))
    with pytest.raises(ValueError):
        Stats.from_ns([])


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A 'fake' target whose runner advances a fake clock by 2, 4, 6, 8 ms per call."""
    clock = FakeClock([2_000_000, 4_000_000, 6_000_000, 8_000_000])
    monkeypatch.setitem(harness.TARGETS, "fake", "bench_helpers:FakeTarget")
    monkeypatch.setattr(FakeTarget, "clock", clock)
    monkeypatch.setattr(harness, "_clock", clock)
    return clock, tiny_artifact(tmp_path / "fake", target="fake")


def test_harness_counts_warmup_and_runs_and_keeps_every_sample(fake):
    clock, art = fake
    rec = measure(art, BenchConfig(runs=8, warmup=3), DEV)
    # 3 warm-up calls take 2, 4, 6 ms; the 8 timed calls continue the cycle: 8, 2, 4, 6, 8, 2, 4, 6
    assert rec.warmup_calls == 3 and rec.first_call_ms == 2.0
    assert [x / 1e6 for x in rec.samples_ns] == [8, 2, 4, 6, 8, 2, 4, 6]
    ref = np.array([8, 2, 4, 6, 8, 2, 4, 6], dtype=float)
    assert rec.stats.p50 == pytest.approx(np.percentile(ref, 50)) and rec.stats.p90 == pytest.approx(
        np.percentile(ref, 90))
    assert rec.stats.mean == pytest.approx(5.0) and rec.stats.throughput == pytest.approx(200.0)
    assert rec.load_ms == 7.0
    assert clock.runners[0].closed and clock.runners[0].calls == 11
    assert rec.target == "fake" and rec.variant == art.variant and len(rec.uid) == 32


def test_harness_min_time_and_warmup_seconds_extend_the_counts(fake):
    clock, art = fake
    # warm-up >= 11 ms (2+4+6 = 12 after 3 calls); timed >= 30 ms: 8+2+4+6+8+2 = 30 after 6 calls
    rec = measure(art, BenchConfig(runs=2, warmup=1, warmup_s=0.011, min_time_s=0.030), DEV)
    assert rec.warmup_calls == 3
    assert [x / 1e6 for x in rec.samples_ns] == [8, 2, 4, 6, 8, 2]


def test_harness_without_warmup_reports_the_first_timed_call(fake):
    _, art = fake
    rec = measure(art, BenchConfig(runs=3, warmup=0), DEV)
    assert rec.warmup_calls == 0 and rec.first_call_ms == 2.0 and rec.samples_ns[0] == 2_000_000


def test_threads_default_to_usable_cpus_and_are_passed_to_the_target(fake):
    clock, art = fake
    rec = measure(art, BenchConfig(runs=1), DEV)
    assert rec.threads == len(os.sched_getaffinity(0)) == clock.runners[-1].options.threads
    rec = measure(art, BenchConfig(runs=1, threads=3), DEV)
    assert rec.threads == 3 == clock.runners[-1].options.threads


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_affinity_pins_the_load_and_runs_then_restores(fake):
    clock, art = fake
    before = os.sched_getaffinity(0)
    cpu = min(before)
    rec = measure(art, BenchConfig(runs=1, affinity=(cpu,)), DEV)
    assert clock.runners[-1].affinity_seen == [cpu]
    assert rec.affinity == (cpu,) and rec.threads == 1
    assert os.sched_getaffinity(0) == before
    with pytest.raises(BadInput, match="cannot pin"):
        measure(art, BenchConfig(runs=1, affinity=(4096,)), DEV)
    assert os.sched_getaffinity(0) == before


def test_real_sleeps_are_measured_at_least_as_long():
    class Sleeper:
        def __call__(self, clip):
            time.sleep(0.002)

    samples = harness._timed(Sleeper(), np.zeros(1), BenchConfig(runs=5))
    assert len(samples) == 5 and min(samples) >= 2_000_000


def test_bench_config_validation():
    for bad in (dict(runs=0), dict(warmup=-1), dict(threads=0), dict(min_time_s=-1), dict(affinity=())):
        with pytest.raises(BadInput):
            BenchConfig(**bad)
    assert parse_affinity("0,2-3") == (0, 2, 3)
    with pytest.raises(BadInput, match="--affinity"):
        parse_affinity("a-b")
    assert BenchConfig.from_json(BenchConfig(affinity=(1, 0)).to_json()) == BenchConfig(affinity=(0, 1))


# ----------------------------------------------------------------------------- availability

def test_skip_reasons(tmp_path):
    ok = tiny_artifact(tmp_path / "ok")
    assert skip_reason(ok) == ""
    assert "unknown target 'nosuch'" in skip_reason(ok.with_(target="nosuch"))
    assert "status is 'failed'" in skip_reason(ok.with_(status="failed"))
    trt = ok.with_(target="tensorrt")
    from targets.registry import get_target

    if not get_target("tensorrt").available():
        assert skip_reason(trt) == get_target("tensorrt").unavailable_reason() != ""
    with pytest.raises(BadInput, match="cannot measure here"):
        measure(ok.with_(target="nosuch"), BenchConfig(runs=1), DEV)


# ----------------------------------------------------------------------------- real runtime

def test_real_onnxruntime_artifact_and_peak_memory(tmp_path):
    art = tiny_artifact(tmp_path / "ort")
    rec = measure(art.path, BenchConfig(runs=5, warmup=1, threads=1), DEV)
    assert rec.stats.n == 5 and rec.threads == 1 and rec.runtime["providers"][-1] == "CPUExecutionProvider"
    assert rec.stats.min <= rec.stats.p50 <= rec.stats.p90 <= rec.stats.p99 <= max(rec.samples_ns) / 1e6
    assert rec.load_ms > 0 and rec.first_call_ms > 0
    if sys.platform.startswith("linux"):
        assert rec.memory.method == "VmHWM after clear_refs reset"
        assert rec.memory.peak_mb >= rec.memory.base_mb > 0
    assert LatencyRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux")
def test_peak_memory_sees_what_the_runner_allocates(monkeypatch, tmp_path):
    """A fake runner that holds 200 MiB of touched memory: the growth must show it."""
    monkeypatch.setitem(harness.TARGETS, "fake", "bench_helpers:FakeTarget")
    clock = FakeClock([1_000])
    monkeypatch.setattr(FakeTarget, "clock", clock)
    art = tiny_artifact(tmp_path / "fat", target="fake")
    held = []
    orig = FakeTarget.load

    def fat_load(self, artifact):
        held.append(np.ones(200 * 2**20 // 8))  # 200 MiB, every page written
        return orig(self, artifact)

    monkeypatch.setattr(FakeTarget, "load", fat_load)
    rec = measure(art, BenchConfig(runs=1), DEV)
    assert rec.memory.growth_mb >= 190
    held.clear()
    monkeypatch.setattr(FakeTarget, "load", orig)
    rec2 = measure(art, BenchConfig(runs=1), DEV)  # the high-water mark was reset: the freed 200 MiB do not count
    assert rec2.memory.peak_mb < rec.memory.peak_mb - 150


def test_isolated_measurement_runs_in_a_fresh_process(tmp_path):
    art = tiny_artifact(tmp_path / "iso")
    rec = measure(art, BenchConfig(runs=3, warmup=1, threads=1, isolate=True), DEV)
    assert rec.memory.isolated and rec.stats.n == 3 and rec.device == DEV
    assert rec.memory.peak_mb is not None and rec.memory.peak_mb > 0
    tampered = tmp_path / "iso" / "model.onnx"
    tampered.write_bytes(tampered.read_bytes()[:-10])
    with pytest.raises(BadInput, match="sha256"):
        measure(Artifact.read(art.path, verify=False), BenchConfig(runs=1, isolate=True), DEV)


def test_harness_measures_without_importing_torch(tmp_path):
    art = tiny_artifact(tmp_path / "notorch")
    code = (
        "import sys\n"
        "from benchmarks.harness import BenchConfig, measure\n"
        "from benchmarks.device import fingerprint\n"
        f"rec = measure({str(art.path)!r}, BenchConfig(runs=2, warmup=1), fingerprint('x'))\n"
        "heavy = [m for m in ('torch', 'onnx', 'cv2', 'onnxslim') if m in sys.modules]\n"
        "print(rec.stats.n, heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "[]"]


# ----------------------------------------------------------------------------- device fingerprint

X86 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_tile ht
"""
ARM = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes crc32 asimdhp asimddp i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd42
"""


def test_cpuinfo_parsing_x86_and_arm():
    assert devmod.cpu_model(X86) == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert devmod.isa_flags(X86, "x86_64") == ("amx_tile", "avx", "avx2", "avx512_vnni", "avx512bw", "avx512f",
                                               "avx_vnni", "fma", "sse4_2")
    assert devmod.cpu_model(ARM) == "ARM implementer 0x41 part 0xd42"
    assert devmod.isa_flags(ARM, "aarch64") == ("asimd", "asimddp", "asimdhp", "i8mm", "neon")


def test_fingerprint_is_stable_and_named():
    a, b = devmod.fingerprint("board-a"), devmod.fingerprint("board-b")
    assert a.id == b.id and len(a.id) == 16 and (a.name, b.name) == ("board-a", "board-b")
    assert a.cpus == os.cpu_count() and a.memory_mb > 0 and a.cpu_model
    assert "onnxruntime" in a.runtimes and "numpy" in a.runtimes
    assert devmod.DeviceInfo.from_json(json.loads(json.dumps(a.to_json()))) == a
    assert devmod.fingerprint().name  # the hostname
    # the id follows the stable parts only
    assert devmod.stable_id("cpu", 4, 8000, "Linux", "x86_64", (), "") == \
        devmod.stable_id("cpu", 4, 8100, "Linux", "x86_64", (), "")  # same GiB
    assert devmod.stable_id("cpu", 4, 8000, "Linux", "x86_64", ("NVIDIA H100",), "") != \
        devmod.stable_id("cpu", 4, 8000, "Linux", "x86_64", (), "")
    with pytest.raises(BadInput, match="empty"):
        devmod.fingerprint("  ")


def test_peak_memory_falls_back_to_ru_maxrss(monkeypatch, tmp_path):
    monkeypatch.setattr(harness, "_reset_peak", lambda: False)  # no /proc/self/clear_refs (macOS, old kernels)
    rec = measure(tiny_artifact(tmp_path / "a"), BenchConfig(runs=1), DEV)
    assert rec.memory.method == "ru_maxrss (process lifetime)" and rec.memory.base_mb is None
    assert rec.memory.peak_mb > 0 and rec.memory.growth_mb is None
