"""Latency harness: one artifact, one device, one ``LatencyRecord``.

``measure(artifact, config, device)`` on any target of ``targets.registry``:

1. threads pinned: ``config.threads`` (default: the CPUs this process may run on)
   goes to the target as ``TargetOptions(threads=...)`` and is recorded;
   ``config.affinity`` pins the process to those CPUs (``os.sched_setaffinity``)
   before the load, so the runtime's worker threads inherit it, and is restored
   after;
2. cold load: wall time of ``target.load(artifact)`` - the artifact's sha256
   check plus session/engine creation (OS file cache warm);
3. warm-up: at least ``warmup`` calls and at least ``warmup_s`` seconds; the
   first call's time is kept apart (``first_call_ms``, lazy initialisation);
4. timed runs: at least ``runs`` calls and at least ``min_time_s`` seconds of
   timed calls (at most ``MAX_RUNS``), each timed with ``time.perf_counter_ns``
   around ``runner(clip)`` (the runner's input check included), the garbage
   collector off; every sample kept.  Input: one clip of the artifact's input
   shape, N(0, 1) from ``numpy.random.default_rng(config.seed)``, the same for
   every call (or the caller's clip);
5. peak memory (``Memory``): on Linux the process' RSS high-water mark is reset
   before the load (writing "5" to ``/proc/self/clear_refs``) and ``VmHWM`` read
   after the runs; ``base_mb`` is ``VmRSS`` just before the load.  In-process this
   is honest for the runner as long as earlier work freed its memory back to the
   OS (allocator caches can make the growth look smaller); ``config.isolate``
   runs each measurement in a fresh ``python -m benchmarks.harness`` subprocess,
   where the peak is that of a process that did nothing else (interpreter +
   numpy + runtime + model: what a device must have free).  Without
   ``clear_refs`` (macOS, locked-down kernels) the reading is ``ru_maxrss``: the
   process-lifetime peak, which only isolation makes per-artifact.

Imports no torch (and no runtime until the target loads the artifact).
"""
from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from benchmarks.device import DeviceInfo
from benchmarks.record import LatencyRecord, Memory, Stats, artifact_digest, dumps
from edge.core.errors import BadInput
from targets.base import Artifact
from targets.registry import TARGETS, TargetOptions, get_target

log = logging.getLogger(__name__)

MAX_RUNS = 100_000
_clock = time.perf_counter_ns  # the one clock of every timing (tests substitute a fake one)
RUNTIME_ATTRS = ("providers", "device", "execution_device")  # runner attributes worth recording


