"""The official XOR-Retrieve R@kt: exact parity with the shared expected scores, each rule of the official
script, the strictness on missing/unknown ids, and the run mode with its on-disk token cache."""

from __future__ import annotations

import json
import logging
import random
import statistics

import pytest

from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.data.formats.jsonl import write_jsonl
from xqg.data.formats.predictions import read_predictions
from xqg.data.formats.runs import write_run
from xqg.data.records import Question
from xqg.evaluation import token_cache
from xqg.evaluation.result import EvalResult
from xqg.evaluation.scoring import evaluate_predictions, score_run
from xqg.evaluation.token_cache import ParallelTokenizer, TokenCache
from xqg.evaluation.xor_rule import ensure_punkt, tokenize_text

DEV = "xor-tydi/xor_dev_retrieve_eng_span_v1_1.jsonl"


@pytest.fixture(scope="module")
def parity_result(shared_data, parity_dir) -> EvalResult:
    return evaluate_predictions(
        shared_data / DEV, parity_dir / "xor_dev_predictions_a.json.gz", allow_missing=True
    )


def test_parity_with_official_expected_scores(parity_result, parity_dir):
    expected = json.loads((parity_dir / "xor_dev_predictions_a.expected.json").read_text())
    got = parity_result.to_json()
    assert set(got) == set(expected)
    for metric, block in expected.items():
        assert set(got[metric]) == set(block)
        assert got[metric]["count"] == block["count"]
        for key, value in block.items():
            if key != "count":
                assert got[metric][key] == pytest.approx(value, abs=1e-9, rel=0), (metric, key)
    # 600 predictions, 54 of them yes/no-only, 1,510 dev questions without a prediction (allowed here)
    assert len(parity_result.skipped_ids) == 54
    assert len(parity_result.missing_ids) == 2110 - 600
    assert "missing_ids" in parity_result.to_json(details=True)["details"]


def test_parity_file_missing_questions_are_an_error_by_default(shared_data, parity_dir):
    with pytest.raises(XqgInputError, match=r"1510 of 2110 questions .* \(first: -1018987027025691298, "):
        evaluate_predictions(shared_data / DEV, parity_dir / "xor_dev_predictions_a.json.gz")


def test_nltk_tokens_never_contain_whitespace(parity_dir):
    import gzip

    from nltk.tokenize import word_tokenize

    preds = json.load(gzip.open(parity_dir / "xor_dev_predictions_a.json.gz"))
    texts = list(dict.fromkeys(c for p in preds[:12] for c in p["ctxs"]))
    texts.append('He said: "Don\'t\u00a0go\u2003there," and\tleft\n(1990–91).')
    for t in texts:
        for tok in word_tokenize(t):
            assert tok and not any(ch.isspace() for ch in tok)


# --- the official rules on small hand-made inputs -----------------------------------------------------------


def q(qid: str, answers: list[str], lang: str = "ja") -> Question:
    return Question(qid=qid, text=f"question {qid}", lang=lang, answers=tuple(answers))


def pred(qid: str, ctxs: list[str], lang: str = "ja") -> dict:
    return {"id": qid, "lang": lang, "ctxs": ctxs}


def hits_of(res: EvalResult, k: int) -> dict[str, bool]:
    return res.hits[k]


def test_yes_no_answers_are_dropped_and_yes_no_only_questions_skipped():
    qs = [q("a", ["yes", "no"]), q("b", ["yes", "Paris"]), q("c", ["no", "Rome"])]
    ps = [pred("a", ["yes no"]), pred("b", ["yes it is"]), pred("c", ["to Rome"])]
    res = evaluate_predictions(qs, ps, ks=(1,))
    assert res.skipped_ids == ["a"]
    assert res.counts == {"ja": 2}
    assert hits_of(res, 1) == {"b": False, "c": True}  # "yes" in b's ctx does not count
    assert res.to_json()["R@1kt"]["ja"] == 50.0


def test_token_cut_at_exactly_k_thousand_tokens():
    filler = "x " * 999
    qs = [q("in", ["Ans"]), q("out", ["Ans"]), q("span", ["New York"]), q("second", ["Ans"])]
    ps = [
        pred("in", [filler + "Ans"]),  # token 1000
        pred("out", [filler + "x Ans"]),  # token 1001
        pred("span", [filler + "New York"]),  # "New" is token 1000, "York" 1001
        pred("second", ["x " * 600, "x " * 450 + "Ans"]),  # cumulative token 1051, in the second ctx
    ]
    res = evaluate_predictions(qs, ps, ks=(1, 2))
    assert hits_of(res, 1) == {"in": True, "out": False, "span": False, "second": False}
    assert hits_of(res, 2) == {"in": True, "out": True, "span": True, "second": True}


