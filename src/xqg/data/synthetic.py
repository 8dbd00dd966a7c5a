"""A synthetic cross-lingual world: the offline default for the README's main job and for tests.

English Wikipedia-like passages about invented entities (syllable-generated Latin-script names) state typed facts
(birth year, birthplace, capital, river, founder, ...); questions about those facts are written in the seven
XOR-TyDi languages in their own scripts (hand-written templates in ``templates/questions.json``, several
phrasings per relation, the entity name kept in Latin script) and in English (the zero-shot setting). Each
entity's facts are spread over a few passages mixed with filler sentences, and fillers reuse relation words
("born", "capital", "river") without the answer, so name matching alone finds the entity's passages but not the
right one: the world is learnable (names and relation words carry the signal) and not trivial.

Everything is written in exactly the real formats (DPR TSV corpus, XOR-TyDi question JSONL, Tevatron train
JSONL.gz for XOR languages and for English/NQ, generator pairs JSONL), deterministically from the seed, into
``<cache_dir>/synthetic/<fingerprint>/`` (fingerprint of the world config, the templates and the code version).
The world itself (entities, passages, questions, negatives) is drawn in :mod:`xqg.data.synthetic_world`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from xqg.core.artifacts import ArtifactDir, atomic_write_text
from xqg.core.locking import complete_or_claim
from xqg.core.staging import staged_artifact
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.formats.pairs import write_generator_pairs
from xqg.data.formats.tevatron import write_tevatron
from xqg.data.formats.xor import write_xor_questions
from xqg.data.records import GeneratorPair, Passage, Question, TrainExample
from xqg.data.synthetic_world import (
    Doc,
    Query,
    WorldConfig,
    entity_passages,
    hard_negatives,
    make_entities,
    make_questions,
    split_entities,
    templates_text,
)

#: Bump when generation changes: cached worlds are then rebuilt.
CODE_VERSION = "2"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class WorldPaths:
    """The files of a built world (all in the real formats)."""

    root: Path
    corpus: Path  # DPR TSV
    questions: dict[str, Path]  # split -> XOR-TyDi question JSONL (XOR languages)
    english_questions: dict[str, Path]  # split -> XOR-format JSONL of the English questions
    tevatron: dict[str, Path]  # train/dev -> Tevatron JSONL.gz (XOR languages)
    tevatron_english: dict[str, Path]  # train/dev -> Tevatron JSONL.gz (English; NQ-like)
    generator_pairs: dict[str, Path]  # train/dev -> generator pairs JSONL
    qrels: dict[str, Path]  # split -> TREC qrels (qid 0 docid 1) of every question (XOR and English)
    counts: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""


def iter_synthetic_passages(
    n_passages: int, seed: int = 13, passages_per_entity: int = 4, words_per_passage: int = 70
) -> Iterator[Passage]:
    """Just the corpus of a world with exactly ``n_passages`` rows, streamed: for benchmarks of the corpus store
    at up to millions of passages."""
    # every entity gets at least passages_per_entity - 1 passages, so this many entities always suffice
    n_entities = max(10, n_passages // max(1, passages_per_entity - 1) + 1)
    wc = WorldConfig(
        seed=seed,
        n_entities=n_entities,
        passages_per_entity=max(2, passages_per_entity),
        words_per_passage=words_per_passage,
    )
    rng = random.Random(seed)
    entities = make_entities(wc, rng)
    names = [e.name for e in entities]
    made = 0
    for e in entities:
        for d in entity_passages(e, wc, rng, made + 1, names):
            if made >= n_passages:
                return
            yield Passage(d.docid, d.title, d.text)
            made += 1


def _passage(d: Doc) -> Passage:
    return Passage(d.docid, d.title, d.text)


def world_artifact(wc: WorldConfig, cache_dir: str | Path) -> ArtifactDir:
    templates_hash = hashlib.sha256(templates_text().encode("utf-8")).hexdigest()[:16]
    return ArtifactDir.for_spec(
        cache_dir,
        "synthetic",
        config=asdict(wc),
        inputs={"templates": templates_hash},
        code_version=CODE_VERSION,
    )


def _paths(root: Path, fp: str = "", counts: dict[str, int] | None = None) -> WorldPaths:
    return WorldPaths(
        root=root,
        corpus=root / "corpus.tsv",
        questions={s: root / f"xor_{s}.jsonl" for s in SPLITS},
        english_questions={s: root / f"en_{s}.jsonl" for s in SPLITS},
        tevatron={s: root / f"tevatron_xor_{s}.jsonl.gz" for s in ("train", "dev")},
        tevatron_english={s: root / f"tevatron_en_{s}.jsonl.gz" for s in ("train", "dev")},
        generator_pairs={s: root / f"generator_pairs_{s}.jsonl" for s in ("train", "dev")},
        qrels={s: root / f"qrels_{s}.txt" for s in SPLITS},
        counts=dict(counts or {}),
        fingerprint=fp,
    )


def build_world(wc: WorldConfig | None, cache_dir: str | Path) -> WorldPaths:
    """Build (once; cached by fingerprint) the synthetic world's files and return their paths."""
    wc = wc or WorldConfig()
    wc.validate()
    art = world_artifact(wc, cache_dir)
    if not complete_or_claim(art):
        with staged_artifact(art) as staging:
            counts = _write_world(wc, staging.path)
            staging.finalize(counts=counts, extra={"files": sorted(p.name for p in staging.path.iterdir())})
    manifest = art.manifest()
    return _paths(art.path, art.fingerprint, manifest.counts)


