"""Model families by name. Each family is a (Config, Module) pair; the config is the model
folder's config.json and names its family in its ``model`` field."""

from __future__ import annotations

from infoedit.models.baselines import (ALI, VAE, ALIConfig, BetaVAEConfig, InfoGAN, InfoGANConfig,
                                       JointVAEConfig)
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGAN2, InfoVAEGANConfig
from infoedit.models.supervised import SupervisedConfig, SupervisedVAE

FAMILIES = {"infovaegan": (InfoVAEGANConfig, InfoVAEGAN), "infovaegan2": (InfoVAEGANConfig, InfoVAEGAN2),
            # Sec. 3 / Fig. 1: supervised single- and dual-encoder VAEs (trainer/supervised.py)
            "supervised-single": (SupervisedConfig, SupervisedVAE),
            "supervised-dual": (SupervisedConfig, SupervisedVAE),
            # Sec. 5.2's baselines on the same networks (infoedit/models/baselines.py, trainer/baselines.py)
            "infogan": (InfoGANConfig, InfoGAN), "ali": (ALIConfig, ALI),
            "beta-vae": (BetaVAEConfig, VAE), "jointvae": (JointVAEConfig, VAE)}


def config_from_dict(data: dict):
    """Build and validate the config a config.json describes; ValueError on anything wrong."""
    name = data.get("model")
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name][0].from_dict(data)


def build(config):
    return FAMILIES[config.model][1](config)
