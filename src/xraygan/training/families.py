"""GAN families: the model-specific half of training, plugged into one model-agnostic trainer.

``--model NAME`` looks up ``FAMILIES[NAME]`` ("module:Class", imported lazily). The trainer
(:mod:`xraygan.training.loop`) owns everything common: the run folder, data sampling, the EMA
generator, checkpoints and exact resume, sample grids, ``metrics.jsonl``, ``loss.png``, the
progress bar, ``--steps``/``--max-time``, SIGTERM/Ctrl-C and evaluation hooks. A family owns its
networks, optimizers, losses and regularisers.

Adding a family (e.g. StyleGAN2, PGGAN): subclass :class:`GANFamily`, implement ``build`` and
``train_step`` (and override the others as needed), then add one line to ``FAMILIES``
(:mod:`xraygan.training.family_options`, the torch-free registry the CLI reads).

The contract, as the trainer uses it::

    fam = FamilyClass(cfg, n_classes, device)     # builds self.G, self.D, optimizers
    fam.batch_size(step) -> int                   # real images wanted for this step
    fam.train_step(real, labels, step, gen) -> {"loss_d": float, "loss_g": float, ...}
    fam.latent(n, gen) -> z                        # on fam.device, from the CPU generator gen
    fam.sample(G, z, labels, truncation=None) -> images (n, 1, S, S) in [-1, 1]
    fam.modules() / fam.optimizers()              # name -> nn.Module / Optimizer, checkpointed
    fam.extra_state() / fam.load_extra_state(d)   # e.g. ADA p, PGGAN phase and alpha

- ``cfg`` is a :class:`~xraygan.training.config.TrainConfig`. ``cfg.size`` is resolved (an int).
  ``n_classes`` is 0 for an unconditional model (also with ``--label``), else the number of classes.
- ``real`` is (B, 1, S, S) float in [-1, 1] on ``device``; ``labels`` is (B,) int64 class indices on
  ``device`` (zeros when unconditional). ``step`` counts completed steps before this one.
- ``gen`` is a CPU ``torch.Generator``: draw every random number of a step from it (latents,
  augmentation, noise, mixing), never from the global RNG, and exact resume follows for free. Its
  state is checkpointed by the trainer.
- ``self.G`` is the generator the trainer averages into the EMA copy (parameters are averaged;
  BatchNorm statistics of the EMA copy are recomputed by the trainer). ``sample`` must work with any
  generator of the same architecture (G itself or its EMA copy) and must not change it; it is
  called under ``torch.no_grad()`` with the generator in eval mode.
- Extra options: declare a dataclass ``Options`` in :mod:`xraygan.training.family_option_sets`
  (no torch there, so ``--help`` stays fast; add it to ``FAMILY_OPTIONS``) and name it on the class,
  each field made with :func:`~xraygan.training.family_options.option` (type, range or choices, default, help);
  ``cfg.model_options`` (a dict, ``--model-option KEY=VALUE`` on the command line) is parsed by those
  types and available as ``self.options``; unknown keys and bad values are a :class:`UsageError`
  naming the option; ``xraygan train --model NAME --help-options`` lists them. Resolved options are
  written to config.yaml. Register the name in ``family_options.FAMILIES``.
- Optimizer defaults: ``paper_optim`` gives lr_g, lr_d, beta1, beta2 used when the TrainConfig
  leaves them None (not given); the values used are written back into the config.
- ``extra_state()`` must return only tensors, numbers, strings, lists and dicts (checkpoints load
  with ``weights_only=True``).
- Speed switches (every family): ``self.autocast()`` is bfloat16 autocast (no gradient scaler
  needed) when ``--precision`` resolves to bf16 (``auto``: on CUDA, and on a CPU with fast bf16 for
  a family measured to gain, which sets ``bf16_on_cpu = True``; see
  :func:`~xraygan.training.family_common.apply_speed`), else a no-op: wrap the forward passes of
  ``train_step`` in it. ``--channels-last`` (unset: the family's ``channels_last_default``) stores
  G and D channels-last. ``self.speed`` holds what was resolved. Measure with ``benchmarks/train_speed.py``.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict
from typing import Any, ContextManager

import torch
from torch import nn

from xraygan.augment.diffaug import diff_augment, parse_policy
from xraygan.errors import UsageError, XrayganError
from xraygan.training.config import TrainConfig
from xraygan.training.family_common import ExtraGLosses, apply_speed, autocast_for, user_or_paper
from xraygan.training.family_option_sets import DCGANOptions, ExtraLossOptions, NoOptions
from xraygan.training.family_options import FAMILIES, parse_options
from xraygan.training.gan_losses import default_mode_seeking, mode_seeking_loss
from xraygan.training.losses import d_loss, g_loss

__all__ = ["FAMILIES", "GANFamily", "check_model_options", "get_family"]


def get_family(name: str) -> type["GANFamily"]:
    """The family class registered as ``name``; unknown names are a clear error."""
    if name not in FAMILIES:
        raise UsageError(f"--model {name}: unknown model; choose from {', '.join(FAMILIES)}")
    mod, attr = FAMILIES[name].split(":")
    return getattr(importlib.import_module(mod), attr)


def check_model_options(cfg: TrainConfig) -> Any:
    """The family ``Options`` of ``cfg`` parsed from ``cfg.model_options`` (:class:`UsageError` naming a bad one)."""
    return parse_options(get_family(cfg.model).Options, dict(cfg.model_options), cfg.model)


class GANFamily:
    """Base class of a GAN family (see the module docstring for the contract)."""

    name = "base"
    Options: type = NoOptions
    supports_conditional = True
    # `--diffaug auto` gives translation from 64 px (augment.diffaug.auto_policy) only to the families
    # it was measured on; the others keep it off there
    auto_translation = False
    # optimizer settings used when --lr-g/--lr-d/--beta1/--beta2 are not given (None in the TrainConfig)
    paper_optim: dict[str, float] = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999}

    def __init__(self, cfg: TrainConfig, n_classes: int, device: torch.device) -> None:
        if n_classes and not self.supports_conditional:
            raise XrayganError(f"--model {cfg.model} is unconditional; drop --conditional (or train one class with --label L)")
        self.cfg, self.n_classes, self.device = cfg, n_classes, torch.device(device)
        for key, paper in self.paper_optim.items():  # unset (None): this family's default; written to config.yaml
            setattr(cfg, key, user_or_paper(cfg, key, paper))
        self.options = parse_options(self.Options, dict(cfg.model_options), cfg.model)
        # the extra generator losses of every family whose options include them (ExtraLossOptions)
        self.extra = ExtraGLosses(self.options, self.device) if isinstance(self.options, ExtraLossOptions) else None
        self.policy = parse_policy(cfg.diffaug if cfg.diffaug != "auto" else "none")
        self.G, self.D = self.build()
        self.G.to(self.device)
        self.D.to(self.device)
        self.speed = apply_speed(self)  # --precision / --channels-last resolved for this machine (family_common)
        self.opt_g, self.opt_d = self.make_optimizers()

    # --- to implement -------------------------------------------------------------------
    def build(self) -> tuple[nn.Module, nn.Module]:
        """Return (G, D) for ``self.cfg.size`` and ``self.n_classes``."""
        raise NotImplementedError

    def train_step(self, real: torch.Tensor, labels: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        """One D update and one G update; return scalar logs (at least loss_d and loss_g)."""
        raise NotImplementedError

    # --- defaults, override as needed -----------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return int(self.cfg.latent_dim)

    def make_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """Adam for G and D with ``--lr-g``/``--lr-d`` and betas (``--beta1``, ``--beta2``)."""
        betas = (self.cfg.beta1, self.cfg.beta2)
        return (torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr_g, betas=betas),
                torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr_d, betas=betas))

    def batch_size(self, step: int) -> int:
        return int(self.cfg.batch)

    def latent(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Standard normal latents (n, latent_dim) drawn on the CPU generator, on the device."""
        return torch.randn(n, self.latent_dim, generator=gen).to(self.device)

    def sample(self, G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None, truncation: float | None = None) -> torch.Tensor:
        """Images from generator ``G``; ``truncation`` is accepted and ignored by DCGAN."""
        return G(z, labels if self.n_classes else None)

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def fake_labels_like(self, train_labels: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` labels distributed as this family's fake batches in training (the training data's
        class shares): used to recompute the EMA generator's BatchNorm statistics."""
        if not self.n_classes or len(train_labels) == 0:
            return torch.zeros(n, dtype=torch.long)
        return train_labels.cpu()[torch.randint(len(train_labels), (n,), generator=gen)]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_g, "D": self.opt_d}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def prepare_training(self) -> None:
        """Load what only training needs (the VGG16 weights of the perceptual loss); generation skips it."""
        if self.extra is not None:
            self.extra.load()

    def resolved_options(self) -> dict[str, Any]:
        return asdict(self.options)

    def augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """DiffAugment with the run's policy (identity when off)."""
        return diff_augment(x, self.policy, gen) if self.policy else x

    def autocast(self) -> ContextManager:
        return autocast_for(self.speed["precision"], self.device)


class DCGANFamily(GANFamily):
    """``--model dcgan``: conditional DCGAN (label embedding in G, projection discriminator)."""

    name = "dcgan"
    Options = DCGANOptions
    auto_translation = True  # measured: docs/benchmarks.md, issue 12 (conditional DCGAN, 64 px)

    def build(self) -> tuple[nn.Module, nn.Module]:
        from xraygan.models.dcgan import Discriminator, Generator

        o = self.options
        if o.d_norm not in ("bn", "sn"):
            raise XrayganError(f"--model-option d_norm={o.d_norm}: choose bn (BatchNorm) or sn (spectral norm)")
        if o.g_cond not in ("cbn", "concat", "both"):
            raise XrayganError(f"--model-option g_cond={o.g_cond}: choose cbn (class-conditional BatchNorm), concat (embedding ++ z) or both")
        if o.fake_labels not in ("real", "uniform"):
            raise XrayganError(f"--model-option fake_labels={o.fake_labels}: choose real or uniform")
        for key in ("mbstd", "balance"):
            value = getattr(o, key)
            if value == "auto":
                setattr(o, key, bool(self.n_classes))
            elif not isinstance(value, bool):
                raise XrayganError(f"--model-option {key}={value}: choose true, false or auto")
        c = self.cfg
        if getattr(o, "mode_seeking", 0.0) is None:
            o.mode_seeking = default_mode_seeking(c.size, bool(self.n_classes))
        return (Generator(c.size, self.latent_dim, c.width, self.n_classes, cond=o.g_cond),
                Discriminator(c.size, c.width, self.n_classes, norm=o.d_norm, embed_init=float(o.d_embed_init), mbstd=o.mbstd))

    @property
    def balanced_batches(self) -> bool:
        """The trainer draws class-balanced real batches when this is true (``balance`` option)."""
        return bool(self.n_classes and getattr(self.options, "balance", False) is True)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # a G that switched layout while loading an old checkpoint (Generator.load_state_dict) needs a new optimizer
        params = {id(p) for g in self.opt_g.param_groups for p in g["params"]}
        if params != {id(p) for p in self.G.parameters()}:
            self.opt_g = self.make_optimizers()[0]
            self.options.g_cond = getattr(self.G, "cond", self.options.g_cond)
        # likewise a D rebuilt to match an old checkpoint (with or without the minibatch-std layer)
        if {id(p) for g in self.opt_d.param_groups for p in g["params"]} != {id(p) for p in self.D.parameters()}:
            self.opt_d = self.make_optimizers()[1]
            if hasattr(self.options, "mbstd"):
                self.options.mbstd = bool(getattr(self.D, "mbstd", False))
        return {"G": self.opt_g, "D": self.opt_d}

    def fake_labels_like(self, train_labels: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        if self.n_classes and self.options.fake_labels == "uniform":
            return torch.randint(self.n_classes, (n,), generator=gen)
        return super().fake_labels_like(train_labels, n, gen)

    def fake_label_batch(self, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor | None:
        """Labels of the fake batch: those of the real batch, or uniform over the classes."""
        if not self.n_classes:
            return None
        if self.options.fake_labels == "uniform":
            return torch.randint(self.n_classes, (labels.shape[0],), generator=gen).to(labels.device)
        return labels

    def train_step(self, real: torch.Tensor, labels: torch.Tensor, step: int, gen: torch.Generator) -> dict[str, float]:
        y_real = labels if self.n_classes else None
        y = self.fake_label_batch(labels, gen)
        z = self.latent(real.shape[0], gen)
        # D step: real vs detached fakes, the same augmentation policy on both
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            fake = self.G(z, y)  # (B, 1, S, S)
            d_real, real_feat = self.D(self.augment(real, gen), y_real, return_features=True)
            d_real = d_real.float()
            d_fake = self.D(self.augment(fake.detach(), gen), y).float()
            loss_d = d_loss(self.cfg.loss, d_real, d_fake, self.cfg.smooth)
        loss_d.backward()
        self.opt_d.step()
        # G step: non-saturating (bce) or hinge, through the augmentation, plus the extra losses
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            d_gen, fake_feat = self.D(self.augment(fake, gen), y, return_features=True)
            loss_g = g_loss(self.cfg.loss, d_gen.float())
            extra, logs = self.extra(real, fake, real_feat.detach(), fake_feat)
            weight = float(getattr(self.options, "mode_seeking", 0.0) or 0.0)
            ms = mode_seeking_loss(fake, z, y) if weight > 0 else None
            if ms is not None:
                extra = extra + weight * ms
                logs["loss_ms"] = ms.item()
        (loss_g + extra).backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
                "d_real": d_real.detach().mean().item(), "d_fake": d_fake.detach().mean().item(), **logs}


class TutorialDCGANFamily(DCGANFamily):
    """``--model dcgan-tutorial``: the PyTorch DCGAN tutorial's networks (100-d latent), unconditional."""

    name = "dcgan-tutorial"
    Options = ExtraLossOptions
    supports_conditional = False
    auto_translation = False  # the reference keeps the tutorial's training

    @property
    def latent_dim(self) -> int:
        return 100

    def build(self) -> tuple[nn.Module, nn.Module]:
        from xraygan.models.dcgan import TutorialDiscriminator, TutorialGenerator

        return TutorialGenerator(self.cfg.size, 100, self.cfg.width), TutorialDiscriminator(self.cfg.size, self.cfg.width)
