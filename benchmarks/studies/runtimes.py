"""fp32 latency of X3D-XS and X3D-S across runtimes, measured in one process.

    .venv/bin/python -m benchmarks.studies.runtimes [--models x3d_xs x3d_s] [--runs 20] [--warmup 3]
                                            [--threads 2] [--gap-ms 20] [--only PATTERN...] [--json]

Candidates (each skipped with its reason when its runtime is absent):

* torch eager - ``create_model`` in eval mode under ``torch.inference_mode``;
* onnxruntime - the ``onnxruntime`` target's artifact (CPU EP, ORT_ENABLE_ALL);
* openvino (ONNX FE) - the ``openvino`` target's artifact (IR from the ONNX file);
* openvino (torch FE) - ``ov.convert_model(module, example_input=clip)`` compiled
  with the same configuration as the target;
* tflite (lowered) - the ``tflite`` target's artifact, when ``targets/tflite/``
  exists and its runtime is installed.

Method: every candidate is built once from the same seeded weights (random BN
statistics, so activations do not fade to zero as with untrained BNs) and its
logits are checked against torch eager on one clip; then ``--warmup`` calls each; then
``--runs`` rounds in which every candidate runs once on the same clip, the order
rotated by one each round so that no candidate always follows the same neighbour.
``--gap-ms`` of sleep between calls lets one runtime's spinning worker threads park
before the next one runs.  Every runtime gets ``--threads`` threads (torch
``set_num_threads``, ORT intra-op threads, OpenVINO INFERENCE_NUM_THREADS, TFLite
interpreter threads).  Reported: p50 and p90 latency, the ratio of p50 to torch
eager's p50, build time (the target's compile from the exported ONNX file, whose
export time is printed once; for the torch front end, convert + compile), load
time (artifact -> runner; for the torch front end, the compile of the converted
model) and the max abs logit difference from torch eager.
This machine drifts by ~20 % between runs: quote ratios, not absolute times.

On a machine shared with other jobs (load average above the core count) run it
with ``OMP_WAIT_POLICY=PASSIVE``: torch's OpenMP workers spin at every barrier,
and on an oversubscribed CPU each barrier waits for a descheduled thread (measured
here at load ~10 on 2 cores: ReLU of a 54x4x40x40 tensor takes 0.4 ms on one
thread, 15.8 ms on two, 0.34 ms on two with PASSIVE), which makes torch eager look
ten times slower than it is.  The policy in force is printed with the results.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edge.core.errors import BadInput
from edge.models import create_model
from edge.core.variant import Variant
from edge.models.registry import variant as zoo_variant
from targets.registry import TargetOptions, get_target


@dataclass
class Candidate:
    name: str
    run: Callable[[np.ndarray], np.ndarray]
    build_s: float | None = None  # compile (from the exported ONNX) or convert + compile
    load_ms: float | None = None
    max_abs_diff: float | None = None


def _torch_eager(model: torch.nn.Module) -> Candidate:
    def run(clip: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(clip)).numpy()
    return Candidate("torch eager", run)


def _target(name: str, label: str, model_or_onnx: torch.nn.Module | Path, variant: Variant, workdir: Path,
            threads: int) -> Candidate | str:
    """A candidate from a target's artifact, or the reason it is skipped."""
    try:
        target = get_target(name, TargetOptions(threads=threads))
    except ImportError as e:  # the target module itself is not there yet
        return f"skipped {label}: target module missing ({e})"
    if not target.available():
        return f"skipped {label}: {target.unavailable_reason()}"
    t = time.perf_counter()
    try:
        art = target.compile(model_or_onnx, variant, workdir / name)
    except BadInput as e:  # e.g. a converter extra that is not installed in this environment
        return f"skipped {label}: {e}"
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    runner = target.load(art)
    return Candidate(label, runner, build_s=build_s, load_ms=(time.perf_counter() - t) * 1e3)


def _openvino_torch_fe(model: torch.nn.Module, variant: Variant, threads: int) -> Candidate | str:
    try:
        import openvino as ov
    except ImportError:
        return "skipped openvino (torch FE): openvino is not installed"
    from targets.openvino import OpenVinoTarget

    config = OpenVinoTarget(TargetOptions(threads=threads)).compile_config("fp32")
    t0 = time.perf_counter()
    converted = ov.convert_model(model, example_input=torch.randn(*variant.input_shape))
    t = time.perf_counter()
    request = ov.Core().compile_model(converted, "CPU", config).create_infer_request()
    t1 = time.perf_counter()
    return Candidate("openvino (torch FE)", lambda clip: np.array(request.infer({0: clip})[0]),
                     build_s=t1 - t0, load_ms=(t1 - t) * 1e3)


BUILDERS: dict[str, Callable[..., Candidate | str]] = {
    "onnxruntime": lambda m, onnx, v, wd, th: _target("onnxruntime", "onnxruntime", onnx, v, wd, th),
    "openvino (ONNX FE)": lambda m, onnx, v, wd, th: _target("openvino", "openvino (ONNX FE)", onnx, v, wd, th),
    "openvino (torch FE)": lambda m, onnx, v, wd, th: _openvino_torch_fe(m, v, th),
    "tflite (lowered)": lambda m, onnx, v, wd, th: _target("tflite", "tflite (lowered)", m, v, wd, th),
}


