"""Top-1 of an artifact measured by running it on labelled held-out clips.

    measure_top1(run, clips, data) -> (Top1, logits (N, classes))
    top1_of(logits (N, classes), labels (N,), data, measured_with) -> Top1
    wilson(correct, n) -> (low, high): the 95% Wilson score interval

``clips`` is a :class:`LabelledClips` - uint8 clips (N, 3, T, S, S) and their labels
(N,), as ``calib_data.labelled.read_labelled`` returns them - which yields each clip
as the runners take it: (1, 3, T, S, S) float32, normalised with the evaluation
transform's mean and std.  With 300 clips one standard error of a top-1 near 0.6 is
about 2.8 points; the interval says so next to every figure.  No torch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import numpy as np

from calib_data.transforms import normalize_channels_first

Z95 = 1.959963984540054


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (95% for the default z)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if correct <= 0 else max(0.0, centre - half)
    return low, 1.0 if correct >= n else min(1.0, centre + half)


@dataclass(frozen=True)
class Top1:
    """Measured top-1: ``correct`` of ``clips`` labelled clips, with its 95% interval.

    data: what the clips are (path and count); measured_with: what ran them.
    """

    top1: float
    correct: int
    clips: int
    low: float
    high: float
    data: str
    measured_with: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "how": "the artifact run on labelled held-out clips", "interval": "95% Wilson"}

    def text(self) -> str:
        return f"{self.top1:.3f} [{self.low:.3f}, {self.high:.3f}] on {self.clips} clips"


def top1_of(logits: np.ndarray, labels: np.ndarray, data: str, measured_with: str) -> Top1:
    """Top-1 of (N, classes) ``logits`` against ``labels`` (N,)."""
    logits = np.asarray(logits).reshape(len(labels), -1)
    correct = int(np.sum(logits.argmax(1) == np.asarray(labels)))
    n = int(len(labels))
    low, high = wilson(correct, n)
    return Top1(correct / max(n, 1), correct, n, low, high, data, measured_with)


@dataclass(frozen=True)
class LabelledClips:
    """Labelled held-out clips: ``clips`` uint8 (N, 3, T, S, S), ``labels`` int64 (N,).

    Iterating yields (1, 3, T, S, S) float32 clips normalised like the calibration clips.
    """

    source: str
    clips: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.clips.ndim != 5 or len(self.clips) != len(self.labels) or not len(self.labels):
            raise ValueError(f"{self.source}: labelled clips must be (N, 3, T, S, S) with N labels, "
                             f"got {self.clips.shape} and {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self.labels)):
            yield normalize_channels_first(self.clips[i:i + 1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, *self.clips.shape[1:])

    @property
    def data(self) -> str:
        return f"{self.source} ({len(self)} labelled clips)"


def run_all(run: Callable[[np.ndarray], np.ndarray], clips: LabelledClips) -> np.ndarray:
    """(N, classes) logits of ``run`` on every clip."""
    return np.concatenate([np.asarray(run(c)).reshape(1, -1) for c in clips])


def measure_top1(run: Callable[[np.ndarray], np.ndarray], clips: LabelledClips,
                 measured_with: str) -> tuple[Top1, np.ndarray]:
    """Run ``run`` on every clip: its :class:`Top1` and the logits (N, classes)."""
    logits = run_all(run, clips)
    return top1_of(logits, clips.labels, clips.data, measured_with), logits
