"""The generated queries ``evaluate.py`` augments with: the released queries (``generator.queries_source``), oracle
queries (``generator=oracle``: held-out real questions, :mod:`xqg.generation.oracle`), or a generator (trained or
loaded by :func:`xqg.tasks.train_generator.train_or_load`) run over the corpus; made when missing, reused from the
cache otherwise. :func:`generated_quality` measures the store (:mod:`xqg.generation.quality`) once per store and
evaluation questions, cached beside it."""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xqg.core.artifacts import ArtifactDir, file_fingerprint, fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.locking import complete_or_claim
from xqg.core.staging import staged_artifact
from xqg.data.bundle import DataBundle
from xqg.data.corpus import CorpusStore
from xqg.data.formats.qrels import Qrels, read_qrels
from xqg.data.formats.xor import read_xor_questions
from xqg.data.records import Question
from xqg.data.sources import resolve_sources
from xqg.data.synthetic_world import templates, templates_text
from xqg.generation.generate import generate_queries
from xqg.generation.oracle import KnownQuestions, build_oracle_store, oracle_pool, passage_info
from xqg.generation.quality import PassageInfo, TemplateMatcher, query_quality, summary_lines
from xqg.generation.released import check_coverage, import_released
from xqg.generation.sampling import DecodingConfig
from xqg.generation.store import GeneratedStore
from xqg.tasks.schema import EvaluateSettings, frozen
from xqg.tasks.train_generator import train_or_load

log = logging.getLogger(__name__)
QUALITY_KIND = "generated_quality"
QUALITY_CODE_VERSION = "3"  # 3: templates and evaluation questions compared in NFKC (ja full-width ？)
ORACLE_LABEL, GENERATED_LABEL = "oracle queries", "generated queries"


def ensure_generated(settings: EvaluateSettings, corpus: CorpusStore) -> GeneratedStore:
    """The store for the ``generator`` settings and this corpus, made if missing."""
    g, cache = settings.generator, Path(settings.paths.cache_dir)
    if g.oracle:
        return ensure_oracle(settings, corpus)
    if g.queries_source:
        files = resolve_sources(g.queries_source, cache, what="released generated queries")
        store = import_released(files, cache, fmt=g.store_format)
        if not set(g.languages) <= set(store.languages):
            raise XqgInputError(
                f"released queries cover {store.languages}, not all of {sorted(g.languages)}",
                path=str(files[0]),
                field="generator.languages",
            )
        if corpus is not None:  # stop before the query sums when most passages would go without queries
            check_coverage(store, corpus, cache, max_missing_share=g.max_missing_share)
        return store
    return generate_queries(
        train_or_load(settings),
        corpus,
        g.languages,
        g.num_queries,
        cache,
        decoding=frozen(g.decoding, DecodingConfig),
        batch_size=g.generate_batch_size,
        shard_size=g.shard.size,
        shard_index=g.shard.index,
        num_shards=g.shard.count,
        seed=g.seed,
        fmt=g.store_format,
        device=g.device,
        precision=g.precision,
        delexicalise=g.delexicalise,
        sampler=g.sampler,
    )


# -- oracle queries ---------------------------------------------------------------------------------------------
def known_questions(data: DataBundle) -> tuple[KnownQuestions, list[Question], dict[str, Any], Qrels]:
    """The data's questions by gold passage (every split), its held-out questions (dev and test: never used as
    oracle queries), the fingerprints of the files read and the qrels; one line when the data has no qrels."""
    if not data.qrels:
        raise XqgInputError(
            f"data {data.name!r} has no known questions per passage (no qrels): generator=oracle needs the "
            "synthetic world, XQuAD-R or data.qrels",
            field="generator.oracle",
        )
    splits = {
        "train": data.train_questions_path,
        "dev": data.dev_questions_path,
        "test": data.test_questions_path,
    }
    questions = {s: read_xor_questions(p) for s, p in splits.items() if p is not None}
    qrels_files = [Path(data.qrels[s]) for s in sorted(data.qrels)]
    qrels = read_qrels(qrels_files)
    every = [q for qs in questions.values() for q in qs]
    held_out = [*questions.get("dev", []), *questions.get("test", [])]
    fps = {
        "questions": {s: file_fingerprint(p) for s, p in splits.items() if p is not None},
        "qrels": [file_fingerprint(f) for f in qrels_files],
    }
    return KnownQuestions.from_questions(every, qrels), held_out, fps, qrels


def world_matcher() -> tuple[TemplateMatcher, str]:
    """The synthetic world's question phrasings as a matcher, and their hash (for fingerprints)."""
    return TemplateMatcher(templates()), hashlib.sha256(templates_text().encode("utf-8")).hexdigest()[:16]


