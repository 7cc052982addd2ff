"""Model-ready clips from a dataset: decode, sample, transform, skip bad videos.

This is the one path calibration, evaluation and the demo read video through::

    for clip, label in load_clips("data/manifest.csv", frames=13, resolution=160):
        ...  # clip: (1, 3, 13, 160, 160) float32, label: int or None

A video that cannot be used (missing, not a video, corrupt, truncated, no frames,
too short under the ``error`` policy) is skipped with a warning naming it and
the reason; a summary is logged at the end, and ``BadInput`` is raised only when
fewer than ``min_good`` videos could be read.  Short videos accepted by the
``pad``/``loop`` policy are logged too and counted.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from calib_data.datasets import KINETICS_PATTERN, Dataset, VideoItem, open_dataset
from calib_data.sampling import ClipSpec, SamplingMode, ShortPolicy
from calib_data.transforms import preprocess
from calib_data.video import count_frames, open_capture, probe, read_frames
from edge.core.errors import BadInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoClips:
    """All views of one video: ``clips`` is (views, 3, T, S, S) float32, views =
    temporal clips x spatial crops (clip-major)."""

    item: VideoItem
    clips: np.ndarray
    short: bool


@dataclass
class ReadSummary:
    """Tally of one pass over a dataset; pass one in to read it afterwards."""

    videos: int = 0
    good: int = 0
    short: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def text(self, source: str) -> str:
        parts = [f"{self.good} of {self.videos} videos read from {source}"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped as bad")
        if self.short:
            parts.append(f"{self.short} shorter than a clip (padded/looped)")
        return ", ".join(parts)


def read_video_clips(item: VideoItem, spec: ClipSpec, threads: int | None = None) -> VideoClips:
    """Decode and transform every view of one video; raises ``BadInput`` if it is unusable."""
    cap = open_capture(item.path, threads)
    try:
        return _read(cap, item, spec, threads)
    finally:
        cap.release()


def _read(cap: cv2.VideoCapture, item: VideoItem, spec: ClipSpec, threads: int | None) -> VideoClips:
    info = probe(item.path, cap)
    total = info.frames
    if total < spec.span:  # header silent, video short, or header wrong (MPEG-PS undercounts): count by decoding
        total = count_frames(item.path, threads)[0]
        if total < 1:
            raise BadInput(f"{item.path}: has no frames")
        cap.release()
        cap.open(str(item.path), cv2.CAP_FFMPEG, [] if threads is None else [cv2.CAP_PROP_N_THREADS, threads])
    first = 0
    if item.segment is not None:
        if info.fps <= 0:
            raise BadInput(f"{item.path}: frame rate unknown, cannot cut segment {item.segment}")
        first = int(math.floor(item.segment[0] * info.fps))
        total = min(int(math.ceil(item.segment[1] * info.fps)), total) - first
        if total < 1:
            raise BadInput(f"{item.path}: segment {item.segment[0]}-{item.segment[1]} s lies past the end "
                           f"({info.frames} frames at {info.fps:g} fps)")
    if total < 1:
        raise BadInput(f"{item.path}: has no frames")
    indices = spec.indices(total, name=str(item.path))
    short = spec.is_short(total)
    if short:
        log.warning("%s: %d frames, shorter than the %d a clip of %d x stride %d needs; %s policy applied",
                    item.path, total, spec.span, spec.frames, spec.stride, spec.short)
    raw = read_frames(item.path, indices, first=first, cap=cap)  # (clips, T, H, W, 3)
    views = np.concatenate([preprocess(raw[c], spec.resolution, spec.crops) for c in range(len(raw))])
    return VideoClips(item, views, short)


def iter_videos(source: str | Path | Dataset, spec: ClipSpec, min_good: int = 1, limit: int | None = None,
                summary: ReadSummary | None = None, threads: int | None = None,
                kinetics_pattern: str = KINETICS_PATTERN) -> Iterator[VideoClips]:
    """Every readable video of ``source`` (a path ``open_dataset`` understands, or a
    ``Dataset``) as ``VideoClips``; bad ones skipped and counted.

    Stops after ``limit`` good videos.  Raises ``BadInput`` at the end when fewer
    than ``min_good`` were good (and the limit was not reached).
    """
    dataset = source if isinstance(source, Dataset) else open_dataset(source, kinetics_pattern)
    name = str(source if not isinstance(source, Dataset) else dataset.root)
    summary = ReadSummary() if summary is None else summary
    for item in dataset.items:
        if limit is not None and summary.good >= limit:
            break
        summary.videos += 1
        try:
            video = read_video_clips(item, spec, threads)
        except BadInput as e:
            log.warning("skipping bad video: %s", e)
            summary.skipped.append((item.path, str(e)))
            continue
        summary.good += 1
        summary.short += video.short
        yield video
    level = logging.WARNING if summary.skipped or summary.short else logging.INFO
    log.log(level, "%s", summary.text(name))
    if summary.good < min(min_good, limit if limit is not None else min_good):
        first = f"; first problem: {summary.skipped[0][1]}" if summary.skipped else ""
        raise BadInput(f"{name}: only {summary.good} usable videos of {summary.videos}, "
                       f"need at least {min_good}{first}")


def load_clips(path: str | Path | Dataset, frames: int, resolution: int, stride: int = 1, clips: int = 1,
               crops: int = 1, mode: SamplingMode = "stride", short: ShortPolicy = "pad", min_good: int = 1,
               limit: int | None = None, summary: ReadSummary | None = None
               ) -> Iterator[tuple[np.ndarray, int | None]]:
    """(clip, label) pairs for calibration and evaluation.

    ``path``: a ``path,label`` manifest, Kinetics CSV, folder or video file (see
    ``open_dataset``).  Each video gives ``clips`` temporal clips x ``crops``
    spatial crops; each is yielded on its own as a (1, 3, frames, resolution,
    resolution) float32 array (X3D-normalised, RGB), with the video's label id
    (None when unlabelled).  ``limit`` caps the number of videos read; bad videos
    are skipped (see the module docstring).
    """
    spec = ClipSpec(frames=frames, resolution=resolution, stride=stride, clips=clips, crops=crops,
                    mode=mode, short=short)
    for video in iter_videos(path, spec, min_good=min_good, limit=limit, summary=summary):
        for view in video.clips:
            yield view[None], video.item.label
