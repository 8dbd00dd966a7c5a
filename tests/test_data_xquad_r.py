"""XQuAD-R from the shared files: counts, split by article, answers in the gold paragraph, bundle files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from helpers.data import read_tevatron
from xqg.core.errors import XqgInputError
from xqg.data.corpus import open_corpus
from xqg.data.formats.pairs import read_generator_pairs
from xqg.data.formats.xor import read_xor_questions
from xqg.data.xquad_r import XQUAD_R_LANGUAGES, build_xquad_r, load_xquad_r


@pytest.fixture(scope="module")
def bench(shared_data: Path):
    return load_xquad_r(shared_data / "xquad-r")


def test_counts(bench) -> None:
    assert len(bench.articles) == 48 and len(bench.paragraphs) == 240
    assert set(bench.questions) == set(XQUAD_R_LANGUAGES)
    assert all(len(qs) == 1190 for qs in bench.questions.values())
    assert len(bench.sentences) == 1180
    assert Counter(bench.split_of_article.values()) == {"train": 24, "dev": 12, "test": 12}


def test_gold_and_split(bench, shared_data: Path) -> None:
    text = {p.docid: p.text for p in bench.paragraphs}
    sent = {p.docid: p.text for p in bench.sentences}
    qs = bench.questions["ar"]
    assert all(any(a in text[bench.gold_paragraph[q.qid]] for a in q.answers) for q in qs)
    in_sentence = sum(any(a in sent[bench.gold_sentence[q.qid]] for a in q.answers) for q in qs)
    assert in_sentence >= 0.98 * len(qs)
    # parallel: the same question id maps to the same paragraph in every language
    assert {bench.gold_paragraph[q.qid.replace("-ar", "-zh")] for q in qs} == {
        bench.gold_paragraph[q.qid] for q in qs
    }
    per_split = {s: bench.split_questions(s, ["de"]) for s in ("train", "dev", "test")}
    assert sum(len(v) for v in per_split.values()) == 1190
    arts = {
        s: {bench.paragraph_article[bench.gold_paragraph[q.qid]] for q in v} for s, v in per_split.items()
    }
    assert (
        not (arts["train"] & arts["dev"])
        and not (arts["dev"] & arts["test"])
        and not (arts["train"] & arts["test"])
    )
    again = load_xquad_r(shared_data / "xquad-r", ["de"])
    assert again.split_of_article == bench.split_of_article  # deterministic


def test_built_files(shared_data: Path, tmp_path: Path) -> None:
    paths = build_xquad_r(shared_data / "xquad-r", tmp_path, ["ar", "zh"])
    corpus = open_corpus(paths.corpus, cache_dir=tmp_path)
    assert len(corpus) == 240 and len(open_corpus(paths.sentence_corpus, cache_dir=tmp_path)) == 1180
    dev = read_xor_questions(paths.questions["dev"])
    assert {q.lang for q in dev} == {"ar", "zh"} and all(q.split == "dev" for q in dev)
    total = sum(len(read_xor_questions(paths.questions[s])) for s in ("train", "dev", "test"))
    assert total == 2 * 1190
    qrels = dict(line.split()[::2] for line in paths.qrels["dev"].read_text().splitlines())
    assert all(any(a in corpus.get(qrels[q.qid]).text for a in q.answers) for q in dev)
    train = read_tevatron(paths.tevatron["train"])
    assert len(train) == paths.counts["tevatron_train"] and all(ex.negatives for ex in train[:50])
    pairs = read_generator_pairs(paths.generator_pairs["train"])
    assert pairs[0].passage == corpus.get(pairs[0].docid).text and {p.lang for p in pairs} == {"ar", "zh"}
    with pytest.raises(XqgInputError, match="English is the corpus language"):
        load_xquad_r(shared_data / "xquad-r", ["en"])
