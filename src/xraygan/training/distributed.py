"""Data-parallel training across processes started by ``torchrun`` (``WORLD_SIZE`` > 1).

Family-agnostic: instead of wrapping networks in ``DistributedDataParallel`` (which would change
the modules families see and their state_dict keys), every parameter of the family's networks
gets a gradient hook that all-reduces and averages its gradient, which is what DDP computes. Each
process draws its own real batches and latents (generators seeded by rank), so the global batch is
``--batch`` x ``WORLD_SIZE``; parameters start identical (broadcast from rank 0) and stay identical.
Only rank 0 writes the run folder. Resume restores rank 0's random state; other ranks reseed from
(seed, rank, step), so a resumed multi-process run is reproducible but not bitwise equal to an
uninterrupted one. Backend: NCCL on CUDA, Gloo on CPU.

    torchrun --nproc_per_node 4 -m xraygan train PREPARED --out RUN --conditional
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (all 0/1/0 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group when ``WORLD_SIZE`` > 1; returns the info and this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    import torch.distributed as dist

    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def share_module(module: nn.Module, world: int) -> None:
    """Broadcast ``module``'s parameters and buffers from rank 0 and average its gradients from now on."""
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)

    def average(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad / world

    for p in module.parameters():
        if p.requires_grad:
            p.register_hook(average)


def max_rank(value: int, info: DistInfo, device: torch.device) -> int:
    """The largest ``value`` over all processes (so every process stops, or fails, at the same step)."""
    if not info.enabled:
        return int(value)
    import torch.distributed as dist

    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def max_all(values: "list[int]", info: DistInfo, device: torch.device) -> list[int]:
    """The element-wise largest ``values`` over all processes, in one collective (flags OR-ed across ranks)."""
    if not info.enabled:
        return [int(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


def shutdown(info: DistInfo) -> None:
    """Leave the process group (no-op when not distributed)."""
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
