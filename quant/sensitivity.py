"""Per-layer quantization sensitivity: which nodes lose most when quantized.

Method (fp32 vs int8 activations, layer by layer, one calibration): the fp32
ONNX model and its QDQ model (``quant.ort``, the artifact's recipe) are both
augmented so that every node's output is a graph output - the approach and the
tensor naming of ONNX Runtime's ``onnxruntime.quantization.qdq_loss_debug``
(QDQ tensors ``X_DequantizeLinear_Output`` are the quantized view of float tensor
``X``), but accumulated clip by clip instead of holding every activation of every
clip (``collect_activations``) in memory.  Both run with graph optimisations off,
so the QDQ model's arithmetic is exactly its Q/DQ semantics.

For each node N that quantization touched (an input from a DequantizeLinear or
its output into a QuantizeLinear), over the probe clips:

- ``sqnr_in_db``: SQNR (10 log10 sum x^2 / sum (x - x_q)^2) of the activations N
  consumes in the QDQ model against the fp32 model's (the worst of its inputs);
- ``sqnr_out_db``: SQNR of N's output as its consumers see it (after its own
  Q/DQ when there is one) against fp32;
- ``drop_db`` = sqnr_in_db - sqnr_out_db: the precision N itself loses (weight
  and output quantization, plus any amplification of its input error).

``rank_layers`` returns them sorted by ``drop_db``, largest first.  The ranking
is by ONNX node name; the OpenVINO model read from the same ONNX file keeps those
names (``quant.openvino.ov_names`` maps them), so the same ranking gives NNCF's
``ignored_scope``.

No torch.
"""
from __future__ import annotations

import logging
import math
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.core.errors import BadInput
from quant.ort_session import ort_session

log = logging.getLogger(__name__)

DQ_SUFFIX = "_DequantizeLinear_Output"  # onnxruntime.quantization.quant_utils.DEQUANT_OUTPUT_SUFFIX
Q_INPUT_SUFFIX = "_QuantizeLinear_Input"  # quant_utils.QUANT_INPUT_SUFFIX (a graph output's producer output)
MAX_DB = 200.0  # an exact (unquantized) tensor
PROBE_CLIPS = 4


@dataclass(frozen=True)
class LayerLoss:
    node: str
    op_type: str
    sqnr_in_db: float
    sqnr_out_db: float

    @property
    def drop_db(self) -> float:
        return self.sqnr_in_db - self.sqnr_out_db

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "drop_db": round(self.drop_db, 2)}


def _db(signal: float, noise: float) -> float:
    if noise <= 0:
        return MAX_DB
    return min(MAX_DB, 10.0 * math.log10(max(signal, 1e-30) / noise))


