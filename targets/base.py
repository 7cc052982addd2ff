"""The target contract: ``Target`` (available / check / compile / load), the
``Artifact`` directory it writes, and the ``Runner`` it loads.

An artifact is a directory holding the model file(s) and ``artifact.json``::

    {"format": "edgevid-artifact", "version": 1, "target": "onnxruntime",
     "variant": "x3d_s-w1.0-r160-f13-fp32-p0.0", "precision": "fp32",
     "input": {"name": "clip", "shape": [1, 3, 13, 160, 160], "dtype": "float32"},
     "output": {"name": "logits", "shape": [1, 400], "dtype": "float32"},
     "model_file": "model.onnx", "files": {"model.onnx": "<sha256>", ...},
     "tools": {"onnxruntime": "1.32.0", ...}, "fidelity": {...} | null,
     "status": "ok" | "failed" | "unbuilt", "notes": {...}}

``load`` verifies every sha256 first and refuses a tampered or truncated artifact.
Runners take and return numpy and import no torch; nothing in this module does.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, Union, runtime_checkable

import numpy as np

from edge.core.enums import ArtifactStatus
from edge.core.errors import BadInput
from edge.core.io import sha256_file
from quant.spec import TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from edge.core.variant import Variant

ARTIFACT_JSON = "artifact.json"
FORMAT = "edgevid-artifact"
VERSION = 1

# What ``Target.compile`` takes: a torch module (exported by targets.export) or the path
# of an ONNX file exported elsewhere (fixed input shape).
ModelSource = Union["nn.Module", str, Path]


@dataclass(frozen=True)
class Artifact:
    """A compiled, deployable model: a directory plus its manifest."""

    path: Path
    target: str
    variant: str
    precision: str
    input: TensorSpec
    output: TensorSpec
    model_file: str
    files: Mapping[str, str]
    tools: Mapping[str, str] = field(default_factory=dict)
    fidelity: Mapping[str, Any] | None = None
    status: ArtifactStatus = ArtifactStatus.OK
    notes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ArtifactStatus(self.status))  # a word from JSON or a caller

    @property
    def model_path(self) -> Path:
        return self.path / self.model_file

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "target": self.target, "variant": self.variant,
                "precision": self.precision, "input": self.input.to_json(), "output": self.output.to_json(),
                "model_file": self.model_file, "files": dict(self.files), "tools": dict(self.tools),
                "fidelity": None if self.fidelity is None else dict(self.fidelity), "status": str(self.status),
                "notes": dict(self.notes)}

    def write(self) -> "Artifact":
        """Write ``artifact.json`` atomically (temporary file + rename)."""
        tmp = self.path / (ARTIFACT_JSON + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True, default=_json_default))
        os.replace(tmp, self.path / ARTIFACT_JSON)
        return self

    def with_(self, **changes: Any) -> "Artifact":
        return replace(self, **changes)

    @classmethod
    def create(cls, path: str | Path, *, target: str, variant: str, precision: str, input: TensorSpec,
               output: TensorSpec, model_file: str, tools: Mapping[str, str] | None = None,
               extra_files: Iterable[str] = (), notes: Mapping[str, Any] | None = None) -> "Artifact":
        """Hash ``model_file`` and ``extra_files`` (relative to ``path``) and write the manifest."""
        path = Path(path)
        names = [model_file, *extra_files]
        files = {n: sha256_file(path / n) for n in names}
        return cls(path, target, variant, precision, input, output, model_file, files, dict(tools or {}),
                   None, "ok", dict(notes or {})).write()

    @classmethod
    def read(cls, path: str | Path, verify: bool = True) -> "Artifact":
        """Read an artifact directory; with ``verify`` check every file's sha256."""
        path = Path(path)
        manifest = path / ARTIFACT_JSON
        if not manifest.is_file():
            raise BadInput(f"{path}: not an artifact (no {ARTIFACT_JSON})")
        try:
            d = json.loads(manifest.read_text())
            if d.get("format") != FORMAT:
                raise BadInput(f"{manifest}: not an edgevid artifact manifest")
            if d.get("version") != VERSION:
                raise BadInput(f"{manifest}: artifact version {d.get('version')!r}, expected {VERSION}")
            art = cls(path, str(d["target"]), str(d["variant"]), str(d["precision"]),
                      TensorSpec.from_json(d["input"]), TensorSpec.from_json(d["output"]), str(d["model_file"]),
                      {str(k): str(v) for k, v in d["files"].items()}, dict(d.get("tools", {})),
                      d.get("fidelity"), ArtifactStatus(d.get("status", "ok")), dict(d.get("notes", {})))
        except BadInput:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"{manifest}: corrupt JSON ({e})") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadInput(f"{manifest}: malformed manifest ({type(e).__name__}: {e})") from None
        if verify:
            art.verify()
        return art

    def verify(self) -> None:
        """Raise ``BadInput`` when a listed file is missing, truncated or changed."""
        if self.model_file not in self.files:
            raise BadInput(f"{self.path / ARTIFACT_JSON}: model file {self.model_file} has no hash")
        for name, digest in self.files.items():
            f = self.path / name
            if not f.is_file():
                raise BadInput(f"{f}: missing from the artifact")
            if sha256_file(f) != digest:
                raise BadInput(f"{f}: sha256 does not match artifact.json (truncated or modified); recompile")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_clip(clip: np.ndarray, spec: TensorSpec, where: str | Path) -> np.ndarray:
    """Validate a clip against the artifact's input spec; returns it contiguous float32.

    NaN/Inf input: refused (``BadInput``) - runtimes would silently propagate them
    into the logits and int8 paths would saturate them.
    """
    if not isinstance(clip, np.ndarray):
        raise BadInput(f"{where}: input must be a numpy array, got {type(clip).__name__}")
    if tuple(clip.shape) != tuple(spec.shape):
        raise BadInput(f"{where}: compiled for input shape {tuple(spec.shape)}, got a clip of shape "
                       f"{tuple(clip.shape)}")
    if not np.isfinite(clip).all():
        raise BadInput(f"{where}: input clip contains NaN or Inf")
    return np.ascontiguousarray(clip, dtype=np.dtype(spec.dtype))


@runtime_checkable
class Runner(Protocol):
    """A loaded artifact: ``runner(clip)`` with clip (1, 3, T, H, W) float32 -> logits (1, classes)."""

    artifact: Artifact

    def __call__(self, clip: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


@runtime_checkable
class Target(Protocol):
    """available / check / compile / load is the whole backend contract."""

    name: str

    def available(self) -> bool: ...

    def unavailable_reason(self) -> str:
        """Empty when available, else why not (e.g. 'tensorrt Python package not installed')."""
        ...

    def check(self, onnx_path: str | Path) -> list[str]:
        """Reasons the target rejects nodes of the model (node name, op type, rule); empty when legal."""
        ...

    def compile(self, model: ModelSource, variant: "Variant", workdir: str | Path,
                calib: Iterable[np.ndarray] | None = None) -> Artifact: ...

    def load(self, artifact: Artifact) -> Runner: ...
