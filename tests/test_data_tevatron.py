"""Tevatron training files and generator pairs: round-trip (plain and gzip), validation errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from helpers.data import read_tevatron
from xqg.core.errors import XqgInputError
from xqg.data.datamodules import _load_examples
from xqg.data.formats.jsonl import write_jsonl
from xqg.data.formats.pairs import read_generator_pairs, write_generator_pairs
from xqg.data.formats.tevatron import TevatronFile, iter_tevatron, write_tevatron
from xqg.data.records import GeneratorPair, Passage, TrainExample

EXAMPLES = [
    TrainExample(
        "q1",
        "Wer ist X?",
        ("X",),
        (Passage("1", "X", "X is a person."),),
        (Passage("2", "Y", "Y is not."), Passage("3", "", "no title")),
        "ru",
    ),
    TrainExample("q2", "Where?", (), (Passage("7", "T", "there"), Passage("8", "T", "also")), ()),
]


@pytest.mark.parametrize("name", ["train.jsonl", "train.jsonl.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_tevatron(path, EXAMPLES) == 2
    assert read_tevatron(path) == EXAMPLES
    # gzip output is byte-identical for equal input (no timestamp), so cached files fingerprint stably
    first = path.read_bytes()
    write_tevatron(path, EXAMPLES)
    assert path.read_bytes() == first


def test_reads_released_shape_with_int_ids(tmp_path: Path) -> None:
    """The released files carry no ``lang`` and may use integer docids."""
    row = {
        "query_id": 5,
        "query": "who?",
        "answers": ["a"],
        "positive_passages": [{"docid": 11, "title": "t", "text": "a b"}],
        "negative_passages": [{"docid": "12", "title": "u", "text": "c"}],
    }
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    (ex,) = list(iter_tevatron(path))
    assert ex.qid == "5" and ex.positives[0].docid == "11" and ex.lang is None


GOOD = {
    "query_id": "a",
    "query": "q",
    "answers": [],
    "positive_passages": [{"docid": "1", "title": "", "text": "x"}],
    "negative_passages": [],
}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"query": None}, r"t\.jsonl:2 field 'query': missing"),
        ({"positive_passages": []}, r":2 field 'positive_passages': empty list"),
        (
            {"positive_passages": [{"docid": "1", "title": "t"}]},
            r":2 field 'positive_passages\[0\]\.text': missing",
        ),
        (
            {"negative_passages": [{"docid": "1", "title": 3, "text": "x"}]},
            r":2 field 'negative_passages\[0\]\.title': expected str",
        ),
        ({"negative_passages": ["x"]}, r":2 field 'negative_passages\[0\]': expected an object"),
        ({"answers": "x"}, r":2 field 'answers': expected list"),
    ],
)
def test_bad_rows(tmp_path: Path, patch: dict, expected: str) -> None:
    bad = {**GOOD, **patch}
    bad = {k: v for k, v in bad.items() if v is not None}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(XqgInputError, match=expected):
        read_tevatron(path)


def test_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    write_tevatron(path, EXAMPLES * 50)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(XqgInputError, match=r"t\.jsonl\.gz:\d+: truncated or corrupt gzip"):
        read_tevatron(path)


def test_generator_pairs_round_trip_and_errors(tmp_path: Path) -> None:
    pairs = [GeneratorPair("1", "ja", "東京", "Tokyo is big.", "東京はどこですか？")]
    path = tmp_path / "p.jsonl"
    write_generator_pairs(path, pairs)
    assert read_generator_pairs(path) == pairs
    path.write_text('{"docid": "1", "lang": "xx", "title": "", "passage": "p", "question": "q"}\n')
    with pytest.raises(XqgInputError, match=r"p\.jsonl:1 field 'lang': unknown language code 'xx'"):
        read_generator_pairs(path)


def test_tevatron_file_random_access(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    write_tevatron(path, EXAMPLES)
    tf = TevatronFile(path)
    assert len(tf) == 2 and tf[0] == EXAMPLES[0] and tf[-1] == EXAMPLES[1] and tf[0:2] == EXAMPLES
    with pytest.raises(IndexError):
        tf[2]
    both = _load_examples([path, path])
    assert len(both) == 4 and both[3] == EXAMPLES[1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "query": 5}) + "\n")
    with pytest.raises(XqgInputError, match=r"bad\.jsonl:3 field 'query': expected str"):
        TevatronFile(bad)


def test_dpr_layout_reads_as_tevatron(tmp_path):
    """DPR's training layout (question, positive_ctxs with passage_id, hard negatives first) gives the same
    examples as the Tevatron layout; a DPR row without a usable positive is a file:line:field error."""
    dpr = [
        {
            "question": "who wrote it?",
            "answers": ["Ann"],
            "lang": "ja",
            "positive_ctxs": [{"passage_id": "7", "title": "T", "text": "Ann wrote it."}],
            "negative_ctxs": [{"passage_id": "9", "title": "N", "text": "other"}],
            "hard_negative_ctxs": [{"passage_id": "8", "title": "H", "text": "hard"}],
        },
        {
            "id": "q2",
            "question": "and then?",
            "answers": [],
            "positive_ctxs": [{"psg_id": 3, "title": "", "text": "x"}],
        },
    ]
    write_jsonl(tmp_path / "dpr.jsonl", dpr)
    first, second = list(iter_tevatron(tmp_path / "dpr.jsonl"))
    assert (first.qid, first.query, first.answers, first.lang) == ("line1", "who wrote it?", ("Ann",), "ja")
    assert [p.docid for p in first.positives] == ["7"]
    assert [p.docid for p in first.negatives] == ["8", "9"]
    assert (second.qid, [p.docid for p in second.positives]) == ("q2", ["3"])
    write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "positive_ctxs": [{"title": "t", "text": "x"}]}])
    with pytest.raises(XqgInputError, match=r"bad.jsonl:1.*positive_passages\[0\]\.docid"):
        list(iter_tevatron(tmp_path / "bad.jsonl"))
