"""Accuracy of pruned X3D-XS after KD fine-tuning vs unpruned, with latency (issue 8).

Starts from a checkpoint (default: the shipped MutualNet one, materialised at
width 1.0 and ``--resolution``/``--frames`` with that configuration's BN
post-statistics) = the unpruned model and KD teacher.  For each ratio:
``edgevid prune`` (``prune_job``, ``--criterion``, FLOPs target) -> top-1 as
pruned -> BN statistics re-estimated on ``--recal-clips`` training clips ->
top-1 before fine-tuning -> KD fine-tune on ``--train`` (``finetune_kd_resumable``:
teacher logits precomputed, AdamW, warmup + cosine, checkpointed and resumed)
with top-1 on ``--val`` every ``--eval-every`` steps (the learning curve) ->
top-1 after.
Clips are read once into uint8 caches (``edge.train.build_cache``: uniform
frame sampling, evaluation transform - what ``edgevid eval`` feeds the model).
Latency: p50 of the fine-tuned checkpoints compiled for each target
(``benchmarks.studies.prune_bench.latency_p50``), as ratios to the unpruned model.

Everything it makes is kept under ``--out`` and reused: the caches, the pruned
checkpoints ``p{R}.pt``, the teacher logits, the fine-tuned ``p{R}-ft-e{E}.pt``
and their histories.  Several processes may share one ``--out`` (e.g. one per
ratio, ``--no-latency``, then one with every ratio for the table): they split
shared work (caches, teacher-logit shards) through lock files.

    .venv/bin/python -m benchmarks.studies.prune_accuracy --out DIR [--ratios 0.3,0.5] [--epochs 1]
        [--train-clips N] [--resolution 112 --frames 8] [--ckpt edge/checkpoints/x3d_xs_mutual_synth10.pt]
        [--train /work/data/synth_train --val /work/data/synth_val] [--no-latency]

The issue-8 table (2 shared cores; one process per ratio, then the table):

    for r in 0.3 0.5; do OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.studies.prune_accuracy \
        --out prune_acc --ratios $r --train-clips 200 --epochs 1 --eval-every 0 --recal-clips 100 \
        --no-latency & done; wait
    .venv/bin/python -m benchmarks.studies.prune_accuracy --out prune_acc --ratios 0.3,0.5 --train-clips 200 --epochs 1 \
        --eval-every 0 --recal-clips 100
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

SHIPPED = "edge/checkpoints/x3d_xs_mutual_synth10.pt"
SHARD = 100  # clips per teacher-logit shard (fixed boundaries: runs on N and M clips share them)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(lock: Path) -> bool:
    """Create ``lock`` holding our pid; a lock of a dead process is taken over."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            return False
        if pid and not _alive(pid):
            lock.unlink(missing_ok=True)
            return _claim(lock)
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def once(done: Path, make: Callable[[], None]) -> None:
    """Run ``make`` (which writes ``done``) unless ``done`` exists or another process is
    making it, in which case wait for it."""
    lock = done.with_name(done.name + ".lock")
    while not done.exists():
        if _claim(lock):
            try:
                if not done.exists():
                    make()
            finally:
                lock.unlink(missing_ok=True)
        else:
            time.sleep(5)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="work folder (kept and reused)")
    ap.add_argument("--model", default="x3d_xs")
    ap.add_argument("--ckpt", default=SHIPPED, help="unpruned checkpoint (slimmable or static)")
    ap.add_argument("--train", default="/work/data/synth_train")
    ap.add_argument("--val", default="/work/data/synth_val")
    ap.add_argument("--ratios", default="0.3,0.5")
    ap.add_argument("--resolution", type=int, default=112)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--criterion", default="prefix",
                    help="importance criterion (default prefix: a MutualNet checkpoint's channels are ranked)")
    ap.add_argument("--recal-clips", type=int, default=400,
                    help="training clips to re-estimate BN statistics on after pruning (0: none)")
    ap.add_argument("--train-clips", type=int, help="fine-tune on the first N training clips only (default: all)")
    ap.add_argument("--epochs", type=float, default=1.0, help="fine-tune epochs (fractions allowed)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=50, help="fine-tune steps between val evaluations")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for pruning/fine-tuning/evaluation")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    ap.add_argument("--targets", default="onnxruntime,openvino")
    ap.add_argument("--latency-threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from edge.checkpoint import load_checkpoint, save_checkpoint
    from edge.core.errors import BadInput
    from edge.flops import complexity
    from edge.prune import (KDSchedule, finetune_kd_resumable, load_pruned, load_teacher, logits_of, prune_job,
                            recalibrate_bn)
    from edge.train import build_cache
    from edge.core.variant import Variant

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    f, r = args.frames, args.resolution
    base = Variant(args.model, frames=f, resolution=r)
    ratios = [float(x) for x in args.ratios.split(",")]
    tag = f"f{f}-r{r}"

    # data: uint8 caches, built once (shared between processes)
    caches = {}
    for name, data in (("train", args.train), ("val", args.val)):
        folder = out / f"cache-{name}"
        folder.mkdir(exist_ok=True)
        once(folder / f"{tag}.built", lambda d=data, fo=folder: (build_cache(d, f, r, fo),
                                                                  (fo / f"{tag}.built").touch()))
        caches[name] = build_cache(data, f, r, folder)
    src = load_checkpoint(args.ckpt)
    classes, num_classes = src.meta.get("classes"), src.num_classes
    for name, c in caches.items():
        if classes and tuple(classes) != tuple(c.classes):
            raise BadInput(f"{name} data: classes {list(c.classes)} differ from the checkpoint's {list(classes)}")
    val_x, val_y = caches["val"].clips, np.asarray(caches["val"].labels)

    def top1(model: torch.nn.Module) -> float:
        return float((logits_of(model, val_x).argmax(1).numpy() == val_y).mean())

    # the unpruned reference, saved as a static checkpoint at this configuration
    teacher = load_teacher(args.ckpt, base)
    ref_ckpt, ref_json = out / f"p0.0-{tag}.pt", out / f"p0.0-{tag}.json"

    def make_ref() -> None:
        save_checkpoint(ref_ckpt, teacher, base, num_classes,
                        {"classes": list(classes or []), "source": args.ckpt})
        cx = complexity(teacher, base.input_shape)
        _write_json(ref_json, {"ratio": 0.0, "params": cx.params, "gflops": cx.gflops, "top1_before": top1(teacher),
                               "top1_after": None, "clips": len(val_y)})


    # teacher logits on the training clips, in shards any process may compute
    train_x, train_y = caches["train"].clips, np.asarray(caches["train"].labels)
    if args.train_clips:
        train_x, train_y = train_x[:args.train_clips], train_y[:args.train_clips]
    n = len(train_y)
    tdir = out / f"teacher-{tag}"
    tdir.mkdir(exist_ok=True)
    shards = [(i, min(n, i + SHARD)) for i in range(0, n, SHARD)]
    for pass_ in range(2):  # first the free shards, then wait for the others
        for a, b in shards:
            done = tdir / f"{a}-{b}.npy"
            if done.exists():
                continue
            lock = done.with_name(done.name + ".lock")
            if pass_ == 0 and lock.exists():
                continue
            once(done, lambda a=a, b=b, d=done: _save_npy(d, logits_of(teacher, train_x[a:b]).numpy()))
    t_logits = torch.from_numpy(np.concatenate([np.load(tdir / f"{a}-{b}.npy") for a, b in shards]))
    log = logging.getLogger("prune_accuracy")
    log.info("teacher train top-1 %.3f", float((t_logits.argmax(1).numpy() == train_y).mean()))

    run = f"-e{args.epochs:g}" + (f"-n{n}" if args.train_clips else "")
    sched = KDSchedule(epochs=args.epochs, lr=args.lr, batch=args.batch, eval_every=args.eval_every)
    for ratio in ratios:
        pr = out / f"p{ratio}-{tag}.pt"
        pj = out / f"p{ratio}-{tag}.json"

        def make_pruned(ratio: float = ratio, pr: Path = pr, pj: Path = pj) -> None:
            s = prune_job(args.model, args.ckpt, ratio, pr, frames=f, resolution=r, criterion=args.criterion)
            model = load_pruned(pr, base.with_(prune=ratio))
            row = {"ratio": ratio, "criterion": args.criterion, "params": s["params_after"],
                   "gflops": s["gflops_after"], "flops_cut": s["flops_cut"], "channel_ratio": s["channel_ratio"],
                   "top1_pruned": top1(model), "clips": len(val_y)}
            if args.recal_clips:  # BN statistics re-estimated on training clips: the fine-tune's start
                recalibrate_bn(model, train_x[:args.recal_clips])
                ck = load_checkpoint(pr)
                save_checkpoint(pr, model, ck.variant, ck.num_classes,
                                {**ck.meta, "bn_recalibrated": args.recal_clips})
            row["top1_before"] = top1(model)
            _write_json(pj, row)

        once(pj, make_pruned)
        ft = out / f"p{ratio}-{tag}-ft{run}.pt"
        fj = ft.with_suffix(".json")

        def make_ft(ratio: float = ratio, pr: Path = pr, ft: Path = ft, fj: Path = fj) -> None:
            student = load_pruned(pr, base.with_(prune=ratio))
            hist = finetune_kd_resumable(student, train_x, train_y, t_logits, sched,
                                         ft.with_suffix(".state.pt"), evaluate=top1)
            meta = dict(load_checkpoint(pr).meta)
            meta["finetune"] = {"schedule": {k: getattr(sched, k) for k in sched.__dataclass_fields__},
                                "data": args.train, "clips": n, "history": hist}
            save_checkpoint(ft, student, base.with_(prune=ratio), num_classes, meta)
            _write_json(fj, {"top1_after": hist[-1]["top1"], "history": hist})

        once(fj, make_ft)

    once(ref_json, make_ref)  # after the fine-tunes: a process waiting on it would idle

    # the table
    rows = [json.loads(ref_json.read_text())]
    ckpts: dict[float, Path | None] = {0.0: ref_ckpt}
    for ratio in ratios:
        row = json.loads((out / f"p{ratio}-{tag}.json").read_text())
        ft = out / f"p{ratio}-{tag}-ft{run}.pt"
        fin = json.loads(ft.with_suffix(".json").read_text())
        row["top1_after"] = fin["top1_after"]
        row["curve"] = [(h["epoch"], h["top1"]) for h in fin["history"]]
        rows.append(row)
        ckpts[ratio] = ft
    p50s: dict[tuple[str, float], float] = {}
    targets = args.targets.split(",")
    if not args.no_latency:
        from benchmarks.studies.prune_bench import latency_p50

        torch.set_num_threads(args.latency_threads)
        p50s = latency_p50(base, ckpts, targets, args.latency_threads, args.rounds, 3, out / "latency")
    print("latency: p50 ms of one clip, change vs unpruned on the same target in parentheses")
    head = (f"{'ratio':>5} {'params':>7} {'GFLOPs':>7} {'FLOPs cut':>9} {'pruned':>7} {'top-1 before FT':>15} "
            f"{'top-1 after FT':>14}" + "".join(f" {t + ' p50 ms':>17}" for t in targets if p50s))
    print("pruned: top-1 right after pruning; before FT: after BN re-estimation on "
          f"{args.recal_clips} training clips (the fine-tune's start)")
    print(f"{args.model} at {tag}, {len(val_y)} val clips (1 SE ~ {100 * np.sqrt(0.25 / len(val_y)):.1f} pt); "
          f"fine-tune {args.epochs:g} epoch(s) on {n} clips, KD from the unpruned model")
    print(head)
    g0 = rows[0]["gflops"]
    for row in rows:
        after = "-" if row["top1_after"] is None else f"{100 * row['top1_after']:.1f}%"
        pruned = f"{100 * row['top1_pruned']:.1f}%" if "top1_pruned" in row else "-"
        lat = "".join(f" {p50s[(t, row['ratio'])]:8.2f} ({p50s[(t, row['ratio'])] / p50s[(t, 0.0)] - 1:+5.0%})"
                      for t in targets if p50s)
        print(f"{row['ratio']:5.2f} {row['params'] / 1e6:6.2f}M {row['gflops']:7.3f} {1 - row['gflops'] / g0:9.1%} "
              f"{pruned:>7} {100 * row['top1_before']:14.1f}% {after:>14}{lat}")
    for row in rows[1:]:
        print(f"curve p{row['ratio']}: pruned {100 * row['top1_pruned']:.1f}%, BN re-estimated (step 0) "
              f"{100 * row['top1_before']:.1f}%, "
              + ", ".join(f"epoch {e:.2f}: {100 * a:.1f}%" for e, a in row["curve"]))
    _write_json(out / f"table-{tag}{run}.json",
                {"rows": rows, "latency_p50_ms": {f"{t}/{q}": v for (t, q), v in p50s.items()}})
    return 0


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
