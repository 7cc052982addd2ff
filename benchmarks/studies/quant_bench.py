"""fp32 vs int8 (plain and mixed precision) on onnxruntime, OpenVINO and LiteRT, in one
process: latency and fidelity (the fpga target's integer figures: benchmarks.studies.fpga_sim).

    .venv/bin/python -m benchmarks.studies.quant_bench [--models x3d_xs x3d_s ghost_tsm] [--runs 10]
                                               [--runtimes onnxruntime openvino tflite]
                                               [--warmup 2] [--threads 2] [--calib-clips 32]
                                               [--held-out 32] [--method M] [--min-agreement 0.99]
                                               [--no-mixed] [--frames F] [--resolution R] [--json]

Weights: X3D-XS is the trained MutualNet checkpoint (``edge/checkpoints/
x3d_xs_mutual_synth10.pt``, full configuration w1.0-r128-f8, 10 synthetic motion
classes; clips sampled uniformly over each video, as it was trained); every other
model has no trained weights here and runs seeded random
weights with random BN affine terms and running statistics from one train-mode
forward (activations at a trained-like scale) - the ``weights`` column says which.
Their agreement is that of an untrained net (near-tied logits), not an accuracy figure.

Per model (its default input, or the checkpoint's): one ONNX export, then per
runtime the fp32 artifact, the int8 artifact of our recipe (``quant.ort`` /
``quant.openvino`` / ``targets.tflite.convert``, calibration method ``--method`` or
each runtime's default: percentile on onnxruntime, the error-minimising histogram
ranges on OpenVINO and LiteRT), the int8 artifact of the plain tool's defaults
(onnxruntime: ``quantize_static`` with no arguments; OpenVINO and LiteRT: the same
recipe with NNCF's / ai-edge-quantizer's own min/max ranges, ``int8-minmax``) and the
mixed-precision artifact (``edge.mixed.compile_mixed`` at ``--min-agreement``;
its row says which candidate it kept and how many nodes stayed float).  int8 is
calibrated on ``--calib-clips`` shipped clips (``quant.calib.read_calib``).
Fidelity of each artifact against torch fp32 on the ``--held-out`` shipped clips
that calibration did not see (``quant.fidelity``), with top-1 of both against
the clips' labels for the trained model; latency: ``--warmup`` calls each, then
``--runs`` rounds in which every artifact runs once on the same clip, order
rotated each round, 20 ms apart.  Reported: p50/p90 ms, p50 ratio to the same
runtime's fp32, agreement, cosine, SQNR, top-1.  The machine is shared and
drifts: quote ratios, measured without ``nice`` and with OMP_WAIT_POLICY=PASSIVE.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edge.core.errors import GateFailed
from edge.models import create_model
from edge.core.variant import Variant
from edge.models.registry import variant as zoo_variant
from benchmarks.studies.runtimes import Candidate, measure
from quant.calib import METHODS, default_method, read_calib
from quant.fidelity import fidelity
from targets.base import Artifact
from targets.registry import TargetOptions, get_target

RUNTIMES = ("onnxruntime", "openvino", "tflite")
MIXED_RUNTIMES = ("onnxruntime", "openvino")  # quant.mixed.TARGETS
TRAINED = {"x3d_xs": Path(__file__).resolve().parents[2] / "edge" / "checkpoints" / "x3d_xs_mutual_synth10.pt"}


def realistic(model: torch.nn.Module, input_shape: tuple[int, ...], seed: int = 0) -> torch.nn.Module:
    """Seeded random BN affine terms; running statistics from one train-mode forward (batch 2)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.25)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.reset_running_stats()
            m.momentum = None
        model.train()
        model(torch.randn((2,) + tuple(input_shape[1:]), generator=g))
    return model.eval()


