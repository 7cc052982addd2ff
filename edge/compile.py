"""Compile one ``Variant`` for one target into an artifact directory.

Data flow: Variant -> ``create_model`` (or the checkpoint's model) -> the target's
``compile`` (export + build) -> artifact, written to a temporary folder beside
``out_dir`` and moved into place only when complete.  Then, when the target can
run here, the artifact is loaded and its logits on one seeded random clip are
compared with PyTorch's (``notes.check``: max abs diff and cosine; a smoke test of
the artifact, not an accuracy figure).

int8: the calibration clips (``quant.calib.CalibSet``; default: the shipped
calibration set) go to the target's ``compile``.

Every artifact, fp32 and int8: its own top-1 on the labelled held-out clips of its
checkpoint (``edge.heldout``: 300 for the shipped one, or ``accuracy_data``) goes
to ``notes.accuracy`` with the clip count and a 95% interval; int8 also gets its
fidelity against fp32 (``artifact.json`` ``fidelity``) and must pass the gate
(``edge.gate``: top-1 drop with labels, logit SQNR without), else it is kept,
marked ``failed``, and ``GateFailed`` is raised.  Targets that cannot run here
(tensorrt without a GPU) are measured on their QDQ ONNX model with ONNX Runtime
on the CPU.

A pruned variant (``prune > 0``) is rebuilt from its pruned checkpoint
(``edge.prune.load_pruned``; the recorded ratio must match).  A slimmable
(MutualNet) checkpoint is materialised at the variant's width, resolution and
frames (``edge.models.slim.materialize``: sliced weights, that configuration's BN
post-statistics).  From any checkpoint, the configuration's row of the
checkpoint's accuracy table (PyTorch fp32) goes to ``notes.accuracy_table`` and its
class names to ``notes.classes``.  Untrained weights are seeded (``seed``): the same
command builds the same artifact.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import replace
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import torch

from edge.checkpoint import load_checkpoint, load_model
from edge.gate import Gate, measure_artifact
from edge.heldout import accuracy_source, labelled_clips
from quant.ort_session import ort_session
from edge.core.errors import BadInput, GateFailed
from edge.models import create_model
from edge.core.variant import Variant
from targets.base import ARTIFACT_JSON, Artifact, Runner, Target

if TYPE_CHECKING:  # pragma: no cover
    from edge.models.slim import SlimNet
    from quant.calib import CalibSet
from targets.registry import TargetOptions, get_target

log = logging.getLogger(__name__)

CHECK_SEED = 0
ONNX_FED = frozenset({"onnxruntime", "openvino", "tensorrt", "fpga"})  # targets that compile from an ONNX file
MIXED_AGREEMENT = 0.99  # --mixed without --min-agreement: the candidates' agreement floor (edge.mixed)


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
                    options: TargetOptions | None = None, calib: "CalibSet | None" = None,
                    gate: Gate | None = None, mixed: bool = False, onnx_cache: str | Path | None = None,
                    accuracy_data: str | Path | None = None, seed: int = 0) -> Artifact:
    """Build ``variant`` (from ``ckpt`` when given, else untrained with ``seed``) and
    compile it for ``target`` into ``out_dir``.

    Input of the artifact: (1, 3, variant.frames, variant.resolution, variant.resolution)
    float32; output (1, num_classes) logits.  int8: ``calib`` (default: read from the
    shipped calibration set) calibrates.  Then (``edge.gate``) the artifact's top-1 on
    the labelled held-out clips (``accuracy_data``, else the checkpoint's own:
    ``edge.heldout``) goes to ``notes.accuracy``, and an int8 artifact must pass
    ``gate`` (default :class:`edge.gate.Gate`), else ``GateFailed`` (artifact kept,
    status "failed").  ``mixed`` (int8): accuracy-aware int8 - on OpenVINO with
    labelled clips NNCF's ``quantize_with_accuracy_control`` at ``gate.max_drop``,
    otherwise the float-layer search of ``edge.mixed``, its floor the same top-1 drop
    on the labelled clips, or without them an agreement floor (``gate.min_agreement``,
    default :data:`MIXED_AGREEMENT`).
    """
    gate = gate or Gate()
    tgt = get_target(target, options)
    if variant.precision == "int8":
        from quant.calib import read_calib

        calib = calib if calib is not None else read_calib(None, variant.input_shape)
        calib.check(variant.input_shape)
    else:
        calib = None
    ckpt_notes: dict[str, object] = {}
    if variant.prune > 0 and ckpt is None:
        raise BadInput(f"prune ratio {variant.prune}: a pruned variant needs --ckpt, a checkpoint written by "
                       "`edgevid prune` at that ratio")
    out_dir = Path(out_dir)
    _prepare_out(out_dir)
    if ckpt is not None and variant.prune > 0:
        from edge.prune import load_pruned

        model = load_pruned(ckpt, variant)  # rebuilt from the architecture the checkpoint records
        ckpt_notes = checkpoint_notes(load_checkpoint(ckpt).meta, variant)
    elif ckpt is not None:
        model, ckpt_notes = build_from_checkpoint(ckpt, variant)
    else:
        torch.manual_seed(seed)  # untrained weights: the same command builds the same artifact
        model = create_model(variant).eval()
    held = accuracy_source(ckpt, accuracy_data)
    labelled = labelled_clips(held, variant.input_shape, ckpt_notes.get("classes"))  # type: ignore[arg-type]
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be shared
    try:
        try:
            source: torch.nn.Module | Path = model
            if onnx_cache is not None and ckpt is not None and target in ONNX_FED:
                source = cached_export(model, variant, ckpt, Path(onnx_cache))
            if mixed and calib is not None and target == "openvino" and labelled is not None:
                accuracy_controlled(tgt, source, variant, tmp, calib, labelled, gate.max_drop)
            elif mixed and calib is not None:  # int8: keep sensitive layers float, fastest config meeting the floor
                from edge.mixed import compile_mixed

                # with labelled clips the candidates must meet the gate's top-1 drop, else an agreement floor
                compile_mixed(tgt, model, variant, tmp, replace(calib, labelled=labelled),
                              MIXED_AGREEMENT if gate.min_agreement is None else gate.min_agreement,
                              max_drop=gate.max_drop if labelled is not None else None)
            else:
                tgt.compile(source, variant, tmp, calib=calib)
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
    sampling = getattr(model, "input_sampling", None)  # how a network splits its one clip (SlowFast's pathways)
    if ckpt_notes or sampling:
        art = art.with_(notes={**art.notes, **ckpt_notes, **({"input_sampling": sampling} if sampling else {})}).write()
    ref = onnx_reference(source) if isinstance(source, Path) else torch_reference(model)
    if art.status == "ok" and tgt.available():
        art = art.with_(notes={**art.notes, "check": parity_check(tgt.load(art), ref)}).write()
    if calib is not None:
        art = art.with_(notes={**art.notes, "calibration": calib.record()}).write()
    reference = "fp32 ONNX export on onnxruntime" if isinstance(source, Path) else "PyTorch fp32"
    art = measure_artifact(art, tgt, ref, reference, calib, labelled, gate, held,
                           source if isinstance(source, Path) else None)
    log.info("compiled %s for %s into %s", variant.tag, target, out_dir)
    return art


def accuracy_controlled(tgt: Target, source: "torch.nn.Module | Path", variant: Variant, workdir: Path,
                        calib: "CalibSet", labelled: object, max_drop: float) -> Artifact:
    """``--mixed`` on OpenVINO with labelled clips: NNCF's accuracy control (``quant.openvino``)
    keeps float what it must for the top-1 on ``labelled`` to stay within ``max_drop``."""
    from quant.settings import QuantSettings

    options = tgt.options
    quant = replace(options.quant or QuantSettings(), max_drop=max_drop)
    controlled = get_target(tgt.name, replace(options, quant=quant))
    return controlled.compile(source, variant, workdir, calib=replace(calib, labelled=labelled))


def cached_export(model: torch.nn.Module, variant: Variant, ckpt: str | Path, cache: Path) -> Path:
    """The fp32 ONNX export of ``model`` (built from ``ckpt`` at ``variant``'s
    configuration) in ``cache``, exported on first use.  The key is the checkpoint's
    sha256 and the configuration (precision aside), so a changed checkpoint never
    reuses a stale export; files appear whole (write, then rename).  Beside it,
    ``KEY.check.npy``: PyTorch's logits on the parity-check clip, so that later
    artifacts of this configuration are checked against PyTorch without running it."""
    from targets.export import export_onnx
    from edge.core.io import sha256_file

    fp32 = Variant(variant.model, variant.width, variant.resolution, variant.frames, "fp32", variant.prune)
    path = cache / f"{fp32.tag}-{sha256_file(ckpt)[:16]}.onnx"
    if not (path.is_file() and path.with_suffix(".check.npy").is_file()):
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export.", dir=cache))
        try:
            export_onnx(model, variant.input_shape, tmp / "model.onnx")
            np.save(tmp / "check.npy", torch_reference(model)(check_clip(variant.input_shape)))
            (tmp / "check.npy").rename(path.with_suffix(".check.npy"))
            (tmp / "model.onnx").rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


Reference = Callable[[np.ndarray], np.ndarray]  # (1, 3, T, S, S) clip -> (1, classes) fp32 logits


def torch_reference(model: torch.nn.Module) -> Reference:
    def run(clip: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.eval()(torch.from_numpy(np.ascontiguousarray(clip))).numpy()
    return run


def onnx_reference(path: Path) -> Reference:
    """fp32 logits from the fp32 ONNX export on ONNX Runtime (CPU): the same function as
    the PyTorch model (export parity < 1e-4, tests/test_models.py), several times faster
    than eager PyTorch on X3D's depthwise Conv3d; the check clip's PyTorch logits, saved
    at export, are returned as they are."""
    session = ort_session(path, spin=True)
    name = session.get_inputs()[0].name
    saved = np.load(path.with_suffix(".check.npy"))

    def run(clip: np.ndarray) -> np.ndarray:
        if np.array_equal(clip, check_clip(clip.shape)):
            return saved
        return session.run(None, {name: np.ascontiguousarray(clip, dtype=np.float32)})[0]
    return run


def check_clip(shape: Sequence[int]) -> np.ndarray:
    """The parity-check clip: seeded N(0, 1)."""
    return np.random.default_rng(CHECK_SEED).standard_normal(tuple(shape), dtype=np.float32)


@functools.lru_cache(maxsize=2)
def _slim_checkpoint(path: str, mtime_ns: int, size: int) -> tuple["SlimNet", dict[str, object]]:
    from edge.models.slim import load_slim

    return load_slim(path)  # its ~10^4 BN-statistics tensors take seconds to unpickle: load once per process


def build_from_checkpoint(ckpt: str | Path, variant: Variant) -> tuple[torch.nn.Module, dict[str, object]]:
    """``variant``'s model from ``ckpt`` (plain or slimmable) in eval mode, and notes
    for its artifact: ``accuracy_table``, the held-out record from the checkpoint's
    ``meta["accuracy"]`` (or ``None``), and ``classes``, the class names (when known).

    A slimmable checkpoint is materialised at the variant's configuration (which
    must be in its BN post-statistics table); a plain one must hold the variant's
    model at the variant's width.
    """
    st = Path(ckpt).stat() if Path(ckpt).is_file() else None
    slim = _slim_checkpoint(str(Path(ckpt).resolve()), st.st_mtime_ns, st.st_size) if st and _is_slim(ckpt) else None
    if slim is not None:
        from edge.models.slim import materialize

        net, meta = slim
        if net.model_name != variant.model:
            raise BadInput(f"{ckpt}: checkpoint holds {net.model_name}, not {variant.model}")
        model = materialize(net, variant.width, variant.resolution, variant.frames)
    else:
        model, loaded = load_model(ckpt, variant)
        meta = dict(loaded.meta)
    return model.eval(), checkpoint_notes(meta, variant)


def checkpoint_notes(meta: Mapping[str, object], variant: Variant) -> dict[str, object]:
    """Artifact notes from a checkpoint's meta: ``accuracy_table`` (see :func:`accuracy_of`)
    and, when recorded, ``classes`` (the class names)."""
    notes: dict[str, object] = {"accuracy_table": accuracy_of(meta, variant)}
    classes = meta.get("classes")
    if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
        notes["classes"] = list(classes)
    return notes


def _is_slim(ckpt: str | Path) -> bool:
    """Whether ``ckpt`` is a slimmable checkpoint (its zip holds the ``slim`` metadata); cheap, no unpickling."""
    import zipfile

    try:
        with zipfile.ZipFile(ckpt) as z:
            return any(n.endswith("/data.pkl") and b"width_range" in z.read(n) for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False  # load_model reports what is wrong with it


def accuracy_of(meta: Mapping[str, object], variant: Variant) -> dict[str, object] | None:
    """The row of a checkpoint's accuracy table (``meta["accuracy"]``) for ``variant``'s
    width, resolution and frames: top-1, clips, params and GFLOPs; ``None`` if absent."""
    rows = meta.get("accuracy")
    if not isinstance(rows, list):
        return None
    for row in rows:
        if (isinstance(row, dict) and abs(float(row.get("width", -1)) - variant.width) < 1e-9
                and row.get("resolution") == variant.resolution and row.get("frames") == variant.frames):
            return {k: row[k] for k in ("config", "top1", "clips", "params", "gflops") if k in row}
    return None


def parity_check(runner: Runner, model: torch.nn.Module | Reference) -> dict[str, object]:
    """Logits of ``runner`` vs PyTorch (``model``, or a :data:`Reference`) on one seeded
    N(0, 1) clip: max abs diff and cosine."""
    clip = check_clip(runner.artifact.input.shape)
    try:
        got = runner(clip).astype(np.float64).ravel()
    finally:
        runner.close()
    fn = torch_reference(model) if isinstance(model, torch.nn.Module) else model
    ref = fn(clip).astype(np.float64).ravel()
    cosine = float(got @ ref / max(np.linalg.norm(got) * np.linalg.norm(ref), 1e-30))
    return {"max_abs_diff": float(np.abs(got - ref).max()), "cosine": cosine, "clip": f"N(0,1) seed {CHECK_SEED}"}


def summary(art: Artifact) -> dict[str, object]:
    """What ``edgevid compile`` prints: where, what, how big, and the parity check."""
    sizes = {name: (art.path / name).stat().st_size for name in art.files}
    return {"artifact": str(art.path), "target": art.target, "variant": art.variant, "precision": art.precision,
            "status": art.status, "input": list(art.input.shape), "output": list(art.output.shape),
            "files": sizes, "tools": dict(art.tools), "fidelity": None if art.fidelity is None else dict(art.fidelity),
            "notes": dict(art.notes)}
