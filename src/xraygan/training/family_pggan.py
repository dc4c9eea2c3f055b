"""``--model pggan``: progressive growing of GANs with WGAN-GP and drift.

Networks: :mod:`xraygan.models.pggan` (Karras et al. 2018, ICLR). Schedule as in the paper: the
first phase trains 4x4 for ``phase_kimg`` thousand images; each later resolution fades in over
``phase_kimg`` thousand images (alpha 0 -> 1, linear in images shown) and is then stabilised for
as many; the final resolution trains on for the rest of the run. Batch size per resolution comes
from ``batch_per_res`` (e.g. ``256:16,512:8``), else ``--batch``. Loss: WGAN-GP (Gulrajani et al.
2017, lambda 10) with the drift term 0.001 * E[D(x)^2]; Adam(lr 0.001, betas (0, 0.99)).

Phase and alpha are a pure function of the number of images shown, which is checkpointed in
``family_state``: a run resumed mid-fade continues at the same alpha. The count is of global images
(all processes under ``torchrun``), so stage and alpha are the same on every process and equal to a
1-process run at the same global batch.

Model options (``--model-option KEY=VALUE``): see :class:`PGGANOptions`.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from xraygan.errors import XrayganError
from xraygan.training import gan_losses as L
from xraygan.training.distributed import world_size
from xraygan.training.families import GANFamily
from xraygan.training.family_common import adam, parse_res_map, widths
from xraygan.training.family_option_sets import PGGANOptions


def schedule(images: float, phase_images: float, num_stages: int) -> tuple[int, float]:
    """(stage, alpha) after ``images`` images shown; stage s is resolution 4 * 2**s."""
    t = images / phase_images
    if t < 1.0:
        return 0, 1.0
    u = t - 1.0
    stage = 1 + int(u // 2)
    if stage > num_stages - 1:
        return num_stages - 1, 1.0
    return stage, min(u - 2 * (stage - 1), 1.0)


class PGGANFamily(GANFamily):
    """Progressive growing; see the module docstring."""

    name = "pggan"
    Options = PGGANOptions
    paper_optim = {"lr_g": 0.001, "lr_d": 0.001, "beta1": 0.0, "beta2": 0.99}
    bf16_on_cpu = True  # --precision auto on a CPU with avx512_bf16/AMX: 1.3x training, 2x sampling (benchmarks/train_speed.py)
    channels_last_default = True  # 1.3x training on a CPU (benchmarks/train_speed.py)

    def build(self) -> tuple[nn.Module, nn.Module]:
        from xraygan.models.pggan import PGGANConfig, PGGANDiscriminator, PGGANGenerator

        o, c = self.options, self.cfg
        if o.phase_kimg <= 0 or o.gp_weight < 0 or o.drift < 0:
            raise XrayganError("model options phase_kimg > 0, gp_weight >= 0 and drift >= 0 are required")
        o.channel_base, o.channel_max = widths(c, o.channel_base, o.channel_max)
        self.batches = parse_res_map(o.batch_per_res, "batch_per_res")
        self.net_cfg = PGGANConfig(size=int(c.size), num_classes=self.n_classes, z_dim=self.latent_dim,
                                   channel_base=o.channel_base, channel_max=o.channel_max)
        self.images = 0
        return PGGANGenerator(self.net_cfg), PGGANDiscriminator(self.net_cfg)

    def make_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        return (adam(self.G.parameters(), self.cfg, "g"),
                adam(self.D.parameters(), self.cfg, "d"))

    @property
    def stage_alpha(self) -> tuple[int, float]:
        """The current (stage, alpha) from the images shown so far."""
        return schedule(self.images, self.options.phase_kimg * 1000, self.net_cfg.num_stages)

    @property
    def resolution(self) -> int:
        return 4 * 2 ** self.stage_alpha[0]

    def batch_size(self, step: int) -> int:
        return int(self.batches.get(self.resolution, self.cfg.batch))

    def train_step(self, real: torch.Tensor, labels: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        from xraygan.models.pggan import real_at_stage

        o, G, D = self.options, self.G, self.D
        stage, alpha = self.stage_alpha
        y = labels if self.n_classes else None
        kw = dict(stage=stage, alpha=alpha)
        real_s = real_at_stage(real, stage, alpha)
        # D (critic): WGAN loss + drift + gradient penalty
        G.requires_grad_(False)
        D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            with torch.no_grad():
                fake = G(self.latent(len(real), gen), y, **kw)
            real_a, fake_a = self.augment(real_s, gen), self.augment(fake, gen)
            d_real, real_feat = D(real_a, y, return_features=True, **kw)
            d_fake = D(fake_a, y, **kw).float()
            loss_d = L.d_wgan_loss(d_real.float(), d_fake, o.drift)
            gp = L.gradient_penalty(lambda x: D(x, y, **kw).float(), real_a, fake_a, gen) if o.gp_weight > 0 else torch.zeros(())
            total = loss_d + o.gp_weight * gp
        total.backward()
        self.opt_d.step()
        # G
        G.requires_grad_(True)
        D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            fake = G(self.latent(len(real), gen), y, **kw)
            d_gen, fake_feat = D(self.augment(fake, gen), y, return_features=True, **kw)
            loss_g = L.g_wgan_loss(d_gen.float())
            extra, logs = self.extra(real_s, fake, real_feat.detach(), fake_feat)
        (loss_g + extra).backward()
        self.opt_g.step()
        D.requires_grad_(True)
        self.images += len(real) * world_size()  # global images: the same schedule on every process and for any process count
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "gp": float(gp.detach()),
                "d_real": d_real.float().mean().item(), "d_fake": d_fake.mean().item(),
                "resolution": float(4 * 2**stage), "alpha": float(alpha), **logs}

    @torch.no_grad()
    def sample(self, G: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor],
               truncation: Optional[float] = None) -> torch.Tensor:
        """Images at the current stage, upsampled (nearest) to the training size, in [-1, 1].

        ``truncation`` is accepted for a uniform interface and ignored (PGGAN has no w space).
        """
        stage, alpha = self.stage_alpha
        img = G(z, labels if self.n_classes else None, stage=stage, alpha=alpha)
        factor = int(self.cfg.size) // img.shape[-1]
        if factor > 1:
            img = F.interpolate(img, scale_factor=factor, mode="nearest")
        return img.clamp(-1, 1)

    def extra_state(self) -> dict[str, Any]:
        stage, alpha = self.stage_alpha
        return {"images": int(self.images), "stage": stage, "alpha": float(alpha)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.images = int(state.get("images", 0))
        if "alpha" in state and not math.isclose(self.stage_alpha[1], float(state["alpha"]), abs_tol=1e-9):
            raise XrayganError("checkpoint: PGGAN phase state is inconsistent with its options (phase_kimg changed?)")
