"""Lightning DataModule for contrastive retriever training (the generator's: :mod:`xqg.data.generator_data`).

Contrastive items follow Tevatron: a query, one positive and ``train_n_passages - 1`` hard negatives. Sampling
changes with the epoch and is reproducible: the sampler yields ``(index, epoch)`` keys, so every worker (persistent
or not, under DDP or not) derives the same choice from ``(seed, epoch, index)`` alone:
- positive: ``positives[(h + epoch) % len(positives)]`` with ``h`` a per-query hash of (seed, index);
- negatives: a fixed per-query shuffle walked in windows of ``n - 1`` that move by ``epoch * (n - 1)`` (as
  Tevatron does), so successive epochs see different negatives and every negative gets used;
- too few negatives: fill from random corpus passages when a corpus is given, else sample the query's own
  negatives with replacement (as Tevatron does), else (none at all) take other training queries' positives.
Batches pad to the longest sequence in the batch (not to the max length). With translations (the alignment
objectives of :mod:`xqg.models.alignment_loss`), each item carries its query's English translation too, joined
by :func:`xqg.data.translations.join_translations` (a query without one is an error).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from xqg.core.errors import XqgInputError
from xqg.data.formats.tevatron import TevatronFile
from xqg.data.records import Passage, TrainExample, passage_text
from xqg.data.resumable import resumable_loader
from xqg.data.translations import TranslationTable, join_translations

PathLike = str | Path


def _seed_int(*parts: Any) -> int:
    h = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little")


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)``: a permutation seeded by (seed, epoch) when shuffling.

    Lightning calls :meth:`set_epoch` before each epoch; without it (e.g. under a distributed wrapper that
    re-lists the sampler each epoch) the epoch advances by one per pass.
    """

    def __init__(
        self, size: int, seed: int = 42, shuffle: bool = True, fixed_epoch: int | None = None
    ) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.fixed_epoch = fixed_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.fixed_epoch if self.fixed_epoch is not None else self.epoch
        if self.fixed_epoch is None:
            self.epoch += 1
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.size).tolist()
        else:
            order = list(range(self.size))
        for i in order:
            yield i, epoch


