"""Power-of-two int8 post-training quantization for the fpga target (Vitis AI DPU rule).

Scheme: symmetric, per-tensor, int8, zero point 0, every scale a power of two
``2^-f`` (``f`` is the tensor's *fraction length*) for weights and activations;
int32 accumulators; bias in int32 at scale ``s_in * s_w`` (fraction ``f_in + f_w``).

``quantize(lowered, clips)`` takes the *lowered* fp32 ONNX model (quantize after
lowering: the lowering rewrites weights) and returns a QDQ ONNX model that
:func:`targets.checker.check` accepts with ``FPGA_OPSET``:

* **Quantization points** (a QuantizeLinear -> DequantizeLinear pair, int8, zero
  point 0, scale 2^-f): the output of every compute op (Conv, Gemm, MatMul, Add,
  Mul, AveragePool, GlobalAveragePool, Concat) - moved past a following Relu/Clip
  when that is the tensor's only consumer (activation fused into the op, as the
  DPU does) - except a graph output (the final Gemm's logits are read as the
  int32 accumulator times ``s_in * s_w``, not requantized to int8, so that
  rounding cannot tie or swap the top classes), and the network input (after its first Reshape/Flatten when the
  input has rank 5, since the set caps ranks at 4).  Structural ops (Reshape,
  Flatten, Transpose, Slice, Pad with 0, MaxPool) and a standalone Relu/Clip keep
  their input's grid and scale: they need no requantization.
* **Weights** of Conv/Gemm/MatMul: int8 initializer -> DequantizeLinear.  Other
  constant operands of Add/Mul/Concat (hard-sigmoid's 3 and 1/6, TSM zero
  frames): int8 -> DequantizeLinear, each with its own power-of-two scale.
* **Bias**: rounded to an int32 at fraction ``f_in + f_w`` and stored as a float
  initializer holding exactly ``b_int * 2^-(f_in+f_w)``: the fpga operator set
  (``targets/opset.py``) takes int8 quantizers only, so an int32 DequantizeLinear
  would fail the check; the float value is exact (|b_int| < 2^24 is asserted)
  and :mod:`quant.intsim` reads it back as the int32.

Choosing ``f`` (``method``):

* ``"maxabs"``: the largest ``f`` with ``127 * 2^-f >= max|x|`` (no clipping):
  ``f0 = floor(log2(127 / max|x|))``.
* ``"mse"`` (default): among ``f0 .. f0 + 3`` (finer scales clip the largest
  values), the one with the least squared quantization error over the
  calibration activations (or the weight tensor), as Vitis AI's quantizer does.
  Activation error is summed over every calibration clip (two passes: max, then
  error per candidate).

Calibration runs the lowered fp32 model on ONNX Runtime with every quantization
point added as a graph output.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from quant.ort_session import ort_session
from edge.core.errors import BadInput

log = logging.getLogger(__name__)

METHODS = ("mse", "maxabs")
COMPUTE_OPS = frozenset({"Conv", "Gemm", "MatMul", "Add", "Mul", "AveragePool", "GlobalAveragePool", "Concat"})
ACTIVATIONS = frozenset({"Relu", "Clip"})
STRUCTURAL_OPS = frozenset({"Reshape", "Flatten", "Transpose", "Slice", "Pad", "MaxPool", "GlobalMaxPool",
                            "Relu", "Clip", "Identity"})
WEIGHT_OPS = frozenset({"Conv", "Gemm", "MatMul"})
QMIN, QMAX = -128, 127
F_MIN, F_MAX = -16, 40  # fraction lengths kept in a sane range (scale 2^16 .. 2^-40)
MSE_CANDIDATES = 4
_FLOAT_EXACT = 1 << 24


@dataclass(frozen=True)
class Pow2Report:
    """What the quantizer did: fraction length per quantization point / weight, method, clips."""

    method: str
    clips: int
    activations: dict[str, int] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        fa = list(self.activations.values())
        return {"scheme": "int8 symmetric per-tensor power-of-two (zero point 0), int32 bias/accumulators",
                "method": self.method, "calibration_clips": self.clips,
                "activation_points": len(fa), "weights": len(self.weights),
                "activation_fraction_range": [min(fa), max(fa)] if fa else None}


def frac_maxabs(maxabs: float) -> int:
    """Largest ``f`` with ``127 * 2^-f >= maxabs`` (0 when ``maxabs`` is 0)."""
    if not math.isfinite(maxabs) or maxabs <= 0:
        return 0
    return int(min(max(math.floor(math.log2(QMAX / maxabs)), F_MIN), F_MAX))


def quantize_array(x: np.ndarray, f: int) -> np.ndarray:
    """int8 ``sat(round_half_even(x * 2^f))`` - the host-side float -> int8 rule
    (what ONNX QuantizeLinear does)."""
    return np.clip(np.rint(x.astype(np.float64) * 2.0 ** f), QMIN, QMAX).astype(np.int8)


def _sq_err(x: np.ndarray, f: int) -> float:
    q = np.clip(np.rint(x * 2.0 ** f), QMIN, QMAX) * 2.0 ** -f
    return float(np.sum((x - q) ** 2))


def frac_for_tensor(x: np.ndarray, method: str) -> int:
    """Fraction length for a constant tensor (weights) by ``method``."""
    x = np.asarray(x, dtype=np.float64)
    f0 = frac_maxabs(float(np.max(np.abs(x))) if x.size else 0.0)
    if method == "maxabs" or not np.any(x):
        return f0
    cands = [f for f in range(f0, f0 + MSE_CANDIDATES) if f <= F_MAX]
    return min(cands, key=lambda f: _sq_err(x, f))


# ----------------------------------------------------------------------------- graph helpers
def _consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant nodes -> initializers; nodes whose inputs are all constant evaluated
    (ONNX reference evaluator) into initializers (e.g. a Reshape of TSM's zero frames)."""
    from onnx.reference import ReferenceEvaluator

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    consts = _consts(model)
    keep: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    for node in g.node:
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in consts for i in ins)):
            if node.op_type == "Constant":
                vals = [numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))] \
                    if node.attribute[0].name == "value" else None
                if vals is None:
                    keep.append(node)
                    continue
            else:
                sub = helper.make_graph([node], "fold", [], [helper.make_tensor_value_info(o, TensorProto.UNDEFINED,
                                                                                           None)
                                                             for o in node.output if o],
                                        [numpy_helper.from_array(consts[i], i) for i in ins])
                m = helper.make_model(sub, opset_imports=list(model.opset_import))
                m.ir_version = model.ir_version
                vals = ReferenceEvaluator(m).run(None, {})
            for o, v in zip([o for o in node.output if o], vals):
                v = np.asarray(v)
                consts[o] = v
                new_inits.append(numpy_helper.from_array(v, o))
            continue
        keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    return model


