"""On-device agent: measure artifacts on a device that has only numpy and a runtime.

    python -m benchmarks.agent ARTIFACT_DIR... --out results.json
        [--device NAME] [--runs N] [--warmup N] [--warmup-s S] [--min-time S]
        [--threads N] [--affinity CPUS] [--isolate] [--runtime-device D]

Each ARTIFACT_DIR is an artifact (a folder with ``artifact.json``) or a folder
searched recursively for artifacts.  Every artifact's sha256 hashes are checked
(``Artifact.read(verify=True)``), then it is measured with ``benchmarks.harness``.
Artifacts whose target's runtime is absent here are skipped, the reason written
in the JSON; invalid artifacts (missing, corrupt, tampered) too, and the exit
status is then 2.  The JSON file is rewritten (atomically) after every artifact,
so an interrupted run keeps what it measured.  Back on the build machine,
``edgevid bench --import results.json`` loads it into the result store under
the device's fingerprint.

Results file (``SCHEMA_VERSION`` 1)::

    {"format": "edgevid-bench-results", "schema_version": 1, "created": <unix time>,
     "device": {<DeviceInfo>}, "config": {<BenchConfig>},
     "results": [{<LatencyRecord>}, ...],
     "skipped": [{"artifact": PATH, "target": T, "variant": V, "kind": "unavailable" | "invalid" | "failed",
                  "reason": "..."}, ...]}

Imports no torch, onnx or opencv: numpy, the standard library, and the runtime
the target loads.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from benchmarks.device import DeviceInfo, fingerprint
from benchmarks.harness import BenchConfig, measure, parse_affinity, skip_reason
from benchmarks.record import LatencyRecord, dumps
from edge.core.errors import BadInput
from edge.core.io import read_json
from targets.base import ARTIFACT_JSON, Artifact

log = logging.getLogger(__name__)

FORMAT = "edgevid-bench-results"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Skipped:
    """An artifact that was not measured, and why.  kind: "unavailable" (runtime absent
    here), "invalid" (unreadable or hashes do not match), "failed" (the runtime refused it)."""

    artifact: str
    kind: str
    reason: str
    target: str = ""
    variant: str = ""

    def to_json(self) -> dict[str, str]:
        return {"artifact": self.artifact, "target": self.target, "variant": self.variant, "kind": self.kind,
                "reason": self.reason}


def find_artifacts(paths: Sequence[str | Path]) -> list[Path]:
    """Artifact folders named by ``paths``: each is an artifact or a folder searched recursively."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / ARTIFACT_JSON).is_file():
            found.append(p)
        elif p.is_dir():
            below = sorted(m.parent for m in p.rglob(ARTIFACT_JSON))
            if not below:
                raise BadInput(f"{p}: no artifacts in this folder (no {ARTIFACT_JSON} below it)")
            found += below
        else:
            raise BadInput(f"{p}: no such artifact folder")
    unique = list(dict.fromkeys(f.resolve() for f in found))
    return unique


def measure_all(paths: Sequence[str | Path], config: BenchConfig, device: DeviceInfo,
                strict: bool = False) -> Iterator[LatencyRecord | Skipped]:
    """Measure every artifact under ``paths`` in order, yielding each record or ``Skipped``.

    ``strict``: every artifact is read and hash-checked before any is measured, and an
    invalid one raises ``BadInput`` (the CLI); otherwise it is yielded as skipped (the agent).
    """
    arts: list[Artifact | Skipped] = []
    for p in find_artifacts(paths):
        try:
            arts.append(Artifact.read(p, verify=True))
        except BadInput as e:
            if strict:
                raise
            arts.append(Skipped(str(p), "invalid", str(e)))
    for art in arts:
        if isinstance(art, Skipped):
            yield art
            continue
        reason = skip_reason(art)
        if reason:
            yield Skipped(str(art.path), "unavailable", reason, art.target, art.variant)
            continue
        try:
            yield measure(art, config, device)
        except BadInput as e:
            if strict:
                raise
            yield Skipped(str(art.path), "failed", str(e), art.target, art.variant)


# ----------------------------------------------------------------------------- the results file

@dataclass(frozen=True)
class Results:
    device: DeviceInfo
    records: tuple[LatencyRecord, ...]
    skipped: tuple[Skipped, ...]
    config: dict[str, Any]
    created: float


def results_json(device: DeviceInfo, config: BenchConfig, records: Sequence[LatencyRecord],
                 skipped: Sequence[Skipped]) -> dict[str, Any]:
    return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "created": time.time(), "device": device.to_json(),
            "config": config.to_json(), "results": [r.to_json() for r in records],
            "skipped": [s.to_json() for s in skipped]}


