"""Sharded, resumable query generation and the generated-query store (untrained tiny T5: fast, offline)."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import xqg.generation.generate as gen
from helpers.tiny import one_torch_thread, tiny_generator_checkpoint
from xqg.core.errors import XqgInputError
from xqg.data.corpus import open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.records import Passage
from xqg.generation.generate import generate_queries, generation_artifact
from xqg.generation.released import import_released
from xqg.generation.sampling import CandidateSampler, DecodingConfig
from xqg.generation.store import GeneratedStore

LANGS = ["ja", "ru"]
SETTINGS = {
    "languages": LANGS,
    "n": 2,
    # An untrained model's next-token distribution is peaked; a high temperature makes the samples vary, so
    # equal outputs below mean the seeding works, not that every sample is the same.
    "decoding": DecodingConfig(max_new_tokens=6, top_k=50, temperature=20.0),
    "batch_size": 4,
    "shard_size": 3,
    "device": "cpu",
}


_one_thread = pytest.fixture(autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_generator_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("corpus")
    passages = [Passage(f"d{i}", f"Title {i}", f"Passage number {i} about topic {i % 3}.") for i in range(10)]
    write_dpr_tsv(root / "corpus.tsv", passages)
    return open_corpus(root / "corpus.tsv", root / "cache")


def records(store: GeneratedStore) -> list[tuple[str, str, int, str]]:
    return [tuple(r) for r in store]


def test_uninterrupted_store_is_complete_and_typed(tiny_generator: Path, corpus, tmp_path: Path) -> None:
    store = generate_queries(tiny_generator, corpus, out_root=tmp_path, **SETTINGS)
    assert store.complete and store.languages == ("ja", "ru") and store.n == 2
    keys = [(r[0], r[1], r[2]) for r in records(store)]
    assert len(keys) == len(set(keys)) == 10 * 2 * 2 == len(store) == store.counts["records"]
    assert store.counts["shards"] == 4 and store.counts["passages"] == 10
    assert store.counts["empty"] + store.counts["duplicate"] <= store.counts["records"]
    by_lang = store.queries("d4")
    assert sorted(by_lang) == LANGS and all(len(v) == 2 for v in by_lang.values())
    assert store.queries("missing") == {}
    passages = list(store.iter_passages())
    assert [d for d, _ in passages] == [f"d{i}" for i in range(10)]
    assert sum(t.num_rows for t in store.iter_tables()) == 40
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["inputs"]["corpus"] == corpus.fingerprint
    # A second call finds the finished store without loading the model.
    assert generate_queries(tiny_generator, corpus, out_root=tmp_path, **SETTINGS).path == store.path


def test_killed_run_resumes_without_loss_or_duplicates(
    tiny_generator: Path, corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = records(generate_queries(tiny_generator, corpus, out_root=tmp_path / "a", **SETTINGS))

    real_finish = gen.finish_shard
    written: list[int] = []

    def dying_finish(art, s, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt("killed")
        real_finish(art, s, *args, **kwargs)
        written.append(s)

    monkeypatch.setattr(gen, "finish_shard", dying_finish)
    with pytest.raises(KeyboardInterrupt):
        generate_queries(tiny_generator, corpus, out_root=tmp_path / "b", **SETTINGS)
    art = generation_artifact(
        tiny_generator,
        corpus,
        out_root=tmp_path / "b",
        **{k: v for k, v in SETTINGS.items() if k != "device"},
    )
    assert not art.complete
    with pytest.raises(XqgInputError, match="incomplete"):
        GeneratedStore.open(art.path)
    partial = GeneratedStore.open(art.path, allow_incomplete=True)
    assert len(partial) == 2 * 3 * 2 * 2  # two finished shards of 3 passages

    resumed: list[int] = []

    def counting_finish(art, s, *args, **kwargs):
        resumed.append(s)
        real_finish(art, s, *args, **kwargs)

    monkeypatch.setattr(gen, "finish_shard", counting_finish)
    store = generate_queries(tiny_generator, corpus, out_root=tmp_path / "b", **SETTINGS)
    assert resumed == [2, 3]  # only the missing shards
    assert store.complete and records(store) == reference
    assert not [p for p in store.path.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_workers_split_shards_and_match_a_single_run(tiny_generator: Path, corpus, tmp_path: Path) -> None:
    settings = {**SETTINGS, "fmt": "jsonl.gz"}
    single = records(generate_queries(tiny_generator, corpus, out_root=tmp_path / "one", **settings))
    first = generate_queries(
        tiny_generator, corpus, out_root=tmp_path / "two", shard_index=0, num_shards=2, **settings
    )
    assert not first.complete and len(first) == 2 * 3 * 2 * 2  # shards 0 and 2
    second = generate_queries(
        tiny_generator, corpus, out_root=tmp_path / "two", shard_index=1, num_shards=2, **settings
    )
    assert second.complete and records(second) == single
    assert all(f.name.endswith(".jsonl.gz") for f in second.shard_files())


def test_seed_changes_the_samples(tiny_generator: Path, corpus, tmp_path: Path) -> None:
    a = records(generate_queries(tiny_generator, corpus, out_root=tmp_path, seed=1, **SETTINGS))
    b = records(generate_queries(tiny_generator, corpus, out_root=tmp_path, seed=2, **SETTINGS))
    assert [r[:3] for r in a] == [r[:3] for r in b]
    assert len({r[3] for r in a}) > 20  # the samples vary
    assert sum(x[3] != y[3] for x, y in zip(a, b, strict=True)) > 30


def test_fingerprint_follows_settings_that_change_the_text(
    tiny_generator: Path, corpus, tmp_path: Path
) -> None:
    base = {k: v for k, v in SETTINGS.items() if k != "device"}

    def fp(**over) -> str:
        return generation_artifact(tiny_generator, corpus, out_root=tmp_path, **{**base, **over}).fingerprint

    ref = fp()
    assert fp() == ref
    assert fp(decoding=replace(base["decoding"], top_k=20)) != ref
    assert fp(decoding=replace(base["decoding"], top_k=None, top_p=0.9)) != ref
    assert fp(n=3) != ref
    assert fp(languages=["ja"]) != ref
    assert fp(seed=7) != ref
    assert fp(decoding=DecodingConfig(do_sample=False, num_beams=2, max_new_tokens=6)) != ref
    with pytest.raises(XqgInputError, match="num_beams"):
        fp(decoding=DecodingConfig(do_sample=False, num_beams=1, max_new_tokens=6))
    with pytest.raises(XqgInputError, match="languages"):
        fp(languages=["xx"])


def test_beam_search_returns_n_distinct_queries(tiny_generator: Path, corpus, tmp_path: Path) -> None:
    settings = {**SETTINGS, "decoding": DecodingConfig(do_sample=False, num_beams=3, max_new_tokens=6)}
    store = generate_queries(tiny_generator, corpus, out_root=tmp_path, **settings)
    assert len(store) == 40
    # Beam hypotheses differ from each other (a random model may still end two beams on the same text).
    assert store.counts["duplicate"] < 20


def _released_row(docid: str, queries: dict[str, list[str]]) -> str:
    return json.dumps(
        {"docid": docid, "title": "T", "text": "x", "generated_queries": queries}, ensure_ascii=False
    )


def test_import_released_format(tmp_path: Path) -> None:
    path = tmp_path / "released.jsonl"
    rows = [
        _released_row("1", {"ja": ["東京は?", "東京は?", "大阪は?"], "ru": ["Где?", "", "Когда?"]}),
        _released_row("2", {"ja": ["a", "b", "c"], "ru": ["d", "e", "f"]}),
        _released_row("3", {"ru": ["g", "h", "i"], " ja": ["j", "k", "l"]}),
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    store = import_released(path, tmp_path / "cache", shard_size=2)
    assert store.complete and store.languages == ("ja", "ru") and store.n == 3
    assert len(store) == 18 and store.counts["shards"] == 2 and store.counts["passages"] == 3
    assert store.counts["empty"] == 1 and store.counts["duplicate"] == 1
    assert store.queries("1") == {"ja": ["東京は?", "東京は?", "大阪は?"], "ru": ["Где?", "", "Когда?"]}
    assert store.queries("3")["ja"] == ["j", "k", "l"]
    assert [r.k for r in store if r.docid == "2" and r.lang == "ru"] == [0, 1, 2]
    assert import_released(path, tmp_path / "cache", shard_size=2).path == store.path

    bad = tmp_path / "bad.jsonl"
    bad.write_text(rows[0] + "\n" + _released_row("4", {"xx": ["q"]}) + "\n", encoding="utf-8")
    with pytest.raises(XqgInputError, match=r"bad.jsonl:2"):
        import_released(bad, tmp_path / "cache")


def test_decoding_settings_reject_unknown_fields_when_composed() -> None:
    from hydra.errors import ConfigCompositionException

    from helpers.config import compose_config

    with pytest.raises(ConfigCompositionException, match=r"generator\.decoding\.top_z"):
        compose_config("evaluate", "generator.decoding.top_z=3")


def test_ensure_generated_imports_released_queries_when_configured(tmp_path: Path) -> None:
    from xqg.tasks.generate import ensure_generated
    from xqg.tasks.schema import EvaluateSettings, GeneratorSettings, PathsSettings

    path = tmp_path / "released.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(_released_row("1", {"ja": ["a", "b"], "ru": ["c", "d"]}) + "\n")
    settings = EvaluateSettings(
        generator=GeneratorSettings(queries_source=str(path), languages=["ja", "ru"]),
        paths=PathsSettings(cache_dir=str(tmp_path / "cache")),
    )
    store = ensure_generated(settings, corpus=None)  # type: ignore[arg-type]
    assert store.complete and store.n == 2 and store.queries("1")["ru"] == ["c", "d"]
    settings.generator.languages = ["ja", "te"]
    with pytest.raises(XqgInputError, match="te"):
        ensure_generated(settings, corpus=None)  # type: ignore[arg-type]


def test_candidate_sampler_follows_top_k_and_top_p() -> None:
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.3, 0.15]])).repeat(2000, 1)
    draw = CandidateSampler(2, None, 1.0, torch.Generator().manual_seed(0)).draw(logits)
    assert set(draw.tolist()) == {1, 2} and abs((draw == 1).float().mean().item() - 0.5 / 0.8) < 0.05
    draw = CandidateSampler(None, 0.6, 1.0, torch.Generator().manual_seed(0)).draw(logits)
    assert set(draw.tolist()) == {1, 2}  # 0.5 < 0.6, so the second candidate is kept; 0.8 >= 0.6 stops
    draw = CandidateSampler(None, 0.4, 1.0, torch.Generator().manual_seed(0)).draw(logits)
    assert set(draw.tolist()) == {1}