def test_match_is_case_sensitive_substring_of_the_tokenised_text():
    qs = [q("case", ["paris"]), q("inword", ["ten"]), q("tok", ["(1990)"]), q("tok2", ["1990"])]
    ps = [
        pred("case", ["Paris is big."]),
        pred("inword", ["The content matters."]),  # official quirk: substring inside a word
        pred("tok", ["It happened (1990)."]),  # tokenised to "( 1990 )": no match
        pred("tok2", ["It happened (1990)."]),
    ]
    res = evaluate_predictions(qs, ps, ks=(2,))
    assert hits_of(res, 2) == {"case": False, "inword": True, "tok": False, "tok2": True}


def test_language_comes_from_the_prediction_with_a_warning(caplog):
    qs = [q("a", ["Tokyo"], lang="ja"), q("b", ["Seoul"], lang="ko")]
    ps = [pred("a", ["Tokyo"], lang="ko"), pred("b", ["Seoul"], lang="ko")]
    with caplog.at_level(logging.WARNING, logger="xqg.evaluation.scoring"):
        res = evaluate_predictions(qs, ps, ks=(2,))
    assert res.counts == {"ko": 2}
    assert res.lang_mismatch == [("a", "ko", "ja")]
    assert "official" in caplog.text and "a (ko vs ja)" in caplog.text
    assert res.to_json() == {"R@2kt": {"ko": 100.0, "macro": 100.0, "count": {"ko": 2}}}


def test_macro_is_the_mean_over_languages_with_counted_questions():
    qs = [q("a", ["A"], "ar"), q("b", ["B"], "bn"), q("c", ["C"], "bn"), q("d", ["yes"], "te")]
    ps = [pred("a", ["A"], "ar"), pred("b", ["B"], "bn"), pred("c", ["x"], "bn"), pred("d", ["yes"], "te")]
    res = evaluate_predictions(qs, ps, ks=(2, 5))
    out = res.to_json()
    assert out["R@2kt"] == {"ar": 100.0, "bn": 50.0, "macro": 75.0, "count": {"ar": 1, "bn": 2}}
    assert list(out) == ["R@2kt", "R@5kt"]
    assert res.macro == {2: 75.0, 5: 75.0}


def test_missing_and_unknown_ids_are_errors_unless_allowed():
    qs = [q(f"q{i}", ["A"]) for i in range(8)]
    ps = [pred(f"q{i}", ["A"]) for i in range(2)]
    with pytest.raises(
        XqgInputError, match=r"6 of 8 questions .* \(first: q2, q3, q4, q5, q6, \.\.\. \(\+1 more\)\)"
    ):
        evaluate_predictions(qs, ps)
    res = evaluate_predictions(qs, ps, allow_missing=True)
    assert res.missing_ids == [f"q{i}" for i in range(2, 8)]
    assert res.counts == {"ja": 2}
    assert any("6 questions had no prediction" in n for n in res.notes())
    unknown = [*[pred(f"q{i}", ["A"]) for i in range(8)], pred("zz", ["A"])]
    with pytest.raises(XqgInputError, match=r"1 ids of the predictions are not in the question file .*zz"):
        evaluate_predictions(qs, unknown)
    res = evaluate_predictions(qs, unknown, allow_unknown=True)
    assert res.unknown_ids == ["zz"] and res.counts == {"ja": 8}


def test_duplicate_and_empty_ctxs_follow_the_official_loop():
    qs = [q("dup", ["Ans"]), q("empty", ["Ans"]), q("blank", ["Ans"])]
    ps = [
        pred("dup", ["x " * 600, "x " * 600, "Ans"]),  # the same text twice counts twice: Ans is token 1201
        pred("empty", []),
        pred("blank", ["", "   ", "Ans"]),  # empty ctxs add no tokens and no separator
    ]
    res = evaluate_predictions(qs, ps, ks=(1, 2))
    assert hits_of(res, 1) == {"dup": False, "empty": False, "blank": True}
    assert hits_of(res, 2) == {"dup": True, "empty": False, "blank": True}


