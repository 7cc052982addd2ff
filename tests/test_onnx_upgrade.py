"""ONNX files of older tools: opset 9 / IR version 3 (initializers listed as inputs),
value_info without shapes, dynamic inputs - lowered exactly by ``edgevid lower``,
checked by ``check-ops``, or refused with one line naming the node or dimension."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from edge.cli import main
from quant.onnx_upgrade import TARGET_OPSET, default_opset, modernize

SHAPE = [1, 3, 4, 16, 16]


def old_model(opset: int = 9, ir: int = 3, shapeless_vi: bool = True, dynamic: bool = False,
              extra: onnx.NodeProto | None = None) -> onnx.ModelProto:
    """Conv3d -> Relu -> 3-D MaxPool -> GlobalAveragePool -> Flatten -> Gemm, as exporters of
    2018 wrote it: IR 3 lists every initializer as a graph input; value_info without shapes."""
    rng = np.random.default_rng(0)
    inits = [nh.from_array((rng.standard_normal((4, 3, 3, 3, 3)) * 0.2).astype(np.float32), "W"),
             nh.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "B"),
             nh.from_array(rng.standard_normal((5, 4)).astype(np.float32), "G"),
             nh.from_array(np.zeros(5, np.float32), "GB")]
    nodes = [h.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1] * 6, name="conv"),
             h.make_node("Relu", ["c"], ["r"], name="relu"),
             h.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2, 2], strides=[2, 2, 2], name="pool3d"),
             h.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
             h.make_node("Flatten", ["g"], ["f"], axis=1, name="flat"),
             h.make_node("Gemm", ["f", "G", "GB"], ["y"], transB=1, name="fc")]
    if extra is not None:
        nodes.insert(2, extra)
    inputs = [h.make_tensor_value_info("x", T.FLOAT, ["N", *SHAPE[1:]] if dynamic else SHAPE)]
    if ir < 4:
        inputs += [h.make_tensor_value_info(i.name, T.FLOAT, list(i.dims)) for i in inits]
    vi = [h.make_value_info("r", h.make_tensor_type_proto(T.FLOAT, None)), h.make_value_info("p", onnx.TypeProto())] \
        if shapeless_vi else []
    out = h.make_tensor_value_info("y", T.FLOAT, ["N" if dynamic else 1, 5])
    graph = h.make_graph(nodes, "old", inputs, [out], initializer=inits, value_info=vi)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = ir
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_an_opset9_ir3_file_lowers_exactly_into_the_fpga_set(tmp_path, capsys):
    """The 3-D MaxPool too (it needs the shapes the file's value_info lacks)."""
    src = save(old_model(), tmp_path / "old.onnx")
    dst = tmp_path / "low.onnx"
    assert main(["lower", "--target", "fpga", str(src), str(dst)]) == 0
    out = capsys.readouterr()
    assert "every node inside the fpga operator set" in out.out and out.err == ""
    low = onnx.load(str(dst))
    assert default_opset(low) == TARGET_OPSET and "MaxPool" in {n.op_type for n in low.graph.node}
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    assert np.abs(run(dst, x) - run(src, x)).max() < 1e-5
    assert main(["check-ops", "--target", "fpga", str(dst)]) == 0


def test_check_ops_reads_the_old_file_and_names_every_3d_node(tmp_path, capsys):
    src = save(old_model(), tmp_path / "old.onnx")
    assert main(["check-ops", "--target", "fpga", str(src)]) == 1
    out = capsys.readouterr().out
    assert "node 'pool3d' (MaxPool): 3-D maxpool" in out and "node 'conv' (Conv): 3-D conv" in out


def test_an_operator_without_a_schema_is_named(tmp_path, capsys):
    crop = h.make_node("Crop", ["r"], ["r2"], name="legacy_crop", border=[0, 0, 0, 0])
    model = old_model(extra=crop)
    model.graph.node[3].input[0] = "r2"  # pool3d reads the crop
    src = save(model, tmp_path / "crop.onnx")
    assert main(["lower", "--target", "fpga", str(src), str(tmp_path / "low.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "crop.onnx" in err and "'legacy_crop' (Crop)" in err, err
    assert not (tmp_path / "low.onnx").exists()


def test_a_dynamic_input_needs_input_shape(tmp_path, capsys):
    src = save(old_model(opset=13, ir=7, shapeless_vi=False, dynamic=True), tmp_path / "dyn.onnx")
    dst = tmp_path / "low.onnx"
    assert main(["lower", "--target", "fpga", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert "dyn.onnx" in err and "dimension 0 (N) is dynamic" in err and "--input-shape" in err
    assert main(["lower", "--target", "fpga", str(src), str(dst), "--input-shape", "1x3x4x16x16"]) == 0
    assert [d.dim_value for d in onnx.load(str(dst)).graph.input[0].type.tensor_type.shape.dim] == SHAPE
    capsys.readouterr()
    for bad, says in (("2x3x4x16", "rank 5"), ("1x3x8x16x16", "dimension 2 is 4"), ("1x3xfour", "expected positive")):
        assert main(["lower", "--target", "fpga", str(src), str(dst), "--input-shape", bad]) == 2
        assert says in capsys.readouterr().err
    assert main(["check-ops", "--target", "fpga", str(src), "--input-shape", "1x3x4x16x16"]) == 1  # 3-D nodes


def test_a_current_file_comes_back_untouched():
    model = old_model(opset=17, ir=8, shapeless_vi=False)
    same, notes = modernize(model, "m.onnx")
    assert same is model and notes == []


def test_modernize_says_what_it_did_and_leaves_the_input_alone():
    model = old_model()
    before = model.SerializeToString()
    new, notes = modernize(model, "old.onnx")
    assert model.SerializeToString() == before
    assert [i.name for i in new.graph.input] == ["x"]
    assert all(v.type.tensor_type.HasField("shape") for v in new.graph.value_info)  # inferred again
    assert any("4 initializer(s)" in n for n in notes) and any("2 value_info" in n for n in notes)
    assert any("opset 9 upgraded to 17" in n for n in notes)
    onnx.checker.check_model(new, full_check=True)


@pytest.mark.parametrize("target", ["onnxruntime", "openvino", "tflite"])
def test_every_checker_reads_an_old_file(target, tmp_path, capsys):
    src = save(old_model(), tmp_path / "old.onnx")
    rc = main(["check-ops", "--target", target, str(src)])
    captured = capsys.readouterr()
    assert rc in (0, 1) and "Traceback" not in captured.err, captured.err
