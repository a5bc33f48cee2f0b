"""Model families by name. Each family is a (Config, Module) pair; the config is the model
folder's config.json and names its family in its ``model`` field."""

from __future__ import annotations

from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGAN2, InfoVAEGANConfig

FAMILIES = {"infovaegan": (InfoVAEGANConfig, InfoVAEGAN), "infovaegan2": (InfoVAEGANConfig, InfoVAEGAN2)}


def config_from_dict(data: dict):
    """Build and validate the config a config.json describes; ValueError on anything wrong."""
    name = data.get("model")
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name][0].from_dict(data)


def build(config):
    return FAMILIES[config.model][1](config)
