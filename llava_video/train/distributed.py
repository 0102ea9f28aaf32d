"""Process groups: torchrun / deepspeed / accelerate launchers all set RANK, WORLD_SIZE, LOCAL_RANK.

Without DeepSpeed, gradients of the trainable parameters are averaged explicitly after the last
accumulation step (one flat all-reduce), so parts unused by a batch (e.g. no image in it) need no
special handling and 1 process x accumulation N computes what N processes compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "init_distributed", "average_gradients", "all_reduce_sum", "barrier", "shutdown", "ensure_launcher_env"]


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1 and dist.is_available() and dist.is_initialized()


def ensure_launcher_env() -> None:
    """A single process started without a launcher: the variables DeepSpeed expects (else it tries MPI)."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))


def init_distributed(*, device: torch.device, backend: str = "auto", deepspeed: bool = False) -> DistEnv:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if deepspeed:
        import deepspeed as ds

        ensure_launcher_env()
        ds.init_distributed(dist_backend=backend)
    elif world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistEnv(rank=rank, world=world, local_rank=local_rank)


def average_gradients(params: list[torch.nn.Parameter], env: DistEnv) -> None:
    """Average ``.grad`` over processes (missing grads count as zeros)."""
    if not env.active or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # (sum numel,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= env.world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_reduce_sum(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    if not env.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.active:
        dist.destroy_process_group()