@dataclass(frozen=True)
class BenchConfig:
    """How to measure.  ``threads`` None: the number of CPUs the process may run on
    (after ``affinity``).  ``runtime_device``: ``TargetOptions.device`` (e.g. ORT
    "cuda", OpenVINO "GPU")."""

    runs: int = 20
    warmup: int = 3
    warmup_s: float = 0.0
    min_time_s: float = 0.0
    threads: int | None = None
    affinity: tuple[int, ...] | None = None
    isolate: bool = False
    seed: int = 0
    runtime_device: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or not 1 <= self.runs <= MAX_RUNS:
            raise BadInput(f"--runs must be an integer in [1, {MAX_RUNS}], got {self.runs!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise BadInput(f"--warmup must be a non-negative integer, got {self.warmup!r}")
        for flag, v in (("warmup-s", self.warmup_s), ("min-time", self.min_time_s)):
            if not (isinstance(v, (int, float)) and 0 <= v < 1e6):
                raise BadInput(f"--{flag} must be a non-negative number of seconds, got {v!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise BadInput(f"--threads must be a positive integer, got {self.threads!r}")
        if self.affinity is not None:
            if not self.affinity or any(not isinstance(c, int) or c < 0 for c in self.affinity):
                raise BadInput(f"--affinity must list CPU numbers >= 0, got {self.affinity!r}")
            object.__setattr__(self, "affinity", tuple(sorted(set(self.affinity))))

    def resolved_threads(self) -> int:
        if self.threads is not None:
            return self.threads
        if self.affinity is not None:
            return len(self.affinity)
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["affinity"] = None if self.affinity is None else list(self.affinity)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "BenchConfig":
        d = dict(d)
        if d.get("affinity") is not None:
            d["affinity"] = tuple(d["affinity"])
        return cls(**d)


def parse_affinity(text: str) -> tuple[int, ...]:
    """``"0,2-3"`` -> (0, 2, 3)."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise BadInput(f"--affinity: expected CPU numbers like 0,2-3, got {text!r}") from None
    if not cpus or min(cpus) < 0:
        raise BadInput(f"--affinity: expected CPU numbers like 0,2-3, got {text!r}")
    return tuple(sorted(cpus))


# ----------------------------------------------------------------------------- availability

def skip_reason(artifact: Artifact) -> str:
    """Why ``artifact`` cannot be measured here (empty when it can): a failed build, a
    target this edgevid does not know or has no module for, or an absent runtime."""
    if artifact.status != "ok":
        return f"artifact status is {str(artifact.status)!r} (the build failed)"
    if artifact.target not in TARGETS:
        return f"unknown target {artifact.target!r} (this edgevid knows {', '.join(TARGETS)})"
    try:
        target = get_target(artifact.target)
    except ImportError as e:
        return f"target {artifact.target!r} is not available in this edgevid ({e})"
    if not target.available():
        return target.unavailable_reason() or f"{artifact.target} runtime not available"
    return ""


# ----------------------------------------------------------------------------- memory

def status_mb(key: str) -> float | None:
    """One ``/proc/self/status`` figure in MiB (``VmRSS``, ``VmHWM``); None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status_mb("VmHWM") is not None
    except OSError:
        return False


def _maxrss_mb() -> float | None:
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1 << 20) if sys.platform == "darwin" else r / 1024.0  # bytes on macOS, KiB on Linux


class PeakProbe:
    """Peak memory over a stretch of work: the high-water mark reset at construction, read by ``read()``."""

    def __init__(self, isolated: bool) -> None:
        gc.collect()
        self.isolated = isolated
        self.hwm = _reset_peak()
        self.base = status_mb("VmRSS") if self.hwm else None

    def read(self) -> Memory:
        if self.hwm:
            return Memory(status_mb("VmHWM"), self.base, "VmHWM after clear_refs reset", self.isolated)
        peak = _maxrss_mb()
        return Memory(peak, None, "ru_maxrss (process lifetime)" if peak is not None else "unavailable on this OS",
                      self.isolated)


@contextmanager
def pin_affinity(affinity: tuple[int, ...] | None) -> Iterator[None]:
    """Run the block on the CPUs ``affinity`` (``os.sched_setaffinity``), restored after; None: as is."""
    if affinity is None:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        raise BadInput("--affinity: CPU affinity is not supported on this OS")
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, affinity)
    except OSError as e:
        raise BadInput(f"--affinity {','.join(map(str, affinity))}: cannot pin to those CPUs ({e.strerror}); "
                       f"this process may use CPUs {','.join(map(str, sorted(before)))}") from None
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# ----------------------------------------------------------------------------- measuring

def make_clip(artifact: Artifact, seed: int = 0) -> np.ndarray:
    """One N(0, 1) clip of the artifact's input shape and dtype (seeded)."""
    spec = artifact.input
    return np.random.default_rng(seed).standard_normal(spec.shape, dtype=np.float32).astype(spec.dtype, copy=False)


def _open(artifact: Artifact | str | Path) -> Artifact:
    return artifact if isinstance(artifact, Artifact) else Artifact.read(artifact, verify=True)


def measure(artifact: Artifact | str | Path, config: BenchConfig, device: DeviceInfo,
            clip: np.ndarray | None = None) -> LatencyRecord:
    """Measure one artifact (see the module docstring); ``clip`` (the artifact's input
    shape) defaults to ``make_clip(artifact, config.seed)``."""
    art = _open(artifact)
    reason = skip_reason(art)
    if reason:
        raise BadInput(f"{art.path}: cannot measure here: {reason}")
    if config.isolate:
        if clip is not None:
            raise BadInput("a caller's clip cannot be passed to an isolated measurement")
        return _measure_isolated(art, config, device)
    return _measure_here(art, config, device, make_clip(art, config.seed) if clip is None else clip, False)


