"""Generator (xQG) fine-tuning data: the paper's prompt, (prompt, question) pairs, their collator and DataModule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from transformers import DataCollatorForSeq2Seq

from xqg.core.errors import XqgInputError
from xqg.core.languages import get_language
from xqg.data.formats.pairs import read_generator_pairs
from xqg.data.records import GeneratorPair
from xqg.data.resumable import resumable_loader

#: The paper's prompt (Zhuang et al., SIGIR 2023); ``{language}`` is the English language name.
DEFAULT_PROMPT = "Generate a {language} question for this passage: {title} {passage}"
PathLike = str | Path


def format_prompt(template: str, lang: str, title: str, passage: str) -> str:
    """The generator input, e.g. ``Generate a Japanese question for this passage: {title} {passage}``.

    Placeholders: ``{language}`` (English name from :mod:`xqg.core.languages`), ``{lang}`` (code), ``{title}``,
    ``{passage}``.
    """
    language = get_language(lang)
    try:
        return template.format(language=language.name, lang=language.code, title=title, passage=passage)
    except (KeyError, IndexError) as e:
        raise XqgInputError(
            f"prompt template has an unknown placeholder {e}; use {{language}}, {{lang}}, {{title}}, {{passage}}",
            field="prompt_template",
        ) from None


class GeneratorDataset(Dataset):
    def __init__(self, pairs: Sequence[GeneratorPair], template: str) -> None:
        self.pairs = list(pairs)
        self.template = template
        if self.pairs:
            format_prompt(template, self.pairs[0].lang, "t", "p")  # fail early on a bad template

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, str]:
        p = self.pairs[i]
        return format_prompt(self.template, p.lang, p.title, p.passage), p.question


class GeneratorCollator:
    """Tokenises (prompt, question) pairs and pads them with transformers' ``DataCollatorForSeq2Seq``:
    ``input_ids``, ``attention_mask``, ``labels`` (label padding -> -100, ignored by the loss)."""

    def __init__(self, tokenizer: Any, max_source_len: int = 128, max_target_len: int = 32) -> None:
        self.tokenizer = tokenizer
        self.max_source_len = max_source_len
        self.max_target_len = max_target_len
        self.pad = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")

    def __call__(self, items: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer([s for s, _ in items], truncation=True, max_length=self.max_source_len)
        tgt = self.tokenizer(
            text_target=[t for _, t in items], truncation=True, max_length=self.max_target_len
        )
        features = [
            {"input_ids": ids, "attention_mask": mask, "labels": labels}
            for ids, mask, labels in zip(
                enc["input_ids"], enc["attention_mask"], tgt["input_ids"], strict=True
            )
        ]
        return dict(self.pad(features))


def _load_pairs(source: PathLike | Iterable[GeneratorPair]) -> list[GeneratorPair]:
    if isinstance(source, str | Path):
        return read_generator_pairs(source)
    out = list(source)
    for p in out:
        if not isinstance(p, GeneratorPair):
            raise TypeError(f"expected GeneratorPair objects, got {type(p).__name__}")
    return out


class GeneratorDataModule(pl.LightningDataModule):
    """Generator fine-tuning pairs (passage -> question in language L), prompts as in the paper."""

    def __init__(
        self,
        pairs: PathLike | Iterable[GeneratorPair],
        tokenizer: Any,
        prompt_template: str = DEFAULT_PROMPT,
        max_source_len: int = 128,
        max_target_len: int = 32,
        batch_size: int = 8,
        seed: int = 42,
        num_workers: int = 0,
        val_pairs: PathLike | Iterable[GeneratorPair] | None = None,
        languages: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.pairs_source = pairs
        self.val_source = val_pairs
        self.tokenizer = tokenizer
        self.prompt_template = prompt_template
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.languages = {get_language(x).code for x in languages} if languages else None
        self.collate = GeneratorCollator(tokenizer, max_source_len, max_target_len)
        self.train_dataset: GeneratorDataset | None = None
        self.val_dataset: GeneratorDataset | None = None

    def _filter(self, pairs: list[GeneratorPair]) -> list[GeneratorPair]:
        return [p for p in pairs if self.languages is None or p.lang in self.languages]

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            pairs = self._filter(_load_pairs(self.pairs_source))
            if not pairs:
                raise XqgInputError("no generator training pairs (after the language filter)")
            self.train_dataset = GeneratorDataset(pairs, self.prompt_template)
        if self.val_source is not None and self.val_dataset is None:
            self.val_dataset = GeneratorDataset(
                self._filter(_load_pairs(self.val_source)), self.prompt_template
            )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        assert self.train_dataset is not None
        # the same draws as DataLoader(shuffle=True, generator=g), in a loader that resumes mid-epoch
        generator = torch.Generator().manual_seed(self.seed)
        return resumable_loader(
            self.train_dataset,
            RandomSampler(self.train_dataset, generator=generator),
            batch_size=self.batch_size,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        if self.val_dataset is None or len(self.val_dataset) == 0:
            return []
        return DataLoader(
            self.val_dataset,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )
