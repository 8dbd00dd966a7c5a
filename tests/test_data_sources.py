"""Sources (local, hub, URL; one file or several) without any network: revisions, confinement to the cache,\nglobs in natural order, offline messages; and the released generated-queries reader."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants as hf_constants

import xqg.data.hub_cache as hub_cache
import xqg.data.sources as sources
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.data.formats.released import iter_released_generated, iter_released_records
from xqg.data.sources import natural_key, parse_hub, resolve_source, resolve_sources
from xqg.models.hub import split_revision


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
    assert (hub.repo, hub.filename, hub.repo_type, hub.revision) == (
        "Tevatron/wikipedia-nq",
        "nq-train.jsonl.gz",
        "dataset",
        None,
    )
    root = tmp_path / "sources" / "hf" / "dataset" / "Tevatron" / "wikipedia-nq"
    target = root / "main" / "nq-train.jsonl.gz"
    msg = (
        r"not available offline \(HF_HUB_OFFLINE=1\): download "
        r"https://huggingface\.co/datasets/Tevatron/wikipedia-nq/resolve/main/nq-train\.jsonl\.gz and put it at "
    )
    with pytest.raises(MissingResourceError, match=msg + re.escape(str(target))):
        resolve_source("hf://datasets/Tevatron/wikipedia-nq/nq-train.jsonl.gz", tmp_path)
    spec = {"repo": "Tevatron/wikipedia-nq", "filename": "nq-train.jsonl.gz", "note": "NQ train"}
    # a file an older xqg cached without a revision folder is not used, but the error points at it
    legacy = root / "nq-train.jsonl.gz"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"old")
    with pytest.raises(MissingResourceError, match=r"file \(NQ train\) \(an unpinned copy at .*nq-train"):
        resolve_source(spec, tmp_path)
    # a file copied by hand to the cache location is used offline
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert resolve_source(spec, tmp_path) == target
    # a pinned revision is another folder: the main file is never reused for it
    pinned = {**spec, "revision": "a74adc28b51157e1db1a75aff1fb056651df69b8"}
    with pytest.raises(
        MissingResourceError, match=r"resolve/a74adc28b51157e1db1a75aff1fb056651df69b8/nq-train"
    ):
        resolve_source(pinned, tmp_path)
    with pytest.raises(XqgInputError, match="must look like hf://datasets"):
        resolve_source("hf://datasets/only-owner", tmp_path)


@pytest.mark.parametrize(
    ("spec", "revision", "filename"),
    [
        ("hf://dataset/ielab/x@v1/sub/f.parquet", "v1", "sub/f.parquet"),
        (
            "hf://datasets/ielab/x@refs/convert/parquet/corpus/en/0000.parquet",
            "refs/convert/parquet",
            "corpus/en/0000.parquet",
        ),
        (
            "hf://datasets/ielab/x@refs%2Fconvert%2Fparquet/corpus/en/0000.parquet",
            "refs/convert/parquet",
            "corpus/en/0000.parquet",
        ),
        ("hf://datasets/ielab/x@refs/pr/3/data/a.jsonl", "refs/pr/3", "data/a.jsonl"),
        (
            "hf://datasets/ielab/x@779a7c755c602c1fbc3fb66780330febb9fb0c10/data/shard_*.jsonl",
            "779a7c755c602c1fbc3fb66780330febb9fb0c10",
            "data/shard_*.jsonl",
        ),
    ],
)
def test_hub_revisions_parse_and_own_cache_folder(
    tmp_path: Path, spec: str, revision: str, filename: str
) -> None:
    hub = parse_hub(spec)
    assert (hub.repo, hub.revision, hub.filename) == ("ielab/x", revision, filename)
    quoted = revision.replace("/", "%2F")
    assert hub.local_dir(tmp_path) == tmp_path / "sources" / "hf" / "dataset" / "ielab" / "x" / quoted
    assert f"/resolve/{quoted}/{filename}" in hub.url


@pytest.mark.parametrize(
    "spec",
    [
        "hf://datasets/a/b/../../../etc/passwd",
        "hf://datasets/a/b/sub/../../x",
        "hf://datasets/a/b//x",
        "hf://datasets/a/b/./x",
        "hf://datasets/a/b/sub\\..\\x",
        "hf://datasets/../b/x",
        "hf://datasets/a/..@v1/x",
        "hf://datasets/a/b@../x",
        "hf://datasets/a/b@./x",
        "hf://notatype/a/b/x",
        "https://example.org/a/../../../x",
        "https://example.org/a/%2e%2e/%2e%2e/x",
        "https://example.org/a/%2Fetc%2Fpasswd",
        "https:///nohost/x",
        "https://..//x",
    ],
)
def test_remote_targets_stay_in_the_cache(tmp_path: Path, spec: str) -> None:
    with pytest.raises(XqgInputError, match=r"field 'source'"):
        resolve_source(spec, tmp_path / "cache", offline=True)
    with pytest.raises(XqgInputError):
        resolve_source({"repo": "a/b", "filename": "../x"}, tmp_path, offline=True)
    with pytest.raises(XqgInputError):
        resolve_source({"repo": "a/b", "filename": "/etc/passwd"}, tmp_path, offline=True)


def test_symlinked_cache_folder_cannot_lead_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("secret")
    cache = tmp_path / "cache"
    repo = cache / "sources" / "hf" / "dataset" / "a" / "b" / "main"
    repo.mkdir(parents=True)
    (repo / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(XqgInputError, match="outside the download cache"):
        resolve_source("hf://datasets/a/b/link/f.txt", cache, offline=True)


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_local_glob_list_and_count(tmp_path: Path) -> None:
    for i in (10, 2, 0, 1, 18, 9):  # written out of order
        _write(tmp_path / "data" / f"shard_{i}.jsonl")
    names = [p.name for p in resolve_sources(str(tmp_path / "data" / "shard_*.jsonl"), tmp_path)]
    assert names == [
        "shard_0.jsonl",
        "shard_1.jsonl",
        "shard_2.jsonl",
        "shard_9.jsonl",
        "shard_10.jsonl",
        "shard_18.jsonl",
    ]
    # a list keeps its own order; each item may expand
    listed = resolve_sources(
        [str(tmp_path / "data" / "shard_9.jsonl"), str(tmp_path / "data" / "shard_1*.jsonl")], tmp_path
    )
    assert [p.name for p in listed] == ["shard_9.jsonl", "shard_1.jsonl", "shard_10.jsonl", "shard_18.jsonl"]
    spec = {"path": str(tmp_path / "data" / "shard_*.jsonl"), "count": 19}
    with pytest.raises(MissingResourceError, match=r"expected 19 files, found 6"):
        resolve_sources(spec, tmp_path)
    assert len(resolve_sources({**spec, "count": 6}, tmp_path)) == 6
    with pytest.raises(MissingResourceError, match=r"no file matches: .*nope_\*"):
        resolve_sources(str(tmp_path / "nope_*.jsonl"), tmp_path)
    with pytest.raises(XqgInputError, match=r"must be one file, but its source names 6"):
        resolve_source(str(tmp_path / "data" / "shard_*.jsonl"), tmp_path)
    assert natural_key("shard_2.jsonl") < natural_key("shard_10.jsonl") < natural_key("shard_10a.jsonl")


def test_hub_glob_offline_reads_the_cache_folder(tmp_path: Path) -> None:
    spec = {
        "path": str(tmp_path / "not-here" / "shard_*.jsonl"),
        "repo": "ielab/xor-tydi-xqg-augmented",
        "revision": "779a7c755c602c1fbc3fb66780330febb9fb0c10",
        "filename": "data/shard_*.jsonl",
        "count": 3,
    }
    folder = tmp_path / "sources" / "hf" / "dataset" / "ielab" / "xor-tydi-xqg-augmented" / spec["revision"]
    with pytest.raises(
        MissingResourceError,
        match=r"no file matches 'data/shard_\*\.jsonl' offline .*; download them with `huggingface-cli download "
        r"ielab/xor-tydi-xqg-augmented --repo-type dataset --revision 779a7c755c602c1fbc3fb66780330febb9fb0c10 "
        r"--include 'data/shard_\*\.jsonl' --local-dir " + re.escape(str(folder)) + r"` \(from "
        r"https://huggingface\.co/datasets/ielab/xor-tydi-xqg-augmented/tree/779a7c755c602c1fbc3fb66780330febb9fb0c10"
        r"/data\) or put them at .*not-here",
    ):
        resolve_sources(spec, tmp_path, offline=True)
    for i in (2, 10, 1):
        _write(folder / "data" / f"shard_{i}.jsonl")
    _write(folder / ".cache" / "huggingface" / "download" / "data" / "shard_5.jsonl")  # hub metadata: ignored
    got = resolve_sources(spec, tmp_path, offline=True)
    assert [p.name for p in got] == ["shard_1.jsonl", "shard_2.jsonl", "shard_10.jsonl"]
    # a hub folder (trailing slash) is every file under it
    folder_spec = f"hf://datasets/ielab/xor-tydi-xqg-augmented@{spec['revision']}/data/"
    assert resolve_sources(folder_spec, tmp_path, offline=True) == got


def test_hub_glob_online_lists_the_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    class Api:
        def list_repo_files(
            self, repo: str, revision: str | None = None, repo_type: str | None = None
        ) -> list[str]:
            calls.append(("list", repo, revision, repo_type))
            return [
                "README.md",
                "data/shard_10.jsonl",
                "data/shard_2.jsonl",
                "data/other.txt",
                "data/shard_0.jsonl",
            ]

    hf_cache = tmp_path / "hf-cache"  # stands for the shared HF cache (HF_HUB_CACHE)

    def download(repo_id: str, filename: str, repo_type: str, revision: str | None) -> str:
        calls.append(("get", repo_id, filename, revision, repo_type))  # no local_dir: the shared cache
        return str(_write(hf_cache / repo_id / str(revision) / filename, filename))

    def cached(repo: str, filename: str, repo_type: str, revision: str | None) -> Path | None:
        f = hf_cache / repo / str(revision) / filename
        return f if f.is_file() else None

    monkeypatch.setattr(sources, "HfApi", Api)
    monkeypatch.setattr(sources, "hf_hub_download", download)
    monkeypatch.setattr(sources, "hf_cached", cached)
    got = resolve_sources("hf://datasets/ielab/x@abc123/data/shard_*.jsonl", tmp_path, offline=False)
    assert [p.name for p in got] == ["shard_0.jsonl", "shard_2.jsonl", "shard_10.jsonl"]
    assert all(p.is_relative_to(hf_cache / "ielab" / "x" / "abc123") for p in got)
    assert not (tmp_path / "sources").exists()  # nothing in a private copy
    assert calls[0] == ("list", "ielab/x", "abc123", "dataset")
    assert [c[2] for c in calls[1:]] == ["data/shard_0.jsonl", "data/shard_2.jsonl", "data/shard_10.jsonl"]
    assert {c[3] for c in calls[1:]} == {"abc123"}
    # downloaded files are used from the cache next time, without listing or downloading
    calls.clear()
    monkeypatch.setattr(sources, "hf_hub_download", lambda **k: pytest.fail("downloaded again"))
    assert (
        resolve_source("hf://datasets/ielab/x@abc123/data/shard_2.jsonl", tmp_path, offline=False) == got[1]
    )


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


def _hf_cache_layout(root: Path, repo: str, commit: str, files: list[str], ref: str = "main") -> Path:
    """A Hugging Face cache entry as huggingface_hub writes it (snapshots/<commit>/..., refs/<branch>)."""
    entry = root / f"datasets--{repo.replace('/', '--')}"
    _write(entry / "refs" / ref, commit)
    for f in files:
        _write(entry / "snapshots" / commit / f, f)
    return entry / "snapshots" / commit


def test_hub_files_come_from_the_shared_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files in the HF cache at the pinned revision are used offline (one file, a glob, a branch name), and a
    file copied by hand to the cache folder still comes first."""
    commit = "779a7c755c602c1fbc3fb66780330febb9fb0c10"
    snap = _hf_cache_layout(tmp_path / "hf", "ielab/x", commit, ["data/shard_2.jsonl", "data/shard_10.jsonl"])
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(sources, "hf_hub_download", lambda **k: pytest.fail("no download when cached"))
    cache = tmp_path / "cache"
    one = resolve_source(f"hf://datasets/ielab/x@{commit}/data/shard_2.jsonl", cache, offline=True)
    assert one == snap / "data" / "shard_2.jsonl"
    assert resolve_source("hf://datasets/ielab/x@main/data/shard_2.jsonl", cache, offline=True) == one
    got = resolve_sources(f"hf://datasets/ielab/x@{commit}/data/shard_*.jsonl", cache, offline=True)
    assert got == [snap / "data" / "shard_2.jsonl", snap / "data" / "shard_10.jsonl"]
    by_hand = _write(cache / "sources" / "hf" / "dataset" / "ielab" / "x" / commit / "data" / "shard_2.jsonl")
    assert (
        resolve_source(f"hf://datasets/ielab/x@{commit}/data/shard_2.jsonl", cache, offline=True) == by_hand
    )
    with pytest.raises(MissingResourceError, match=r"huggingface-cli download ielab/x data/other\.jsonl"):
        resolve_source(f"hf://datasets/ielab/x@{commit}/data/other.jsonl", cache, offline=True)


