"""Lightning DataModules: contrastive retriever training and generator (xQG) fine-tuning.

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
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler
from transformers import DataCollatorForSeq2Seq

from xqg.core.errors import XqgInputError
from xqg.core.languages import get_language
from xqg.data.formats.pairs import read_generator_pairs
from xqg.data.formats.tevatron import TevatronFile
from xqg.data.records import GeneratorPair, Passage, TrainExample, passage_text
from xqg.data.resumable import resumable_loader
from xqg.data.translations import TranslationTable, join_translations

#: The paper's prompt (Zhuang et al., SIGIR 2023); ``{language}`` is the English language name.
DEFAULT_PROMPT = "Generate a {language} question for this passage: {title} {passage}"
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


# --------------------------------------------------------------------------- generator


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
