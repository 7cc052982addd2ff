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
Modules: :mod:`edge.train.config` (TrainConfig, parse_list, default_table),
:mod:`edge.train.data` (build_cache, resample, calib_batches), :mod:`edge.train.dist`,
:mod:`edge.train.state` (model, checkpoints, ship_checkpoint), :mod:`edge.train.steps`
(lr_at, plain/mutual step), :mod:`edge.train.loop` (train).
"""
from __future__ import annotations

from edge.train.config import WIDTH_STEP, TrainConfig, TrainResult, default_table, parse_list
from edge.train.data import ClipCache, build_cache, calib_batches, resample
from edge.train.dist import Dist, init_distributed
from edge.train.loop import train
from edge.train.state import build_model, load_init, load_state, save_state, ship_checkpoint
from edge.train.steps import lr_at, mutual_step, plain_step, soft_cross_entropy, sub_configs

__all__ = ["ClipCache", "Dist", "TrainConfig", "TrainResult", "WIDTH_STEP", "build_cache", "build_model",
           "calib_batches", "default_table", "init_distributed", "load_init", "load_state", "lr_at",
           "mutual_step", "parse_list", "plain_step", "resample", "save_state", "ship_checkpoint",
           "soft_cross_entropy", "sub_configs", "train"]
