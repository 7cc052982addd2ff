"""The latency predictor: graph features from ONNX (exact per-op-class counts), NNLS
fitting on relative error, k-fold cross-validation, features from stored artifacts
or an export, predictions stored marked and replaced, the store migration."""
import sqlite3

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench_helpers import TINY_VARIANT, device, record, tiny_artifact, tiny_onnx
from benchmarks import predict
from benchmarks.store.schema import migrate
from benchmarks.device import fingerprint
from benchmarks.features import OP_CLASSES, VERSION, GraphFeatures, graph_features, onnx_file_features
from benchmarks.harness import BenchConfig, measure
from benchmarks.store import SCHEMA_VERSION, Store
from edge.core.errors import BadInput
from edge.core.variant import Variant


def all_classes_model():
    """(1,3,2,8,8): Conv3d dense -> Conv3d depthwise -> 1x1x1 -> Relu -> Reshape (1,12,8,8) ->
    Conv2d dense -> Conv2d depthwise -> Transpose -> GlobalAveragePool -> Flatten -> MatMul (1,5)."""
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [w("w3", 4, 3, 3, 3, 3), w("dw3", 4, 1, 3, 3, 3), w("pw", 6, 4, 1, 1, 1), w("w2", 4, 12, 3, 3),
             w("dw2", 4, 1, 3, 3), w("fc", 4, 5), numpy_helper.from_array(np.array([1, 12, 8, 8], np.int64), "shp")]
    nodes = [helper.make_node("Conv", ["clip", "w3"], ["a"], pads=[1] * 6),
             helper.make_node("Conv", ["a", "dw3"], ["b"], pads=[1] * 6, group=4),
             helper.make_node("Conv", ["b", "pw"], ["c"]),
             helper.make_node("Relu", ["c"], ["d"]),
             helper.make_node("Reshape", ["d", "shp"], ["e"]),
             helper.make_node("Conv", ["e", "w2"], ["f"], pads=[1] * 4),
             helper.make_node("Conv", ["f", "dw2"], ["g"], pads=[1] * 4, group=4),
             helper.make_node("Transpose", ["g"], ["h"], perm=[0, 1, 3, 2]),
             helper.make_node("GlobalAveragePool", ["h"], ["i"]),
             helper.make_node("Flatten", ["i"], ["j"]),
             helper.make_node("MatMul", ["j", "fc"], ["logits"])]
    graph = helper.make_graph(nodes, "all", [helper.make_tensor_value_info("clip", TensorProto.FLOAT, (1, 3, 2, 8, 8))],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, (1, 5))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


# ----------------------------------------------------------------------------- features

def test_features_count_every_op_class_exactly():
    f = graph_features(all_classes_model())
    assert f.input_shape == (1, 3, 2, 8, 8) and f.frames == 2 and f.resolution == 8
    assert f.macs == {"conv3d_dense": 512 * 3 * 27, "conv3d_depthwise": 512 * 27, "pointwise": 768 * 4,
                      "conv2d_dense": 256 * 12 * 9, "conv2d_depthwise": 256 * 9, "matmul": 5 * 4,
                      "pooling": 256, "elementwise": 768, "data": 0}
    # bytes: inputs (weights included) + outputs, float32
    assert f.bytes["conv3d_dense"] == 4 * (3 * 128 + 4 * 81 + 512)
    assert f.bytes["pointwise"] == 4 * (512 + 24 + 768)
    assert f.bytes["data"] == 4 * (256 + 256)
    assert f.bytes["matmul"] == 4 * (4 + 20 + 5)
    # Conv weight traffic plane by plane: weight bytes x (batch x output frames) for Conv3d, x batch for Conv2d
    assert f.weight_planes["conv3d_dense"] == 4 * 4 * 3 * 27 * 2 and f.weight_planes["conv3d_depthwise"] == 4 * 4 * 27 * 2
    assert f.weight_planes["pointwise"] == 4 * 6 * 4 * 2 and f.weight_planes["conv2d_dense"] == 4 * 4 * 12 * 9
    assert f.weight_planes["conv2d_depthwise"] == 4 * 4 * 9 and f.weight_planes["matmul"] == 0
    # Reshape and Flatten move nothing: not counted
    assert f.nodes == {c: 1 for c in OP_CLASSES}
    assert f.total_nodes == 9 and f.total_macs == sum(f.macs.values())
    assert GraphFeatures.from_json(f.to_json()) == f


