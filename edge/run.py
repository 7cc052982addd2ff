"""``edgevid run``: stream a video through a ``Switcher`` that holds a latency budget.

Setup, once: ``edge.switch_inputs.plan_run`` finds the artifacts and gives each its
latency and accuracy; ``load_switcher`` loads every runner once, warms it up and
records the resident memory they add (``open_switcher`` does both).

Streaming (``stream``): frames from the file or camera go into a
``calib_data.stream.FrameWindow`` of ``window`` frames; every ``stride`` new
frames the switcher chooses a configuration, the window is sampled uniformly to
its frame count (``calib_data.sampling.uniform_indices``, as in training) and
transformed to its resolution (``calib_data.transforms.preprocess``), and the
runner's call is timed.  Imports no torch.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from benchmarks.harness import PeakProbe, pin_affinity, status_mb
from calib_data.sampling import uniform_indices
from calib_data.stream import FrameWindow
from calib_data.transforms import preprocess
from calib_data.video import Source, is_camera, iter_frames, open_capture
from edge.core.errors import BadInput
from edge.switch import Candidate, Decision, SwitchConfig, Switcher
from edge.switch_inputs import MEASURE_RUNS, WARMUP_CALLS, RunPlan, plan_run
from targets.registry import TargetOptions, get_target

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 16  # frames: the synthetic training clips' length


# ----------------------------------------------------------------------------- setup

@dataclass(frozen=True)
class RunSetup:
    """A loaded switcher and what it was built from.  memory: MiB of the process before
    the runners were loaded (``base_mb``), after all of them loaded and warmed up
    (``rss_mb``), the difference (``runners_mb``) and the peak (``peak_mb``)."""

    switcher: Switcher
    num_classes: int
    labels: tuple[str, ...] | None
    memory: Mapping[str, Any]
    skipped: tuple[Mapping[str, str], ...]
    threads: int

    @property
    def candidates(self) -> list[Candidate]:
        return self.switcher.candidates

    def close(self) -> None:
        self.switcher.close()


def load_switcher(plan: RunPlan, config: SwitchConfig) -> RunSetup:
    """Load (and warm up) every runner of ``plan`` once and build the ``Switcher``.

    Memory: RSS before the loads, after them, and the peak.  When this process measured
    artifacts before (``measure_now``), the allocator may hand their freed memory to
    these runners, so ``runners_mb`` can read low; ``rss_mb`` is the whole process."""
    probe = PeakProbe(False)
    runners = []
    try:
        for art in plan.artifacts:
            runner = get_target(art.target, TargetOptions(threads=plan.threads)).load(art)
            runners.append(runner)
            zeros = np.zeros(art.input.shape, dtype=np.dtype(art.input.dtype))
            for _ in range(WARMUP_CALLS):
                runner(zeros)
        mem = probe.read()
        rss = status_mb("VmRSS")
        switcher = Switcher(list(zip(plan.candidates, runners)), config)
    except BaseException:
        for r in runners:
            r.close()
        raise
    memory = {"base_mb": mem.base_mb, "rss_mb": rss, "peak_mb": mem.peak_mb, "method": mem.method,
              "runners_mb": None if rss is None or mem.base_mb is None else max(0.0, rss - mem.base_mb),
              "runners": len(runners)}
    return RunSetup(switcher, plan.num_classes, plan.labels, memory, plan.skipped, plan.threads)


def open_switcher(folder: str | Path, config: SwitchConfig, db: str | Path | None = None, device: str | None = None,
                  accuracy_file: str | Path | None = None, threads: int | None = None,
                  measure_runs: int = MEASURE_RUNS) -> RunSetup:
    """``plan_run`` then ``load_switcher``: read, measure, rank and load every runnable
    artifact below ``folder``.  Call it inside the CPU affinity of the run."""
    return load_switcher(plan_run(folder, db, device, accuracy_file, threads, measure_runs), config)


# ----------------------------------------------------------------------------- streaming

@dataclass(frozen=True)
class ClipResult:
    """One clip: the decision, the prediction (class index, its name when known, softmax
    score), the call's latency and the input preparation time (ms)."""

    decision: Decision
    frame: int
    prediction: int
    label: str | None
    score: float
    latency_ms: float
    prep_ms: float
    within_budget: bool

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {"clip": d.index, "frame": self.frame, "prediction": self.prediction, "label": self.label,
                "score": self.score, "config": d.config, "latency_ms": self.latency_ms, "prep_ms": self.prep_ms,
                "within_budget": self.within_budget, "reason": d.reason, "detail": d.detail,
                "predicted_ms": d.predicted_ms, "switched": d.switched, "switch_ms": d.switch_ms}


def _softmax_top(logits: np.ndarray) -> tuple[int, float]:
    z = np.asarray(logits, dtype=np.float64).ravel()
    k = int(z.argmax())
    e = np.exp(z - z[k])
    return k, float(1.0 / e.sum())


def sample_window(buf: FrameWindow, window: int, frames: int) -> np.ndarray:
    """``frames`` frames spread uniformly over the newest ``window`` frames of ``buf``
    (``uniform_indices``, as in training): (frames, H, W, 3) uint8.  Evenly spaced
    indices ending at the newest frame are cut directly, without stacking the window."""
    idx = uniform_indices(window, frames)[0]
    steps = np.diff(idx)
    if frames > 1 and idx[-1] == window - 1 and idx[0] == 0 and (steps == steps[0]).all():
        return buf.latest(frames, int(steps[0]))
    return buf.latest(window)[idx]


