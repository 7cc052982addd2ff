"""``edgevid data check``: decode every video of a dataset and list the bad ones."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from calib_data.datasets import KINETICS_PATTERN, open_dataset
from calib_data.sampling import clip_span
from calib_data.video import check_video
from edge.core.errors import BadInput


@dataclass(frozen=True)
class VideoCheck:
    """One video's verdict; ``reason`` is empty when it is good."""

    path: Path
    frames: int
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def check_dataset(path: str | Path, frames: int | None = None, stride: int = 1,
                  kinetics_pattern: str = KINETICS_PATTERN) -> list[VideoCheck]:
    """Fully decode every video of ``path`` (manifest, Kinetics CSV, folder or file).

    A video is bad when it is missing, not a video, corrupt or truncated, or has no
    frames; with ``frames`` given, also when it is shorter than one clip of
    ``frames`` x ``stride`` (which the loaders would pad or loop).  Errors in the
    dataset definition itself (unknown label, a path outside the root) raise
    ``BadInput``.
    """
    dataset = open_dataset(path, kinetics_pattern)
    need = clip_span(frames, stride) if frames else 0
    results = []
    for item in dataset.items:
        try:
            n = check_video(item.path)
        except BadInput as e:
            results.append(VideoCheck(item.path, 0, _strip(str(e), item.path)))
            continue
        if need and n < need:
            results.append(VideoCheck(item.path, n, f"{n} frames, shorter than the {need} a clip of "
                                                    f"{frames} x stride {stride} needs"))
        else:
            results.append(VideoCheck(item.path, n))
    return results


def _strip(message: str, path: Path) -> str:
    """The reason without the leading ``path: `` (the table shows the path)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message
