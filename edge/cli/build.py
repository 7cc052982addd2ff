"""``edgevid`` commands that build things: models, convert-ckpt, data, compile, check-ops, lower.

Each ``cmd_*(args) -> exit code`` calls the library (imported lazily: torch, onnx and the
runtimes load only when the command runs) and prints via ``emit``; each ``add_*(parser)``
declares its flags.  Exit 1: data check found bad videos, compile's fidelity gate failed,
check-ops/lower left nodes outside the target's operator set.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge.cli.common import add_debug, add_json, emit
from edge.core.errors import BadInput, GateFailed
from edge.core.text import table


def cmd_models(args: argparse.Namespace) -> int:
    from edge.zoo import zoo_table

    rows = zoo_table(args.model or None)
    emit(args, rows, lambda rs: table(
        [(r["name"], f"{r['params'] / 1e6:.2f}M", f"{r['gflops']:.3f}", "x".join(map(str, r["input_shape"])),
          r["description"], r["published"] or "-") for r in rs],
        ("name", "params", "GFLOPs", "input", "description", "published")))
    return 0


def add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="*", help="only these models (default: all)")
    add_json(p)


def cmd_convert_ckpt(args: argparse.Namespace) -> int:
    from edge.convert import convert_checkpoint

    result = convert_checkpoint(args.source_format, args.src, args.dst, args.model)
    emit(args, result, lambda r: f"wrote {r['dst']} ({r['model']}, {r['num_classes']} classes, "
                                 f"{r['tensors']} tensors)")
    return 0


def add_convert_ckpt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source_format", required=True, choices=["pytorchvideo"],
                   help="source checkpoint format")
    p.add_argument("src", help="source checkpoint (.pyth)")
    p.add_argument("dst", help="edgevid checkpoint to write")
    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_s")
    add_json(p)


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


def add_data(p: argparse.ArgumentParser) -> None:
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
        add_json(q)
        add_debug(q)


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
        from quant.calib import default_method, read_calib

        mode = args.calib_mode or clip_sampling(meta, args.ckpt or "checkpoint")
        method = args.calib_method or default_method(args.target)
        calib = read_calib(args.calib, variant.input_shape, clips=args.calib_clips, method=method,
                           progress=not args.json, mode=mode)
    elif args.calib:
        raise BadInput(f"--calib is for --precision int8, not {variant.precision}")
    from edge.core.chatter import log_to_file
    from edge.gate import Gate

    gate = Gate(args.max_drop, args.min_sqnr, args.min_agreement)
    out = Path(args.out)
    log_to_file(out.parent / f"{out.name}.log")  # beside the artifact: the folder is replaced when complete
    from edge.compile import compile_variant, summary  # torch
    from targets.base import ARTIFACT_JSON, Artifact

    try:
        art = compile_variant(variant, args.target, args.out, ckpt=args.ckpt, options=options, calib=calib,
                              gate=gate, mixed=args.mixed, accuracy_data=args.accuracy_data, seed=args.seed)
    except GateFailed:
        if (Path(args.out) / ARTIFACT_JSON).is_file():  # the failed artifact was kept: show it, then exit 1
            emit(args, summary(Artifact.read(args.out, verify=False)), _compile_text)
        raise
    emit(args, summary(art), _compile_text)
    return 0


def _compile_text(s: dict[str, Any]) -> str:
    files = ", ".join(f"{name} ({size / 1e6:.1f} MB)" for name, size in s["files"].items())
    lines = [str(s["artifact"]), f"  {s['target']} {s['variant']} [{s['status']}]  input {s['input']}  files: {files}"]
    acc = s["notes"].get("accuracy")
    if isinstance(acc, dict) and acc.get("top1") is not None:
        lines.append(f"  top-1 {acc['top1']:.3f} (95% {acc['low']:.3f}-{acc['high']:.3f}) on {acc['clips']} "
                     f"labelled held-out clips, run by {acc['measured_with']}")
    elif isinstance(acc, dict):
        lines.append(f"  top-1 unknown: {acc.get('reason', 'not measured')}")
    fid = s.get("fidelity")
    if fid:
        sqnr = fid["sqnr_db"] if isinstance(fid["sqnr_db"], str) else f"{fid['sqnr_db']:.1f}"
        drop = "" if fid.get("top1_drop") is None else \
            f"top-1 drop {fid['top1_drop'] * 100:+.1f} points vs fp32 {fid['reference_top1']['top1']:.3f}, "
        lines.append(f"  int8 vs fp32 on {fid['clips']} held-out clips: {drop}top-1 agreement "
                     f"{fid['agreement']:.3f}, cosine {fid['cosine']:.4f}, SQNR {sqnr} dB")
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


def add_compile(p: argparse.ArgumentParser) -> None:
    from targets.registry import TARGETS

    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_s")
    p.add_argument("--ckpt", help="edgevid checkpoint (default: untrained weights)")
    p.add_argument("--target", required=True, help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("--precision", default="fp32", help="fp32 (default), fp16 or int8")
    p.add_argument("--calib", help="int8: calibration clips, a manifest/folder/video (default: the shipped set)")
    p.add_argument("--calib-method", choices=("minmax", "percentile", "entropy", "histogram"),
                   help="int8: calibration method (default: percentile on onnxruntime, histogram - the "
                        "error-minimising range - on openvino and tflite, minmax elsewhere; entropy: "
                        "onnxruntime only, histogram: openvino and tflite only)")
    p.add_argument("--calib-clips", type=int, default=32, help="int8: calibration clips (default %(default)s)")
    p.add_argument("--calib-mode", choices=("stride", "uniform"),
                   help="int8: frame sampling of the calibration and held-out clips (default: as the checkpoint "
                        "was trained - uniform for edgevid-trained ones, X3D's stride otherwise)")
    p.add_argument("--accuracy-data", metavar="PATH|synth:CLIPS:SEED",
                   help="labelled held-out clips the artifact's top-1 is measured on (default: the checkpoint's "
                        "own; the shipped one's are regenerated: synth:300:2)")
    p.add_argument("--max-drop", type=float, default=0.02,
                   help="int8 gate with labelled clips: largest top-1 drop below fp32, a fraction "
                        "(default %(default)s = 2 points); the build fails above it (exit 1, artifact kept, "
                        "marked failed)")
    p.add_argument("--min-sqnr", type=float, default=20.0,
                   help="int8 gate without labelled clips: least logit SQNR against fp32 in dB (default %(default)s)")
    p.add_argument("--min-agreement", type=float,
                   help="int8: also require this top-1 agreement with fp32 on the held-out clips (default: not used)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of untrained weights (default %(default)s: the same command builds the same artifact)")
    p.add_argument("--mixed", "--mixed-precision", dest="mixed", action="store_true",
                   help="int8 (onnxruntime, openvino): keep the most sensitive layers float until "
                        "the agreement floor (--min-agreement, default 0.99) is met; keep the fastest measured "
                        "configuration")
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
    add_json(p)


def input_shape_arg(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape 1x3x8x112x112`` as a tuple; one ``BadInput`` line when it is not one."""
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise BadInput(f"--input-shape {text!r}: expected positive dimensions joined by 'x', e.g. 1x3x8x112x112")
    return dims