def _randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Random BN statistics and affine terms (seeded), so activations look like a trained
    network's rather than decaying towards zero through identity-initialised BNs."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def candidates(name: str, threads: int, workdir: Path,
               only: list[str]) -> tuple[list[Candidate], list[str], np.ndarray]:
    """The candidates for model ``name`` at its default input (torch eager first, then
    those matching a pattern of ``only``), the skip reasons, and the clip."""
    from targets.export import export_onnx

    variant = zoo_variant(name)
    torch.manual_seed(0)
    model = _randomize_bn(create_model(variant))
    clip = np.random.default_rng(0).standard_normal(variant.input_shape, dtype=np.float32)
    t = time.perf_counter()
    onnx_path = export_onnx(model, variant.input_shape, workdir / f"{name}.onnx").path
    export_s = time.perf_counter() - t
    built: list[Candidate | str] = [_torch_eager(model)]
    built += [build(model, onnx_path, variant, workdir, threads) for label, build in BUILDERS.items()
              if any(fnmatch.fnmatch(label, pattern) for pattern in only)]
    built.append(f"ONNX export (shared by the ONNX-based candidates, not in their build s) took {export_s:.1f} s")
    ready = [c for c in built if isinstance(c, Candidate)]
    notes = [c for c in built if isinstance(c, str)]
    ref = ready[0].run(clip)
    for c in ready:
        c.max_abs_diff = float(np.abs(c.run(clip) - ref).max())
    return ready, notes, clip


def measure(cands: list[Candidate], clip: np.ndarray, runs: int, warmup: int, gap_s: float) -> dict[str, list[float]]:
    """Raw latencies (ms) per candidate: warm-up, then ``runs`` rotated rounds."""
    for c in cands:
        for _ in range(warmup):
            c.run(clip)
    times: dict[str, list[float]] = {c.name: [] for c in cands}
    for i in range(runs):
        k = i % len(cands)
        for c in cands[k:] + cands[:k]:
            time.sleep(gap_s)
            t = time.perf_counter()
            c.run(clip)
            times[c.name].append((time.perf_counter() - t) * 1e3)
    return times


def bench(models: list[str], runs: int, warmup: int, threads: int, gap_ms: float,
          only: list[str] | None = None) -> dict[str, object]:
    torch.set_num_threads(threads)
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="edgevid-rt-") as tmp:
        for name in models:
            cands, model_notes, clip = candidates(name, threads, Path(tmp) / name, only or ["*"])
            notes += [f"{name}: {n}" for n in model_notes]
            times = measure(cands, clip, runs, warmup, gap_ms / 1e3)
            base = float(np.median(times[cands[0].name]))
            for c in cands:
                t = np.asarray(times[c.name])
                rows.append({"model": name, "input": list(zoo_variant(name).input_shape), "runtime": c.name,
                             "p50_ms": round(float(np.median(t)), 2), "p90_ms": round(float(np.percentile(t, 90)), 2),
                             "vs_torch": round(float(np.median(t)) / base, 3),
                             "build_s": None if c.build_s is None else round(c.build_s, 2),
                             "load_ms": None if c.load_ms is None else round(c.load_ms, 1),
                             "max_abs_diff": c.max_abs_diff, "samples_ms": [round(x, 3) for x in t]})
    return {"threads": threads, "runs": runs, "warmup": warmup, "gap_ms": gap_ms, "loadavg": os.getloadavg(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "rows": rows, "notes": notes}


def text(result: dict[str, object]) -> str:
    head = ("model", "input", "runtime", "p50 ms", "p90 ms", "x torch", "build s", "load ms", "max|diff|")
    rows = [(r["model"], "x".join(map(str, r["input"][2:])), r["runtime"], f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}",
             f"{r['vs_torch']:.2f}", "-" if r["build_s"] is None else f"{r['build_s']:.1f}",
             "-" if r["load_ms"] is None else f"{r['load_ms']:.0f}", f"{r['max_abs_diff']:.1e}")
            for r in result["rows"]]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    la = ", ".join(f"{x:.1f}" for x in result["loadavg"])
    lines.append(f"{result['threads']} threads, {result['runs']} rotated rounds after {result['warmup']} warm-up "
                 f"calls, {result['gap_ms']:g} ms gap; OMP_WAIT_POLICY {result['omp_wait_policy']}; "
                 f"load average at the end {la}")
    lines += result["notes"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["x3d_xs", "x3d_s"])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gap-ms", type=float, default=20.0)
    p.add_argument("--only", nargs="+", default=["*"], metavar="PATTERN",
                   help=f"candidates to compare with torch eager (fnmatch patterns over: {', '.join(BUILDERS)})")
    p.add_argument("--json", action="store_true", help="print JSON (raw samples included)")
    args = p.parse_args(argv)
    result = bench(args.models, args.runs, args.warmup, args.threads, args.gap_ms, args.only)
    print(json.dumps(result, indent=2) if args.json else text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
