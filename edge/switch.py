"""Run-time switching: a latency budget -> a configuration -> its loaded runner.

A ``Candidate`` is one compiled configuration (an artifact: any target and
precision) with a stored latency (p90 ms, from the result store or measured at
load time) and an accuracy.  ``SwitchPolicy`` is the pure decision logic; a
``Switcher`` holds a policy plus one loaded runner per candidate and times what
each call actually took.

Policy (per clip, before the call):

* ladder: the candidates on the accuracy/latency Pareto front, fastest first
  (a configuration that is slower and not more accurate than another is never
  worth switching to; it is listed as dominated);
* start: the most accurate configuration whose stored latency fits the budget;
  when none fits, the cheapest (``feasible`` is then False and the caller warns);
* observed latency of the current configuration: the ``percentile`` (p90) of its
  last ``window`` calls since it was switched to (a window is cleared when its
  configuration is entered again: older calls ran under another load), known
  once ``min_samples`` calls are in;
* predicted latency of any other configuration: its stored latency times
  ``scale`` = observed / stored of the current one, so load that slows the
  current configuration moves every prediction too;
* down: observed > ``budget * down_ratio`` -> the most accurate configuration
  below whose prediction fits ``budget * down_ratio`` (else the cheapest);
* up: after ``dwell`` clips at the current configuration, when the next-better
  one on the ladder is predicted to fit ``budget * up_ratio`` -> one step up.

``up_ratio < down_ratio`` and the dwell are the hysteresis: a configuration
whose latency sits near the budget is left once and not re-entered until the
prediction clears the budget with margin.

Imports no torch: numpy and the runners only.
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np

from edge.core.errors import BadInput
from targets.base import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwitchConfig:
    """Budget and hysteresis of the policy.

    budget_ms: latency bound of one call (ms) that the ``percentile`` of the
        observed calls must hold; window: calls per configuration in that
        percentile; min_samples: calls before the observation counts;
    down_ratio / up_ratio: step down when observed > budget * down_ratio, step up
        when the next-better configuration is predicted <= budget * up_ratio;
    dwell: clips at a configuration before stepping up.
    """

    budget_ms: float
    window: int = 12
    min_samples: int = 3
    down_ratio: float = 1.0
    up_ratio: float = 0.8
    dwell: int = 8
    percentile: float = 90.0

    def __post_init__(self) -> None:
        if not (isinstance(self.budget_ms, (int, float)) and math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise BadInput(f"--budget-ms must be a positive number of milliseconds, got {self.budget_ms!r}")
        for name, flag in (("window", "--history"), ("min_samples", "min_samples"), ("dwell", "--dwell")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BadInput(f"{flag} must be a positive integer, got {v!r}")
        if self.min_samples > self.window:
            raise BadInput(f"--history {self.window} is shorter than the {self.min_samples} calls a p90 needs")
        if not (0 < self.up_ratio < self.down_ratio):
            raise BadInput(f"--up-ratio must be in (0, {self.down_ratio:g}) (below the down ratio: hysteresis), "
                           f"got {self.up_ratio}")
        if not 0 < self.percentile <= 100:
            raise BadInput(f"switch percentile must be in (0, 100], got {self.percentile}")


@dataclass(frozen=True)
class Candidate:
    """One configuration the switcher may run.

    name: display key (the variant tag, with the target when targets are mixed);
    frames, resolution: its input (1, 3, frames, resolution, resolution);
    stored_ms: its latency (p90 ms) from ``latency_source`` ("store ..." or
        "measured at load ..."); accuracy in [0, 1] from ``accuracy_source``
        ("artifact", "file", "store", or "proxy: GFLOPs rank").
    """

    name: str
    variant: str
    target: str
    path: str
    frames: int
    resolution: int
    stored_ms: float
    latency_source: str
    accuracy: float
    accuracy_source: str
    gflops: float | None = None

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Decision:
    """The configuration chosen for clip ``index`` and why.

    reason: "start", "hold", "down", "up" (or "hold" at the cheapest while over
    budget); detail: the figures behind it; predicted_ms: the chosen
    configuration's predicted latency; scale: observed / stored of the
    configuration that ran before (1.0 until ``min_samples`` calls);
    switch_ms: time to decide and hand over the runner (set by ``Switcher``).
    """

    index: int
    config: str
    previous: str | None
    reason: str
    detail: str
    predicted_ms: float
    scale: float
    switch_ms: float = 0.0

    @property
    def switched(self) -> bool:
        return self.previous is not None and self.previous != self.config

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "config": self.config, "previous": self.previous, "reason": self.reason,
                "detail": self.detail, "predicted_ms": self.predicted_ms, "scale": self.scale,
                "switched": self.switched, "switch_ms": self.switch_ms}


def percentile(values: Iterable[float], q: float) -> float:
    """``numpy.percentile(values, q)`` (linear interpolation) for a few values, in plain Python
    (a switch decision must stay far below a millisecond)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def pareto_ladder(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    """(ladder, dominated): the ladder is fastest first with strictly increasing accuracy;
    dominated candidates are slower than a ladder entry that is at least as accurate."""
    ladder: list[Candidate] = []
    dominated: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: (c.stored_ms, -c.accuracy, c.name)):
        if ladder and c.accuracy <= ladder[-1].accuracy:
            dominated.append(c)
        else:
            ladder.append(c)
    return ladder, dominated