def test_features_of_the_tiny_artifact_and_bad_files(tmp_path):
    f = onnx_file_features(tiny_onnx(tmp_path / "m.onnx"))
    assert f.macs["conv3d_dense"] == 4 * 2 * 8 * 8 * 3 * 27 and f.macs["matmul"] == 20
    assert f.nodes["elementwise"] == 1 and f.nodes["pooling"] == 1
    (tmp_path / "bad.onnx").write_bytes(b"not onnx at all")
    with pytest.raises(BadInput, match="bad.onnx"):
        onnx_file_features(tmp_path / "bad.onnx")


def test_dynamic_input_is_refused():
    m = all_classes_model()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    with pytest.raises(BadInput, match="static"):
        graph_features(m)


# ----------------------------------------------------------------------------- fitting

def synthetic(n: int, seed: int = 0):
    """Random graphs and latencies that a non-negative linear model explains exactly."""
    rng = np.random.default_rng(seed)
    feats, figs = [], []
    for _ in range(n):
        macs = {"conv3d_depthwise": rng.uniform(1e7, 1e8), "pointwise": rng.uniform(1e8, 1e9), "matmul": 1e6}
        nbytes = {"elementwise": rng.uniform(1e6, 1e8), "pointwise": rng.uniform(1e6, 1e8)}
        f = GraphFeatures((1, 3, 4, 64, 64), macs, nbytes, {"pointwise": 40, "elementwise": 60})
        x = predict.design_row(f)
        true = np.zeros(len(predict.COLUMNS))
        true[predict.COLUMNS.index("intercept")] = 1.5
        true[predict.COLUMNS.index("gmacs.pointwise")] = 20.0
        true[predict.COLUMNS.index("mb.elementwise")] = 0.05
        p50 = float(x @ true)
        feats.append(f)
        figs.append({"min": 0.9 * p50, "p50": p50, "p90": 1.1 * p50, "p99": 1.2 * p50, "mean": p50,
                     "peak_mb": 100 + p50})
    return feats, figs


def test_fit_recovers_an_exact_non_negative_model():
    feats, figs = synthetic(12)
    model = predict.fit(feats, figs)
    assert set(model.coef) == {"min", "p50", "p90", "p99", "mean", "peak_mb"}
    assert all(c >= 0 for cs in model.coef.values() for c in cs)
    new, truth = synthetic(5, seed=1)
    for f, t in zip(new, truth):
        got = model.predict(f)
        for k in ("p50", "p90", "peak_mb"):
            assert got[k] == pytest.approx(t[k], rel=1e-6)
    assert model.train_within == 1.0
    assert "intercept" in model.describe()["columns"] and "gmacs.conv2d_dense" not in model.describe()["columns"]


def test_missing_figures_are_not_fitted():
    feats, figs = synthetic(6)
    figs[2] = {**figs[2], "peak_mb": None}
    assert "peak_mb" not in predict.fit(feats, figs).coef


def test_numpy_nnls_matches_scipy():
    pytest.importorskip("scipy")
    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = rng.uniform(0, 1, (20, 6)), rng.uniform(0, 1, 20)
        x_np, x_sp = predict._nnls_numpy(a, b), predict.nnls(a, b)
        assert (x_np >= 0).all()
        # the numpy loop is a heuristic active set: its residual is close to the optimum
        assert np.linalg.norm(a @ x_np - b) <= np.linalg.norm(a @ x_sp - b) * 1.05 + 1e-9


def test_cross_validation_holds_every_sample_out_once():
    feats, figs = synthetic(15)
    cv = predict.cross_validate(feats, figs, [f"v{i}" for i in range(15)], folds=5)
    assert cv.within == 1.0 and len(cv.predicted) == 15 and np.abs(cv.rel_errors).max() < 1e-6
    # a sample far off the model is held out and missed, not fitted away
    figs[0] = {**figs[0], "p50": figs[0]["p50"] * 3}
    cv = predict.cross_validate(feats, figs, [f"v{i}" for i in range(15)], folds=5)
    assert abs(cv.rel_errors[0]) > 0.5
    with pytest.raises(BadInput):
        predict.cross_validate(feats[:1], figs[:1], ["v0"], folds=5)


def test_within_counts_the_ten_percent_band():
    assert predict.within(np.array([109.0, 111.0, 91.0, 89.0]), np.array([100.0] * 4)) == 0.5


# ----------------------------------------------------------------------------- with a store