def quant_points(model: onnx.ModelProto) -> list[str]:
    """Float tensors that get a QuantizeLinear/DequantizeLinear pair, in graph order."""
    g = model.graph
    consts = _consts(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    points: list[str] = []
    for inp in g.input:
        if inp.name in consts:
            continue
        rank = len(inp.type.tensor_type.shape.dim)
        if rank <= 4:
            points.append(inp.name)
            continue
        for c in consumers.get(inp.name, []):
            if c.op_type not in ("Reshape", "Flatten"):
                raise BadInput(f"fpga int8: the rank-{rank} input {inp.name!r} feeds {c.op_type} "
                               f"'{c.name}'; only Reshape/Flatten may read it")
            points.append(c.output[0])
    for n in g.node:
        if n.op_type not in COMPUTE_OPS:
            continue
        t = n.output[0]
        while t not in outputs and len(consumers.get(t, [])) == 1 and consumers[t][0].op_type in ACTIVATIONS:
            t = consumers[t][0].output[0]
        if t in outputs:  # the logits stay int32 (dequantized at s_in * s_w): no rounding ties at the top
            continue
        points.append(t)
    return points


# ----------------------------------------------------------------------------- calibration
def _session(model: onnx.ModelProto, outputs: Sequence[str]) -> Any:
    m = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in outputs
                          if t not in have)
    return ort_session(m, optimise=False, spin=True)


