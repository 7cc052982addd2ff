"""FLOPs cut vs latency cut of pruned X3D-XS on ONNX Runtime and OpenVINO (fp32).

Random weights (latency does not depend on them).  One process: every variant is
pruned (``edge.prune.prune_job``), compiled for each target with 2 threads, loaded
once, warmed up, then timed in rotating order on the same clip; the table gives
p50 latency ratios against the unpruned model on the same target (this machine
drifts, so only ratios are meaningful).

    .venv/bin/python -m benchmarks.studies.prune_bench [--ratios 0.3,0.5] [--rounds 20] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.core.variant import Variant


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="x3d_xs")
    ap.add_argument("--ratios", default="0.3,0.5")
    ap.add_argument("--targets", default="onnxruntime,openvino")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20, help="timed calls per artifact (rotating order)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)

    from edge.prune import prune_job
    from edge.models.registry import variant as zoo_variant

    work = Path(args.out or tempfile.mkdtemp(prefix="prune_bench."))
    ratios = [0.0] + [float(r) for r in args.ratios.split(",")]
    base = zoo_variant(args.model)
    gflops: dict[float, float] = {}
    ckpts: dict[float, Path | None] = {0.0: None}
    for r in ratios[1:]:
        s = prune_job(args.model, None, r, work / f"p{r}.pt")
        gflops[r], gflops[0.0] = s["gflops_after"], s["gflops_before"]
        ckpts[r] = work / f"p{r}.pt"
    p50s = latency_p50(base, ckpts, args.targets.split(","), args.threads, args.rounds, args.warmup, work)
    keys = list(p50s)
    rows = []
    for (t, r) in keys:
        p50, p50_0 = p50s[(t, r)], p50s[(t, 0.0)]
        g0 = gflops.get(0.0)
        rows.append({"target": t, "prune": r, "gflops": gflops.get(r, g0), "p50_ms": round(p50, 2),
                     "flops_cut": 0.0 if r == 0 else 1 - gflops[r] / g0, "latency_cut": 1 - p50 / p50_0})
    print(f"{'target':12} {'prune':>5} {'GFLOPs':>7} {'FLOPs cut':>9} {'p50 ms':>8} {'latency cut':>11}")
    for row in rows:
        print(f"{row['target']:12} {row['prune']:5.2f} {row['gflops']:7.4f} {row['flops_cut']:9.1%} "
              f"{row['p50_ms']:8.2f} {row['latency_cut']:11.1%}")
    (work / "prune_bench.json").write_text(json.dumps(rows, indent=2))
    return 0


def latency_p50(base: Variant, ckpts: dict[float, Path | None], targets: list[str], threads: int, rounds: int,
                warmup: int, work: Path) -> dict[tuple[str, float], float]:
    """p50 latency (ms) of ``base`` pruned at each ratio of ``ckpts`` (checkpoint from
    ``edgevid prune``; None: unpruned, untrained weights) on each target.

    One process: every (target, ratio) artifact is compiled with ``threads`` threads and
    loaded once, warmed up ``warmup`` calls, then timed ``rounds`` times in rotating order
    on the same random clip (so drift of a shared machine hits every artifact alike)."""
    from edge.compile import compile_variant
    from targets.registry import TargetOptions, get_target

    runners = {}
    for r, ckpt in ckpts.items():
        for t in targets:
            opts = TargetOptions(threads=threads)
            art = compile_variant(base.with_(prune=r), t, work / f"{t}-p{r}", ckpt=ckpt, options=opts)
            runners[(t, r)] = get_target(t, opts).load(art)
    clip = np.random.default_rng(0).standard_normal(base.input_shape, dtype=np.float32)
    keys = list(runners)
    for k in keys:
        for _ in range(warmup):
            runners[k](clip)
    samples: dict[tuple[str, float], list[float]] = {k: [] for k in keys}
    for i in range(rounds):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            t0 = time.perf_counter()
            runners[k](clip)
            samples[k].append(time.perf_counter() - t0)
    for k in keys:
        runners[k].close()
    return {k: float(np.median(v)) * 1e3 for k, v in samples.items()}


if __name__ == "__main__":
    raise SystemExit(main())
