"""Synthetic retriever training data (SWIM-IR, InPars style): generated (query, passage) pairs, and how they are
mixed with real training examples.

- :func:`sample_rows`: the corpus rows a language's queries are generated for: a seeded sample, one per
  (seed, language), so adding a language never changes another language's passages.
- :func:`pair_examples`: generated queries as Tevatron training examples (the passage is the positive;
  negatives are given per query: random corpus passages or ones mined by a retriever).
- :func:`few_shot`: a seeded subset of the real examples (the few-shot size).
- :class:`MixedExamples`: real and synthetic examples in an exact ratio: ``round(ratio * size)`` synthetic
  examples and the rest real, each drawn without repetition from a seeded permutation (cycled only when a source
  is smaller than its share).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from xqg.core.errors import XqgInputError
from xqg.data.records import Passage, TrainExample


def sample_rows(n_rows: int, k: int, seed: int, lang: str) -> list[int]:
    """``k`` distinct corpus rows (all of them when ``k >= n_rows``), in corpus order, seeded by (seed, lang)."""
    if k < 1:
        raise XqgInputError(f"must be >= 1, got {k}", field="train.synthetic.passages_per_language")
    rows = (
        range(n_rows)
        if k >= n_rows
        else random.Random(f"xqg-synthetic-{seed}-{lang}").sample(range(n_rows), k)
    )
    return sorted(rows)


def pair_qid(lang: str, docid: str, k: int) -> str:
    """The id of a synthetic training query: unique per (language, passage, sample)."""
    return f"synth-{lang}-{docid}-{k}"


def random_negatives(
    positive: str, n: int, n_rows: int, row: Callable[[int], Passage], seed: tuple[int, ...]
) -> list[Passage]:
    """``n`` random corpus passages other than ``positive`` (distinct where the corpus allows), seeded."""
    if n_rows < 2 or n == 0:
        return []
    rng = np.random.default_rng(list(seed))
    out: list[Passage] = []
    seen = {positive}
    for _ in range(n * 20):
        p = row(int(rng.integers(n_rows)))
        if p.docid not in seen:
            out.append(p)
            seen.add(p.docid)
            if len(out) == n:
                break
    return out


def pair_examples(
    pairs: Iterable[tuple[str, str, int, str, Passage]], negatives: Callable[[str, Passage], list[Passage]]
) -> Iterator[TrainExample]:
    """``(lang, docid, k, query, passage)`` -> Tevatron examples with ``negatives(qid, passage)``."""
    for lang, docid, k, text, passage in pairs:
        qid = pair_qid(lang, docid, k)
        yield TrainExample(qid, text, (), (passage,), tuple(negatives(qid, passage)), lang)


def few_shot(examples: Sequence[TrainExample], n: int | None, seed: int) -> list[TrainExample]:
    """``n`` real examples drawn without repetition (seeded), in file order; all of them for ``None``."""
    if n is None or n >= len(examples):
        return [examples[i] for i in range(len(examples))]
    if n < 0:
        raise XqgInputError(f"must be >= 0 or null, got {n}", field="train.synthetic.few_shot")
    rows = sorted(random.Random(f"xqg-few-shot-{seed}").sample(range(len(examples)), n))
    return [examples[i] for i in rows]


class MixedExamples(Sequence[TrainExample]):
    """Real and synthetic examples in an exact ratio.

    ``size`` examples (default: both sources in full), of which ``round(ratio * size)`` are synthetic
    (``ratio`` None: the sources' own proportion). Each source contributes its share in the order of a seeded
    permutation, cycling only when the share is larger than the source. Positions are interleaved by a seeded
    shuffle; the sampler reshuffles every epoch anyway.
    """

    def __init__(
        self,
        real: Sequence[TrainExample],
        synthetic: Sequence[TrainExample],
        ratio: float | None = None,
        size: int | None = None,
        seed: int = 42,
    ) -> None:
        total = size if size is not None else len(real) + len(synthetic)
        if total < 1:
            raise XqgInputError("no training examples: neither real nor synthetic ones")
        if ratio is None:
            n_syn = (
                len(synthetic)
                if size is None
                else round(total * len(synthetic) / (len(real) + len(synthetic)))
            )
        else:
            if not 0.0 <= ratio <= 1.0:
                raise XqgInputError(f"must be in [0, 1], got {ratio}", field="train.synthetic.ratio")
            n_syn = round(ratio * total)
        n_real = total - n_syn
        for n, src, what in ((n_syn, synthetic, "synthetic"), (n_real, real, "real")):
            if n > 0 and len(src) == 0:
                raise XqgInputError(
                    f"the ratio asks for {n} {what} examples but there are none",
                    field="train.synthetic.ratio",
                )
        self.real, self.synthetic = real, synthetic
        self.n_real, self.n_synthetic = n_real, n_syn
        index = [(True, i) for i in _draw(len(synthetic), n_syn, seed, "synthetic")]
        index += [(False, i) for i in _draw(len(real), n_real, seed, "real")]
        random.Random(f"xqg-mix-{seed}").shuffle(index)
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> TrainExample:  # type: ignore[override]
        is_synthetic, j = self.index[i]
        return self.synthetic[j] if is_synthetic else self.real[j]

    def is_synthetic(self, i: int) -> bool:
        return self.index[i][0]


def _draw(size: int, n: int, seed: int, what: str) -> list[int]:
    """``n`` indices into a source of ``size``: a seeded permutation, cycled (each cycle its own permutation)."""
    out: list[int] = []
    cycle = 0
    while len(out) < n:
        perm = list(range(size))
        random.Random(f"xqg-mix-{seed}-{what}-{cycle}").shuffle(perm)
        out.extend(perm[: n - len(out)])
        cycle += 1
    return out
