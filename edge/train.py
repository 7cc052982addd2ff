"""Training: plain supervised training and fine-tuning of any zoo model, and
MutualNet training of a slimmable one (``mutual=True``); single process or
DistributedDataParallel under ``torchrun``.

MutualNet step (Yang et al. 2020, with frames as part of the input resolution):
the full width at the largest resolution and most frames learns from the labels;
then the smallest width and two random widths, each at a random resolution and
frame count of the table, learn from the full network's (detached) softmax as a
soft target (in-place distillation).  Each of the four passes has its own
backward (gradients accumulate; under DDP the first three run in ``no_sync``);
one optimizer step.  After the last step the BN post-statistics of every
configuration of the table (widths x resolutions x frames) are estimated
(``SlimNet.calibrate``) on the first ``calib_clips`` training clips.

Data.  Decoding video every step would dominate on a CPU, so the training clips
are decoded once, at the largest frame count and resolution of the table
(uniform temporal sampling over the whole video, short side resized, centre
crop: the evaluation transform), into a uint8 cache ``<out>.cache/`` beside the
checkpoint (``clips-f{F}-r{R}.npy`` + labels, rebuilt when the manifest
changes).  Smaller configurations are derived on the fly: a uniform subset of
the cached frames (``linspace(0, F-1, f)`` rounded) and a bilinear, antialiased
resize of the crop.  No augmentation (flips would swap the synthetic set's
left/right classes).

Reproducibility: the data order of epoch ``e`` is ``default_rng([seed, e])``'s
permutation, the configurations of step ``s`` come from ``default_rng([seed, s])``
and the torch RNG (dropout) is reseeded every step from (seed, step, rank), so a
run stopped and resumed from any checkpoint ends with the weights of the
uninterrupted run.  On a CPU the same command gives the same weights; CUDA
kernels (cuDNN autotuning, atomics) are not bit-reproducible.

Checkpoints are written atomically (``edge.checkpoint.save_checkpoint``) every
``save_every`` steps, at every epoch end and at the end, with the training
configuration, step, optimizer state and history in ``meta``; ``resume``
continues from the file at ``out`` when its configuration matches.
Mixed precision (bfloat16 autocast) is on by default on CUDA only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

MEAN = 0.45
STD = 0.225
WIDTH_STEP = 0.05  # random widths are drawn from this grid inside the range


# ----------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (stored in every checkpoint).

    ``widths`` x ``resolutions`` x ``frames`` is the configuration table of a
    mutual run; a plain run takes one value of each.
    """

    model: str
    data: str
    out: str
    mutual: bool = False
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    seed: int = 0
    widths: tuple[float, ...] = (1.0,)
    resolutions: tuple[int, ...] = (128,)
    frames: tuple[int, ...] = (8,)
    val: str | None = None
    init: str | None = None
    save_every: int = 50
    calib_clips: int = 256
    limit: int | None = None
    amp: bool | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "save_every", "calib_clips"):
            if getattr(self, name) < 1:
                raise BadInput(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInput(f"--lr must be positive, got {self.lr}")
        if not (self.widths and self.resolutions and self.frames):
            raise BadInput("--widths, --resolutions and --frames need at least one value each")
        if any(not 0 < w <= 1 for w in self.widths):
            raise BadInput(f"--widths must lie in (0, 1], got {','.join(map(str, self.widths))}")
        if any(r < 32 for r in self.resolutions) or any(f < 1 for f in self.frames):
            raise BadInput("--resolutions must be >= 32 and --frames >= 1")
        if not self.mutual and (len(self.widths), len(self.resolutions), len(self.frames)) != (1, 1, 1):
            raise BadInput("several widths/resolutions/frames need --mutual (a plain run trains one configuration)")
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--limit must be at least 1, got {self.limit}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def same_run(self, other: dict[str, Any]) -> list[str]:
        """Fields that differ from a stored configuration (ignoring where to write
        and the device, which do not change the result)."""
        mine = self.to_json()
        return [k for k in mine if k not in ("out", "device", "amp")
                and _norm(mine[k]) != _norm(other.get(k))]


def parse_list(text: str, kind: type, flag: str) -> tuple:
    """``"0.25,0.5"`` -> (0.25, 0.5); ``BadInput`` naming ``flag`` on a bad item."""
    try:
        values = tuple(kind(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise BadInput(f"{flag}: expected comma-separated {kind.__name__} values, got {text!r}") from None
    if not values:
        raise BadInput(f"{flag}: no value in {text!r}")
    return tuple(sorted(set(values)))


def default_table(model: str, mutual: bool) -> tuple[tuple[float, ...], tuple[int, ...], tuple[int, ...]]:
    """Default widths, resolutions, frames: the small MutualNet table used here for
    ``mutual``, else the zoo model's own input at width 1.0."""
    from edge.models.registry import model_info

    if mutual:
        return (0.25, 0.5, 0.75, 1.0), (96, 112, 128), (4, 8)
    info = model_info(model)
    return (1.0,), (info.resolution,), (info.frames,)


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


@dataclass
class TrainResult:
    out: Path
    steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    accuracy: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- data

@dataclass(frozen=True)
class ClipCache:
    """Training clips decoded once: ``clips`` (N, 3, F, R, R) uint8 RGB (possibly a
    memory map), ``labels`` (N,) int64, class names."""

    clips: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


def _dataset_key(data: str, frames: int, resolution: int, limit: int | None) -> dict[str, Any]:
    from calib_data.datasets import open_dataset

    ds = open_dataset(data)
    h = hashlib.sha256()
    for item in ds.items:
        st = item.path.stat() if item.path.exists() else None
        h.update(f"{item.path}|{item.label}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return {"data": str(Path(data).resolve()), "items": h.hexdigest(), "frames": frames, "resolution": resolution,
            "limit": limit, "classes": list(ds.classes), "version": 1}


def build_cache(data: str, frames: int, resolution: int, folder: Path, limit: int | None = None) -> ClipCache:
    """Decode the labelled clips of ``data`` once into ``folder`` (or reuse a
    matching cache there).  Returns the cache memory-mapped."""
    from calib_data.datasets import open_dataset
    from calib_data.loader import iter_videos
    from calib_data.sampling import ClipSpec

    key = _dataset_key(data, frames, resolution, limit)
    stem = folder / f"clips-f{frames}-r{resolution}"
    clips_file, labels_file, key_file = (stem.with_suffix(s) for s in (".npy", ".labels.npy", ".json"))
    if key_file.is_file() and clips_file.is_file() and labels_file.is_file():
        try:
            if json.loads(key_file.read_text()) == key:
                return ClipCache(np.load(clips_file, mmap_mode="r"), np.load(labels_file), tuple(key["classes"]))
        except (OSError, ValueError):
            pass
    ds = open_dataset(data)
    if not ds.labelled or not ds.classes:
        raise BadInput(f"{data}: training needs labelled clips (a manifest with labels and labels.json)")
    items = [i for i in ds.items if i.label is not None]
    n = len(items) if limit is None else min(limit, len(items))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = clips_file.with_suffix(".npy.tmp")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, frames, resolution, resolution))
    labels = np.empty(n, dtype=np.int64)
    spec = ClipSpec(frames=frames, resolution=resolution, mode="uniform")
    t0 = time.perf_counter()
    got = 0
    subset = dataclasses.replace(ds, items=tuple(items))
    for video in iter_videos(subset, spec, limit=n):
        clip = video.clips[0]  # (3, F, R, R) normalised float32 -> exact uint8 again
        arr[got] = np.clip(np.rint((clip * STD + MEAN) * 255.0), 0, 255).astype(np.uint8)
        labels[got] = video.item.label
        got += 1
    arr.flush()
    del arr
    if got < n:  # bad videos were skipped: keep the good ones
        full = np.load(tmp, mmap_mode="r")[:got].copy()
        np.save(tmp.with_suffix(".tmp2.npy"), full)
        os.replace(tmp.with_suffix(".tmp2.npy"), tmp)
        labels = labels[:got]
    os.replace(tmp, clips_file)
    np.save(labels_file, labels)
    key_file.write_text(json.dumps(key))
    log.info("decoded %d training clips of %s at %d x %d into %s in %.1f s", got, data, frames, resolution,
             clips_file, time.perf_counter() - t0)
    return ClipCache(np.load(clips_file, mmap_mode="r"), labels, tuple(key["classes"]))


def to_input(clips_u8: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, T, S, S) -> normalised float32 tensor on ``device``."""
    x = torch.from_numpy(np.array(clips_u8, copy=True)).to(device)
    return (x.float() / 255.0 - MEAN) / STD


def resample(x: torch.Tensor, frames: int, resolution: int) -> torch.Tensor:
    """(B, 3, F, R, R) -> (B, 3, frames, resolution, resolution): uniform subset of
    the frames, bilinear antialiased resize."""
    b, c, t, h, w = x.shape
    if frames != t:
        if frames > t:
            raise BadInput(f"cannot make {frames} frames out of {t} cached ones")
        idx = torch.as_tensor(np.round(np.linspace(0, t - 1, frames)).astype(np.int64), device=x.device)
        x = x.index_select(2, idx)
    if resolution != h:
        y = x.reshape(b, c * frames, h, w)
        y = F.interpolate(y, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        x = y.reshape(b, c, frames, resolution, resolution)
    return x


# ----------------------------------------------------------------------------- distributed

@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None) -> Dist:
    """Join the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def _barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


# ----------------------------------------------------------------------------- model and state

def _device(cfg: TrainConfig, d: Dist) -> torch.device:
    name = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and d.world > 1:
        name = f"cuda:{d.local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device here")
    return torch.device(name)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    from edge.models import create_model
    from edge.models.slim import SlimNet
    from edge.core.variant import Variant

    if cfg.mutual:
        return SlimNet(cfg.model, num_classes, (min(cfg.widths), max(cfg.widths)), max(cfg.resolutions),
                       max(cfg.frames))
    return create_model(Variant(cfg.model, cfg.widths[0], cfg.resolutions[0], cfg.frames[0]), num_classes)


