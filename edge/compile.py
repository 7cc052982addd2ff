"""Compile one ``Variant`` for one target into an artifact directory.

Data flow: Variant -> ``create_model`` (or the checkpoint's model) -> the target's
``compile`` (export + build) -> artifact, written to a temporary folder beside
``out_dir`` and moved into place only when complete.  Then, when the target can
run here, the artifact is loaded and its logits on one seeded random clip are
compared with PyTorch's (``notes.check``: max abs diff and cosine; a smoke test of
the artifact, not an accuracy figure).

Pruning, width materialisation of slimmable checkpoints and int8 arrive with
their issues; until then ``prune > 0`` is refused here and int8 by the targets.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge.checkpoint import load_model
from edge.errors import BadInput, GateFailed
from edge.models import create_model
from edge.variant import Variant
from targets.base import ARTIFACT_JSON, Artifact, Runner
from targets.registry import TargetOptions, get_target

log = logging.getLogger(__name__)

CHECK_SEED = 0


def _prepare_out(out_dir: Path) -> None:
    """Refuse to overwrite anything but an empty folder or an earlier artifact."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise BadInput(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / ARTIFACT_JSON).is_file():
            raise BadInput(f"{out_dir}: folder is not empty and holds no artifact; refusing to overwrite it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)


def _swap_in(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def compile_variant(variant: Variant, target: str, out_dir: str | Path, ckpt: str | Path | None = None,
                    options: TargetOptions | None = None) -> Artifact:
    """Build ``variant`` (from ``ckpt`` when given) and compile it for ``target`` into ``out_dir``.

    Input of the artifact: (1, 3, variant.frames, variant.resolution, variant.resolution)
    float32; output (1, num_classes) logits.
    """
    tgt = get_target(target, options)
    if variant.prune > 0:
        raise BadInput(f"prune ratio {variant.prune}: compiling pruned variants is not wired yet "
                       "(it arrives with `edgevid prune`)")
    out_dir = Path(out_dir)
    _prepare_out(out_dir)
    if ckpt is not None:
        model, _ = load_model(ckpt, variant)
    else:
        model = create_model(variant).eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be shared
    try:
        try:
            tgt.compile(model, variant, tmp)
        except GateFailed as e:
            if (tmp / ARTIFACT_JSON).is_file():  # the failed artifact is kept, marked failed, for inspection
                _swap_in(tmp, out_dir)
                raise GateFailed(str(e).replace(str(tmp), str(out_dir))) from None
            raise
        _swap_in(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    art = Artifact.read(out_dir)
    if art.status == "ok" and tgt.available():
        art = art.with_(notes={**art.notes, "check": parity_check(tgt.load(art), model)}).write()
    log.info("compiled %s for %s into %s", variant.tag, target, out_dir)
    return art


def parity_check(runner: Runner, model: torch.nn.Module) -> dict[str, object]:
    """Logits of ``runner`` vs ``model`` on one seeded N(0, 1) clip: max abs diff and cosine."""
    spec = runner.artifact.input
    clip = np.random.default_rng(CHECK_SEED).standard_normal(spec.shape, dtype=np.float32)
    try:
        got = runner(clip).astype(np.float64).ravel()
    finally:
        runner.close()
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(clip)).double().numpy().ravel()
    cosine = float(got @ ref / max(np.linalg.norm(got) * np.linalg.norm(ref), 1e-30))
    return {"max_abs_diff": float(np.abs(got - ref).max()), "cosine": cosine, "clip": f"N(0,1) seed {CHECK_SEED}"}


def summary(art: Artifact) -> dict[str, object]:
    """What ``edgevid compile`` prints: where, what, how big, and the parity check."""
    sizes = {name: (art.path / name).stat().st_size for name in art.files}
    return {"artifact": str(art.path), "target": art.target, "variant": art.variant, "precision": art.precision,
            "status": art.status, "input": list(art.input.shape), "output": list(art.output.shape),
            "files": sizes, "tools": dict(art.tools), "notes": dict(art.notes)}
