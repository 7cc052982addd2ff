"""The ``edgevid`` command line: argparse front, each subcommand a few lines that
call the library.  Exit codes: 0 success, 1 a gate failed, 2 bad input or usage."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from edge.core.errors import BadInput, GateFailed
from edge.core.text import table

log = logging.getLogger("edgevid")


# ----------------------------------------------------------------------------- output

def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else as ``text(data)``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text(data))


# ----------------------------------------------------------------------------- commands

def cmd_models(args: argparse.Namespace) -> int:
    from edge.zoo import zoo_table

    rows = zoo_table(args.model or None)
    emit(args, rows, lambda rs: table(
        [(r["name"], f"{r['params'] / 1e6:.2f}M", f"{r['gflops']:.3f}", "x".join(map(str, r["input_shape"])),
          r["description"]) for r in rs],
        ("name", "params", "GFLOPs", "input", "description")))
    return 0


def cmd_convert_ckpt(args: argparse.Namespace) -> int:
    from edge.convert import convert_checkpoint

    result = convert_checkpoint(args.source_format, args.src, args.dst, args.model)
    emit(args, result, lambda r: f"wrote {r['dst']} ({r['model']}, {r['num_classes']} classes, "
                                 f"{r['tensors']} tensors)")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from calib_data.video import quiet_decoder_logs

    if not args.debug:
        quiet_decoder_logs()  # the table below reports damaged videos; FFmpeg's chatter is noise
    if args.data_command == "synth":
        from calib_data.synth import write_dataset

        r = write_dataset(args.out, args.clips, args.seed, args.frames, args.size)
        emit(args, {"out": str(r.out), "manifest": str(r.manifest), "clips": len(r.rows),
                    "seconds": round(r.seconds, 3)},
             lambda d: f"wrote {d['clips']} clips to {d['out']} (manifest {d['manifest']}) in {d['seconds']:.1f} s")
        return 0
    from calib_data.check import check_dataset
    from calib_data.datasets import KINETICS_PATTERN

    results = check_dataset(args.path, args.frames, args.stride, args.pattern or KINETICS_PATTERN)
    bad = [{"path": str(r.path), "reason": r.reason} for r in results if not r.ok]
    emit(args, {"path": args.path, "videos": len(results), "bad": bad},
         lambda d: (table([(b["path"], b["reason"]) for b in d["bad"]], ("video", "problem")) + "\n"
                    if d["bad"] else "") + f"{d['videos'] - len(d['bad'])} of {d['videos']} videos good, "
                                           f"{len(d['bad'])} bad")
    return 1 if bad else 0


def cmd_compile(args: argparse.Namespace) -> int:
    from edge.models.registry import variant as zoo_variant
    from targets.registry import TargetOptions, get_target

    get_target(args.target)  # an unknown target fails here, listing the valid ones, before torch loads
    for flag in ("resolution", "frames", "threads"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise BadInput(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    given = {"width": args.width, "resolution": args.resolution, "frames": args.frames, "prune": args.prune}
    meta = None
    if args.ckpt and (None in given.values() or (args.precision == "int8" and not args.calib_mode)):
        from edge.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.ckpt)
        if ckpt.variant.model != args.model:
            raise BadInput(f"{args.ckpt}: checkpoint holds {ckpt.variant.model}, not {args.model}")
        meta = ckpt.meta  # what the flags leave open comes from the checkpoint
        given = {k: getattr(ckpt.variant, k) if v is None else v for k, v in given.items()}
    variant = zoo_variant(args.model, width=given["width"] or 1.0, resolution=given["resolution"],
                          frames=given["frames"], precision=args.precision, prune=given["prune"] or 0.0)
    from quant.settings import QuantSettings, parse_ignore

    quant = QuantSettings(exclude=parse_ignore(args.ignore), preset=args.nncf_preset, subset_size=args.subset_size)
    if variant.precision != "int8" and (args.mixed or quant != QuantSettings()):
        raise BadInput(f"--mixed, --ignore, --nncf-preset and --subset-size are for --precision int8, "
                       f"not {variant.precision}")
    options = TargetOptions(threads=args.threads, device=args.device, hard_activations=args.hard_activations,
                            quant=quant)
    calib = None
    if variant.precision == "int8":
        from edge.checkpoint import clip_sampling
        from quant.calib import read_calib

        mode = args.calib_mode or clip_sampling(meta, args.ckpt or "checkpoint")
        calib = read_calib(args.calib, variant.input_shape, clips=args.calib_clips, method=args.calib_method,
                           progress=not args.json, mode=mode)
    elif args.calib:
        raise BadInput(f"--calib is for --precision int8, not {variant.precision}")
    from pathlib import Path

    from edge.compile import compile_variant, summary  # torch
    from targets.base import ARTIFACT_JSON, Artifact

    try:
        art = compile_variant(variant, args.target, args.out, ckpt=args.ckpt, options=options, calib=calib,
                              min_agreement=args.min_agreement, mixed=args.mixed)
    except GateFailed:
        if (Path(args.out) / ARTIFACT_JSON).is_file():  # the failed artifact was kept: show it, then exit 1
            emit(args, summary(Artifact.read(args.out, verify=False)), _compile_text)
        raise
    emit(args, summary(art), _compile_text)
    return 0


def _compile_text(s: dict[str, Any]) -> str:
    files = ", ".join(f"{name} ({size / 1e6:.1f} MB)" for name, size in s["files"].items())
    lines = [str(s["artifact"]), f"  {s['target']} {s['variant']} [{s['status']}]  input {s['input']}  files: {files}"]
    fid = s.get("fidelity")
    if fid:
        sqnr = fid["sqnr_db"] if isinstance(fid["sqnr_db"], str) else f"{fid['sqnr_db']:.1f}"
        lines.append(f"  int8 vs fp32 on {fid['clips']} held-out clips: top-1 agreement {fid['agreement']:.3f}, "
                     f"cosine {fid['cosine']:.4f}, SQNR {sqnr} dB")
    mixed = s["notes"].get("mixed")
    if mixed:
        lines.append(f"  mixed precision: {len(mixed['excluded_nodes'])} nodes float; {mixed['why']}")
    check = s["notes"].get("check")
    if check:
        lines.append(f"  vs PyTorch on one random clip: max abs diff {check['max_abs_diff']:.2e}, "
                     f"cosine {check['cosine']:.6f}")
    if "engine" in s["notes"]:
        lines.append(f"  engine: {s['notes']['engine']}")
    return "\n".join(lines)


def cmd_check_ops(args: argparse.Namespace) -> int:
    from targets.registry import get_target

    reasons = get_target(args.target).check(args.onnx)
    emit(args, {"model": args.onnx, "target": args.target, "ok": not reasons, "reasons": reasons},
         lambda d: "\n".join([*d["reasons"], f"{d['model']}: {len(d['reasons'])} node(s) rejected by {d['target']}"
                              if d["reasons"] else f"{d['model']}: every node accepted by {d['target']}"]))
    return 1 if reasons else 0


def cmd_lower(args: argparse.Namespace) -> int:
    from pathlib import Path

    import onnx

    from targets.checker import check
    from targets.lowering import lower
    from targets.lowering.fidelity import lowering_fidelity
    from targets.onnx_io import load_onnx
    from targets.opset import OPSETS
    from targets.registry import TARGETS

    if args.target not in TARGETS:
        raise BadInput(f"unknown target {args.target!r}; valid targets: {', '.join(TARGETS)}")
    if args.target not in OPSETS:
        raise BadInput(f"target {args.target!r} has no operator set to lower into; targets with one: "
                       f"{', '.join(OPSETS)}")
    out = Path(args.dst)
    if not out.parent.is_dir():
        raise BadInput(f"{out}: folder {out.parent} does not exist")
    source = load_onnx(args.src)
    lowered = lower(source, OPSETS[args.target], hard_activations=args.hard_activations)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save_model(lowered, str(tmp))
    tmp.replace(out)
    reasons = check(lowered, OPSETS[args.target])
    data = {"src": args.src, "dst": str(out), "target": args.target, "hard_activations": args.hard_activations,
            "nodes": [len(source.graph.node), len(lowered.graph.node)], "passes": lowered.doc_string.splitlines()[-1],
            "vs_source": lowering_fidelity(source, lowered), "reasons": reasons}
    emit(args, data, _lower_text)
    return 1 if reasons else 0


def _lower_text(d: dict[str, Any]) -> str:
    lines = [f"wrote {d['dst']}: {d['nodes'][0]} -> {d['nodes'][1]} nodes; {d['passes']}"]
    f = d["vs_source"]
    if f:
        lines.append(f"  vs {d['src']} on {f['inputs']}: max abs diff {f['max_abs_diff']:.2e}, "
                     f"cosine {f['min_cosine']:.6f}, top-1 agreement {f['top1_agreement']:.2f}")
    lines += [f"  {r}" for r in d["reasons"]]
    lines.append(f"  {len(d['reasons'])} node(s) still outside the {d['target']} operator set" if d["reasons"]
                 else f"  every node inside the {d['target']} operator set")
    return "\n".join(lines)


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


def cmd_sweep(args: argparse.Namespace) -> int:
    from benchmarks.device import fingerprint
    from benchmarks.store import Store
    from edge.sweep import load_config, run_sweep

    config = load_config(args.config)
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


def cmd_select(args: argparse.Namespace) -> int:
    from benchmarks.select import Budget, select, validate
    from benchmarks.store import Store

    budget = Budget(args.latency_ms, args.stat, args.memory_mb, args.min_accuracy)
    with Store(args.db, create=False) as store:
        sel = select(store, budget, args.device, args.metric, predict=args.predict)
        data = sel.to_json()
        check = validate(store, sel, runs=args.runs, artifacts_dir=args.artifacts) \
            if args.validate and sel.chosen is not None else None
    data["validation"] = None if check is None else check.to_json()
    data["explain"] = args.explain
    emit(args, data, _select_text)
    if sel.chosen is None:
        if not args.json:
            print(f"edgevid: gate failed: no configuration of {sel.device.name} meets the budget", file=sys.stderr)
        return 1
    return 1 if check is not None and not check.meets else 0


def _select_row(r: dict[str, Any], stat: str, metric: str) -> tuple[Any, ...]:
    acc = r["accuracy"].get(metric)
    peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
    mark = "≈" if r["predicted"] else ""
    return (r["variant"], r["target"], r["threads"], mark + f"{r[stat + '_ms']:.2f}", mark + peak,
            "?" if acc is None else f"{acc:.4f}", r["source"])


def _select_text(d: dict[str, Any]) -> str:
    from benchmarks.select import Budget

    b, metric, stat = d["budget"], d["metric"], d["budget"]["stat"]
    budget = Budget(b["latency_ms"], stat, b["memory_mb"], b["min_accuracy"]).text(metric)
    header = ("variant", "target", "threads", f"{stat} ms", "peak MiB", metric, "source")
    lines = [f"device {d['device']['name']} [{d['device']['id']}]; budget {budget}; {d['candidates']} configuration(s)"]
    c = d["chosen"]
    if c is None:
        lines.append("chosen: none - no configuration meets the budget")
    else:
        acc = c["accuracy"].get(metric)
        peak = "-" if c["peak_mb"] is None else format(c["peak_mb"], ".0f")
        lines.append(f"chosen: {c['variant']} on {c['target']} ({c['threads']} thread(s)): {stat} "
                     f"{c[stat + '_ms']:.2f} ms, peak {peak} MiB, {metric} "
                     f"{'unknown' if acc is None else format(acc, '.4f')} "
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


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.report import write_report
    from benchmarks.store import Store

    with Store(args.db, create=False) as store:
        summary = write_report(store, args.out, args.metric, args.baseline)
    emit(args, summary, lambda s: f"wrote {s['html']} ({s['bytes'] / 1e3:.0f} kB) and {s['markdown']}: "
                                  f"{len(s['devices'])} device(s), {s['predicted']} predicted configuration(s)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import os

    from edge.train import TrainConfig, default_table, parse_list

    widths, resolutions, frames = default_table(args.model, args.mutual)
    cfg = TrainConfig(
        model=args.model, data=args.data, out=args.out, mutual=args.mutual, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        widths=parse_list(args.widths, float, "--widths") if args.widths else widths,
        resolutions=parse_list(args.resolutions, int, "--resolutions") if args.resolutions else resolutions,
        frames=parse_list(args.frames, int, "--frames") if args.frames else frames,
        val=args.val, init=args.init, save_every=args.save_every, calib_clips=args.calib_clips, limit=args.limit,
        amp=args.amp, device=args.device)
    import torch

    from edge.evaluate import format_table
    from edge.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("edge.train").setLevel(logging.INFO)
    r = train(cfg, resume=args.resume, progress=not args.json, stop_after=args.stop_after)
    if args.ship and os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 only
        from edge.train import ship_checkpoint

        ship_checkpoint(r.out, args.ship)
    emit(args, {"out": str(r.out), "steps": r.steps, "seconds": round(r.seconds, 1), "history": r.history,
                "accuracy": r.accuracy},
         lambda d: (format_table(d["accuracy"]) + "\n" if d["accuracy"] else "")
         + f"{d['steps']} steps in {d['seconds']:.0f} s; checkpoint {d['out']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edge.models.slim import parse_configs

    configs = parse_configs(args.configs) if args.configs else None
    import torch

    from edge.evaluate import evaluate_checkpoint, format_table

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = evaluate_checkpoint(args.ckpt, args.model, args.data, configs, batch_size=args.batch_size,
                               limit=args.limit, single_frame=not args.no_single_frame, calib=args.calib,
                               device=args.device)
    emit(args, {"model": args.model, "ckpt": args.ckpt, "data": args.data, "rows": [r.to_json() for r in rows]},
         lambda d: format_table(d["rows"]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import PLANS, run_demo

    plan = PLANS["quick" if args.quick else "full"]
    summary = run_demo(plan, args.out, device=args.device, progress=not args.json, budget_ms=args.budget_ms)
    emit(args, summary, _demo_text)
    return 0


def _demo_text(d: dict[str, Any]) -> str:
    lines = [f"\nedgevid demo ({d['plan']}) on {d['device']}: {d['seconds']:.0f} s "
             + ", ".join(f"{k} {v:.0f} s" for k, v in d["steps_s"].items())]
    lines += [f"skipped target {t}: {why}" for t, why in d["skipped_targets"].items()]
    rows = []
    for c in d["cells"]:
        rows.append((c["target"], c["variant"], c["status"],
                     "-" if c.get("p50_ms") is None else f"{c['p50_ms']:.2f}", c.get("reason") or ""))
    lines.append(table(rows, ("target", "configuration", "status", "p50 ms", "note")))
    n = d["counts"]
    lines.append(", ".join(f"{v} {k}" for k, v in sorted(n.items())) + f"; store {d['db']}")
    lines.append(_select_text({**d["selection"], "explain": False, "validation": None}))
    r = d["run"]
    if r is not None:
        lines.append(f"\nrun: {Path(d['video']).name} streamed over the {r['target']} artifacts, "
                     f"budget {d['budget']['latency_ms']:g} ms:")
        lines.append(_run_text({"summary": r["summary"], "window": r["window"], "stride": r["stride"]}))
    lines.append(f"\nreport: {d['report']['html']} (summary {d['report']['markdown']}); "
                 f"everything is under {d['out']}")
    return "\n".join(lines)


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="*", help="only these models (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_convert_ckpt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source_format", required=True, choices=["pytorchvideo"],
                   help="source checkpoint format")
    p.add_argument("src", help="source checkpoint (.pyth)")
    p.add_argument("dst", help="edgevid checkpoint to write")
    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_s")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_data(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    synth = sub.add_parser("synth", help="write the synthetic motion dataset (.mp4 + manifest.csv + labels.json)",
                           description="write the synthetic motion dataset (.mp4 + manifest.csv + labels.json)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--clips", type=int, required=True,
                       help="number of clips (classes cycle: clip i is class i %% 10)")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same frames (default 0)")
    synth.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    synth.add_argument("--size", type=int, default=160, help="frame width and height in pixels (default 160)")
    check = sub.add_parser("check", help="decode every video of a manifest or folder and list the bad ones",
                           description="decode every video of a manifest, Kinetics CSV, folder or file; "
                                       "exit 1 if any is bad")
    check.add_argument("path", help="manifest.csv, Kinetics CSV, folder or video file")
    check.add_argument("--frames", type=int, help="also flag videos shorter than one clip of this many frames")
    check.add_argument("--stride", type=int, default=1, help="frame stride of that clip (default 1)")
    check.add_argument("--pattern", default=None, help="file pattern for a Kinetics CSV (default "
                       "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4)")
    for q in (synth, check):
        q.add_argument("--json", action="store_true", help="print JSON")
        q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _add_compile(p: argparse.ArgumentParser) -> None:
    from targets.registry import TARGETS

    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_s")
    p.add_argument("--ckpt", help="edgevid checkpoint (default: untrained weights)")
    p.add_argument("--target", required=True, help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("--precision", default="fp32", help="fp32 (default), fp16 or int8")
    p.add_argument("--calib", help="int8: calibration clips, a manifest/folder/video (default: the shipped set)")
    p.add_argument("--calib-method", default="minmax", choices=("minmax", "percentile", "entropy"),
                   help="int8: calibration method (default %(default)s)")
    p.add_argument("--calib-clips", type=int, default=32, help="int8: calibration clips (default %(default)s)")
    p.add_argument("--calib-mode", choices=("stride", "uniform"),
                   help="int8: frame sampling of the calibration and held-out clips (default: as the checkpoint "
                        "was trained - uniform for edgevid-trained ones, X3D's stride otherwise)")
    p.add_argument("--min-agreement", type=float, default=0.99,
                   help="int8: top-1 agreement with fp32 on held-out clips below which the build fails "
                        "(exit 1, artifact kept and marked failed; default %(default)s)")
    p.add_argument("--mixed", "--mixed-precision", dest="mixed", action="store_true",
                   help="int8 (onnxruntime, openvino): keep the most sensitive layers float until "
                        "--min-agreement is met; keep the fastest measured configuration")
    p.add_argument("--ignore", metavar="NODE,...",
                   help="int8: layers kept float - ONNX node names, op types (Conv, Mul) or 'depthwise'")
    p.add_argument("--nncf-preset", default="performance", choices=("performance", "mixed"),
                   help="int8 on openvino: NNCF preset (default %(default)s)")
    p.add_argument("--subset-size", type=int, help="int8 on openvino: calibration clips NNCF uses (default all)")
    p.add_argument("--width", type=float, help="width multiplier (default: the checkpoint's, else 1.0)")
    p.add_argument("--resolution", type=int, help="crop side in pixels (default: the checkpoint's, else the model's)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the checkpoint's, else the model's)")
    p.add_argument("--prune", type=float,
                   help="FLOPs-cut ratio of a pruned checkpoint (default: the checkpoint's, else 0)")
    p.add_argument("--threads", type=int, help="runtime threads (default: the runtime's)")
    p.add_argument("--device", help="runtime device, e.g. CPU/GPU (openvino), cpu/cuda/tensorrt (onnxruntime)")
    p.add_argument("--hard-activations", action="store_true",
                   help="allow Swish/Sigmoid -> hard approximations where the target needs them (changes the math)")
    p.add_argument("--out", required=True, help="artifact folder to write")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_check_ops(p: argparse.ArgumentParser) -> None:
    from targets.registry import TARGETS

    p.add_argument("--target", required=True, help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("onnx", metavar="MODEL.onnx", help="ONNX model to check")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_lower(p: argparse.ArgumentParser) -> None:
    from targets.opset import OPSETS

    p.add_argument("--target", required=True, help=f"target whose operator set to lower into: {', '.join(OPSETS)}")
    p.add_argument("--hard-activations", action="store_true",
                   help="also replace Sigmoid/Swish by ReLU6-based hard forms (changes the math; reported)")
    p.add_argument("src", metavar="IN.onnx", help="ONNX model to rewrite (any exporter, static shapes)")
    p.add_argument("dst", metavar="OUT.onnx", help="lowered ONNX model to write")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_bench(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="SWEEP.toml", help="grid: model, width, resolution, frames, "
                   "precision, prune, target, threads lists (+ runs, warmup, out, ...); see edge/sweep/__init__.py")
    p.add_argument("--db", help="result store (default: $EDGEVID_DB, else ./edgevid.sqlite)")
    p.add_argument("--device", help="name of this device (default: the sweep file's, else the hostname)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_select(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="result store (default: $EDGEVID_DB, else ./edgevid.sqlite)")
    p.add_argument("--out", required=True, metavar="report.html", help="HTML page to write (report.md goes beside it)")
    p.add_argument("--metric", help="accuracy metric as stored (default top1)")
    p.add_argument("--baseline", help="target the speed-ups are relative to (default onnxruntime)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_xs")
    p.add_argument("--data", required=True, help="labelled training clips (manifest.csv or folder)")
    p.add_argument("--out", required=True, help="checkpoint file to write (also the resume point)")
    p.add_argument("--mutual", action="store_true", help="MutualNet training of the slimmable model")
    p.add_argument("--epochs", type=int, default=10, help="epochs (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch size (default %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed: same seed, same weights on a CPU (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run saved at --out")
    p.add_argument("--widths", help="width table, e.g. 0.25,0.5,0.75,1.0 (mutual default; plain: 1.0)")
    p.add_argument("--resolutions", help="crop sides, e.g. 96,112,128 (mutual default; plain: the model's)")
    p.add_argument("--frames", help="frame counts, e.g. 4,8 (mutual default; plain: the model's)")
    p.add_argument("--val", help="held-out labelled clips: top-1 per epoch and the final accuracy table")
    p.add_argument("--init", help="fine-tune: start from this checkpoint (matching tensors)")
    p.add_argument("--save-every", type=int, default=50, help="also checkpoint every N steps (default %(default)s)")
    p.add_argument("--calib-clips", type=int, default=256,
                   help="training clips for the BN post-statistics of each configuration (default %(default)s)")
    p.add_argument("--limit", type=int, help="use only the first N training clips")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast (default: on with CUDA, off on a CPU)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--stop-after", type=int, help="checkpoint and stop after N steps (continue with --resume)")
    p.add_argument("--ship", help="also write a weights-only float16 copy of the final checkpoint here")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_xs")
    p.add_argument("--ckpt", required=True, help="checkpoint written by edgevid train")
    p.add_argument("--data", required=True, help="held-out labelled clips (manifest.csv or folder)")
    p.add_argument("--configs", help="configurations, e.g. w0.5-r112-f8,w1.0-r128-f8 (default: the table)")
    p.add_argument("--calib", help="clips to calibrate BN for configurations not in the table")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward (default %(default)s)")
    p.add_argument("--limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--no-single-frame", action="store_true", help="skip the single-frame baseline column")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_prune(args: argparse.Namespace) -> int:
    from edge.prune import prune_job

    r = prune_job(args.model, args.ckpt, args.ratio, args.out, data=args.data, epochs=args.epochs,
                  criterion=args.criterion, global_=args.global_, round_to=args.round_to, iterative=args.iterative,
                  frames=args.frames or 0, resolution=args.resolution or 0, limit=args.limit, lr=args.lr,
                  recal_clips=args.recal_clips)
    emit(args, r, lambda d: f"wrote {d['out']}: {d['model']} params {d['params_before'] / 1e6:.2f}M -> "
                            f"{d['params_after'] / 1e6:.2f}M, GFLOPs {d['gflops_before']:.3f} -> "
                            f"{d['gflops_after']:.3f} (cut {d['flops_cut']:.1%}, target {d['ratio']:.0%})")
    return 0


def cmd_qat(args: argparse.Namespace) -> int:
    import torch

    from quant.qat import QatConfig, qat_job

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("quant.qat").setLevel(logging.INFO)
    cfg = QatConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, limit=args.limit)
    r = qat_job(args.model, args.target, args.data, args.out, ckpt=args.ckpt, width=args.width,
                resolution=args.resolution, frames=args.frames, cfg=cfg, calib=args.calib,
                calib_clips=args.calib_clips, calib_method=args.calib_method, val=args.val,
                hard_activations=args.hard_activations)
    fid = r["fidelity_vs_qat_module"]
    emit(args, r, lambda d: f"QAT ({d['scheme']}) {d['epochs']} epochs, {d['steps']} steps"
         + (f", val top-1 {d['val_top1']:.1%}" if d["val_top1"] is not None else "")
         + f"; int8 artifact {d['artifact']} ({d['status']})"
         + (f", agreement with the QAT model {fid['agreement']:.1%} on {fid['clips']} held-out clips" if fid else ""))
    return 0 if r["status"] != "failed" else 1


def _add_qat(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_xs")
    p.add_argument("--ckpt", help="trained edgevid checkpoint, plain or slimmable (default: untrained weights)")
    p.add_argument("--target", required=True, help="fpga (power-of-two), onnxruntime or openvino (per-channel)")
    p.add_argument("--data", required=True, help="labelled training clips (manifest.csv or folder)")
    p.add_argument("--val", help="labelled clips: top-1 of the QAT model after every epoch")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default %(default)s)")
    p.add_argument("--limit", type=int, help="training clips per epoch (default all; a new subset each epoch)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate, cosine decay (default %(default)s)")
    p.add_argument("--calib", help="calibration clips (default: --data)")
    p.add_argument("--calib-method", default="minmax", choices=("minmax", "percentile", "entropy"),
                   help="calibration method, as for compile (default %(default)s)")
    p.add_argument("--calib-clips", type=int, default=32, help="calibration clips (default %(default)s)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1.0)")
    p.add_argument("--resolution", type=int, help="crop side in pixels (default: the model's)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the model's)")
    p.add_argument("--hard-activations", action="store_true",
                   help="Swish/Sigmoid -> hard approximations (the fpga target needs it for X3D)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", required=True, help="folder: qat.pt (resumable), qat_model.onnx, artifact/")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_xs")
    p.add_argument("--ckpt", help="edgevid checkpoint to prune (default: untrained weights)")
    p.add_argument("--ratio", type=float, required=True, help="FLOPs (multiply-adds) cut in [0, 1), e.g. 0.3")
    p.add_argument("--out", required=True, help="pruned checkpoint to write (records its architecture)")
    p.add_argument("--data", help="labelled clips for the KD fine-tune (default: the shipped set)")
    p.add_argument("--epochs", type=int, default=0, help="KD fine-tune epochs after each step (0 = prune only)")
    p.add_argument("--criterion", default="l1", choices=("l1", "l2", "bn", "prefix"),
                   help="channel importance (default l1; prefix: keep the first channels, for MutualNet checkpoints)")
    p.add_argument("--recal-clips", type=int, default=0,
                   help="re-estimate BN statistics on N clips of --data after each pruning step (default 0)")
    p.add_argument("--global", dest="global_", action="store_true", help="one ranking over all layers")
    p.add_argument("--round-to", type=int, help="keep channel counts multiples of this, e.g. 8")
    p.add_argument("--iterative", type=int, default=1, help="prune in K steps, fine-tuning after each")
    p.add_argument("--resolution", type=int, help="crop side for FLOPs and fine-tune (default: the model's)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the model's)")
    p.add_argument("--limit", type=int, help="fine-tune on the first N videos only")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tune AdamW learning rate (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.harness import parse_affinity
    from calib_data.video import is_camera, open_capture
    from edge.run import default_window, open_switcher, pinned, stream, summarize
    from edge.switch import SwitchConfig

    config = SwitchConfig(args.budget_ms, window=args.history, dwell=args.dwell, up_ratio=args.up_ratio)
    source: str | int = int(args.video) if is_camera(args.video) else args.video
    if not is_camera(source):
        open_capture(source).release()  # an unreadable video fails here, before the runners load
    affinity = parse_affinity(args.affinity) if args.affinity else None
    with pinned(affinity):
        setup = open_switcher(args.artifacts, config, db=args.db, device=args.device, accuracy_file=args.accuracy,
                              threads=args.threads)
        try:
            policy = setup.switcher.policy
            if not policy.feasible:
                log.warning("budget %g ms: no configuration's p90 fits (cheapest %s: %.2f ms); running the cheapest",
                            args.budget_ms, policy.cheapest.name, policy.cheapest.stored_ms)
            window = default_window(setup, args.window)
            stride = args.stride if args.stride is not None else max(1, window // 2)
            results = []
            for r in stream(source, setup, window, stride, args.max_clips):
                results.append(r)
                if not args.json:
                    print(_run_line(r.to_json(), args.budget_ms), flush=True)
            summary = summarize(results, setup)
        finally:
            setup.close()
    emit(args, {"video": args.video, "artifacts": args.artifacts, "window": window, "stride": stride,
                "threads": setup.threads, "affinity": None if affinity is None else list(affinity),
                "clips": [r.to_json() for r in results], "summary": summary.to_json()}, _run_text)
    return 0


def _run_line(c: dict[str, Any], budget: float) -> str:
    pred = c["label"] if c["label"] is not None else str(c["prediction"])
    line = (f"clip {c['clip']:4d}  frame {c['frame']:5d}  {pred} ({c['score']:.2f})  {c['config']}  "
            f"{c['latency_ms']:.2f} ms" + ("" if c["within_budget"] else f" > {budget:g}"))
    if c["switched"]:
        line += f"  [{c['reason']}: {c['detail']}; switch {c['switch_ms'] * 1e3:.0f} us]"
    return line


def _run_text(d: dict[str, Any]) -> str:
    s = d["summary"]
    used = s["configs_used"]
    rows = [(c["name"], c["target"], f"{c['frames']}x{c['resolution']}", f"{c['stored_ms']:.2f}", c["latency_source"],
             f"{c['accuracy']:.3f}", c["accuracy_source"], used.get(c["name"], 0) if c["ladder"] else "dominated")
            for c in sorted(s["candidates"], key=lambda c: c["stored_ms"])]
    lines = [table(rows, ("configuration", "target", "frames x px", "p90 ms", "latency from", "accuracy",
                          "accuracy from", "clips"))]
    lat, mem = s["latency_ms"], s["memory"]
    if s["clips"]:
        lines.append(f"{s['clips']} clips (window {d['window']} frames, stride {d['stride']}), budget "
                     f"{s['budget_ms']:g} ms: {s['within_budget']:.1%} within budget; observed mean "
                     f"{lat['mean']:.2f} / p90 {lat['p90']:.2f} / max {lat['max']:.2f} ms "
                     f"(+ {s['prep_ms_mean']:.2f} ms input preparation)")
        lines.append("configurations used: " + ", ".join(f"{n} x{k}" for n, k in used.items()))
        lines.append(f"mean accuracy: {s['mean_accuracy']:.3f} ({s['accuracy_source']})")
    else:
        lines.append(f"no clip: the video ended before one window of {d['window']} frames")
    lines.append("switches: 0" if not s["switches"] else
                 f"switches: {s['switches']}, cost mean {s['switch_ms_mean'] * 1e3:.0f} us, max "
                 f"{s['switch_ms_max'] * 1e3:.0f} us (no reload: all runners stay loaded)")
    if mem.get("runners_mb") is not None:
        lines.append(f"memory: {mem['runners']} runners loaded together add {mem['runners_mb']:.1f} MiB "
                     f"(process RSS {mem['rss_mb']:.1f} MiB, peak {mem['peak_mb']:.1f} MiB)")
    if s["note"]:
        lines.append(f"WARNING: {s['note']}")
    return "\n".join(lines)


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", metavar="VIDEO", help="video file, stream URL or camera index (e.g. 0)")
    p.add_argument("--artifacts", required=True, metavar="DIR",
                   help="folder searched recursively for artifacts, one per configuration (e.g. a sweep's out)")
    p.add_argument("--budget-ms", type=float, required=True, help="latency budget of one clip's inference (p90)")
    p.add_argument("--db", help="result store with the artifacts' latencies (default: $EDGEVID_DB or "
                   "./edgevid.sqlite when it exists; otherwise each artifact is measured briefly at load)")
    p.add_argument("--device", help="device name or id in the store (default: this machine)")
    p.add_argument("--accuracy", metavar="FILE.json",
                   help="top-1 per variant tag (or TARGET:VARIANT, or artifact folder) for artifacts without one")
    p.add_argument("--window", type=int, help="frames each clip is sampled from (default: 16, or more when a "
                   "configuration takes more)")
    p.add_argument("--stride", type=int, help="new frames between clips (default: half the window)")
    p.add_argument("--max-clips", type=int, help="stop after N clips")
    p.add_argument("--threads", type=int, help="runtime threads (default: the CPUs this process may use)")
    p.add_argument("--affinity", help="pin the run to these CPUs, e.g. 0 or 2-3")
    p.add_argument("--history", type=int, default=12, help="calls per configuration in the observed p90 "
                   "(default %(default)s)")
    p.add_argument("--dwell", type=int, default=8, help="clips at a configuration before stepping up "
                   "(default %(default)s)")
    p.add_argument("--up-ratio", type=float, default=0.8, help="step up when the next configuration is predicted "
                   "within this share of the budget (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="edgevid-demo", help="output folder (default ./%(default)s); a rerun resumes")
    p.add_argument("--quick", action="store_true", help="fewer configurations and runs (about 2 minutes)")
    p.add_argument("--budget-ms", type=float, help="p90 latency budget in ms (default 40)")
    p.add_argument("--device", help="device name in the result store (default: the hostname)")
    p.add_argument("--json", action="store_true", help="print JSON")


# name -> (help, add arguments, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "models": ("the zoo: params, GFLOPs (multiply-adds) and input shape", _add_models, cmd_models),
    "convert-ckpt": ("import a PyTorchVideo checkpoint into an edgevid checkpoint", _add_convert_ckpt,
                     cmd_convert_ckpt),
    "data": ("synthetic motion dataset (synth) and video checks (check)", _add_data, cmd_data),
    "compile": ("compile one variant for one target into a deployable artifact", _add_compile, cmd_compile),
    "check-ops": ("which nodes a target's operator set rejects, and why", _add_check_ops, cmd_check_ops),
    "lower": ("rewrite an ONNX model into a target's operator set (exact unless --hard-activations)", _add_lower,
              cmd_lower),
    "bench": ("latency of artifacts on this device, stored (also --import agent results, --export)", _add_bench,
              cmd_bench),
    "sweep": ("compile and bench a grid of configurations; resumable", _add_sweep, cmd_sweep),
    "select": ("the most accurate configuration under a latency/memory/accuracy budget", _add_select, cmd_select),
    "report": ("the cross-device HTML report (+ report.md) with plots", _add_report, cmd_report),
    "train": ("train or fine-tune a zoo model; --mutual: MutualNet across width x resolution x frames",
              _add_train, cmd_train),
    "eval": ("top-1 per configuration (width x resolution x frames) on labelled clips", _add_eval, cmd_eval),
    "prune": ("structured channel pruning to a FLOPs cut, plus KD fine-tune", _add_prune, cmd_prune),
    "qat": ("quantization-aware fine-tuning for a target's int8 scheme, then its int8 artifact", _add_qat,
            cmd_qat),
    "run": ("stream a video, switching configurations (width/resolution/frames) to hold a latency budget",
            _add_run, cmd_run),
    "demo": ("the main job end to end on the embedded defaults", _add_demo, cmd_demo),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevid", description="Prune, quantize, compile and measure video action-recognition networks "
        "for CPU, GPU and FPGA targets, and pick the configuration that fits a budget.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="info logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        add(p)
        p.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except BadInput as e:
        if args.debug:
            raise
        print(f"edgevid: error: {e}", file=sys.stderr)
        return 2
    except GateFailed as e:
        if args.debug:
            raise
        print(f"edgevid: gate failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgevid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
