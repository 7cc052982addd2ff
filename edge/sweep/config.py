"""The sweep file: its axes and settings, parsed and checked (see :mod:`edge.sweep`).

    load_config(path) -> SweepConfig      BadInput naming the file, axis and value
    SweepConfig.variants() -> [Variant]    the grid's variants, grid order, unique
    SweepConfig.cells() -> [Cell]          variant x target x threads, target-major
"""
from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from benchmarks.harness import BenchConfig
from edge.core.errors import BadInput
from edge.core.variant import PRECISIONS, Variant
from edge.models.registry import MODELS
from targets.registry import TARGETS

AXES: tuple[str, ...] = ("model", "width", "resolution", "frames", "precision", "prune", "target", "threads")
SETTINGS: dict[str, type | tuple[type, ...]] = {
    "runs": int, "warmup": int, "warmup_s": (int, float), "min_time": (int, float), "out": str, "device": str,
    "rotate": bool, "rounds": int, "seed": int, "isolate": bool, "ckpt": dict,
    "calib_clips": int, "held_out": int, "calib_mode": str, "min_agreement": (int, float), "jobs": int,
    "max_drop": (int, float), "min_sqnr": (int, float), "accuracy_data": str,
    "onnx_cache": bool, "hard_activations": bool,
}


@dataclass(frozen=True)
class Cell:
    """One configuration of the grid: a variant on a target at a thread count."""

    variant: Variant
    target: str
    threads: int

    @property
    def key(self) -> str:
        return f"{self.target}/{self.variant.tag}/t{self.threads}"


@dataclass(frozen=True)
class SweepConfig:
    """A parsed sweep file.  ``resolution``/``frames`` None: each model's default;
    ``threads`` None: the harness default (the CPUs this process may use)."""

    path: Path
    model: tuple[str, ...]
    width: tuple[float, ...] = (1.0,)
    resolution: tuple[int, ...] | None = None
    frames: tuple[int, ...] | None = None
    precision: tuple[str, ...] = ("fp32",)
    prune: tuple[float, ...] = (0.0,)
    target: tuple[str, ...] = ("onnxruntime",)
    threads: tuple[int, ...] | None = None
    runs: int = 20
    warmup: int = 3
    warmup_s: float = 0.0
    min_time: float = 0.0
    out: Path = Path("sweep-artifacts")
    device: str | None = None
    rotate: bool = True
    rounds: int = 1
    seed: int = 0
    isolate: bool = True
    ckpt: Mapping[str, Path] = field(default_factory=dict)
    calib_clips: int = 32
    held_out: int = 16
    calib_mode: str = "stride"
    max_drop: float = 0.02
    min_sqnr: float = 20.0
    min_agreement: float | None = None
    accuracy_data: str | None = None
    jobs: int = 1
    onnx_cache: bool = True
    hard_activations: bool = False

    @property
    def gate(self) -> Any:
        """The int8 gate (``edge.gate.Gate``) of this sweep."""
        from edge.gate import Gate

        return Gate(self.max_drop, self.min_sqnr, self.min_agreement)

    def bench_config(self, threads: int | None) -> BenchConfig:
        return BenchConfig(runs=self.runs, warmup=self.warmup, warmup_s=self.warmup_s, min_time_s=self.min_time,
                           threads=threads, seed=self.seed, isolate=self.isolate)

    def variants(self) -> list[Variant]:
        """The model x width x resolution x frames x precision x prune product, grid order, unique."""
        out: list[Variant] = []
        for model in self.model:
            info = MODELS[model]
            for w, r, f, p, q in itertools.product(self.width, self.resolution or (info.resolution,),
                                                   self.frames or (info.frames,), self.precision, self.prune):
                try:
                    v = Variant(model, w, r, f, p, q)
                except BadInput as e:
                    raise BadInput(f"{self.path}: {e}") from None
                if v not in out:
                    out.append(v)
        return out

    def cells(self) -> list[Cell]:
        """Every configuration in grid order: target-major, then variants, then threads."""
        threads = self.threads or (BenchConfig().resolved_threads(),)
        return [Cell(v, t, n) for t in self.target for v in self.variants() for n in threads]


# ----------------------------------------------------------------------------- parsing

def _bad(path: Path, axis: str, value: Any, why: str) -> BadInput:
    return BadInput(f"{path}: axis {axis!r}: value {value!r} {why}")


