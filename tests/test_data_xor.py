"""XOR-TyDi question reader: real shared files, round-trip, and one-line errors on bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from xqg.core.errors import XqgInputError
from xqg.data.formats.xor import read_xor_questions, write_xor_questions
from xqg.data.records import Question


def test_shared_dev_counts(shared_data: Path) -> None:
    qs = read_xor_questions(shared_data / "xor-tydi" / "xor_dev_retrieve_eng_span_v1_1.jsonl")
    assert len(qs) == 2110
    assert Counter(q.lang for q in qs) == {
        "ar": 350,
        "bn": 312,
        "fi": 360,
        "ja": 296,
        "ko": 299,
        "ru": 255,
        "te": 238,
    }
    assert all(q.answers and q.split == "dev" for q in qs)


def test_shared_train_normalises_arabic(shared_data: Path) -> None:
    qs = read_xor_questions(shared_data / "xor-tydi" / "xor_train_retrieve_eng_span.jsonl")
    assert len(qs) == 15250
    langs = Counter(q.lang for q in qs)
    assert " ar" not in langs and langs["ar"] > 0
    assert set(langs) == {"ar", "bn", "fi", "ja", "ko", "ru", "te"}


def test_round_trip_gz_and_language_filter(tmp_path: Path) -> None:
    qs = [
        Question("1", "ما هي عاصمة فرنسا؟", "ar", ["Paris"], "dev"),
        Question("2", "Mikä on Suomen pääkaupunki?", "fi", ["Helsinki", "Helsingfors"], "dev"),
    ]
    out = tmp_path / "q.jsonl.gz"
    assert write_xor_questions(out, qs) == 2
    assert read_xor_questions(out) == qs
    assert [q.qid for q in read_xor_questions(out, languages=["fi"])] == ["2"]


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8"
    )
    return path


GOOD = {"id": "a", "question": "q?", "answers": ["x"], "lang": " ar"}


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("{not json", r"q\.jsonl:2: malformed JSON"),
        ({"id": "b", "answers": ["x"], "lang": "fi"}, r"q\.jsonl:2 field 'question': missing"),
        (
            {"id": "b", "question": "q", "answers": "x", "lang": "fi"},
            r":2 field 'answers': expected list, got str",
        ),
        (
            {"id": "b", "question": "q", "answers": [1], "lang": "fi"},
            r":2 field 'answers\[0\]': expected str",
        ),
        ({"id": "b", "question": "q", "answers": [], "lang": "fi"}, r":2 field 'answers': empty list"),
        (
            {"id": "a", "question": "q", "answers": ["y"], "lang": "fi"},
            r":2 field 'id': duplicate id 'a' \(first on line 1\)",
        ),
        (
            {"id": "b", "question": "q", "answers": ["y"], "lang": "xx"},
            r":2 field 'lang': unknown language code",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, bad: object, expected: str) -> None:
    path = _write(tmp_path / "q.jsonl", [GOOD, bad])
    with pytest.raises(XqgInputError, match=expected) as info:
        read_xor_questions(path)
    assert "\n" not in str(info.value)
