"""DCGAN's per-class minibatch standard deviation under torch.distributed (issue 16): 2 CPU processes
(Gloo) at a global batch B compute the feature -- and the gradients of their own samples -- of one
process at batch B."""
from __future__ import annotations

from pathlib import Path

import torch

from xraygan.models.dcgan import ClassMinibatchStd

B = 7
LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 0])  # class 2 once (its feature is 0), class 3 never; rank 0 has no class 2
SPLIT = (slice(0, 4), slice(4, 7))  # uneven per-process batches


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, 3, 2, 2, generator=g) * 2 + 1, torch.randn(B, 4, 2, 2, generator=g)


def _run(h: torch.Tensor, w: torch.Tensor, labels, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's output and the gradient of sum(out * w) with respect to ``h`` (training mode)."""
    h = h.clone().requires_grad_(True)
    out = ClassMinibatchStd(n_classes).train()(h, labels)
    (out * w).sum().backward()
    return out.detach(), h.grad


def _rank(rank: int, init: str, result: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    h, w = _inputs()
    part = SPLIT[rank]
    res = {(cond, k): _run(h[part], w[part], LABELS[part] if cond else None, k) for cond in (True, False) for k in (4, 0)}
    torch.save(res, f"{result}.{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_two_gloo_processes_give_the_one_process_feature_and_gradients_at_the_same_global_batch(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "r")), nprocs=2, join=True)
    h, w = _inputs()
    parts = [torch.load(tmp_path / f"r.{r}.pt", weights_only=True) for r in range(2)]
    for cond in (True, False):
        ref_out, ref_grad = _run(h, w, LABELS if cond else None, 4)
        if cond:  # the classes' statistics differ, class 2 (seen once) keeps 0
            feat = ref_out[:, -1, 0, 0]
            assert feat[5] == 0 and len({round(float(feat[i]), 4) for i in (0, 2)}) == 2
        for k in (4, 0):  # n_classes given, or found by an all-reduce
            out = torch.cat([parts[r][(cond, k)][0] for r in range(2)])
            grad = torch.cat([parts[r][(cond, k)][1] for r in range(2)])
            assert torch.allclose(out, ref_out, rtol=0, atol=1e-5), (cond, k, (out - ref_out).abs().max())
            assert torch.allclose(grad, ref_grad, rtol=0, atol=1e-5), (cond, k, (grad - ref_grad).abs().max())
    # the per-process statistic (what the layer computed before) would differ: the test can fail
    local = torch.cat([_run(h[p], w[p], LABELS[p], 4)[0] for p in SPLIT])
    assert not torch.allclose(local, ref_out, rtol=0, atol=1e-3)