def stream(source: Source, setup: RunSetup, window: int, stride: int, max_clips: int | None = None,
           decoder_threads: int | None = None) -> Iterator[ClipResult]:
    """Clips of ``window`` frames, one every ``stride`` new frames, each run by the
    configuration the switcher chooses.  Ends with the stream (or ``max_clips``)."""
    if window < 1 or stride < 1:
        raise BadInput(f"--window and --stride must be at least 1 frame, got {window} and {stride}")
    if max_clips is not None and max_clips < 1:
        raise BadInput(f"--max-clips must be at least 1, got {max_clips}")
    switcher, budget = setup.switcher, setup.switcher.config.budget_ms
    buf = FrameWindow(window)
    cap = open_capture(source, decoder_threads)
    index = since = 0
    try:
        for frame in iter_frames(cap):
            buf.push(frame)
            if not buf.ready(window):
                continue
            since += 1
            if (since - 1) % stride:
                continue
            decision = switcher.choose(index)
            c = switcher.current
            t0 = time.perf_counter_ns()
            frames = sample_window(buf, window, c.frames)
            clip = preprocess(frames, c.resolution)
            prep_ms = (time.perf_counter_ns() - t0) / 1e6
            logits, ms = switcher.infer(clip)
            k, score = _softmax_top(logits)
            label = setup.labels[k] if setup.labels is not None else None
            yield ClipResult(decision, buf.seen - 1, k, label, score, ms, prep_ms, ms <= budget)
            index += 1
            if max_clips is not None and index >= max_clips:
                return
    finally:
        cap.release()
    if buf.seen == 0:
        what = f"camera {int(source)}" if is_camera(source) else str(source)
        raise BadInput(f"{what}: opened but delivered no frames")
    if index == 0:
        log.warning("%s: stream ended after %d frames, before one window of %d", source, buf.seen, window)


# ----------------------------------------------------------------------------- summary

@dataclass(frozen=True)
class RunSummary:
    """What a run achieved.  within_budget: share of clips whose call took at most the
    budget; mean_accuracy: mean of the chosen configurations' accuracies (the proxy
    when ``accuracy_source`` says so); switch_ms_*: over the clips that switched
    (None without a switch); feasible: some configuration's stored p90 fits."""

    clips: int
    budget_ms: float
    within_budget: float | None
    feasible: bool
    note: str
    configs_used: Mapping[str, int]
    mean_accuracy: float | None
    accuracy_source: str
    switches: int
    switch_ms_mean: float | None
    switch_ms_max: float | None
    decide_ms_max: float | None
    latency_ms: Mapping[str, float | None]
    prep_ms_mean: float | None
    memory: Mapping[str, Any]
    candidates: tuple[Mapping[str, Any], ...]
    skipped: tuple[Mapping[str, str], ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v)
                for k, v in ((f, getattr(self, f)) for f in self.__dataclass_fields__)}


def _stat(xs: Sequence[float], fn: Any) -> float | None:
    return float(fn(xs)) if len(xs) else None


def summarize(results: Sequence[ClipResult], setup: RunSetup) -> RunSummary:
    policy = setup.switcher.policy
    budget = policy.config.budget_ms
    by_name = {c.name: c for c in setup.candidates}
    used = Counter(r.decision.config for r in results)
    lat = [r.latency_ms for r in results]
    switch = [r.decision.switch_ms for r in results if r.decision.switched]
    note = "" if policy.feasible else (
        f"no configuration's stored p90 meets {budget:g} ms; ran the cheapest ({policy.cheapest.name}, "
        f"{policy.cheapest.stored_ms:.2f} ms)")
    ladder = {c.name for c in policy.ladder}
    cands = tuple({**c.to_json(), "ladder": c.name in ladder} for c in setup.candidates)
    return RunSummary(
        clips=len(results), budget_ms=budget,
        within_budget=_stat([r.within_budget for r in results], np.mean), feasible=policy.feasible, note=note,
        configs_used={n: used[n] for n in sorted(used, key=lambda n: by_name[n].stored_ms)},
        mean_accuracy=_stat([by_name[r.decision.config].accuracy for r in results], np.mean),
        accuracy_source=", ".join(sorted({c.accuracy_source for c in setup.candidates})),
        switches=len(switch), switch_ms_mean=_stat(switch, np.mean), switch_ms_max=_stat(switch, np.max),
        decide_ms_max=_stat([r.decision.switch_ms for r in results], np.max),
        latency_ms={"mean": _stat(lat, np.mean), "p90": _stat(lat, lambda x: np.percentile(x, 90)),
                    "max": _stat(lat, np.max)},
        prep_ms_mean=_stat([r.prep_ms for r in results], np.mean), memory=dict(setup.memory), candidates=cands,
        skipped=setup.skipped)


def pinned(affinity: tuple[int, ...] | None) -> Any:
    """Context that pins this thread (and the runtime threads it starts) to ``affinity``."""
    return nullcontext() if affinity is None else pin_affinity(affinity)


def default_window(setup: RunSetup, window: int | None) -> int:
    """``window`` or max(16, the most frames any configuration takes)."""
    most = max(c.frames for c in setup.candidates)
    if window is None:
        return max(DEFAULT_WINDOW, most)
    if window < most:
        raise BadInput(f"--window {window} holds fewer frames than a configuration takes ({most})")
    return window