def official_hits(qs: list[Question], ps: list[dict], k: int) -> dict[str, bool]:
    """The official loop, written plainly, as the reference for the randomised comparison."""
    from nltk.tokenize import word_tokenize

    answers = {x.qid: x.answers for x in qs}
    out = {}
    for p in ps:
        span = [a for a in answers[p["id"]] if a not in ["yes", "no"]]
        if not span:
            continue
        toks: list[str] = []
        for c in p["ctxs"]:
            toks += word_tokenize(c)
            if len(toks) >= k * 1000:
                break
        s = " ".join(toks[: k * 1000])
        out[p["id"]] = any(a in s for a in span)
    return out


def _random_world(seed: int, n_q: int = 20):
    rng = random.Random(seed)
    vocab = [
        "the",
        "city",
        "of",
        "Tokyo",
        "Paris",
        "U.S.",
        "Dr.",
        "don't",
        "(1990)",
        "3.5",
        '"quoted"',
        "end.",
        "New",
        "York",
        "co-op",
        "e.g.",
        "it's",
        "$100",
        "Mr.",
        "Smith,",
        "yes",
        "no",
        "São",
        "Paulo",
    ]
    docs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 250))) for _ in range(20)]
    qs, ps = [], []
    for i in range(n_q):
        ans = rng.choice(
            [["Tokyo"], ["New York"], ["yes"], ["Smith"], ["São Paulo", "no"], ["do n't"], ["1990"]]
        )
        qs.append(q(f"q{i}", ans, rng.choice(["ar", "fi", "te"])))
        ps.append(pred(f"q{i}", [rng.choice(docs) for _ in range(rng.randint(0, 14))], qs[-1].lang))
    return qs, ps


@pytest.mark.parametrize("seed", [1, 2])
def test_matches_the_official_loop_on_random_inputs(seed):
    qs, ps = _random_world(seed)
    res = evaluate_predictions(qs, ps, ks=(1, 2))
    for k in (1, 2):
        assert res.hits[k] == official_hits(qs, ps, k)
    per_lang = res.per_language[1]
    for lang, n in res.counts.items():
        ids = [x.qid for x in qs if x.lang == lang and x.qid in res.hits[1]]
        assert len(ids) == n
        assert per_lang[lang] == sum(res.hits[1][i] for i in ids) / n * 100
    assert res.macro[1] == pytest.approx(statistics.mean(per_lang.values()))


@pytest.mark.slow
def test_parallel_tokenisation_gives_identical_results(monkeypatch):
    qs, ps = _random_world(3, n_q=10)
    serial = evaluate_predictions(qs, ps, ks=(1, 2), workers=1)
    monkeypatch.setattr(token_cache, "_PARALLEL_MIN_TEXTS", 1)
    monkeypatch.setattr(token_cache, "_CHUNK", 4)
    parallel = evaluate_predictions(qs, ps, ks=(1, 2), workers=2)
    assert parallel.hits == serial.hits
    assert parallel.stats["tokenized"] == serial.stats["tokenized"]
    # a worker that dies (killed, out of memory) must not hang the scorer: the rest is tokenised in-process
    import os
    from concurrent.futures.process import BrokenProcessPool

    texts = [c for p in ps for c in p["ctxs"]][:20]
    with ParallelTokenizer(1000, workers=2) as tok:
        with pytest.raises(BrokenProcessPool):
            tok._get_pool().submit(os._exit, 1).result()
        assert tok(texts) == [tokenize_text(t, 1000) for t in texts]
        assert tok.workers == 1


def test_only_the_needed_ctxs_are_tokenised():
    qs = [q("a", ["Z"])]
    ps = [pred("a", ["word " * 700 + "A", "word " * 700 + "B", "word " * 700 + "C", "never read " * 10])]
    res = evaluate_predictions(qs, ps, ks=(1, 2))
    assert res.stats["tokenized"] == 3


def test_a_prefix_holding_an_answer_settles_the_question_early():
    passages = [f"Ans{i} " + f"filler{i} " * 300 for i in range(12)]
    qs = [q("early", ["Ans0"]), q("late", ["Ans5"]), q("never", ["Nope"])]
    ps = [pred(x.qid, passages) for x in qs]
    res = evaluate_predictions(qs, ps, ks=(1, 2))
    assert hits_of(res, 1) == {"early": True, "late": False, "never": False}
    assert hits_of(res, 2) == {"early": True, "late": True, "never": False}
    assert res.hits == {k: official_hits(qs, ps, k) for k in (1, 2)}
    # "never" needs the passages up to 2,000 tokens (7 of 12); no question needs more
    assert res.stats["tokenized"] == 7
    alone = evaluate_predictions([qs[0]], [ps[0]], ks=(1, 2), allow_missing=True)
    assert alone.stats["tokenized"] < 7 and alone.hits[2] == {"early": True}


