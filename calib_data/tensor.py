"""uint8 clips -> the normalised float32 tensor a network takes (torch).

    to_tensor(clips_u8 (B, 3, T, S, S) uint8, device) -> (B, 3, T, S, S) float32,
    (x / 255 - MEAN) / STD with MEAN/STD from :mod:`calib_data.transforms`.

The one torch-side counterpart of :func:`calib_data.transforms.preprocess`: training,
evaluation, pruning and QAT all feed their networks through it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from calib_data.transforms import MEAN, STD


def to_tensor(clips_u8: np.ndarray, device: Any = "cpu") -> torch.Tensor:
    """uint8 (B, 3, T, S, S) -> normalised float32 tensor on ``device`` (the input is copied)."""
    x = torch.from_numpy(np.array(clips_u8, copy=True)).to(device)
    return (x.float() / 255.0 - MEAN) / STD
