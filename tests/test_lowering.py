"""Lowering passes: exactness on ONNX Runtime for randomised Conv3d / 3-D pooling
attributes (hypothesis), the other rewrites, and the FPGA checker's reasons.

Every model here is built with ``onnx.helper`` (no torch), run on ONNX Runtime's
CPU provider before and after ``lower``; outputs must agree to 1e-4.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edge.core.errors import BadInput
from targets.checker import check
from targets.lowering import lower
from targets.opset import FPGA_OPSET, OPSETS, IntRange, OpRule, OpSet

TOL = 1e-4
SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- helpers

def make_model(nodes: list[onnx.NodeProto], x_shape: tuple[int, ...], inits: dict[str, np.ndarray] | None = None,
               opset: int = 17, out: str = "y") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    onnx.checker.check_model(model)
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def assert_lowered_equal(model: onnx.ModelProto, x: np.ndarray, hard: bool = False) -> onnx.ModelProto:
    """lower(model) gives the same output; no node but the entry/exit Reshape touches rank 5."""
    low = lower(model, FPGA_OPSET, hard_activations=hard)
    want, got = run(model, x), run(low, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * max(1.0, float(np.abs(want).max())))
    inferred = onnx.shape_inference.infer_shapes(low)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.graph.value_info, *inferred.graph.input,
                                                                  *inferred.graph.output]}
    for node in low.graph.node:
        if node.op_type in ("Conv", "MaxPool", "AveragePool"):
            assert all(len(a.ints) <= 4 for a in node.attribute if a.name in ("kernel_shape", "pads")), node
        if node.op_type != "Reshape":
            assert all(ranks.get(v, 0) <= 4 for v in [*node.input, *node.output]), node
    return low


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- Conv3d -> Conv2d

@st.composite
def conv3d_cases(draw: st.DrawFn) -> dict:
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 3))
    cin_g = 1 if depthwise else draw(st.integers(1, 3))
    cout_g = draw(st.integers(1, 3))
    if depthwise:
        groups = draw(st.integers(1, 6))  # groups == in channels, channel multiplier cout_g
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = [draw(st.integers(0, 4)) for _ in range(6)]
    if auto_pad.startswith("SAME"):
        d = (1, 1, 1)  # ORT refuses dilated convs with SAME padding
    shape = (1, cin_g * groups, draw(st.integers(1, 8)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    for i in range(3):  # non-empty output
        extent = (k[i] - 1) * d[i] + 1
        padded = shape[2 + i] + (pads[i] + pads[3 + i] if auto_pad == "NOTSET" else 0)
        assume(auto_pad.startswith("SAME") or padded >= extent)
    return dict(groups=groups, cin=cin_g * groups, cout=cout_g * groups, k=k, s=s, d=d, pads=pads,
                auto_pad=auto_pad, shape=shape, bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def conv3d_model(case: dict) -> onnx.ModelProto:
    inits = {"w": rand(case["cout"], case["cin"] // case["groups"], *case["k"], seed=case["seed"])}
    inputs = ["x", "w"]
    if case["bias"]:
        inits["b"] = rand(case["cout"], seed=case["seed"] + 1)
        inputs.append("b")
    attrs = dict(kernel_shape=list(case["k"]), strides=list(case["s"]), dilations=list(case["d"]),
                 group=case["groups"])
    if case["auto_pad"] == "NOTSET":
        attrs["pads"] = case["pads"]
    else:
        attrs["auto_pad"] = case["auto_pad"]
    return make_model([helper.make_node("Conv", inputs, ["y"], **attrs)], case["shape"], inits)


@SETTINGS
@given(conv3d_cases())
def test_conv3d_lowering_is_exact(case: dict) -> None:
    model = conv3d_model(case)
    assert_lowered_equal(model, rand(*case["shape"], seed=case["seed"] + 2))


def test_conv3d_lowered_structure() -> None:
    """X3D's 3x3x3 depthwise conv: pad + 3 strided slices + 3 depthwise Conv2d + 2 Adds;
    a 1x1x1 conv: one Conv2d, no slices."""
    case = dict(groups=8, cin=8, cout=8, k=(3, 3, 3), s=(1, 2, 2), d=(1, 1, 1), pads=[1] * 6, auto_pad="NOTSET",
                shape=(1, 8, 4, 6, 6), bias=False, seed=0)
    low = assert_lowered_equal(conv3d_model(case), rand(*case["shape"]))
    ops = [n.op_type for n in low.graph.node]
    assert ops.count("Conv") == 3 and ops.count("Slice") == 3 and ops.count("Add") == 2 and ops.count("Pad") == 1
    assert all(a.i == 8 for n in low.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group")
    assert check(low, FPGA_OPSET) == []
    pointwise = dict(case, groups=1, k=(1, 1, 1), s=(1, 1, 1), pads=[0] * 6)
    low = assert_lowered_equal(conv3d_model(pointwise), rand(*case["shape"]))
    assert [n.op_type for n in low.graph.node].count("Conv") == 1
    assert "Slice" not in [n.op_type for n in low.graph.node]


def test_conv3d_taps_reading_only_padding_are_dropped() -> None:
    """T = 1 with a 3-frame kernel padded by 1: only the centre tap reads a real frame."""
    case = dict(groups=1, cin=2, cout=3, k=(3, 1, 1), s=(1, 1, 1), d=(1, 1, 1), pads=[1, 0, 0, 1, 0, 0],
                auto_pad="NOTSET", shape=(1, 2, 1, 4, 4), bias=True, seed=1)
    low = assert_lowered_equal(conv3d_model(case), rand(*case["shape"]))
    assert [n.op_type for n in low.graph.node].count("Conv") == 1


def test_conv3d_with_computed_weight() -> None:
    """A weight that is not an initializer (e.g. dequantized) is sliced in the graph."""
    w = rand(4, 2, 3, 3, 3)
    nodes = [helper.make_node("Identity", ["w0"], ["w1"]), helper.make_node("Neg", ["w1"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 6)]
    model = make_model(nodes, (1, 2, 5, 6, 6), {"w0": w})
    low = lower(model, FPGA_OPSET)
    x = rand(1, 2, 5, 6, 6)
    np.testing.assert_allclose(run(low, x), run(model, x), atol=TOL * 10)
    convs = [n for n in low.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3 and all(len(a.ints) == 2 for n in convs for a in n.attribute if a.name == "kernel_shape")


def test_batch_above_one_is_kept_exact() -> None:
    """The (T, C, H, W) layout needs batch 1: other batches keep their nodes (and the checker says so)."""
    model = conv3d_model(dict(groups=1, cin=2, cout=2, k=(3, 3, 3), s=(1, 1, 1), d=(1, 1, 1), pads=[1] * 6,
                              auto_pad="NOTSET", shape=(2, 2, 3, 4, 4), bias=False, seed=0))
    low = lower(model, FPGA_OPSET)
    x = rand(2, 2, 3, 4, 4)
    np.testing.assert_allclose(run(low, x), run(model, x), atol=TOL)
    (reason,) = check(low, FPGA_OPSET)
    assert "3-D conv" in reason and "rank 4" in reason


# ----------------------------------------------------------------------------- 3-D pooling

@st.composite
def pool3d_cases(draw: st.DrawFn) -> dict:
    op = draw(st.sampled_from(["MaxPool", "AveragePool"]))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    d = tuple(draw(st.integers(1, 2)) for _ in range(3)) if draw(st.booleans()) else (1, 1, 1)
    pads = [draw(st.integers(0, k[i % 3] - 1)) for i in range(6)]  # ORT: pads smaller than the kernel
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad.startswith("SAME"):
        d = (1, 1, 1)  # ORT computes SAME pads of dilated pools differently from the spec
    ceil_mode = draw(st.integers(0, 1)) if auto_pad == "NOTSET" else 0
    shape = (1, draw(st.integers(1, 4)), draw(st.integers(1, 8)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    for i in range(3):
        extent = (k[i] - 1) * d[i] + 1
        assume(auto_pad.startswith("SAME") or shape[2 + i] + (pads[i] + pads[3 + i]) * (auto_pad == "NOTSET")
               >= extent)
    return dict(op=op, k=k, s=s, d=d, pads=pads, auto_pad=auto_pad, ceil_mode=ceil_mode, shape=shape,
                count_include_pad=draw(st.integers(0, 1)), seed=draw(st.integers(0, 2**16)))


def pool3d_model(case: dict) -> onnx.ModelProto:
    attrs: dict[str, object] = dict(kernel_shape=list(case["k"]), strides=list(case["s"]))
    if case["auto_pad"] == "NOTSET":
        attrs["pads"] = case["pads"]
        attrs["ceil_mode"] = case["ceil_mode"]
    else:
        attrs["auto_pad"] = case["auto_pad"]
    if case["d"] != (1, 1, 1):
        attrs["dilations"] = list(case["d"])
    if case["op"] == "AveragePool":
        attrs["count_include_pad"] = case["count_include_pad"]
    # AveragePool takes dilations from opset 19
    return make_model([helper.make_node(case["op"], ["x"], ["y"], **attrs)], case["shape"], opset=19)


@SETTINGS
@given(pool3d_cases())
def test_pool3d_lowering_is_exact(case: dict) -> None:
    model = pool3d_model(case)
    x = rand(*case["shape"], seed=case["seed"])
    try:
        run(model, x)
    except Exception as e:  # noqa: BLE001
        assume(not str(e))  # an attribute set ORT itself refuses is not a lowering case
    assume(not negative_same_padding(case))  # refused by the lowering: test_negative_same_padding_is_refused
    assert_lowered_equal(model, x)


def negative_same_padding(case: dict) -> bool:
    """SAME auto_pad whose ONNX padding formula is negative on some axis (stride > window):
    onnxruntime crops the input of a pool there (a Conv clamps the padding to 0)."""
    if case["auto_pad"] not in ("SAME_UPPER", "SAME_LOWER"):
        return False
    return any((-(-n // s) - 1) * s + (k - 1) * d + 1 - n < 0
               for n, s, k, d in zip(case["shape"][2:], case["s"], case["k"], case["d"]))


def test_negative_same_padding_is_refused() -> None:
    """AveragePool k=1, stride 3, SAME_UPPER on an axis of 3: ONNX's formula pads by -2, i.e.
    crops, and onnxruntime returns x[1]; the lowering refuses it with the reason."""
    case = dict(op="AveragePool", k=(1, 1, 1), s=(3, 1, 1), d=(1, 1, 1), pads=[0] * 6, auto_pad="SAME_UPPER",
                ceil_mode=0, shape=(1, 1, 3, 1, 1), count_include_pad=0, seed=0)
    assert negative_same_padding(case)
    with pytest.raises(BadInput, match="negative padding"):
        lower(pool3d_model(case), FPGA_OPSET)


def test_x3d_head_pool_becomes_global_pooling() -> None:
    """AvgPool3d over the whole (T, h, w) map: GlobalAveragePool over space, Transpose, over time."""
    model = pool3d_model(dict(op="AveragePool", k=(4, 5, 5), s=(1, 1, 1), d=(1, 1, 1), pads=[0] * 6,
                              auto_pad="NOTSET", ceil_mode=0, shape=(1, 6, 4, 5, 5), count_include_pad=0, seed=0))
    low = assert_lowered_equal(model, rand(1, 6, 4, 5, 5))
    assert [n.op_type for n in low.graph.node].count("GlobalAveragePool") == 2
    assert check(low, FPGA_OPSET) == []


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_5d(op: str) -> None:
    assert_lowered_equal(make_model([helper.make_node(op, ["x"], ["y"])], (1, 3, 5, 4, 6)), rand(1, 3, 5, 4, 6))


@pytest.mark.parametrize("axes,keepdims", [((2, 3, 4), 1), ((2, 3, 4), 0), ((3, 4), 1), ((2,), 0), ((1,), 1)])
def test_reduce_mean_5d(axes: tuple[int, ...], keepdims: int) -> None:
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=list(axes), keepdims=keepdims)
    low = assert_lowered_equal(make_model([node], (1, 3, 4, 5, 6)), rand(1, 3, 4, 5, 6))
    if 1 not in axes:  # reductions over space and/or time become global pooling
        assert "ReduceMean" not in [n.op_type for n in low.graph.node]


# ----------------------------------------------------------------------------- the other passes

def test_batchnorm_folds_into_conv3d_and_standalone_bn_becomes_conv() -> None:
    c = 4
    inits = {"w": rand(c, c, 1, 3, 3), "g": np.abs(rand(c, seed=1)) + 0.5, "b": rand(c, seed=2),
             "m": rand(c, seed=3), "v": np.abs(rand(c, seed=4)) + 0.5}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 1, 0, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
             helper.make_node("BatchNormalization", ["bn", "g", "b", "m", "v"], ["y"])]
    low = assert_lowered_equal(make_model(nodes, (1, c, 3, 5, 5), inits), rand(1, c, 3, 5, 5))
    assert "BatchNormalization" not in [n.op_type for n in low.graph.node]
    assert check(low, FPGA_OPSET) == []


def test_se_block_and_swish() -> None:
    """x * sigmoid(conv(mean_THW(x))) and x * sigmoid(x): exact by default (Sigmoid kept),
    hard-sigmoid/hard-swish with Relu/Clip/Mul only when asked."""
    c = 4
    inits = {"w": rand(c, c, 1, 1, 1), "b": rand(c, seed=1)}
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3, 4], keepdims=1),
             helper.make_node("Conv", ["m", "w", "b"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["gate"]),
             helper.make_node("Mul", ["x", "gate"], ["se"]),
             helper.make_node("Sigmoid", ["se"], ["sg"]),
             helper.make_node("Mul", ["se", "sg"], ["y"])]
    model = make_model(nodes, (1, c, 3, 4, 4), inits)
    x = rand(1, c, 3, 4, 4)
    exact = assert_lowered_equal(model, x)
    assert [n.op_type for n in exact.graph.node].count("Sigmoid") == 2
    assert sum("Sigmoid" in r for r in check(exact, FPGA_OPSET)) == 2
    hard = lower(model, FPGA_OPSET, hard_activations=True)
    assert "Sigmoid" not in [n.op_type for n in hard.graph.node]
    assert check(hard, FPGA_OPSET) == []
    diff = np.abs(run(hard, x) - run(model, x)).max()
    assert 1e-4 < diff < 0.5  # an approximation, and a close one


def test_hard_sigmoid_and_hard_swish_are_rewritten_exactly() -> None:
    nodes = [helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.3, beta=0.4),
             helper.make_node("HardSwish", ["h"], ["y"])]
    low = assert_lowered_equal(make_model(nodes, (1, 2, 3, 4, 5), opset=17), 3 * rand(1, 2, 3, 4, 5))
    assert {n.op_type for n in low.graph.node} <= {"Mul", "Add", "Clip", "Reshape", "Transpose"}


def test_temporal_shift_and_channels_last_linear() -> None:
    """TSM-style shift (slices + pad + concat over T on a 5-D view) and a Linear applied
    channels-last through Transposes (PyTorchVideo's head): kept in 4-D, exact."""
    c, t = 4, 5
    inits = {"w": rand(c, 3), "bias": rand(3, seed=1)}
    nodes = [
        helper.make_node("Slice", ["x", "s0", "s1", "ax1"], ["fwd"]),  # channels 0..1
        helper.make_node("Slice", ["x", "s1", "s2", "ax1"], ["rest"]),
        helper.make_node("Pad", ["fwd", "pads"], ["fwd_p"]),  # shift channel group by one frame
        helper.make_node("Slice", ["fwd_p", "t0", "t1", "ax2"], ["fwd_s"]),
        helper.make_node("Concat", ["fwd_s", "rest"], ["sh"], axis=1),
        helper.make_node("Transpose", ["sh"], ["cl"], perm=[0, 2, 3, 4, 1]),
        helper.make_node("MatMul", ["cl", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["lin"]),
        helper.make_node("Transpose", ["lin"], ["cf"], perm=[0, 4, 1, 2, 3]),
        helper.make_node("Softmax", ["cf"], ["sm"], axis=1),
        helper.make_node("Flatten", ["sm"], ["y"], axis=1),
    ]
    inits.update({"s0": np.array([0]), "s1": np.array([2]), "s2": np.array([c]), "ax1": np.array([1]),
                  "ax2": np.array([2]), "t0": np.array([0]), "t1": np.array([t]),
                  "pads": np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])})
    assert_lowered_equal(make_model(nodes, (1, c, t, 3, 3), {k: np.asarray(v) for k, v in inits.items()}),
                         rand(1, c, t, 3, 3))


