"""Training data: labelled clips decoded once into a uint8 cache, smaller inputs derived on the fly.

    build_cache(data, frames, resolution, folder, limit) -> ClipCache(clips (N, 3, F, R, R) uint8 memory map,
        labels (N,) int64, classes); reused while the manifest and files are unchanged
    resample(x (B, 3, F, R, R), frames, resolution) -> (B, 3, frames, resolution, resolution)
    calib_batches(cache, n, batch, frames, resolution, device) -> iterator of normalised batches
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from calib_data.datasets import open_dataset
from calib_data.loader import iter_videos
from calib_data.sampling import ClipSpec
from calib_data.tensor import to_tensor
from calib_data.transforms import MEAN, STD
from edge.core.errors import BadInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipCache:
    """Training clips decoded once: ``clips`` (N, 3, F, R, R) uint8 RGB (possibly a
    memory map), ``labels`` (N,) int64, class names."""

    clips: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


def _dataset_key(data: str, frames: int, resolution: int, limit: int | None) -> dict[str, Any]:
    ds = open_dataset(data)
    h = hashlib.sha256()
    for item in ds.items:
        st = item.path.stat() if item.path.exists() else None
        h.update(f"{item.path}|{item.label}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return {"data": str(Path(data).resolve()), "items": h.hexdigest(), "frames": frames, "resolution": resolution,
            "limit": limit, "classes": list(ds.classes), "version": 1}


def build_cache(data: str, frames: int, resolution: int, folder: Path, limit: int | None = None) -> ClipCache:
    """Decode the labelled clips of ``data`` once into ``folder`` (or reuse a
    matching cache there).  Returns the cache memory-mapped."""
    key = _dataset_key(data, frames, resolution, limit)
    stem = folder / f"clips-f{frames}-r{resolution}"
    clips_file, labels_file, key_file = (stem.with_suffix(s) for s in (".npy", ".labels.npy", ".json"))
    if key_file.is_file() and clips_file.is_file() and labels_file.is_file():
        try:
            if json.loads(key_file.read_text()) == key:
                return ClipCache(np.load(clips_file, mmap_mode="r"), np.load(labels_file), tuple(key["classes"]))
        except (OSError, ValueError):
            pass
    ds = open_dataset(data)
    if not ds.labelled or not ds.classes:
        raise BadInput(f"{data}: training needs labelled clips (a manifest with labels and labels.json)")
    items = [i for i in ds.items if i.label is not None]
    n = len(items) if limit is None else min(limit, len(items))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = clips_file.with_suffix(".npy.tmp")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, frames, resolution, resolution))
    labels = np.empty(n, dtype=np.int64)
    spec = ClipSpec(frames=frames, resolution=resolution, mode="uniform")
    t0 = time.perf_counter()
    got = 0
    subset = dataclasses.replace(ds, items=tuple(items))
    for video in iter_videos(subset, spec, limit=n):
        clip = video.clips[0]  # (3, F, R, R) normalised float32 -> exact uint8 again
        arr[got] = np.clip(np.rint((clip * STD + MEAN) * 255.0), 0, 255).astype(np.uint8)
        labels[got] = video.item.label
        got += 1
    arr.flush()
    del arr
    if got < n:  # bad videos were skipped: keep the good ones
        full = np.load(tmp, mmap_mode="r")[:got].copy()
        np.save(tmp.with_suffix(".tmp2.npy"), full)
        os.replace(tmp.with_suffix(".tmp2.npy"), tmp)
        labels = labels[:got]
    os.replace(tmp, clips_file)
    np.save(labels_file, labels)
    key_file.write_text(json.dumps(key))
    log.info("decoded %d training clips of %s at %d x %d into %s in %.1f s", got, data, frames, resolution,
             clips_file, time.perf_counter() - t0)
    return ClipCache(np.load(clips_file, mmap_mode="r"), labels, tuple(key["classes"]))


def to_input(clips_u8: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, T, S, S) -> normalised float32 tensor on ``device``."""
    x = torch.from_numpy(np.array(clips_u8, copy=True)).to(device)
    return (x.float() / 255.0 - MEAN) / STD


def resample(x: torch.Tensor, frames: int, resolution: int) -> torch.Tensor:
    """(B, 3, F, R, R) -> (B, 3, frames, resolution, resolution): uniform subset of
    the frames, bilinear antialiased resize."""
    b, c, t, h, w = x.shape
    if frames != t:
        if frames > t:
            raise BadInput(f"cannot make {frames} frames out of {t} cached ones")
        idx = torch.as_tensor(np.round(np.linspace(0, t - 1, frames)).astype(np.int64), device=x.device)
        x = x.index_select(2, idx)
    if resolution != h:
        y = x.reshape(b, c * frames, h, w)
        y = F.interpolate(y, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        x = y.reshape(b, c, frames, resolution, resolution)
    return x


def calib_batches(cache: ClipCache, n: int, batch: int, frames: int, resolution: int,
                  device: torch.device) -> Iterator[torch.Tensor]:
    """The first ``n`` cached clips at (frames, resolution), in batches."""
    n = min(n, len(cache.labels))
    for i in range(0, n, batch):
        yield resample(to_tensor(cache.clips[i:i + batch], device), frames, resolution)


__all__ = ["ClipCache", "build_cache", "calib_batches", "resample"]