def _axis(path: Path, doc: Mapping[str, Any], axis: str, check: Callable[[Any], Any]) -> tuple[Any, ...] | None:
    if axis not in doc:
        return None
    raw = doc[axis]
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise BadInput(f"{path}: axis {axis!r} is an empty list")
    out: list[Any] = []
    for v in values:
        c = check(v)
        if c not in out:
            out.append(c)
    return tuple(out)


def _positive_int(path: Path, axis: str) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise _bad(path, axis, v, "is not a positive integer")
        return v
    return check


def _number_in(path: Path, axis: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
            span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise _bad(path, axis, v, f"is not a number in {span}")
        return float(v)
    return check


def _one_of(path: Path, axis: str, valid: Sequence[str]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in valid:
            raise _bad(path, axis, v, f"is not valid; valid values: {', '.join(valid)}")
        return v
    return check


def load_config(path: str | Path) -> SweepConfig:
    """Parse and validate a sweep file (see the module docstring)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read the sweep file ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: not valid TOML ({e})") from None
    unknown = [k for k in doc if k not in AXES and k not in SETTINGS]
    if unknown:
        raise BadInput(f"{path}: unknown axis or setting {unknown[0]!r}; axes: {', '.join(AXES)}; settings: "
                       f"{', '.join(SETTINGS)}")
    if "model" not in doc:
        raise BadInput(f"{path}: axis 'model' is required (e.g. model = [\"x3d_xs\"])")
    for key, kind in SETTINGS.items():
        if key in doc and (not isinstance(doc[key], kind) or (kind is int and isinstance(doc[key], bool))):
            raise BadInput(f"{path}: setting {key!r}: value {doc[key]!r} is not a {getattr(kind, '__name__', 'number')}")
    axes: dict[str, Any] = {
        "model": _axis(path, doc, "model", _one_of(path, "model", list(MODELS))),
        "width": _axis(path, doc, "width", _number_in(path, "width", 0.0, 1.0, True, False)),
        "resolution": _axis(path, doc, "resolution", _positive_int(path, "resolution")),
        "frames": _axis(path, doc, "frames", _positive_int(path, "frames")),
        "precision": _axis(path, doc, "precision", _one_of(path, "precision", PRECISIONS)),
        "prune": _axis(path, doc, "prune", _number_in(path, "prune", 0.0, 1.0, False, True)),
        "target": _axis(path, doc, "target", _one_of(path, "target", list(TARGETS))),
        "threads": _axis(path, doc, "threads", _positive_int(path, "threads")),
    }
    ckpt = {}
    for model, p in doc.get("ckpt", {}).items():
        if model not in MODELS:
            raise _bad(path, "ckpt", model, f"is not a model; valid models: {', '.join(MODELS)}")
        if not isinstance(p, str):
            raise _bad(path, "ckpt", p, "is not a path")
        ckpt[model] = path.parent / p
    settings = {k: doc[k] for k in SETTINGS if k in doc and k != "ckpt"}
    if "accuracy_data" in settings and not str(settings["accuracy_data"]).startswith("synth:"):
        settings["accuracy_data"] = str(path.parent / settings["accuracy_data"])  # relative to this file
        if not Path(settings["accuracy_data"]).exists():
            raise BadInput(f"{path}: setting 'accuracy_data': {settings['accuracy_data']} does not exist")
    if "out" in settings:
        settings["out"] = path.parent / settings["out"]
    else:
        settings["out"] = path.parent / "sweep-artifacts"
    for key in ("warmup_s", "min_time", "min_agreement", "max_drop", "min_sqnr"):
        if key in settings:
            settings[key] = float(settings[key])
    config = SweepConfig(path=path, **{k: v for k, v in axes.items() if v is not None}, **settings,
                         ckpt=ckpt)  # type: ignore[arg-type]
    for key in ("rounds", "jobs", "calib_clips", "held_out"):
        if getattr(config, key) < 1:
            raise BadInput(f"{path}: setting {key!r}: value {getattr(config, key)!r} is not a positive integer")
    for key in ("min_agreement", "max_drop"):
        value = getattr(config, key)
        if value is not None and not 0.0 <= value <= 1.0:
            raise BadInput(f"{path}: setting {key!r}: value {value!r} is not in [0, 1]")
    if config.calib_mode not in ("stride", "uniform"):
        raise BadInput(f"{path}: setting 'calib_mode': value {config.calib_mode!r} is not 'stride' or 'uniform'")
    try:
        config.bench_config(None)
    except BadInput as e:
        raise BadInput(f"{path}: {e}") from None
    config.variants()  # every combination is a valid variant
    return config