def _measure_here(art: Artifact, config: BenchConfig, device: DeviceInfo, clip: np.ndarray,
                  isolated: bool) -> LatencyRecord:
    threads = config.resolved_threads()
    target = get_target(art.target, TargetOptions(threads=threads, device=config.runtime_device))
    with pin_affinity(config.affinity):
        probe = PeakProbe(isolated)
        t0 = _clock()
        runner = target.load(art)
        load_ns = _clock() - t0
        try:
            first_ns, warm = _warm_up(runner, clip, config)
            samples = _timed(runner, clip, config)
            if warm == 0:
                first_ns = samples[0]
            memory = probe.read()
            runtime = {a: _plain(getattr(runner, a)) for a in RUNTIME_ATTRS if hasattr(runner, a)}
            if hasattr(os, "getloadavg"):
                runtime["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine skews timings
        finally:
            runner.close()
    stats = Stats.from_ns(samples)
    log.info("%s on %s: p50 %.2f ms over %d runs, %d threads", art.variant, art.target, stats.p50, stats.n, threads)
    return LatencyRecord(uid=uuid.uuid4().hex, device=device, target=art.target, variant=art.variant,
                         precision=art.precision, artifact_sha256=artifact_digest(art.files),
                         artifact_path=str(Path(art.path).resolve()), manifest=art.to_json(), threads=threads,
                         affinity=config.affinity, warmup_calls=warm, samples_ns=tuple(samples), stats=stats,
                         load_ms=load_ns / 1e6, first_call_ms=first_ns / 1e6, memory=memory,
                         accuracy=None if art.fidelity is None else dict(art.fidelity), runtime=runtime,
                         created=time.time())


def _warm_up(runner: Any, clip: np.ndarray, config: BenchConfig) -> tuple[int, int]:
    """(first call's ns, number of warm-up calls).  With no warm-up the first timed call is
    the first call: its time is reported as ``first_call_ms`` too."""
    first = 0
    calls = 0
    end = _clock() + int(config.warmup_s * 1e9)
    while calls < config.warmup or _clock() < end:
        t0 = _clock()
        out = runner(clip)
        dt = _clock() - t0
        if calls == 0:
            first = dt
            _check_output(out, runner)
        calls += 1
    return first, calls


def _check_output(out: Any, runner: Any) -> None:
    arr = np.asarray(out)
    if not np.isfinite(arr).all():
        log.warning("%s: the runner's output on the benchmark clip contains NaN/Inf",
                    getattr(getattr(runner, "artifact", None), "path", "artifact"))


def _timed(runner: Any, clip: np.ndarray, config: BenchConfig) -> list[int]:
    samples: list[int] = []
    total = 0
    min_ns = int(config.min_time_s * 1e9)
    clock = _clock
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        while (len(samples) < config.runs or total < min_ns) and len(samples) < MAX_RUNS:
            t0 = clock()
            runner(clip)
            dt = clock() - t0
            samples.append(dt)
            total += dt
    finally:
        if gc_was_on:
            gc.enable()
    return samples


def _plain(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v)


# ----------------------------------------------------------------------------- isolation

def _project_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _measure_isolated(art: Artifact, config: BenchConfig, device: DeviceInfo) -> LatencyRecord:
    """Run the measurement in a fresh interpreter (``python -m benchmarks.harness REQUEST``)."""
    with tempfile.TemporaryDirectory(prefix="edgevid-bench-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(dumps({"artifact": str(art.path), "config": config.to_json(),
                                  "device": device.to_json(), "out": str(result)}))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_project_root(), env.get("PYTHONPATH")) if p)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.harness", str(request)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode == 2 and result.is_file():
            raise BadInput(json.loads(result.read_text())["error"])
        if proc.returncode != 0 or not result.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{art.path}: isolated measurement failed (exit {proc.returncode}): {tail}")
        return LatencyRecord.from_json(json.loads(result.read_text()), str(result))


def _child(argv: Sequence[str]) -> int:
    """Entry of the isolated measurement: REQUEST.json in, the record (or the error) out."""
    if len(argv) != 1:
        print("usage: python -m benchmarks.harness REQUEST.json (internal: used by --isolate)", file=sys.stderr)
        return 2
    req = json.loads(Path(argv[0]).read_text())
    out = Path(req["out"])
    try:
        config = BenchConfig.from_json({**req["config"], "isolate": False})
        art = _open(req["artifact"])
        record = _measure_here(art, config, DeviceInfo.from_json(req["device"]), make_clip(art, config.seed), True)
    except BadInput as e:
        out.write_text(json.dumps({"error": str(e)}))
        return 2
    out.write_text(dumps(record.to_json()))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(_child(sys.argv[1:]))
