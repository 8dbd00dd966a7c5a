"""Run files: Tevatron and TREC detection, ranking by score, gzip, round trips and one-line errors."""

from __future__ import annotations

import gzip

import pytest

from xqg.core.errors import XqgInputError
from xqg.data.formats.runs import read_run, write_run


def test_tevatron_run_is_ranked_by_score_ties_in_file_order(tmp_path):
    p = tmp_path / "run.tsv"
    p.write_text("q1\td3\t1.5\nq1\td1\t9.0\nq2\tx\t-2\nq1\td2\t1.5\n\nq1\td4\t1e1\n")
    run = read_run(p)
    assert run == {"q1": [("d4", 10.0), ("d1", 9.0), ("d3", 1.5), ("d2", 1.5)], "q2": [("x", -2.0)]}


def test_trec_run_ties_follow_the_rank_column_and_gzip_is_detected(tmp_path):
    p = tmp_path / "run.trec"  # gzip by content, not by name
    with gzip.open(p, "wt") as f:
        f.write("q1 Q0 b 2 3.0 tag\nq1 Q0 a 1 3.0 tag\nq1 Q0 c 3 7.5 tag\nq2 Q0 z 1 0.1 tag\n")
    assert read_run(p) == {"q1": [("c", 7.5), ("a", 3.0), ("b", 3.0)], "q2": [("z", 0.1)]}


@pytest.mark.parametrize("fmt", ["tevatron", "trec"])
def test_write_then_read_round_trips(tmp_path, fmt):
    run = {"q1": [("d1", 3.25), ("d2", 1.0)], "q2": [("d9", -0.5)]}
    p = tmp_path / f"run.{fmt}.gz"
    assert write_run(p, run, fmt=fmt) == 3
    with open(p, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    assert read_run(p) == run
    if fmt == "trec":
        assert gzip.open(p, "rt").readline() == "q1 Q0 d1 1 3.25 xqg\n"


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("q1 d1\n", r"run\.txt:1: unrecognised run line with 2 columns"),
        ("q1\td1\t1.0\nq1\td2\n", r"run\.txt:2: expected 3 columns"),
        ("q1\td1\tabc\n", r"run\.txt:1 field 'score': score 'abc' is not a number"),
        ("q1\td1\tnan\n", r"run\.txt:1 field 'score': score 'nan' is not finite"),
        (
            "q1\td1\t1\nq2\td1\t1\nq1\td1\t0.5\n",
            r"run\.txt:3 field 'docid': docid 'd1' listed twice .*line 1",
        ),
        ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 x 0.5 t\n", r"run\.txt:2 field 'rank': rank 'x' is not an integer"),
        ("q1 Q0 d1 1 1.0 t\nq1\td2\t0.5\n", r"run\.txt:2: expected 6 columns"),
        ("\n\n", r"run\.txt: empty run file"),
    ],
)
def test_bad_run_lines_name_file_and_line(tmp_path, content, pattern):
    p = tmp_path / "run.txt"
    p.write_text(content)
    with pytest.raises(XqgInputError, match=pattern):
        read_run(p)


def test_missing_run_file_and_bad_ids_on_write(tmp_path):
    with pytest.raises(XqgInputError, match="run file not found"):
        read_run(tmp_path / "nope.tsv")
    with pytest.raises(XqgInputError, match="whitespace"):
        write_run(tmp_path / "r.tsv", {"q 1": [("d", 1.0)]})
    assert not (tmp_path / "r.tsv").exists()
    with pytest.raises(ValueError, match="unknown run format"):
        write_run(tmp_path / "r.tsv", {}, fmt="csv")
