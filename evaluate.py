"""Evaluate: generate/encode as needed (cached), fuse, search, score, log. Thin Hydra entry and sweep target."""

import hydra
from hydra.utils import execution_whitelist
from omegaconf import DictConfig

from xqg.tasks.entrypoints import evaluate
from xqg.tasks.schema import register_configs

# Config-selected Python targets Hydra itself may instantiate here: the study report callback and Optuna's
# samplers. Anything else named by `_target_` in a config is refused (Hydra 1.4's execution whitelist).
TARGETS = ["xqg.tasks.study_report.StudyReportCallback", "optuna.samplers.*"]
register_configs()


# No version_base: Hydra 1.4 fixes the 1.3+ defaults and warns (Hydra15MigrationWarning) whenever it is passed.
@hydra.main(config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | list[float] | None:
    return evaluate(cfg)


if __name__ == "__main__":
    with execution_whitelist(TARGETS, reset=True):
        main()
