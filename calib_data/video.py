"""Decoding with OpenCV: open a file, camera index or stream URL; probe it; read the
frames a clip needs.  Frames come out as RGB uint8 arrays of shape (H, W, 3);
a clip as (T, H, W, 3).

Every failure is one ``BadInput`` line naming the source and the problem: missing
file, a file that is not a video, a video container that is corrupt or truncated,
a video with no frames, a stream that stops before the frames its header
declares, a camera that cannot be opened.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv", ".ts"})

Source = str | int | Path


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says.  ``frames`` is 0 when it does not say
    (live streams); ``fps`` is 0 when unknown."""

    source: str
    frames: int
    fps: float
    width: int
    height: int


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def is_camera(source: Source) -> bool:
    """A camera is an int or a string of digits (``"0"``)."""
    return isinstance(source, int) or (isinstance(source, str) and source.isdigit())


def is_stream_url(source: Source) -> bool:
    return isinstance(source, str) and "://" in source


def open_capture(source: Source, threads: int | None = None) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` on a file, camera index or stream URL.

    ``threads`` sets the FFmpeg decoder threads of file and stream sources
    (``None``: OpenCV's default).  Raises ``BadInput`` when it cannot be opened.
    """
    if is_camera(source):
        index = int(source)
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            raise BadInput(f"camera {index}: cannot be opened (no such device, busy, or no permission)")
        return cap
    params: list[int] = [] if threads is None else [cv2.CAP_PROP_N_THREADS, int(threads)]
    if is_stream_url(source):
        cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise BadInput(f"{source}: stream cannot be opened (unreachable, or not a video stream)")
        return cap
    path = Path(source)
    if not path.exists():
        raise BadInput(f"{path}: video file not found")
    if not path.is_file():
        raise BadInput(f"{path}: not a file")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise BadInput(f"{path}: {_unopenable_reason(path)}")
    return cap


def probe(source: Source, cap: cv2.VideoCapture | None = None) -> VideoInfo:
    """Header facts of ``source`` (opens it when ``cap`` is not given)."""
    own = cap is None
    cap = open_capture(source) if cap is None else cap
    try:
        frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS)
        return VideoInfo(
            source=str(source),
            frames=max(int(round(frames)), 0) if np.isfinite(frames) else 0,
            fps=float(fps) if np.isfinite(fps) and fps > 0 else 0.0,
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        if own:
            cap.release()


def iter_frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """Every remaining frame of ``cap`` as RGB uint8 (H, W, 3), until the stream ends."""
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def read_frames(path: Source, indices: np.ndarray, first: int = 0, threads: int | None = None,
                cap: cv2.VideoCapture | None = None) -> np.ndarray:
    """Decode the frames at ``indices`` (any shape, any order, repeats allowed) of
    ``path``; returns uint8 RGB of shape ``indices.shape + (H, W, 3)``.

    ``first`` offsets every index (a segment that starts inside the file).  The file
    is read once, front to back, up to the largest index; frames not asked for are
    only grabbed.  A stream that ends before the largest index is refused as
    truncated or corrupt.  ``cap``: an unread capture of ``path`` to use (the
    caller keeps ownership); otherwise one is opened and released here.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise BadInput(f"{path}: no frames asked for")
    wanted = np.unique(indices) + first
    own = cap is None
    cap = open_capture(path, threads) if cap is None else cap
    try:
        declared = probe(path, cap).frames
        position = 0
        if first > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, first)
            position = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            if position != first:  # the container cannot seek there: walk from the start
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                position = 0
        got: dict[int, np.ndarray] = {}
        for target in wanted:
            while position < target:
                if not cap.grab():
                    raise BadInput(_ended(path, position, declared, int(wanted[-1])))
                position += 1
            ok, frame = cap.read()
            if not ok:
                raise BadInput(_ended(path, position, declared, int(wanted[-1])))
            position += 1
            got[int(target) - first] = frame
    finally:
        if own:
            cap.release()
    shape = next(iter(got.values())).shape
    out = np.empty(indices.shape + shape, dtype=np.uint8)
    flat = out.reshape((-1,) + shape)
    for k, i in enumerate(indices.reshape(-1)):
        cv2.cvtColor(got[int(i)], cv2.COLOR_BGR2RGB, dst=flat[k])
    return out


def count_frames(path: Source, threads: int | None = None) -> tuple[int, VideoInfo]:
    """Decode the whole of ``path``; returns (frames decoded, header info).  Checks
    every frame, so it is what ``edgevid data check`` runs."""
    cap = open_capture(path, threads)
    try:
        info = probe(path, cap)
        n = 0
        while cap.grab():  # decodes each frame; stops at the end or at undecodable data
            n += 1
        return n, info
    finally:
        cap.release()


def check_video(path: Source, threads: int | None = None) -> int:
    """Decode all of ``path`` and raise ``BadInput`` if it has no frames or stops
    before the frame count its header declares.  Returns the frames decoded."""
    n, info = count_frames(path, threads)
    if n == 0:
        raise BadInput(f"{path}: has no frames")
    if info.frames and n < info.frames:
        raise BadInput(f"{path}: decoding stopped at frame {n} of {info.frames} (truncated or corrupt)")
    return n


def _ended(path: Source, position: int, declared: int, needed: int) -> str:
    if position == 0:
        return f"{path}: has no frames"
    if declared and position < declared:
        return f"{path}: decoding stopped at frame {position} of {declared} (truncated or corrupt)"
    return f"{path}: ends at frame {position}, before frame {needed} (header said {declared} frames)"


# Leading bytes of the containers OpenCV's FFmpeg reads; used only to word the error.
_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"),  # mp4 / mov
    (0, b"RIFF"), (0, b"\x1a\x45\xdf\xa3"), (0, b"\x00\x00\x01\xba"), (0, b"\x00\x00\x01\xb3"),
    (0, b"FLV"), (0, b"OggS"), (0, b"\x30\x26\xb2\x75"),
)


def _unopenable_reason(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not head:
        return "empty file, not a video"
    if any(head[at:at + len(magic)] == magic for at, magic in _MAGIC):
        return "video container cannot be decoded (corrupt, truncated, or no video track)"
    return "not a video file (unrecognised format)"


def quiet_decoder_logs() -> None:
    """Silence FFmpeg's and OpenCV's own stderr chatter about damaged streams (the
    CLI reports those itself).  Takes effect for captures opened afterwards, if
    no FFmpeg capture was opened earlier in the process."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
