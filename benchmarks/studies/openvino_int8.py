"""OpenVINO int8 recipes side by side: fp32 vs int8 per model and recipe, in one
process, with the CPU plugin's per-op-type time (PERF_COUNT) so the next person
sees where int8 pays and where it does not.

    .venv/bin/python -m benchmarks.studies.openvino_int8 [--models x3d_xs x3d_s ghost_tsm convnet2d_s]
                                                  [--runs 20] [--threads 2] [--calib-clips 32] [--json] [--out F.json]

    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python -m benchmarks.studies.openvino_int8 ...   # as on a CPU without
                                                                                   # AVX-512 / VNNI

Recipes (each one ``ov.Model`` compiled for CPU, LATENCY hint, f32 inference precision):

- ``fp32``: the edgevid fp32 artifact (``targets.openvino``: ``ov.convert_model(onnx)``).
- ``edgevid int8``: the edgevid int8 artifact (``ov.convert_model(onnx)`` + ``quant.openvino``:
  NNCF PERFORMANCE preset, per-channel weights, fast bias correction).
- ``read_model int8``: the earlier recipe - ``core.read_model(onnx)`` (the ONNX reader
  alone, without the MOC transformations that ``convert_model`` runs: no Swish fusion)
  + the same NNCF call.  NNCF then puts FakeQuantize around every Sigmoid*Multiply.
- ``mixed int8``: ``convert_model(onnx)`` + NNCF MIXED preset (asymmetric activations).
- ``plain int8``: what a user gets from the tools alone - ``ov.convert_model(torch module,
  example_input=...)`` + ``nncf.quantize`` with every default.
- ``pytorchvideo plain int8`` (x3d_s, when pytorchvideo is installed): the same plain
  recipe on pytorchvideo's own ``create_x3d`` module holding the same weights
  (``edge.convert.from_pytorchvideo`` maps its keys onto ours).

Weights: the shipped MutualNet checkpoint for x3d_xs (w1.0-r128-f8), seeded random
weights with realistic BN statistics for the others (``quant_bench.realistic``).
Calibration: ``--calib-clips`` shipped clips, the same for every recipe.  Latency:
``--runs`` rounds, every model once per round on the same clip, order rotated, 20 ms
apart; ``x fp32`` is the p50 ratio to the fp32 artifact in the same run.  Fidelity:
cosine and SQNR of each recipe's logits against fp32 on the held-out clips.
PERF_COUNT: a second compilation with ``PERF_COUNT`` on, 5 calls, summed real time per
executed kernel type (``exec_type``) - the top ones are printed.

Measured on this machine (2-core AMD EPYC, AVX2, no VNNI; OpenVINO 2026.4, NNCF 3.4;
2 threads, 20 rounds; 2026-12-04), p50 ms and ratio to fp32 in the same run:

=====================  ===========  =============  ================  ==============  ============
model (input)          fp32         edgevid int8   read_model int8   plain int8      mixed int8
=====================  ===========  =============  ================  ==============  ============
see ``FIGURES`` below
=====================  ===========  =============  ================  ==============  ============
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from benchmarks.studies.quant_bench import load
from benchmarks.studies.runtimes import Candidate, measure
from quant.calib import read_calib
from quant.fidelity import fidelity
from quant.messages import first_line
from targets.base import Artifact
from targets.registry import TargetOptions, get_target

MODELS = ("x3d_xs", "x3d_s", "ghost_tsm", "convnet2d_s")


def _pytorchvideo_twin(model: torch.nn.Module, name: str, frames: int, crop: int) -> torch.nn.Module | None:
    """pytorchvideo's ``create_x3d`` module carrying ``model``'s weights (None without pytorchvideo)."""
    import sys

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))
    try:
        from tests import pvref
    except ImportError:
        return None
    finally:
        sys.path.remove(str(root))
    if not pvref.available() or name not in pvref.X3D_ARGS:
        return None
    from edge.convert import pytorchvideo_key

    pv = pvref.pytorchvideo_x3d(name, num_classes=model.state_dict()[next(
        k for k in model.state_dict() if k.endswith("proj.weight"))].shape[0], frames=frames, crop=crop)
    ours = model.state_dict()
    back = {pytorchvideo_key(k): k for k in ours}  # the rename is its own inverse (conv_t <-> conv_xy)
    pv.load_state_dict({k: ours[back[k]] for k in pv.state_dict()})
    return pv.eval()


def _nncf(model: Any, clips: list[np.ndarray], preset: str | None) -> Any:
    import nncf

    kw: dict[str, Any] = {} if preset is None else {
        "preset": nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        "subset_size": len(clips)}
    return nncf.quantize(model, nncf.Dataset(clips), **kw)


def recipes(name: str, model: torch.nn.Module, variant: Any, calib: Any, threads: int,
            tmp: Path) -> tuple[dict[str, tuple[Any, dict[str, Any]]], dict[str, str]]:
    """(recipe -> (compiled model, notes), recipe -> why it could not be built)."""
    import openvino as ov

    from targets.export import export_onnx

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    onnx_path = export_onnx(model, variant.input_shape, tmp / f"{name}.onnx").path
    clips = list(calib.clips)
    target = get_target("openvino", TargetOptions(threads=threads))
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for precision in ("fp32", "int8"):
        art = target.compile(onnx_path, variant.with_(precision=precision), tmp / f"{name}-{precision}",
                             calib=calib if precision == "int8" else None)
        ov_model = core.read_model(str(Artifact.read(art.path).model_path))
        out["fp32" if precision == "fp32" else "edgevid int8"] = (ov_model, {})
    builders: dict[str, Callable[[], Any]] = {
        "read_model int8": lambda: _nncf(core.read_model(str(onnx_path)), clips, "performance"),
        "mixed int8": lambda: _nncf(ov.convert_model(str(onnx_path)), clips, "mixed"),
        "plain int8": lambda: _nncf(ov.convert_model(model, example_input=torch.from_numpy(clips[0])), clips, None),
    }
    twin = _pytorchvideo_twin(model, name, variant.frames, variant.resolution)
    if twin is not None:
        builders["pytorchvideo plain int8"] = lambda: _nncf(
            ov.convert_model(twin, example_input=torch.from_numpy(clips[0])), clips, None)
    for key, build in builders.items():
        try:
            out[key] = (build(), {})
        except Exception as e:  # noqa: BLE001 - a recipe the tool cannot apply is a finding, not a crash
            failed[key] = first_line(e)
    for key, (m, notes) in out.items():
        ops = [op.get_type_name() for op in m.get_ops()]
        notes.update(fake_quantize=ops.count("FakeQuantize"), swish=ops.count("Swish"))
        out[key] = ((core.compile_model(m, "CPU", config), m), notes)
    return out, failed


def perf_counts(core: Any, model: Any, clip: np.ndarray, threads: int, calls: int = 5) -> dict[str, float]:
    """ms per call by executed kernel type (PERF_COUNT), largest first."""
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
              "PERF_COUNT": True}
    req = core.compile_model(model, "CPU", config).create_infer_request()
    req.infer({0: clip})
    totals: dict[str, float] = {}
    for _ in range(calls):
        req.infer({0: clip})
        for p in req.profiling_info:
            if p.status.name == "EXECUTED":
                key = f"{p.node_type}:{p.exec_type}"
                totals[key] = totals.get(key, 0.0) + p.real_time.total_seconds() * 1e3 / calls
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def bench_model(name: str, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    import openvino as ov

    model, variant, weights = load(name)
    trained = weights.startswith("trained")
    calib = read_calib(None, variant.input_shape, clips=args.calib_clips, held_out=8, progress=False,
                       mode="uniform" if trained else "stride")
    built, failed = recipes(name, model, variant, calib, args.threads, tmp)
    requests = {k: c.create_infer_request() for k, ((c, _), _) in built.items()}
    run = {k: (lambda r: (lambda x: np.array(r.infer({0: x})[0], copy=True)))(r) for k, r in requests.items()}
    ref = np.concatenate([run["fp32"](c) for c in calib.held_out])
    clip = calib.held_out[0]
    names = list(run)
    times = measure([Candidate(k, run[k]) for k in names], clip, args.runs, warmup=3, gap_s=0.02)
    core = ov.Core()
    base = float(np.median(times["fp32"]))
    rows = []
    for k in names:
        (_, ov_model), notes = built[k]
        got = np.concatenate([run[k](c) for c in calib.held_out])
        fid = fidelity(ref, got, ())
        perf = perf_counts(core, ov_model, clip, args.threads)
        rows.append({"model": name, "weights": weights.split(" (")[0], "input": list(variant.input_shape),
                     "recipe": k, "p50_ms": round(float(np.median(times[k])), 1),
                     "p90_ms": round(float(np.percentile(times[k], 90)), 1),
                     "vs_fp32": round(float(np.median(times[k])) / base, 3), "cosine": round(fid.cosine, 5),
                     "sqnr_db": fid.sqnr_db, **notes,
                     "perf_ms": {op: round(ms, 2) for op, ms in list(perf.items())[:8]}})
    rows += [{"model": name, "weights": weights.split(" (")[0], "input": list(variant.input_shape), "recipe": k,
              "failed": why} for k, why in failed.items()]
    return rows


def text(result: dict[str, Any]) -> str:
    head = ("model", "weights", "recipe", "p50 ms", "p90 ms", "x fp32", "FQ", "Swish", "cosine", "SQNR dB")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in result["rows"]:
        if "failed" in r:
            lines.append(f"{r['model']} | {r['weights']} | {r['recipe']} | failed: {r['failed'][:120]}")
            continue
        sqnr = r["sqnr_db"] if isinstance(r["sqnr_db"], str) else f"{r['sqnr_db']:.1f}"
        lines.append(" | ".join(str(x) for x in (r["model"], r["weights"], r["recipe"], r["p50_ms"], r["p90_ms"],
                                                 r["vs_fp32"], r["fake_quantize"], r["swish"], r["cosine"], sqnr)))
    lines.append("")
    lines.append("PERF_COUNT, ms per call by node type:kernel (top 8)")
    for r in (r for r in result["rows"] if "perf_ms" in r):
        lines.append(f"  {r['model']} {r['recipe']}: " + ", ".join(f"{k} {v}" for k, v in r["perf_ms"].items()))
    lines.append(f"threads {result['threads']}, {result['runs']} rotated rounds, calibration "
                 f"{result['calib_clips']} shipped clips; fidelity vs fp32 on 8 held-out clips")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-clips", type=int, default=32)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="also write the result JSON to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("nncf", "openvino"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ov-int8-") as tmp:
        for name in args.models:
            rows += bench_model(name, args, Path(tmp))
    from edge.core.io import atomic_write_text

    result = {"rows": rows, "threads": args.threads, "runs": args.runs, "calib_clips": args.calib_clips}
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1) if args.json else text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
