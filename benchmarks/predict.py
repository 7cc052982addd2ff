"""Latency predictor: latency of configurations not measured on a device, from those
that were, on the same device, target, precision and thread count.

Features (``benchmarks.features``, from the variant's fp32 ONNX graph after shape
inference): per op class multiply-adds (Conv3d dense/depthwise, Conv2d
dense/depthwise, pointwise, MatMul), per op class bytes moved (those and
pooling, elementwise, data movement), the Conv weight traffic plane by plane
(weight bytes x output frames), and the number of nodes; frames, resolution and
width enter through them, precision through the grouping (one fit per
precision).  Model, per statistic (min, p50, p90, p99, mean) and for the peak
memory::

    latency = c0 + sum_k a_k * GMACs_k + sum_k b_k * MB_k + e * MB_weight_planes + d * nodes,
    every coefficient >= 0

fitted by non-negative least squares on the *relative* error (each row divided
by its measured value, so a 5 ms and a 500 ms configuration weigh alike, which
is what "within +-10%" asks).  Columns that are zero on the whole training set
are dropped and the rest scaled to [0, 1] first.  NNLS: ``scipy.optimize.nnls``
when scipy is installed, else an active-set loop of ``numpy.linalg.lstsq`` that
drops negative coefficients.

Where the features come from, per variant (cached in the store's ``features``
table): the ``model.onnx`` of a stored fp32 artifact of the variant whose hash
still verifies, else the caller's ``export`` of the untrained model (``edge.untrained``, torch)
into a temporary folder.  The graph (not the weights) decides the features, so
an untrained export is exact.

Training data: every configuration measured on the device, its measurements
pooled (``benchmarks.configs.configurations``: all raw samples of its newest
artifact, e.g. the rounds of a sweep).

Held-out accuracy: ``cross_validate`` (k-fold) reports the share of held-out
predictions within +-10% of the measurement; ``benchmarks/studies/predictor_accuracy.py``
prints it for a sweep measured here.  Predictions are stored with
``predicted = 1`` (``Store.add_prediction``) and every output marks them.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from benchmarks.features import OP_CLASSES, VERSION, GraphFeatures, onnx_file_features
from benchmarks.configs import Config, configurations
from benchmarks.store import DeviceRow, Store
from edge.core.errors import BadInput
from edge.core.variant import Variant
from edge.core.io import sha256_file

log = logging.getLogger(__name__)

STATS: tuple[str, ...] = ("min", "p50", "p90", "p99", "mean")
MEMORY = "peak_mb"
MIN_TRAIN = 4  # fewer measured configurations in a group: no prediction for it
WITHIN = 0.10  # the accuracy figure: share of predictions within +-10% of the measurement
_MAC_CLASSES = ("conv3d_dense", "conv3d_depthwise", "conv2d_dense", "conv2d_depthwise", "pointwise", "matmul")
COLUMNS: tuple[str, ...] = ("intercept", *(f"gmacs.{c}" for c in _MAC_CLASSES),
                            *(f"mb.{c}" for c in OP_CLASSES), "mb.conv_weight_planes", "nodes")


def design_row(f: GraphFeatures) -> np.ndarray:
    """The predictor's inputs for one graph, in ``COLUMNS`` order, shape (len(COLUMNS),)."""
    return np.array([1.0, *(f.macs.get(c, 0.0) / 1e9 for c in _MAC_CLASSES),
                     *(f.bytes.get(c, 0.0) / 1e6 for c in OP_CLASSES), sum(f.weight_planes.values()) / 1e6,
                     float(f.total_nodes)])


# ----------------------------------------------------------------------------- NNLS

