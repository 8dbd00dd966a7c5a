"""Property-based tests of the file readers and writers (``hypothesis``).

Round trips: whatever the writers accept (arbitrary Unicode text: tabs, quotes, newlines, right-to-left scripts,
line and paragraph separators; surrogates excluded, as UTF-8 cannot hold them) reads back equal. Never a silent
misread: arbitrary bytes either parse or raise :class:`XqgInputError` (no other exception), a file that
parses writes back to itself, and a truncated gzip file or JSON array is always an error, never a shorter result.
"""

from __future__ import annotations

import gzip
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES
from xqg.data.formats.jsonl import iter_jsonl, write_jsonl
from xqg.data.formats.pairs import read_generator_pairs, write_generator_pairs
from xqg.data.formats.predictions import read_predictions
from xqg.data.formats.released import iter_released_records
from xqg.data.formats.runs import read_run, write_run
from xqg.data.formats.tevatron import TevatronFile, iter_tevatron, write_tevatron
from xqg.data.formats.xor import read_xor_questions, write_xor_questions
from xqg.data.records import GeneratorPair, Passage, Question, TrainExample
from xqg.generation.store import GeneratedQuery, _read_records, _write_records

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any Unicode text but surrogates (not encodable in UTF-8), biased towards what breaks naive readers.
TRICKY = st.sampled_from(
    ["\t", '"', "'", "\n", "\r\n", "\r", "\\", "\u2028", "\u2029", "\x1c", "\x85", "\u200f"]
)
TEXT = st.lists(
    st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=8), TRICKY, st.just("مرحبا עולם")),
    max_size=6,
).map("".join)
NONBLANK = TEXT.filter(lambda s: s.strip() != "")
# Ids in runs: no whitespace of any kind (the format's column separator).
RUN_ID = st.text(
    st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=10
).filter(lambda s: not any(c.isspace() for c in s))
SCORE = st.floats(allow_nan=False, allow_infinity=False, width=64)
LANG = st.sampled_from(XOR_LANGUAGES)


_ROOT: list[Path] = []


@pytest.fixture(autouse=True, scope="module")
def _root(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One folder per module; each example gets its own subfolder (pytest's retention cleans them up)."""
    _ROOT[:] = [tmp_path_factory.mktemp("prop")]


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(dir=_ROOT[0]))


def _expected_run(run: dict[str, list[tuple[str, float]]]) -> dict[str, list[tuple[str, float]]]:
    """The reader's order: by score, best first; ties keep the written order (stable sort)."""
    return {q: sorted(docs, key=lambda d: -d[1]) for q, docs in run.items() if docs}


RUNS = st.dictionaries(
    RUN_ID,
    st.lists(st.tuples(RUN_ID, SCORE), min_size=1, max_size=5, unique_by=lambda d: d[0]),
    min_size=1,
    max_size=4,
)


@FAST
@given(run=RUNS, fmt=st.sampled_from(["tevatron", "trec"]), gz=st.booleans())
def test_run_round_trip(run: dict[str, list[tuple[str, float]]], fmt: str, gz: bool) -> None:
    path = _tmp() / ("run.tsv.gz" if gz else "run.tsv")
    write_run(path, _expected_run(run), fmt=fmt)
    assert read_run(path) == _expected_run(run)


@FAST
@given(qid=TEXT, docid=TEXT, score=st.floats(width=64))
def test_run_writer_refuses_what_it_cannot_write(qid: str, docid: str, score: float) -> None:
    """Ids with whitespace, empty ids and non-finite scores are refused, never written unreadably."""
    path = _tmp() / "run.tsv"
    try:
        write_run(path, {qid: [(docid, score)]})
    except XqgInputError:
        assert not path.exists()
        return
    assert read_run(path) == {qid: [(docid, score)]} and math.isfinite(score)


PREDICTIONS = st.lists(
    st.fixed_dictionaries(
        {"id": NONBLANK, "lang": NONBLANK.map(str.strip), "ctxs": st.lists(TEXT, max_size=3)}
    ),
    max_size=4,
    unique_by=lambda p: p["id"],
)


@FAST
@given(preds=PREDICTIONS, jsonl=st.booleans(), gz=st.booleans(), indent=st.sampled_from([None, 1]))
def test_predictions_round_trip(
    preds: list[dict[str, Any]], jsonl: bool, gz: bool, indent: int | None
) -> None:
    if jsonl and not preds:
        return  # an empty JSONL file is an empty file, not an empty prediction list
    if jsonl:
        data = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds).encode("utf-8")
    else:
        data = json.dumps(preds, ensure_ascii=False, indent=indent).encode("utf-8")
    path = _tmp() / ("p.json.gz" if gz else "p.json")
    path.write_bytes(gzip.compress(data) if gz else data)
    got = read_predictions(path)
    assert [(p.qid, p.lang, list(p.ctxs)) for p in got] == [(p["id"], p["lang"], p["ctxs"]) for p in preds]


QUESTIONS = st.lists(
    st.builds(
        Question,
        qid=NONBLANK,
        text=NONBLANK,
        lang=LANG,
        answers=st.lists(TEXT, min_size=1, max_size=3).map(tuple),
        split=st.one_of(st.none(), TEXT),
    ),
    max_size=4,
    unique_by=lambda q: q.qid,
)


