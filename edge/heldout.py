"""Which labelled held-out clips an artifact's top-1 is measured on, and reading them.

    accuracy_source(ckpt, given) -> HeldOut          (where the clips are, or why there are none)
    labelled_clips(source, input_shape) -> quant.accuracy.LabelledClips (cached per process)

Order: ``given`` (``--accuracy-data``: a labelled manifest, folder or synthetic-set
spec) wins; else the checkpoint's own held-out set - the shipped MutualNet
checkpoint's is the synthetic validation set it was evaluated on (``edgevid data
synth --clips 300 --seed 2``, :data:`SHIPPED_HELD_OUT`), regenerated here in about
3 s into the cache folder (``$EDGEVID_CACHE``, default ``~/.cache/edgevid``; the
regenerated set reproduces the checkpoint's accuracy table exactly); a checkpoint
whose ``meta.train.val`` folder exists uses that, and a pruned checkpoint
(``meta.prune.source``) uses its source's.  Untrained weights or an unknown
checkpoint: no clips, and the reason is recorded instead of a figure.

Frames are sampled uniformly over each video with the evaluation transform
(``calib_data.labelled.read_labelled``), as ``edgevid eval`` reads them.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edge.core.errors import BadInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSet:
    """A generated synthetic labelled set: ``clips`` clips of ``calib_data.synth`` at ``seed``."""

    clips: int
    seed: int

    @property
    def name(self) -> str:
        return f"synth-{self.clips}-seed{self.seed}"


# sha256 of a shipped checkpoint -> the held-out set its accuracy table was measured on
SHIPPED_HELD_OUT: dict[str, SynthSet] = {
    "d5f8e0d4803119ee1ca6e2490d6d3e2646854ad0a38db631bc3d08d72fdc8bed": SynthSet(300, 2),  # x3d_xs_mutual_synth10
}
SYNTH_PREFIX = "synth:"  # --accuracy-data synth:CLIPS:SEED


@dataclass(frozen=True)
class HeldOut:
    """Where the labelled held-out clips are (``path``), or why there are none (``reason``)."""

    path: Path | None
    what: str = ""
    reason: str = ""


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEVID_CACHE") or Path.home() / ".cache" / "edgevid")


def synth_folder(spec: SynthSet, cache: Path | None = None) -> Path:
    """The folder of ``spec``'s clips under the cache, generated on first use (whole or not at all)."""
    from calib_data.synth import write_dataset

    folder = (cache or cache_dir()) / "heldout" / spec.name
    if (folder / "manifest.csv").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=folder.parent))
    try:
        write_dataset(tmp, spec.clips, seed=spec.seed)
        try:
            tmp.rename(folder)
        except OSError:  # another process generated it first: same seed, same clips
            if not (folder / "manifest.csv").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("generated %d held-out synthetic clips (seed %d) in %s", spec.clips, spec.seed, folder)
    return folder


def parse_synth(text: str) -> SynthSet:
    """``synth:CLIPS:SEED`` -> SynthSet (``BadInput`` naming the text otherwise)."""
    parts = text[len(SYNTH_PREFIX):].split(":")
    try:
        clips, seed = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError):
        raise BadInput(f"--accuracy-data {text!r}: expected synth:CLIPS:SEED, e.g. synth:300:2") from None
    if clips < 1 or len(parts) > 2:
        raise BadInput(f"--accuracy-data {text!r}: expected synth:CLIPS:SEED with CLIPS >= 1")
    return SynthSet(clips, seed)


def accuracy_source(ckpt: str | Path | None, given: str | Path | None = None,
                    cache: Path | None = None) -> HeldOut:
    """The labelled held-out clips for an artifact built from ``ckpt`` (see the module doc)."""
    if given is not None:
        text = str(given)
        if text.startswith(SYNTH_PREFIX):
            spec = parse_synth(text)
            return HeldOut(synth_folder(spec, cache), f"generated synthetic set ({spec.name})")
        if not Path(text).exists():
            raise BadInput(f"--accuracy-data {text}: no such file or folder")
        from calib_data.datasets import open_dataset

        if not open_dataset(text).labelled:  # int8 still builds; its top-1 is unknown, and says why
            return HeldOut(None, text, reason=f"{text}: no labelled clips (a manifest with labels is needed "
                                              "for top-1)")
        return HeldOut(Path(text), text)
    if ckpt is None:
        return HeldOut(None, reason="untrained weights: no labelled held-out clips (pass --accuracy-data)")
    if not Path(ckpt).is_file():
        raise BadInput(f"{ckpt}: no such checkpoint file")
    st = Path(ckpt).stat()  # one hash and one unpickling per checkpoint file and process, not per compile
    return _from_checkpoint(str(Path(ckpt).resolve()), st.st_mtime_ns, st.st_size, cache or cache_dir())


@functools.lru_cache(maxsize=16)
def _from_checkpoint(ckpt: str, mtime_ns: int, size: int, cache: Path | None) -> HeldOut:
    """:func:`accuracy_source` for a checkpoint file (``mtime_ns``/``size``: its identity for the cache)."""
    from edge.core.io import sha256_file

    spec = SHIPPED_HELD_OUT.get(sha256_file(ckpt))
    if spec is not None:
        return HeldOut(synth_folder(spec, cache), f"the checkpoint's held-out synthetic set ({spec.name})")
    meta = _meta(ckpt)
    parent = (meta.get("prune") or {}).get("source") if isinstance(meta.get("prune"), dict) else None
    if isinstance(parent, str) and Path(parent).is_file() and Path(parent).resolve() != Path(ckpt).resolve():
        return accuracy_source(parent, None, cache)  # a pruned checkpoint: its source's held-out clips
    val = (meta.get("train") or {}).get("val") if isinstance(meta.get("train"), dict) else None
    if isinstance(val, str) and Path(val).exists():
        return HeldOut(Path(val), f"the checkpoint's validation set ({val})")
    return HeldOut(None, reason=f"{ckpt}: no labelled held-out clips known for this checkpoint "
                                "(pass --accuracy-data)")


def _meta(ckpt: str | Path) -> dict:
    """The meta of an edgevid checkpoint ({} when it has none readable)."""
    from edge.checkpoint import load_checkpoint

    try:
        return dict(load_checkpoint(ckpt).meta)
    except BadInput:
        return {}


@functools.lru_cache(maxsize=8)
def _read(path: str, frames: int, resolution: int, classes: tuple[str, ...] | None):
    from calib_data.labelled import read_labelled
    from quant.accuracy import LabelledClips

    clips, labels = read_labelled(path, frames, resolution, classes=classes)
    return LabelledClips(path, clips, labels)


def labelled_clips(source: HeldOut, input_shape: Sequence[int], classes: Sequence[str] | None = None):
    """The clips of ``source`` at ``input_shape`` = (1, 3, T, S, S) as ``LabelledClips``
    (read once per process and shape); ``None`` when ``source`` has none."""
    if source.path is None:
        return None
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 5 or shape[3] != shape[4]:
        raise BadInput(f"accuracy clips must be (1, 3, T, S, S), the model takes {shape}")
    got = _read(str(source.path), shape[2], shape[3], None if classes is None else tuple(classes))
    log.info("accuracy: %d labelled clips from %s", len(got), source.what or source.path)
    return got
