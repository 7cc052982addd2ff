"""Small helpers the runtime targets share on the load side (no torch, no onnx)."""
from __future__ import annotations

import re

from edge.core.errors import BadInput
from targets.base import Artifact


def check_artifact(artifact: Artifact, target: str) -> None:
    """Re-verify every file's sha256 and that ``artifact`` is a usable one of ``target``."""
    artifact.verify()
    if artifact.target != target:
        raise BadInput(f"{artifact.path}: artifact was compiled for target {artifact.target!r}, not {target!r}")
    if artifact.status != "ok":
        raise BadInput(f"{artifact.path}: artifact status is {artifact.status!r}, not 'ok'")


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception message, without ONNX Runtime's
    '[ONNXRuntimeError] : 1 : FAIL :' prefix."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
