"""``edgevid demo``: the main job end to end on the embedded defaults (edge.demo), and its text.

``cmd_demo(args) -> exit code``; ``add_demo(parser)``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge.cli.common import LOG_FILE, add_json, emit
from edge.cli.measure import select_text
from edge.cli.stream import run_text
from edge.core.text import table


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.core.chatter import log_to_file
    from edge.demo import PLANS, check_writable, run_demo

    plan = PLANS["quick" if args.quick else "full"]
    check_writable(Path(args.out))
    log_to_file(Path(args.out) / LOG_FILE)
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
    lines.append(select_text({**d["selection"], "explain": False, "validation": None}))
    r = d["run"]
    if r is not None:
        lines.append(f"\nrun: {Path(d['video']).name} streamed over the {r['target']} artifacts, "
                     f"budget {d['budget']['latency_ms']:g} ms:")
        lines.append(run_text({"summary": r["summary"], "window": r["window"], "stride": r["stride"]}))
    lines.append(f"\nreport: {d['report']['html']} (summary {d['report']['markdown']}); "
                 f"everything is under {d['out']}")
    return "\n".join(lines)


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="edgevid-demo", help="output folder (default ./%(default)s); a rerun resumes")
    p.add_argument("--quick", action="store_true", help="fewer configurations and runs (about 2 minutes)")
    p.add_argument("--budget-ms", type=float, help="p90 latency budget in ms (default 40)")
    p.add_argument("--device", help="device name in the result store (default: the hostname)")
    add_json(p)
