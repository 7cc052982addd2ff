"""Fidelity of a quantized model against its fp32 reference on held-out clips.

``fidelity(ref, got, labels)``: ref and got are (N, classes) logits of the fp32
model and of the int8 artifact on the same N held-out clips (never used for
calibration).  Figures:

- agreement: fraction of clips whose top-1 class is the same;
- cosine: mean over clips of the cosine similarity of the two logit vectors;
- sqnr_db: 10 log10(sum ref^2 / sum (ref - got)^2) over all logits;
- top1_fp32 / top1_int8: accuracy against the labels of the labelled clips
  (None when no clip has a label).

No torch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class Fidelity:
    clips: int
    agreement: float
    cosine: float
    sqnr_db: float
    top1_fp32: float | None = None
    top1_int8: float | None = None
    labelled: int = 0

    def to_json(self) -> dict[str, Any]:
        """As a dict; an infinite SQNR (bit-identical logits) becomes the string "inf" (strict JSON)."""
        d = asdict(self)
        if math.isinf(d["sqnr_db"]):
            d["sqnr_db"] = "inf"
        return d


def fidelity(ref: np.ndarray, got: np.ndarray, labels: Sequence[int | None] = ()) -> Fidelity:
    """Compare (N, classes) logits ``got`` with the reference ``ref``."""
    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    if ref.shape != got.shape or not len(ref):
        raise ValueError(f"fidelity needs logits of the same non-empty shape, got {ref.shape} and {got.shape}")
    agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    cosine = float(np.mean(np.sum(ref * got, axis=1) / np.maximum(norms, 1e-30)))
    noise = float(np.sum((ref - got) ** 2))
    signal = float(np.sum(ref ** 2))
    sqnr = math.inf if noise == 0 else 10.0 * math.log10(max(signal, 1e-300) / noise)
    labelled = [(i, lab) for i, lab in enumerate(labels) if lab is not None and 0 <= lab < ref.shape[1]]
    top1_fp32 = top1_int8 = None
    if labelled:
        idx = np.array([i for i, _ in labelled])
        lab = np.array([y for _, y in labelled])
        top1_fp32 = float(np.mean(ref[idx].argmax(1) == lab))
        top1_int8 = float(np.mean(got[idx].argmax(1) == lab))
    return Fidelity(len(ref), agreement, cosine, sqnr, top1_fp32, top1_int8, len(labelled))
