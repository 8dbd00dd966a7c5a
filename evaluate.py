"""Evaluate: generate/encode as needed (cached), fuse, search, score, log. Thin Hydra entry and sweep target."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    from xqg.entrypoints import evaluate

    return evaluate(cfg)


if __name__ == "__main__":
    main()