def load(name: str, frames: int | None = None, resolution: int | None = None) -> tuple[torch.nn.Module, Variant, str]:
    """(model, variant, weights note): the trained checkpoint when there is one (at its own
    configuration), else random weights at ``frames`` x ``resolution`` (default: the model's)."""
    if name in TRAINED and TRAINED[name].is_file():
        from edge.checkpoint import load_checkpoint, load_model

        variant = load_checkpoint(TRAINED[name]).variant.with_(precision="fp32")
        model, _ = load_model(TRAINED[name], variant)
        return model.eval(), variant, f"trained ({TRAINED[name].name}, {variant.tag})"
    torch.manual_seed(0)
    variant = zoo_variant(name, frames=frames, resolution=resolution)
    return realistic(create_model(variant), variant.input_shape), variant, "random (no trained weights)"


def _ort_default(onnx_path: Path, variant: Variant, out: Path, calib) -> Artifact:
    """The plain tool's int8: ``quantize_static(model, out, reader)`` with every default."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from quant.onnx_io import io_specs, load_onnx

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib.clips)

        def get_next(self):
            c = next(self.it, None)
            return None if c is None else {"clip": c}

    out.mkdir(parents=True)
    quantize_static(str(onnx_path), str(out / "model.onnx"), Reader())
    spec_in, spec_out = io_specs(load_onnx(out / "model.onnx"), out / "model.onnx")
    return Artifact.create(out, target="onnxruntime", variant=variant.with_(precision="int8").tag, precision="int8",
                           input=spec_in, output=spec_out, model_file="model.onnx",
                           notes={"quant": {"tool": "quantize_static defaults (QDQ, S8S8, per-tensor, MinMax)"}})


def bench_model(name: str, args: argparse.Namespace, tmp: Path) -> list[dict[str, object]]:
    from targets.export import export_onnx
    from edge.mixed import compile_mixed

    model, base, weights = load(name, getattr(args, "frames", None), getattr(args, "resolution", None))
    trained = weights.startswith("trained")
    # the MutualNet checkpoint was trained on frames sampled uniformly over each video: read clips the same way
    calib = read_calib(None, base.input_shape, clips=args.calib_clips, held_out=args.held_out,
                       progress=False, mode="uniform" if trained else "stride")
    onnx_path = export_onnx(model, base.input_shape, tmp / f"{name}.onnx").path
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(c)).numpy() for c in calib.held_out])
    labels = calib.held_out_labels if trained else ()
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    info: dict[str, dict[str, object]] = {}
    for rt in args.runtimes:
        target = get_target(rt, TargetOptions(threads=args.threads))
        if not target.available():
            print(f"skip {rt}: {target.unavailable_reason()}")
            continue
        if rt == "tflite" and not target.can_compile():
            print(f"skip {rt}: the litert-torch converter is not installed (the tflite extra)")
            continue
        source = model if rt == "tflite" else onnx_path  # litert-torch converts the torch module
        method = args.method or default_method(rt)
        # the plain tool's int8: ORT's quantize_static defaults; NNCF / ai-edge-quantizer with their own min/max
        plain = ["int8-default"] if rt == "onnxruntime" else ["int8-minmax"] if method != "minmax" else []
        builds = ["fp32", "int8"] + plain + ([] if args.no_mixed or rt not in MIXED_RUNTIMES else ["int8-mixed"])
        for kind in builds:
            key = f"{rt} {kind}"
            out = tmp / name / key.replace(" ", "-")
            variant = base.with_(precision="fp32" if kind == "fp32" else "int8")
            t = time.perf_counter()
            extra: dict[str, object] = {}
            rt_calib = replace(calib, method="minmax" if kind == "int8-minmax" else method)
            extra["method"] = rt_calib.method if kind != "fp32" else ""
            if kind == "int8-default":
                art = _ort_default(onnx_path, variant, out, calib)
                extra["method"] = "ORT MinMax"
            elif kind == "int8-mixed":
                out.mkdir(parents=True)
                try:
                    art = compile_mixed(target, onnx_path, variant, out, rt_calib, args.min_agreement, rounds=2,
                                        runs=3)
                except GateFailed:
                    art = Artifact.read(out, verify=False)
                    extra["floor"] = "missed"
                m = art.notes["mixed"]
                extra.update(kept=m["kept"] or "best found", float_nodes=len(m["excluded_nodes"]),
                             candidates=len(m["candidates"]))
            else:
                art = target.compile(source, variant, out, calib=None if kind == "fp32" else rt_calib)
            build_s = time.perf_counter() - t
            runner = target.load(Artifact.read(art.path, verify=False).with_(status="ok"))
            got = np.concatenate([runner(c) for c in calib.held_out])
            info[key] = {"build_s": round(build_s, 1), **extra, **fidelity(ref, got, labels).to_json()}
            runners[key] = runner
    clip = calib.held_out[0]
    names = list(runners)
    times = measure([Candidate(k, runners[k]) for k in names], clip, args.runs, args.warmup, gap_s=0.02)
    rows = []
    for k in names:
        rt, precision = k.split()
        p50 = float(np.median(times[k]))
        fp32_p50 = float(np.median(times[f"{rt} fp32"]))
        rows.append({"model": name, "weights": weights, "input": list(base.input_shape), "runtime": rt,
                     "precision": precision, "p50_ms": round(p50, 1),
                     "p90_ms": round(float(np.percentile(times[k], 90)), 1),
                     "vs_fp32": round(p50 / fp32_p50, 3), **info[k]})
    return rows


def text(result: dict[str, object]) -> str:
    head = ("model", "weights", "runtime", "build", "ranges", "p50 ms", "p90 ms", "x fp32", "agree", "cosine",
            "SQNR dB",
            "top-1 fp32/int8", "mixed kept", "build s")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in result["rows"]:  # type: ignore[union-attr]
        sqnr = r["sqnr_db"] if isinstance(r["sqnr_db"], str) else f"{r['sqnr_db']:.1f}"
        top1 = "-" if r.get("top1_fp32") is None else f"{r['top1_fp32']:.3f}/{r['top1_int8']:.3f}"
        kept = f"{r['kept']} ({r['float_nodes']} float)" + (" FLOOR MISSED" if r.get("floor") else "") \
            if "kept" in r else ""
        lines.append(" | ".join(str(x) for x in (
            r["model"], r["weights"].split(" (")[0], r["runtime"], r["precision"], r.get("method", ""),
            r["p50_ms"], r["p90_ms"],
            r["vs_fp32"], f"{r['agreement']:.3f}", f"{r['cosine']:.4f}", sqnr, top1, kept, r["build_s"])))
    lines.append(f"threads {result['threads']}, {result['runs']} rotated rounds, calibration "
                 f"{result['calib_clips']} shipped clips, fidelity on "
                 f"{result['held_out']} held-out clips, mixed floor {result['min_agreement']}; "
                 f"load average {result['loadavg']}")
    weights = sorted({f"{r['model']}: {r['weights']}" for r in result["rows"]})  # type: ignore[union-attr]
    lines.extend(weights)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.quant_bench", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["x3d_xs", "x3d_s", "ghost_tsm"])
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-clips", type=int, default=32)
    p.add_argument("--held-out", type=int, default=32)
    p.add_argument("--method", choices=METHODS,
                   help="calibration method of the int8 build (default: each runtime's, quant.calib.default_method)")
    p.add_argument("--min-agreement", type=float, default=0.99, help="floor of the mixed-precision search")
    p.add_argument("--no-mixed", action="store_true", help="skip the mixed-precision builds")
    p.add_argument("--frames", type=int, help="input frames of the random-weight models (default: each model's)")
    p.add_argument("--resolution", type=int, help="input crop of the random-weight models (default: each model's)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="edgevid-qb-") as tmp:
        for name in args.models:
            rows += bench_model(name, args, Path(tmp))
            print(f"done {name}", flush=True)
    result = {"threads": args.threads, "runs": args.runs, "calib_clips": args.calib_clips,
              "method": args.method or "per runtime",
              "held_out": args.held_out, "min_agreement": args.min_agreement,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "nice": os.nice(0),
              "loadavg": [round(x, 1) for x in os.getloadavg()], "rows": rows}
    print(json.dumps(result, indent=1) if args.json else text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
