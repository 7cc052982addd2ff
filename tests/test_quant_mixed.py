"""Per-layer sensitivity (quant.sensitivity), accuracy-aware mixed precision
(quant.mixed), the int8 settings that reach the quantizers (quant.settings:
--ignore, --nncf-preset, --subset-size, --mixed) and the calibration methods
(entropy no longer equal to MinMax)."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import numpy_helper

from edge.cli import main
from edge.core.errors import BadInput, GateFailed
from edge.core.variant import Variant
from quant.calib import CalibSet
from edge.mixed import compile_mixed
from quant.mixed import Candidate, choose, search, top_k_steps
from quant.ort import ort_recipe, quantize_onnx
from quant.sensitivity import rank_layers
from quant.settings import QuantSettings, parse_ignore, resolve_exclude
from targets.base import ARTIFACT_JSON, Artifact
from targets.registry import TargetOptions, get_target

TOY = Variant("x3d_xs", frames=2, resolution=16, precision="int8")  # the toy takes x3d_xs's place in tags


class Chain(nn.Module):
    """conv 3->16, ReLU, conv 16->16, ReLU, conv 1x1, ReLU, mean, linear: (1, 3, 2, 16, 16) -> (1, 6).

    ``outlier="weight"``: every output channel of c2 gets one huge weight on an input
    channel that is always 0 (harmless in float; per-channel weight quantization then
    rounds c2's other weights to 0).  ``outlier="activation"``: c1's channel 0 is 1e5x
    the others and c2 ignores it (harmless in float; the per-tensor activation scale
    of c1's output then rounds every other channel to 0).
    """

    def __init__(self, outlier: str | None = None, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv3d(3, 16, 3, padding=1)
        self.c2 = nn.Conv3d(16, 16, 3, padding=1)
        self.c3 = nn.Conv3d(16, 16, 1)
        self.fc = nn.Linear(16, 6)
        with torch.no_grad():
            if outlier == "weight":
                self.c1.weight[0] = 0.0
                self.c1.bias[0] = -1.0
                self.c2.weight[:, 0, 0, 0, 0] = 1e3 * self.c2.weight.abs().max()
            elif outlier == "activation":
                self.c1.weight[0] *= 1e5
                self.c2.weight[:, 0] = 0.0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        return self.fc(x.mean((2, 3, 4)))


def clips(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Clips with a random offset per channel, so the top-1 class differs between clips."""
    rng = np.random.default_rng(seed)
    return tuple((rng.standard_normal(TOY.input_shape) + rng.normal(0, 2, (1, 3, 1, 1, 1))).astype(np.float32)
                 for _ in range(n))


def calib_set(n_held: int = 12) -> CalibSet:
    return CalibSet("toy", clips(8, 0), "minmax", clips(n_held, 1), (None,) * n_held)


def export(model: nn.Module, path) -> str:
    torch.onnx.export(model, torch.zeros(TOY.input_shape), str(path), input_names=["clip"], output_names=["logits"],
                      dynamo=False)
    return str(path)


def runtime(name: str):
    # Chain's c1 (3x3x3 on RGB) is a conv onnxruntime's speed rule keeps float; the search tests need
    # every layer quantizable (the rule itself: test_ort_speed_rule_keeps_an_rgb_3d_conv_float)
    target = get_target(name, TargetOptions(threads=1, quant=QuantSettings(speed_rules=False)))
    if not target.available():
        pytest.skip(target.unavailable_reason())
    return target


# ----------------------------------------------------------------------------- calibration methods

@pytest.mark.slow
def test_three_calibration_methods_give_different_scales(tmp_path):
    """One activation outlier in ~200k values: MinMax spans it, Percentile (99.999) and
    Entropy clip it - and Entropy is no longer MinMax in disguise (ORT's 128/128 bins)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), str(tmp_path / "m.onnx"), input_names=["x"], dynamo=False)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(16)]
    data[3][0, 1, 10, 10] = 80.0
    scale = {}
    for method in ("minmax", "percentile", "entropy"):
        notes = quantize_onnx(tmp_path / "m.onnx", tmp_path / f"{method}.onnx", data, ort_recipe(method), "x")
        init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / f"{method}.onnx")).graph.initializer}
        scale[method] = float(init["x_scale"])
        assert notes["method"] == method
    assert scale["minmax"] == pytest.approx((80.0 - min(float(d.min()) for d in data)) / 255, rel=1e-3)
    assert scale["percentile"] < 0.5 * scale["minmax"] and scale["entropy"] < 0.5 * scale["minmax"]
    assert scale["percentile"] != pytest.approx(scale["entropy"], rel=1e-3)


# ----------------------------------------------------------------------------- settings

def test_ignore_tokens_resolve_to_node_names(tmp_path):
    from quant.settings import is_depthwise

    path = export(nn.Sequential(nn.Conv3d(3, 8, 1), nn.ReLU(), nn.Conv3d(8, 8, 3, padding=1, groups=8)).eval(),
                  tmp_path / "m.onnx")
    graph = onnx.load(path)
    convs = [n.name for n in graph.graph.node if n.op_type == "Conv"]
    assert resolve_exclude(graph, ["Conv"]) == convs
    assert resolve_exclude(graph, ["depthwise"]) == [n.name for n in graph.graph.node if is_depthwise(n)] == convs[1:]
    assert resolve_exclude(graph, [convs[0]]) == convs[:1]
    with pytest.raises(BadInput, match="neither a node name nor an op type"):
        resolve_exclude(graph, ["NoSuchThing"])
    assert parse_ignore(" Conv, depthwise ") == ("Conv", "depthwise") and parse_ignore(None) == ()
    with pytest.raises(BadInput, match="empty entry"):
        parse_ignore("Conv,,Mul")
    with pytest.raises(BadInput, match="--nncf-preset"):
        QuantSettings(preset="fast")
    with pytest.raises(BadInput, match="--subset-size"):
        QuantSettings(subset_size=0)


def test_cli_flags_reach_compile(monkeypatch, tmp_path):
    seen = {}

    def fake(variant, target, out, ckpt=None, options=None, calib=None, gate=None, mixed=False, **kw):
        seen.update(options=options, mixed=mixed, method=calib.method, clips=len(calib.clips))
        raise BadInput("stop here")

    import edge.compile

    monkeypatch.setattr(edge.compile, "compile_variant", fake)
    rc = main(["compile", "--model", "x3d_xs", "--target", "openvino", "--precision", "int8", "--frames", "2",
               "--resolution", "32", "--calib-clips", "4", "--calib-method", "entropy", "--mixed",
               "--ignore", "Conv,depthwise", "--nncf-preset", "mixed", "--subset-size", "3",
               "--out", str(tmp_path / "a")])
    assert rc == 2 and seen["mixed"] is True and seen["method"] == "entropy" and seen["clips"] == 4
    assert seen["options"].quant == QuantSettings(exclude=("Conv", "depthwise"), preset="mixed", subset_size=3)


@pytest.mark.parametrize("ckpt, flag, mode", [(None, None, "stride"), ("shipped", None, "uniform"),
                                               ("shipped", "stride", "stride"), (None, "uniform", "uniform")])
def test_calibration_samples_frames_as_the_checkpoint_was_trained(monkeypatch, tmp_path, ckpt, flag, mode):
    """The shipped MutualNet checkpoint was trained on uniformly sampled clips: its int8
    calibration and held-out clips are read the same way unless --calib-mode says otherwise."""
    import quant.calib
    from edge.checkpoint import clip_sampling, load_checkpoint

    seen = {}

    def fake(path, shape, **kw):
        seen.update(kw, shape=tuple(shape))
        raise BadInput("stop here")

    monkeypatch.setattr(quant.calib, "read_calib", fake)
    shipped = str(Path(__file__).resolve().parents[1] / "edge" / "checkpoints" / "x3d_xs_mutual_synth10.pt")
    argv = ["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--precision", "int8",
            "--out", str(tmp_path / "a")] + (["--ckpt", shipped] if ckpt else []) + \
        (["--calib-mode", flag] if flag else [])
    assert main(argv) == 2 and seen["mode"] == mode
    # the input comes from the checkpoint (w1.0-r128-f8) when the flags leave it open, else the model's
    assert seen["shape"] == ((1, 3, 8, 128, 128) if ckpt else (1, 3, 4, 160, 160))
    assert clip_sampling(load_checkpoint(shipped).meta) == "uniform" and clip_sampling(None) == "stride"


def test_cli_mixed_only_with_int8(tmp_path, capsys):
    rc = main(["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--mixed", "--out", str(tmp_path / "a")])
    assert rc == 2 and "are for --precision int8" in capsys.readouterr().err


def test_ort_ignore_keeps_nodes_float(tmp_path):
    runtime("onnxruntime")
    model = Chain()
    cal = calib_set(4)
    arts = {}
    for name, exclude in (("all", ()), ("ignored", ("/c2/Conv", "Gemm"))):
        target = get_target("onnxruntime", TargetOptions(threads=1, quant=QuantSettings(exclude=exclude,
                                                                                       speed_rules=False)))
        arts[name] = target.compile(model, TOY, tmp_path / name, calib=cal)
    weights_q = {k: {n.input[0] for n in onnx.load(str(a.model_path)).graph.node if n.op_type == "DequantizeLinear"}
                 for k, a in arts.items()}
    assert {"c2.weight_quantized", "fc.weight_quantized"} <= weights_q["all"]
    assert not {"c2.weight_quantized", "fc.weight_quantized"} & weights_q["ignored"]
    assert "c1.weight_quantized" in weights_q["ignored"]
    assert arts["ignored"].notes["quant"]["excluded_nodes"] == ["/c2/Conv", "/fc/Gemm"]


@pytest.mark.slow
def test_openvino_ignored_scope_from_onnx_names(tmp_path):
    runtime("openvino")
    cal = calib_set(4)
    arts = {}
    for name, settings in (("all", QuantSettings()),
                           ("ignored", QuantSettings(exclude=("Conv",), preset="mixed", subset_size=5))):
        target = get_target("openvino", TargetOptions(threads=1, quant=settings))
        arts[name] = target.compile(Chain(), TOY, tmp_path / name, calib=cal)
    q_all, q_ign = arts["all"].notes["quant"], arts["ignored"].notes["quant"]
    assert q_ign["preset"] == "mixed" and q_ign["subset_size"] == 5
    assert q_ign["excluded_nodes"] == ["/c1/Conv", "/c2/Conv", "/c3/Conv"]
    # each Conv became Convolution "<name>/WithoutBiases" + Add "<name>"; both are in the ignored scope
    assert {"/c1/Conv", "/c1/Conv/WithoutBiases", "/c3/Conv/WithoutBiases"} <= set(q_ign["ignored_scope"])
    assert q_ign["fake_quantize"] < q_all["fake_quantize"]


# ----------------------------------------------------------------------------- sensitivity

@pytest.mark.parametrize("outlier,worst", [("weight", "/c2/Conv"), ("activation", "/c2/Conv")])
def test_sensitivity_ranks_the_injected_layer_first(outlier, worst, tmp_path):
    runtime("onnxruntime")
    fp32 = export(Chain(outlier), tmp_path / "m.onnx")
    clean = export(Chain(), tmp_path / "clean.onnx")
    cal = calib_set(4)
    ranked = {}
    for name, path in (("bad", fp32), ("clean", clean)):
        quantize_onnx(path, tmp_path / f"{name}.int8.onnx", cal.clips, ort_recipe("minmax"), "clip")
        ranked[name] = rank_layers(path, tmp_path / f"{name}.int8.onnx", cal.clips[:4])
    top = ranked["bad"][0]
    assert top.node == worst and top.op_type == "Conv"
    assert top.drop_db > 15 and top.drop_db > ranked["bad"][1].drop_db + 5
    assert max(r.drop_db for r in ranked["clean"]) < top.drop_db - 10  # without the outlier no layer loses as much
    assert {r.node for r in ranked["bad"]} >= {"/c1/Conv", "/c2/Conv", "/c3/Conv", "/fc/Gemm"}


def test_sensitivity_command_prints_the_ranking(tmp_path, capsys):
    from quant.sensitivity import main as sensitivity_main

    runtime("onnxruntime")
    path = export(Chain("weight"), tmp_path / "m.onnx")
    assert sensitivity_main([path, "--clips", "4", "--probe", "2", "--top", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and {"node", "op_type", "sqnr_in_db", "sqnr_out_db", "drop_db"} <= set(rows[0])
    assert rows[0]["drop_db"] >= rows[1]["drop_db"] >= rows[2]["drop_db"]
    assert sensitivity_main([str(tmp_path / "missing.onnx")]) == 2


# ----------------------------------------------------------------------------- selection

def test_choose_keeps_the_fastest_meeting_the_floor_not_the_first():
    cands = [Candidate("int8", (), 0.90, 0.99, 20.0),
             Candidate("no-depthwise", ("a",), 0.995, 0.999, 30.0, p50_ms=80.0),
             Candidate("top-2", ("b", "c"), 1.0, 0.9999, 40.0, p50_ms=61.0),
             Candidate("top-4", ("b", "c", "d", "e"), 1.0, 0.9999, 41.0, p50_ms=70.0)]
    c = choose(cands, 0.99, baseline_ms=100.0)
    assert c.kept is c.best is cands[2]
    assert "top-2 61.0 ms" in c.why and "no-depthwise 80.0 ms" in c.why and "fp32 100.0 ms" in c.why
    assert cands[2].to_json(100.0)["vs_fp32"] == 0.61


def test_choose_reports_the_best_when_nothing_meets_the_floor():
    cands = [Candidate("int8", (), 0.5, 0.9, 10.0), Candidate("top-1", ("a",), 0.75, 0.95, 12.0),
             Candidate("top-2", ("a", "b"), 0.75, 0.97, 13.0), Candidate("top-4", ("a",) * 4, error="boom")]
    c = choose(cands, 0.99)
    assert c.kept is None and c.best is cands[2]
    assert "best found: top-2" in c.why and "0.750" in c.why
    assert choose([Candidate("x", (), error="boom")], 0.9).best is None


class FakeSearch:
    """A search whose agreement is the fraction of the ``sensitive`` nodes kept float
    (no runtime: this checks the growth and the bisection only)."""

    def __init__(self, sensitive: set[str]) -> None:
        self.sensitive, self.candidates = sensitive, []

    def build(self, name, exclude):
        agree = len(self.sensitive & set(exclude)) / len(self.sensitive)
        c = Candidate(name, tuple(exclude), agree, agree, 10.0)
        self.candidates.append(c)
        return c


def test_search_grows_from_the_closest_cheap_candidate_and_bisects():
    """The cheap candidates miss; convs-only (float: e1, e2) is closest, so the top-k sets
    grow from it, reach the floor and are bisected to the smallest k meeting it."""
    s = FakeSearch({"e1", "e2", "c3", "c5"})
    cheap = [("int8", []), ("no-depthwise", ["d"]), ("convs-only", ["e1", "e2"])]
    ranking = [["c5"], ["e1"], ["c3"], ["c9"], ["c7"], ["c8"]]  # e1 is already float in the start
    cands = search(s, cheap, lambda: ranking, floor=1.0, max_candidates=14)
    by = {c.name: c for c in cands}
    assert set(by["top-1"].exclude) == {"e1", "e2", "c5"}  # convs-only plus the most sensitive
    assert by["top-2"].meets(1.0) and set(by["top-2"].exclude) == {"e1", "e2", "c5", "c3"}
    assert "top-4" not in by  # growth stops at the first k meeting the floor
    assert not any(c.meets(1.0) for c in search(FakeSearch({"x"}), cheap, lambda: [["y"]], 1.0))  # x never ranked


def test_top_k_steps():
    assert top_k_steps(0) == [] and top_k_steps(1) == [1] and top_k_steps(5) == [1, 2, 4, 5]
    assert top_k_steps(8) == [1, 2, 4, 8]


# ----------------------------------------------------------------------------- search on real runtimes

@pytest.mark.parametrize("target_name", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.slow)])
def test_mixed_meets_a_floor_plain_int8_misses(target_name, tmp_path):
    target = runtime(target_name)
    out = tmp_path / "art"
    out.mkdir()
    art = compile_mixed(target, Chain("activation"), TOY, out, calib_set(), 0.99, rounds=2, runs=3)
    mixed = art.notes["mixed"]
    cands = {c["name"]: c for c in mixed["candidates"]}
    assert cands["int8"]["agreement"] < 0.99 and cands["int8"]["p50_ms"] is None  # misses: not timed
    kept = cands[mixed["kept"]]
    assert kept["agreement"] >= 0.99 and kept["p50_ms"] > 0 and mixed["fp32_p50_ms"] > 0
    meeting = [c for c in cands.values() if c["agreement"] is not None and c["agreement"] >= 0.99]
    assert kept["p50_ms"] == min(c["p50_ms"] for c in meeting)
    assert "/c1/Conv" in mixed["excluded_nodes"] and mixed["excluded_nodes"] == kept["exclude"]
    assert sorted(art.notes["quant"]["excluded_nodes"]) == sorted(kept["exclude"])
    assert mixed["ranking"][0]["node"] in ("/c1/Conv", "/c2/Conv")
    assert art.status == "ok" and Artifact.read(out).files  # hashes of the copied files verify
    logits = target.load(Artifact.read(out))(calib_set().held_out[0])
    assert logits.shape == (1, 6)


def test_unreachable_floor_keeps_the_best_found_marked_failed(tmp_path):
    runtime("onnxruntime")
    out = tmp_path / "art"
    out.mkdir()
    with pytest.raises(GateFailed, match=r"no candidate reached agreement 1.01; best found: .*marked failed"):
        compile_mixed(get_target("onnxruntime", TargetOptions(threads=1)), Chain("activation"), TOY, out,
                      calib_set(), 1.01, max_candidates=4, rounds=1, runs=1)
    art = Artifact.read(out)
    mixed = art.notes["mixed"]
    assert art.status == "failed" and mixed["kept"] is None and len(mixed["candidates"]) == 4
    assert all(c["p50_ms"] is None for c in mixed["candidates"])  # none met the floor: none timed
    best = max(mixed["candidates"], key=lambda c: (c["agreement"], c["cosine"]))
    assert art.fidelity["agreement"] == best["agreement"] == 1.0 and mixed["excluded_nodes"] == best["exclude"]


@pytest.mark.slow
def test_unreachable_floor_exits_1_with_the_best_found(tmp_path, capsys, monkeypatch):
    import edge.compile

    monkeypatch.setattr(edge.compile, "MIXED_AGREEMENT", 1.01)  # the search's floor without --min-agreement
    out = tmp_path / "art"
    rc = main(["compile", "--model", "x3d_xs", "--target", "onnxruntime", "--precision", "int8", "--frames", "2",
               "--resolution", "32", "--calib-clips", "4", "--mixed",
               "--ignore", "Gemm", "--out", str(out), "--json"])
    cap = capsys.readouterr()
    assert rc == 1 and "no candidate reached agreement 1.01; best found:" in cap.err
    manifest = json.loads((out / ARTIFACT_JSON).read_text())
    assert manifest["status"] == "failed"
    mixed = manifest["notes"]["mixed"]
    assert mixed["kept"] is None and len(mixed["candidates"]) >= 3
    assert all(c["p50_ms"] is None for c in mixed["candidates"])  # none met the floor: none timed
    assert all("/blocks.5/proj/Gemm" in c["exclude"] for c in mixed["candidates"])  # --ignore is always kept
    assert {c["name"] for c in mixed["candidates"]} >= {"int8", "no-depthwise", "top-1"}
    best = max(mixed["candidates"], key=lambda c: (c["agreement"], c["cosine"]))
    assert manifest["fidelity"]["agreement"] == best["agreement"] and mixed["excluded_nodes"] == best["exclude"]


def test_mixed_refuses_other_targets(tmp_path):
    with pytest.raises(BadInput, match="--mixed: mixed precision is for onnxruntime, openvino"):
        compile_mixed(get_target("fpga"), Chain(), TOY, tmp_path, calib_set(), 0.99)


def test_with_labelled_clips_the_floor_is_the_top1_drop(tmp_path):
    """The onnxruntime search scores candidates by their top-1 drop on the labelled clips:
    a reachable drop keeps the fastest candidate meeting it, an unreachable one keeps the
    closest, marked failed."""
    from dataclasses import replace

    from quant.accuracy import LabelledClips

    runtime("onnxruntime")
    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, (10, *TOY.input_shape[1:]), dtype=np.uint8)
    labelled = LabelledClips("toy", u8, rng.integers(0, 6, 10))
    calib = replace(calib_set(), labelled=labelled)
    target = get_target("onnxruntime", TargetOptions(threads=1))
    art = compile_mixed(target, Chain("activation"), TOY, tmp_path / "ok", calib, 0.99, max_candidates=4,
                        rounds=1, runs=1, max_drop=1.0)
    mixed = art.notes["mixed"]
    assert mixed["floor"] == "top-1 drop <= 1" and "10 labelled held-out clips" in mixed["measured_against"]
    assert all(c["top1_drop"] is not None for c in mixed["candidates"] if not c["error"])
    assert "meeting top-1 drop <= 1" in mixed["why"]
    (tmp_path / "bad").mkdir()
    with pytest.raises(GateFailed, match=r"no candidate reached top-1 drop <= -1; best found: .*top-1 drop"):
        compile_mixed(target, Chain("activation"), TOY, tmp_path / "bad", calib, 0.99, max_candidates=4,
                      rounds=1, runs=1, max_drop=-1.0)
    assert Artifact.read(tmp_path / "bad").status == "failed"


def test_ort_speed_rule_keeps_an_rgb_3d_conv_float(tmp_path):
    """By default the onnxruntime target keeps Chain's c1 float (quant.ort.slow_int8_convs) and says so."""
    onnx_path = export(Chain(), tmp_path / "chain.onnx")
    on = get_target("onnxruntime", TargetOptions(threads=1))
    art = on.compile(onnx_path, TOY.with_(precision="int8"), tmp_path / "on", calib=calib_set())
    assert art.notes["quant"]["float_by_rule"]["nodes"] == ["/c1/Conv"]
    assert art.notes["quant"]["float_nodes"] == 1 and art.notes["quant"]["excluded_nodes"] == []
    off = get_target("onnxruntime", TargetOptions(threads=1, quant=QuantSettings(speed_rules=False)))
    art = off.compile(onnx_path, TOY.with_(precision="int8"), tmp_path / "off", calib=calib_set())
    assert "float_by_rule" not in art.notes["quant"] and art.notes["quant"]["float_nodes"] == 0
