"""No stale artifact is ever reused: every setting that changes an artifact's content changes its fingerprint.

One test per case of issue 17: the trainer settings behind a generator (and retriever) checkpoint, file identity
under same-size edits that keep the mtime (``touch -r``, ``cp -p``, ``os.utime``), and the encoder's chunking.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers.config import settings
from xqg.core import artifacts
from xqg.core.artifacts import file_fingerprint
from xqg.data.corpus import open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.records import Passage
from xqg.models.biencoder import BiEncoder, RetrieverSpec, load_retriever
from xqg.models.tiny_bert import TinyBertConfig, tiny_bert_backbone
from xqg.retrieval.embeddings import encode_corpus, encode_queries
from xqg.retrieval.query_sums import QuerySumsConfig
from xqg.retrieval.query_sums_build import ensure_query_sums
from xqg.tasks import train_generator as tg
from xqg.tasks.train_retriever import TrainData, retriever_artifact
from xqg.tasks.trainer_identity import AFFECTS_WEIGHTS, NO_EFFECT, weight_settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- (1) trainer settings -------------------------------------------------------------------------------------
def _generator_path(*overrides: str) -> Path:
    s = settings("train", "task=generator", "experiment=demo", "generator.train.max_steps=20", *overrides)
    inputs = {"train_pairs": "p", "val_pairs": "v"}
    return tg.checkpoint_artifact(
        s.generator, inputs, s.seed, s.paths.cache_dir, trainer=tg.trainer_identity(s)
    ).path


def test_generator_fingerprint_covers_the_trainer_settings_that_change_weights() -> None:
    base = _generator_path()
    # issue 17: one folder for two different trainings
    assert _generator_path("trainer.limit_train_batches=5") != base
    assert _generator_path("trainer.gradient_clip_val=1.0") != base
    assert _generator_path("trainer.precision=bf16-mixed") != base
    assert _generator_path("trainer.deterministic=true") != base
    # logging, progress bars, checkpoint frequency and Lightning defaults spelt out change nothing
    assert _generator_path("trainer.log_every_n_steps=1") == base
    assert _generator_path("trainer.enable_progress_bar=true") == base
    assert _generator_path("generator.train.checkpoint_every_n_steps=7") == base
    assert _generator_path("trainer.limit_train_batches=1.0") == base
    # the task owns the step budget: a trainer node's max_steps is overridden, so it does not count
    assert _generator_path("trainer.max_steps=5") == base


def test_retriever_fingerprint_uses_the_same_split() -> None:
    data = TrainData(Path("t"), Path("t"), None, "dev", None, {"train": "abc"})

    def path(*overrides: str) -> Path:
        return retriever_artifact(settings("train", "experiment=demo", *overrides), data, "tiny:x").path

    base = path()
    assert path("trainer.limit_train_batches=5") != base
    assert path("trainer.accumulate_grad_batches=2") != base
    assert path("trainer.devices=2", "trainer.strategy=ddp") != base  # world size: the effective batch
    assert path("trainer.log_every_n_steps=1") == base
    assert path("train.checkpoint_every_n_steps=20") == base


def test_every_key_is_decided_and_unknown_keys_count() -> None:
    assert not AFFECTS_WEIGHTS & NO_EFFECT
    node = {"_target_": "pytorch_lightning.Trainer", "devices": 1}
    assert weight_settings(node) == {"world_size": 1}
    assert weight_settings({**node, "devices": [0]}) == weight_settings(node)
    assert weight_settings({**node, "some_new_argument": 3})["some_new_argument"] == 3
    assert weight_settings({**node, "log_every_n_steps": 1}) == weight_settings(node)


# -- (2) file identity ----------------------------------------------------------------------------------------
@pytest.fixture
def memoizing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memoize hashes of files written just now (the test's files are all "racily clean" otherwise)."""
    monkeypatch.setattr(artifacts, "_RACY_S", 0.0)


def _memo() -> dict:
    return json.loads(artifacts._fingerprint_cache_path().read_text())


def _same_size_edit(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    with open(path, "r+b") as f:
        f.seek(data.index(old))
        f.write(new)


def test_same_size_edits_that_keep_the_mtime_are_hashed_again(tmp_path: Path, memoizing: None) -> None:
    f = tmp_path / "corpus.tsv"
    f.write_bytes(b"id\ttext\ttitle\n1\tthe cat sat\tT\n")
    first = file_fingerprint(f)
    assert any(v["sha256"] == first for v in _memo().values())  # remembered
    assert file_fingerprint(f) == first
    st = f.stat()

    _same_size_edit(f, b"cat", b"dog")  # in place, then the mtime put back
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_mtime_ns == st.st_mtime_ns and f.stat().st_size == st.st_size
    second = file_fingerprint(f)
    assert second != first

    ref = tmp_path / "ref"  # touch -r: copy the mtime of a reference file
    ref.write_text("x")
    os.utime(ref, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns))
    _same_size_edit(f, b"dog", b"cow")
    subprocess.run(["touch", "-r", str(ref), str(f)], check=True)
    assert f.stat().st_mtime_ns == st.st_mtime_ns
    third = file_fingerprint(f)
    assert third not in (first, second)

    other = tmp_path / "other.tsv"  # cp -p: another file's content, with its mtime, over this one
    other.write_bytes(f.read_bytes().replace(b"cow", b"emu"))
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    subprocess.run(["cp", "-p", str(other), str(f)], check=True)
    assert f.stat().st_mtime_ns == st.st_mtime_ns and f.stat().st_size == st.st_size
    assert file_fingerprint(f) not in (first, second, third)
    assert file_fingerprint(f) == file_fingerprint(f, use_cache=False)


