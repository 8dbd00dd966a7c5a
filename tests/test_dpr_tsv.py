"""The DPR TSV reader: every variant the reference readers accept (header or not, quoted or not, CRLF, gzip) reads
exactly; every row it could misread (a stray TAB, a stray quote, a shifted column) is an error naming file:line.
Property tests: writer -> reader round trips arbitrary text, and arbitrary garbage either reads exactly as the
reference reader (DPR's ``csv.reader(f, delimiter="\\t")``) reads it, or is refused."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from xqg.core.errors import XqgInputError
from xqg.data.corpus import open_corpus
from xqg.data.formats.dpr import iter_dpr_tsv, looks_like_header, write_dpr_tsv
from xqg.data.records import Passage

PASSAGES = [
    Passage("1", "Aaron", 'Aaron ( or ; "Ahärôn") is a prophet'),
    Passage("2", '"Weird Al" Yankovic', "An American singer,\tsongwriter"),
    Passage("10", "Émile", "Texte français — avec des accents"),
    Passage("wiki:7", "", "no title here"),
]
# the same passages as DPR's files spell them: quoted where a field has a quote or a tab, inner quotes doubled
ROWS = [
    '1\t"Aaron ( or ; ""Ahärôn"") is a prophet"\tAaron',
    '2\t"An American singer,\tsongwriter"\t"""Weird Al"" Yankovic"',
    "10\tTexte français — avec des accents\tÉmile",
    "wiki:7\tno title here\t",
]


def _file(tmp_path: Path, lines: list[str], *, header: bool, eol: str = "\n", gz: bool = False) -> Path:
    body = eol.join((["id\ttext\ttitle"] if header else []) + lines) + eol
    path = tmp_path / ("psgs.tsv.gz" if gz else "psgs.tsv")
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(body.encode("utf-8"))
    else:
        path.write_bytes(body.encode("utf-8"))
    return path


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("gz", [False, True])
def test_variants_read_exactly(tmp_path: Path, header: bool, eol: str, gz: bool) -> None:
    path = _file(tmp_path, ROWS, header=header, eol=eol, gz=gz)
    assert list(iter_dpr_tsv(path)) == PASSAGES
    store = open_corpus(path, tmp_path / "cache")
    assert list(store) == PASSAGES


def test_unquoted_rows_and_literal_inner_quotes(tmp_path: Path) -> None:
    # a quote inside an unquoted field is literal (as csv and DPR read it); blank lines are skipped
    path = _file(tmp_path, ['5\tsay "hi" now\tT "x"', "", "6\tplain\tP"], header=False)
    assert list(iter_dpr_tsv(path)) == [Passage("5", 'T "x"', 'say "hi" now'), Passage("6", "P", "plain")]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # issue 17: an unquoted TAB in the text used to move the rest of the text into the title
        (
            ["1\tsome text\tmore text\tTitle"],
            r"psgs\.tsv:2: expected 3 tab-separated columns, got 4 \(an unquoted TAB",
        ),
        (["1\tonly two"], r"psgs\.tsv:2: expected 3 tab-separated columns, got 2"),
        # issue 17: a stray quote used to merge the following rows into one passage
        (
            ['1\t"starts quoted\tT', "2\tnext row\tT2"],
            r"psgs\.tsv:2: bad quoting: a quoted field does not close",
        ),
        (['1\t"quoted" then more\tT'], r"psgs\.tsv:2: bad quoting: text after a closing quote"),
        (
            ["1\tx\tT", "a continuation line\tof text\tT"],
            r"psgs\.tsv:3 field 'id': 'a continuation line' is not a",
        ),
        (["\tx\tT"], r"psgs\.tsv:2 field 'id': empty docid"),
        ([" 1\tx\tT"], r"psgs\.tsv:2 field 'id': ' 1' is not a passage id"),
        (["1\tx\tT", "id\ttext\ttitle"], r"psgs\.tsv:3 field 'id': a second header row"),
        (["1\tx\rmore\tT"], r"psgs\.tsv:2: carriage return inside a row"),
    ],
)
def test_rows_that_would_be_misread_are_errors(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = _file(tmp_path, lines, header=True)
    with pytest.raises(XqgInputError, match=expected) as info:
        list(iter_dpr_tsv(path))
    assert "\n" not in str(info.value)
    with pytest.raises(XqgInputError, match=expected):
        open_corpus(path, tmp_path / "cache")


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (
            "id\ttitle\ttext",
            r"psgs\.tsv:1 field 'header': a header row must be id<TAB>text<TAB>title \(DPR format, in this",
        ),
        ("docid\ttext\ttitle", r"psgs\.tsv:1 field 'id': a header row must be"),
        ("id\ttext", r"psgs\.tsv:1 field 'header': a header row must be"),
    ],
)
def test_malformed_headers(tmp_path: Path, first: str, expected: str) -> None:
    path = tmp_path / "psgs.tsv"
    path.write_text(f"{first}\n1\tx\tT\n", encoding="utf-8")
    with pytest.raises(XqgInputError, match=expected):
        list(iter_dpr_tsv(path))


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "psgs.tsv"
    path.write_bytes(b"1\tok\tT\n2\tbad \xff byte\tT\n")
    with pytest.raises(XqgInputError, match=r"psgs\.tsv:2: not valid UTF-8"):
        list(iter_dpr_tsv(path))