@FAST
@given(questions=QUESTIONS, gz=st.booleans())
def test_xor_questions_round_trip(questions: list[Question], gz: bool) -> None:
    path = _tmp() / ("q.jsonl.gz" if gz else "q.jsonl")
    write_xor_questions(path, questions)
    assert read_xor_questions(path) == questions


PASSAGE = st.builds(Passage, docid=NONBLANK, title=TEXT, text=TEXT)
EXAMPLES = st.lists(
    st.builds(
        TrainExample,
        qid=NONBLANK,
        query=NONBLANK,
        answers=st.lists(TEXT, max_size=2).map(tuple),
        positives=st.lists(PASSAGE, min_size=1, max_size=2).map(tuple),
        negatives=st.lists(PASSAGE, max_size=2).map(tuple),
        lang=st.one_of(st.none(), LANG),
    ),
    max_size=3,
)


@FAST
@given(examples=EXAMPLES, gz=st.booleans())
def test_tevatron_round_trip(examples: list[TrainExample], gz: bool) -> None:
    path = _tmp() / ("t.jsonl.gz" if gz else "t.jsonl")
    write_tevatron(path, examples)
    assert list(iter_tevatron(path)) == examples
    assert list(TevatronFile(path)) == examples


PAIRS = st.lists(
    st.builds(GeneratorPair, docid=NONBLANK, lang=LANG, title=TEXT, passage=NONBLANK, question=NONBLANK),
    max_size=4,
)


@FAST
@given(pairs=PAIRS)
def test_generator_pairs_round_trip(pairs: list[GeneratorPair]) -> None:
    path = _tmp() / "pairs.jsonl"
    write_generator_pairs(path, pairs)
    assert read_generator_pairs(path) == pairs


GENERATED = st.lists(
    st.builds(GeneratedQuery, docid=NONBLANK, lang=LANG, k=st.integers(0, 255), text=TEXT), max_size=6
)


@FAST
@given(records=GENERATED, fmt=st.sampled_from(["parquet", "jsonl.gz"]))
def test_generated_store_shard_round_trip(records: list[GeneratedQuery], fmt: str) -> None:
    path = _tmp() / f"shard-00000.{fmt}"
    _write_records(path, records, fmt)
    assert list(_read_records(path)) == records


@FAST
@given(
    rows=st.lists(
        st.tuples(NONBLANK, TEXT, TEXT, st.dictionaries(LANG, st.lists(TEXT, max_size=3), max_size=3)),
        max_size=3,
    )
)
def test_released_queries_round_trip(rows: list[tuple[str, str, str, dict[str, list[str]]]]) -> None:
    path = _tmp() / "released.jsonl.gz"
    write_jsonl(path, [{"docid": d, "title": t, "text": x, "generated_queries": g} for d, t, x, g in rows])
    got = list(iter_released_records(path))
    assert [(p.docid, p.title, p.text, g) for p, g in got] == list(rows)


# -- never a silent misread ----------------------------------------------------------------------------------------
READERS: dict[str, Callable[[Path], Any]] = {
    "run": read_run,
    "predictions": read_predictions,
    "questions": read_xor_questions,
    "tevatron": lambda p: list(iter_tevatron(p)),
    "pairs": read_generator_pairs,
    "released": lambda p: list(iter_released_records(p)),
    "jsonl": lambda p: list(iter_jsonl(p)),
}
GARBAGE = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=120).map(lambda b: b"\x1f\x8b" + b),  # gzip magic, then anything
    st.binary(max_size=120).map(gzip.compress),  # valid gzip of garbage
    st.lists(
        st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"\n", b"\t", b"\xff", b"1", b"a", b" "])
    ).map(b"".join),
)


@pytest.mark.parametrize("kind", sorted(READERS))
@FAST
@given(data=GARBAGE)
def test_garbage_parses_or_is_one_clean_error(kind: str, data: bytes) -> None:
    path = _tmp() / "input.jsonl"
    path.write_bytes(data)
    try:
        READERS[kind](path)
    except XqgInputError as e:
        assert "\n" not in str(e) and str(path) in str(e)


@FAST
@given(data=st.binary(max_size=300))
def test_a_run_that_parses_writes_back_to_itself(data: bytes) -> None:
    """Whatever the run reader accepts is exactly what the writer writes for it (no half-understood line)."""
    path = _tmp() / "run.tsv"
    path.write_bytes(data)
    try:
        run = read_run(path)
    except XqgInputError:
        return
    again = path.with_name("again.tsv")
    write_run(again, run)
    assert read_run(again) == run


@FAST
@given(run=RUNS, cut=st.floats(0.05, 0.95))
def test_truncated_gzip_is_always_an_error(run: dict[str, list[tuple[str, float]]], cut: float) -> None:
    path = _tmp() / "run.tsv.gz"
    write_run(path, _expected_run(run))
    data = path.read_bytes()
    path.write_bytes(data[: max(2, int(len(data) * cut))])
    with pytest.raises(XqgInputError, match="gzip"):
        read_run(path)


@FAST
@given(preds=PREDICTIONS.filter(bool), cut=st.floats(0.0, 0.99))
def test_truncated_json_array_is_always_an_error(preds: list[dict[str, Any]], cut: float) -> None:
    text = json.dumps(preds, ensure_ascii=False).encode("utf-8")
    path = _tmp() / "p.json"
    path.write_bytes(text[: int(len(text) * cut)])
    with pytest.raises(XqgInputError):
        read_predictions(path)
