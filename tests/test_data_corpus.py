"""Corpus store: DPR TSV and JSONL, random access by docid and row, batches, caching, bad input."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import xqg.data.corpus as corpus_mod
from xqg.core.errors import XqgInputError
from xqg.data.corpus import CorpusStore, open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.records import Passage

PASSAGES = [
    Passage("1", "Aaron", 'Aaron ( or ; ""Ahärôn"") is a prophet'),
    Passage("2", '"Weird Al" Yankovic', "An American singer,\tsongwriter"),
    Passage("10", "Émile", "Texte français — avec des accents"),
    Passage("wiki:7", "", "no title here"),
    Passage("5", "東京", "東京都は日本の首都である。"),
]


def _dpr(tmp_path: Path, name: str = "psgs.tsv") -> Path:
    path = tmp_path / name
    write_dpr_tsv(path, PASSAGES)
    return path


def test_dpr_tsv_random_access(tmp_path: Path) -> None:
    path = _dpr(tmp_path)
    store = open_corpus(path, cache_dir=tmp_path / "cache")
    assert len(store) == 5
    for i, p in enumerate(PASSAGES):
        assert store.get(p.docid) == p
        assert store.row(i) == p
        assert store.docid_at(i) == p.docid
        assert store.has(p.docid)
    assert store.get(10) == PASSAGES[2]  # int docids are looked up as strings
    assert not store.has("3")
    with pytest.raises(KeyError, match=r"docid '3' not in corpus .*psgs\.tsv \(5 passages\)"):
        store.get("3")
    with pytest.raises(IndexError):
        store.row(5)
    batches = list(store.iter_batches(2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [p for b in batches for p in b] == PASSAGES
    assert [p for b in store.iter_batches(2, start=1, stop=4) for p in b] == PASSAGES[1:4]
    m = json.loads((store.path / "manifest.json").read_text())
    assert m["counts"]["passages"] == 5 and m["kind"] == "corpus"
    assert store.path.parent.parent == tmp_path / "cache"


def test_real_dpr_quoting_and_header(tmp_path: Path) -> None:
    path = tmp_path / "psgs_w100.tsv"
    path.write_text(
        'id\ttext\ttitle\n1\t"Aaron Aaron ( or ; ""Ahärôn"") is a prophet"\tAaron\n2\tplain text\t"""Weird"" Al"\n',
        encoding="utf-8",
    )
    store = open_corpus(path, cache_dir=tmp_path / "c")
    assert store.get("1") == Passage("1", "Aaron", 'Aaron Aaron ( or ; "Ahärôn") is a prophet')
    assert store.get("2").title == '"Weird" Al'


def test_store_is_built_once_and_rebuilt_on_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _dpr(tmp_path)
    first = open_corpus(path, cache_dir=tmp_path / "cache")

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("store rebuilt although unchanged")

    monkeypatch.setattr(corpus_mod, "_build", boom)
    again = open_corpus(path, cache_dir=tmp_path / "cache")
    assert again.fingerprint == first.fingerprint
    monkeypatch.undo()
    write_dpr_tsv(path, PASSAGES[:3])
    changed = open_corpus(path, cache_dir=tmp_path / "cache")
    assert changed.fingerprint != first.fingerprint and len(changed) == 3
    # the store folder itself can be opened, and stores travel to worker processes by path
    assert len(open_corpus(first.path)) == 5
    clone = pickle.loads(pickle.dumps(first))
    assert isinstance(clone, CorpusStore) and clone.get("5") == PASSAGES[4]


def test_default_cache_is_sibling_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _dpr(tmp_path)
    monkeypatch.delenv("XQG_CACHE", raising=False)
    store = open_corpus(path)
    assert store.path.is_relative_to(tmp_path / ".psgs.tsv.xqg-store" / "corpus")
    monkeypatch.setenv("XQG_CACHE", str(tmp_path / "envcache"))
    assert open_corpus(path).path.is_relative_to(tmp_path / "envcache")


def test_parquet_corpus(tmp_path: Path) -> None:
    path = tmp_path / "corpus.parquet"
    rows = [{**p.to_json(), "generated_queries": {"ar": ["q"]}} for p in PASSAGES]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    store = open_corpus(path, cache_dir=tmp_path / "c")
    assert list(store) == PASSAGES


def test_jsonl_gz_corpus(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for p in PASSAGES:
            f.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
    store = open_corpus(path, cache_dir=tmp_path / "c")
    assert list(store) == PASSAGES


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "docid\ttext\ttitle\n1\tx\tt\n",
            r"psgs\.tsv:1 field 'id': a header row must be id<TAB>text<TAB>title",
        ),
        ("docid\tbody\n1\tx\n", r"psgs\.tsv:1: expected 3 tab-separated columns, got 2"),
        ("id\ttext\ttitle\n1\tx\tt\n2\tonly two\n", r"psgs\.tsv:3: expected 3 tab-separated columns, got 2"),
        ("id\ttext\ttitle\n1\tx\tt\n\tx\tt\n", r"psgs\.tsv:3 field 'id': empty docid"),
        ("id\ttext\ttitle\n1\tx\tt\n1\ty\tu\n", r"psgs\.tsv: duplicate docid '1'"),
        ("id\ttext\ttitle\n", r"psgs\.tsv: corpus has no passages"),
    ],
)
def test_bad_tsv(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "psgs.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(XqgInputError, match=expected) as info:
        open_corpus(path, cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)
    # nothing half-written is left behind: no store and no staging folder
    assert not any(p.name != "corpus" for p in (tmp_path / "cache").glob("*"))
    assert list((tmp_path / "cache" / "corpus").iterdir()) == []


def test_bad_jsonl_corpus(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"docid": "1", "title": "t", "text": "x"}\n{"docid": "2", "title": "t", "text": 3}\n')
    with pytest.raises(XqgInputError, match=r"c\.jsonl:2 field 'text': expected str, got int"):
        open_corpus(path, cache_dir=tmp_path / "cache")


def test_count_present_matches_has(tmp_path: Path) -> None:
    store = open_corpus(_dpr(tmp_path), cache_dir=tmp_path / "cache")
    asked = ["1", "10", "3", "wiki:7", "nope", "5", ""]
    assert store.count_present(asked) == sum(store.has(d) for d in asked) == 4
    assert store.count_present([]) == 0


def test_several_files_are_one_corpus(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tsv", tmp_path / "b.jsonl"
    write_dpr_tsv(a, PASSAGES[:2])
    b.write_text("".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in PASSAGES[2:]))
    store = open_corpus([a, b], cache_dir=tmp_path / "cache")
    assert list(store) == PASSAGES and "(+1 more files)" in store.source
    assert open_corpus((a, b), cache_dir=tmp_path / "cache").path == store.path
    assert open_corpus([a], cache_dir=tmp_path / "cache").path == open_corpus(a, tmp_path / "cache").path
    b.write_text('{"docid": "1", "title": "t", "text": "dup"}\n')
    with pytest.raises(XqgInputError, match=r"duplicate docid '1'"):
        open_corpus([a, b], cache_dir=tmp_path / "cache")