def test_offline_is_detected_once_and_never_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No HF_HUB_OFFLINE: the first hub request probes once; an unreachable hub switches the process offline, so
    neither this nor later requests (ours or transformers') try the network again."""
    for var in ("HF_HUB_OFFLINE", "XQG_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_cache, "_PROBED", {})
    probes: list[int] = []

    def unreachable() -> str:
        probes.append(1)
        return "ConnectError: [Errno -2] Name or service not known"

    monkeypatch.setattr(hub_cache, "probe_hub", unreachable)
    monkeypatch.setattr(sources, "hf_cached", lambda *a: None)
    monkeypatch.setattr(sources, "hf_hub_download", lambda **k: pytest.fail("a download was tried offline"))
    monkeypatch.setattr(sources, "HfApi", lambda: pytest.fail("a listing was tried offline"))
    with pytest.raises(MissingResourceError, match=r"not available offline"):
        resolve_source("hf://datasets/ielab/x@v1/a.jsonl", tmp_path)
    with pytest.raises(MissingResourceError, match=r"no file matches 'data/\*' offline"):
        resolve_sources("hf://datasets/ielab/x@v1/data/", tmp_path)
    assert split_revision("google/mt5-base@abc") == ("google/mt5-base", "abc")
    assert probes == [1]
    assert os.environ["HF_HUB_OFFLINE"] == "1" and hf_constants.HF_HUB_OFFLINE is True
    assert huggingface_hub.is_offline_mode()  # what transformers' from_pretrained asks
    # a reachable hub is probed once too, and stays online
    monkeypatch.setattr(hub_cache, "_PROBED", {})
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hub_cache.hub_offline(lambda: None) is False and hub_cache.hub_offline(unreachable) is False
    assert probes == [1]