def test_missing_punkt_names_nltk_data_and_the_downloader(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(MissingResourceError, match=r"NLTK_DATA.*|python -m nltk\.downloader punkt_tab") as e:
        ensure_punkt(None)
    assert "NLTK_DATA" in str(e.value) and "python -m nltk.downloader punkt_tab" in str(e.value)
    with pytest.raises(MissingResourceError):
        evaluate_predictions([q("a", ["A"])], [pred("a", ["A"])])


def test_nltk_data_dir_is_appended_when_it_exists(monkeypatch, shared_data, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    ensure_punkt(shared_data / "nltk_data")
    assert str(shared_data / "nltk_data") in nltk.data.path


# --- predictions file reading ---------------------------------------------------------------------------------


def test_read_predictions_errors_name_file_line_and_field(tmp_path):
    good = tmp_path / "p.json"
    good.write_text(json.dumps([pred("a", ["x"]), pred("b", ["y"])], indent=1))
    assert [p.qid for p in read_predictions(good)] == ["a", "b"]
    bad = tmp_path / "bad.json"
    bad.write_text('[\n{"id": "a", "lang": "ja", "ctxs": []},\n{"id": "b", "lang": "ja" "ctxs": []}\n]')
    with pytest.raises(XqgInputError, match=r"bad\.json:3: malformed JSON"):
        read_predictions(bad)
    nofield = tmp_path / "nofield.json"
    nofield.write_text('[\n{"id": "a", "lang": "ja", "ctxs": []},\n{"id": "b", "ctxs": []}\n]')
    with pytest.raises(XqgInputError, match=r"nofield\.json:3 field 'lang': item 1: missing"):
        read_predictions(nofield)
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps(pred("a", [])) + "\n" + json.dumps(pred("a", [])) + "\n")
    with pytest.raises(
        XqgInputError, match=r"dup\.jsonl:2 field 'id': duplicate prediction id 'a' \(first at line 1\)"
    ):
        read_predictions(dup)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([pred("a", ["x", {"text": "y"}])]))
    with pytest.raises(XqgInputError, match=r"field 'ctxs\[1\]'"):
        read_predictions(wrong)


# --- run mode and the token cache ------------------------------------------------------------------------------


@pytest.fixture()
def tiny_run_world(tmp_path):
    rng = random.Random(7)
    words = ["alpha", "Beta", "gamma.", "Tokyo", "New", "York", "(1990)", "don't", "U.S.", "end."]
    passages = [
        {
            "docid": f"d{i}",
            "title": "Tokyo title",
            "text": " ".join(rng.choice(words) for _ in range(rng.randint(5, 450))),
        }
        for i in range(30)
    ]
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, passages)
    qs = [
        q(
            f"q{i}",
            [rng.choice(["Tokyo", "New York", "don't", "yes", "U.S", "Beta gamma"])],
            rng.choice(["ar", "ko"]),
        )
        for i in range(12)
    ]
    run = {x.qid: [(f"d{j}", 10.0 - r) for r, j in enumerate(rng.sample(range(30), 12))] for x in qs}
    run_path = tmp_path / "run.tsv"
    write_run(run_path, run)
    text = {p["docid"]: p["text"] for p in passages}
    preds = [pred(x.qid, [text[d] for d, _ in run[x.qid]], x.lang) for x in qs]
    return qs, corpus, run_path, run, preds


def test_run_mode_equals_predictions_and_warm_cache_skips_nltk(tiny_run_world, tmp_path):
    qs, corpus, run_path, _run, preds = tiny_run_world
    ref = evaluate_predictions(qs, preds, ks=(1, 2))
    cold = score_run(qs, run_path, corpus, ks=(1, 2), cache_dir=tmp_path / "cache")
    assert cold.hits == ref.hits and cold.to_json() == ref.to_json()  # ctx = text without the title
    assert cold.stats["tokenized"] > 0
    warm = score_run(qs, run_path, corpus, ks=(1, 2), cache_dir=tmp_path / "cache")
    assert warm.hits == ref.hits
    assert warm.stats["tokenized"] == 0 and warm.stats["from_cache"] > 0
    folders = list((tmp_path / "cache" / "tokens").iterdir())
    assert len(folders) == 1 and (folders[0] / "manifest.json").exists()
    assert not list(folders[0].glob("*.tmp")) and not list(folders[0].glob(".*"))


