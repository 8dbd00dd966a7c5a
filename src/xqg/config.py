"""Config helpers shared by the stages."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def plain(value: Any) -> Any:
    """Plain dicts/lists (resolved) from an OmegaConf node; anything else unchanged. Stages take either, so they
    work from Hydra configs and from plain Python alike."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