class SwitchPolicy:
    """The decision logic alone (no runners, no clock): ``decide`` before each clip,
    ``observe`` its latency after.  See the module docstring."""

    def __init__(self, candidates: Sequence[Candidate], config: SwitchConfig) -> None:
        if not candidates:
            raise BadInput("no configurations to switch between")
        names = [c.name for c in candidates]
        if len(set(names)) != len(names):
            raise BadInput(f"configuration names must be unique, got {names}")
        self.config = config
        self.ladder, self.dominated = pareto_ladder(candidates)
        fits = [i for i, c in enumerate(self.ladder) if c.stored_ms <= config.budget_ms]
        self.feasible = bool(fits)
        self._level = fits[-1] if fits else 0
        self._obs: dict[str, deque[float]] = {c.name: deque(maxlen=config.window) for c in self.ladder}
        self._stint = 0  # clips decided at the current configuration
        self._started = False

    @property
    def current(self) -> Candidate:
        return self.ladder[self._level]

    @property
    def cheapest(self) -> Candidate:
        return self.ladder[0]

    def observed_ms(self) -> float | None:
        """The percentile of the current configuration's calls in this stint (None: too few)."""
        obs = self._obs[self.current.name]
        if len(obs) < self.config.min_samples:
            return None
        return percentile(obs, self.config.percentile)

    def scale(self) -> float:
        """Observed / stored latency of the current configuration (1.0 until known)."""
        obs = self.observed_ms()
        return 1.0 if obs is None else obs / self.current.stored_ms

    def predicted_ms(self, c: Candidate) -> float:
        """Observed latency for the current configuration when known, else stored x scale."""
        obs = self.observed_ms()
        if c.name == self.current.name and obs is not None:
            return obs
        return c.stored_ms * (1.0 if obs is None else obs / self.current.stored_ms)

    def decide(self, index: int) -> Decision:
        """The configuration for clip ``index``."""
        budget = self.config.budget_ms
        cur = self.current
        if not self._started:
            self._started = True
            self._stint = 1
            detail = (f"stored p90 {cur.stored_ms:.2f} ms <= budget {budget:g} ms, most accurate that fits"
                      if self.feasible else
                      f"no configuration's stored p90 fits {budget:g} ms; cheapest {cur.stored_ms:.2f} ms")
            return Decision(index, cur.name, None, "start", detail, cur.stored_ms, 1.0)
        obs = self.observed_ms()
        scale = 1.0 if obs is None else obs / cur.stored_ms
        down_at, up_at = budget * self.config.down_ratio, budget * self.config.up_ratio
        if obs is not None and obs > down_at:
            if self._level == 0:
                self._stint += 1
                return Decision(index, cur.name, cur.name, "hold",
                                f"p90 {obs:.2f} ms > {down_at:g} ms at the cheapest configuration", obs, scale)
            below = [i for i in range(self._level) if self.ladder[i].stored_ms * scale <= down_at]
            target = below[-1] if below else 0
            return self._switch(index, target, "down", f"p90 {obs:.2f} ms > {down_at:g} ms (x{scale:.2f} stored)",
                                scale)
        if obs is not None and self._stint >= self.config.dwell and self._level + 1 < len(self.ladder):
            nxt = self.ladder[self._level + 1]
            pred = nxt.stored_ms * scale
            if pred <= up_at:
                return self._switch(index, self._level + 1, "up",
                                    f"{nxt.name} predicted {pred:.2f} ms <= {up_at:g} ms (x{scale:.2f} stored)",
                                    scale)
        self._stint += 1
        return Decision(index, cur.name, cur.name, "hold", "p90 not known yet" if obs is None else f"p90 {obs:.2f} ms",
                        cur.stored_ms if obs is None else obs, scale)

    def _switch(self, index: int, level: int, reason: str, detail: str, scale: float) -> Decision:
        previous = self.current.name
        self._level = level
        self._stint = 1
        self._obs[self.current.name].clear()  # calls of an earlier stint ran under another load
        c = self.current
        return Decision(index, c.name, previous, reason, detail, c.stored_ms * scale, scale)

    def observe(self, latency_ms: float) -> None:
        """Record what the current configuration's call took."""
        self._obs[self.current.name].append(float(latency_ms))


class Switcher:
    """A ``SwitchPolicy`` plus one loaded runner per candidate (loaded by the caller,
    once); ``choose`` picks the runner for a clip, ``infer`` runs and times it."""

    def __init__(self, entries: Sequence[tuple[Candidate, Runner]], config: SwitchConfig,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.candidates = [c for c, _ in entries]
        self.policy = SwitchPolicy(self.candidates, config)
        self._runners = {c.name: r for c, r in entries}
        self._runner: Runner = self._runners[self.policy.current.name]
        self._clock = clock

    @property
    def config(self) -> SwitchConfig:
        return self.policy.config

    @property
    def current(self) -> Candidate:
        return self.policy.current

    def choose(self, index: int) -> Decision:
        """Decide the configuration of clip ``index`` and make its runner current;
        ``switch_ms`` is the time this took (the whole cost of a switch: no reload)."""
        t0 = self._clock()
        d = self.policy.decide(index)
        self._runner = self._runners[d.config]
        return replace(d, switch_ms=(self._clock() - t0) / 1e6)

    def infer(self, clip: np.ndarray) -> tuple[np.ndarray, float]:
        """Run the current runner on ``clip`` (1, 3, frames, resolution, resolution) of the
        current candidate; returns (logits (1, classes), latency ms), observed by the policy."""
        t0 = self._clock()
        out = self._runner(clip)
        ms = (self._clock() - t0) / 1e6
        self.policy.observe(ms)
        return out, ms

    def close(self) -> None:
        for r in self._runners.values():
            r.close()