def test_token_cache_grows_incrementally_and_deeper_k_retokenises_truncated(tiny_run_world, tmp_path):
    qs, corpus, _run_path, run, preds = tiny_run_world
    cache = tmp_path / "cache"
    first = {x.qid: run[x.qid][:2] for x in qs}
    score_run(qs, first, corpus, ks=(1,), cache_dir=cache)
    more = score_run(qs, run, corpus, ks=(1,), cache_dir=cache)
    used_first = {d for v in first.values() for d, _ in v}
    assert 0 < more.stats["tokenized"]
    from xqg.data.corpus import open_corpus

    store = open_corpus(corpus, cache)
    tc = TokenCache(cache / "tokens", store.fingerprint)
    assert used_first <= set(tc.index)
    # entries stored with a 1000-token cap are re-tokenised when k = 2 needs more of them
    deep = score_run(qs, run, corpus, ks=(2,), cache_dir=cache)
    assert deep.hits[2] == evaluate_predictions(qs, preds, ks=(2,)).hits[2]


def test_token_cache_compaction_keeps_every_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(TokenCache, "MAX_PARTS", 3)
    tc = TokenCache(tmp_path / "tokens", "corpusfp")
    for i in range(6):
        tc.add({f"d{i}": tokenize_text(f"Passage number {i}, here.", 5000)}, verified=[f"v{i}"])
    assert len(list(tc.path.glob("part-*.parquet"))) <= 3
    again = TokenCache(tmp_path / "tokens", "corpusfp")
    assert again.fetch(["d0", "d5"])["d5"].joined == "Passage number 5 , here ."
    assert again.verified("v3") and again.entry_counts("v3") is None
    assert again.counts() == {"passages": 6, "verified_only": 6}
    other = TokenCache(tmp_path / "tokens", "anothercorpus")
    assert other.path != tc.path and not other.index


def test_the_open_token_cache_is_shared_kept_current_and_exact(tmp_path, monkeypatch):
    """``TokenCache.open``: one instance per cache in a process; what another instance (process) writes or
    compacts is seen on the next open; fetched tokens are served from memory and equal what disk holds; a
    better (longer) entry replaces the memorised one."""
    monkeypatch.setattr(TokenCache, "_open", {})
    mine = TokenCache.open(tmp_path / "tokens", "fp")
    assert TokenCache.open(tmp_path / "tokens", "fp") is mine
    mine.add({"d0": tokenize_text("One two three four.", 2)})
    other = TokenCache(tmp_path / "tokens", "fp")  # another process
    other.add({"d1": tokenize_text("Five six.", 5000), "d0": tokenize_text("One two three four.", 5000)})
    assert "d1" not in mine.index
    again = TokenCache.open(tmp_path / "tokens", "fp")
    assert again is mine and mine.fetch(["d1"])["d1"].joined == "Five six ."
    assert mine.fetch(["d0"])["d0"] == other.fetch(["d0"])["d0"] and mine.entry_counts("d0")[0] == 5
    reads = []
    real_read = mine._read
    monkeypatch.setattr(mine, "_read", lambda ds: reads.append(list(ds)) or real_read(ds))
    assert mine.fetch(["d0", "d1"])["d1"].joined == "Five six ." and reads == []  # from memory
    monkeypatch.setattr(TokenCache, "MAX_PARTS", 1)
    other.add({"d2": tokenize_text("Seven.", 5000)})  # compacts: the parts mine read are gone
    fresh = TokenCache.open(tmp_path / "tokens", "fp")
    assert fresh is mine and len(list(mine.path.glob("part-*"))) == 1
    got = mine.fetch(["d2", "d1", "d0"])
    assert got["d2"].joined == "Seven ." and got["d1"].joined == "Five six ." and reads == [["d2"]]


def test_run_with_unknown_docids_is_an_error(tiny_run_world, tmp_path):
    qs, corpus, _run_path, run, _preds = tiny_run_world
    bad = dict(run)
    bad["q0"] = [*run["q0"], ("nope", -1.0)]
    with pytest.raises(XqgInputError, match=r"1 docids of the run are not in the corpus .*nope"):
        score_run(qs, bad, corpus, cache_dir=tmp_path / "cache")
