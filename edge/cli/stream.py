"""``edgevid run``: stream a video through the switcher, one line per clip, then a summary.

``cmd_run(args) -> exit code``; ``add_run(parser)``; ``run_text(d)`` formats the summary
(``{"summary": RunSummary.to_json(), "window": int, "stride": int}``); the demo reuses it.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from edge.cli.common import add_json, emit
from edge.core.text import table

log = logging.getLogger("edgevid")


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
                "clips": [r.to_json() for r in results], "summary": summary.to_json()}, run_text)
    return 0


def _run_line(c: dict[str, Any], budget: float) -> str:
    pred = c["label"] if c["label"] is not None else str(c["prediction"])
    line = (f"clip {c['clip']:4d}  frame {c['frame']:5d}  {pred} ({c['score']:.2f})  {c['config']}  "
            f"{c['latency_ms']:.2f} ms" + ("" if c["within_budget"] else f" > {budget:g}"))
    if c["switched"]:
        line += f"  [{c['reason']}: {c['detail']}; switch {c['switch_ms'] * 1e3:.0f} us]"
    return line


def run_text(d: dict[str, Any]) -> str:
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


def add_run(p: argparse.ArgumentParser) -> None:
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
    add_json(p)
