"""``TensorSpec``: the name, static shape and dtype of a model input or output
(what an ONNX graph's interface reads as, and what ``artifact.json`` records).

API: ``TensorSpec(name, shape, dtype="float32")``, ``to_json() -> dict``,
``TensorSpec.from_json(d)``.  Imports neither onnx nor torch (runners use it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TensorSpec":
        return cls(str(d["name"]), tuple(int(x) for x in d["shape"]), str(d.get("dtype", "float32")))
