"""Delexicalised titles (xqg.data.delex): the title becomes a placeholder for training and generation, and the
generated text gets the passage's own title back; the option is part of the generator's and the store's
fingerprints and is on only in the tiny recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.config import settings
from helpers.tiny import one_torch_thread, tiny_generator_checkpoint
from xqg.data.corpus import open_corpus
from xqg.data.delex import (
    PLACEHOLDER,
    delexicalise_pair,
    delexicalise_passage,
    relexicalise,
)
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.records import GeneratorPair, Passage
from xqg.generation.generate import generate_queries, generation_artifact
from xqg.generation.sampling import DecodingConfig
from xqg.tasks.train_generator import checkpoint_artifact

_one_thread = pytest.fixture(autouse=True)(one_torch_thread)


def test_pair_and_passage_lose_only_their_own_title() -> None:
    pair = GeneratorPair(
        "7",
        "ja",
        "Kima Baro",
        "Kima Baro was born in Tolun. Kima Baro founded Baro Institute.",
        "Kima Baroは何年に生まれましたか？",
    )
    d = delexicalise_pair(pair)
    assert d.title == PLACEHOLDER
    assert d.passage == f"{PLACEHOLDER} was born in Tolun. {PLACEHOLDER} founded Baro Institute."
    assert d.question == f"{PLACEHOLDER}は何年に生まれましたか？"
    p = delexicalise_passage(Passage("7", pair.title, pair.passage))
    assert (p.docid, p.title, p.text) == ("7", PLACEHOLDER, d.passage)
    assert relexicalise(d.question, pair.title) == pair.question
    untitled = GeneratorPair("1", "ru", "", "text", "q")
    assert delexicalise_pair(untitled) == GeneratorPair(
        "1", "ru", PLACEHOLDER, "text", "q"
    )  # nothing to replace


def test_generated_text_gets_each_passages_title_back(tmp_path: Path, monkeypatch) -> None:
    """The prompts hold the placeholder (never the title) and every placeholder in the output becomes the
    passage's title; the store's fingerprint differs from the lexical one."""
    passages = [Passage(f"d{i}", f"Name{i}", f"Name{i} lies on a river.") for i in range(3)]
    write_dpr_tsv(tmp_path / "corpus.tsv", passages)
    corpus = open_corpus(tmp_path / "corpus.tsv", tmp_path / "cache")
    seen_prompts: list[str] = []

    def fake_generate(self, prompts, n, decoding, **kw):  # the model is not what is tested here
        seen_prompts.extend(prompts)
        return [[f"Where is {PLACEHOLDER}?"] * n for _ in prompts]

    monkeypatch.setattr("xqg.generation.sampling.QueryGenerator.generate", fake_generate)
    gen = tiny_generator_checkpoint(tmp_path / "gen")
    kw = {"languages": ["ja"], "n": 2, "decoding": DecodingConfig(max_new_tokens=4), "device": "cpu"}
    store = generate_queries(gen, corpus, out_root=tmp_path / "out", batch_size=4, delexicalise=True, **kw)
    assert seen_prompts and all("Name" not in p and PLACEHOLDER in p for p in seen_prompts)
    assert {(r[0], r[3]) for r in store} == {(f"d{i}", f"Where is Name{i}?") for i in range(3)}
    plain = generation_artifact(
        gen, corpus, ["ja"], 2, tmp_path / "out", batch_size=4, decoding=kw["decoding"]
    )
    assert store.path.name != plain.fingerprint


def test_only_the_tiny_recipe_delexicalises(tmp_path: Path) -> None:
    tiny = settings("evaluate", "experiment=demo", cache=tmp_path).generator
    real = settings("evaluate", "generator=mt5_base", cache=tmp_path).generator
    assert tiny.delexicalise is True and real.delexicalise is False
    inputs = {"train_pairs": "a", "val_pairs": "b"}
    on = checkpoint_artifact(tiny, inputs, 42, tmp_path, trainer={})
    tiny.delexicalise = False
    off = checkpoint_artifact(tiny, inputs, 42, tmp_path, trainer={})
    assert on.fingerprint != off.fingerprint
