"""``check_artifact(artifact, target)``: the load-side check every runtime target
shares (hashes, target name, status; no torch, no onnx)."""
from __future__ import annotations

from edge.core.errors import BadInput
from targets.base import Artifact


def check_artifact(artifact: Artifact, target: str) -> None:
    """Re-verify every file's sha256 and that ``artifact`` is a usable one of ``target``."""
    artifact.verify()
    if artifact.target != target:
        raise BadInput(f"{artifact.path}: artifact was compiled for target {artifact.target!r}, not {target!r}")
    if artifact.status != "ok":
        raise BadInput(f"{artifact.path}: artifact status is {str(artifact.status)!r}, not 'ok'")
