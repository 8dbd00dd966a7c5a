"""``encode_texts`` with tokenisation in a worker thread: the same bits as the whole-list sort on the CPU, windows
keep input order, and a failure in the worker reaches the caller."""

from __future__ import annotations

import itertools
import random
import threading

import numpy as np
import pytest
import torch

from xqg.models.biencoder import BiEncoder, RetrieverSpec
from xqg.models.tiny_bert import TinyBertConfig, build_tiny_bert, train_wordpiece
from xqg.models.tiny_t5 import train_tokenizer
from xqg.retrieval import encode
from xqg.retrieval.encode import encode_texts, pad_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WORDS = "alpha beta gamma delta river mountain city king queen born founded capital music sea".split()


@pytest.fixture(scope="module")
def setup() -> tuple[BiEncoder, object, list[str]]:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 70))) for _ in range(300)]
    tok = train_wordpiece(texts, 200)
    bert = build_tiny_bert(TinyBertConfig(vocab_size=300, max_position=72), len(tok))
    return BiEncoder(bert, None, RetrieverSpec()).eval(), tok, texts


def _sorted_batches_reference(model: BiEncoder, tok: object, texts: list[str], bs: int) -> np.ndarray:
    """The pre-overlap algorithm, written out: tokenise all, sort by length, pad per batch, encode."""
    ids = tok(texts, truncation=True, max_length=64)["input_ids"]  # type: ignore[operator]
    order = np.argsort(-np.array([len(t) for t in ids]), kind="stable")
    out = np.empty((len(texts), 64), dtype=np.float32)
    with torch.inference_mode():
        for a in range(0, len(order), bs):
            idx = order[a : a + bs]
            out[idx] = model.encode_passage(*pad_batch([ids[i] for i in idx], tok.pad_token_id)).numpy()  # type: ignore[attr-defined]
    return out


def test_cpu_output_is_bitwise_the_whole_list_sort(setup: tuple) -> None:
    model, tok, texts = setup
    for bs in (1, 16, 1000):
        got = encode_texts(model, tok, texts, "passage", max_len=64, batch_size=bs, device="cpu")
        np.testing.assert_array_equal(got, _sorted_batches_reference(model, tok, texts, bs))


def test_windows_keep_input_order(setup: tuple) -> None:
    model, tok, texts = setup
    whole = encode_texts(model, tok, texts, "passage", max_len=64, batch_size=8, device="cpu")
    for window in (1, 37, 100):
        got = encode_texts(
            model, tok, texts, "passage", max_len=64, batch_size=8, device="cpu", window=window
        )
        np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)  # other batches, other padding widths


def test_a_worker_failure_reaches_the_caller_and_the_worker_ends(setup: tuple) -> None:
    model, _tok, texts = setup

    class Broken:
        pad_token_id = 0

        def __call__(self, *a: object, **k: object) -> dict:
            raise RuntimeError("tokenizer broke")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        encode_texts(model, Broken(), texts, "passage", max_len=64, batch_size=8, device="cpu")
    assert threading.active_count() == before


def test_tokenisation_workers_give_the_same_bits(setup: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows cut into pieces tokenised by several threads (each with its own tokenizer copy): same output."""
    model, tok, texts = setup
    monkeypatch.setattr(encode, "TOKENIZE_PIECE", 7)
    reference = _sorted_batches_reference(model, tok, texts, 16)
    for workers in (1, 2, 4):
        got = encode_texts(
            model, tok, texts, "passage", max_len=64, batch_size=16, device="cpu", workers=workers
        )
        np.testing.assert_array_equal(got, reference)
    one = encode_texts(
        model, tok, texts, "passage", max_len=64, batch_size=8, device="cpu", window=37, workers=1
    )
    three = encode_texts(
        model, tok, texts, "passage", max_len=64, batch_size=8, device="cpu", window=37, workers=3
    )
    np.testing.assert_array_equal(three, one)
    with pytest.raises(ValueError, match="workers"):
        encode_texts(model, tok, texts, "passage", max_len=64, device="cpu", workers=0)


def test_direct_rust_path_gives_the_tokenizer_ids() -> None:
    """The fast path (the Rust tokenizer's ``encode_batch``, truncating) is taken and gives the call's ids, for
    a WordPiece and a T5 tokenizer, with multilingual text, truncation and ``truncation_side='left'``."""
    texts = [
        "Helsinki on Suomen pääkaupunki ja suurin kaupunki.",
        "東京は日本の首都です。",
        "Москва — столица России, крупнейший город страны.",
        "King Charles was born in 1948 at Buckingham Palace " * 4,
        "",
        "  spaces   and\ttabs\nnewlines ",
    ] * 20
    for tok in (train_wordpiece(texts, 120), train_tokenizer(texts, 150)):
        for side in ("right", "left"):
            tok.truncation_side = side
            encode._DIRECT.pop(tok, None)
            for max_len in (6, 64):
                assert encode._direct_backend(tok, max_len, texts) is not None
                want = tok(texts, truncation=True, max_length=max_len)["input_ids"]
                assert encode._Tokenizers(tok, 1).ids(texts, max_len) == want


def test_pad_batch_is_the_tokenizers_right_padding(setup: tuple) -> None:
    _model, tok, texts = setup
    ids = tok(texts[:40], truncation=True, max_length=64)["input_ids"]
    for group in (ids[:1], ids[:7], ids):
        want = tok.pad({"input_ids": group}, padding="longest", return_tensors="pt")
        got_ids, got_mask = pad_batch(group, tok.pad_token_id)
        assert torch.equal(got_ids, want["input_ids"].long())
        assert torch.equal(got_mask, want["attention_mask"].long())


def test_window_bounds_ramp_up_and_cover_every_text_once() -> None:
    assert encode.window_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert encode.window_bounds(40, 16, first=2) == [(0, 2), (2, 6), (6, 14), (14, 30), (30, 40)]
    assert encode.window_bounds(3, 16, first=8) == [(0, 3)]
    assert encode.window_bounds(0, 16, first=2) == []
    bounds = encode.window_bounds(100_003, 16_384, first=2048)
    assert bounds[0] == (0, 2048) and bounds[-1][1] == 100_003
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert max(b - a for a, b in bounds) == 16_384


def test_growing_windows_keep_input_order(setup: tuple) -> None:
    """The GPU's schedule (a small first window, doubling) run on the CPU: every row lands in its place."""
    model, tok, texts = setup
    whole = encode_texts(model, tok, texts, "passage", max_len=64, batch_size=8, device="cpu")
    got = encode_texts(
        model, tok, texts, "passage", max_len=64, batch_size=8, device="cpu", window=64, first_window=5
    )
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)
    batches = list(encode.prepare_batches(tok, texts, 64, 8, 64, False, 1, 5))
    assert sorted(w for w in {b.window for b in batches}) == encode.window_bounds(len(texts), 64, 5)
    rows = np.concatenate([b.rows for b in batches])
    assert sorted(rows.tolist()) == list(range(len(texts)))
    assert all(b.window[0] <= r < b.window[1] for b in batches for r in b.rows)
