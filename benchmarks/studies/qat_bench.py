"""QAT vs PTQ for the fpga scheme (power-of-two int8) on the synthetic motion set.

    .venv/bin/python -m benchmarks.studies.qat_bench [--ckpt edge/checkpoints/x3d_xs_mutual_synth10.pt]
        [--config w0.5-r96-f4] [--train /work/data/synth_train] [--val /work/data/synth_val]
        [--epochs 3] [--limit 320] [--batch 16] [--lr 3e-4] [--rounding half_up|half_even]
        [--calib-clips 32] [--sim-clips 60] [--out DIR] [--json]

One configuration of the slimmable checkpoint (``materialize``), exported to
ONNX; top-1 on every ``--val`` clip of:

* ``fp32-swish``: the trained model (ONNX Runtime on the export);
* ``fp32-hard``: the fpga-lowered model (hard-swish / hard-sigmoid, BN folded,
  Conv3d as temporal taps of Conv2d), fp32 - what the fpga op set can hold;
* ``PTQ-fpga``: :func:`quant.pow2.quantize` of the lowered model (``mse``,
  ``--calib-clips`` training clips): the QDQ model on ONNX Runtime, and through
  the device's rounding (the fake-quant module with round half up, which equals
  the integer simulator - tests/test_qat.py);
* ``QAT-fpga``: the QAT module after ``--epochs`` epochs (fake quant with
  ``--rounding``);
* ``QAT-fpga artifact``: its export compiled by the normal path (``targets.fpga``
  int8, same calibration clips) on ONNX Runtime (QDQ) and on the integer
  simulator (``--sim-clips`` clips), with its agreement with the QAT module.

Calibration clips are training clips (every ``len // calib`` th of the decoded
cache), never validation clips.  Each epoch of QAT sees ``--limit`` training
clips (a different seeded subset each epoch).  Everything is written to
``--out`` (default ``/work/notes/qat_runs/bench``): ``baseline.json`` (the
fp32/PTQ rows, reused when present), ``qat.pt`` (resumable checkpoint, one per
epoch), ``qat_model.onnx``, the compiled artifact and ``results.json``.
Run long jobs as ``nohup nice -n 10 ... &``; rerunning resumes.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

log = logging.getLogger("qat_bench")


def _ort(model: onnx.ModelProto | str | Path) -> Any:
    from quant.ort_session import ort_session

    return ort_session(Path(model) if isinstance(model, (str, Path)) else model, threads=1, spin=True)


def _logits(run: Any, clips_u8: np.ndarray) -> np.ndarray:
    from calib_data.tensor import to_tensor

    out = []
    for k in range(len(clips_u8)):
        x = to_tensor(clips_u8[k:k + 1]).numpy()
        out.append(np.asarray(run(x)).reshape(-1))
    return np.stack(out)


def _session_fn(sess: Any) -> Any:
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def main(argv: list[str] | None = None) -> int:
    from targets.export import export_onnx
    from edge.models.slim import SlimConfig, load_slim, materialize
    from calib_data.tensor import to_tensor
    from edge.qat import prepare
    from edge.train import build_cache
    from quant.pow2 import quantize
    from quant.qat import QatConfig, finetune
    from targets.lowering import lower
    from targets.opset import FPGA_OPSET

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default="edge/checkpoints/x3d_xs_mutual_synth10.pt")
    p.add_argument("--config", default="w0.5-r96-f4", help="width-resolution-frames of the slimmable checkpoint")
    p.add_argument("--train", default="/work/data/synth_train")
    p.add_argument("--val", default="/work/data/synth_val")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=320, help="training clips per epoch")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--calib-clips", type=int, default=32)
    p.add_argument("--recalibrate", action="store_true",
                   help="activation scales again after every epoch (default: before training and at the end)")
    p.add_argument("--val-every-epoch", action="store_true", help="top-1 on --val after every epoch (slow on CPU)")
    p.add_argument("--rounding", default="half_up", choices=("half_up", "half_even"),
                   help="QAT activation rounding: half_up = the device (integer simulator), half_even = ONNX "
                        "QuantizeLinear (the QDQ model on ORT) (default %(default)s)")
    p.add_argument("--sim-clips", type=int, default=60, help="validation clips run on the integer simulator")
    p.add_argument("--out", default="/work/notes/qat_runs/bench")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    cfg_slim = SlimConfig.parse(args.config)
    slim, meta = load_slim(args.ckpt)
    model = materialize(slim, cfg_slim.width, cfg_slim.resolution, cfg_slim.frames)
    variant = cfg_slim.variant(slim.model_name)
    f, r = cfg_slim.frames, cfg_slim.resolution
    cache_dir = out / "cache"
    train = build_cache(args.train, f, r, cache_dir / "train")
    val = build_cache(args.val, f, r, cache_dir / "val")
    step = max(1, len(train.labels) // args.calib_clips)
    calib = [to_tensor(train.clips[k:k + 1]).numpy()
             for k in range(0, step * args.calib_clips, step)]
    src_path = out / "source.onnx"
    export_onnx(model, variant.input_shape, src_path)
    source = onnx.load(str(src_path))
    lowered = lower(source, FPGA_OPSET, hard_activations=True)
    meta_top1 = next((row["top1"] for row in meta.get("accuracy", []) if row.get("config") == cfg_slim.tag), None)

    base_file = out / "baseline.json"
    if base_file.is_file() and json.loads(base_file.read_text()).get("config") == cfg_slim.tag:
        base = json.loads(base_file.read_text())
    else:
        t0 = time.perf_counter()
        lg_swish = _logits(_session_fn(_ort(source)), val.clips)
        lg_hard = _logits(_session_fn(_ort(lowered)), val.clips)
        qdq, _ = quantize(lowered, calib, "mse")
        lg_ptq = _logits(_session_fn(_ort(qdq)), val.clips)
        base = {"config": cfg_slim.tag, "checkpoint_top1": meta_top1,
                "fp32_swish": _top1(lg_swish, val.labels), "fp32_hard": _top1(lg_hard, val.labels),
                "ptq_fpga": _top1(lg_ptq, val.labels),
                "ptq_agreement_vs_hard": float((lg_ptq.argmax(1) == lg_hard.argmax(1)).mean()),
                "seconds": round(time.perf_counter() - t0, 1)}
        onnx.save(qdq, str(out / "ptq_model.onnx"))
        base_file.write_text(json.dumps(base, indent=1))
    log.info("baseline: %s", base)

    if "ptq_fpga_device" not in base:  # PTQ through the device's rounding (the fake-quant module equals the simulator)
        ptq_dev = prepare(source, "fpga", hard_activations=True, method="mse", rounding="half_up")
        ptq_dev.calibrate(calib)
        ptq_dev.eval()
        with torch.no_grad():
            lg = np.concatenate([ptq_dev(to_tensor(val.clips[s:s + 16])).numpy()
                                 for s in range(0, len(val.labels), 16)])
        base["ptq_fpga_device"] = _top1(lg, val.labels)
        base_file.write_text(json.dumps(base, indent=1))
    net = prepare(source, "fpga", hard_activations=True, method="mse", rounding=args.rounding)
    qcfg = QatConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, limit=args.limit,
                     recalibrate=args.recalibrate)
    res = finetune(net, train.clips, train.labels, calib, qcfg, out=out / "qat.pt", resume=True,
                   val=(val.clips, val.labels) if args.val_every_epoch else None)
    net.eval()
    with torch.no_grad():
        lg_torch = np.concatenate([net(to_tensor(val.clips[s:s + 16])).numpy()
                                   for s in range(0, len(val.labels), 16)])
    qat_torch = _top1(lg_torch, val.labels)
    qat_onnx = out / "qat_model.onnx"
    onnx.save(net.to_onnx(), str(qat_onnx))

    # the normal compile path: fpga int8 of the fine-tuned (lowered fp32) model
    from dataclasses import replace

    from targets.registry import TargetOptions, get_target

    target = get_target("fpga", TargetOptions(hard_activations=True, threads=1))
    v8 = replace(variant, precision="int8")
    art = target.compile(qat_onnx, v8, out / "artifact", calib=calib)
    qdq_qat = onnx.load(str(art.model_path))
    lg_qat = _logits(_session_fn(_ort(qdq_qat)), val.clips)
    from quant.intsim import Simulator

    sim = Simulator(qdq_qat)
    n_sim = min(args.sim_clips, len(val.labels))
    lg_sim = _logits(sim, val.clips[:n_sim])
    rows = [("fp32-swish (trained)", base["fp32_swish"]), ("fp32-hard (fpga lowering)", base["fp32_hard"]),
            ("PTQ-fpga (pow2 int8, ORT QDQ)", base["ptq_fpga"]),
            ("PTQ-fpga (device rounding)", base["ptq_fpga_device"]),
            (f"QAT-fpga {res.epochs_done} ep (fake-quant, {args.rounding})", qat_torch),
            ("QAT-fpga artifact (ORT QDQ)", _top1(lg_qat, val.labels)),
            (f"QAT-fpga artifact (int sim, {n_sim} clips)", _top1(lg_sim, val.labels[:n_sim]))]
    result = {"config": cfg_slim.tag, "model": slim.model_name, "val_clips": int(len(val.labels)),
              "train_clips_per_epoch": args.limit, "epochs": res.epochs_done, "batch": args.batch, "lr": args.lr,
              "calib_clips": len(calib), "rounding": args.rounding, "rows": dict(rows), "history": res.history,
              "artifact_vs_qat_torch_agreement": float((lg_qat.argmax(1) == lg_torch.argmax(1)).mean()),
              "artifact_vs_qat_torch_max_abs": float(np.abs(lg_qat - lg_torch).max()),
              "sim_vs_ort_agreement": float((lg_sim.argmax(1) == lg_qat[:n_sim].argmax(1)).mean()),
              "artifact_status": art.status,
              "wall_s": round(time.perf_counter() - t_start, 1), "baseline": base}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"\n{slim.model_name} {cfg_slim.tag}, top-1 on {len(val.labels)} validation clips "
              f"({args.val}); QAT {res.epochs_done} epochs x {args.limit} clips, lr {args.lr}")
        print(f"{'':44s} top-1")
        for name, v in rows:
            print(f"{name:44s} {100 * v:5.1f}%")
        print(f"artifact vs QAT module: agreement {100 * result['artifact_vs_qat_torch_agreement']:.1f}%, "
              f"max |dlogit| {result['artifact_vs_qat_torch_max_abs']:.2e}; simulator vs ORT agreement "
              f"{100 * result['sim_vs_ort_agreement']:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