def calibrate(model: onnx.ModelProto, points: Sequence[str], clips: Sequence[np.ndarray],
              method: str = "mse") -> dict[str, int]:
    """Fraction length per quantization point from running ``model`` (fp32) on ``clips``."""
    if method not in METHODS:
        raise BadInput(f"power-of-two calibration method {method!r}; valid: {', '.join(METHODS)}")
    if not clips:
        raise BadInput("fpga int8: no calibration clips")
    sess = _session(model, points)
    name = sess.get_inputs()[0].name
    shape = tuple(sess.get_inputs()[0].shape)
    for k, c in enumerate(clips):
        if tuple(c.shape) != shape:
            raise BadInput(f"calibration clip {k} has shape {tuple(c.shape)}; the model takes {shape}")
        if not np.isfinite(c).all():
            raise BadInput(f"calibration clip {k} contains NaN or Inf")
    maxabs = dict.fromkeys(points, 0.0)
    for c in clips:
        outs = sess.run(list(points), {name: np.ascontiguousarray(c, dtype=np.float32)})
        for t, v in zip(points, outs):
            maxabs[t] = max(maxabs[t], float(np.max(np.abs(v))) if v.size else 0.0)
    fracs = {t: frac_maxabs(m) for t, m in maxabs.items()}
    if method == "maxabs":
        return fracs
    err = {t: np.zeros(MSE_CANDIDATES) for t in points}
    for c in clips:
        outs = sess.run(list(points), {name: np.ascontiguousarray(c, dtype=np.float32)})
        for t, v in zip(points, outs):
            v = v.astype(np.float64)
            err[t] += [_sq_err(v, fracs[t] + k) for k in range(MSE_CANDIDATES)]
    return {t: int(min(fracs[t] + int(np.argmin(err[t])), F_MAX)) if maxabs[t] > 0 else fracs[t] for t in points}


# ----------------------------------------------------------------------------- QDQ graph
def _scale_zp(g: onnx.GraphProto, f: int, tag: str) -> tuple[str, str]:
    s, z = f"{tag}_scale", f"{tag}_zp"
    g.initializer.append(numpy_helper.from_array(np.array(2.0 ** -f, dtype=np.float32), s))
    g.initializer.append(numpy_helper.from_array(np.array(0, dtype=np.int8), z))
    return s, z


def _dq_const(g: onnx.GraphProto, new_nodes: list[onnx.NodeProto], value: np.ndarray, f: int, tag: str) -> str:
    q = f"{tag}_int8"
    g.initializer.append(numpy_helper.from_array(quantize_array(value, f), q))
    s, z = _scale_zp(g, f, tag)
    out = f"{tag}_dq"
    new_nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out], name=f"{tag}_DequantizeLinear"))
    return out


