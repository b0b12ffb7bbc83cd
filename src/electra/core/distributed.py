"""Multi-process training through PyTorch's own engine: ``torchrun`` sets the environment, we join the group.

Gradients are averaged across ranks with ``torch.distributed.all_reduce`` after every update's backward pass —
exactly the averaging DistributedDataParallel performs.  The DDP wrapper itself is not used: the GAN objective
back-propagates its generator loss *through* the discriminator with ``backward(inputs=generator params)`` and runs
several forward passes per update, which DDP's reducer (one forward, every used parameter gets a gradient) does not
model.  Batch-norm statistics stay per rank, as under DDP without SyncBatchNorm.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


_STATE = Dist()


def setup(device: str = "auto") -> Dist:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPU); a plain process gets a 1-rank Dist."""
    global _STATE
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=int(os.environ.get("ELECTRA_DIST_TIMEOUT", "600"))))
    _STATE = Dist(int(os.environ.get("RANK", "0")), world, local_rank, dev)
    return _STATE


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> Dist:
    return _STATE


def barrier() -> None:
    if _STATE.enabled:
        dist.barrier()


def average_gradients(params: list[torch.Tensor]) -> None:
    """All-reduce (mean) the gradients of ``params`` in one flat buffer; missing gradients count as zeros."""
    if not _STATE.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= _STATE.world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        chunk = flat[offset:offset + n].view_as(g)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n


def average_scalars(values: torch.Tensor) -> torch.Tensor:
    if _STATE.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= _STATE.world
    return values


def broadcast_object(obj):
    """Rank 0's value of a picklable object (e.g. the run folder name chosen from the clock) on every rank."""
    if not _STATE.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
