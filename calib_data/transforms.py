"""X3D evaluation transforms, one code path for calibration, evaluation and inference.

    frames (T, H, W, 3) uint8 RGB
      -> short side resized to ``size`` (bilinear, as PyTorchVideo's ShortSideScale)
      -> centre crop, or three crops along the long side (left/centre/right or
         top/centre/bottom, as the X3D/SlowFast multi-view test)
      -> [0, 1], minus mean 0.45, over std 0.225
      -> (crops, 3, T, size, size) float32

numpy and OpenCV only (one ``cv2.resize`` per frame, vectorised arithmetic); no torch.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.core.errors import BadInput

MEAN = 0.45
STD = 0.225
_SCALE = np.float32(1.0 / (255.0 * STD))
_SHIFT = np.float32(MEAN / STD)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after scaling the short side to ``size``, aspect kept."""
    if height <= width:
        return size, max(size, int(round(width * size / height)))
    return max(size, int(round(height * size / width))), size


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, C) -> (T, H', W', C) with min(H', W') == size; bilinear."""
    t, h, w, c = frames.shape
    nh, nw = short_side_size(h, w, size)
    if (nh, nw) == (h, w):
        return frames
    out = np.empty((t, nh, nw, c), dtype=frames.dtype)
    for i in range(t):
        cv2.resize(frames[i], (nw, nh), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def crop_offsets(height: int, width: int, size: int, crops: int = 1) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the ``crops`` square crops of side ``size``:
    1 -> centre; 3 -> start, centre, end along the longer side."""
    if size > height or size > width:
        raise BadInput(f"crop {size} is larger than the frame {height}x{width}")
    cy, cx = (height - size) // 2, (width - size) // 2
    if crops == 1:
        return [(cy, cx)]
    if crops == 3:
        if height > width:
            return [(0, cx), (cy, cx), (height - size, cx)]
        return [(cy, 0), (cy, cx), (cy, width - size)]
    raise BadInput(f"crops must be 1 or 3, got {crops}")


def normalize(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., T, H, W, 3) RGB -> float32 (..., 3, T, H, W): x / 255, minus 0.45, over 0.225."""
    axes = tuple(range(frames.ndim - 4)) + (frames.ndim - 1, frames.ndim - 4, frames.ndim - 3, frames.ndim - 2)
    chw = np.ascontiguousarray(frames.transpose(axes))  # move channels on the 1-byte data
    out = np.multiply(chw, _SCALE, dtype=np.float32)
    out -= _SHIFT
    return out


def normalize_channels_first(clips: np.ndarray) -> np.ndarray:
    """uint8 (..., 3, T, H, W), already channels-first (``calib_data.labelled``'s arrays)
    -> float32 of the same shape, normalised as :func:`normalize` does."""
    out = np.multiply(clips, _SCALE, dtype=np.float32)
    out -= _SHIFT
    return out


def preprocess(frames: np.ndarray, size: int, crops: int = 1) -> np.ndarray:
    """X3D evaluation transform of one clip.

    frames: (T, H, W, 3) uint8 RGB.  Returns (crops, 3, T, size, size) float32,
    normalised; ``crops`` is 1 (centre) or 3 (three-crop).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise BadInput(f"expected frames of shape (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    resized = resize_short_side(frames, size)
    _, h, w, _ = resized.shape
    views = np.stack([resized[:, y:y + size, x:x + size] for y, x in crop_offsets(h, w, size, crops)])
    return normalize(views)


def denormalize(clip: np.ndarray) -> np.ndarray:
    """Inverse of ``normalize`` for viewing: float32 (..., 3, T, H, W) -> uint8 (..., T, H, W, 3)."""
    x = clip * STD + MEAN
    n = x.ndim
    axes = tuple(range(n - 4)) + (n - 3, n - 2, n - 1, n - 4)
    return np.clip(np.round(x.transpose(axes) * 255.0), 0, 255).astype(np.uint8)