# ----------------------------------------------------------------------------- checker

def _conv2d(group: int, cin: int, cout: int, k: int, stride: int = 1, pads: int = 0) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=group, kernel_shape=[k, k], strides=[stride, stride],
                            pads=[pads] * 4, name="the_conv")
    return make_model([node], (1, cin, 20, 20), {"w": rand(cout, cin // group, k, k)})


@pytest.mark.parametrize("model,fragment", [
    (_conv2d(1, 4, 4, 3, pads=1), None),
    (_conv2d(4, 4, 4, 3, pads=1), None),  # depthwise
    (_conv2d(2, 4, 4, 3), "grouped convolution (groups=2"),
    (_conv2d(1, 4, 4, 17), "kernel 17x17 outside [1, 16]"),
    (_conv2d(1, 4, 4, 3, stride=9), "stride 9x9 outside [1, 8]"),
    (_conv2d(1, 4, 4, 3, pads=3), "exceed (kernel - 1) * dilation"),
])
def test_checker_conv_rules(model: onnx.ModelProto, fragment: str | None) -> None:
    reasons = check(model, FPGA_OPSET)
    if fragment is None:
        assert reasons == []
    else:
        (reason,) = reasons
        assert reason.startswith("node 'the_conv' (Conv): ") and fragment in reason


def _qdq(scale: np.ndarray, zero_point: np.ndarray) -> onnx.ModelProto:
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    return make_model(nodes, (1, 4, 2, 2), {"s": scale, "z": zero_point}, opset=13)


@pytest.mark.parametrize("scale,zp,fragment", [
    (np.float32(0.125), np.int8(0), None),
    (np.float32(0.1), np.int8(0), "not a power of two"),
    (np.float32(0.125), np.uint8(128), "uint8 quantization"),
    (np.float32(0.125), np.int8(3), "non-zero zero point"),
])
def test_checker_quantizer_rules(scale: np.ndarray, zp: np.ndarray, fragment: str | None) -> None:
    reasons = check(_qdq(np.asarray(scale), np.asarray(zp)), FPGA_OPSET)
    if fragment is None:
        assert reasons == []
    else:
        assert len(reasons) == 2 and all(fragment in r for r in reasons)


def test_checker_dynamic_shapes_and_unknown_ops() -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                               helper.make_node("Softmax", ["r"], ["y"], name="sm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])])
    reasons = check(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), FPGA_OPSET)
    assert any(r.startswith("graph input 'x': dynamic") for r in reasons)
    assert any(r.startswith("node 'relu' (Relu): dynamic or unknown shape") for r in reasons)
    assert any(r.startswith("node 'sm' (Softmax): Softmax is not in the fpga operator set") for r in reasons)


def test_opset_is_data() -> None:
    assert OPSETS["fpga"] is FPGA_OPSET and FPGA_OPSET.max_rank == 4 and FPGA_OPSET.conv_dims() == (2,)
    conv = FPGA_OPSET.rule("Conv")
    assert conv is not None and 16 in conv.kernel and 17 not in conv.kernel  # type: ignore[operator]
    assert FPGA_OPSET.rule("Sigmoid") is None and not FPGA_OPSET.allows("ReduceMean")
    # a set with 3-D convs and rank 5 needs no layout rewrite: lower leaves Conv3d alone
    wide = OpSet("wide", "test", (OpRule("Conv", "test", spatial_dims=(2, 3), kernel=IntRange(1, 7)),), max_rank=5)
    model = conv3d_model(dict(groups=1, cin=2, cout=2, k=(3, 3, 3), s=(1, 1, 1), d=(1, 1, 1), pads=[1] * 6,
                              auto_pad="NOTSET", shape=(1, 2, 3, 4, 4), bias=False, seed=0))
    assert [n.op_type for n in lower(model, wide).graph.node] == ["Conv"]
    assert check(model, wide) == []


@pytest.mark.parametrize("group,cin,cout", [(2, 4, 6), (4, 8, 8), (3, 3, 6)])
def test_grouped_conv2d_becomes_dense_and_depthwise(group: int, cin: int, cout: int) -> None:
    """Grouped convs (G-Ghost) and depthwise convs with a channel multiplier: exact, and inside the set."""
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group, kernel_shape=[3, 3], pads=[1] * 4)
    model = make_model([node], (1, cin, 6, 6), {"w": rand(cout, cin // group, 3, 3), "b": rand(cout, seed=1)})
    assert len(check(model, FPGA_OPSET)) == 1
    low = assert_lowered_equal(model, rand(1, cin, 6, 6))
    assert check(low, FPGA_OPSET) == []


@pytest.mark.parametrize("shape,axes", [((1, 4, 6), (1,)), ((1, 1, 6), (1,)), ((3, 5, 4, 4), (0, 2, 3)),
                                        ((20, 3, 2, 2), (0,)), ((2, 3, 4, 5), (1, 2))])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax"])
def test_reductions_become_pooling(shape: tuple[int, ...], axes: tuple[int, ...], op: str) -> None:
    """Means/maxima over frames of (1, T, C) logits, over (T, H, W) of a (T, C, H, W) map, ...:
    pooling only (a 20-frame window exceeds the pool kernel limit and goes through a Transpose)."""
    node = helper.make_node(op, ["x"], ["y"], axes=list(axes), keepdims=0)
    low = assert_lowered_equal(make_model([node], shape), rand(*shape))
    assert check(low, FPGA_OPSET) == []
