"""Data-parallel training across processes started by ``torchrun`` (``WORLD_SIZE`` > 1).

Family-agnostic: instead of wrapping networks in ``DistributedDataParallel`` (which would change
the modules families see and their state_dict keys), every parameter of the family's networks
gets a gradient hook that all-reduces and averages its gradient, which is what DDP computes. Each
process draws its own real batches and latents (generators seeded by rank), so the global batch is
``--batch`` x ``WORLD_SIZE``; parameters start identical (broadcast from rank 0) and stay identical.
Only rank 0 writes the run folder. Resume restores rank 0's random state; other ranks reseed from
(seed, rank, step), so a resumed multi-process run is reproducible but not bitwise equal to an
uninterrupted one. Backend: NCCL on CUDA, Gloo on CPU.

What must be the same on every process, and equal to a 1-process run at the same global batch
(``--batch`` x ``WORLD_SIZE``): the image counts (the loop and PGGAN's fade-in count global images,
:func:`world_size`), ADA's p (the sign statistic is summed over processes before p moves,
:func:`all_sum`), running buffers such as StyleGAN2's ``w_avg`` and path-length mean
(:func:`average_`), and BatchNorm statistics: :func:`sync_batchnorm` turns every BatchNorm of the
family's networks into a :class:`GlobalBatchNorm` that normalises by the statistics of the global
batch (PyTorch's own ``SyncBatchNorm`` on CUDA; ours on CPU/Gloo, where PyTorch's refuses to run),
and DCGAN/FastGAN's per-class minibatch std (:class:`xraygan.models.dcgan.ClassMinibatchStd`
all-reduces its own per-class sums, with the same differentiable sum). The EMA generator keeps
plain BatchNorm (it runs on rank 0 alone).

    torchrun --nproc_per_node 4 -m xraygan train PREPARED --out RUN --conditional
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from xraygan.models.layers import AllReduceSum


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


def world_size() -> int:
    """Processes in the current process group (1 when not distributed)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_sum(values: "list[float]") -> list[float]:
    """``values`` summed element-wise over all processes, in one collective (themselves when not distributed)."""
    if world_size() <= 1:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def average_(t: torch.Tensor) -> torch.Tensor:
    """Replace ``t`` (in place) by its mean over all processes; returns it (a no-op when not distributed)."""
    world = world_size()
    if world > 1:
        import torch.distributed as dist

        with torch.no_grad():
            buf = t.detach().clone()
            dist.all_reduce(buf)
            t.copy_(buf / world)
    return t


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the global batch over all processes.

    Same parameters, buffers and state_dict keys as ``nn.BatchNorm2d`` (checkpoints are
    interchangeable); in eval mode, or outside a process group, it is plain BatchNorm. Works on any
    device and backend (two differentiable all-reduces per layer: the sum, then the squared
    deviations from the global mean, which is as exact as one pass over the whole batch).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() <= 1:
            return super().forward(x)
        dtype, x = x.dtype, x.float()  # statistics in float32 also under autocast
        dims = [0] + list(range(2, x.dim()))
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        s = AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = s[-1]
        mean = s[:-1] / n
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = AllReduceSum.apply((centred * centred).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * n.detach() / (n.detach() - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace (in place) every BatchNorm1d/2d/3d in ``module`` by a global-batch one keeping the same
    parameter and buffer objects (so optimizers still hold them); returns ``module``. On CUDA this is
    ``torch.nn.SyncBatchNorm``, elsewhere :class:`GlobalBatchNorm`."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, (GlobalBatchNorm, nn.SyncBatchNorm)):
            cuda = any(t.is_cuda for t in list(child.parameters()) + list(child.buffers()))
            new = (nn.SyncBatchNorm if cuda else GlobalBatchNorm)(child.num_features, child.eps, child.momentum,
                                                                 child.affine, child.track_running_stats)
            for key in ("weight", "bias"):
                setattr(new, key, getattr(child, key))
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(new, key, getattr(child, key))
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child)
    return module


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
