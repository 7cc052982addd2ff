"""Video input for edgevid: decoding, clip sampling, X3D transforms, datasets,
the synthetic motion set and the shipped calibration clips.  numpy + OpenCV; no torch.

Modules, one job each:

- ``video``      decode files, camera indices and stream URLs with OpenCV
- ``sampling``   which frames make a clip (X3D stride, uniform, temporal clips, short videos)
- ``transforms`` short side -> crop, centre / three crop, normalise, (B, 3, T, H, W) float32
- ``stream``     sliding window over a live source
- ``datasets``   manifests, Kinetics CSV, class folders, plain folders, labels.json
- ``loader``     ``load_clips`` / ``iter_videos``: the path calibration and evaluation use
- ``synth``      the synthetic motion dataset
- ``check``      ``edgevid data check``

Typical use (quantization calibration)::

    import calib_data
    for clip, label in calib_data.load_clips(calib_data.shipped_manifest(), frames=13, resolution=160):
        ...  # clip (1, 3, 13, 160, 160) float32; label int or None
"""
from __future__ import annotations

from pathlib import Path

from calib_data.datasets import Dataset, VideoItem, open_dataset
from calib_data.loader import ReadSummary, VideoClips, iter_videos, load_clips
from calib_data.sampling import ClipSpec
from calib_data.transforms import preprocess

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"

__all__ = ["ClipSpec", "Dataset", "ReadSummary", "VideoClips", "VideoItem", "iter_videos", "load_clips",
           "open_dataset", "preprocess", "shipped_dir", "shipped_manifest"]


def shipped_dir() -> Path:
    """The folder of the shipped calibration clips (see its README.md)."""
    return SHIPPED_DIR


def shipped_manifest() -> Path:
    """``manifest.csv`` of the shipped calibration set: synthetic motion clips
    (16 frames, 160 x 160, labelled) plus one real-world clip (unlabelled)."""
    return SHIPPED_DIR / "manifest.csv"