def _weights(model: nn.Module) -> nn.Module:
    """The module whose state dict is the static model's."""
    return getattr(model, "net", model)


def load_init(model: nn.Module, path: str) -> None:
    """Fine-tuning: copy every tensor of checkpoint ``path`` whose key and shape
    match; a classifier of another class count stays freshly initialised."""
    from edge.checkpoint import as_state_dict, load_pickle

    state = as_state_dict(load_pickle(path), path)
    target = _weights(model).state_dict()
    matched = {k: v for k, v in state.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    if not matched:
        raise BadInput(f"{path}: no tensor matches {type(_weights(model)).__name__} (wrong model?)")
    skipped = sorted(set(target) - set(matched))
    _weights(model).load_state_dict(matched, strict=False)
    log.info("initialised %d of %d tensors from %s; kept fresh: %s", len(matched), len(target), path,
             ", ".join(skipped[:6]) + (" ..." if len(skipped) > 6 else "") if skipped else "none")


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def save_state(cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer | None, step: int,
               classes: Sequence[str], history: list[dict[str, Any]], done: bool,
               accuracy: list[dict[str, Any]] | None = None, path: str | Path | None = None,
               half: bool = False) -> Path:
    """Atomic checkpoint of the run so far (``opt`` None: weights only, for shipping)."""
    from edge.checkpoint import save_checkpoint
    from edge.models.slim import SlimNet, save_slim
    from edge.core.variant import Variant

    meta: dict[str, Any] = {"train": cfg.to_json(), "sampling": "uniform", "step": step, "classes": list(classes),
                            "done": done,
                            "history": history, "accuracy": accuracy or [],
                            "command": " ".join(sys.argv) if sys.argv else ""}
    if opt is not None:
        meta["optimizer"] = _cpu(opt.state_dict())
    path = Path(path or cfg.out)
    if isinstance(model, SlimNet):
        return save_slim(path, model, meta, half=half)
    variant = Variant(cfg.model, cfg.widths[0], cfg.resolutions[0], cfg.frames[0])
    net = model
    if half:
        import copy

        net = copy.deepcopy(model).cpu().half()
    return save_checkpoint(path, net, variant, len(classes), meta)


def load_state(cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list, bool]:
    """Restore weights, optimizer and step from ``cfg.out``; (step, history, done)."""
    from edge.checkpoint import load_checkpoint, load_into

    ckpt = load_checkpoint(cfg.out)
    stored = ckpt.meta.get("train")
    if not isinstance(stored, dict):
        raise BadInput(f"{cfg.out}: not a training checkpoint of edgevid train (no training configuration)")
    diff = cfg.same_run(stored)
    if diff:
        raise BadInput(f"{cfg.out}: --resume with a different configuration ({', '.join(diff)} differ); "
                       "use the original flags or another --out")
    load_into(_weights(model), ckpt.state_dict, cfg.out)
    if "optimizer" in ckpt.meta:
        opt.load_state_dict(ckpt.meta["optimizer"])
    slim_meta = ckpt.meta.get("slim")
    if slim_meta and hasattr(model, "bn_stats"):
        device = next(model.parameters()).device
        model.bn_stats = {c: {k: v.to(device, torch.float32) if v.is_floating_point() else v.to(device)
                              for k, v in s.items()} for c, s in slim_meta.get("bn_stats", {}).items()}
    return int(ckpt.meta.get("step", 0)), list(ckpt.meta.get("history", [])), bool(ckpt.meta.get("done", False))


# ----------------------------------------------------------------------------- steps

def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 0 at the last step."""
    total = cfg.epochs * steps_per_epoch
    warm = min(int(cfg.warmup_epochs * steps_per_epoch), total - 1)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c p_c log softmax(logits)_c (in-place distillation)."""
    return -(target_probs * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def sub_configs(cfg: TrainConfig, step: int) -> list[tuple[float, int, int]]:
    """The three sub-networks of MutualNet step ``step``: the smallest width and two
    random widths (grid of ``WIDTH_STEP`` inside the range), each at a random
    resolution and frame count of the table."""
    rng = np.random.default_rng([cfg.seed, step, 1])
    lo, hi = min(cfg.widths), max(cfg.widths)
    grid = sorted({round(lo + k * WIDTH_STEP, 4) for k in range(int((hi - lo) / WIDTH_STEP + 1e-9) + 1)} | {lo})
    widths = [lo] + [float(rng.choice(grid)) for _ in range(2)]
    return [(w, int(rng.choice(cfg.resolutions)), int(rng.choice(cfg.frames))) for w in widths]


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def mutual_step(cfg: TrainConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int,
                amp: bool) -> tuple[float, float]:
    """Forward/backward of the four MutualNet passes (no optimizer step); (loss, full-width acc)."""
    hi = max(cfg.widths)
    subs = sub_configs(cfg, step)
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    total = 0.0
    with model.no_sync() if ddp else contextlib.nullcontext():
        with _autocast(x.device, amp):
            logits = model(x, hi)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
    total += loss.item()
    teacher = F.softmax(logits.detach().float(), dim=1)
    acc = (logits.argmax(1) == y).float().mean().item()
    for i, (w, r, f) in enumerate(subs):
        last = i == len(subs) - 1
        with model.no_sync() if ddp and not last else contextlib.nullcontext():
            with _autocast(x.device, amp):
                out = model(resample(x, f, r), w)
            sub = soft_cross_entropy(out, teacher)
            sub.backward()
        total += sub.item()
    return total, acc


def plain_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool) -> tuple[float, float]:
    with _autocast(x.device, amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    return loss.item(), (logits.argmax(1) == y).float().mean().item()


def calib_batches(cache: ClipCache, n: int, batch: int, frames: int, resolution: int,
                  device: torch.device) -> Iterator[torch.Tensor]:
    """The first ``n`` cached clips at (frames, resolution), in batches."""
    n = min(n, len(cache.labels))
    for i in range(0, n, batch):
        yield resample(to_input(cache.clips[i:i + batch], device), frames, resolution)


# ----------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Run (or resume) training as ``cfg`` says; returns where the checkpoint is.

    ``stop_after``: checkpoint and return after this many steps of this call (a
    time slice on a shared machine; ``resume`` continues, with the same result as
    an uninterrupted run)."""
    from edge.models.registry import model_info
    from edge.models.slim import SLIMMABLE, SlimConfig, SlimNet, config_grid

    model_info(cfg.model)
    if cfg.mutual and cfg.model not in SLIMMABLE:
        raise BadInput(f"--mutual: model {cfg.model!r} is not slimmable; slimmable: {', '.join(SLIMMABLE)}")
    out = Path(cfg.out)
    if out.exists() and not resume:
        raise BadInput(f"{out}: exists; pass --resume to continue that run or choose another --out")
    if out.exists() and out.is_dir():
        raise BadInput(f"{out}: is a folder; --out names the checkpoint file")
    d = init_distributed(cfg.device)
    device = _device(cfg, d)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # many input shapes in a mutual run: autotuning each costs more
    if cfg.batch_size % d.world:
        raise BadInput(f"--batch-size {cfg.batch_size} is not divisible by the {d.world} processes")

    cache_dir = out.parent / f"{out.name}.cache"
    fmax, rmax = max(cfg.frames), max(cfg.resolutions)
    if d.main:
        cache = build_cache(cfg.data, fmax, rmax, cache_dir, cfg.limit)
    _barrier(d)
    if not d.main:
        cache = build_cache(cfg.data, fmax, rmax, cache_dir, cfg.limit)
    n = len(cache.labels)
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch < 1:
        raise BadInput(f"{cfg.data}: {n} usable clips, fewer than one batch of {cfg.batch_size}")
    total = cfg.epochs * steps_per_epoch
    classes = cache.classes
    t0 = time.perf_counter()

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, len(classes))
    if cfg.init:
        load_init(model, cfg.init)
    model.to(device)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    step, history, done = 0, [], False
    if resume and out.exists():
        step, history, done = load_state(cfg, model, opt)
        if d.main:
            log.info("resuming %s at step %d of %d", out, step, total)
    ddp_model: nn.Module = model
    if d.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)

    per_rank = cfg.batch_size // d.world
    bar = None
    if progress and d.main and not done:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {cfg.model}{' mutual' if cfg.mutual else ''}",
                   unit="step", dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    run_loss = run_acc = 0.0
    seen = 0
    val_clips: dict = {}  # (frames, resolution) -> held-out clips, read once
    model.train()
    stop_at = total if stop_after is None else min(total, step + stop_after)
    while step < stop_at and not done:
        epoch, i = divmod(step, steps_per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        idx = np.sort(perm[i * cfg.batch_size:(i + 1) * cfg.batch_size][d.rank * per_rank:(d.rank + 1) * per_rank])
        x = to_input(cache.clips[idx], device)
        y = torch.as_tensor(cache.labels[idx], device=device)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step, steps_per_epoch)
        torch.manual_seed(hash((cfg.seed, step, d.rank)) % (2**62))
        opt.zero_grad(set_to_none=True)
        if cfg.mutual:
            loss, acc = mutual_step(cfg, ddp_model, x, y, step, amp)
        else:
            loss, acc = plain_step(ddp_model, x, y, amp)
        if not math.isfinite(loss):
            raise BadInput(f"training diverged at step {step} (loss {loss}); lower --lr")
        opt.step()
        step += 1
        run_loss += loss
        run_acc += acc
        seen += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{run_loss / seen:.3f}", acc=f"{run_acc / seen:.2f}",
                            lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
        epoch_end = step % steps_per_epoch == 0
        if epoch_end:
            entry = {"epoch": epoch + 1, "step": step, "loss": run_loss / seen, "train_acc": run_acc / seen,
                     "seconds": round(time.perf_counter() - t0, 1)}
            if cfg.val and d.main:
                entry["val_top1"] = _epoch_val(cfg, model, cache, device, val_clips)
                model.train()
            history.append(entry)
            if d.main:
                msg = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items())
                if bar is not None:
                    bar.write(msg)
                log.info("%s", msg)
            run_loss = run_acc = 0.0
            seen = 0
        if d.main and (epoch_end or step % cfg.save_every == 0) and step < total:
            save_state(cfg, model, opt, step, classes, history, done=False)
        if epoch_end:
            _barrier(d)
    if bar is not None:
        bar.close()

    accuracy: list[dict[str, Any]] = []
    if step < total:  # time slice over: save where we are
        if d.main:
            save_state(cfg, model, opt, step, classes, history, done=False)
            log.info("stopped at step %d of %d; continue with --resume", step, total)
        _barrier(d)
        return TrainResult(out, step, time.perf_counter() - t0, history, accuracy)
    if d.main and not done:
        model.eval()
        if isinstance(model, SlimNet):
            table = config_grid(cfg.widths, cfg.resolutions, cfg.frames)
            for c in table:
                model.calibrate(c, calib_batches(cache, cfg.calib_clips, cfg.batch_size, c.frames, c.resolution,
                                                 device))
            log.info("BN post-statistics for %d configurations", len(table))
        if cfg.val:
            from edge.evaluate import evaluate, models_of

            configs = (model.table() if isinstance(model, SlimNet)
                       else [SlimConfig(cfg.widths[0], cfg.resolutions[0], cfg.frames[0])])
            accuracy = [r.to_json() for r in evaluate(models_of(model), cfg.val, configs,
                                                      batch_size=cfg.batch_size, device=device, classes=classes,
                                                      clips_cache=val_clips)]
        save_state(cfg, model, opt, step, classes, history, done=True, accuracy=accuracy)
    _barrier(d)
    seconds = time.perf_counter() - t0
    if d.main:
        log.info("trained %s for %d steps in %.0f s -> %s", cfg.model, step, seconds, out)
    return TrainResult(out, step, seconds, history, accuracy)


def ship_checkpoint(src: str | Path, dst: str | Path, half: bool = True) -> Path:
    """A weights-only copy of training checkpoint ``src`` (no optimizer state;
    ``half``: float16 tensors, upcast to float32 by every loader) for shipping."""
    from edge.checkpoint import load_checkpoint, load_model
    from edge.models.slim import load_slim, save_slim

    meta = dict(load_checkpoint(src).meta)
    meta.pop("optimizer", None)
    if "slim" in meta:
        slim, _ = load_slim(src)
        meta.pop("slim")
        return save_slim(dst, slim, meta, half=half)
    from edge.checkpoint import save_checkpoint

    model, ckpt = load_model(src)
    if half:
        model = model.half()
    return save_checkpoint(dst, model, ckpt.variant, ckpt.num_classes, meta)


def _epoch_val(cfg: TrainConfig, model: nn.Module, cache: ClipCache, device: torch.device,
               val_clips: dict) -> float:
    """Top-1 of the full configuration on ``cfg.val`` (mutual: after calibrating its BN)."""
    from edge.evaluate import evaluate, models_of
    from edge.models.slim import SlimConfig, SlimNet

    model.eval()
    if isinstance(model, SlimNet):
        full = model.full_config
        model.calibrate(full, calib_batches(cache, min(cfg.calib_clips, 128), cfg.batch_size, full.frames,
                                            full.resolution, device))
    else:
        full = SlimConfig(cfg.widths[0], cfg.resolutions[0], cfg.frames[0])
    rows = evaluate(models_of(model), cfg.val, [full], batch_size=cfg.batch_size, device=device,
                    classes=cache.classes, single_frame=False, count=False, clips_cache=val_clips)
    return rows[0].top1
