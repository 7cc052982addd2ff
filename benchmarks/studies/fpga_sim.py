"""FPGA int8 (power-of-two) figures from the integer simulator.

For each model (X3D-XS with hard activations, Ghost-TSM, ConvNet2D-S by default,
each at its default input unless --frames/--resolution say otherwise): export ->
lower (fp32, hard activations) -> pow2 quantize (calibration: the first
--calib-clips shipped clips) -> simulate on the next --clips shipped clips (then
N(0, 1) clips when the shipped set runs out), and print

* resources counted by the simulator: total MACs, int8 weight + int32 bias
  bytes, int8 activation bytes, peak on-chip activation buffer;
* device (simulator, DPU rounding) vs the QDQ model on ONNX Runtime (float QDQ
  emulation, graph optimisations off): top-1 agreement (raw, and tie-aware: the
  device's top class is one of ORT's tied top classes), max logit error in LSBs
  of the output scale;
* int8 (device) vs the lowered fp32 model: fidelity (quant.fidelity);
* speed: simulator and ORT-QDQ ms per clip (median, same process, alternating).

Usage::

    .venv/bin/python -m benchmarks.studies.fpga_sim                       # defaults
    .venv/bin/python -m benchmarks.studies.fpga_sim --resolution 64 --frames 4 --clips 40
    .venv/bin/python -m benchmarks.studies.fpga_sim --json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

MODELS = ("x3d_xs", "ghost_tsm", "convnet2d_s")


def _session(path: Path, optimise: bool) -> Any:
    from quant.ort_session import ort_session

    return ort_session(Path(path), optimise=optimise, spin=True)


def bench_model(name: str, frames: int | None, resolution: int | None, clips: int, calib_clips: int,
                method: str) -> dict[str, Any]:
    import onnx

    import calib_data
    from targets.export import export_onnx
    from edge.models import create_model
    from edge.models.registry import variant as zoo_variant
    from quant.fidelity import fidelity
    from quant.intsim import Simulator
    from quant.pow2 import output_fraction, quantize
    from targets.checker import check
    from targets.lowering import lower
    from targets.opset import FPGA_OPSET

    v = zoo_variant(name, resolution=resolution, frames=frames)
    t0 = time.perf_counter()
    with TemporaryDirectory() as tmp:
        d = Path(tmp)
        export_onnx(create_model(v, 400).eval(), v.input_shape, d / "src.onnx")
        low = lower(onnx.load(str(d / "src.onnx")), FPGA_OPSET, hard_activations=True)
        onnx.save(low, str(d / "low.onnx"))
        shipped = [c for c, _ in calib_data.load_clips(calib_data.shipped_manifest(), frames=v.frames,
                                                        resolution=v.resolution, limit=calib_clips + clips)]
        rng = np.random.default_rng(0)
        held = shipped[calib_clips:] + [rng.standard_normal(v.input_shape).astype(np.float32)
                                        for _ in range(max(0, clips - len(shipped) + calib_clips))]
        t1 = time.perf_counter()
        qdq, report = quantize(low, shipped[:calib_clips], method)
        t2 = time.perf_counter()
        onnx.save(qdq, str(d / "q.onnx"))
        reasons = check(qdq, FPGA_OPSET)
        f_out = output_fraction(qdq)
        sim = Simulator(qdq)
        ref32, qref = _session(d / "low.onnx", True), _session(d / "q.onnx", False)
        qfast = _session(d / "q.onnx", True)
        got, ref, fp32 = [], [], []
        t_sim, t_ort = [], []
        for k, clip in enumerate(held[:clips]):
            order = ("sim", "ort") if k % 2 == 0 else ("ort", "sim")
            for who in order:
                t = time.perf_counter()
                if who == "sim":
                    got.append(sim(clip)[0])
                    t_sim.append(time.perf_counter() - t)
                else:
                    qfast.run(None, {"clip": clip})
                    t_ort.append(time.perf_counter() - t)
            ref.append(qref.run(None, {"clip": clip})[0][0])
            fp32.append(ref32.run(None, {"clip": clip})[0][0])
        got_a, ref_a = np.array(got), np.array(ref)
        tie_agree = float(np.mean([r[np.argmax(g)] == r.max() for g, r in zip(got_a, ref_a)]))
        res = sim.resources()
        fid = fidelity(np.array(fp32), got_a).to_json()
    return {"model": name, "input": list(v.input_shape), "check": "pass" if not reasons else reasons[:3],
            "method": method, "calib_clips": report.clips, "eval_clips": len(got),
            "eval_shipped": min(len(held), len(shipped) - calib_clips), "output_fraction": f_out,
            "macs": res["macs"], "weight_bytes": res["weight_bytes"], "activation_bytes": res["activation_bytes"],
            "peak_buffer_bytes": res["peak_buffer_bytes"], "layers": len(res["layers"]),
            "sim_vs_ort_top1": float(np.mean(got_a.argmax(1) == ref_a.argmax(1))),
            "sim_vs_ort_top1_tie_aware": tie_agree,
            "sim_vs_ort_max_lsb": float(np.abs(got_a - ref_a).max() * 2.0 ** f_out),
            "int8_vs_fp32": fid, "sim_ms": 1e3 * float(np.median(t_sim)), "ort_qdq_ms": 1e3 * float(np.median(t_ort)),
            "overflows": sim.overflows, "prepare_s": t1 - t0, "quantize_s": t2 - t1}


def _text(r: dict[str, Any]) -> str:
    f = r["int8_vs_fp32"]
    return (f"{r['model']} {tuple(r['input'])} check {r['check']}  method {r['method']}, calib {r['calib_clips']} "
            f"clips, eval {r['eval_clips']} clips ({r['eval_shipped']} shipped)\n"
            f"  MACs {r['macs'] / 1e6:.1f} M  weights {r['weight_bytes'] / 1e6:.2f} MB  activations "
            f"{r['activation_bytes'] / 1e6:.2f} MB  peak buffer {r['peak_buffer_bytes'] / 1e3:.0f} kB  "
            f"({r['layers']} MAC layers, {r['overflows']} int32 overflows)\n"
            f"  sim vs ORT-QDQ: top-1 {r['sim_vs_ort_top1']:.3f} (tie-aware {r['sim_vs_ort_top1_tie_aware']:.3f}), "
            f"max logit error {r['sim_vs_ort_max_lsb']:.0f} LSB (output scale 2^-{r['output_fraction']})\n"
            f"  int8 sim vs fp32 lowered: agreement {f['agreement']:.3f} cosine {f['cosine']:.4f} "
            f"SQNR {f['sqnr_db'] if isinstance(f['sqnr_db'], str) else round(f['sqnr_db'], 1)} dB\n"
            f"  speed: sim {r['sim_ms']:.0f} ms/clip, ORT QDQ {r['ort_qdq_ms']:.0f} ms/clip "
            f"(sim / ORT {r['sim_ms'] / max(r['ort_qdq_ms'], 1e-9):.1f}x); quantize {r['quantize_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--frames", type=int, help="frames (default: each model's)")
    p.add_argument("--resolution", type=int, help="resolution (default: each model's)")
    p.add_argument("--clips", type=int, default=20, help="evaluation clips (default %(default)s)")
    p.add_argument("--calib-clips", type=int, default=16, help="calibration clips (default %(default)s)")
    p.add_argument("--method", default="mse", choices=("mse", "maxabs"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for name in args.models:
        r = bench_model(name, args.frames, args.resolution, args.clips, args.calib_clips, args.method)
        rows.append(r)
        if not args.json:
            print(_text(r), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
