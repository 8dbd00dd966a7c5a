"""The xQG generator as a Lightning module: any seq2seq LM fine-tuned on (passage, language) -> question.

Works over ``AutoModelForSeq2SeqLM`` so the same code trains ``google/mt5-base`` (the paper), ``google/mt5-small``,
continues from the released ``ielabgroup/xor-tydi-docTquery-mt5-base``, or a local folder (the tiny T5 of
:mod:`xqg.models.tiny_t5`). Defaults are the paper's recipe: AdamW, lr 1e-4, linear decay, 2,000 steps
(effective batch 128 is set by the trainer's gradient accumulation, see :mod:`xqg.tasks.train_generator`).

A saved checkpoint is a plain HF folder (``save_pretrained`` model + tokenizer) plus ``xqg_generator.json``
(:class:`GeneratorSpec`: prompt template and max lengths), so generation uses exactly the prompt the model was
trained with and the folder also loads with stock ``transformers``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from transformers import AutoModelForSeq2SeqLM, get_linear_schedule_with_warmup

from xqg.core.artifacts import atomic_write_json
from xqg.core.errors import MissingResourceError
from xqg.data.generator_data import DEFAULT_PROMPT
from xqg.models.hub import split_revision

SPEC_FILE = "xqg_generator.json"


def missing_model_message(name: str, error: Exception) -> str:
    """What to do when a generator cannot be loaded (typically: a hub name on an offline machine)."""
    return (
        f"cannot load generator {name!r} ({str(error).splitlines()[0]}); on a machine with internet run "
        f"`huggingface-cli download {name}` (then set HF_HUB_OFFLINE=1) or point generator.model.name_or_path "
        "at a local folder"
    )


@dataclass(frozen=True)
class GeneratorSpec:
    """What generation needs to reproduce training's input format."""

    prompt_template: str = DEFAULT_PROMPT
    max_source_length: int = 128
    max_target_length: int = 32
    base_model: str = ""

    def save(self, folder: str | Path) -> None:
        atomic_write_json(Path(folder) / SPEC_FILE, asdict(self))

    @classmethod
    def load(cls, folder: str | Path) -> GeneratorSpec:
        """The spec saved with a checkpoint; the paper's defaults for a bare HF folder or hub name (the
        released ``ielabgroup/xor-tydi-docTquery-mt5-base`` was trained with that prompt)."""
        p = Path(folder) / SPEC_FILE
        if not p.exists():
            return cls(base_model=str(folder))
        d = json.loads(p.read_text())
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class GeneratorModule(pl.LightningModule):
    """Seq2seq fine-tuning with teacher forcing; logs ``train_loss`` and ``val_loss`` (token-mean CE)."""

    def __init__(
        self,
        model_name_or_path: str,
        *,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        max_steps: int = 2000,
        adam_epsilon: float = 1e-8,
        model: Any | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        if model is None:
            try:
                name, revision = split_revision(model_name_or_path)  # owner/name@revision pins a revision
                model = AutoModelForSeq2SeqLM.from_pretrained(name, revision=revision)
            except OSError as e:
                raise MissingResourceError(missing_model_message(model_name_or_path, e)) from None
        # from_pretrained returns eval mode; Lightning keeps submodules' modes, so turn dropout back on.
        self.model = model.train()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["input_ids"], batch["attention_mask"], batch["labels"]).loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        no_decay = ("bias", "layer_norm.weight", "LayerNorm.weight")
        params = [
            {
                "params": [p for n, p in self.model.named_parameters() if not n.endswith(no_decay)],
                "weight_decay": hp.weight_decay,
            },
            {
                "params": [p for n, p in self.model.named_parameters() if n.endswith(no_decay)],
                "weight_decay": 0.0,
            },
        ]
        opt = torch.optim.AdamW(params, lr=hp.lr, eps=hp.adam_epsilon)
        sched = get_linear_schedule_with_warmup(opt, hp.warmup_steps, max(1, hp.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def save_checkpoint_dir(self, folder: str | Path, tokenizer: Any, spec: GeneratorSpec) -> Path:
        """HF-format folder: weights (safetensors), config, tokenizer, and the xQG spec."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        spec.save(folder)
        return folder
