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


def few_steps(steps: int = 2, p_max_len: int = 64, batch_size: int = 4) -> list[str]:
    """Overrides that train the retriever and the generator for ``steps`` steps of ``batch_size`` (one epoch,
    two passages per question, passages cut to ``p_max_len`` tokens): the part every small end-to-end run shares."""
    return [
        "train.epochs=1",
        f"trainer.max_steps={steps}",
        f"train.batch_size={batch_size}",
        "train.train_n_passages=2",
        f"backbone.p_max_len={p_max_len}",
        f"generator.train.max_steps={steps}",
        f"generator.train.batch_size={batch_size}",
        f"generator.train.effective_batch_size={batch_size}",
    ]


#: a small dev check during retriever training (few questions and passages)
SMALL_DEV = ["train.dev.max_queries=8", "train.dev.max_passages=64", "train.dev.batch_size=16"]