def tags(n):
    return [Variant("x3d_xs", 1.0, 32 + 8 * i, 2).tag for i in range(n)]


def seeded_store(path, n_measured=6):
    """Features stored for n_measured + 1 variants; the first n_measured measured with a p50
    that a linear model of the features explains; the last known only by its accuracy."""
    feats, figs = synthetic(n_measured + 1)
    vs = tags(n_measured + 1)
    s = Store(path)
    for v, f, fig in zip(vs, feats, figs):
        s.put_features(v, VERSION, f.to_json(), "test")
    for i, (v, fig) in enumerate(zip(vs[:-1], figs)):
        s.add_measurement(record([fig["p50"]] * 3, variant=v, files={"model.onnx": f"{i:064x}"}))
    s.add_accuracy(vs[-1], "top1", 0.7)
    return s, vs, figs


def test_predict_missing_stores_marked_predictions_and_replaces_them(tmp_path):
    s, vs, figs = seeded_store(tmp_path / "r.sqlite")
    with s:
        dev = s.find_device("testbox")
        [p] = predict.predict_missing(s, dev)
        assert p.variant == vs[-1] and p.figures["p50"] == pytest.approx(figs[-1]["p50"], rel=1e-6)
        assert p.to_json()["predicted"] is True
        rows = s.measurements(device=dev, variant=vs[-1])
        assert len(rows) == 1 and rows[0].predicted and rows[0].artifact_sha256 is None
        assert rows[0].stats.p50 == pytest.approx(figs[-1]["p50"], rel=1e-6) and rows[0].stats.n == 0
        assert rows[0].accuracy == {"top1": 0.7}
        assert rows[0].source == "predict"
        # a prediction is no measurement: resumable sweeps still measure it
        assert not s.has_measurement(device(), "onnxruntime", 2, variant=vs[-1])
        assert len(s.measurements(include_predicted=False)) == 6
        # predicting again replaces, never duplicates
        predict.predict_missing(s, dev)
        assert len(s.measurements(device=dev, variant=vs[-1])) == 1
        # nothing to predict for a variant of another precision
        assert predict.predict_missing(s, dev, [Variant("x3d_xs", 1.0, 32, 2, "fp16").tag]) == []


def test_too_few_measurements_predict_nothing(tmp_path):
    s, vs, _ = seeded_store(tmp_path / "r.sqlite", n_measured=predict.MIN_TRAIN - 1)
    with s:
        assert predict.predict_missing(s, s.find_device("testbox")) == []
        assert all(not m.predicted for m in s.measurements())


def test_features_come_from_a_stored_fp32_onnx_artifact(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    with Store(tmp_path / "r.sqlite") as s:
        s.add_measurement(measure(art, BenchConfig(runs=2, warmup=0, threads=1), fingerprint("box")))
        f = predict.variant_features(s, TINY_VARIANT)
        assert f == onnx_file_features(art.model_path)
        assert s.features(VERSION)[TINY_VARIANT] == f.to_json()
        # an int8 tag reads the features of its fp32 graph (from the cache now)
        (art.path / "model.onnx").unlink()
        assert predict.variant_features(s, TINY_VARIANT.replace("fp32", "int8")) == f


@pytest.mark.slow
def test_features_of_an_unmeasured_variant_come_from_an_export(tmp_path):
    from edge.flops import complexity
    from edge.models import create_model

    from edge.untrained import untrained_onnx

    v = Variant("x3d_xs", 0.25, 32, 2)
    with Store(tmp_path / "r.sqlite") as s:
        f = predict.variant_features(s, v.tag, export=untrained_onnx)
    conv_macs = sum(f.macs[c] for c in ("conv3d_dense", "conv3d_depthwise", "pointwise", "matmul"))
    macs = complexity(create_model(v).eval(), v.input_shape).macs
    assert conv_macs == pytest.approx(macs, rel=0.01)  # the multiply-adds torch's flop counter counts
    assert f.input_shape == v.input_shape


def test_schema_3_adds_the_features_table_to_an_old_store(tmp_path):
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, db, upto=2)
    conn.close()
    with Store(db) as s:
        assert s.version == SCHEMA_VERSION == 3
        s.put_features(TINY_VARIANT, VERSION, {"x": 1})
        s.put_features(TINY_VARIANT, VERSION, {"x": 2})
        assert s.features(VERSION) == {TINY_VARIANT: {"x": 2}} and s.features(VERSION + 1) == {}
