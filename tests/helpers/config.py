"""The one way tests compose the real Hydra configs (``conf/``): the typed schema registered, paths pointed at
the test's folders, tracking off; :func:`settings` gives the typed settings the tasks take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from helpers.paths import REPO
from xqg.tasks.schema import register_configs, to_settings

CONF = REPO / "conf"
register_configs()


def compose_config(
    name: str = "evaluate",
    *overrides: str,
    cache: str | Path | None = None,
    out: str | Path | None = None,
    hydra_config: bool = False,
) -> DictConfig:
    """``conf/<name>.yaml`` composed with ``overrides`` (the cache and run folders set when given)."""
    paths = [f"paths.cache_dir={cache}"] if cache is not None else []
    if out is not None:
        paths += [f"paths.output_dir={out}", f"paths.log_dir={Path(out).parent / 'logs'}"]
    with initialize_config_dir(config_dir=str(CONF)):
        return compose(name, overrides=[*paths, *overrides], return_hydra_config=hydra_config)


def settings(name: str = "evaluate", *overrides: str, **kwargs: Any) -> Any:
    """The typed settings (:mod:`xqg.tasks.schema`) of :func:`compose_config`'s config."""
    return to_settings(compose_config(name, *overrides, **kwargs))