def _write_world(wc: WorldConfig, root: Path) -> dict[str, int]:
    rng = random.Random(wc.seed)
    entities = make_entities(wc, rng)
    names = [e.name for e in entities]
    docs: list[Doc] = []
    for e in tqdm(entities, disable=None, desc="synthetic passages"):
        docs.extend(entity_passages(e, wc, rng, len(docs) + 1, names))
    fact_doc = {(d.entity, rel): d for d in docs for rel in d.relations}
    by_entity: dict[int, list[Doc]] = {}
    by_relation: dict[str, list[Doc]] = {}
    for d in docs:
        by_entity.setdefault(d.entity, []).append(d)
        for rel in d.relations:
            by_relation.setdefault(rel, []).append(d)
    split_of = split_entities(wc, entities, rng)
    queries = make_questions(wc, entities, fact_doc, split_of, rng)
    paths = _paths(root)
    counts: dict[str, int] = {"entities": len(entities), "passages": len(docs)}
    counts["corpus_rows"] = write_dpr_tsv(paths.corpus, (_passage(d) for d in docs))

    def question(q: Query) -> Question:
        return Question(q.qid, q.text, q.lang, (q.answer,), q.split)

    for s in SPLITS:
        xor = [q for q in queries if q.split == s and q.lang != "en"]
        en = [q for q in queries if q.split == s and q.lang == "en"]
        counts[f"questions_{s}"] = write_xor_questions(paths.questions[s], (question(q) for q in xor))
        counts[f"english_questions_{s}"] = write_xor_questions(
            paths.english_questions[s], (question(q) for q in en)
        )
        qrels = "".join(f"{q.qid} 0 {q.positive.docid} 1\n" for q in queries if q.split == s)
        atomic_write_text(paths.qrels[s], qrels)
    for s in ("train", "dev"):
        for english, dest in ((False, paths.tevatron[s]), (True, paths.tevatron_english[s])):
            chosen = [q for q in queries if q.split == s and (q.lang == "en") == english]
            examples = [
                TrainExample(
                    q.qid,
                    q.text,
                    (q.answer,),
                    (_passage(q.positive),),
                    tuple(
                        _passage(d)
                        for d in hard_negatives(q, wc.n_negatives, by_entity, by_relation, docs, rng)
                    ),
                    q.lang,
                )
                for q in chosen
            ]
            key = f"tevatron_{'en' if english else 'xor'}_{s}"
            counts[key] = write_tevatron(dest, examples)
        pairs = [
            GeneratorPair(q.positive.docid, q.lang, q.positive.title, q.positive.text, q.text)
            for q in queries
            if q.split == s and q.lang != "en"
        ]
        counts[f"generator_pairs_{s}"] = write_generator_pairs(paths.generator_pairs[s], pairs)
    return counts