def _with_outputs(model: Any, names: Sequence[str], path: Path) -> Path:
    """``model`` with the float tensors ``names`` added as graph outputs, saved to ``path``."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names if n not in have)
    onnx.save(m, str(path))
    return path


def _session(path: Path) -> Any:
    """CPU session without graph optimisation (intermediate tensors as exported), no spinning."""
    return ort_session(path, optimise=False)


def rank_layers(fp32_onnx: str | Path, qdq_onnx: str | Path, clips: Sequence[np.ndarray]) -> list[LayerLoss]:
    """Nodes of ``qdq_onnx`` touched by quantization, by SQNR drop against ``fp32_onnx``
    over ``clips`` ((1, 3, T, H, W) float32), largest drop first (see the module docstring)."""
    import onnx

    if not clips:
        raise BadInput(f"{qdq_onnx}: sensitivity needs at least one probe clip")
    fmodel = onnx.load(str(fp32_onnx))
    qmodel = onnx.load(str(qdq_onnx))
    inits = {i.name for i in qmodel.graph.initializer}
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in qmodel.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    float_tensors = {o for n in fmodel.graph.node for o in n.output} | {i.name for i in fmodel.graph.input}
    fnames = {n.name for n in fmodel.graph.node}

    def is_weight(t: str) -> bool:  # an initializer, or the DequantizeLinear of one
        p = producer.get(t)
        return t in inits or (p is not None and p.op_type == "DequantizeLinear" and p.input[0] in inits)

    def float_name(t: str) -> str:  # QDQ tensor -> the fp32 tensor it stands for
        for suffix in (DQ_SUFFIX, Q_INPUT_SUFFIX):
            if suffix in t:
                return t.split(suffix)[0]
        return t

    def after_qdq(t: str) -> str | None:  # the DequantizeLinear output of QuantizeLinear(t), if any
        for q in consumers.get(t, []):
            if q.op_type == "QuantizeLinear":
                for dq in consumers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return dq.output[0]
        return None

    pairs: dict[str, tuple[str, str]] = {}  # key -> (qdq tensor, fp32 tensor)
    layers: list[tuple[Any, list[str], str]] = []  # (node, input keys, output key)
    for n in qmodel.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.name not in fnames:
            continue
        acts = [t for t in n.input if t and not is_weight(t)]
        from_dq = any(producer.get(t) is not None and producer[t].op_type == "DequantizeLinear" for t in n.input)
        if not n.output or float_name(n.output[0]) not in float_tensors:
            continue
        out = n.output[0]  # a graph output keeps its name on the final DequantizeLinear: out is X_QuantizeInput
        q_out = after_qdq(out)
        if not (from_dq or q_out):
            continue  # quantization left this node alone
        seen = q_out or out
        in_keys = []
        for t in acts:
            if float_name(t) in float_tensors:
                pairs[t] = (t, float_name(t))
                in_keys.append(t)
        pairs[seen] = (seen, float_name(out))
        layers.append((n, in_keys, seen))
    if not layers:
        return []
    qnames = sorted({q for q, _ in pairs.values()})
    fnames_out = sorted({f for _, f in pairs.values()})
    inputs = {i.name for i in fmodel.graph.input}
    with tempfile.TemporaryDirectory(prefix="edgevid-sens-") as tmp:
        qs = _session(_with_outputs(qmodel, [t for t in qnames if t not in inputs], Path(tmp) / "q.onnx"))
        fs = _session(_with_outputs(fmodel, [t for t in fnames_out if t not in inputs], Path(tmp) / "f.onnx"))
        in_name = fs.get_inputs()[0].name
        sums = {k: [0.0, 0.0] for k in pairs}  # key -> [signal, noise]
        qouts = [o.name for o in qs.get_outputs()]
        fouts = [o.name for o in fs.get_outputs()]
        for clip in clips:
            clip = np.ascontiguousarray(clip, dtype=np.float32)
            qv = dict(zip(qouts, qs.run(None, {in_name: clip})))
            fv = dict(zip(fouts, fs.run(None, {in_name: clip})))
            qv.setdefault(in_name, clip)
            fv.setdefault(in_name, clip)
            for k, (qt, ft) in pairs.items():
                ref = fv[ft].astype(np.float64, copy=False)
                diff = qv[qt].astype(np.float64, copy=False) - ref
                sums[k][0] += float(np.sum(ref * ref))
                sums[k][1] += float(np.sum(diff * diff))
            del qv, fv
    db = {k: _db(s, e) for k, (s, e) in sums.items()}
    ranked = [LayerLoss(n.name, n.op_type, min((db[k] for k in ins), default=MAX_DB), db[out])
              for n, ins, out in layers]
    ranked.sort(key=lambda r: r.drop_db, reverse=True)
    return ranked


def sensitivity(fp32_onnx: str | Path, clips: Sequence[np.ndarray], probe: Sequence[np.ndarray],
                method: str = "minmax", qdq_onnx: str | Path | None = None,
                calib_cache: str | Path | None = None) -> list[LayerLoss]:
    """Quantize ``fp32_onnx`` with this CPU's ORT recipe (``quant.ort``) calibrated on
    ``clips`` - or take the given ``qdq_onnx`` - and rank its nodes on the ``probe``
    clips (:func:`rank_layers`)."""
    from quant.onnx_io import io_specs, load_onnx

    if qdq_onnx is not None:
        return rank_layers(fp32_onnx, qdq_onnx, probe)
    from quant.ort import ort_recipe, quantize_onnx

    spec_in, _ = io_specs(load_onnx(fp32_onnx), fp32_onnx)
    with tempfile.TemporaryDirectory(prefix="edgevid-sens-q-") as tmp:
        q = Path(tmp) / "model.int8.onnx"
        quantize_onnx(fp32_onnx, q, clips, ort_recipe(method), spec_in.name, calib_cache=calib_cache)
        return rank_layers(fp32_onnx, q, probe)


def table(ranked: Sequence[LayerLoss], top: int = 15) -> str:
    """The ``top`` rows as text: node, op type, SQNR in/out, drop."""
    lines = [f"{'drop dB':>8} {'in dB':>7} {'out dB':>7}  {'op':<12} node"]
    for r in ranked[:top]:
        lines.append(f"{r.drop_db:8.2f} {r.sqnr_in_db:7.2f} {r.sqnr_out_db:7.2f}  {r.op_type:<12} {r.node}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m quant.sensitivity MODEL.onnx [--calib PATH] [--clips N] [--probe N] [--method M]
    [--top N] [--json]``: the ranking of an fp32 ONNX model (input (1, 3, T, S, S)) on
    clips of the shipped calibration set (or ``--calib``)."""
    import argparse
    import json

    from quant.calib import METHODS, MIN_HELD_OUT_CLIPS, read_calib
    from quant.onnx_io import io_specs, load_onnx

    p = argparse.ArgumentParser(prog="python -m quant.sensitivity", description=__doc__.splitlines()[0])
    p.add_argument("model", help="fp32 ONNX model")
    p.add_argument("--calib", help="calibration clips (default: the shipped set)")
    p.add_argument("--clips", type=int, default=16, help="calibration clips (default %(default)s)")
    p.add_argument("--probe", type=int, default=PROBE_CLIPS, help="clips the ranking runs on (default %(default)s)")
    p.add_argument("--method", default="minmax", choices=METHODS)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        spec_in, _ = io_specs(load_onnx(args.model), args.model)
        calib = read_calib(args.calib, spec_in.shape, clips=args.clips, held_out=MIN_HELD_OUT_CLIPS,
                           method=args.method, progress=not args.json)  # the held-out clips are not used
        ranked = sensitivity(args.model, list(calib.clips), list(calib.clips[:args.probe]), args.method)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps([r.to_json() for r in ranked[:args.top]], indent=1) if args.json else table(ranked, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
