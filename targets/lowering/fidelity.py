"""How far a lowered model's outputs are from the original's, on ONNX Runtime."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import onnx

from quant.ort_session import ort_session

DEFAULT_CLIPS = 2


def _session(model: onnx.ModelProto) -> Any:
    """CPU session with ORT's default options (graph optimisation on, spinning on)."""
    return ort_session(model, spin=True)


def lowering_fidelity(source: onnx.ModelProto, lowered: onnx.ModelProto,
                      clips: Iterable[np.ndarray] | None = None) -> dict[str, object] | None:
    """Lowered vs source on the first output: max abs diff, min cosine, top-1 agreement.

    clips: arrays for the (single float) input (default: DEFAULT_CLIPS seeded N(0, 1)
    arrays of its static shape).  None when the model has several inputs, a non-float
    input or a dynamic input shape and no clips are given.
    """
    a, b = _session(source), _session(lowered)
    inputs = a.get_inputs()
    if len(inputs) != 1:
        return None
    spec = inputs[0]
    if clips is None:
        if spec.type != "tensor(float)" or not all(isinstance(d, int) and d > 0 for d in spec.shape):
            return None
        rng = np.random.default_rng(0)
        clips = [rng.standard_normal(spec.shape, dtype=np.float32) for _ in range(DEFAULT_CLIPS)]
        kind = f"{DEFAULT_CLIPS} N(0,1) inputs"
    else:
        clips = list(clips)[:8]
        kind = f"{len(clips)} given inputs"
    diffs, cosines, agree = [], [], []
    for clip in clips:
        x = np.ascontiguousarray(clip, dtype=np.float32)
        ya = a.run(None, {spec.name: x})[0].astype(np.float64).ravel()
        yb = b.run(None, {b.get_inputs()[0].name: x})[0].astype(np.float64).ravel()
        diffs.append(float(np.abs(ya - yb).max()))
        cosines.append(float(ya @ yb / max(np.linalg.norm(ya) * np.linalg.norm(yb), 1e-30)))
        agree.append(int(np.argmax(ya) == np.argmax(yb)))
    return {"max_abs_diff": max(diffs), "min_cosine": min(cosines), "top1_agreement": float(np.mean(agree)),
            "inputs": kind}