def quantize(lowered: onnx.ModelProto, clips: Iterable[np.ndarray], method: str = "mse"
             ) -> tuple[onnx.ModelProto, Pow2Report]:
    """The lowered fp32 model as a power-of-two int8 QDQ model (see the module docstring).

    clips: calibration inputs, each shaped like the model input, e.g. (1, 3, T, H, W).
    """
    clips = [np.asarray(c, dtype=np.float32) for c in clips]
    model = fold_constants(lowered)
    points = quant_points(model)
    fracs = calibrate(model, points, clips, method)
    g = model.graph
    consts = _consts(model)
    # fraction of every quantized value: quant points, then through structural ops
    frac_of: dict[str, int] = dict(fracs)
    for n in g.node:
        if n.op_type in STRUCTURAL_OPS and n.input and n.input[0] in frac_of and n.output[0] not in frac_of:
            frac_of[n.output[0]] = frac_of[n.input[0]]
    weights: dict[str, int] = {}
    new_nodes: list[onnx.NodeProto] = []
    drop_inits: set[str] = set()
    point_set = set(points)
    for n in g.node:
        if n.op_type in WEIGHT_OPS:
            w_name = n.input[1]
            if w_name not in consts:
                raise BadInput(f"fpga int8: {n.op_type} '{n.name}' has non-constant weights")
            w = consts[w_name]
            fw = frac_for_tensor(w, method)
            weights[f"{n.name}:{w_name}"] = fw
            n.input[1] = _dq_const(g, new_nodes, w, fw, f"{n.name}_W")
            drop_inits.add(w_name)
            if len(n.input) > 2 and n.input[2]:
                fx = frac_of.get(n.input[0])
                if fx is None:
                    raise BadInput(f"fpga int8: input of {n.op_type} '{n.name}' is not quantized")
                b = consts[n.input[2]].astype(np.float64)
                b_int = np.clip(np.rint(b * 2.0 ** (fx + fw)), -(2 ** 31), 2 ** 31 - 1)
                if np.any(np.abs(b_int) >= _FLOAT_EXACT):
                    log.warning("%s: bias beyond 2^24 at fraction %d; float32 storage rounds it", n.name, fx + fw)
                bname = f"{n.name}_B_int32_at_f{fx + fw}"
                g.initializer.append(numpy_helper.from_array((b_int * 2.0 ** -(fx + fw)).astype(np.float32), bname))
                drop_inits.add(n.input[2])
                n.input[2] = bname
        elif n.op_type in ("Add", "Mul", "Concat"):
            for k, i in enumerate(n.input):
                if i in consts:
                    fc = frac_for_tensor(consts[i], method)
                    weights[f"{n.name}:{i}"] = fc
                    n.input[k] = _dq_const(g, new_nodes, consts[i], fc, f"{n.name}_{i}")
                    drop_inits.add(i)
        new_nodes.append(n)
        for o in n.output:
            if o in point_set:
                new_nodes.extend(_qdq(g, n, o, fracs[o]))
    # a rank <= 4 graph input is itself a quant point: its consumers read the DQ output
    for inp in g.input:
        if inp.name in point_set:
            dq = f"{inp.name}_q_dq"
            for n in new_nodes:
                for k, i in enumerate(n.input):
                    if i == inp.name:
                        n.input[k] = dq
            s, z = _scale_zp(g, fracs[inp.name], inp.name)
            new_nodes[:0] = [helper.make_node("QuantizeLinear", [inp.name, s, z], [f"{inp.name}_q"],
                                              name=f"{inp.name}_QuantizeLinear"),
                             helper.make_node("DequantizeLinear", [f"{inp.name}_q", s, z], [dq],
                                              name=f"{inp.name}_DequantizeLinear")]
    used = {i for n in new_nodes for i in n.input}
    inits = [i for i in g.initializer if i.name in used or i.name not in drop_inits]
    inits = [i for i in inits if i.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    model.doc_string = (model.doc_string + "\n" if model.doc_string else "") + \
        f"power-of-two int8 QDQ by edgevid quant.pow2 ({method}, {len(clips)} calibration clips)"
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    return model, Pow2Report(method, len(clips), dict(fracs), weights)


def _qdq(g: onnx.GraphProto, node: onnx.NodeProto, out: str, f: int) -> list[onnx.NodeProto]:
    """Rename ``node``'s output ``out`` to ``out_f`` and append Q -> DQ writing ``out``."""
    raw = f"{out}_f"
    for k, o in enumerate(node.output):
        if o == out:
            node.output[k] = raw
    s, z = _scale_zp(g, f, out)
    return [helper.make_node("QuantizeLinear", [raw, s, z], [f"{out}_q"], name=f"{out}_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [f"{out}_q", s, z], [out], name=f"{out}_DequantizeLinear")]


def fractions(model: onnx.ModelProto) -> dict[str, int]:
    """Fraction length of every QuantizeLinear/DequantizeLinear scale in ``model`` (checks pow2)."""
    consts = _consts(model)
    out: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            s = float(consts[n.input[1]])
            f = -math.log2(s)
            if f != round(f):
                raise ValueError(f"{n.name}: scale {s} is not a power of two")
            out[n.name] = int(round(f))
    return out


def output_fraction(model: onnx.ModelProto) -> int:
    """e with the logits' LSB = 2^-e: the fraction of a quantized output's
    DequantizeLinear, else - the final Conv/Gemm/MatMul left in int32, whose
    accumulator the integer simulator reads - ``f_in + f_w`` of its two inputs,
    each traced through structural ops (Reshape, Flatten) to its DequantizeLinear."""
    fr = fractions(model)
    by_out = {o: n for n in model.graph.node for o in n.output}

    def dq(t: str) -> str:
        n = by_out.get(t)
        if n is None:
            raise ValueError(f"{t}: not written by a DequantizeLinear")
        return n.name if n.op_type == "DequantizeLinear" else dq(n.input[0])

    last = by_out[model.graph.output[0].name]
    if last.op_type == "DequantizeLinear":
        return fr[last.name]
    return sum(fr[dq(i)] for i in last.input[:2])


__all__ = ["METHODS", "Pow2Report", "calibrate", "fold_constants", "frac_for_tensor", "frac_maxabs", "fractions",
           "output_fraction", "quant_points", "quantize", "quantize_array"]
