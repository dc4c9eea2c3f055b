"""``--model stylegan2``: StyleGAN2 with adaptive discriminator augmentation (ADA).

Networks: :mod:`xraygan.models.stylegan2` (Karras et al. 2020, CVPR). Training follows the paper:
non-saturating logistic loss, lazy R1 on reals every ``r1_interval`` steps (gamma from the
StyleGAN2-ADA heuristic 0.0002 * size**2 / batch unless given), optional path-length
regularisation, style mixing, Adam(lr 0.0025, betas (0, 0.99)) with the lazy-regularisation
correction. ADA (Karras et al. 2020, NeurIPS; :mod:`xraygan.augment.ada`) augments every image D
sees, with p adapted from r_t = E[sign(D(real))]; p and the controller's accumulators are part of
the checkpoint (``family_state``), so a resumed run continues with the same p. Under ``torchrun``
the sign statistic, ``w_avg`` and the path-length mean are those of the global batch on every
process (see :mod:`xraygan.training.distributed`).

Model options (``--model-option KEY=VALUE``): see :class:`StyleGAN2Options`.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Optional

import torch
from torch import nn

from xraygan.augment.ada import AdaController, augment
from xraygan.errors import XrayganError
from xraygan.training import gan_losses as L
from xraygan.training.distributed import all_sum, average_, world_size
from xraygan.training.families import GANFamily
from xraygan.training.family_common import adam, widths
from xraygan.training.family_option_sets import StyleGAN2Options

W_MEAN_SAMPLES = 2048      # latents per class used to estimate the mean w for truncation
W_MEAN_SEED = 20240531


class StyleGAN2Family(GANFamily):
    """StyleGAN2 + ADA; see the module docstring."""

    name = "stylegan2"
    Options = StyleGAN2Options
    paper_optim = {"lr_g": 0.0025, "lr_d": 0.0025, "beta1": 0.0, "beta2": 0.99}
    bf16_on_cpu = False  # --precision auto: fp32 on a CPU (bf16 autocast ran 0.66x there: benchmarks/train_speed.py)
    channels_last_default = True  # 1.5x training, 1.7x sampling on a CPU (benchmarks/train_speed.py)

    def build(self) -> tuple[nn.Module, nn.Module]:
        from xraygan.models.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

        o, c = self.options, self.cfg
        self._validate(o)
        o.channel_base, o.channel_max = widths(c, o.channel_base, o.channel_max)
        if o.r1_gamma is None:
            o.r1_gamma = L.r1_gamma_heuristic(int(c.size), int(c.batch))
        self.net_cfg = StyleGAN2Config(size=int(c.size), num_classes=self.n_classes, z_dim=self.latent_dim,
                                       w_dim=self.latent_dim, mapping_layers=o.mapping_layers,
                                       channel_base=o.channel_base, channel_max=o.channel_max)
        self.ada = AdaController(o.ada_target, o.ada_p, o.ada_interval, o.ada_kimg)
        self.pl_mean = torch.zeros(())
        self._last = {"r1": 0.0, "pl": 0.0}
        self._w_cache: dict[Any, torch.Tensor] = {}
        return StyleGAN2Generator(self.net_cfg), StyleGAN2Discriminator(self.net_cfg)

    @staticmethod
    def _validate(o: StyleGAN2Options) -> None:
        if not 0.0 <= o.mixing <= 1.0 or not 0.0 <= o.ada_p <= 1.0:
            raise XrayganError("model options mixing and ada_p must be in [0, 1]")
        if o.r1_interval < 0 or o.pl_interval < 1 or o.ada_interval < 1 or o.ada_kimg <= 0:
            raise XrayganError("model options r1_interval >= 0, pl_interval >= 1, ada_interval >= 1, ada_kimg > 0")
        if o.r1_gamma is not None and o.r1_gamma < 0:
            raise XrayganError(f"model option r1_gamma={o.r1_gamma}: must be >= 0")

    def make_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        o = self.options
        return (adam(self.G.parameters(), self.cfg, "g", o.pl_interval if o.pl_weight > 0 else 0),
                adam(self.D.parameters(), self.cfg, "d", o.r1_interval if o.r1_gamma > 0 else 0))

    def resolved_options(self) -> dict[str, Any]:
        return asdict(self.options)

    # --- augmentation ----------------------------------------------------------------------
    def augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """ADA pipeline at the current p (also with ada=false and a fixed ada_p > 0), else DiffAugment."""
        if self.options.ada or self.options.ada_p > 0:
            return augment(x, self.ada.p, gen)
        return super().augment(x, gen)

    # --- one step --------------------------------------------------------------------------
    def train_step(self, real: torch.Tensor, labels: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        o, G, D = self.options, self.G, self.D
        y = labels if self.n_classes else None
        logs: dict[str, float] = {}
        # D: logistic loss on augmented reals and fakes, plus lazy R1 on augmented reals
        G.requires_grad_(False)
        D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            with torch.no_grad():
                ws = G.make_ws(self.latent(len(real), gen), y, mixing_prob=o.mixing, generator=gen, update_w_avg=True)
                fake = G.synthesis(ws, "random", gen)
            do_r1 = bool(o.r1_interval) and o.r1_gamma > 0 and step % o.r1_interval == 0
            real_aug = self.augment(real, gen).detach().requires_grad_(do_r1)   # R1 on augmented reals (ADA)
            d_fake = D(self.augment(fake, gen), y).float()
            d_real, real_feat = D(real_aug, y, return_features=True)
            d_real = d_real.float()
            loss_d = L.d_logistic_loss(d_real, d_fake)
            total = loss_d
            if do_r1:
                r1 = L.d_r1_penalty(d_real, real_aug)
                total = total + r1 * (o.r1_gamma / 2) * o.r1_interval
                self._last["r1"] = r1.item()
        total.backward()
        self.opt_d.step()
        if o.ada:
            self.ada.update(d_real, reduce=all_sum)  # the global batch's statistic on every process
        logs.update(loss_d=loss_d.item(), d_real=d_real.mean().item(), d_fake=d_fake.mean().item())
        logs.update(self._g_step(real, y, step, gen, real_feat.detach()))
        logs.update(r1=self._last["r1"], pl=self._last["pl"], ada_p=self.ada.p, ada_rt=self.ada.rt)
        return logs

    def _g_step(self, real: torch.Tensor, y: Optional[torch.Tensor], step: int, gen: torch.Generator,
                real_feat: torch.Tensor) -> dict[str, float]:
        o, G, D = self.options, self.G, self.D
        G.requires_grad_(True)
        D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            ws = G.make_ws(self.latent(len(real), gen), y, mixing_prob=o.mixing, generator=gen)
            fake = G.synthesis(ws, "random", gen)
            d_fake, fake_feat = D(self.augment(fake, gen), y, return_features=True)
            loss_g = L.g_nonsaturating_loss(d_fake.float())
            extra, logs = self.extra(real, fake, real_feat, fake_feat)
            total = loss_g + extra
            if o.pl_weight > 0 and step % o.pl_interval == 0:
                n = max(1, len(real) // 2)
                ws_pl = G.make_ws(self.latent(n, gen), y[:n] if y is not None else None, generator=gen)
                pen, self.pl_mean = L.g_path_length_penalty(G.synthesis(ws_pl, "random", gen), ws_pl,
                                                             self.pl_mean.to(real.device), gen)
                self.pl_mean = average_(self.pl_mean)  # linear in the batch mean: the global batch's on every process
                total = total + pen * o.pl_weight * o.pl_interval
                self._last["pl"] = pen.item()
        total.backward()
        self.opt_g.step()
        D.requires_grad_(True)
        if world_size() > 1:
            average_(G.mapping.w_avg)  # a running mean updated from this process's batch in the D step
        return {"loss_g": loss_g.item(), **logs}

    # --- sampling --------------------------------------------------------------------------
    def w_mean(self, G: nn.Module) -> torch.Tensor:
        """Per-class mean w of generator ``G`` (K, w_dim), estimated from a fixed set of latents.

        The trainer averages parameters only, so the EMA generator's running ``w_avg`` buffer is
        stale; the centre of truncation is therefore estimated from the generator being sampled and
        cached until its mapping weights change.
        """
        key = (id(G), tuple(p._version for p in G.mapping.parameters()))
        if key not in self._w_cache:
            gen = torch.Generator().manual_seed(W_MEAN_SEED)
            z = torch.randn(W_MEAN_SAMPLES, self.latent_dim, generator=gen).to(self.device)
            means = []
            for k in range(max(self.n_classes, 1)):
                y = torch.full((W_MEAN_SAMPLES,), k, dtype=torch.long, device=self.device) if self.n_classes else None
                means.append(G.mapping(z, y).float().mean(0))
            self._w_cache = {key: torch.stack(means)}
        return self._w_cache[key]

    @torch.no_grad()
    def sample(self, G: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor],
               truncation: Optional[float] = None) -> torch.Tensor:
        """Images in [-1, 1] with constant noise; ``truncation`` psi pulls w toward the class mean w."""
        y = labels if self.n_classes else None
        w = G.mapping(z, y)
        if truncation is not None and truncation != 1.0:
            idx = y.long() if y is not None else torch.zeros(len(z), dtype=torch.long, device=z.device)
            center = self.w_mean(G)[idx].to(w.dtype)
            w = torch.lerp(center, w, float(truncation))
        ws = w[:, None].repeat(1, G.cfg.num_ws, 1)
        return G.synthesis(ws, "const").clamp(-1, 1)

    # --- state -----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"ada": self.ada.state_dict(), "pl_mean": float(self.pl_mean), "last": dict(self._last)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "ada" in state:
            self.ada.load_state_dict(state["ada"])
        self.pl_mean = torch.tensor(float(state.get("pl_mean", 0.0)))
        self._last.update({k: float(v) for k, v in (state.get("last") or {}).items()})
