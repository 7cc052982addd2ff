"""Streaming input: a sliding window over frames as they arrive from a file,
camera or stream URL, for run-time inference.

``FrameWindow`` keeps the latest frames and cuts a clip of any length and stride
out of them on demand, so a run-time switcher can change frames/resolution
between calls without reopening the source.  ``sliding_clips`` is the simple
loop: one clip every ``hop`` new frames once the window is full.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Iterator

import numpy as np

from calib_data.sampling import clip_span
from calib_data.transforms import preprocess
from calib_data.video import Source, is_camera, iter_frames, open_capture
from edge.core.errors import BadInput

log = logging.getLogger(__name__)


class FrameWindow:
    """The latest ``capacity`` frames, (H, W, 3) uint8 each."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise BadInput(f"window capacity must be at least 1 frame, got {capacity}")
        self._frames: deque[np.ndarray] = deque(maxlen=capacity)
        self.seen = 0

    @property
    def capacity(self) -> int:
        return self._frames.maxlen or 0

    def push(self, frame: np.ndarray) -> None:
        self._frames.append(frame)
        self.seen += 1

    def ready(self, frames: int, stride: int = 1) -> bool:
        return len(self._frames) >= clip_span(frames, stride)

    def latest(self, frames: int, stride: int = 1) -> np.ndarray:
        """The newest clip: ``frames`` frames ``stride`` apart ending at the newest
        frame, oldest first; (T, H, W, 3) uint8."""
        span = clip_span(frames, stride)
        if span > self.capacity:
            raise BadInput(f"a clip of {frames} x stride {stride} needs {span} frames; window holds {self.capacity}")
        if len(self._frames) < span:
            raise BadInput(f"window has {len(self._frames)} frames, clip needs {span}")
        n = len(self._frames)
        return np.stack([self._frames[i] for i in range(n - span, n, stride)])


def sliding_clips(source: Source, frames: int, stride: int = 1, hop: int = 1, resolution: int | None = None,
                  threads: int | None = None) -> Iterator[np.ndarray]:
    """Clips of the latest ``frames`` frames (``stride`` apart) from ``source``, one
    every ``hop`` new frames once enough have arrived.

    Yields (T, H, W, 3) uint8 RGB, or with ``resolution`` the transformed
    (1, 3, T, resolution, resolution) float32.  Ends with the stream; raises
    ``BadInput`` when the source cannot be opened or delivers no frame at all.
    """
    if hop < 1:
        raise BadInput(f"hop must be at least 1 frame, got {hop}")
    window = FrameWindow(clip_span(frames, stride))
    cap = open_capture(source, threads)
    try:
        since = 0
        for frame in iter_frames(cap):
            window.push(frame)
            if not window.ready(frames, stride):
                continue
            if since % hop == 0:
                clip = window.latest(frames, stride)
                yield clip if resolution is None else preprocess(clip, resolution)
            since += 1
    finally:
        cap.release()
    if window.seen == 0:
        what = f"camera {int(source)}" if is_camera(source) else str(source)
        raise BadInput(f"{what}: opened but delivered no frames")
    if not window.ready(frames, stride):
        log.warning("%s: stream ended after %d frames, before one clip of %d x stride %d", source, window.seen,
                    frames, stride)
