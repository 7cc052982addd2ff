"""What the user asks of an int8 quantizer beyond the calibration clips.

``QuantSettings`` rides to the onnxruntime / openvino targets in
``TargetOptions.quant``; each target uses what applies to it:

- ``exclude``: layers kept in float.  Tokens: an ONNX node name
  (``/blocks.1/res_blocks.0/branch2/conv_b/Conv``), an ONNX op type (``Conv``,
  ``Mul``: every node of that type) or ``depthwise`` (every grouped Conv).
  Resolved against the exported ONNX graph (:func:`resolve_exclude`); ORT gets
  the node names as ``nodes_to_exclude``, NNCF the OpenVINO ops those nodes
  became (``quant.openvino.ov_names``) as ``ignored_scope``.
- ``preset``: NNCF preset, "performance" (symmetric) or "mixed" (asymmetric
  activations).  OpenVINO only.
- ``subset_size``: number of calibration clips NNCF uses (default all).
  OpenVINO only.
- ``max_drop``: accuracy-aware int8 (``--mixed`` on OpenVINO): the largest top-1
  drop (a fraction) ``nncf.quantize_with_accuracy_control`` may leave, measured on
  the CalibSet's labelled clips (``CalibSet.labelled``).  OpenVINO only.
- ``calib_cache``: ORT calibration-range cache file (JSON): written by the first
  quantization, reused by later ones over the same ONNX model, recipe and clips
  (the mixed-precision search calibrates once).  onnxruntime only.
- ``speed_rules``: keep float the convs ONNX Runtime's CPU EP runs slower in int8
  than in fp32 (``quant.ort.slow_int8_convs``; default on).  onnxruntime only.

No torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from edge.core.errors import BadInput

PRESETS: tuple[str, ...] = ("performance", "mixed")
DEPTHWISE = "depthwise"


@dataclass(frozen=True)
class QuantSettings:
    exclude: tuple[str, ...] = ()
    preset: str = "performance"
    subset_size: int | None = None
    calib_cache: str | None = None
    max_drop: float | None = None
    speed_rules: bool = True

    def __post_init__(self) -> None:
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 1.0:
            raise BadInput(f"--max-drop {self.max_drop!r}: must be a fraction in [0, 1]")
        if self.preset not in PRESETS:
            raise BadInput(f"--nncf-preset {self.preset!r} unknown; valid presets: {', '.join(PRESETS)}")
        if self.subset_size is not None and (isinstance(self.subset_size, bool) or self.subset_size < 1):
            raise BadInput(f"--subset-size must be a positive integer, got {self.subset_size!r}")
        if any(not isinstance(t, str) or not t.strip() for t in self.exclude):
            raise BadInput(f"--ignore: empty or non-text entry in {list(self.exclude)!r}")


def parse_ignore(text: str | None) -> tuple[str, ...]:
    """``"Conv,/a/b/Conv, depthwise"`` -> ("Conv", "/a/b/Conv", "depthwise")."""
    if not text:
        return ()
    tokens = tuple(t.strip() for t in text.split(","))
    if any(not t for t in tokens):
        raise BadInput(f"--ignore {text!r}: empty entry (comma-separated node names or op types)")
    return tokens


def is_depthwise(node: Any) -> bool:
    """A Conv node with group > 1 (depthwise or grouped)."""
    from onnx import helper

    if node.op_type != "Conv":
        return False
    return any(a.name == "group" and helper.get_attribute_value(a) > 1 for a in node.attribute)


def resolve_exclude(model: Any, tokens: Sequence[str]) -> list[str]:
    """ONNX node names of ``model`` (an ``onnx.ModelProto``) named by ``tokens`` (node
    names, op types or ``depthwise``), in graph order; an unknown token is ``BadInput``."""
    nodes = list(model.graph.node)
    names = {n.name for n in nodes}
    types = {n.op_type for n in nodes}
    picked: set[str] = set()
    for tok in tokens:
        if tok in names:
            picked.add(tok)
        elif tok == DEPTHWISE:
            picked.update(n.name for n in nodes if is_depthwise(n))
        elif tok in types:
            picked.update(n.name for n in nodes if n.op_type == tok)
        else:
            raise BadInput(f"--ignore {tok!r}: neither a node name nor an op type of the model (op types: "
                           f"{', '.join(sorted(types))}; or '{DEPTHWISE}')")
    return [n.name for n in nodes if n.name in picked]
