"""A quiet, complete console: third-party notices that say nothing about the run filtered at the entry points,
the results table copied into the job's log file, and a step-based progress bar for step-based training."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from pytorch_lightning.callbacks import RichProgressBar

LIGHTNING_INFO = "pytorch_lightning.utilities.rank_zero"


class _DropLitloggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_third_party() -> None:
    """Filter the known third-party messages that are not about this run (idempotent; targeted, so every other
    warning still shows):

    * Lightning's "Tip: ... try installing litlogger" at every Trainer: an advertisement, printed per stage;
    * torch's FutureWarning on ``isinstance(treespec, LeafSpec)``, raised inside Lightning's own pytree helper
      (``pytorch_lightning/utilities/_pytree.py``), not by xqg: nothing a user can change;
    * "Total length of `list` across ranks is zero": Lightning's note when a training run has no validation
      questions (the generator's ``val_dataloader`` returns ``[]`` on purpose; validation is then off).
    """
    lightning = logging.getLogger(LIGHTNING_INFO)
    if not any(isinstance(f, _DropLitloggerTip) for f in lightning.filters):
        lightning.addFilter(_DropLitloggerTip())
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    warnings.filterwarnings("ignore", message=r"Total length of `\w+` across ranks is zero")


def log_to_files(text: str, logger: logging.Logger | None = None) -> None:
    """Write ``text`` to the log files only (the job's ``<job>.log``: Hydra's file handler), for what is already
    printed on the console, such as the results table, so the log file holds it without a second console copy."""
    record = logging.LogRecord("xqg", logging.INFO, __file__, 0, "%s", (text,), None)
    seen = logger or logging.getLogger()
    for handler in seen.handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar that, when training is bounded by steps (``max_epochs=-1``, ``max_steps=N``), reads
    ``step k/N`` instead of ``Epoch 6/-2``."""

    def _step_mode(self) -> bool:
        t = self.trainer
        return (t.max_epochs is None or t.max_epochs < 0) and t.max_steps > 0

    def _get_train_description(self, current_epoch: int) -> str:
        if not self._step_mode():
            return super()._get_train_description(current_epoch)
        return f"step {self.trainer.global_step}/{self.trainer.max_steps}"

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._step_mode() and self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, description=self._get_train_description(0))