def ensure_oracle(settings: EvaluateSettings, corpus: CorpusStore) -> GeneratedStore:
    """The oracle store for these settings: the world's phrasings of each passage's facts (synthetic) or the
    data's own questions per passage, the dev and test questions' texts excluded."""
    g, cache = settings.generator, settings.paths.cache_dir
    data = settings.data.bundle(cache)
    known, held_out, fps, qrels = known_questions(data)
    matcher, method = None, "questions"
    if settings.data.kind == "synthetic":
        matcher, fps["templates"] = world_matcher()
        method = "templates"
    titles = {d: corpus.get(d).title for d in known.passages() if corpus.has(d)}
    pool = oracle_pool(
        known,
        g.languages,
        [q.text for q in held_out],
        method=method,
        info=passage_info(known, titles, matcher),
        matcher=matcher,
    )
    gold = {d for q in held_out for d in qrels.get(q.qid, {})}
    covered = sum(1 for d in gold if d in pool)
    if gold and covered < len(gold) / 2:
        log.warning(
            "oracle queries cover only %d of the %d gold passages of the dev and test questions: the data's other "
            "questions about them are evaluation questions too (XQuAD-R asks every question of a paragraph in "
            "one split), so this bound says little about the scored questions",
            covered,
            len(gold),
        )
    return build_oracle_store(
        pool,
        corpus,
        g.languages,
        g.num_queries,
        cache,
        seed=g.seed,
        method=method,
        inputs=fps,
        shard_size=g.shard.size,
        fmt=g.store_format,
    )


# -- quality ----------------------------------------------------------------------------------------------------
def generated_quality(
    settings: EvaluateSettings, store: GeneratedStore, corpus: CorpusStore, questions: Sequence[Question]
) -> dict[str, Any]:
    """The store's quality (:func:`xqg.generation.quality.query_quality`) over its first
    ``generator.quality_passages`` passages (``sample``) and over the gold passages of ``questions`` where the
    data has qrels (``gold``: where xQG can move R@kt); logged once when measured, and cached beside the store (kind
    ``generated_quality``, fingerprinted on the store, the corpus, the questions and the world's phrasings)."""
    g, cache = settings.generator, settings.paths.cache_dir
    data = settings.data.bundle(cache)
    world = settings.data.kind == "synthetic"
    matcher, th = world_matcher() if world else (None, None)
    eval_texts = sorted({q.text for q in questions})
    inputs: dict[str, Any] = {
        "generated": store.fingerprint,
        "corpus": corpus.fingerprint,
        "questions": fingerprint(eval_texts),
    }
    if data.qrels:
        inputs["qrels"] = [file_fingerprint(Path(data.qrels[s])) for s in sorted(data.qrels)]
    if th:
        inputs["templates"] = th
    label = ORACLE_LABEL if g.oracle else GENERATED_LABEL
    art = ArtifactDir.for_spec(
        cache,
        QUALITY_KIND,
        config={"passages": g.quality_passages, "label": label},
        inputs=inputs,
        code_version=QUALITY_CODE_VERSION,
    )
    # measured and logged by the run that built it; every later sweep trial only reads it
    if complete_or_claim(art):
        log.info("%s quality: reusing %s (generator_quality.md in the run folder)", label, art.path)
        return dict(art.manifest().extra["quality"])
    out = _measure(settings, data, store, corpus, questions, eval_texts, matcher, label)
    with staged_artifact(art) as staging:
        staging.finalize(counts=dict(out["passages"]), extra={"quality": out})
    for part in ("sample", "gold"):
        for line in summary_lines(out.get(part, {}), f"{label} ({part} passages)"):
            log.info("%s", line)
    return out


def _measure(
    settings: EvaluateSettings,
    data: DataBundle,
    store: GeneratedStore,
    corpus: CorpusStore,
    questions: Sequence[Question],
    eval_texts: Sequence[str],
    matcher: TemplateMatcher | None,
    label: str,
) -> dict[str, Any]:
    known = known_questions(data)[0] if data.qrels else KnownQuestions({})
    sample = list(itertools.islice(store.iter_passages(), settings.generator.quality_passages))
    qrels = read_qrels([Path(data.qrels[s]) for s in sorted(data.qrels)]) if data.qrels else {}
    gold_ids = list(dict.fromkeys(d for q in questions for d in qrels.get(q.qid, {})))
    gold = [(d, store.queries(d)) for d in gold_ids]
    wanted = {d for d, _ in sample} | set(gold_ids)
    titles = {d: corpus.get(d).title for d in wanted if corpus.has(d)}
    info = passage_info(known, titles, matcher)
    info.update({d: PassageInfo(t) for d, t in titles.items() if d not in info})
    out: dict[str, Any] = {
        "label": label,
        "store": store.fingerprint,
        "passages": {"sample": len(sample), "gold": len(gold)},
        "sample": query_quality(sample, info, eval_texts, matcher),
    }
    if gold:
        out["gold"] = query_quality(gold, info, eval_texts, matcher)
    return out
