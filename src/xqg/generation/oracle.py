"""Oracle queries: held-out *real* questions about each passage used as its "generated" queries, an upper bound
that separates the generator's quality from the fusion mechanism (``generator=oracle``).

Where they come from (:func:`oracle_pool`):
- ``questions``: the data's own questions whose gold passage (qrels) is the passage, every split, in the query
  language (XQuAD-R);
- ``templates`` (the synthetic world): the facts each passage states are read off its real questions (a question
  matched to the world's phrasings gives its relation), and every phrasing of those relations in every language
  is a question about the passage, so each passage gets questions in all languages, not only the two or three
  its facts were asked in.
Questions whose exact text is an evaluation question (dev and test, whichever split is scored) are removed, so
no passage carries the text it will be searched with. A passage with fewer candidates than n repeats them in
order (as a generator's duplicate samples do); a passage without any gets no queries (its query sum stays zero,
as for a passage the released queries do not cover). The store is the same fingerprinted, sharded
:mod:`xqg.generation.store` every generator writes, so query sums, fusion and sweeps read it unchanged.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from xqg.core.artifacts import ArtifactDir
from xqg.core.errors import XqgInputError
from xqg.core.locking import complete_or_claim
from xqg.data.corpus import CorpusStore
from xqg.data.formats.qrels import Qrels
from xqg.data.records import Question
from xqg.generation.quality import PassageInfo, TemplateMatcher, normalize
from xqg.generation.store import (
    CODE_VERSION,
    KIND,
    GeneratedQuery,
    GeneratedStore,
    ShardStats,
    check_format,
    finalize_store,
    finish_shard,
)

log = logging.getLogger(__name__)
#: Bump when the pool or the choice of n changes: old oracle stores are not reused.
ORACLE_CODE_VERSION = "2"
METHODS = ("questions", "templates")
Pool = dict[str, dict[str, list[str]]]  # docid -> lang -> candidate questions (in a fixed order)


@dataclass(frozen=True)
class KnownQuestions:
    """The data's real questions by gold passage: docid -> lang -> texts (normalised, file order, unique)."""

    by_passage: Pool

    @classmethod
    def from_questions(cls, questions: Iterable[Question], qrels: Qrels) -> KnownQuestions:
        """Questions with a gold passage in ``qrels`` (a question with several is a question about each)."""
        out: Pool = {}
        for q in questions:
            for docid in qrels.get(q.qid, {}):
                texts = out.setdefault(docid, {}).setdefault(q.lang, [])
                t = normalize(q.text)
                if t not in texts:
                    texts.append(t)
        return cls(out)

    def passages(self) -> list[str]:
        return list(self.by_passage)


def passage_info(
    known: KnownQuestions, titles: Mapping[str, str], matcher: TemplateMatcher | None = None
) -> dict[str, PassageInfo]:
    """Each known passage's entity (its title) and, with ``matcher``, the relations its real questions ask for
    (only questions naming that title count, so a stray question cannot add a fact)."""
    out = {}
    for docid, by_lang in known.by_passage.items():
        title = titles.get(docid, "")
        rels: set[str] = set()
        if matcher is not None:
            for lang, texts in by_lang.items():
                for t in texts:
                    m = matcher.match(lang, t)
                    if m is not None and m[1] == title:
                        rels.add(m[0])
        out[docid] = PassageInfo(title, frozenset(rels))
    return out


def oracle_pool(
    known: KnownQuestions,
    languages: Sequence[str],
    exclude: Iterable[str],
    *,
    method: str = "questions",
    info: Mapping[str, PassageInfo] | None = None,
    matcher: TemplateMatcher | None = None,
) -> Pool:
    """Candidate questions per passage and language (see the module docstring), the ``exclude`` texts removed;
    passages or languages left without a candidate are absent."""
    if method not in METHODS:
        raise XqgInputError(f"unknown oracle method {method!r}; choose from {list(METHODS)}", field="method")
    if method == "templates" and (matcher is None or info is None):
        raise ValueError("the templates method needs a matcher and the passages' info")
    banned = {normalize(t) for t in exclude}
    pool: Pool = {}
    for docid, by_lang in known.by_passage.items():
        for lang in languages:
            if method == "templates":
                pi = info[docid] if info is not None else PassageInfo()
                ok = matcher is not None and pi.entity
                cands = matcher.questions(lang, sorted(pi.relations), pi.entity) if ok else []
            else:
                cands = list(by_lang.get(lang, ()))
            cands = [c for c in cands if c not in banned]
            if cands:
                pool.setdefault(docid, {})[lang] = cands
    return pool


