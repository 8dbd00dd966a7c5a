"""load_data: every data config composes and becomes files; real data fails offline with a clear message."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from helpers.config import settings
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.data.bundle import DataBundle, derive_generator_pairs, guess_language, load_data
from xqg.data.formats.pairs import read_generator_pairs
from xqg.data.formats.tevatron import write_tevatron
from xqg.data.formats.xor import read_xor_questions
from xqg.data.records import Passage, TrainExample
from xqg.tasks.schema import TrainSettings


def _cfg(tmp_path: Path, shared: Path, *overrides: str) -> TrainSettings:
    return settings("train", f"paths.shared_data_dir={shared}", *overrides, cache=tmp_path / "cache")


def _bundle(cfg: TrainSettings) -> DataBundle:
    return cfg.data.bundle(cfg.paths.cache_dir)


def test_synthetic_is_the_default(tmp_path: Path, shared_data: Path) -> None:
    cfg = _cfg(tmp_path, shared_data, "data.world.n_entities=60")
    assert cfg.data.name == "synthetic"
    b = _bundle(cfg)
    assert b.languages == ("ar", "bn", "fi", "ja", "ko", "ru", "te")
    for attr in (
        "corpus_path",
        "train_path",
        "val_path",
        "dev_train_path",
        "english_train_path",
        "english_dev_train_path",
        "dev_questions_path",
        "test_questions_path",
    ):
        assert getattr(b, attr).is_file(), attr
    assert b.dev_train_path == b.val_path
    assert set(b.generator_pairs) == {"train", "dev"} and b.generator_pairs["train"].is_file()
    assert read_xor_questions(b.dev_questions_path)
    again = _bundle(_cfg(tmp_path, shared_data, "data.world.n_entities=60"))
    assert again.train_path == b.train_path  # cached world reused


def test_evaluate_config_has_data_too(tmp_path: Path, shared_data: Path) -> None:
    cfg = settings("evaluate", "data=xquad_r", f"paths.shared_data_dir={shared_data}")
    assert cfg.data.kind == "xquad_r" and cfg.data.source["path"] == f"{shared_data}/xquad-r"
    assert cfg.data.source["url"].startswith(
        "https://raw.githubusercontent.com/google-research-datasets/lareqa/"
    )


def test_xor_tydi_and_nq_offline_messages(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = _bundle(_cfg(tmp_path, shared_data, "data=xor_tydi"))
    assert len(read_xor_questions(b.dev_questions_path)) == 2110  # the shared dev file, no download
    assert b.english_train_path is None and b.test_questions_path is None
    with pytest.raises(
        MissingResourceError,
        match=r"train file is not available offline .*: download "
        r"https://huggingface\.co/datasets/Tevatron/xor-tydi/resolve/92d883feda5ffff150d71ce3a94216a5afd8f179/"
        r"train/xor-t2e-100w\.jsonl\.gz and put it at .*xor-t2e-100w\.jsonl\.gz \(or \S+/sources/hf/dataset/"
        r"Tevatron/xor-tydi/92d883feda5ffff150d71ce3a94216a5afd8f179/train/xor-t2e-100w\.jsonl\.gz\)",
    ):
        _ = b.train_path
    with pytest.raises(
        MissingResourceError,
        match=r"corpus file \(the XOR-Retrieve English Wikipedia.*: download https://nlp\.cs\.washington\.edu/"
        r"xorqa/XORQA_site/data/models/enwiki_20190201_w100\.tsv and put it at ",
    ):
        _ = b.corpus_path
    nq = _bundle(_cfg(tmp_path, shared_data, "data=nq"))
    assert nq.name == "nq" and nq.dev_questions_path == b.dev_questions_path
    with pytest.raises(
        MissingResourceError,
        match=r"Tevatron/wikipedia-nq/resolve/a74adc28b51157e1db1a75aff1fb056651df69b8/nq-train\.jsonl\.gz",
    ):
        _ = nq.english_train_path
    # a file placed at the local path is used without any download
    local = tmp_path / "nq-train.jsonl.gz"
    write_tevatron(local, [TrainExample("1", "who?", ("a",), (Passage("1", "t", "a"),), ())])
    nq2 = _bundle(_cfg(tmp_path, shared_data, "data=nq", f"data.files.english_train.path={local}"))
    assert nq2.english_train_path == local


def test_files_kind_derives_generator_pairs(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl.gz"
    write_tevatron(
        train,
        [
            TrainExample("q1", "東京の人口は？", (), (Passage("1", "Tokyo", "Tokyo has many people."),), ()),
            TrainExample("q2", "Сколько?", (), (Passage("2", "T", "text"),), ()),
            TrainExample("q3", "Where is it?", (), (Passage("3", "T", "text"),), ()),
        ],
    )
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "q2", "question": "Сколько?", "answers": ["x"], "lang": " ar"}\n')
    data = {
        "name": "mine",
        "kind": "files",
        "languages": ["ja", "ar", "fi"],
        "files": {"train": str(train), "train_questions": str(questions)},
        "generator_pairs": {"derive": True, "from": "train", "languages_from": "train_questions"},
    }
    b = load_data(data, tmp_path / "cache")
    pairs = read_generator_pairs(b.generator_pairs)
    # q1 by script (Japanese), q2 from the raw questions (" ar"), q3 Latin -> Finnish among ja/ar/fi
    assert [(p.docid, p.lang) for p in pairs] == [("1", "ja"), ("2", "ar"), ("3", "fi")]
    assert (
        derive_generator_pairs(train, questions, tmp_path / "cache", ["ja", "ar", "fi"]) == b.generator_pairs
    )
    assert guess_language("서울은 어디?") == "ko"
    with pytest.raises(XqgInputError, match=r"field 'data\.files': unknown data file key"):
        load_data({"kind": "files", "files": {"trian": "x"}}, tmp_path)
    with pytest.raises(XqgInputError, match=r"field 'data\.kind'"):
        load_data({"kind": "nope"}, tmp_path)


def test_xquad_r_falls_back_to_the_lareqa_files(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _cfg(tmp_path, tmp_path / "no-shared", "data=xquad_r", "data.languages=[de]")
    sha = "5405d2a77e83d5ccb47623a3f9e5604c3f103193"
    url = f"https://raw.githubusercontent.com/google-research-datasets/lareqa/{sha}/xquad-r/"
    folder = tmp_path / "cache" / "sources" / "url" / "raw.githubusercontent.com"
    folder = folder / "google-research-datasets" / "lareqa" / sha / "xquad-r"
    with pytest.raises(
        MissingResourceError,
        match=re.escape(f"download {url}en.json and put it at {folder / 'en.json'}"),
    ):
        _bundle(cfg)
    folder.mkdir(parents=True)
    for lang in ("en", "de"):  # as if downloaded (or copied there by hand)
        shutil.copy(shared_data / "xquad-r" / f"{lang}.json", folder / f"{lang}.json")
    b = _bundle(cfg)
    assert b.corpus_path.is_file() and b.info["counts"]["paragraphs"] == 240