def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin ||a x - b|| subject to x >= 0; a (m, n), b (m,) -> x (n,)."""
    try:
        from scipy.optimize import nnls as scipy_nnls
    except ImportError:
        return _nnls_numpy(a, b)
    return scipy_nnls(a, b, maxiter=50 * a.shape[1])[0]


def _nnls_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares on a shrinking set of columns: drop the most negative coefficient and
    solve again until none is negative (a simple active-set method)."""
    active = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while active:
        sol = np.linalg.lstsq(a[:, active], b, rcond=None)[0]
        if (sol >= 0).all():
            x[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return x


# ----------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class LatencyModel:
    """Fitted coefficients per statistic (and ``peak_mb``) over the kept ``columns``;
    ``scale``: each kept column's divisor."""

    columns: tuple[str, ...]
    keep: tuple[int, ...]
    scale: tuple[float, ...]
    coef: Mapping[str, tuple[float, ...]]
    n_train: int
    train_within: float = float("nan")

    def predict(self, f: GraphFeatures) -> dict[str, float]:
        """stat (and ``peak_mb``) -> predicted value (ms / MiB)."""
        x = design_row(f)[list(self.keep)] / np.asarray(self.scale)
        return {k: float(x @ np.asarray(c)) for k, c in self.coef.items()}

    def describe(self) -> dict[str, Any]:
        return {"predictor": "nnls on relative error over per-op-class GMACs, MB moved and nodes",
                "features_version": VERSION, "n_train": self.n_train,
                "train_within_10pct": None if self.train_within != self.train_within else round(self.train_within, 4),
                "columns": [self.columns[i] for i in self.keep]}


def fit(features: Sequence[GraphFeatures], targets: Sequence[Mapping[str, float | None]]) -> LatencyModel:
    """Fit a ``LatencyModel`` on graphs and their measured figures (stat -> ms, ``peak_mb``
    -> MiB; a figure missing or None on any row is not fitted)."""
    if len(features) != len(targets) or len(features) < 1:
        raise ValueError("need as many figure rows as graphs, at least one")
    x = np.stack([design_row(f) for f in features])
    keep = tuple(int(i) for i in np.flatnonzero(np.abs(x).max(axis=0) > 0))
    scale = tuple(float(s) for s in np.abs(x[:, keep]).max(axis=0))
    xs = x[:, keep] / np.asarray(scale)
    coef: dict[str, tuple[float, ...]] = {}
    for key in (*STATS, MEMORY):
        ys = [t.get(key) for t in targets]
        if any(y is None or not np.isfinite(y) or y <= 0 for y in ys):
            continue
        y = np.asarray(ys, dtype=np.float64)
        coef[key] = tuple(float(c) for c in nnls(xs / y[:, None], np.ones_like(y)))
    model = LatencyModel(COLUMNS, keep, scale, coef, len(features))
    if "p50" in coef:
        pred = np.array([model.predict(f)["p50"] for f in features])
        meas = np.array([t["p50"] for t in targets], dtype=np.float64)
        model = LatencyModel(COLUMNS, keep, scale, coef, len(features), within(pred, meas))
    return model


def within(predicted: np.ndarray, measured: np.ndarray, tol: float = WITHIN) -> float:
    """Share of predictions within +-tol of the measured value."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    return float(np.mean(np.abs(predicted - measured) <= tol * measured)) if measured.size else float("nan")


@dataclass(frozen=True)
class CrossValidation:
    """k-fold held-out predictions of one statistic: every sample predicted once by a model
    that did not see it."""

    variants: tuple[str, ...]
    measured: tuple[float, ...]
    predicted: tuple[float, ...]
    folds: int

    @property
    def within(self) -> float:
        return within(np.array(self.predicted), np.array(self.measured))

    @property
    def rel_errors(self) -> np.ndarray:
        m = np.array(self.measured)
        return (np.array(self.predicted) - m) / m


def cross_validate(features: Sequence[GraphFeatures], figures: Sequence[Mapping[str, float | None]],
                   variants: Sequence[str], folds: int = 5, stat: str = "p50", seed: int = 0) -> CrossValidation:
    """k-fold cross-validation (shuffled with ``seed``) of ``stat``."""
    n = len(features)
    if n < 2 or folds < 2:
        raise BadInput(f"cross-validation needs at least 2 samples and 2 folds, got {n} and {folds}")
    folds = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    pred = np.zeros(n)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        model = fit([features[i] for i in train], [figures[i] for i in train])
        for i in test:
            pred[i] = model.predict(features[i])[stat]
    return CrossValidation(tuple(variants), tuple(float(f[stat]) for f in figures),  # type: ignore[arg-type]
                           tuple(float(p) for p in pred), folds)


# ----------------------------------------------------------------------------- features of variants

def fp32_tag(tag: str) -> str:
    """The tag of the fp32 graph whose features stand for ``tag`` (any precision)."""
    return Variant.from_tag(tag).with_(precision="fp32").tag


def _stored_onnx(store: Store, tag: str) -> Path | None:
    for art in store.artifacts(variant=tag):
        if art.precision != "fp32" or not art.path:
            continue
        for name, digest in art.files.items():
            f = Path(art.path) / name
            if name.endswith(".onnx") and f.is_file() and sha256_file(f) == digest:
                return f
    return None


Exporter = Callable[[str, Path], Path]
"""(variant tag, folder) -> the ONNX file of that variant's fp32 graph written into the folder
(the edge layer's ``edge.untrained.untrained_onnx``)."""


def _export_features(tag: str, export: Exporter | None) -> GraphFeatures:
    if export is None:
        raise BadInput(f"no stored fp32 ONNX artifact of {tag} to read its graph features from, and no exporter "
                       f"given (edge.untrained.untrained_onnx)")
    with tempfile.TemporaryDirectory(prefix="edgevid-features-") as tmp:
        return onnx_file_features(export(tag, Path(tmp)))


def variant_features(store: Store, tag: str, export: Exporter | None = None) -> GraphFeatures:
    """Graph features of a variant tag (its fp32 graph), from the store's cache, a stored
    fp32 ONNX artifact, or ``export`` (see the module docstring); cached in the store."""
    key = fp32_tag(tag)
    cached = store.features(VERSION).get(key)
    if cached is not None:
        return GraphFeatures.from_json(cached)
    onnx_path = _stored_onnx(store, key)
    if onnx_path is not None:
        f, source = onnx_file_features(onnx_path), str(onnx_path)
    else:
        log.info("exporting %s to read its graph features", key)
        f, source = _export_features(key, export), "export"
    store.put_features(key, VERSION, f.to_json(), source)
    return f


# ----------------------------------------------------------------------------- predicting for a store

@dataclass(frozen=True)
class Group:
    """What one fit covers: a device, target, precision and thread count."""

    device: DeviceRow
    target: str
    precision: str
    threads: int


@dataclass(frozen=True)
class Prediction:
    group: Group
    variant: str
    figures: Mapping[str, float]
    how: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.group.device.name, "target": self.group.target, "precision": self.group.precision,
                "threads": self.group.threads, "variant": self.variant, "predicted": True,
                **{f"{k}_ms" if k in STATS else k: round(v, 4) for k, v in self.figures.items()},
                "how": dict(self.how)}


def training_set(configs: Iterable[Config]) -> dict[tuple[str, str, int], list[Config]]:
    """Measured (not predicted) configurations by (target, precision, threads); those whose
    variant tag does not parse (no graph to read) are left out."""
    out: dict[tuple[str, str, int], list[Config]] = {}
    for c in configs:
        if c.predicted:
            continue
        try:
            Variant.from_tag(c.variant)
        except BadInput:
            continue
        out.setdefault((c.target, c.precision, c.threads), []).append(c)
    return out


def figures_of(c: Config) -> dict[str, float | None]:
    """What the predictor fits of a configuration: its latency statistics (ms) and peak memory."""
    return {"min": c.stats.min, "p50": c.stats.p50, "p90": c.stats.p90, "p99": c.stats.p99, "mean": c.stats.mean,
            MEMORY: c.peak_mb}


def known_variants(store: Store) -> list[str]:
    """Every variant tag the store knows: measured on any device, or with an accuracy figure."""
    tags = [m.variant for m in store.measurements(include_predicted=False)]
    tags += [v for (v, _, _) in store.accuracy()]
    out = []
    for t in dict.fromkeys(tags):
        try:
            Variant.from_tag(t)
        except BadInput:
            continue
        out.append(t)
    return out


def predict_missing(store: Store, device: DeviceRow, variants: Sequence[str] | None = None,
                    write: bool = True, export: Exporter | None = None) -> list[Prediction]:
    """Predict, for every (target, precision, threads) group measured on ``device`` with at
    least ``MIN_TRAIN`` configurations, the variants of that precision (``variants``, default
    ``known_variants``) not measured in it; stored as predictions when ``write``.  ``export``:
    see :func:`variant_features`."""
    candidates = list(variants) if variants is not None else known_variants(store)
    out: list[Prediction] = []
    for (target, precision, threads), train in sorted(training_set(configurations(store, device)).items()):
        measured = {m.variant for m in train}
        wanted = [v for v in candidates if v not in measured and Variant.from_tag(v).precision == precision]
        if not wanted:
            continue
        if len(train) < MIN_TRAIN:
            log.warning("%s %s %s threads %d: %d measured configuration(s), fewer than %d: not predicting %d",
                        device.name, target, precision, threads, len(train), MIN_TRAIN, len(wanted))
            continue
        model = fit([variant_features(store, m.variant, export) for m in train], [figures_of(m) for m in train])
        group = Group(device, target, precision, threads)
        how = {**model.describe(), "trained_on": sorted(measured)}
        for v in wanted:
            figs = model.predict(variant_features(store, v, export))
            pred = Prediction(group, v, figs, how)
            if write:
                store.add_prediction(device, target, v, threads, {k: figs[k] for k in STATS if k in figs},
                                     figs.get(MEMORY), how)
            out.append(pred)
    return out
