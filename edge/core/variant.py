"""``Variant``: one deployable configuration of a zoo model.

A variant names the model and the four axes edgevid sweeps and switches:
width multiplier, input resolution (square crop), frames per clip, numeric
precision and structured-pruning ratio.  Its ``tag`` is a readable key that
``Variant.from_tag`` inverts exactly::

    x3d_s-w0.75-r160-f13-int8-p0.3

Imports nothing but ``edge.core``: the model's default frames and crop are filled
by the zoo (``edge.models.variant(name, ...)``), which also checks the name; a
``Variant`` itself is built with every axis given.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace

from edge.core.enums import PRECISIONS, Precision
from edge.core.errors import BadInput

_TAG = re.compile(
    r"^(?P<model>[a-z0-9_]+)-w(?P<width>[0-9.e+-]+?)-r(?P<resolution>\d+)-f(?P<frames>\d+)"
    r"-(?P<precision>[a-z0-9]+)-p(?P<prune>[0-9.e+-]+)$"
)


def _num(x: float) -> str:
    """Shortest text that reads back as exactly ``x`` (``repr`` of a float)."""
    return repr(float(x))


@dataclass(frozen=True)
class Variant:
    """A model at a width, resolution, frame count, precision and prune ratio.

    Input shape: (B, 3, frames, resolution, resolution).  ``resolution`` and
    ``frames`` must be given; ``edge.models.variant(name)`` fills them with the
    model's published input (e.g. 13 x 160 for X3D-S).
    """

    model: str
    width: float = 1.0
    resolution: int = field(default=0)
    frames: int = field(default=0)
    precision: str = Precision.FP32
    prune: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not re.fullmatch(r"[a-z0-9_]+", self.model):
            raise BadInput(f"model name must be lower-case letters, digits and '_', got {self.model!r}")
        if self.resolution == 0 or self.frames == 0:
            raise BadInput(f"variant of {self.model!r} needs its resolution and frames "
                           "(edge.models.variant(name) fills in the model's defaults)")
        object.__setattr__(self, "width", float(self.width))
        object.__setattr__(self, "prune", float(self.prune))
        if not (math.isfinite(self.width) and 0.0 < self.width <= 1.0):
            raise BadInput(f"width must be in (0, 1], got {self.width}")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution <= 0:
            raise BadInput(f"resolution must be a positive integer, got {self.resolution!r}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames <= 0:
            raise BadInput(f"frames must be a positive integer, got {self.frames!r}")
        if self.precision not in PRECISIONS:
            raise BadInput(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "precision", Precision(self.precision))
        if not (math.isfinite(self.prune) and 0.0 <= self.prune < 1.0):
            raise BadInput(f"prune ratio must be in [0, 1), got {self.prune}")

    @property
    def tag(self) -> str:
        """Readable, reversible key, e.g. ``x3d_s-w0.75-r160-f13-int8-p0.3``."""
        return (f"{self.model}-w{_num(self.width)}-r{self.resolution}-f{self.frames}"
                f"-{self.precision}-p{_num(self.prune)}")

    @classmethod
    def from_tag(cls, tag: str) -> "Variant":
        """Exact inverse of ``tag``."""
        m = _TAG.match(tag)
        if m is None:
            raise BadInput(
                f"malformed variant tag {tag!r}; expected MODEL-wWIDTH-rRES-fFRAMES-PRECISION-pPRUNE, "
                "e.g. x3d_s-w0.75-r160-f13-int8-p0.3")
        try:
            width, prune = float(m["width"]), float(m["prune"])
        except ValueError:
            raise BadInput(f"malformed number in variant tag {tag!r}") from None
        return cls(m["model"], width, int(m["resolution"]), int(m["frames"]), m["precision"], prune)

    @property
    def input_shape(self) -> tuple[int, int, int, int, int]:
        """(1, 3, T, H, W) for one clip."""
        return (1, 3, self.frames, self.resolution, self.resolution)

    def with_(self, **changes: object) -> "Variant":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["precision"] = str(self.precision)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "Variant":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise BadInput(f"unknown variant field(s): {', '.join(sorted(unknown))}")
        return cls(**d)  # type: ignore[arg-type]


__all__ = ["Variant", "PRECISIONS"]
