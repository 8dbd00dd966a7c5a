"""Encoding: length-sorted batches keep input order, the sharded embedding store, resume, fingerprints."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from xqg.core.errors import XqgInputError
from xqg.data.corpus import open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.records import Passage
from xqg.models.biencoder import BiEncoder, RetrieverSpec, load_retriever
from xqg.models.tiny_bert import TinyBertConfig, tiny_bert_backbone
from xqg.retrieval.embeddings import EmbeddingStore, encode_corpus, encode_queries
from xqg.retrieval.encode import Retriever, encode_texts

WORDS = "alpha beta gamma delta river mountain city king queen born founded capital music river sea".split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _passages(n: int, seed: int = 0) -> list[Passage]:
    rng = random.Random(seed)
    return [
        Passage(f"d{i}", f"Title {i}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))))
        for i in range(n)
    ]


def make_tiny_checkpoint(root: Path, texts: list[str], seed: int = 0, name: str = "ckpt") -> Path:
    """An untrained tiny BiEncoder saved like a trained one (weights, tokenizer, xqg_retriever.json)."""
    backbone = tiny_bert_backbone(
        root / "cache", TinyBertConfig(vocab_size=300, max_position=72, seed=seed), lambda: texts, f"t{seed}"
    )
    model = BiEncoder.from_backbone(
        backbone, RetrieverSpec(backbone=str(backbone), q_max_len=16, p_max_len=64)
    )
    _, tokenizer, _ = load_retriever(backbone)
    return model.save_pretrained(root / name, tokenizer)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("encode_world")
    passages = _passages(230)
    tsv = root / "psgs.tsv"
    write_dpr_tsv(tsv, passages)
    corpus = open_corpus(tsv, root / "cache")
    ckpt = make_tiny_checkpoint(root, [p.full_text for p in passages])
    return {"root": root, "passages": passages, "corpus": corpus, "ckpt": ckpt}


class _WidthSpy:
    """Wraps a BiEncoder and records the padded width of every batch it sees."""

    def __init__(self, model: BiEncoder) -> None:
        self.model = model
        self.widths: list[int] = []
        self.training = False

    def parameters(self) -> object:
        return self.model.parameters()

    def to(self, device: torch.device) -> _WidthSpy:
        self.model.to(device)
        return self

    def eval(self) -> None:
        self.model.eval()

    def train(self, mode: bool) -> None:
        self.model.train(mode)

    def encode_passage(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.widths.append(ids.shape[1])
        return self.model.encode_passage(ids, mask)


def test_encode_texts_sorted_batches_keep_order_and_match_one_by_one(world: dict) -> None:
    model, tok, _ = load_retriever(world["ckpt"])
    texts = [p.full_text for p in world["passages"][:40]]
    spy = _WidthSpy(model)
    got = encode_texts(spy, tok, texts, "passage", max_len=64, batch_size=8, device="cpu")
    lengths = [len(t) for t in tok(texts, truncation=True, max_length=64)["input_ids"]]
    # each batch is padded to its own longest text, longest batches first, never to max_len for short ones
    assert spy.widths == sorted(spy.widths, reverse=True)
    assert spy.widths[0] == max(lengths) and spy.widths[-1] < 64
    assert sum(spy.widths) < 64 * len(spy.widths)
    model.eval()
    with torch.inference_mode():
        for i in (0, 7, 23, 39):
            enc = tok([texts[i]], truncation=True, max_length=64, return_tensors="pt")
            one = model.encode_passage(enc["input_ids"], enc["attention_mask"]).numpy()[0]
            np.testing.assert_allclose(got[i], one, rtol=1e-4, atol=1e-5)
    assert model.training is False


def test_encode_corpus_store_round_trip_and_shards(world: dict) -> None:
    out = world["root"] / "emb_a"
    store = encode_corpus(
        world["ckpt"], world["corpus"], out, dtype="fp32", batch_size=16, shard_size=64, device="cpu"
    )
    assert store is not None and len(store) == 230 and store.dim == 64
    assert store.shards == [(0, 64), (64, 128), (128, 192), (192, 230)]
    assert list(store.ids) == [p.docid for p in world["passages"]]
    ret = Retriever(str(world["ckpt"]), torch.device("cpu"))
    ref = ret.encode([p.full_text for p in world["passages"]], "passage", batch_size=50)
    np.testing.assert_allclose(store.load(), ref, rtol=1e-4, atol=1e-5)
    chunks = list(store.iter_chunks(50))
    assert [c[0] for c in chunks] == [0, 50, 64, 114, 128, 178, 192]  # blocks never span shards, in row order
    assert sum(len(c[1]) for c in chunks) == 230 and all(c[2].dtype == np.float32 for c in chunks)
    reopened = EmbeddingStore.open(store.path)
    np.testing.assert_array_equal(reopened.load(), store.load())
    assert reopened.manifest.counts == {"rows": 230, "shards": 4}
    assert not any(p.name.endswith(".parts") for p in (store.path / "shards").iterdir())
    assert not list(store.path.rglob("*.pkl")) and not list(store.path.rglob(".*.tmp"))


def test_interrupted_encode_resumes_only_missing_shards(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    out = world["root"] / "emb_resume"
    calls: list[int] = []
    real = Retriever.encode

    def failing(self: Retriever, texts: list[str], kind: str, **kw: object) -> np.ndarray:
        if len(calls) == 3:  # shards 0 and 1 finished (2 sub-chunks in shard 0, 1 in shard 1), then killed
            raise KeyboardInterrupt
        calls.append(len(texts))
        return real(self, texts, kind, **kw)

    monkeypatch.setattr(Retriever, "encode", failing)
    kwargs = {"dtype": "fp16", "batch_size": 16, "shard_size": 100, "chunk_size": 60, "device": "cpu"}
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(world["ckpt"], world["corpus"], out, **kwargs)
    assert calls == [60, 40, 60]
    (art,) = [p for p in (out / "embeddings").iterdir() if p.is_dir()]  # and the killed build's <fp>.lock
    assert not (art / "manifest.json").exists()
    assert (art / "shards" / "00000.emb.npy").exists() and not (art / "shards" / "00001.emb.npy").exists()
    calls.clear()
    monkeypatch.setattr(
        Retriever, "encode", lambda self, t, k, **kw: (calls.append(len(t)), real(self, t, k, **kw))[1]
    )
    store = encode_corpus(world["ckpt"], world["corpus"], out, **kwargs)
    assert calls == [40, 30]  # shard 1's second sub-chunk and shard 2; nothing done twice
    assert store is not None and store.path == art and store.dtype == "fp16"
    full = encode_corpus(world["ckpt"], world["corpus"], world["root"] / "emb_full", **kwargs)
    assert full is not None
    np.testing.assert_array_equal(store.load(), full.load())
    assert list(store.ids) == list(full.ids)


def test_shard_index_encodes_one_share_and_a_final_call_completes(world: dict) -> None:
    out = world["root"] / "emb_workers"
    kwargs = {"dtype": "fp16", "batch_size": 32, "num_shards": 3, "device": "cpu"}
    assert encode_corpus(world["ckpt"], world["corpus"], out, shard_index=2, **kwargs) is None
    assert encode_corpus(world["ckpt"], world["corpus"], out, shard_index=0, **kwargs) is None
    store = encode_corpus(world["ckpt"], world["corpus"], out, shard_index=1, **kwargs)
    assert store is not None and store.shards == [(0, 77), (77, 154), (154, 230)]
    with pytest.raises(XqgInputError, match="checkpoint folder not found"):
        encode_corpus(world["root"] / "no_such_ckpt", world["corpus"], out, **kwargs)
    with pytest.raises(XqgInputError, match="shard_index"):
        encode_corpus(world["ckpt"], world["corpus"], world["root"] / "x", shard_index=3, **kwargs)


def test_fingerprint_rebuilds_on_what_matters_and_reuses_otherwise(world: dict, tmp_path: Path) -> None:
    out = world["root"] / "emb_fp"
    base = {"dtype": "fp16", "batch_size": 32, "shard_size": 1000, "device": "cpu"}
    a = encode_corpus(world["ckpt"], world["corpus"], out, **base)
    b = encode_corpus(world["ckpt"], world["corpus"], out, **{**base, "batch_size": 7, "chunk_size": 50})
    # batching changes the embeddings' last bits (xqg.retrieval.embeddings.batching): another store
    assert a is not None and b is not None and a.path != b.path
    same = encode_corpus(
        world["ckpt"], world["corpus"], out, max_len=64, **base
    )  # = the checkpoint's p_max_len
    assert same is not None and same.path == a.path
    c = encode_corpus(world["ckpt"], world["corpus"], out, **{**base, "dtype": "fp32"})
    d = encode_corpus(world["ckpt"], world["corpus"], out, max_len=24, **base)
    other = shutil.copytree(world["ckpt"], tmp_path / "ckpt2")
    model, tok, _ = load_retriever(other)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(other, tok)
    e = encode_corpus(other, world["corpus"], out, **base)
    paths = {s.path for s in (a, c, d, e) if s is not None}
    assert len(paths) == 4
    assert not np.allclose(a.load(), e.load())
    # a store is never reused for another corpus
    tsv2 = tmp_path / "psgs2.tsv"
    write_dpr_tsv(tsv2, _passages(230, seed=1))
    f = encode_corpus(world["ckpt"], open_corpus(tsv2, tmp_path / "cache"), out, **base)
    assert f is not None and f.path not in paths


def test_query_embeddings_are_cached(world: dict) -> None:
    out = world["root"] / "qemb"
    ret = Retriever(str(world["ckpt"]), torch.device("cpu"))
    qids, texts = ["q1", "q2", "q3"], ["alpha river", "king born city capital", "sea"]
    s1 = encode_queries(ret, qids, texts, out, batch_size=2)
    assert list(s1.ids) == qids and s1.load().shape == (3, 64)
    np.testing.assert_allclose(s1.load(), ret.encode(texts, "query"), rtol=1e-4, atol=1e-5)
    fresh = Retriever(str(world["ckpt"]), torch.device("cpu"))
    s2 = encode_queries(fresh, qids, texts, out, batch_size=2)  # the batch size is part of the fingerprint
    assert s2.path == s1.path and fresh._loaded is None  # cache hit: the model was never loaded
    s3 = encode_queries(fresh, qids, [*texts[:2], "sea king"], out, batch_size=2)
    assert s3.path != s1.path
