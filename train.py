"""Train a retriever (xDR) or an xQG generator. Thin Hydra entry; the work lives in ``xqg``."""

import hydra
from omegaconf import DictConfig


# No version_base: Hydra 1.4 fixes the 1.3+ defaults and warns (Hydra15MigrationWarning) whenever it is passed.
@hydra.main(config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from xqg.tasks.entrypoints import train

    return train(cfg)


if __name__ == "__main__":
    main()
