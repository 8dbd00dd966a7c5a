"""Evaluate: generate/encode as needed (cached), fuse, search, score, log. Thin Hydra entry and sweep target."""

import hydra
from omegaconf import DictConfig


# No version_base: Hydra 1.4 fixes the 1.3+ defaults and warns (Hydra15MigrationWarning) whenever it is passed.
@hydra.main(config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    from xqg.entrypoints import evaluate

    return evaluate(cfg)


if __name__ == "__main__":
    main()
