"""The 3D networks of the field in the zoo - R(2+1)D-18, R(2+1)D-50, SlowFast-R50, S3D, S3D-G - at
their edge configurations: fp32 and int8 latency on onnxruntime and OpenVINO in one
run, and which targets take each network (and why not).

    .venv/bin/python -m benchmarks.studies.new_models [--models r2plus1d_18 r2plus1d_r50 slowfast_r50 s3d s3dg]
                                                      [--runs 10] [--threads 2] [--calib-clips 16]
                                                      [--held-out 16] [--json]

Edge configurations (:data:`EDGE`): R(2+1)D-18 and -50 at 8 x 112 (what Jetson users
run), SlowFast at 32 x 160 (its 32 Fast / 4 Slow frames at a 160 crop), S3D / S3D-G at 16 x 112 (the fewest frames at which their last temporal pool
still has two frames to pool).  Weights: seeded random with trained-like BN
statistics (``benchmarks.studies.quant_bench.realistic``): no trained weights of
these networks ship, so the fidelity columns (SQNR against torch fp32 on the
held-out shipped clips) describe the quantizer, not an accuracy.  Latency and
fidelity come from ``quant_bench.bench_model`` (one process, ``--runs`` rotated
rounds on the same clip, every artifact once per round; int8 calibrated on
``--calib-clips`` shipped clips with each runtime's default method).

The targets table: for every registered target, whether this machine has its
runtime, and what the target's own check says of the network's fp32 ONNX export
(fpga: also after ``edgevid lower``, with and without ``--hard-activations``;
tflite: after the Conv3d -> Conv2d lowering its compile applies).

Measured 2026-12-04 (this command, defaults; 2-core AMD EPYC with AVX-512 VNNI, 2
threads, OMP_WAIT_POLICY=PASSIVE, the machine otherwise idle), p50 ms and int8 / fp32:

=============  =======  ===========  ===========  ==========  ===========
model          input    ORT fp32     ORT int8     OV fp32     OV int8
=============  =======  ===========  ===========  ==========  ===========
r2plus1d_18    8x112    132.6        48.3 (0.36)  107.4       26.5 (0.25)
r2plus1d_r50   8x112    55.6         21.4 (0.39)  38.6        12.0 (0.31)
slowfast_r50   32x160   136.6        340.6 (2.49) 79.0        26.1 (0.33)
s3d            16x112   43.0         26.1 (0.61)  27.4        9.9 (0.36)
s3dg           16x112   31.7         27.1 (0.85)  22.3        8.2 (0.37)
=============  =======  ===========  ===========  ==========  ===========

- OpenVINO int8 pays 2.7-4x on all five.  onnxruntime int8 was 2.5x *slower* than its
  fp32 on SlowFast in this run: its Fast stem (3 -> 8 channels, 5x7x7) ran 5x slower as
  QLinearConv than in fp32; ``quant.ort`` now keeps such convs float (rule
  ``slow_int8_convs``).  Rerun (``--models slowfast_r50``): onnxruntime fp32 146.5 ms,
  int8 94.3 ms (0.64x), SQNR unchanged (26.6 dB); OpenVINO 81.1 / 25.8 ms (0.32x).
- Logit SQNR of int8 against torch fp32 (random weights, 16 clips): 16-27 dB with the
  default ranges except S3D-G, 4.7-5 dB on both runtimes and with either range method.
  Not its gates: the random S3D-G's logits reach +-3800 (std 644 at 16 x 64), and
  keeping every Sigmoid, Mul, ReduceMean or gate conv float moves its onnxruntime
  SQNR by under 2 dB (6.1 dB all int8); a trained S3D-G is needed to judge it.
  Min/max ranges on OpenVINO: 3.6-15 dB, histogram: 16-24 dB.
- Targets: onnxruntime, OpenVINO and TensorRT's check take every one (TensorRT itself
  is not installed here); LiteRT's compile lowers every Conv3d and 3-D pool (the ONNX
  check lists 37-129 of them, none left after the lowering); the fpga set takes all
  of them exactly, S3D-G only with ``--hard-activations`` (37 Sigmoid nodes of its
  gates otherwise).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.studies.quant_bench import bench_model, load, text
from edge.core.errors import BadInput, GateFailed
from targets.export import export_onnx
from targets.registry import TARGETS, TargetOptions, get_target

EDGE: dict[str, tuple[int, int]] = {"r2plus1d_18": (8, 112), "r2plus1d_r50": (8, 112), "slowfast_r50": (32, 160),
                                    "s3d": (16, 112), "s3dg": (16, 112)}


def _first(reasons: list[str]) -> str:
    return f"{len(reasons)} reason(s), first: {reasons[0]}" if reasons else "ok"


def targets_of(name: str, tmp: Path) -> list[dict[str, Any]]:
    """One row per target: runtime present, and its check of the network (see the module doc)."""
    frames, resolution = EDGE[name]
    model, variant, _ = load(name, frames, resolution)
    onnx_path = export_onnx(model, variant.input_shape, tmp / f"{name}-targets.onnx").path
    rows = []
    for tname in TARGETS:
        target = get_target(tname, TargetOptions())
        row: dict[str, Any] = {"model": name, "target": tname, "runtime": target.available() or
                               target.unavailable_reason()}
        if tname == "fpga":
            for hard in (False, True):
                try:
                    art = get_target("fpga", TargetOptions(hard_activations=hard)).compile(
                        model, variant, tmp / f"{name}-fpga-{hard}")
                    row["hard" if hard else "exact"] = f"lowered: {art.status}"
                except (BadInput, GateFailed) as e:  # "<dir>: N node(s) outside ...:" then one line per node
                    lines = [line.strip() for line in str(e).splitlines()]
                    row["hard" if hard else "exact"] = lines[0].split(": ", 1)[-1] + (f" first: {lines[1]}"
                                                                                      if len(lines) > 1 else "")
        elif tname == "tflite":
            from targets.tflite.lower2d import has_3d, to_2d

            low = to_2d(model, frames, resolution)
            row["exact"] = "onnx check: " + _first(target.check(onnx_path)) + \
                f"; after compile's lowering: {'3-D modules left' if has_3d(low) else 'no 3-D module left'}"
        else:
            row["exact"] = _first(target.check(onnx_path))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.new_models", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(EDGE), choices=list(EDGE))
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-clips", type=int, default=16)
    p.add_argument("--held-out", type=int, default=16)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    rows: list[dict[str, Any]] = []
    target_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgevid-nm-") as tmp:
        for name in args.models:
            frames, resolution = EDGE[name]
            qargs = argparse.Namespace(runtimes=["onnxruntime", "openvino"], runs=args.runs, warmup=args.warmup,
                                       threads=args.threads, calib_clips=args.calib_clips, held_out=args.held_out,
                                       method=None, min_agreement=0.99, no_mixed=True, frames=frames,
                                       resolution=resolution)
            rows += bench_model(name, qargs, Path(tmp))
            target_rows += targets_of(name, Path(tmp))
            print(f"done {name}", flush=True)
    result = {"threads": args.threads, "runs": args.runs, "calib_clips": args.calib_clips, "held_out": args.held_out,
              "min_agreement": "-", "edge": {m: EDGE[m] for m in args.models},
              "loadavg": [round(x, 1) for x in os.getloadavg()], "rows": rows, "targets": target_rows}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(text(result))
    print()
    print(" | ".join(("model", "target", "runtime here", "check (exact)", "with --hard-activations")))
    for r in target_rows:
        print(" | ".join(str(x) for x in (r["model"], r["target"], r["runtime"], r.get("exact", ""),
                                          r.get("hard", "-"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
