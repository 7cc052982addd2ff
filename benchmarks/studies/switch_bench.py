"""Run-time switching on the shipped MutualNet X3D-XS: accuracy and latency per
configuration, then a stream of the real clip under a budget between the cheapest
and the most expensive configuration (optionally with injected CPU load).

    python -m benchmarks.studies.switch_bench [--out DIR] [--configs w0.25-r96-f4,...]
        [--threads 1] [--affinity CPU] [--runs 30] [--budget-ms X] [--load START:STOP]
        [--video calib_data/shipped/real/bikes.mp4] [--window 16] [--stride 2] [--json]

1. compiles each configuration from ``edge/checkpoints/x3d_xs_mutual_synth10.pt``
   for onnxruntime fp32 into ``OUT/onnxruntime/TAG`` (reused when already there)
   with ``edge.compile.compile_variant(..., ckpt=...)``, which records the
   configuration's held-out top-1 (the checkpoint's table) in
   ``notes["accuracy"]`` and the class names in ``notes["classes"]``;
2. measures every artifact with ``benchmarks.harness`` (rotating order, same
   process, pinned) into ``OUT/switch.sqlite``;
3. streams the video through ``edge.run`` with the budget (default: the
   geometric mean of the cheapest and the most expensive p90) and prints the
   figures: per configuration accuracy, p90 and clips run; share of clips within
   budget; switch cost; memory of all runners.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "edge" / "checkpoints" / "x3d_xs_mutual_synth10.pt"
VIDEO = ROOT / "calib_data" / "shipped" / "real" / "bikes.mp4"
# a ladder along the checkpoint's accuracy/GFLOPs front (see edge/checkpoints/README.md)
CONFIGS = "w0.25-r96-f4,w0.25-r112-f8,w0.75-r96-f4,w1.0-r96-f8,w1.0-r128-f8"

log = logging.getLogger(__name__)


class CpuHog:
    """``processes`` busy-loop Python processes pinned to ``cpus`` between ``start`` and
    ``stop`` (or while a ``with`` block runs): injected CPU load."""

    def __init__(self, cpus: Sequence[int], processes: int = 1) -> None:
        self.code = f"import os\nos.sched_setaffinity(0, {sorted(cpus)!r})\nwhile True:\n    pass\n"
        self.processes = processes
        self.procs: list[subprocess.Popen] = []

    def start(self) -> "CpuHog":
        self.procs = [subprocess.Popen([sys.executable, "-c", self.code]) for _ in range(self.processes)]
        return self

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []

    def __enter__(self) -> "CpuHog":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build(configs: Sequence[str], out: Path) -> list[Path]:
    """Compile (or reuse) one onnxruntime fp32 artifact per configuration from the shipped
    checkpoint (``compile_variant`` materialises it and records its top-1 and class names)."""
    from edge.models.slim import SlimConfig
    from targets.base import ARTIFACT_JSON, Artifact

    paths = []
    for text in configs:
        variant = SlimConfig.parse(text).variant("x3d_xs")
        folder = out / "onnxruntime" / variant.tag
        paths.append(folder)
        if (folder / ARTIFACT_JSON).is_file() and Artifact.read(folder, verify=False).status == "ok":
            continue
        import torch

        from edge.compile import compile_variant

        torch.set_num_threads(1)
        t0 = time.perf_counter()
        compile_variant(variant, "onnxruntime", folder, ckpt=CKPT)
        log.warning("compiled %s in %.1f s", variant.tag, time.perf_counter() - t0)
    return paths


def measure_all(paths: Sequence[Path], db: Path, threads: int, runs: int, rounds: int = 3) -> None:
    """``rounds`` rotating passes of ``runs`` calls per artifact, stored in ``db``."""
    from benchmarks.device import fingerprint
    from benchmarks.harness import BenchConfig, measure
    from benchmarks.store import Store

    dev = fingerprint(None)
    with Store(db) as store:
        for _ in range(rounds):
            for p in paths:
                store.add_measurement(measure(p, BenchConfig(runs=runs, warmup=3, threads=threads), dev))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.studies.switch_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="switch-bench", help="artifacts and store (reused) (default %(default)s)")
    ap.add_argument("--configs", default=CONFIGS, help="configurations (default %(default)s)")
    ap.add_argument("--video", default=str(VIDEO))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--affinity", type=int, help="pin the measurements and the run to this CPU")
    ap.add_argument("--runs", type=int, default=20, help="calls per artifact and round (3 rotating rounds)")
    ap.add_argument("--budget-ms", type=float, help="default: geometric mean of the cheapest and costliest p90")
    ap.add_argument("--load", help="START:STOP clip indices between which a busy loop shares the pinned CPU")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.load and args.affinity is None:
        ap.error("--load needs --affinity: the busy loop shares the run's CPU")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from benchmarks.harness import pin_affinity
    from edge.run import load_switcher, stream, summarize
    from edge.switch_inputs import plan_run
    from edge.switch import SwitchConfig

    out = Path(args.out)
    paths = build(args.configs.split(","), out)
    affinity = None if args.affinity is None else (args.affinity,)
    db = out / "switch.sqlite"
    with pin_affinity(affinity) if affinity else nullcontext():
        if not db.is_file():
            measure_all(paths, db, args.threads, args.runs)
        plan = plan_run(out, db=db, threads=args.threads)
        lat = sorted(c.stored_ms for c in plan.candidates)
        budget = args.budget_ms or (lat[0] * lat[-1]) ** 0.5
        setup = load_switcher(plan, SwitchConfig(budget))
        start, stop = (int(x) for x in args.load.split(":")) if args.load else (-1, -1)
        results = []
        hog = CpuHog(affinity or (0,))
        try:
            for r in stream(args.video, setup, args.window, args.stride):
                results.append(r)
                if r.decision.index + 1 == start:
                    hog.start()
                if r.decision.index + 1 == stop:
                    hog.stop()
        finally:
            hog.stop()
            setup.close()
    s = summarize(results, setup)
    data = {"budget_ms": budget, "threads": args.threads, "affinity": affinity, "load": args.load,
            "summary": s.to_json(), "timeline": _timeline(results)}
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(_text(data))
    return 0


def _timeline(results: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"clip": r.decision.index, "config": r.decision.config, "latency_ms": round(r.latency_ms, 3),
             "reason": r.decision.reason, "switch_ms": r.decision.switch_ms} for r in results]


def _gflops(path: str) -> str:
    from targets.base import Artifact

    acc = Artifact.read(path, verify=False).notes.get("accuracy")
    return f"{acc['gflops']:.3f}" if isinstance(acc, dict) and "gflops" in acc else "-"


def _text(d: dict[str, Any]) -> str:
    from edge.core.text import table

    s = d["summary"]
    used = s["configs_used"]
    rows = [(c["name"], _gflops(c["path"]), f"{c['accuracy']:.3f}", f"{c['stored_ms']:.2f}",
             used.get(c["name"], 0) if c["ladder"] else "dominated")
            for c in sorted(s["candidates"], key=lambda c: c["stored_ms"])]
    lat = s["latency_ms"]
    lines = [table(rows, ("configuration", "GFLOPs", "top-1", "p90 ms", "clips")),
             f"budget {d['budget_ms']:.2f} ms, {d['threads']} thread(s), affinity {d['affinity']}, load {d['load']}",
             f"{s['clips']} clips: {s['within_budget']:.1%} within budget; observed p90 {lat['p90']:.2f} ms",
             f"mean accuracy of the chosen configurations: {s['mean_accuracy']:.3f} ({s['accuracy_source']})",
             f"switches {s['switches']}" + ("" if not s["switches"] else
                                             f": mean {s['switch_ms_mean'] * 1e3:.1f} us, max "
                                             f"{s['switch_ms_max'] * 1e3:.1f} us"),
             f"memory: {s['memory']['runners']} runners add {s['memory']['runners_mb']:.1f} MiB (RSS "
             f"{s['memory']['rss_mb']:.1f} MiB)"]
    seq = []
    for t in d["timeline"]:
        if not seq or seq[-1][0] != t["config"]:
            seq.append([t["config"], t["clip"], t["clip"]])
        seq[-1][2] = t["clip"]
    lines.append("timeline: " + "; ".join(f"{c.split('-fp32')[0]} clips {a}-{b}" for c, a, b in seq))
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
