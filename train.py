"""Train a retriever (xDR) or an xQG generator. Thin Hydra entry; the work lives in ``xqg``."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from xqg.entrypoints import train

    return train(cfg)


if __name__ == "__main__":
    main()
