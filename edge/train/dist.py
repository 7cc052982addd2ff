"""Distributed training under ``torchrun`` (or one process) and the device a run uses.

    init_distributed(device) -> Dist(rank, world, local_rank); barrier(d)
    train_device(cfg, d) -> torch.device
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from edge.core.errors import BadInput
from edge.train.config import TrainConfig


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


def barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


# ----------------------------------------------------------------------------- model and state

def train_device(cfg: TrainConfig, d: Dist) -> torch.device:
    name = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and d.world > 1:
        name = f"cuda:{d.local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device here")
    return torch.device(name)


__all__ = ["Dist", "barrier", "init_distributed", "train_device"]
