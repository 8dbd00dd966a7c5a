"""Hub models pinned by revision: ``backbone.revision`` / ``generator.model.revision`` reach ``from_pretrained``
and the fingerprints; unpinned names keep the fingerprints they had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import BertConfig, BertModel

import xqg.generation.sampling as sampling
import xqg.models.biencoder as biencoder
from helpers.config import settings
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.models.hub import split_revision, with_revision
from xqg.tasks.train_generator import checkpoint_artifact, train_or_load
from xqg.tasks.train_retriever import resolve_backbone


def test_references(tmp_path: Path) -> None:
    assert with_revision("google/mt5-base", None) == "google/mt5-base"
    assert with_revision("google/mt5-base", "abc123") == "google/mt5-base@abc123"
    assert split_revision("google/mt5-base@abc123") == ("google/mt5-base", "abc123")
    assert split_revision("bert-base-multilingual-cased@v1") == ("bert-base-multilingual-cased", "v1")
    assert split_revision("google/mt5-base") == ("google/mt5-base", None)
    odd = tmp_path / "my@model"
    odd.mkdir()
    assert split_revision(odd) == (str(odd), None)  # a local folder is never split
    with pytest.raises(XqgInputError, match=r"field 'backbone\.revision': .* is a local folder"):
        with_revision(str(odd), "abc", "backbone.revision")
    with pytest.raises(XqgInputError, match="already names a revision"):
        with_revision("a/b@x", "y")


def test_backbone_revision_reaches_from_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, Any]] = []
    config = BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    )

    def fake_config(name: str, **kw: Any) -> BertConfig:
        seen.append(("config", name, kw.get("revision")))
        return config

    def fake_model(name: str, **kw: Any) -> BertModel:
        seen.append(("model", name, kw.get("revision")))
        return BertModel(config, add_pooling_layer=False)

    monkeypatch.setattr(biencoder.AutoConfig, "from_pretrained", fake_config)
    monkeypatch.setattr(biencoder.AutoModel, "from_pretrained", fake_model)
    biencoder.load_backbone("bert-base-multilingual-cased@3f076fdb1ab68d5b2880cb87a0886f315b8146f8")
    assert seen == [
        ("config", "bert-base-multilingual-cased", "3f076fdb1ab68d5b2880cb87a0886f315b8146f8"),
        ("model", "bert-base-multilingual-cased", "3f076fdb1ab68d5b2880cb87a0886f315b8146f8"),
    ]
    cfg = settings("train", "backbone=mbert", "backbone.revision=abc123")
    assert resolve_backbone(cfg, None) == (  # type: ignore[arg-type]
        "bert-base-multilingual-cased@abc123",
        "hub:bert-base-multilingual-cased@abc123",
    )
    plain = settings("train", "backbone=mbert")
    assert resolve_backbone(plain, None)[1] == "hub:bert-base-multilingual-cased"  # type: ignore[arg-type]


def test_generator_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = settings("evaluate", "generator=released_xqg", "generator.model.revision=deadbeef", cache=tmp_path)
    assert train_or_load(cfg) == "ielabgroup/xor-tydi-docTquery-mt5-base@deadbeef"
    # the revision is part of a trained checkpoint's fingerprint only when set
    base = settings("train", "generator=mt5_base", cache=tmp_path)
    pinned = settings("train", "generator=mt5_base", "generator.model.revision=abc", cache=tmp_path)
    inputs = {"train_pairs": "a", "val_pairs": "b"}
    plain_art = checkpoint_artifact(base.generator, inputs, 1, tmp_path, trainer={})
    pinned_art = checkpoint_artifact(pinned.generator, inputs, 1, tmp_path, trainer={})
    assert plain_art.fingerprint != pinned_art.fingerprint
    assert "revision" not in plain_art.spec["config"]["model"]
    seen: list[Any] = []

    def offline(name: str, **kw: Any) -> Any:
        seen.append((name, kw.get("revision")))
        raise OSError("offline")

    monkeypatch.setattr(sampling.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(MissingResourceError, match="cannot load generator"):
        sampling.QueryGenerator("ielabgroup/xor-tydi-docTquery-mt5-base@deadbeef", device="cpu")
    assert seen == [("ielabgroup/xor-tydi-docTquery-mt5-base", "deadbeef")]