def test_writer_refuses_what_would_not_read_back(tmp_path: Path) -> None:
    with pytest.raises(XqgInputError, match="line break"):
        write_dpr_tsv(tmp_path / "a.tsv", [Passage("1", "t", "a\nb")])
    with pytest.raises(XqgInputError, match="without spaces"):
        write_dpr_tsv(tmp_path / "a.tsv", [Passage("1 2", "t", "x")])
    with pytest.raises(XqgInputError, match="header row"):
        write_dpr_tsv(tmp_path / "a.tsv", [Passage("id", "title", "text")], header=False)
    assert not (tmp_path / "a.tsv").exists()  # nothing half-written


# -- properties ----------------------------------------------------------------------------------------------
_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40)
_docid = st.text(st.sampled_from("abcXYZ0123456789_-:."), min_size=1, max_size=8)
_passages = st.lists(st.builds(Passage, _docid, _text, _text), max_size=8, unique_by=lambda p: p.docid)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(passages=_passages, header=st.booleans(), gz=st.booleans())
def test_round_trip(tmp_path: Path, passages: list[Passage], header: bool, gz: bool) -> None:
    assume(all(p.docid != "id" for p in passages))
    assume(header or not passages or not looks_like_header(passages[0]))
    path = tmp_path / ("rt.tsv.gz" if gz else "rt.tsv")
    write_dpr_tsv(path, passages, header=header)
    assert list(iter_dpr_tsv(path)) == passages


def _reference(path: Path) -> list[Passage]:
    """What DPR's reader makes of a file (universal newlines, csv defaults, tab-separated), header skipped."""
    with open(path, encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r]
    if rows and [c.strip().lower() for c in rows[0]] == ["id", "text", "title"]:
        rows = rows[1:]
    return [Passage(r[0], r[2], r[1]) for r in rows]


_garbage_line = st.lists(
    st.sampled_from(["1", "2", "x", " ", "\t", '"', '""', "\r", "é", "id", "text", "title", "a b"]),
    max_size=12,
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_garbage_line, min_size=1, max_size=6))
def test_garbage_reads_exactly_or_is_refused(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "g.tsv"
    path.write_bytes("\n".join(lines).encode("utf-8") + b"\n")
    try:
        ours = list(iter_dpr_tsv(path))
    except XqgInputError as e:
        assert str(e).startswith(f"{path}:") and "\n" not in str(e)
        return
    assert ours == _reference(path)