def write_results(doc: dict[str, Any], out: str | Path) -> None:
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(dumps(doc, indent=1))
    os.replace(tmp, out)


def read_results(path: str | Path, device_name: str | None = None) -> Results:
    """Read an agent results file; ``device_name`` renames the device.  An unknown format or
    schema version, or malformed content, raises ``BadInput`` naming the file."""
    path = Path(path)
    doc = read_json(path, "results file")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadInput(f"{path}: not an edgevid agent results file (format is not {FORMAT!r})")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BadInput(f"{path}: results schema version {version!r} is not supported (this edgevid reads "
                       f"version {SCHEMA_VERSION}); use the agent of the same edgevid release")
    try:
        device = DeviceInfo.from_json(doc["device"], str(path))
        records = [LatencyRecord.from_json(r, f"{path}: results[{i}]") for i, r in enumerate(doc["results"])]
        skipped = [Skipped(str(s["artifact"]), str(s["kind"]), str(s["reason"]), str(s.get("target", "")),
                           str(s.get("variant", ""))) for s in doc.get("skipped", [])]
        config, created = dict(doc.get("config", {})), float(doc.get("created", 0.0))
    except BadInput:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadInput(f"{path}: malformed results file ({type(e).__name__}: {e})") from None
    if device_name:
        device = replace(device, name=device_name)
        records = [replace(r, device=replace(r.device, name=device_name)) for r in records]
    return Results(device, tuple(records), tuple(skipped), config, created)


# ----------------------------------------------------------------------------- entry point

def run(paths: Sequence[str | Path], out: str | Path, config: BenchConfig, device_name: str | None = None
        ) -> dict[str, Any]:
    """Measure everything under ``paths`` and write the results file after each artifact."""
    out = Path(out)
    if not out.parent.is_dir():
        raise BadInput(f"{out}: folder {out.parent} does not exist")
    device = fingerprint(device_name)
    records: list[LatencyRecord] = []
    skipped: list[Skipped] = []
    doc = results_json(device, config, records, skipped)
    for item in measure_all(paths, config, device):
        if isinstance(item, Skipped):
            log.warning("skipped %s: %s", item.artifact, item.reason)
            skipped.append(item)
        else:
            log.info("%s %s: p50 %.2f ms", item.variant, item.target, item.stats.p50)
            records.append(item)
        doc = results_json(device, config, records, skipped)
        write_results(doc, out)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.agent",
                                description="measure edgevid artifacts on this device (numpy + a runtime only)")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT_DIR", help="artifact folders, or folders holding them")
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--device", help="name of this device (default: the hostname)")
    p.add_argument("--runs", type=int, default=BenchConfig.runs, help="timed calls (default %(default)s)")
    p.add_argument("--warmup", type=int, default=BenchConfig.warmup, help="warm-up calls (default %(default)s)")
    p.add_argument("--warmup-s", type=float, default=0.0, help="warm up for at least this many seconds")
    p.add_argument("--min-time", type=float, default=0.0, help="time calls for at least this many seconds")
    p.add_argument("--threads", type=int, help="runtime threads (default: the CPUs this process may use)")
    p.add_argument("--affinity", help="pin to these CPUs, e.g. 0-3 or 4,5")
    p.add_argument("--isolate", action="store_true", help="measure each artifact in a fresh subprocess")
    p.add_argument("--runtime-device", help="runtime device: cpu/cuda/tensorrt (onnxruntime), CPU/GPU/NPU (openvino)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input clip (default 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="info logs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        config = BenchConfig(runs=args.runs, warmup=args.warmup, warmup_s=args.warmup_s, min_time_s=args.min_time,
                             threads=args.threads, affinity=parse_affinity(args.affinity) if args.affinity else None,
                             isolate=args.isolate, seed=args.seed, runtime_device=args.runtime_device)
        doc = run(args.artifacts, args.out, config, args.device)
    except BadInput as e:
        print(f"agent: error: {e}", file=sys.stderr)
        return 2
    for r in doc["results"]:
        s = r["stats"]
        print(f"{r['variant']}  {r['target']}  {r['threads']} threads  p50 {s['p50_ms']:.2f} ms  "
              f"p90 {s['p90_ms']:.2f} ms  load {r['load_ms']:.0f} ms")
    for s in doc["skipped"]:
        print(f"skipped {s['artifact']} ({s['kind']}): {s['reason']}")
    print(f"wrote {len(doc['results'])} measurement(s) to {args.out}")
    return 2 if any(s["kind"] != "unavailable" for s in doc["skipped"]) else 0


if __name__ == "__main__":
    sys.exit(main())
