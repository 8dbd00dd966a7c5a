"""The seeded query perturbations (xqg.data.perturb)."""

from __future__ import annotations

import random

import pytest

from xqg.core.errors import XqgInputError
from xqg.data.perturb import PERTURBATIONS, english_versions, perturb_questions, perturb_text
from xqg.data.records import Question

QUESTIONS = [
    Question("syn-1-capital-ru", "Какая столица у страны Велария сегодня?", "ru", ("Ostra",), "dev"),
    Question("syn-1-capital-ja", "ヴェラリア の 首都 は どこ です か", "ja", ("Ostra",), "dev"),
    Question("syn-2-river-ar", "ما هو النهر الذي يمر عبر مدينة كالم؟", "ar", ("Nera",), "dev"),
    Question("syn-2-river-fi", "Mikä joki virtaa Kalmin kaupungin läpi?", "fi", ("Nera",), "dev"),
    Question("syn-1-capital-en", "What is the capital of Velaria today?", "en", ("Ostra",), "dev"),
    Question("syn-2-river-en", "Which river flows through the city of Kalm?", "en", ("Nera",), "dev"),
]


@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_perturbations_are_deterministic_for_a_seed_and_keep_id_and_language(kind: str) -> None:
    english = english_versions(QUESTIONS)
    first = perturb_questions(QUESTIONS, kind, 0.5, seed=7, english=english)
    assert first == perturb_questions(QUESTIONS, kind, 0.5, seed=7, english=english)
    # each question draws from its own stream: the order of the questions does not matter
    assert perturb_questions(QUESTIONS[::-1], kind, 0.5, seed=7, english=english)[::-1] == first
    for q, p in zip(QUESTIONS, first, strict=True):
        assert (p.qid, p.lang, p.answers, p.split) == (q.qid, q.lang, q.answers, q.split)
    assert any(p.text != q.text for q, p in zip(QUESTIONS, first, strict=True))
    others = [perturb_questions(QUESTIONS, kind, 0.5, seed=s, english=english) for s in range(1, 6)]
    assert any(o != first for o in others)
    assert perturb_questions(QUESTIONS, kind, 0.0, seed=7, english=english) == [
        Question(q.qid, " ".join(q.text.split()), q.lang, q.answers, q.split) for q in QUESTIONS
    ]


def test_each_perturbation_does_what_it_says() -> None:
    rng = random.Random(0)
    assert perturb_text("Какая столица", "transliterate", 1.0, rng) == "Kakaya stolitsa"
    assert perturb_text("Qual é a população", "no_diacritics", 1.0, rng) == "Qual e a populacao"
    assert perturb_text("a b c d", "word_order", 1.0, rng) == "b a d c"
    assert perturb_text("x y z", "code_switch", 1.0, rng, english="one two three") == "one two three"
    assert perturb_text("x y z", "code_switch", 1.0, rng, english=None) == "x y z"
    typo = perturb_text("capital", "typo", 1.0, rng)
    assert typo != "capital" and abs(len(typo) - len("capital")) <= 1 and set(typo) <= set("capital")
    noisy = perturb_text("abc def", "char_noise", 1.0, rng)
    assert set(noisy) <= set("abcdef ") and noisy[3] == " "


def test_english_versions_join_parallel_questions_by_id_stem() -> None:
    english = english_versions(QUESTIONS)
    assert english == {
        "syn-1-capital-ru": "What is the capital of Velaria today?",
        "syn-1-capital-ja": "What is the capital of Velaria today?",
        "syn-2-river-ar": "Which river flows through the city of Kalm?",
        "syn-2-river-fi": "Which river flows through the city of Kalm?",
    }


def test_unknown_perturbation_or_rate_is_an_input_error() -> None:
    with pytest.raises(XqgInputError, match="unknown perturbation"):
        perturb_text("a", "shout", 0.1, random.Random(0))
    with pytest.raises(XqgInputError, match="rate"):
        perturb_text("a", "typo", 1.5, random.Random(0))
