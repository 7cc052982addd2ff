"""fp32 vs int8 on onnxruntime and OpenVINO, in one process: latency and fidelity.

    .venv/bin/python -m benchmarks.quant_bench [--models x3d_xs x3d_s ghost_tsm] [--runs 10]
                                               [--warmup 2] [--threads 2] [--calib-clips 16]
                                               [--held-out 16] [--method minmax] [--json]

Per model (default input of each), from the same seeded weights (random BN affine
terms, running statistics estimated from one train-mode forward so activations
have a trained-like scale): one ONNX export, then the onnxruntime and openvino
targets' fp32 and int8 artifacts (int8 calibrated on ``--calib-clips`` shipped
clips, ``quant.calib.read_calib``).  Fidelity of each artifact against torch fp32
on the ``--held-out`` shipped clips that calibration did not see
(``quant.fidelity``); latency: ``--warmup`` calls each, then ``--runs`` rounds in
which every artifact runs once on the same clip, order rotated each round, 20 ms
apart.  Reported: p50/p90 ms, int8/fp32 p50 ratio per runtime, agreement, cosine,
SQNR.  The machine is shared and drifts: quote ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edge.models import create_model
from edge.variant import Variant
from quant.calib import read_calib
from quant.fidelity import fidelity
from targets.base import Artifact
from targets.registry import TargetOptions, get_target

RUNTIMES = ("onnxruntime", "openvino")


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


def bench_model(name: str, args: argparse.Namespace, tmp: Path) -> list[dict[str, object]]:
    from edge.export import export_onnx

    torch.manual_seed(0)
    base = Variant(name)
    model = realistic(create_model(base), base.input_shape)
    calib = read_calib(None, base.input_shape, clips=args.calib_clips, held_out=args.held_out, method=args.method,
                       progress=False)
    onnx_path = export_onnx(model, base.input_shape, tmp / f"{name}.onnx").path
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(c)).numpy() for c in calib.held_out])
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    info: dict[str, dict[str, object]] = {}
    for rt in RUNTIMES:
        target = get_target(rt, TargetOptions(threads=args.threads))
        if not target.available():
            print(f"skip {rt}: {target.unavailable_reason()}")
            continue
        for precision in ("fp32", "int8"):
            key = f"{rt} {precision}"
            t = time.perf_counter()
            art = target.compile(onnx_path, base.with_(precision=precision), tmp / name / key.replace(" ", "-"),
                                 calib=calib if precision == "int8" else None)
            build_s = time.perf_counter() - t
            runner = target.load(Artifact.read(art.path))
            got = np.concatenate([runner(c) for c in calib.held_out])
            info[key] = {"build_s": round(build_s, 1), **fidelity(ref, got, calib.held_out_labels).to_json()}
            runners[key] = runner
    clip = calib.held_out[0]
    names = list(runners)
    for k in names:
        for _ in range(args.warmup):
            runners[k](clip)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(args.runs):
        for k in names[i % len(names):] + names[:i % len(names)]:
            time.sleep(0.02)
            t = time.perf_counter()
            runners[k](clip)
            times[k].append((time.perf_counter() - t) * 1e3)
    rows = []
    for k in names:
        rt, precision = k.split()
        p50 = float(np.median(times[k]))
        fp32_p50 = float(np.median(times[f"{rt} fp32"]))
        rows.append({"model": name, "input": list(base.input_shape), "runtime": rt, "precision": precision,
                     "p50_ms": round(p50, 1), "p90_ms": round(float(np.percentile(times[k], 90)), 1),
                     "vs_fp32": round(p50 / fp32_p50, 3), **info[k]})
    return rows


def text(result: dict[str, object]) -> str:
    head = ("model", "runtime", "prec", "p50 ms", "p90 ms", "x fp32", "agree", "cosine", "SQNR dB", "build s")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in result["rows"]:  # type: ignore[union-attr]
        lines.append(" | ".join(str(x) for x in (
            r["model"], r["runtime"], r["precision"], r["p50_ms"], r["p90_ms"], r["vs_fp32"],
            f"{r['agreement']:.3f}", f"{r['cosine']:.4f}", f"{r['sqnr_db']:.1f}", r["build_s"])))
    lines.append(f"threads {result['threads']}, {result['runs']} rotated rounds, calibration "
                 f"{result['calib_clips']} shipped clips ({result['method']}), fidelity on "
                 f"{result['held_out']} held-out clips; load average {result['loadavg']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quant_bench", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["x3d_xs", "x3d_s", "ghost_tsm"])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-clips", type=int, default=16)
    p.add_argument("--held-out", type=int, default=16)
    p.add_argument("--method", default="minmax", choices=("minmax", "percentile", "entropy"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="edgevid-qb-") as tmp:
        for name in args.models:
            rows += bench_model(name, args, Path(tmp))
            print(f"done {name}", flush=True)
    result = {"threads": args.threads, "runs": args.runs, "calib_clips": args.calib_clips, "method": args.method,
              "held_out": args.held_out, "loadavg": [round(x, 1) for x in os.getloadavg()], "rows": rows}
    print(json.dumps(result, indent=1) if args.json else text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
