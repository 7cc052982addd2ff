"""Calibration clips for post-training quantization, and the held-out clips
fidelity is measured on.

``read_calib(path, input_shape)`` reads clips through ``calib_data.load_clips``
(default source: the shipped calibration set) with a progress bar, shuffles
them with a fixed seed and splits them into two disjoint sets: ``clips`` (the
calibration clips the quantizer sees) and ``held_out`` (the fidelity clips it
never sees).  Every clip is (1, 3, T, S, S) float32 and must match the
artifact's input shape (``check``); a wrong shape, or too few readable clips,
is ``BadInput``.

``CalibSet`` iterates over its calibration clips, so it can be passed as the
``calib`` argument of ``Target.compile`` directly; targets read ``method`` from
it when present.  No torch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy", "histogram")
MIN_CALIB_CLIPS = 4
MIN_HELD_OUT_CLIPS = 2
DEFAULT_CALIB_CLIPS = 32
DEFAULT_HELD_OUT_CLIPS = 16
SPLIT_SEED = 0
# calibration method per target when none is asked for (benchmarks.studies.calib_size: on onnxruntime
# percentile ranges keep int8 closer to fp32 - agreement 0.96 vs 0.94, real-video cosine 0.91 vs 0.88;
# on OpenVINO and LiteRT the error-minimising histogram ranges: logit SQNR 23-27 dB against 10-15 dB with
# min/max on the shipped checkpoint, while percentile ranges lose fidelity on OpenVINO)
DEFAULT_METHODS: dict[str, str] = {"onnxruntime": "percentile", "openvino": "histogram", "tflite": "histogram"}


def default_method(target: str) -> str:
    """The calibration method a target uses unless one is asked for (:data:`DEFAULT_METHODS`)."""
    return DEFAULT_METHODS.get(target, "minmax")


@dataclass(frozen=True)
class CalibSet:
    """Calibration clips and disjoint held-out fidelity clips.

    clips: calibration clips, each (1, 3, T, S, S) float32.
    held_out: fidelity clips, same shape, never shown to the quantizer.
    held_out_labels: label id per held-out clip (None when unlabelled).
    labelled: labelled held-out clips (``quant.accuracy.LabelledClips``) for
    accuracy-aware quantization (``QuantSettings.max_drop``), or None.
    method: calibration method, one of :data:`METHODS`.
    """

    path: str
    clips: tuple[np.ndarray, ...]
    method: str = "minmax"
    held_out: tuple[np.ndarray, ...] = ()
    held_out_labels: tuple[int | None, ...] = ()
    labelled: Any = None  # quant.accuracy.LabelledClips: accuracy-aware int8 validates on them

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInput(f"calibration method {self.method!r} unknown; valid methods: {', '.join(METHODS)}")
        if len(self.clips) < MIN_CALIB_CLIPS:
            raise BadInput(f"{self.path}: {len(self.clips)} calibration clips, need at least {MIN_CALIB_CLIPS}")

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.clips)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.clips[0].shape)

    def check(self, input_shape: Sequence[int], where: str = "") -> None:
        """``BadInput`` unless every clip is ``input_shape``, float32-convertible and finite."""
        check_clips([*self.clips, *self.held_out], input_shape, where or self.path)

    def record(self) -> dict[str, object]:
        """What artifact.json records about the calibration."""
        return {"source": self.path, "clips": len(self.clips), "method": self.method,
                "held_out_clips": len(self.held_out)}


def check_clips(clips: Sequence[np.ndarray], input_shape: Sequence[int], where: str) -> None:
    """``BadInput`` naming ``where`` for the first clip of the wrong shape or with NaN/Inf."""
    want = tuple(int(d) for d in input_shape)
    for i, clip in enumerate(clips):
        shape = tuple(np.shape(clip))
        if shape != want:
            raise BadInput(f"{where}: calibration clip {i} has shape {shape}, the model takes {want}")
        if not np.isfinite(clip).all():
            raise BadInput(f"{where}: calibration clip {i} contains NaN or Inf")


def calib_clips(calib: object, default: str = "minmax") -> tuple[list[np.ndarray], str]:
    """(clips, method) from what ``Target.compile`` received as ``calib``:
    a ``CalibSet`` (its method) or any iterable of clips (``default``)."""
    if calib is None:
        return [], default
    method = calib.method if isinstance(calib, CalibSet) else default
    return [np.ascontiguousarray(c, dtype=np.float32) for c in calib], method  # type: ignore[attr-defined]


def read_calib(path: str | Path | None, input_shape: Sequence[int], clips: int = DEFAULT_CALIB_CLIPS,
               held_out: int = DEFAULT_HELD_OUT_CLIPS, method: str = "minmax", progress: bool = True,
               mode: str = "stride") -> CalibSet:
    """Read ``clips + held_out`` clips of ``input_shape`` = (1, 3, T, S, S) from ``path``
    (manifest, folder or video; default: the shipped calibration set), one centre
    clip per video, and split them disjointly (fixed-seed shuffle).  ``mode``: how
    frames are sampled (``calib_data.sampling``: "stride", X3D's, or "uniform" over
    the whole video, as the shipped MutualNet checkpoint was trained).

    When fewer videos are readable, the held-out share shrinks down to
    :data:`MIN_HELD_OUT_CLIPS`, then the calibration share (a warning says how many
    were used; ``record()`` has the count); below :data:`MIN_CALIB_CLIPS` calibration
    clips ``BadInput``.
    """
    import calib_data
    from tqdm import tqdm

    if method not in METHODS:
        raise BadInput(f"--calib-method {method!r} unknown; valid methods: {', '.join(METHODS)}")
    if clips < MIN_CALIB_CLIPS:
        raise BadInput(f"--calib-clips {clips}: need at least {MIN_CALIB_CLIPS} calibration clips")
    if len(input_shape) != 5 or input_shape[0] != 1 or input_shape[1] != 3 or input_shape[3] != input_shape[4]:
        raise BadInput(f"calibration clips must be (1, 3, T, S, S), the model takes {tuple(input_shape)}")
    source = Path(path) if path is not None else calib_data.shipped_manifest()
    frames, size = int(input_shape[2]), int(input_shape[3])
    want = clips + max(held_out, MIN_HELD_OUT_CLIPS)
    got: list[tuple[np.ndarray, int | None]] = []
    stream = calib_data.load_clips(source, frames=frames, resolution=size, limit=want, min_good=1,
                                   mode=mode)  # type: ignore[arg-type]
    for clip, label in tqdm(stream, total=want, desc="calibration clips", unit="clip", disable=not progress,
                            leave=False):
        got.append((clip, label))
    if len(got) < MIN_CALIB_CLIPS + MIN_HELD_OUT_CLIPS:
        raise BadInput(f"{source}: only {len(got)} usable clips, need at least {MIN_CALIB_CLIPS} calibration clips "
                       f"plus {MIN_HELD_OUT_CLIPS} held-out clips for the fidelity check")
    if len(got) - clips < MIN_HELD_OUT_CLIPS:
        used = len(got) - MIN_HELD_OUT_CLIPS
        log.warning("%s: asked for %d calibration clips, only %d usable clips there: using %d for calibration "
                    "and %d held out", source, clips, len(got), used, MIN_HELD_OUT_CLIPS)
        clips = used
    order = np.random.default_rng(SPLIT_SEED).permutation(len(got))
    cal = [got[i] for i in order[:clips]]
    hold = [got[i] for i in order[clips:clips + held_out]]
    calib = CalibSet(str(source), tuple(c for c, _ in cal), method, tuple(c for c, _ in hold),
                     tuple(lab for _, lab in hold))
    calib.check(input_shape)
    log.info("calibration: %d clips, %d held out, from %s (%s)", len(cal), len(hold), source, method)
    return calib
