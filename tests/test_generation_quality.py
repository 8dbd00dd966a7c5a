"""Generated-query quality measures (xqg.generation.quality) on hand-computed cases."""

from __future__ import annotations

import pytest

from xqg.data.synthetic_world import templates
from xqg.generation.quality import (
    MACRO,
    PassageInfo,
    TemplateMatcher,
    distinct_n,
    names_entity,
    quality_table,
    query_quality,
    right_script,
    summary_lines,
    tokens,
)

TEMPLATES = {
    "en": {
        "birth_year": ["When was {e} born?", "In which year was {e} born?"],
        "capital": ["Capital of {e}?"],
    },
    "ru": {"birth_year": ["Когда родился {e}?"], "capital": ["Какая столица {e}?"]},
}


def test_distinct_n_counts_words_or_characters() -> None:
    # unigrams a b a a c: 3 distinct of 5; bigrams (a b) (b a) (a c): 3 of 3
    assert distinct_n(["a b a", "a c"], "fi", 1) == pytest.approx(3 / 5)
    assert distinct_n(["a b a", "a c"], "fi", 2) == 1.0
    # Japanese is written without spaces: characters count
    assert tokens("東京 は", "ja") == ["東", "京", "は"]
    assert distinct_n(["東京東"], "ja", 1) == pytest.approx(2 / 3)
    assert distinct_n([], "fi", 1) == 0.0 and distinct_n(["one"], "fi", 2) == 0.0


def test_right_script_leaves_the_latin_entity_out() -> None:
    q = "متى ولد Karolina Mel؟"
    assert not right_script(q, "ar")  # more Latin letters (the name) than Arabic ones
    assert right_script(q, "ar", "Karolina Mel")
    assert not right_script("When was Karolina Mel born?", "ar", "Karolina Mel")
    assert right_script("Milloin Karolina syntyi?", "fi")


def test_names_entity_is_a_casefolded_substring() -> None:
    assert names_entity("where is KARO town?", "Karo Town")
    assert not names_entity("where is Karo?", "Karo Town")
    assert not names_entity("anything", "")


def test_template_matcher_gives_relation_and_entity() -> None:
    m = TemplateMatcher(TEMPLATES)
    assert m.match("en", "When was Ana  Lu born? ") == ("birth_year", "Ana Lu")
    assert m.match("en", "In which year was Bo born?") == ("birth_year", "Bo")
    assert m.match("ru", "Какая столица Vel?") == ("capital", "Vel")
    assert m.match("en", "Where was Ana born?") is None
    assert m.match("de", "When was Ana born?") is None  # no templates for the language
    assert m.questions("en", ["capital", "birth_year"], "Vel") == [
        "Capital of Vel?",
        "When was Vel born?",
        "In which year was Vel born?",
    ]


def test_query_quality_hand_case() -> None:
    m = TemplateMatcher(TEMPLATES)
    info = {
        "d1": PassageInfo("Ana", frozenset({"birth_year"})),
        "d2": PassageInfo("Vel", frozenset({"capital"})),
    }
    passages = [
        # d1: right template+relation+entity; a leak of the eval question; off-template and wrong script
        ("d1", {"en": ["When was Ana born?", "Capital of Ana?", "Когда Ana"]}),
        # d2: right relation about another entity
        ("d2", {"en": ["Capital of Bo?"], "ru": ["Какая столица Vel?"]}),
        ("d3", {"en": ["x"]}),  # not in the sample
    ]
    q = query_quality(passages, info, eval_texts=[" Capital of  Ana? "], matcher=m, keep={"d1", "d2"})
    en = q["en"]
    assert en["queries"] == 4
    assert en["right_script"] == pytest.approx(75.0)  # "Когда Ana" is not Latin
    assert en["names_entity"] == pytest.approx(75.0)  # "Capital of Bo?" names Bo, not Vel
    assert en["matches_template"] == pytest.approx(75.0)
    assert en["right_relation"] == pytest.approx(50.0)  # "Capital of Ana?" asks a fact d1 does not state
    assert en["equals_eval"] == pytest.approx(25.0)
    ru = q["ru"]
    assert ru["queries"] == 1 and ru["right_relation"] == 100.0 and ru["distinct_1"] == 100.0
    assert q[MACRO]["queries"] == 5
    assert q[MACRO]["right_relation"] == pytest.approx(75.0)  # mean over languages, not over queries


def test_unknown_entities_and_no_templates_leave_measures_out() -> None:
    q = query_quality([("d", {"fi": ["mikä on"]})], {})
    assert set(q["fi"]) == {"queries", "right_script", "distinct_1", "distinct_2", "equals_eval"}
    assert query_quality([], {}) == {}


def test_summary_lines_and_table() -> None:
    q = query_quality([("d", {"fi": ["mikä on", "mikä"]})], {"d": PassageInfo("Oulu")})
    lines = summary_lines(q, "oracle queries")
    assert lines[0].startswith(
        "oracle queries quality [fi]: 2 queries, right_script 100.0%, names_entity 0.0%"
    )
    assert lines[-1].startswith("oracle queries quality [macro]")
    table = quality_table(q).splitlines()
    assert table[0] == "| measure | fi | macro |"
    assert "| queries | 2 | 2 |" in table and "| distinct_1 | 66.7 | 66.7 |" in table
    # a saved JSON comes back with sorted keys: the paper's order again, macro last
    saved = {k: {"queries": 1.0} for k in ("de", "fi", "macro", "te", "ar")}
    assert quality_table(saved).splitlines()[0] == "| measure | ar | fi | te | de | macro |"
    assert [line.split("[")[1].split("]")[0] for line in summary_lines(saved)] == [
        "ar",
        "fi",
        "te",
        "de",
        "macro",
    ]


def test_every_world_phrasing_gives_back_its_relation_and_name() -> None:
    """The synthetic world's own templates: a name with a space, wherever {e} sits (glued to a Japanese particle,
    before an Arabic question mark), comes back whole with its relation (what oracle queries are built from)."""
    world = templates()
    m = TemplateMatcher(world)
    for lang, by_rel in world.items():
        for rel, phrasings in by_rel.items():
            for p in phrasings:
                assert m.match(lang, p.replace("{e}", "Karo Mel")) == (rel, "Karo Mel"), (lang, p)


def test_a_generator_s_nfkc_output_still_matches_its_template_and_the_evaluation_question() -> None:
    """T5's tokenizer applies NFKC, so a Japanese question comes back with ``?`` for the template's full-width
    ``？``: it is the same question (the demo's ja queries once matched no template at all)."""
    world = templates()
    m = TemplateMatcher(world)
    written = world["ja"]["headquarters"][0].replace("{e}", "Jodiamoun")
    generated = written.replace("？", "?")
    assert generated != written
    assert m.match("ja", generated) == ("headquarters", "Jodiamoun")
    q = query_quality(
        [("1", {"ja": [generated]})],
        {"1": PassageInfo("Jodiamoun", frozenset({"headquarters"}))},
        eval_texts=[written],
        matcher=m,
    )
    assert q["ja"]["matches_template"] == 100.0
    assert q["ja"]["right_relation"] == 100.0
    assert q["ja"]["equals_eval"] == 100.0
