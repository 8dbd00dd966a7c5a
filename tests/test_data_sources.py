"""Sources (local, hub, URL) without any network, and the released generated-queries reader."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import xqg.data.sources as sources
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.data.formats.released import iter_released_generated, iter_released_records
from xqg.data.sources import parse_hub, resolve_source


def test_local_and_missing(tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_text("{}\n")
    assert resolve_source(str(f), tmp_path) == f
    assert resolve_source({"path": str(f), "url": "https://example.org/a.jsonl"}, tmp_path, offline=True) == f
    with pytest.raises(MissingResourceError, match=r"train file not found: .*nope\.jsonl"):
        resolve_source(str(tmp_path / "nope.jsonl"), tmp_path, what="train file")


def test_hub_offline_says_what_and_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = parse_hub("hf://datasets/Tevatron/wikipedia-nq/nq-train.jsonl.gz")
    assert (hub.repo, hub.filename, hub.repo_type) == (
        "Tevatron/wikipedia-nq",
        "nq-train.jsonl.gz",
        "dataset",
    )
    assert parse_hub("hf://dataset/ielab/x@v1/sub/f.parquet").revision == "v1"
    target = tmp_path / "sources" / "hf" / "dataset" / "Tevatron" / "wikipedia-nq" / "nq-train.jsonl.gz"
    msg = (
        r"not available offline \(HF_HUB_OFFLINE=1\): download "
        r"https://huggingface\.co/datasets/Tevatron/wikipedia-nq/resolve/main/nq-train\.jsonl\.gz and put it at "
    )
    with pytest.raises(MissingResourceError, match=msg + str(target)):
        resolve_source("hf://datasets/Tevatron/wikipedia-nq/nq-train.jsonl.gz", tmp_path)
    spec = {"repo": "Tevatron/wikipedia-nq", "filename": "nq-train.jsonl.gz", "note": "NQ train"}
    with pytest.raises(MissingResourceError, match=r"file \(NQ train\) is not available offline"):
        resolve_source(spec, tmp_path)
    # a file copied by hand to the cache location is used offline
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert resolve_source(spec, tmp_path) == target
    with pytest.raises(XqgInputError, match="must look like hf://datasets"):
        resolve_source("hf://datasets/only-owner", tmp_path)


def test_url_offline_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://example.org/data/psgs.tsv"
    with pytest.raises(
        MissingResourceError,
        match=r"offline .*download https://example\.org/data/psgs\.tsv and put it at "
        + str(tmp_path / "sources" / "url" / "example.org" / "data" / "psgs.tsv"),
    ):
        resolve_source(url, tmp_path, offline=True)

    payload = bytes(range(256)) * 40
    seen: list[dict[str, str]] = []

    class Resp(io.BytesIO):
        def __init__(self, data: bytes, status: int, total: int) -> None:
            super().__init__(data)
            self.status = status
            self.headers = {"Content-Length": str(total)}

    def fake_urlopen(req: Any, timeout: float = 0) -> Resp:
        headers = dict(req.header_items())
        seen.append(headers)
        rng = headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            return Resp(payload[start:], 206, len(payload) - start)
        return Resp(payload, 200, len(payload))

    monkeypatch.setattr(sources.urllib.request, "urlopen", fake_urlopen)
    target = sources.url_target(url, tmp_path)
    target.parent.mkdir(parents=True)
    target.with_name("psgs.tsv.part").write_bytes(payload[:1000])  # an interrupted earlier download
    assert resolve_source(url, tmp_path, offline=False) == target
    assert target.read_bytes() == payload and seen[-1]["Range"] == "bytes=1000-"
    assert not target.with_name("psgs.tsv.part").exists()
    assert resolve_source(url, tmp_path, offline=False) == target and len(seen) == 1  # cached: no request


def _released_rows() -> list[dict[str, Any]]:
    return [
        {
            "docid": "1",
            "title": "A",
            "text": "a text",
            "generated_queries": {"ar": ["س1", "س2"], "ja": ["質問"]},
        },
        {"docid": "2", "title": "B", "text": "b text", "generated_queries": {"ar": ["س3"], "ja": []}},
    ]


def test_released_generated_jsonl_and_parquet(tmp_path: Path) -> None:
    j = tmp_path / "gen.jsonl"
    j.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _released_rows()), encoding="utf-8"
    )
    expected = [("1", "ar", ["س1", "س2"]), ("1", "ja", ["質問"]), ("2", "ar", ["س3"]), ("2", "ja", [])]
    assert list(iter_released_generated(j)) == expected
    p = tmp_path / "gen.parquet"
    pq.write_table(pa.Table.from_pylist(_released_rows()), p)
    got = [(d, lang, list(q)) for d, lang, q in iter_released_generated(p)]
    assert sorted(got) == sorted(expected)
    passage, _ = next(iter_released_records(j))
    assert passage.title == "A" and passage.text == "a text"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"docid": "1", "title": "", "text": "t"}, r"g\.jsonl:1 field 'generated_queries': missing"),
        (
            {"docid": "1", "title": "", "text": "t", "generated_queries": {"xx": ["q"]}},
            r"g\.jsonl:1 field 'generated_queries\.xx': unknown language code",
        ),
        (
            {"docid": "1", "title": "", "text": "t", "generated_queries": {"ar": "q"}},
            r"field 'generated_queries\.ar': expected a list of strings",
        ),
    ],
)
def test_released_generated_errors(tmp_path: Path, row: dict, expected: str) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(XqgInputError, match=expected):
        list(iter_released_generated(path))
