"""Train a retriever (xDR) or an xQG generator. Thin Hydra entry; the work lives in ``xqg.tasks``."""

import hydra
from hydra.utils import execution_whitelist
from omegaconf import DictConfig

from xqg.tasks.entrypoints import train
from xqg.tasks.schema import register_configs

# Config-selected Python targets Hydra itself may instantiate here: none (the tasks instantiate the Trainer,
# loggers and callbacks with their own narrow whitelists, see xqg.tasks.builders).
TARGETS: list[str] = []
register_configs()


# No version_base: Hydra 1.4 fixes the 1.3+ defaults and warns (Hydra15MigrationWarning) whenever it is passed.
@hydra.main(config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    with execution_whitelist(TARGETS, reset=True):
        main()
