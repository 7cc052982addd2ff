"""``edgevid`` commands that measure and choose: bench, sweep, select, report.

Each ``cmd_*(args) -> exit code`` opens the result store and calls ``benchmarks`` (imported
lazily); each ``add_*(parser)`` declares its flags.  ``select_text(d)`` formats a selection's
JSON (``Selection.to_json()`` + ``explain`` + ``validation``); the demo reuses it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from edge.cli.common import LOG_FILE, add_json, emit
from edge.core.errors import BadInput
from edge.core.text import table


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.agent import Skipped, measure_all, read_results
    from benchmarks.device import fingerprint
    from benchmarks.harness import BenchConfig, parse_affinity
    from benchmarks.store import Store

    modes = [m for m in ("import_", "export") if getattr(args, m)]
    if len(modes) > 1 or (modes and args.artifacts) or not (modes or args.artifacts):
        raise BadInput("bench: give ARTIFACT folders to measure, or --import FILE, or --export FILE")
    if args.export:
        with Store(args.db, create=False) as store:
            n = store.export(args.export)
        emit(args, {"db": str(store.path), "export": args.export, "measurements": n},
             lambda d: f"wrote {d['measurements']} measurement(s) from {d['db']} to {d['export']}")
        return 0
    if args.import_:
        results = read_results(args.import_, args.device)
        with Store(args.db) as store:
            new = sum(store.add_measurement(r, source=f"import:{args.import_}") for r in results.records)
        emit(args, {"db": str(store.path), "device": results.device.to_json(), "imported": new,
                    "already_stored": len(results.records) - new,
                    "skipped_on_device": [s.to_json() for s in results.skipped]}, _import_text)
        return 0
    config = BenchConfig(runs=args.runs, warmup=args.warmup, warmup_s=args.warmup_s, min_time_s=args.min_time,
                         threads=args.threads, affinity=parse_affinity(args.affinity) if args.affinity else None,
                         isolate=args.isolate, seed=args.seed, runtime_device=args.runtime_device)
    device = fingerprint(args.device)
    records, skipped = [], []
    with Store(args.db) as store:
        for item in measure_all(args.artifacts, config, device, strict=True):
            if isinstance(item, Skipped):
                skipped.append(item.to_json())
            else:
                store.add_measurement(item)
                records.append(item.to_json())
    emit(args, {"db": str(store.path), "device": device.to_json(), "measurements": records, "skipped": skipped},
         _bench_text)
    return 0


def _bench_text(d: dict[str, Any]) -> str:
    from benchmarks.device import DeviceInfo

    rows = []
    for r in d["measurements"]:
        s, m = r["stats"], r["memory"]
        peak = "-" if m["peak_mb"] is None else f"{m['peak_mb']:.0f}" + (
            "" if m["base_mb"] is None else f" (+{max(0.0, m['peak_mb'] - m['base_mb']):.0f})")
        rows.append((r["variant"], r["target"], r["threads"], f"{s['p50_ms']:.2f}", f"{s['p90_ms']:.2f}",
                     f"{s['p99_ms']:.2f}", f"{s['min_ms']:.2f}", f"{s['mean_ms']:.2f}±{s['std_ms']:.2f}",
                     f"{s['throughput']:.1f}", f"{r['load_ms']:.0f}", peak))
    lines = [DeviceInfo.from_json(d["device"]).summary]
    if rows:
        lines.append(table(rows, ("variant", "target", "threads", "p50 ms", "p90 ms", "p99 ms", "min ms",
                                  "mean±std ms", "clips/s", "load ms", "peak MiB (+runner)")))
        lines.append(f"stored {len(rows)} measurement(s) in {d['db']}")
    lines += [f"skipped {s['artifact']}: {s['reason']}" for s in d["skipped"]]
    return "\n".join(lines)


def _import_text(d: dict[str, Any]) -> str:
    lines = [f"imported {d['imported']} measurement(s) for device {d['device']['name']} [{d['device']['id']}] "
             f"into {d['db']}" + (f" ({d['already_stored']} already stored)" if d["already_stored"] else "")]
    lines += [f"skipped on the device: {s['artifact']}: {s['reason']}" for s in d["skipped_on_device"]]
    return "\n".join(lines)


def add_bench(p: argparse.ArgumentParser) -> None:
    from benchmarks.harness import BenchConfig

    p.add_argument("artifacts", nargs="*", metavar="ARTIFACT",
                   help="artifact folders, or folders searched for artifacts")
    p.add_argument("--db", help="result store (default: $EDGEVID_DB, else ./edgevid.sqlite)")
    p.add_argument("--runs", type=int, default=BenchConfig.runs, help="timed calls (default %(default)s)")
    p.add_argument("--warmup", type=int, default=BenchConfig.warmup, help="warm-up calls (default %(default)s)")
    p.add_argument("--warmup-s", type=float, default=0.0, help="warm up for at least this many seconds too")
    p.add_argument("--min-time", type=float, default=0.0, help="time calls for at least this many seconds too")
    p.add_argument("--threads", type=int, help="runtime threads (default: the CPUs this process may use)")
    p.add_argument("--affinity", help="pin to these CPUs, e.g. 0-3 or 4,5")
    p.add_argument("--isolate", action="store_true",
                   help="measure each artifact in a fresh subprocess (per-artifact peak memory)")
    p.add_argument("--runtime-device", help="runtime device: cpu/cuda/tensorrt (onnxruntime), CPU/GPU/NPU (openvino)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input clip (default 0)")
    p.add_argument("--device", help="name of this device (default: the hostname); with --import, renames it")
    p.add_argument("--import", dest="import_", metavar="RESULTS.json",
                   help="load an on-device agent's results (python -m benchmarks.agent) into the store")
    p.add_argument("--export", metavar="FILE.csv|FILE.json", help="write every stored measurement to CSV or JSON")
    add_json(p)


def cmd_sweep(args: argparse.Namespace) -> int:
    from benchmarks.device import fingerprint
    from benchmarks.store import Store
    from edge.sweep import load_config, run_sweep

    config = load_config(args.config)
    from edge.core.chatter import log_to_file

    log_to_file(config.out / LOG_FILE)
    with Store(args.db) as store:
        result = run_sweep(config, store, fingerprint(args.device or config.device), progress=not args.no_progress)
    emit(args, result.to_json(), _sweep_text)
    return 1 if result.count("failed") else 0


def _sweep_text(d: dict[str, Any]) -> str:
    lines = [f"{c['status']:8}  {c['target']}  {c['variant']}  t{c['threads']}"
             + (f"  p50 {c['p50_ms']:.2f} ms" if c["p50_ms"] is not None else "")
             + (f"  ({c['reason']})" if c["reason"] else "") for c in d["cells"]]
    n = d["counts"]
    lines.append(f"{d['device']['name']}: {n['measured']} measured now, {n['stored']} already stored, "
                 f"{n['skipped']} skipped, {n['failed']} failed; {d['compiled']} compiled, {d['reused']} artifacts "
                 f"reused; store {d['db']}")
    return "\n".join(lines)


def add_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="SWEEP.toml", help="grid: model, width, resolution, frames, "
                   "precision, prune, target, threads lists (+ runs, warmup, out, ...); see edge/sweep/__init__.py")
    p.add_argument("--db", help="result store (default: $EDGEVID_DB, else ./edgevid.sqlite)")
    p.add_argument("--device", help="name of this device (default: the sweep file's, else the hostname)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json(p)


def cmd_select(args: argparse.Namespace) -> int:
    from benchmarks.select import Budget, select
    from benchmarks.store import Store
    from edge.untrained import untrained_onnx
    from edge.validate import validate

    budget = Budget(args.latency_ms, args.stat, args.memory_mb, args.min_accuracy)
    with Store(args.db, create=False) as store:
        sel = select(store, budget, args.device, args.metric, predict=args.predict, export=untrained_onnx)
        data = sel.to_json()
        check = validate(store, sel, runs=args.runs, artifacts_dir=args.artifacts) \
            if args.validate and sel.chosen is not None else None
    data["validation"] = None if check is None else check.to_json()
    data["explain"] = args.explain
    emit(args, data, select_text)
    if sel.chosen is None:
        if not args.json:
            print(f"edgevid: gate failed: no configuration of {sel.device.name} meets the budget", file=sys.stderr)
        return 1
    return 1 if check is not None and not check.meets else 0


def _select_row(r: dict[str, Any], stat: str, metric: str) -> tuple[Any, ...]:
    from benchmarks.configs import accuracy_text

    acc = r["accuracy"].get(metric)
    peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
    mark = "≈" if r["predicted"] else ""
    return (r["variant"], r["target"], r["threads"], mark + f"{r[stat + '_ms']:.2f}", mark + peak,
            "?" if acc is None else accuracy_text(r["accuracy"], metric), r["source"])


def select_text(d: dict[str, Any]) -> str:
    from benchmarks.select import Budget

    b, metric, stat = d["budget"], d["metric"], d["budget"]["stat"]
    budget = Budget(b["latency_ms"], stat, b["memory_mb"], b["min_accuracy"]).text(metric)
    header = ("variant", "target", "threads", f"{stat} ms", "peak MiB", metric, "source")
    lines = [f"device {d['device']['name']} [{d['device']['id']}]; budget {budget}; {d['candidates']} configuration(s)"]
    c = d["chosen"]
    if c is None:
        lines.append("chosen: none - no configuration meets the budget")
    else:
        from benchmarks.configs import accuracy_text

        acc = c["accuracy"].get(metric)
        peak = "-" if c["peak_mb"] is None else format(c["peak_mb"], ".0f")
        lines.append(f"chosen: {c['variant']} on {c['target']} ({c['threads']} thread(s)): {stat} "
                     f"{c[stat + '_ms']:.2f} ms, peak {peak} MiB, {metric} "
                     f"{'unknown' if acc is None else accuracy_text(c['accuracy'], metric)} "
                     f"[{'PREDICTED, not measured' if c['predicted'] else 'measured'}]")
    lines.append(f"\nPareto front ({metric} vs {stat}; ≈ predicted):")
    lines.append(table([_select_row(r, stat, metric) for r in d["front"]], header) if d["front"]
                 else f"  (no configuration has a {metric} figure)")
    if d["unknown_accuracy"]:
        lines.append(f"{d['unknown_accuracy']} configuration(s) have no {metric} figure: accuracy unknown, ranked "
                     "after those with one (by latency)")
    if d["explain"]:
        rej = d["rejected"]
        lines.append("\nrejected configurations ranked above the choice:" if rej else
                     "\nno configuration ranks above the choice")
        if rej:
            lines.append(table([(*_select_row(r, stat, metric), "; ".join(r["reasons"])) for r in rej],
                               (*header, "why rejected")))
    v = d.get("validation")
    if v:
        lines.append(f"\nvalidation: re-measured {v['artifact']}: {stat} {v['latency_ms']:.2f} ms, p50 "
                     f"{v['p50_ms']:.2f} ms over {v['n']} runs, peak "
                     f"{'-' if v['peak_mb'] is None else format(v['peak_mb'], '.0f')} MiB: "
                     + ("meets the budget" if v["meets"] else "FAILS the budget: " + "; ".join(v["reasons"])))
    if d["predicted_used"]:
        lines.append("\n≈ predicted: latency from benchmarks.predict, not measured on this device")
    return "\n".join(lines)


def add_select(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="result store (default: $EDGEVID_DB, else ./edgevid.sqlite)")
    p.add_argument("--device", help="device name or id (default: the store's only device, else this machine)")
    p.add_argument("--latency-ms", type=float, required=True, help="latency bound in milliseconds")
    p.add_argument("--stat", default="p90", help="statistic the bound applies to: min, p50, p90 (default), p99, mean")
    p.add_argument("--memory-mb", type=float, help="peak memory bound in MiB")
    p.add_argument("--min-accuracy", type=float, help="accuracy floor (same scale as the stored metric)")
    p.add_argument("--metric", help="accuracy metric as stored (default top1, or top1@DATASET when only one)")
    p.add_argument("--explain", action="store_true", help="say why each better-accuracy configuration was rejected")
    p.add_argument("--predict", action="store_true",
                   help="also consider predicted latencies of configurations not measured on the device (marked)")
    p.add_argument("--validate", action="store_true", help="re-measure the chosen configuration here and check it")
    p.add_argument("--runs", type=int, default=20, help="timed calls of --validate (default %(default)s)")
    p.add_argument("--artifacts", default="edgevid-artifacts",
                   help="where --validate compiles a predicted configuration (default %(default)s)")
    add_json(p)


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.report import write_report
    from benchmarks.store import Store

    with Store(args.db, create=False) as store:
        summary = write_report(store, args.out, args.metric, args.baseline)
    emit(args, summary, lambda s: f"wrote {s['html']} ({s['bytes'] / 1e3:.0f} kB) and {s['markdown']}: "
                                  f"{len(s['devices'])} device(s), {s['predicted']} predicted configuration(s)")
    return 0


def add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="result store (default: $EDGEVID_DB, else ./edgevid.sqlite)")
    p.add_argument("--out", required=True, metavar="report.html", help="HTML page to write (report.md goes beside it)")
    p.add_argument("--metric", help="accuracy metric as stored (default top1)")
    p.add_argument("--baseline", help="target the speed-ups are relative to (default onnxruntime)")
    add_json(p)
