"""Synthetic training queries for the retriever (SWIM-IR style), behind ``train.synthetic.enabled``.

Per language of ``train.synthetic.languages`` (each its own cached artifacts, so a run with 4 languages reuses the
work of a run with 2):
1. ``synthetic_passages/<fp>/``: a seeded sample of ``passages_per_language`` corpus passages (a DPR TSV);
2. the generation store of the configured generator over those passages in that language
   (:func:`xqg.generation.generate.generate_queries`: sharded by ``shard_size``, seeded, resumable: a killed
   run redoes only unfinished shards, so no pair is lost or written twice);
3. ``synthetic_pairs/<fp>/train.jsonl.gz``: the pairs as Tevatron examples, optionally kept only when the
   passage comes back in the retriever's top ``round_trip_depth`` for its query (round-trip consistency), with
   random or retriever-mined negatives.
The training set is then :class:`xqg.data.synthetic_pairs.MixedExamples` of ``few_shot`` real examples and the
languages' pairs, in ``ratio``. The retriever of steps 3 (``retriever: xdr``) is this recipe trained on the real
data alone (no synthetic data, no alignment objective), trained or reused.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xqg.core.artifacts import ArtifactDir
from xqg.core.errors import XqgInputError
from xqg.core.languages import normalize_lang
from xqg.core.locking import complete_or_claim
from xqg.core.staging import staged_artifact
from xqg.data.corpus import CorpusStore, open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.formats.tevatron import TevatronFile, write_tevatron
from xqg.data.records import Passage, TrainExample
from xqg.data.synthetic_pairs import MixedExamples, few_shot, pair_examples, random_negatives, sample_rows
from xqg.generation.generate import generate_queries, generator_fingerprint
from xqg.generation.sampling import DecodingConfig
from xqg.generation.store import GeneratedStore
from xqg.retrieval.embeddings import encode_corpus, encode_queries
from xqg.retrieval.encode import Retriever
from xqg.retrieval.index import search
from xqg.tasks.generate import ensure_oracle
from xqg.tasks.schema import Settings, frozen
from xqg.tasks.train_generator import train_or_load as train_generator

log = logging.getLogger(__name__)
FIELD = "train.synthetic"
NEGATIVES = ("random", "mined")
PAIRS_FILE = "train.jsonl.gz"
#: bump when the pairs' selection or layout changes
CODE_VERSION = "1"


@dataclass(frozen=True)
class SyntheticData:
    """The languages' pair files and what identifies them (for the retriever's fingerprint)."""

    pair_files: dict[str, Path]  # lang -> Tevatron file
    identity: dict[str, Any]


def check(settings: Settings) -> None:
    syn = settings.train.synthetic
    if syn.negatives not in NEGATIVES:
        raise XqgInputError(f"must be one of {NEGATIVES}, got {syn.negatives!r}", field=f"{FIELD}.negatives")
    for name in ("passages_per_language", "queries_per_passage", "shard_size", "round_trip_depth"):
        if getattr(syn, name) < 1:
            raise XqgInputError(f"must be >= 1, got {getattr(syn, name)}", field=f"{FIELD}.{name}")
    if syn.n_negatives < 0:
        raise XqgInputError(f"must be >= 0, got {syn.n_negatives}", field=f"{FIELD}.n_negatives")
    if not syn.languages:
        raise XqgInputError("no languages to generate training queries in", field=f"{FIELD}.languages")


def real_retriever_settings(settings: Settings) -> Settings:
    """This recipe on the real data alone: the round-trip filter's and the negative miner's retriever."""
    train = dataclasses.replace(
        settings.train,
        synthetic=dataclasses.replace(settings.train.synthetic, enabled=False, few_shot=None, ratio=None),
        alignment=dataclasses.replace(settings.train.alignment, kind="none"),
    )
    return dataclasses.replace(settings, train=train)


def _uses_retriever(settings: Settings) -> bool:
    syn = settings.train.synthetic
    return syn.round_trip or syn.negatives == "mined"


def sampled_corpus(corpus: CorpusStore, lang: str, settings: Settings) -> CorpusStore:
    """The passages this language's queries are written for, as their own (cached) corpus."""
    syn, cache = settings.train.synthetic, settings.paths.cache_dir
    art = ArtifactDir.for_spec(
        cache,
        "synthetic_passages",
        config={"lang": lang, "k": syn.passages_per_language, "seed": syn.seed},
        inputs={"corpus": str(corpus.fingerprint)},
        code_version=CODE_VERSION,
    )
    if not complete_or_claim(art):
        rows = sample_rows(len(corpus), syn.passages_per_language, syn.seed, lang)
        with staged_artifact(art) as staging:
            n = write_dpr_tsv(staging.path / "corpus.tsv", (corpus.row(i) for i in rows))
            staging.finalize(counts={"passages": n})
    return open_corpus(art.path / "corpus.tsv", cache)


def generated_store(generator: str, passages: CorpusStore, lang: str, settings: Settings) -> GeneratedStore:
    """This language's queries for the sampled passages: the generator's, or with ``generator=oracle`` the
    data's own held-out phrasings (:func:`xqg.tasks.generate.ensure_oracle`: an upper bound on generation)."""
    g, syn = settings.generator, settings.train.synthetic
    if g.oracle:
        one = dataclasses.replace(g, languages=[lang], num_queries=syn.queries_per_passage)
        return ensure_oracle(dataclasses.replace(settings, generator=one), passages)  # type: ignore[arg-type]
    return generate_queries(
        generator,
        passages,
        [lang],
        syn.queries_per_passage,
        settings.paths.cache_dir,
        decoding=frozen(g.decoding, DecodingConfig),
        batch_size=g.generate_batch_size,
        shard_size=syn.shard_size,
        seed=syn.seed,
        fmt=g.store_format,
        device=g.device,
        precision=g.precision,
        delexicalise=g.delexicalise,
    )


