"""Accuracy-aware mixed precision, the search itself: which nodes to keep float, and which
measured candidate to keep (the job that compiles, scores and times them: :mod:`edge.mixed`).

    Candidate(name, exclude, agreement, cosine, sqnr_db, p50_ms, error)   one float-node set, measured
    cheap_sets(base, depthwise, eltwise) -> [(name, nodes)]   int8, no-depthwise, convs-only, both
    search(builder, cheap, ranking, floor, max_candidates) -> [Candidate]
        the cheap sets, then top-k of the sensitivity ranking (k = 1, 2, 4, ...) on top of the
        cheap candidate closest to fp32 until one meets the floor, then k bisected
    choose(candidates, floor, baseline_ms) -> Choice    the FASTEST candidate meeting the floor
    Floor(value, metric)   agreement >= value, or top1_drop <= value (labelled clips); a float is an agreement floor
    top_k_steps(n) -> [1, 2, 4, ..., n]

``builder`` is any :class:`CandidateBuilder`: it compiles a float-node set with a target's
own quantizer and scores it against the fp32 artifact.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

TARGETS: tuple[str, ...] = ("onnxruntime", "openvino")
WEIGHT_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
SHAPE_OPS: tuple[str, ...] = ("Constant", "Shape", "Gather", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
                              "Identity", "Cast")  # nothing to quantize: not listed as float nodes
MAX_CANDIDATES = 14  # 4 cheap + top-1, 2, 4, ..., n for ~100 nodes + a bisection
ROUNDS = 3
RUNS = 5
RANKING_ROWS = 20


@dataclass(frozen=True)
class Candidate:
    """One mixed-precision configuration and what was measured of it.

    exclude: ONNX node names kept float by this candidate (the user's --ignore
    included).  p50_ms: median over rounds of the harness p50 (None: not timed,
    because it missed the floor or failed to build).
    """

    name: str
    exclude: tuple[str, ...]
    agreement: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None
    p50_ms: float | None = None
    error: str = ""

    top1_drop: float | None = None

    def meets(self, floor: "float | Floor") -> bool:
        return as_floor(floor).met(self)

    def to_json(self, baseline_ms: float | None = None) -> dict[str, Any]:
        d = asdict(self)
        d["float_nodes"] = len(self.exclude)
        d["exclude"] = list(self.exclude)
        if self.sqnr_db is not None and not np.isfinite(self.sqnr_db):
            d["sqnr_db"] = "inf"
        if baseline_ms and self.p50_ms is not None:
            d["vs_fp32"] = round(self.p50_ms / baseline_ms, 3)
        return d


@dataclass(frozen=True)
class Floor:
    """What a candidate must reach: ``agreement`` >= value (top-1 agreement with fp32), or
    ``top1_drop`` <= value (top-1 on labelled clips below fp32's, a fraction)."""

    value: float
    metric: str = "agreement"

    def met(self, c: Candidate) -> bool:
        if self.metric == "top1_drop":
            return c.top1_drop is not None and c.top1_drop <= self.value + 1e-12
        return c.agreement is not None and c.agreement >= self.value

    def closeness(self, c: Candidate) -> tuple[float, float]:
        """Larger is closer to fp32 (to rank candidates that miss the floor)."""
        first = -(c.top1_drop if c.top1_drop is not None else 1.0) if self.metric == "top1_drop" \
            else (c.agreement or 0.0)
        return first, c.cosine if c.cosine is not None else -1.0

    def scored(self, c: Candidate) -> bool:
        return (c.top1_drop if self.metric == "top1_drop" else c.agreement) is not None

    def text(self) -> str:
        return f"top-1 drop <= {self.value:g}" if self.metric == "top1_drop" else f"agreement {self.value:g}"

    def __str__(self) -> str:
        return self.text()


def as_floor(floor: "float | Floor") -> Floor:
    return floor if isinstance(floor, Floor) else Floor(float(floor))


@dataclass(frozen=True)
class Choice:
    """kept: the fastest candidate meeting the floor (None: none met it);
    best: ``kept`` or, when none met the floor, the best agreement (then cosine)."""

    kept: Candidate | None
    best: Candidate | None
    why: str


def choose(candidates: Sequence[Candidate], floor: "float | Floor", baseline_ms: float | None = None) -> Choice:
    """The fastest measured candidate among those meeting ``floor`` (see :class:`Choice`)."""
    floor = as_floor(floor)
    meeting = [c for c in candidates if c.meets(floor) and c.p50_ms is not None]
    if meeting:
        kept = min(meeting, key=lambda c: c.p50_ms)  # type: ignore[arg-type, return-value]
        others = ", ".join(f"{c.name} {c.p50_ms:.1f} ms" for c in meeting if c is not kept) or "none"
        base = f"; fp32 {baseline_ms:.1f} ms" if baseline_ms else ""
        goal = f"agreement >= {floor.value}" if floor.metric == "agreement" else floor.text()
        why = (f"fastest of {len(meeting)} candidate(s) meeting {goal}: {kept.name} "
               f"{kept.p50_ms:.1f} ms p50 (others meeting the floor: {others}{base})")
        return Choice(kept, kept, why)
    scored = [c for c in candidates if floor.scored(c)]
    if not scored:
        return Choice(None, None, "no candidate could be built")
    best = max(scored, key=floor.closeness)
    drop = "" if best.top1_drop is None else f"top-1 drop {best.top1_drop * 100:.1f} points, "
    goal = f"agreement {floor.value}" if floor.metric == "agreement" else floor.text()
    why = (f"no candidate reached {goal}; best found: {best.name} ({len(best.exclude)} float nodes) "
           f"{drop}agreement {best.agreement:.3f}, cosine {best.cosine:.4f}")
    return Choice(None, best, why)


def top_k_steps(n: int) -> list[int]:
    """1, 2, 4, ... and finally ``n`` (the growth of the float set)."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n] if n else ks


class CandidateBuilder(Protocol):
    """Builds and scores one float-node set; ``candidates``: every one built so far, in order."""

    candidates: list[Candidate]

    def build(self, name: str, exclude: Sequence[str]) -> Candidate: ...


def cheap_sets(base: Sequence[str], depthwise: Sequence[str], eltwise: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The fixed candidates: (name, float nodes), ``base`` (the user's --ignore) always float."""
    sets = [("int8", [*base]), ("no-depthwise", [*base, *depthwise]), ("convs-only", [*base, *eltwise]),
            ("convs-only-no-depthwise", [*base, *eltwise, *depthwise])]
    out: list[tuple[str, list[str]]] = []
    for name, nodes in sets:
        if all(set(nodes) != set(o) for _, o in out):
            out.append((name, nodes))
    return out


def search(search: CandidateBuilder, cheap: Sequence[tuple[str, Sequence[str]]],
           ranking: Callable[[], list[list[str]]], floor: "float | Floor",
           max_candidates: int = MAX_CANDIDATES) -> list[Candidate]:
    """Build every ``cheap`` candidate (the first is plain int8 plus the user's float
    nodes); when none meets the floor, grow ``top-k`` sets of ``ranking()`` (groups
    of node names, most sensitive first; computed only then) on top of the cheap
    candidate closest to fp32 (best agreement, then cosine) until one does, then
    bisect k; returns the candidates."""
    floor = as_floor(floor)
    built = [search.build(name, nodes) for name, nodes in cheap]
    if any(c.meets(floor) for c in search.candidates):
        return search.candidates
    scored = [c for c in built if floor.scored(c)] or built[:1]
    start = max(scored, key=floor.closeness)
    base = list(start.exclude)  # grow from the closest cheap candidate: fewer steps to the floor
    order = [g for g in ranking() if g[0] not in set(base)]

    def top(k: int) -> list[str]:
        return [*base, *(n for g in order[:k] for n in g)]

    missed, met = 0, None
    for k in top_k_steps(len(order)):
        if len(search.candidates) >= max_candidates:
            break
        if search.build(f"top-{k}", top(k)).meets(floor):
            met = k
            break
        missed = k
    while met is not None and met - missed > 1 and len(search.candidates) < max_candidates:
        mid = (met + missed) // 2
        if search.build(f"top-{mid}", top(mid)).meets(floor):
            met = mid
        else:
            missed = mid
    return search.candidates
