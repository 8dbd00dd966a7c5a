"""The released xQG shards (ielab/xor-tydi-xqg-augmented): 19 files read directly, in natural order, as the
corpus (data=xor_tydi_released) and as the generated queries (generator=released_xqg); coverage is checked."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from helpers.config import settings
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.data.corpus import open_corpus
from xqg.generation.released import check_coverage, import_released
from xqg.tasks.generate import ensure_generated

SHARDS = 19
PER_SHARD = 2
LANGS = ["ar", "bn", "fi", "ja", "ko", "ru", "te"]


def _write_shards(root: Path, rng: random.Random) -> Path:
    """19 shards in the released layout, written in a shuffled order (so neither creation order nor plain
    sorting gives shard_0 ... shard_18)."""
    folder = root / "xor-tydi-xqg-augmented" / "data"
    folder.mkdir(parents=True)
    order = list(range(SHARDS))
    rng.shuffle(order)
    for i in order:
        with (folder / f"shard_{i}.jsonl").open("w", encoding="utf-8") as f:
            for j in range(PER_SHARD):
                row = {
                    "docid": f"{i * PER_SHARD + j}",
                    "title": f"Title {i}",
                    "text": f"passage {j} of shard {i}",
                    "generated_queries": {lang: [f"{lang} q{k} {i}/{j}" for k in range(5)] for lang in LANGS},
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return folder


@pytest.fixture
def released(tmp_path: Path) -> Path:
    _write_shards(tmp_path / "shared", random.Random(3))
    return tmp_path


def _settings(tmp_path: Path, *overrides: str) -> object:
    return settings(
        "evaluate",
        "data=xor_tydi_released",
        "generator=released_xqg",
        f"paths.shared_data_dir={tmp_path / 'shared'}",
        *overrides,
        cache=tmp_path / "cache",
    )


def test_nineteen_shards_as_corpus_and_queries(released: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _settings(released)
    files = cfg.data.bundle(cfg.paths.cache_dir).corpus_path
    assert [p.name for p in files] == [f"shard_{i}.jsonl" for i in range(SHARDS)]  # natural order
    corpus = open_corpus(files, cfg.paths.cache_dir)
    assert len(corpus) == SHARDS * PER_SHARD
    assert [corpus.docid_at(r) for r in range(len(corpus))] == [str(i) for i in range(SHARDS * PER_SHARD)]
    assert corpus.get("21").text == "passage 1 of shard 10"
    store = ensure_generated(cfg, corpus)
    assert store.counts["passages"] == SHARDS * PER_SHARD and store.languages == tuple(LANGS) and store.n == 5
    assert [d for d, _ in store.iter_passages()] == [str(i) for i in range(SHARDS * PER_SHARD)]
    assert store.queries("37")["te"][4] == "te q4 18/1"
    assert check_coverage(store, corpus, cfg.paths.cache_dir) == {
        "passages": 38,
        "covered": 38,
        "missing": 0,
    }
    # a partial copy is never read as the whole: the config says 19 files
    (released / "shared" / "xor-tydi-xqg-augmented" / "data" / "shard_7.jsonl").unlink()
    with pytest.raises(MissingResourceError, match=r"expected 19 files, found 18"):
        _ = _settings(released).data.bundle(cfg.paths.cache_dir).corpus_path


def test_store_covering_one_shard_of_nineteen_fails(released: Path) -> None:
    shard0 = released / "shared" / "xor-tydi-xqg-augmented" / "data" / "shard_0.jsonl"
    cfg = _settings(released, f"generator.queries_source={shard0}")
    corpus = open_corpus(cfg.data.bundle(cfg.paths.cache_dir).corpus_path, cfg.paths.cache_dir)
    with pytest.raises(
        XqgInputError, match=r"36 of 38 corpus passages \(94\.7%\) have no generated queries"
    ) as e:
        ensure_generated(cfg, corpus)
    assert "generator.max_missing_share" in str(e.value) and "\n" not in str(e.value)
    allowed = _settings(released, f"generator.queries_source={shard0}", "generator.max_missing_share=0.95")
    assert ensure_generated(allowed, corpus).counts["passages"] == 2


def test_multi_file_fingerprints_cover_every_file_in_order(released: Path) -> None:
    folder = released / "shared" / "xor-tydi-xqg-augmented" / "data"
    a, b = folder / "shard_0.jsonl", folder / "shard_1.jsonl"
    cache = released / "cache"
    ab, ba = import_released([a, b], cache), import_released([b, a], cache)
    assert ab.fingerprint != ba.fingerprint
    assert [d for d, _ in ab.iter_passages()] == ["0", "1", "2", "3"]
    assert open_corpus([a, b], cache).fingerprint != open_corpus([b, a], cache).fingerprint
    before = open_corpus([a, b], cache).fingerprint
    b.write_text(b.read_text().replace("passage 0", "passage zero"))
    assert open_corpus([a, b], cache).fingerprint != before
    with pytest.raises(XqgInputError, match=r"duplicate docid '0'"):
        open_corpus([a, a], cache)
