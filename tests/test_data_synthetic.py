"""The synthetic world: structure, determinism, entity-disjoint splits, answers in positives, scripts, readers."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from helpers.data import read_tevatron
from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES, script_share
from xqg.data.corpus import open_corpus
from xqg.data.formats.pairs import read_generator_pairs
from xqg.data.formats.xor import read_xor_questions
from xqg.data.synthetic import WorldConfig, build_world, iter_synthetic_passages
from xqg.data.synthetic_world import question_templates

CFG = {"seed": 7, "n_entities": 500, "passages_per_entity": 4}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(WorldConfig(**CFG), tmp_path_factory.mktemp("world"))


def _entity(qid: str) -> str:
    return qid.split("-")[1]


def test_structure_and_readers(world, tmp_path: Path) -> None:
    corpus = open_corpus(world.corpus, cache_dir=tmp_path)
    assert 1500 <= len(corpus) <= 2500
    assert world.counts["passages"] == len(corpus)
    dev = read_xor_questions(world.questions["dev"])
    assert {q.lang for q in dev} == set(XOR_LANGUAGES) and all(q.split == "dev" for q in dev)
    assert {q.lang for q in read_xor_questions(world.english_questions["dev"])} == {"en"}
    train = read_tevatron(world.tevatron["train"])
    assert len(train) == world.counts["tevatron_xor_train"] > 1000
    assert all(len(ex.positives) == 1 and len(ex.negatives) == 8 for ex in train)
    assert all(ex.lang in XOR_LANGUAGES for ex in train)
    assert {ex.lang for ex in read_tevatron(world.tevatron_english["train"])} == {"en"}
    pairs = read_generator_pairs(world.generator_pairs["train"])
    assert len(pairs) == len(train) and {p.lang for p in pairs} == set(XOR_LANGUAGES)
    qrels = [line.split() for line in world.qrels["dev"].read_text().splitlines()]
    assert {r[0] for r in qrels} == {q.qid for q in dev} | {
        q.qid for q in read_xor_questions(world.english_questions["dev"])
    }
    for qid, _, docid, _ in qrels:
        assert corpus.has(docid), qid


def test_answers_in_positive_and_hard_negatives(world, tmp_path: Path) -> None:
    corpus = open_corpus(world.corpus, cache_dir=tmp_path)
    for path in (world.tevatron["train"], world.tevatron_english["dev"]):
        for ex in read_tevatron(path):
            pos = ex.positives[0]
            assert ex.answers[0] in pos.text
            assert corpus.get(pos.docid) == pos  # Tevatron passages are corpus rows
            assert all(ex.answers[0] not in n.text for n in ex.negatives)
            assert pos.docid not in {n.docid for n in ex.negatives}
            # at least one hard negative about the same entity (same title)
            assert any(n.title == pos.title for n in ex.negatives)
    qrels = dict(line.split()[::2] for line in world.qrels["test"].read_text().splitlines())
    for q in read_xor_questions(world.questions["test"]):
        assert all(a in corpus.get(qrels[q.qid]).text for a in q.answers)


def test_splits_are_disjoint_by_entity(world) -> None:
    ents = {
        s: {_entity(q.qid) for q in read_xor_questions(world.questions[s])} for s in ("train", "dev", "test")
    }
    assert ents["train"] and ents["dev"] and ents["test"]
    assert (
        not ents["train"] & ents["dev"]
        and not ents["train"] & ents["test"]
        and not ents["dev"] & ents["test"]
    )
    assert {_entity(ex.qid) for ex in read_tevatron(world.tevatron["dev"])} <= ents["dev"]


def test_questions_in_their_script(world) -> None:
    for lang in XOR_LANGUAGES:
        for rel, phrasings in question_templates(lang).items():
            for t in phrasings:
                assert script_share(t.replace("{e}", ""), lang) >= 0.9, (lang, rel, t)
    # whole questions: the words other than the (Latin-script) entity name are in the language's script
    for q in read_xor_questions(world.questions["train"]):
        if q.lang != "fi":
            rest = re.sub(r"[A-Za-z]+", " ", q.text)
            assert script_share(rest, q.lang) >= 0.9 and sum(c.isalpha() for c in rest) >= 3, q
    assert Counter(len(question_templates(lang)) for lang in XOR_LANGUAGES) == {13: 7}


def test_deterministic_and_cached(world, tmp_path: Path) -> None:
    again = build_world(WorldConfig(**CFG), tmp_path)
    assert again.fingerprint == world.fingerprint
    for name in ("corpus", "questions", "tevatron", "generator_pairs"):
        a, b = getattr(world, name), getattr(again, name)
        if isinstance(a, dict):
            for k in a:
                assert a[k].read_bytes() == b[k].read_bytes(), (name, k)
        else:
            assert a.read_bytes() == b.read_bytes()
    other = build_world(WorldConfig(**{**CFG, "seed": 8}), tmp_path)
    assert other.fingerprint != world.fingerprint
    assert other.corpus.read_bytes() != world.corpus.read_bytes()
    manifest = json.loads((again.root / "manifest.json").read_text())
    assert manifest["counts"]["passages"] == world.counts["passages"] and manifest["kind"] == "synthetic"


def test_streamed_corpus_and_bad_config() -> None:
    rows = list(iter_synthetic_passages(300, seed=3))
    assert len(rows) == 300 and [p.docid for p in rows[:3]] == ["1", "2", "3"]
    assert rows == list(iter_synthetic_passages(300, seed=3))
    with pytest.raises(XqgInputError, match=r"data\.world\.languages"):
        WorldConfig(languages=("xx",)).validate()
