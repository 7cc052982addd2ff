"""Training configuration.

    TrainConfig(model, data, out, mutual, epochs, batch_size, lr, ..., widths, resolutions, frames): frozen,
        stored in every checkpoint; .same_run(stored) -> [differing field]
    TrainResult(out, steps, seconds, history, accuracy)
    parse_list("0.25,0.5", float, "--widths") -> (0.25, 0.5)
    default_table(model, mutual) -> (widths, resolutions, frames)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.core.errors import BadInput
from edge.models.registry import model_info

WIDTH_STEP = 0.05  # random widths are drawn from this grid inside the range


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (stored in every checkpoint).

    ``widths`` x ``resolutions`` x ``frames`` is the configuration table of a
    mutual run; a plain run takes one value of each.
    """

    model: str
    data: str
    out: str
    mutual: bool = False
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    seed: int = 0
    widths: tuple[float, ...] = (1.0,)
    resolutions: tuple[int, ...] = (128,)
    frames: tuple[int, ...] = (8,)
    val: str | None = None
    init: str | None = None
    save_every: int = 50
    calib_clips: int = 256
    limit: int | None = None
    amp: bool | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "save_every", "calib_clips"):
            if getattr(self, name) < 1:
                raise BadInput(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInput(f"--lr must be positive, got {self.lr}")
        if not (self.widths and self.resolutions and self.frames):
            raise BadInput("--widths, --resolutions and --frames need at least one value each")
        if any(not 0 < w <= 1 for w in self.widths):
            raise BadInput(f"--widths must lie in (0, 1], got {','.join(map(str, self.widths))}")
        if any(r < 32 for r in self.resolutions) or any(f < 1 for f in self.frames):
            raise BadInput("--resolutions must be >= 32 and --frames >= 1")
        if not self.mutual and (len(self.widths), len(self.resolutions), len(self.frames)) != (1, 1, 1):
            raise BadInput("several widths/resolutions/frames need --mutual (a plain run trains one configuration)")
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--limit must be at least 1, got {self.limit}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def same_run(self, other: dict[str, Any]) -> list[str]:
        """Fields that differ from a stored configuration (ignoring where to write
        and the device, which do not change the result)."""
        mine = self.to_json()
        return [k for k in mine if k not in ("out", "device", "amp")
                and _norm(mine[k]) != _norm(other.get(k))]


def parse_list(text: str, kind: type, flag: str) -> tuple:
    """``"0.25,0.5"`` -> (0.25, 0.5); ``BadInput`` naming ``flag`` on a bad item."""
    try:
        values = tuple(kind(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise BadInput(f"{flag}: expected comma-separated {kind.__name__} values, got {text!r}") from None
    if not values:
        raise BadInput(f"{flag}: no value in {text!r}")
    return tuple(sorted(set(values)))


def default_table(model: str, mutual: bool) -> tuple[tuple[float, ...], tuple[int, ...], tuple[int, ...]]:
    """Default widths, resolutions, frames: the small MutualNet table used here for
    ``mutual``, else the zoo model's own input at width 1.0."""
    if mutual:
        return (0.25, 0.5, 0.75, 1.0), (96, 112, 128), (4, 8)
    info = model_info(model)
    return (1.0,), (info.resolution,), (info.frames,)


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


@dataclass
class TrainResult:
    out: Path
    steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    accuracy: list[dict[str, Any]] = field(default_factory=list)


__all__ = ["TrainConfig", "TrainResult", "WIDTH_STEP", "default_table", "parse_list"]
