"""Held-out accuracy of the latency predictor on measurements made here.

    .venv/bin/python -m benchmarks.studies.predictor_accuracy [--db out/predictor/predictor.sqlite]
        [--folds 5] [--threads 1] [--runs 30] [--rounds 3] [--cpu-rounds 2] [--no-sweep] [--json]

1. Sweeps (``edge.sweep``, resumable: a rerun measures only what is
   missing) X3D-XS at widths 0.5 / 0.75 / 1.0 x resolutions 64-160 (step 16) x
   2 / 4 frames, fp32, on onnxruntime and openvino, at ``--threads``, into
   ``--db`` (artifacts under ``out/predictor/artifacts``): 42 variants x 2
   targets, each measured in ``--rounds`` rounds minutes apart (pooled).
2. Measures the same artifacts again with the harness reading the process CPU
   clock (``time.process_time_ns``) instead of the wall clock, in
   ``--cpu-rounds`` rotating rounds, into a separate store (``cputime.sqlite``
   beside ``--db``, device NAME-cputime: these are not latencies and never mix
   with them).  At one thread, the CPU time of a call is its latency on an idle
   machine: other processes competing for the cores stretch the wall clock, not
   the CPU time.
3. Per target and for both clocks: k-fold cross-validation
   (``benchmarks.predict.cross_validate``, shuffled, seed 0): every
   configuration's p50 is predicted by a model fitted on the other folds only;
   prints the share of held-out predictions within +-10% of the measured p50
   (goal >= 95%), and the median / 90th percentile / largest relative error.
4. Prints the repeatability of the measurements themselves: the share of single
   measurements (one round) within +-10% of the pooled p50 of the same
   configuration's other rounds.  No predictor can be checked more finely than
   the machine repeats itself: on a shared, loaded machine this, not the model,
   bounds the wall-clock figure.

Torch runs single-threaded while compiling (``OMP_NUM_THREADS=1``, unless set):
on a busy 2-core machine its two-thread Conv3d is several times slower.  The
machine's load average is printed: other work skews the measurements.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: benchmarks/ must not shadow the stdlib (benchmarks/select.py)
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "out" / "predictor"
GRID = {"model": ["x3d_xs"], "width": [0.5, 0.75, 1.0], "resolution": [64, 80, 96, 112, 128, 144, 160],
        "frames": [2, 4], "precision": ["fp32"], "target": ["onnxruntime", "openvino"]}


CPU_DEVICE_SUFFIX = "-cputime"


def sweep_toml(threads: int, runs: int, rounds: int, device: str) -> str:
    lines = ["# written by benchmarks/studies/predictor_accuracy.py"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in GRID.items()]
    lines += [f"threads = [{threads}]", f"runs = {runs}", "warmup = 5", 'out = "artifacts"',
              f'device = "{device}"', "rotate = true", f"rounds = {rounds}"]
    return "\n".join(lines) + "\n"


def repeatability(store, configs, stat: str) -> dict:
    """Leave-one-round-out agreement of the measurements of each configuration (see 4. above)."""
    from benchmarks.record import Stats

    diffs = []
    for c in configs:
        rows = [m for m in store.measurements(device=c.device, target=c.target, variant=c.variant,
                                              include_predicted=False)
                if m.threads == c.threads and m.artifact_sha256 == c.artifact_sha256]
        if len(rows) < 2:
            continue
        for i, m in enumerate(rows):
            others = [x for j, r in enumerate(rows) if j != i for x in store.samples(r.id)]
            ref = Stats.from_ns(others).get(stat)
            diffs.append(abs(m.stats.get(stat) - ref) / ref)
    d = np.asarray(diffs)
    return {"n": int(d.size), "within": float(np.mean(d <= 0.10)) if d.size else None,
            "median_abs_diff": float(np.median(d)) if d.size else None}


def measure_cpu_time(store, config, device_name: str, runs: int, rounds: int, progress: bool) -> int:
    """Step 2: every artifact of the sweep measured by the harness on the process CPU clock,
    ``rounds`` rotating rounds, resumable; returns how many measurements were added."""
    import time
    from dataclasses import replace

    from tqdm import tqdm

    from benchmarks import harness
    from benchmarks.device import fingerprint
    from edge.sweep import artifact_dir, measure_order, reusable

    device = fingerprint(device_name)
    cells = [c for c in config.cells() if reusable(artifact_dir(config, c.variant, c.target), c.variant, c.target)]
    done = {c: store.measurement_count(device, c.target, c.threads, variant=c.variant.tag) for c in cells}
    added = 0
    wall_clock = harness._clock
    harness._clock = time.process_time_ns
    try:
        with tqdm(total=sum(max(0, rounds - n) for n in done.values()), desc="cpu time", disable=not progress) as bar:
            for r in range(rounds):
                for c in measure_order(cells, True, start=r):
                    if done[c] > r:
                        continue
                    art = artifact_dir(config, c.variant, c.target)
                    rec = harness.measure(art, harness.BenchConfig(runs=runs, warmup=3, threads=c.threads), device)
                    rec = replace(rec, runtime={**rec.runtime, "clock": "process CPU time (time.process_time_ns)"})
                    store.add_measurement(rec, source="predictor_accuracy: process CPU time per call")
                    done[c] += 1
                    added += 1
                    bar.update(1)
    finally:
        harness._clock = wall_clock
    return added


def evaluate(store, device_name: str, threads: int, folds: int, stat: str, seed: int) -> dict:
    """Steps 3 and 4 on one store."""
    from benchmarks.predict import WITHIN, cross_validate, figures_of, training_set, variant_features
    from edge.untrained import untrained_onnx
    from benchmarks.configs import configurations

    dev = store.find_device(device_name)
    report: dict = {"db": str(store.path), "device": dev.name, "stat": stat, "folds": folds, "tolerance": WITHIN,
                    "groups": []}
    all_err: list[float] = []
    for (target, precision, n_threads), rows in sorted(training_set(configurations(store, dev)).items()):
        if n_threads != threads or len(rows) < 2 * folds:
            continue
        feats = [variant_features(store, m.variant, untrained_onnx) for m in rows]
        cv = cross_validate(feats, [figures_of(m) for m in rows], [m.variant for m in rows], folds, stat, seed)
        err = np.abs(cv.rel_errors)
        all_err += err.tolist()
        worst = int(np.argmax(err))
        report["groups"].append({
            "target": target, "precision": precision, "threads": n_threads, "n": len(rows), "within": cv.within,
            "median_abs_err": float(np.median(err)), "p90_abs_err": float(np.percentile(err, 90)),
            "max_abs_err": float(err.max()),
            "worst": {"variant": cv.variants[worst], "measured_ms": cv.measured[worst],
                      "predicted_ms": cv.predicted[worst]},
            "repeatability": repeatability(store, rows, stat)})
    report["n"] = len(all_err)
    report["overall_within"] = float(np.mean(np.asarray(all_err) <= WITHIN)) if all_err else None
    return report


def print_report(title: str, rep: dict, threads: int) -> None:
    print(f"\n{title}: held-out {rep['folds']}-fold, {rep['stat']}, device {rep['device']}, {threads} thread(s)")
    if not rep["n"]:
        print(f"  no group with at least {2 * rep['folds']} measured configurations")
        return
    print(f"  {'target':12} {'prec':5} {'n':>3}  {'within ±10%':>11}  {'median |err|':>12}  {'p90 |err|':>9}  "
          f"{'max |err|':>9}  worst")
    for g in rep["groups"]:
        w = g["worst"]
        print(f"  {g['target']:12} {g['precision']:5} {g['n']:>3}  {g['within']:>11.1%}  "
              f"{g['median_abs_err']:>12.1%}  {g['p90_abs_err']:>9.1%}  {g['max_abs_err']:>9.1%}  {w['variant']} "
              f"({w['measured_ms']:.2f} ms measured, {w['predicted_ms']:.2f} predicted)")
    print(f"  overall: {rep['overall_within']:.1%} of {rep['n']} held-out predictions within ±10% (goal >= 95%)")
    for g in rep["groups"]:
        r = g["repeatability"]
        if r["n"]:
            print(f"  repeatability, {g['target']}: {r['within']:.1%} of {r['n']} single measurements within ±10% "
                  f"of the pooled {rep['stat']} of the configuration's other rounds (median |diff| "
                  f"{r['median_abs_diff']:.1%})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=str(DEFAULT_DIR / "predictor.sqlite"), help="result store (default %(default)s)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads of the sweep (default %(default)s)")
    p.add_argument("--runs", type=int, default=30, help="timed calls per configuration (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="wall-clock measurements per configuration "
                   "(default %(default)s)")
    p.add_argument("--cpu-rounds", type=int, default=2, help="CPU-time measurements per configuration "
                   "(default %(default)s; 0: none)")
    p.add_argument("--device", default="predictor-host", help="device name in the store (default %(default)s)")
    p.add_argument("--stat", default="p50", help="statistic to predict (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="fold shuffling seed (default %(default)s)")
    p.add_argument("--no-sweep", action="store_true", help="use what the stores hold; measure nothing")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from benchmarks.device import fingerprint
    from benchmarks.store import Store
    from edge.sweep import load_config, run_sweep

    db = Path(args.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    toml = db.parent / "sweep.toml"
    cpu_db = db.parent / "cputime.sqlite"
    cpu_name = args.device + CPU_DEVICE_SUFFIX
    out: dict = {"loadavg_1m": round(os.getloadavg()[0], 2)}
    with Store(db) as store:
        if not args.no_sweep:
            toml.write_text(sweep_toml(args.threads, args.runs, args.rounds, args.device))
            result = run_sweep(load_config(toml), store, fingerprint(args.device), progress=not args.json)
            print(f"sweep: {result.count('measured')} measured now, {result.count('stored')} already stored, "
                  f"{result.count('skipped')} skipped, {result.count('failed')} failed", file=sys.stderr)
        out["wall_clock"] = evaluate(store, args.device, args.threads, args.folds, args.stat, args.seed)
    if args.cpu_rounds > 0 and (cpu_db.exists() or not args.no_sweep):
        with Store(cpu_db) as cpu_store:
            if not args.no_sweep:
                added = measure_cpu_time(cpu_store, load_config(toml), cpu_name, args.runs, args.cpu_rounds,
                                         not args.json)
                print(f"cpu time: {added} measured now", file=sys.stderr)
            out["cpu_time"] = evaluate(cpu_store, cpu_name, args.threads, args.folds, args.stat, args.seed)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if out["wall_clock"]["n"] else 2
    print(f"latency predictor held-out accuracy; load average {out['loadavg_1m']} on {os.cpu_count()} CPUs")
    print_report("wall clock (latency as measured on this shared machine)", out["wall_clock"], args.threads)
    if "cpu_time" in out:
        print_report("process CPU time per call (= latency on an idle machine at 1 thread)", out["cpu_time"],
                     args.threads)
    return 0 if out["wall_clock"]["n"] else 2


if __name__ == "__main__":
    sys.exit(main())
