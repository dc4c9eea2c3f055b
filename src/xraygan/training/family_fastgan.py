"""``--model fastgan``: FastGAN (skip-layer excitation G, self-supervised reconstructing D), hinge loss.

Networks: :mod:`xraygan.models.fastgan` (Liu et al. 2021, ICLR). One step: D on augmented reals
and fakes with the hinge loss (Lim & Ye 2017) plus ``rec_weight`` x the L1 reconstruction loss of
D's decoders on the augmented reals (a random quadrant per step, drawn from the step's generator);
then G with the hinge generator loss ``-E[D(G(z))]``. Adam(lr 2e-4, betas (0.5, 0.999)) as the
paper, unless ``--lr-g``/``--lr-d``/``--beta1``/``--beta2`` are given. DiffAugment follows
``--diffaug`` (the paper trains with it; ``auto`` turns it on for small data sets).

Conditional (``--conditional``): label embedding in G's input, projection head in D, and, as the
DCGAN's collapse fixes (issue 12), class-balanced real batches and a per-class minibatch-std map
in D (``balance``/``mbstd``, ``auto`` = on when conditional). With balanced batches the fake batch
takes the real batch's (balanced) labels, and the EMA generator's BatchNorm statistics are
recomputed with uniform labels to match. ``--label L`` trains one unconditional model.

:class:`HingeFamily` is the part shared with ``--model projected``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xraygan.errors import XrayganError
from xraygan.training.families import GANFamily
from xraygan.training.family_option_sets import FastGANOptions
from xraygan.training.losses import d_hinge_loss, g_hinge_loss


def resolve_auto(options: Any, keys: tuple[str, ...], conditional: bool) -> None:
    """Replace ``auto`` in the given ``auto_bool`` options by ``conditional``."""
    for key in keys:
        value = getattr(options, key)
        if value == "auto":
            setattr(options, key, bool(conditional))
        elif not isinstance(value, bool):
            raise XrayganError(f"--model-option {key}={value}: choose true, false or auto")


class HingeFamily(GANFamily):
    """Shared by fastgan and projected: hinge loss, class-balanced batches, trainable-only optimizers."""

    paper_optim = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999}

    def __init__(self, cfg, n_classes: int, device: torch.device) -> None:
        cfg.loss = "hinge"  # these families always train with the hinge loss (--loss is not read); config.yaml says so
        super().__init__(cfg, n_classes, device)

    @property
    def balanced_batches(self) -> bool:
        """The trainer draws class-balanced real batches when this is true (``balance`` option)."""
        return bool(self.n_classes and self.options.balance is True)

    def fake_labels_like(self, train_labels: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        if self.balanced_batches:  # training's fake batches carry the balanced real labels
            return torch.randint(self.n_classes, (n,), generator=gen)
        return super().fake_labels_like(train_labels, n, gen)

    def make_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        betas = (self.cfg.beta1, self.cfg.beta2)
        return (torch.optim.Adam([p for p in self.G.parameters() if p.requires_grad], lr=self.cfg.lr_g, betas=betas),
                torch.optim.Adam([p for p in self.D.parameters() if p.requires_grad], lr=self.cfg.lr_d, betas=betas))

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None, real: bool, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(D's logits, an extra D loss, its logs) for images ``x``; override for a D with extra terms."""
        return self.D(x, y), x.new_zeros((), dtype=torch.float32), {}

    def train_step(self, real: torch.Tensor, labels: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        y = labels if self.n_classes else None
        z = self.latent(real.shape[0], gen)
        # D: hinge on augmented reals and detached fakes (+ the family's extra D loss on the reals)
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            fake = self.G(z, y)  # (B, 1, S, S)
            d_real, extra, logs = self.discriminate(self.augment(real, gen), y, True, gen)
            d_real = d_real.float()
            d_fake = self.D(self.augment(fake.detach(), gen), y).float()
            adv = d_hinge_loss(d_real, d_fake)
            loss_d = adv + extra
        loss_d.backward()
        self.opt_d.step()
        # G: -E[D(G(z))] through the same augmentation policy
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            loss_g = g_hinge_loss(self.D(self.augment(fake, gen), y).float())
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        return {"loss_d": adv.item(), "loss_g": loss_g.item(), **logs,
                "d_real": d_real.detach().mean().item(), "d_fake": d_fake.detach().mean().item()}


class FastGANFamily(HingeFamily):
    """``--model fastgan``; see the module docstring."""

    name = "fastgan"
    Options = FastGANOptions

    def build(self) -> tuple[nn.Module, nn.Module]:
        from xraygan.models.fastgan import FastGANDiscriminator, FastGANGenerator, check_size

        o, c = self.options, self.cfg
        check_size(int(c.size))
        resolve_auto(o, ("mbstd", "balance"), bool(self.n_classes))
        return (FastGANGenerator(c.size, self.latent_dim, c.width, self.n_classes, embed_dim=o.embed_dim),
                FastGANDiscriminator(c.size, c.width, self.n_classes, mbstd=o.mbstd, decoder_width=o.decoder_width))

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None, real: bool, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """On reals: D's logits and ``rec_weight`` x its reconstruction loss of quadrant q ~ U{0..3}."""
        if not real or self.options.rec_weight <= 0:
            return super().discriminate(x, y, real, gen)
        part = int(torch.randint(4, (1,), generator=gen))
        logits, rec = self.D(x, y, part=part)
        loss = self.D.reconstruction_loss(x, rec, part)
        return logits, self.options.rec_weight * loss, {"loss_rec": loss.item()}