def test_a_remembered_hash_is_checked_against_sampled_blocks(tmp_path: Path, memoizing: None) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(bytes(range(256)) * 2000)
    real = file_fingerprint(f)
    memo = _memo()
    key = next(k for k, v in memo.items() if v["sha256"] == real)
    memo[key] = {"sha256": "0" * 16, "sample": memo[key]["sample"]}
    artifacts._fingerprint_cache_path().write_text(json.dumps(memo))
    assert file_fingerprint(f) == "0" * 16  # an accelerator: a matching entry is used ...
    memo[key] = {"sha256": "0" * 16, "sample": "not the sample"}
    artifacts._fingerprint_cache_path().write_text(json.dumps(memo))
    assert file_fingerprint(f) == real  # ... a mismatching one never


def test_an_edited_corpus_is_never_served_from_its_old_store(tmp_path: Path, memoizing: None) -> None:
    tsv = tmp_path / "psgs.tsv"
    write_dpr_tsv(tsv, [Passage("d1", "Paris", "the capital is Paris"), Passage("d2", "Rome", "a city")])
    st = tsv.stat()
    assert open_corpus(tsv, tmp_path / "cache").get("d1").text == "the capital is Paris"
    _same_size_edit(tsv, b"is Paris\t", b"is Lyon!\t")
    os.utime(tsv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert open_corpus(tsv, tmp_path / "cache").get("d1").text == "the capital is Lyon!"


# -- (3) chunking ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("chunks")
    rng = random.Random(0)
    words = "alpha beta gamma delta river mountain city king queen born founded capital".split()
    passages = [
        Passage(f"d{i}", f"T{i}", " ".join(rng.choice(words) for _ in range(rng.randint(3, 40))))
        for i in range(60)
    ]
    write_dpr_tsv(root / "p.tsv", passages)
    texts = [p.full_text for p in passages]
    backbone = tiny_bert_backbone(
        root / "cache", TinyBertConfig(vocab_size=300, max_position=72), lambda: texts, "t"
    )
    model = BiEncoder.from_backbone(backbone, RetrieverSpec(backbone=str(backbone), p_max_len=64))
    ckpt = model.save_pretrained(root / "ckpt", load_retriever(backbone)[1])
    return {"root": root, "corpus": open_corpus(root / "p.tsv", root / "cache"), "ckpt": ckpt}


def test_chunk_and_batch_size_address_their_own_embedding_store(encoder: dict) -> None:
    out, corpus, ckpt = encoder["root"] / "emb", encoder["corpus"], encoder["ckpt"]
    kw = {"dtype": "fp16", "batch_size": 16, "shard_size": 40, "device": "cpu"}
    base = encode_corpus(ckpt, corpus, out, **kw)
    chunked = encode_corpus(ckpt, corpus, out, chunk_size=10, **kw)
    assert base is not None and chunked is not None and chunked.path != base.path
    smaller = encode_corpus(ckpt, corpus, out, **{**kw, "batch_size": 8})
    assert smaller is not None and smaller.path not in (base.path, chunked.path)
    # a chunk as large as the shard or larger groups rows exactly as the default does: the same store
    same = encode_corpus(ckpt, corpus, out, chunk_size=1000, **kw)
    assert same is not None and same.path == base.path
    assert json.loads((chunked.path / "spec.json").read_text())["config"]["batching"] == {
        "chunk_size": 10,
        "batch_size": 10,
    }
    q1 = encode_queries(ckpt, ["q1", "q2"], ["a b", "c"], out, batch_size=1, device="cpu")
    q2 = encode_queries(ckpt, ["q1", "q2"], ["a b", "c"], out, batch_size=2, device="cpu")
    assert q1.path != q2.path
    shutil.rmtree(out)


class _Encoder:
    """A query encoder stand-in: embeddings from the text, an identity for the fingerprint."""

    fingerprint = "enc"

    def encode(self, texts: list[str], kind: str, **kw: object) -> np.ndarray:
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)


class _Generated(list):
    fingerprint, n, languages, path = "gen", 1, ("ar",), "generated"


class _Passages:
    fingerprint, ids = "psg", ["d0", "d1"]


def test_query_batching_and_length_address_their_own_query_sums(tmp_path: Path) -> None:
    generated = _Generated([("d0", "ar", 0, "a b"), ("d1", "ar", 0, "c")])
    cfg = QuerySumsConfig(languages=("ar",), n_max=1)

    def sums(**kw: object) -> Path:
        return ensure_query_sums(generated, _Encoder(), _Passages(), tmp_path, cfg, **kw).path  # type: ignore[arg-type]

    base = sums(batch_size=256)
    assert sums(batch_size=256) == base
    assert sums(batch_size=2) != base  # texts embedded together differ
    assert sums(batch_size=256, max_len=8) != base  # truncation differs