class ContrastiveDataset(Dataset):
    """Tevatron-style training groups; ``dataset[(index, epoch)]`` -> (query, [passage texts])."""

    def __init__(
        self,
        examples: Sequence[TrainExample],
        train_n_passages: int = 8,
        seed: int = 42,
        corpus: Any = None,
        translations: Sequence[str] | None = None,
    ) -> None:
        if train_n_passages < 1:
            raise ValueError("train_n_passages must be >= 1")
        self.examples: Sequence[TrainExample] = examples if isinstance(examples, Sequence) else list(examples)
        if len(self.examples) == 0:
            raise XqgInputError("no training examples")
        self.n = train_n_passages
        self.seed = seed
        self.corpus = corpus
        if translations is not None and len(translations) != len(self.examples):
            raise ValueError(f"{len(translations)} translations for {len(self.examples)} examples")
        self.translations = translations

    def __len__(self) -> int:
        return len(self.examples)

    def group(self, index: int, epoch: int = 0) -> tuple[TrainExample, list[Passage]]:
        """The example and its passages for this epoch: positive first, then ``n - 1`` negatives."""
        ex = self.examples[index]
        h = _seed_int(self.seed, index)
        positive = ex.positives[(h + epoch) % len(ex.positives)]
        k = self.n - 1
        negs: list[Passage] = []
        if k > 0 and len(ex.negatives) >= k:
            perm = np.random.default_rng([self.seed, index]).permutation(len(ex.negatives)).tolist()
            offset = (epoch * k) % len(ex.negatives)
            window = (perm + perm)[offset : offset + k]
            negs = [ex.negatives[j] for j in window]
        elif k > 0:
            rng = np.random.default_rng([self.seed, epoch, index])
            negs = list(ex.negatives)
            rng.shuffle(negs)  # type: ignore[arg-type]
            negs.extend(self._fill(ex, k - len(negs), rng))
        return ex, [positive, *negs]

    def _fill(self, ex: TrainExample, count: int, rng: np.random.Generator) -> list[Passage]:
        """``count`` more negatives: random corpus passages when a corpus is given; else the query's own
        negatives again (sampling with replacement, as Tevatron does); else other queries' positives."""
        avoid = {p.docid for p in ex.positives}
        out: list[Passage] = []
        if self.corpus is not None and len(self.corpus) > len(avoid):
            while len(out) < count:
                p = self.corpus.row(int(rng.integers(len(self.corpus))))
                if p.docid not in avoid:
                    out.append(p)
            return out
        if ex.negatives:
            return [ex.negatives[int(j)] for j in rng.integers(len(ex.negatives), size=count)]
        for _ in range(count * 50):
            p = self.examples[int(rng.integers(len(self.examples)))].positives[0]
            if p.docid not in avoid:
                out.append(p)
            if len(out) == count:
                return out
        raise XqgInputError(
            f"query {ex.qid!r} has no negatives and no other passages to sample from; give a corpus or more examples"
        )

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[str, list[str]] | tuple[str, list[str], str]:
        """``(query, passage texts)``, plus the query's translation when the dataset has translations."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        ex, passages = self.group(int(index), int(epoch))
        texts = [passage_text(p.title, p.text) for p in passages]
        if self.translations is not None:
            return ex.query, texts, self.translations[int(index)]
        return ex.query, texts


class ContrastiveCollator:
    """Tokenises a list of (query, passages[, translation]) into the retriever batch dict (the tokenizer pads to
    the longest). Translations use ``translation_tokenizer`` (a distillation teacher's own) when given."""

    def __init__(
        self, tokenizer: Any, q_max_len: int = 32, p_max_len: int = 128, translation_tokenizer: Any = None
    ) -> None:
        self.tokenizer = tokenizer
        self.q_max_len = q_max_len
        self.p_max_len = p_max_len
        self.translation_tokenizer = translation_tokenizer if translation_tokenizer is not None else tokenizer

    def __call__(self, items: list[tuple]) -> dict[str, torch.Tensor]:
        queries = [item[0] for item in items]
        passages = [p for item in items for p in item[1]]  # query-major: positive of query i at row i * n
        q = self.tokenizer(
            queries, padding="longest", truncation=True, max_length=self.q_max_len, return_tensors="pt"
        )
        p = self.tokenizer(
            passages, padding="longest", truncation=True, max_length=self.p_max_len, return_tensors="pt"
        )
        batch = {
            "query_input_ids": q["input_ids"],
            "query_attention_mask": q["attention_mask"],
            "passage_input_ids": p["input_ids"],
            "passage_attention_mask": p["attention_mask"],
        }
        if items and len(items[0]) == 3:
            t = self.translation_tokenizer(
                [item[2] for item in items],
                padding="longest",
                truncation=True,
                max_length=self.q_max_len,
                return_tensors="pt",
            )
            batch["translation_input_ids"] = t["input_ids"]
            batch["translation_attention_mask"] = t["attention_mask"]
        return batch


class _Concat(Sequence[TrainExample]):
    """Several example sequences seen as one (e.g. two Tevatron files)."""

    def __init__(self, parts: list[Sequence[TrainExample]]) -> None:
        self.parts = parts
        self.ends = np.cumsum([len(p) for p in parts]).tolist()

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def __getitem__(self, i: int) -> TrainExample:  # type: ignore[override]
        if i < 0:
            i += len(self)
        k = int(np.searchsorted(self.ends, i, side="right"))
        if k >= len(self.parts):
            raise IndexError(i)
        return self.parts[k][i - (self.ends[k - 1] if k else 0)]


def _load_examples(source: PathLike | Sequence[PathLike] | Iterable[TrainExample]) -> Sequence[TrainExample]:
    """Tevatron files load lazily (:class:`TevatronFile`: validated once, parsed on access); in-memory examples
    are used as given."""
    if isinstance(source, str | Path):
        return TevatronFile(source)
    parts: list[Sequence[TrainExample]] = []
    loose: list[TrainExample] = []
    for item in source:
        if isinstance(item, TrainExample):
            loose.append(item)
        elif isinstance(item, str | Path):
            parts.append(TevatronFile(item))
        else:
            raise TypeError(f"expected Tevatron paths or TrainExample objects, got {type(item).__name__}")
    if loose:
        parts.append(loose)
    return parts[0] if len(parts) == 1 else _Concat(parts)


class ContrastiveDataModule(pl.LightningDataModule):
    """Retriever training data from Tevatron files (or TrainExample lists); optional held-out val file."""

    def __init__(
        self,
        train_path: PathLike | Sequence[PathLike] | Iterable[TrainExample],
        tokenizer: Any,
        batch_size: int = 8,
        train_n_passages: int = 8,
        q_max_len: int = 32,
        p_max_len: int = 128,
        seed: int = 42,
        num_workers: int = 0,
        val_path: PathLike | Sequence[PathLike] | Iterable[TrainExample] | None = None,
        corpus: Any = None,
        drop_last: bool = False,
        max_examples: int | None = None,
        translations: TranslationTable | None = None,
        translation_tokenizer: Any = None,
        translations_field: str = "train.alignment.translations",
    ) -> None:
        super().__init__()
        self.train_source = train_path
        self.val_source = val_path
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.train_n_passages = train_n_passages
        self.seed = seed
        self.num_workers = num_workers
        self.corpus = corpus
        self.drop_last = drop_last
        self.max_examples = max_examples
        self.translations = translations
        self.translations_field = translations_field
        self.collate = ContrastiveCollator(tokenizer, q_max_len, p_max_len, translation_tokenizer)
        self.train_dataset: ContrastiveDataset | None = None
        self.val_dataset: ContrastiveDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            examples = _load_examples(self.train_source)
            if self.max_examples is not None and self.max_examples < len(examples):
                examples = [examples[i] for i in range(self.max_examples)]
            translations = None
            if self.translations is not None:
                path = self.train_source if isinstance(self.train_source, str | Path) else None
                translations = join_translations(
                    examples, self.translations, path=path, field=self.translations_field
                )
            self.train_dataset = ContrastiveDataset(
                examples, self.train_n_passages, self.seed, self.corpus, translations
            )
        if self.val_source is not None and self.val_dataset is None:
            self.val_dataset = ContrastiveDataset(
                _load_examples(self.val_source), self.train_n_passages, self.seed, self.corpus
            )

    def _loader(self, ds: ContrastiveDataset, sampler: EpochSampler, drop_last: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Resumable mid-epoch (:mod:`xqg.data.resumable`)."""
        self.setup("fit")
        assert self.train_dataset is not None
        sampler = EpochSampler(len(self.train_dataset), self.seed, shuffle=True)
        return resumable_loader(
            self.train_dataset,
            sampler,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, EpochSampler(len(self.val_dataset), self.seed, False, 0), False)
