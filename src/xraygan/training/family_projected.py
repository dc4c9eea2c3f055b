"""``--model projected``: a projected discriminator on the frozen X-ray encoder, hinge loss.

Networks: :mod:`xraygan.models.projected` (Sauer et al. 2021, NeurIPS): D reads the shipped X-ray
encoder's features (frozen), mixed by fixed random 1x1 (cross-channel) and 3x3 (cross-scale)
convolutions, with one small projection head per scale; the hinge loss is summed over the scales
(averaged, which only rescales it). The generator is FastGAN's (the paper's choice;
:mod:`xraygan.models.fastgan`) or the conditional DCGAN's (``--model-option generator=dcgan``).
Adam(lr 2e-4, betas (0, 0.99)) unless given. Class-balanced batches as ``--model fastgan``.

Judging: D reads the X-ray encoder, so a projected run is optimised against that feature space;
its FD/precision/recall there are not evidence. Judge it with ``--features random`` (or radiomics).
"""
from __future__ import annotations


from torch import nn

from xraygan.training.family_fastgan import HingeFamily, resolve_auto
from xraygan.training.family_option_sets import ProjectedOptions


class ProjectedFamily(HingeFamily):
    """``--model projected``; see the module docstring."""

    name = "projected"
    Options = ProjectedOptions
    paper_optim = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.99}

    def build(self) -> tuple[nn.Module, nn.Module]:
        from xraygan.models.projected import ProjectedDiscriminator

        o, c = self.options, self.cfg
        resolve_auto(o, ("balance",), bool(self.n_classes))
        if o.generator == "dcgan":
            from xraygan.models.dcgan import Generator

            G = Generator(c.size, self.latent_dim, c.width, self.n_classes, embed_dim=o.embed_dim)
        else:
            from xraygan.models.fastgan import FastGANGenerator, check_size

            check_size(int(c.size))
            G = FastGANGenerator(c.size, self.latent_dim, c.width, self.n_classes, embed_dim=o.embed_dim)
        return G, ProjectedDiscriminator(c.width, self.n_classes, proj_channels=o.proj_channels,
                                             input_size=o.encoder_size)
