"""Activation rewrites into Add / Clip / Mul (ReLU-family forms).

Exact (always, when the op set lacks the op):

* ``HardSigmoid(x; alpha, beta)`` -> ``Clip(x * alpha + beta, 0, 1)``
* ``HardSwish(x)``                -> ``x * Clip(x * 1/6 + 1/2, 0, 1)``

Approximations (only with ``hard_activations=True``; they change the math):

* ``Sigmoid(x)`` -> hard sigmoid ``Clip(x + 3, 0, 6) * 1/6`` (ReLU6(x + 3) / 6,
  MobileNetV3's h-sigmoid), so Swish ``x * sigmoid(x)`` becomes hard-swish
  ``x * relu6(x + 3) / 6`` and the squeeze-excitation gate a hard sigmoid.
  Largest pointwise difference to the logistic sigmoid: about 0.045 (near
  |x| = 2.4).
"""
from __future__ import annotations

import numpy as np
import onnx

from quant.onnx_io import attrs_of
from targets.lowering.graph import Graph
from targets.opset import OpSet


def _scalar(g: Graph, value: float, like: str, hint: str) -> str:
    return g.add_const(np.asarray(value, dtype=g.np_dtype(like)), hint)


def _clip(g: Graph, x: str, lo: float, hi: float, hint: str, out: list[onnx.NodeProto],
          outputs: list[str] | None = None) -> str:
    node = g.make("Clip", [x, _scalar(g, lo, x, "clip_lo"), _scalar(g, hi, x, "clip_hi")], hint, outputs=outputs)
    out.append(node)
    return node.output[0]


def _binary(g: Graph, op: str, x: str, value: float, hint: str, out: list[onnx.NodeProto],
            outputs: list[str] | None = None) -> str:
    node = g.make(op, [x, _scalar(g, value, x, f"{hint}_c")], hint, outputs=outputs)
    out.append(node)
    return node.output[0]


def hard_sigmoid_nodes(g: Graph, x: str, alpha: float, beta: float, hint: str, out: list[onnx.NodeProto],
                       outputs: list[str] | None = None) -> str:
    """Clip(x * alpha + beta, 0, 1) as Mul, Add, Clip."""
    y = _binary(g, "Mul", x, alpha, f"{hint}_scale", out)
    y = _binary(g, "Add", y, beta, f"{hint}_shift", out)
    return _clip(g, y, 0.0, 1.0, f"{hint}_clip", out, outputs)


def decompose_hard(g: Graph, opset: OpSet) -> int:
    """HardSigmoid/HardSwish -> Mul/Add/Clip (exact) when the op set lacks them."""
    count = 0
    nodes: list[onnx.NodeProto] = []
    for node in g.nodes:
        op = node.op_type
        if op not in ("HardSigmoid", "HardSwish") or opset.allows(op) or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        hint = node.name or op
        if op == "HardSigmoid":
            a = attrs_of(node)
            alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))  # type: ignore[arg-type]
            hard_sigmoid_nodes(g, node.input[0], alpha, beta, hint, nodes, outputs=[node.output[0]])
        else:
            gate = hard_sigmoid_nodes(g, node.input[0], 1.0 / 6.0, 0.5, hint, nodes)
            nodes.append(g.make("Mul", [node.input[0], gate], f"{hint}_mul", outputs=[node.output[0]]))
        count += 1
    g.nodes = nodes
    return count


def harden_sigmoid(g: Graph, opset: OpSet) -> int:
    """Sigmoid -> Clip(x + 3, 0, 6) * 1/6 (approximation; only on request)."""
    count = 0
    nodes: list[onnx.NodeProto] = []
    for node in g.nodes:
        if node.op_type != "Sigmoid" or opset.allows("Sigmoid") or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        hint = node.name or "Sigmoid"
        y = _binary(g, "Add", node.input[0], 3.0, f"{hint}_hs_add", nodes)
        y = _clip(g, y, 0.0, 6.0, f"{hint}_hs_relu6", nodes)
        _binary(g, "Mul", y, 1.0 / 6.0, f"{hint}_hs_scale", nodes, outputs=[node.output[0]])
        count += 1
    g.nodes = nodes
    return count