def _refuse_dynamic_inputs(proto: Any, where: str) -> None:
    """``BadInput`` naming the first dynamic dimension of a graph input: the lowering rewrites by shape."""
    from quant.onnx_io import graph_inputs

    for value in graph_inputs(proto):
        for i, d in enumerate(value.type.tensor_type.shape.dim):
            if not (d.HasField("dim_value") and d.dim_value > 0):
                raise BadInput(f"{where}: input {value.name!r} dimension {i} ({d.dim_param or 'unknown'}) is dynamic; "
                               "fix it with --input-shape, e.g. --input-shape 1x3x8x112x112")


def cmd_check_ops(args: argparse.Namespace) -> int:
    import tempfile

    from targets.registry import get_target

    target = get_target(args.target)
    shape = input_shape_arg(args.input_shape)
    if shape is None:
        reasons = target.check(args.onnx)
    else:  # the file with its dynamic input fixed, checked as the target would see it
        import onnx

        from quant.onnx_io import load_onnx

        with tempfile.TemporaryDirectory(prefix="edgevid-check-") as tmp:
            fixed = Path(tmp) / Path(args.onnx).name
            onnx.save_model(load_onnx(args.onnx, shape), str(fixed))
            reasons = target.check(fixed)
    emit(args, {"model": args.onnx, "target": args.target, "ok": not reasons, "reasons": reasons},
         lambda d: "\n".join([*d["reasons"], f"{d['model']}: {len(d['reasons'])} node(s) rejected by {d['target']}"
                              if d["reasons"] else f"{d['model']}: every node accepted by {d['target']}"]))
    return 1 if reasons else 0


def add_check_ops(p: argparse.ArgumentParser) -> None:
    from targets.registry import TARGETS

    p.add_argument("--target", required=True, help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("onnx", metavar="MODEL.onnx", help="ONNX model to check (any exporter and opset)")
    p.add_argument("--input-shape", help="fix a dynamic input, e.g. 1x3x8x112x112")
    add_json(p)


def cmd_lower(args: argparse.Namespace) -> int:
    import onnx

    from targets.checker import check
    from targets.lowering import lower
    from targets.lowering.fidelity import lowering_fidelity
    from quant.onnx_io import load_onnx
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
    source = load_onnx(args.src, input_shape_arg(args.input_shape))
    _refuse_dynamic_inputs(source, args.src)
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


def add_lower(p: argparse.ArgumentParser) -> None:
    from targets.opset import OPSETS

    p.add_argument("--target", required=True, help=f"target whose operator set to lower into: {', '.join(OPSETS)}")
    p.add_argument("--hard-activations", action="store_true",
                   help="also replace Sigmoid/Swish by ReLU6-based hard forms (changes the math; reported)")
    p.add_argument("src", metavar="IN.onnx",
                   help="ONNX model to rewrite (any exporter; older opsets are upgraded to 17 first)")
    p.add_argument("dst", metavar="OUT.onnx", help="lowered ONNX model to write")
    p.add_argument("--input-shape", help="fix a dynamic input, e.g. 1x3x8x112x112")
    add_json(p)