def choose(candidates: Sequence[str], n: int, seed: int, docid: str, lang: str) -> list[str]:
    """``n`` of ``candidates``: a seeded shuffle per (seed, docid, lang), repeated in order when too few."""
    if not candidates:
        return []
    order = list(candidates)
    random.Random(f"{seed}:{docid}:{lang}").shuffle(order)
    return [order[i % len(order)] for i in range(n)]


def pool_counts(pool: Pool, languages: Sequence[str], n: int, total_passages: int) -> dict[str, int]:
    """Coverage of a pool: passages with queries (any language, per language) and with fewer than n distinct."""
    counts = {"corpus_passages": total_passages, "oracle_passages": len(pool)}
    for lang in languages:
        have = [by[lang] for by in pool.values() if lang in by]
        counts[f"oracle_passages_{lang}"] = len(have)
        counts[f"oracle_short_{lang}"] = sum(1 for c in have if len(c) < n)
    return counts


def build_oracle_store(
    pool: Pool,
    corpus: CorpusStore,
    languages: Sequence[str],
    n: int,
    out_root: str | Path,
    *,
    seed: int,
    method: str,
    inputs: Mapping[str, object],
    shard_size: int = 10000,
    fmt: str = "parquet",
) -> GeneratedStore:
    """Write ``n`` oracle queries per passage and language (from ``pool``) as a generated-query store, in
    corpus row order; reused when the fingerprint (languages, n, seed, method, ``inputs``: the fingerprints of
    what the pool was built from) matches."""
    check_format(fmt)
    if n < 1:
        raise XqgInputError(f"must be >= 1, got {n}", field="generator.num_queries")
    unknown = [d for d in pool if not corpus.has(d)]
    if unknown:
        raise XqgInputError(
            f"{len(unknown)} passages with known questions are not in the corpus (first: {unknown[0]!r})",
            field="data.qrels",
        )
    art = ArtifactDir.for_spec(
        out_root,
        KIND,
        config={
            "source": "oracle",
            "method": method,
            "languages": list(languages),
            "n": n,
            "seed": seed,
            "shard_size": shard_size,
            "format": fmt,
        },
        inputs={"corpus": corpus.fingerprint, **inputs},
        code_version=f"{CODE_VERSION}/oracle{ORACLE_CODE_VERSION}",
    )
    if complete_or_claim(art):
        return GeneratedStore(art.path)
    art.begin()
    shards = 0
    for s, start in enumerate(range(0, max(len(corpus), 1), shard_size)):
        records: list[GeneratedQuery] = []
        stats = ShardStats()
        for batch in corpus.iter_batches(4096, start, start + shard_size):
            for p in batch:
                by_lang = pool.get(p.docid)
                if not by_lang:
                    continue
                stats.passages += 1
                for lang in languages:
                    texts = choose(by_lang.get(lang, ()), n, seed, p.docid, lang)
                    if texts:
                        stats.add_group(lang, texts)
                        records.extend(GeneratedQuery(p.docid, lang, k, t) for k, t in enumerate(texts))
        finish_shard(art, s, records, stats, fmt, {})
        shards = s + 1
    extra = {
        "languages": list(languages),
        "n": n,
        "source": "oracle",
        "method": method,
        "coverage": pool_counts(pool, languages, n, len(corpus)),
    }
    if not finalize_store(art, shards, extra):  # pragma: no cover
        raise RuntimeError(f"oracle store {art.path} did not complete")
    store = GeneratedStore(art.path)
    cov = extra["coverage"]
    log.info(
        "oracle queries (%s): %d of %d passages have real questions; %s",
        method,
        cov["oracle_passages"],
        cov["corpus_passages"],
        ", ".join(f"{x} {cov[f'oracle_passages_{x}']}" for x in languages),
    )
    return store
