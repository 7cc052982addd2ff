"""``edgevid`` commands that change weights: train, eval, prune, qat.

Each ``cmd_*(args) -> exit code`` calls the torch job (torch and the job modules are imported
inside it, so the CLI starts without torch); each ``add_*(parser)`` declares its flags.
qat exits 1 when its int8 artifact failed its gate.
"""
from __future__ import annotations

import argparse
import logging

from edge.cli.common import add_json, emit


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


def add_train(p: argparse.ArgumentParser) -> None:
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
    add_json(p)


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


def add_eval(p: argparse.ArgumentParser) -> None:
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
    add_json(p)


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


def add_prune(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--resolution", type=int,
                   help="crop side for FLOPs and fine-tune (default: the checkpoint's, else the model's)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the checkpoint's, else the model's)")
    p.add_argument("--limit", type=int, help="fine-tune on the first N videos only")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tune AdamW learning rate (default %(default)s)")
    add_json(p)


def cmd_qat(args: argparse.Namespace) -> int:
    import torch

    from edge.qat import qat_job
    from quant.qat import QatConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("quant.qat").setLevel(logging.INFO)
    logging.getLogger("edge.qat").setLevel(logging.INFO)
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


def add_qat(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--calib-method", default="minmax", choices=("minmax", "percentile", "entropy", "histogram"),
                   help="calibration method, as for compile (default %(default)s)")
    p.add_argument("--calib-clips", type=int, default=32, help="calibration clips (default %(default)s)")
    p.add_argument("--width", type=float, help="width multiplier (default: the checkpoint's, else 1.0)")
    p.add_argument("--resolution", type=int, help="crop side in pixels (default: the checkpoint's, else the model's)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the checkpoint's, else the model's)")
    p.add_argument("--hard-activations", action="store_true",
                   help="Swish/Sigmoid -> hard approximations (the fpga target needs it for X3D)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", required=True, help="folder: qat.pt (resumable), qat_model.onnx, artifact/")
    add_json(p)
