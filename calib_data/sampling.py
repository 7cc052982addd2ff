"""Which frames of a video make a clip: X3D stride sampling, uniform sampling,
several temporal clips per video, and the policy for videos that are too short.

Pure index arithmetic on frame counts; no decoding here.

X3D convention (``mode="stride"``): a clip is ``frames`` frames taken every
``stride`` frames, so it spans ``(frames - 1) * stride + 1`` source frames
(X3D-S at 30 fps: 13 x 6).  With ``clips`` temporal clips the start points are
spread evenly from the first to the last possible start (one clip: the centre),
as in the SlowFast/X3D multi-view test.

Uniform mode (``mode="uniform"``): ``frames`` frames spread evenly over the whole
video (first to last frame); with several clips each one is shifted by a fraction
of the gap between samples (TSN-style segments).

Too-short videos (fewer source frames than one clip needs) follow ``short``:

- ``"pad"``  (default) - stride mode: sample as if the video went on, repeating
  its last frame; uniform mode: spread the samples anyway (frames repeat evenly);
- ``"loop"`` - wrap around to the first frame;
- ``"error"`` - refuse the video (``BadInput``).

``pad`` and ``loop`` are never silent: the readers log a warning naming the
video and count it in their summary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.core.errors import BadInput

ShortPolicy = Literal["pad", "loop", "error"]
SamplingMode = Literal["stride", "uniform"]
SHORT_POLICIES: tuple[str, ...] = ("pad", "loop", "error")
SAMPLING_MODES: tuple[str, ...] = ("stride", "uniform")
CROPS: tuple[int, ...] = (1, 3)


@dataclass(frozen=True)
class ClipSpec:
    """How to cut model inputs out of a video.

    One video gives ``clips * crops`` views, each of shape
    (3, frames, resolution, resolution) after the transforms.
    """

    frames: int
    resolution: int
    stride: int = 1
    clips: int = 1
    crops: int = 1
    mode: SamplingMode = "stride"
    short: ShortPolicy = "pad"

    def __post_init__(self) -> None:
        for name in ("frames", "resolution", "stride", "clips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BadInput(f"{name} must be a positive integer, got {value!r}")
        if self.crops not in CROPS:
            raise BadInput(f"crops must be 1 (centre) or 3 (three-crop), got {self.crops!r}")
        if self.mode not in SAMPLING_MODES:
            raise BadInput(f"sampling mode must be one of {', '.join(SAMPLING_MODES)}, got {self.mode!r}")
        if self.short not in SHORT_POLICIES:
            raise BadInput(f"short-video policy must be one of {', '.join(SHORT_POLICIES)}, got {self.short!r}")

    @property
    def span(self) -> int:
        """Source frames one clip covers: (frames - 1) * stride + 1 (uniform: frames)."""
        return clip_span(self.frames, self.stride) if self.mode == "stride" else self.frames

    @property
    def views(self) -> int:
        """Model inputs per video: temporal clips x spatial crops."""
        return self.clips * self.crops

    def is_short(self, num_frames: int) -> bool:
        return num_frames < self.span

    def indices(self, num_frames: int, name: str = "video") -> np.ndarray:
        """Frame indices of every temporal clip, shape (clips, frames), int64, each in
        [0, num_frames).  Applies the short-video policy; ``name`` goes in its message."""
        if num_frames < 1:
            raise BadInput(f"{name}: has no frames")
        if self.is_short(num_frames) and self.short == "error":
            raise BadInput(
                f"{name}: has {num_frames} frames, fewer than the {self.span} one clip needs "
                f"({self.frames} frames x stride {self.stride if self.mode == 'stride' else 1}); "
                "short-video policy is 'error' (use 'pad' or 'loop' to accept it)")
        if self.mode == "uniform":
            idx = uniform_indices(num_frames, self.frames, self.clips)
            if self.is_short(num_frames) and self.short == "loop":
                idx = np.tile(np.arange(self.frames) % num_frames, (self.clips, 1))
            return idx
        idx = stride_indices(num_frames, self.frames, self.stride, self.clips)
        return _fit(idx, num_frames, self.short)


def clip_span(frames: int, stride: int) -> int:
    """Source frames covered by ``frames`` frames at ``stride``."""
    return (frames - 1) * stride + 1


def stride_indices(num_frames: int, frames: int, stride: int, clips: int = 1) -> np.ndarray:
    """Raw X3D indices, shape (clips, frames); may run past ``num_frames`` when the video
    is short (see ``ClipSpec.indices`` for the policy).

    Starts are spread evenly over ``[0, num_frames - span]``; one clip is centred.
    """
    delta = max(num_frames - clip_span(frames, stride), 0)
    if clips == 1:
        starts = np.array([delta // 2])
    else:
        starts = np.round(np.linspace(0, delta, clips)).astype(np.int64)
    return starts[:, None] + np.arange(frames, dtype=np.int64)[None, :] * stride


def uniform_indices(num_frames: int, frames: int, clips: int = 1) -> np.ndarray:
    """``frames`` indices spread over the whole video, shape (clips, frames).

    One clip: ``linspace(0, num_frames - 1, frames)`` rounded (PyTorchVideo's
    UniformTemporalSubsample).  Several clips: the samples are the centres of
    ``frames`` equal segments, shifted by ``(k + 0.5) / clips`` of a segment for clip k.
    """
    if clips == 1:
        pos = np.linspace(0, num_frames - 1, frames)[None, :]
    else:
        seg = num_frames / frames
        shift = (np.arange(clips) + 0.5) / clips
        pos = (np.arange(frames)[None, :] + shift[:, None]) * seg - 0.5
    return np.clip(np.round(pos), 0, num_frames - 1).astype(np.int64)


def _fit(idx: np.ndarray, num_frames: int, short: ShortPolicy) -> np.ndarray:
    if short == "loop":
        return idx % num_frames
    return np.minimum(idx, num_frames - 1)
