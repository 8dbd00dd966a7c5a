"""Oracle queries (generator=oracle): the pool of held-out real questions per passage, the store they are written
to, the config checks, and one evaluate run on a small synthetic world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.config import settings
from test_pipeline import SMALL
from xqg.core.errors import XqgInputError
from xqg.data.corpus import open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.formats.qrels import read_qrels
from xqg.data.formats.xor import read_xor_questions
from xqg.data.records import Passage, Question
from xqg.generation.oracle import KnownQuestions, build_oracle_store, choose, oracle_pool, passage_info
from xqg.generation.quality import TemplateMatcher
from xqg.generation.store import GeneratedStore
from xqg.tasks import evaluate as pipeline
from xqg.tasks.generate import ensure_oracle

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEMPLATES = {
    "en": {"born": ["When was {e} born?", "Birth year of {e}?"], "capital": ["Capital of {e}?"]},
    "fi": {"born": ["Milloin {e} syntyi?"], "capital": ["Mikä on {e}n pääkaupunki?"]},
}


def _known() -> KnownQuestions:
    qs = [
        Question("q1", "When was Ana born?", "en", ("1900",), "train"),
        Question("q2", "Milloin Ana syntyi?", "fi", ("1900",), "dev"),
        Question("q3", "Capital of Vel?", "en", ("Oulu",), "dev"),
        Question(
            "q4", "When was Bo born?", "en", ("1800",), "train"
        ),  # a stray question naming another entity
        Question("q5", "Capital  of Vel? ", "en", ("Oulu",), "test"),  # the same text again (normalised)
    ]
    qrels = {"q1": {"p1": 1}, "q2": {"p1": 1}, "q3": {"p2": 1}, "q4": {"p2": 1}, "q5": {"p2": 1}}
    return KnownQuestions.from_questions(qs, qrels)


def test_known_questions_and_relations() -> None:
    known = _known()
    assert known.by_passage == {
        "p1": {"en": ["When was Ana born?"], "fi": ["Milloin Ana syntyi?"]},
        "p2": {"en": ["Capital of Vel?", "When was Bo born?"]},
    }
    info = passage_info(known, {"p1": "Ana", "p2": "Vel"}, TemplateMatcher(TEMPLATES))
    assert info["p1"].relations == {"born"} and info["p1"].entity == "Ana"
    assert info["p2"].relations == {"capital"}  # "When was Bo born?" is not about Vel


def test_pools_exclude_evaluation_texts() -> None:
    known = _known()
    held_out = ["Milloin Ana syntyi?", "Capital of Vel?"]
    by_questions = oracle_pool(known, ["en", "fi"], held_out)
    assert by_questions == {"p1": {"en": ["When was Ana born?"]}, "p2": {"en": ["When was Bo born?"]}}
    m = TemplateMatcher(TEMPLATES)
    info = passage_info(known, {"p1": "Ana", "p2": "Vel"}, m)
    by_templates = oracle_pool(known, ["en", "fi"], held_out, method="templates", info=info, matcher=m)
    # every phrasing of each passage's facts, in every language, the held-out texts removed
    assert by_templates == {
        "p1": {"en": ["When was Ana born?", "Birth year of Ana?"]},
        "p2": {"fi": ["Mikä on Veln pääkaupunki?"]},
    }
    with pytest.raises(XqgInputError, match="unknown oracle method"):
        oracle_pool(known, ["en"], [], method="magic")


def test_choose_is_seeded_and_repeats_when_short() -> None:
    cands = ["a", "b", "c"]
    first = choose(cands, 3, 1, "p1", "en")
    assert sorted(first) == cands and first == choose(cands, 3, 1, "p1", "en")
    assert {tuple(choose(cands, 3, s, "p1", "en")) for s in range(20)} != {tuple(first)}
    assert choose(["x", "y"], 5, 0, "p", "fi") in (["x", "y", "x", "y", "x"], ["y", "x", "y", "x", "y"])
    assert choose([], 3, 0, "p", "fi") == []


def test_store_in_corpus_order_with_n_per_language(tmp_path: Path) -> None:
    tsv = tmp_path / "corpus.tsv"
    write_dpr_tsv(tsv, [Passage(f"p{i}", f"T{i}", f"text {i}") for i in range(5)])
    corpus = open_corpus(tsv, tmp_path / "cache")
    pool = {"p3": {"en": ["a?", "b?"], "fi": ["c?"]}, "p1": {"en": ["d?"]}}
    kw = {"seed": 0, "method": "questions", "inputs": {"questions": "x"}, "shard_size": 2}
    store = build_oracle_store(pool, corpus, ["en", "fi"], 3, tmp_path / "cache", **kw)
    assert store.n == 3 and store.languages == ("en", "fi")
    got = [(d, by) for d, by in store.iter_passages()]
    assert [d for d, _ in got] == ["p1", "p3"]  # corpus row order; passages without questions absent
    assert got[0][1] == {"en": ["d?", "d?", "d?"]}
    assert sorted(set(got[1][1]["en"])) == ["a?", "b?"] and got[1][1]["fi"] == ["c?"] * 3
    cov = store.manifest["extra"]["coverage"]
    assert cov["oracle_passages"] == 2 and cov["oracle_passages_fi"] == 1 and cov["oracle_short_en"] == 2
    assert store.manifest["config"]["source"] == "oracle"
    again = build_oracle_store(pool, corpus, ["en", "fi"], 3, tmp_path / "cache", **kw)
    assert again.path == store.path  # same fingerprint: reused
    other = build_oracle_store(pool, corpus, ["en", "fi"], 2, tmp_path / "cache", **kw)
    assert other.path != store.path
    with pytest.raises(XqgInputError, match="not in the corpus"):
        build_oracle_store({"zz": {"en": ["q"]}}, corpus, ["en"], 1, tmp_path / "cache", **kw)


def test_config_checks(tmp_path: Path) -> None:
    s = settings("evaluate", "experiment=demo", "generator=oracle", cache=tmp_path)
    assert (
        s.generator.oracle
        and s.generator.languages == list(s.data.languages)
        and not s.generator.train.enabled
    )
    with pytest.raises(XqgInputError, match="has no known questions per passage") as e:
        settings("evaluate", "data=xor_tydi", "generator=oracle", "augmentation=xqg", cache=tmp_path)
    assert e.value.field == "generator.oracle"
    with pytest.raises(XqgInputError, match="no generator to train"):
        settings("train", "experiment=demo", "task=generator", "generator=oracle", cache=tmp_path)
    with pytest.raises(XqgInputError, match="exclude each other"):
        settings("evaluate", "generator=oracle", "generator.queries_source=/x.jsonl", cache=tmp_path)
    with pytest.raises(XqgInputError, match="distinct positive integers"):
        settings("evaluate", "metrics.gold_ks=[5,5]", cache=tmp_path)


@pytest.mark.slow
def test_evaluate_with_oracle_queries(tmp_path: Path) -> None:
    """One run on a 60-entity world: the oracle rows are named as such, the gold measures sit beside R@kt with
    their tests, and the queries' quality is in the run folder."""
    out = tmp_path / "run"
    cfg = settings(
        "evaluate",
        *SMALL,
        "retrieval.depth=30",
        "augmentation=xqg",
        "generator=oracle",
        "augmentation.alpha=0.2",
        cache=tmp_path / "cache",
        out=out,
    )
    pipeline.run(cfg)
    res = json.loads((out / "results.json").read_text())
    assert {"MRR@10", "Recall@1", "Recall@5", "Recall@20"} <= set(res["metrics"]) and "Recall@100" not in res[
        "metrics"
    ]
    assert "MRR@10" in res["baseline"] and "MRR@10" in res["significance"]["tests"]
    assert res["significance"]["b"] == "+xQG oracle"
    quality = json.loads((out / "generator_quality.json").read_text())
    assert quality["label"] == "oracle queries"
    gold = quality["gold"]["macro"]
    assert gold["names_entity"] == 100.0 and gold["right_relation"] == 100.0 and gold["equals_eval"] == 0.0
    assert "| right_relation |" in (out / "generator_quality.md").read_text()
    # no oracle query is the text of a dev or test question
    data = cfg.data.bundle(cfg.paths.cache_dir)
    held = {
        q.text for p in (data.dev_questions_path, data.test_questions_path) for q in read_xor_questions(p)
    }
    [store] = [
        GeneratedStore(p.parent) for p in Path(cfg.paths.cache_dir, "generated").glob("*/manifest.json")
    ]
    assert store.fingerprint == quality["store"] and len(store) > 0
    assert not held & {q.text for q in store}
    assert set(read_qrels(data.qrels["dev"])) >= {q.qid for q in read_xor_questions(data.dev_questions_path)}


@pytest.mark.slow
def test_xquad_r_oracle_uses_its_train_questions(tmp_path: Path, shared_data: Path) -> None:
    """XQuAD-R asks every question of a paragraph in one split: the oracle queries are that paragraph's own
    questions in the language, and only train paragraphs have any that are not evaluation questions."""
    s = settings(
        "evaluate",
        "data=xquad_r",
        "data.languages=[de]",
        "generator=oracle",
        f"paths.shared_data_dir={shared_data}",
        cache=tmp_path,
    )
    data = s.data.bundle(s.paths.cache_dir)
    corpus = open_corpus(data.corpus_path, s.paths.cache_dir)
    store = ensure_oracle(s, corpus)
    assert store.languages == ("de",) and store.n == 5
    train = read_xor_questions(data.train_questions_path)
    qrels = read_qrels(data.qrels["train"])
    own = {}
    for q in train:
        for d in qrels[q.qid]:
            own.setdefault(d, set()).add(q.text)
    got = dict(store.iter_passages())
    assert set(got) == set(own)  # the train paragraphs, all of them
    assert all(set(by["de"]) <= own[d] for d, by in got.items())