def _search_pairs(
    retriever: str, corpus: CorpusStore, qids: list[str], texts: list[str], depth: int, settings: Settings
) -> np.ndarray:
    """The retriever's top ``depth`` docids for each query over the whole corpus (embeddings cached)."""
    cache = settings.paths.cache_dir
    ret = Retriever(retriever)
    passages = encode_corpus(ret, corpus, cache, dtype="fp32")
    assert passages is not None  # one process encodes every shard
    queries = encode_queries(ret, qids, texts, cache)
    return search(queries.load(), passages, depth).docids


def language_pairs(
    lang: str, corpus: CorpusStore, generator: str, retriever: str | None, settings: Settings
) -> tuple[Path, str]:
    """This language's pair file (built once) and its fingerprint."""
    syn, cache = settings.train.synthetic, settings.paths.cache_dir
    passages = sampled_corpus(corpus, lang, settings)
    store = generated_store(generator, passages, lang, settings)
    config = {
        "negatives": syn.negatives,
        "n_negatives": syn.n_negatives,
        "round_trip": syn.round_trip,
        "depth": syn.round_trip_depth if _uses_retriever(settings) else None,
        "seed": syn.seed,
    }
    inputs = {"generated": store.fingerprint, "corpus": str(corpus.fingerprint)}
    if retriever is not None:
        inputs["retriever"] = generator_fingerprint(retriever)  # a checkpoint's manifest fingerprint
    art = ArtifactDir.for_spec(
        cache, "synthetic_pairs", config=config, inputs=inputs, code_version=CODE_VERSION
    )
    if complete_or_claim(art):
        return art.path / PAIRS_FILE, art.fingerprint
    records = sorted(store.iter_records(), key=lambda r: (passages.index(r.docid), r.k))
    rows = [(r.lang, r.docid, r.k, r.text, passages.get(r.docid)) for r in records if r.text.strip()]
    ranked: dict[str, list[str]] = {}
    if retriever is not None and rows:
        qids = [f"{lang}-{docid}-{k}" for lang, docid, k, _, _ in rows]
        depth = max(syn.round_trip_depth, syn.n_negatives + 1)
        found = _search_pairs(retriever, corpus, qids, [t for *_, t, _ in rows], depth, settings)
        ranked = {q: [str(d) for d in found[i]] for i, q in enumerate(qids)}
    kept, dropped = [], 0
    for row in rows:
        top = ranked.get(f"{row[0]}-{row[1]}-{row[2]}", [])
        if syn.round_trip and row[1] not in top[: syn.round_trip_depth]:
            dropped += 1
            continue
        kept.append(row)

    def negatives(qid: str, positive: Passage) -> list[Passage]:
        if syn.negatives == "mined":
            key = qid.removeprefix("synth-")
            docs = [d for d in ranked.get(key, []) if d != positive.docid][: syn.n_negatives]
            return [corpus.get(d) for d in docs]
        seed = (syn.seed, corpus.index(positive.docid))  # per passage, reproducible
        return random_negatives(positive.docid, syn.n_negatives, len(corpus), corpus.row, seed)

    with staged_artifact(art) as staging:
        n = write_tevatron(staging.path / PAIRS_FILE, pair_examples(kept, negatives))
        staging.finalize(
            counts={"pairs": n, "generated": len(rows), "dropped_round_trip": dropped},
            extra={"lang": lang, "store": str(store.path), "retriever": retriever},
        )
    log.info("synthetic pairs (%s): %d kept of %d generated", lang, n, len(rows))
    return art.path / PAIRS_FILE, art.fingerprint


def ensure_synthetic(settings: Settings, real_retriever: Callable[[Settings], Path]) -> SyntheticData | None:
    """The pair files of ``train.synthetic.languages`` (generated, filtered, cached); None when disabled.
    ``real_retriever`` trains or finds the retriever on the real data (:func:`real_retriever_settings`)."""
    syn = settings.train.synthetic
    if not syn.enabled:
        return None
    check(settings)
    try:
        langs = [normalize_lang(x) for x in syn.languages]
    except KeyError as e:
        raise XqgInputError(str(e).strip("\"'"), field=f"{FIELD}.languages") from None
    if syn.max_languages is not None:
        if not 1 <= syn.max_languages <= len(langs):
            raise XqgInputError(
                f"must be between 1 and {len(langs)} (the languages listed)", field=f"{FIELD}.max_languages"
            )
        langs = langs[: syn.max_languages]
    cache = settings.paths.cache_dir
    corpus = open_corpus(settings.data.bundle(cache).corpus_path, cache)
    generator = "oracle" if settings.generator.oracle else str(train_generator(settings))
    retriever = None
    if _uses_retriever(settings):
        retriever = (
            syn.retriever
            if syn.retriever != "xdr"
            else str(real_retriever(real_retriever_settings(settings)))
        )
    files, identity = {}, {}
    for lang in langs:
        files[lang], identity[lang] = language_pairs(lang, corpus, generator, retriever, settings)
    return SyntheticData(files, {"pairs": identity, "few_shot": syn.few_shot, "ratio": syn.ratio})


def mixed_training_examples(
    real: Sequence[TrainExample], data: SyntheticData, settings: Settings
) -> MixedExamples:
    """``few_shot`` real examples and every language's pairs, in ``ratio`` (exact)."""
    syn = settings.train.synthetic
    synthetic: list[TrainExample] = []
    for path in data.pair_files.values():
        synthetic.extend(TevatronFile(path)[:])
    return MixedExamples(few_shot(real, syn.few_shot, syn.seed), synthetic, syn.ratio, seed=syn.seed)
