"""Labelled clips as one array: what evaluation, pruning and the switcher's accuracy read.

    read_labelled(data, frames, resolution, limit, classes) -> (uint8 (N, 3, T, S, S), int64 (N,))

Frames are sampled uniformly over each whole video and go through the evaluation transform
(:mod:`calib_data.transforms`), then back to uint8 so the clips stay small in memory;
``calib_data.tensor.to_tensor`` normalises them again for a network.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from calib_data.datasets import open_dataset
from calib_data.loader import load_clips
from calib_data.transforms import MEAN, STD
from edge.core.errors import BadInput


def read_labelled(data: str | Path, frames: int, resolution: int, limit: int | None = None,
                  classes: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every labelled clip of ``data`` at (frames, resolution): uint8 (N, 3, T, S, S)
    and labels (N,).  ``classes``: the model's class names, checked against the data's."""
    ds = open_dataset(data)
    if not ds.labelled:
        raise BadInput(f"{data}: evaluation needs labelled clips (a manifest with labels)")
    if classes is not None and ds.classes and tuple(ds.classes) != tuple(classes):
        raise BadInput(f"{data}: classes {list(ds.classes)[:4]}... differ from the model's {list(classes)[:4]}...")
    subset = dataclasses.replace(ds, items=tuple(i for i in ds.items if i.label is not None))
    xs, ys = [], []
    for clip, label in load_clips(subset, frames=frames, resolution=resolution, mode="uniform", limit=limit):
        xs.append(np.clip(np.rint((clip[0] * STD + MEAN) * 255.0), 0, 255).astype(np.uint8))
        ys.append(label)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)
