"""The static decoder (:mod:`xqg.generation.static_decode`): the same network as transformers' T5/mT5 (logits
match the model's own forward, greedy text matches the decoding loop's, EOS and pad included), inverse-CDF draws
with the candidate sampler's top-k/top-p semantics, seeded, and only where asked or on a GPU (CPU text unchanged).
CUDA graphs themselves run only on a GPU (``benchmarks/gpu.py`` measures them)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import MT5Config, MT5ForConditionalGeneration, T5Config, T5ForConditionalGeneration

from helpers.tiny import one_torch_thread
from xqg.core.errors import XqgInputError
from xqg.generation import static_decode
from xqg.generation.sampling import (
    DecodingConfig,
    QueryGenerator,
    auto_batch_size,
    prompt_bytes,
    resolve_sampler,
    sampler_fingerprint,
)
from xqg.generation.static_decode import (
    SAMPLER_VERSION,
    StaticT5Decoder,
    _Shape,
    chunked_topk,
    static_prompt_bytes,
    supports,
)
from xqg.models.tiny_t5 import train_tokenizer

_one_thread = pytest.fixture(autouse=True)(one_torch_thread)
PROMPTS = [f"word{i} " * (1 + i % 9) + "end" for i in range(13)]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return train_tokenizer([f"word{i} text{i % 7} more words end" for i in range(200)], vocab_size=300)


def _model(tok: Any, mt5: bool) -> Any:
    torch.manual_seed(0)
    common = dict(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                  decoder_start_token_id=tok.pad_token_id)  # fmt: skip
    if mt5:  # gated GELU, untied head, unscaled decoder output
        return MT5ForConditionalGeneration(
            MT5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False, **common)
        ).eval()
    return T5ForConditionalGeneration(T5Config(**common)).eval()  # ReLU, decoder output scaled


@pytest.mark.parametrize("mt5", [False, True])
def test_logits_match_the_models_forward_and_greedy_text_the_loops(tokenizer: Any, mt5: bool) -> None:
    model = _model(tokenizer, mt5)
    loop = QueryGenerator.from_model(model, tokenizer, device="cpu", sampler="loop")
    static = QueryGenerator.from_model(model, tokenizer, device="cpu", sampler="static")
    assert loop.static is None and static.static is not None and not static.static.graphs
    assert static.static.check(0) < 1e-5
    assert (static.static.scale is None) == mt5
    greedy = DecodingConfig(top_k=1, max_new_tokens=8)
    want = loop.generate(PROMPTS, 3, greedy, batch_size=4, seed=(1,))
    assert static.generate(PROMPTS, 3, greedy, batch_size=4, seed=(1,)) == want


def test_rows_that_draw_eos_write_pad_afterwards_like_the_loop(tokenizer: Any) -> None:
    model = _model(tokenizer, True)
    loop = QueryGenerator.from_model(model, tokenizer, device="cpu", sampler="loop")
    static = QueryGenerator.from_model(model, tokenizer, device="cpu", sampler="static")
    greedy = DecodingConfig(top_k=1, max_new_tokens=8)
    enc = tokenizer(PROMPTS[:6], padding=True, return_tensors="pt")
    with torch.inference_mode():
        ids = static._sample_static(enc["input_ids"], enc["attention_mask"], 2, greedy, seed=0)
        model.generation_config.eos_token_id = int(ids[0, 2])  # a token greedy decoding draws: now EOS
        a = loop._sample(enc["input_ids"], enc["attention_mask"], 2, greedy, seed=0)
        b = static._sample_static(enc["input_ids"], enc["attention_mask"], 2, greedy, seed=0)
    assert torch.equal(a, b)
    assert (b[0, 3:] == tokenizer.pad_token_id).all()


def test_draws_follow_top_k_top_p_and_the_seed(tokenizer: Any) -> None:
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0, -5.0]]).log_softmax(-1).repeat(4, 1)
    u = torch.tensor([[0.1], [0.6], [0.8], [0.999]])
    probs = logits[0].softmax(-1)  # 0.64, 0.24, 0.09, ... over candidates 1, 2, 3
    assert probs[1] > 0.6
    shape = _Shape(1, 4, 1, 1, 3, None, 1.0)
    assert StaticT5Decoder._draw(logits, u, shape).tolist() == [1, 1, 2, 3]
    nucleus = _Shape(1, 4, 1, 1, 3, 0.5, 1.0)  # the smallest prefix with mass >= 0.5: candidate 1 alone
    assert StaticT5Decoder._draw(logits, u, nucleus).tolist() == [1, 1, 1, 1]
    static = QueryGenerator.from_model(_model(tokenizer, True), tokenizer, device="cpu", sampler="static")
    sample = DecodingConfig(top_k=10, max_new_tokens=6, temperature=5.0)
    first = static.generate(PROMPTS, 2, sample, batch_size=4, seed=(3,))
    assert static.generate(PROMPTS, 2, sample, batch_size=4, seed=(3,)) == first
    assert static.generate(PROMPTS, 2, sample, batch_size=4, seed=(4,)) != first


def test_sampler_choice_and_fingerprint(tokenizer: Any) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_sampler("auto", cpu, "auto") == "loop"  # the CPU's text stays what it was
    assert resolve_sampler("auto", gpu, "fp32") == "static"
    assert resolve_sampler("static", cpu, "auto") == "static"
    with pytest.raises(XqgInputError):
        resolve_sampler("fast", cpu, "auto")
    assert sampler_fingerprint("auto", "cpu", "auto") is None
    assert sampler_fingerprint("static", "cpu", "auto") == SAMPLER_VERSION
    bart_like = type("M", (), {"config": type("C", (), {"model_type": "bart"})()})()
    assert not supports(bart_like)
    assert QueryGenerator.from_model(_model(tokenizer, True), tokenizer, device="cpu").static is None


def test_static_memory_estimate_allows_larger_batches() -> None:
    mt5_base = MT5Config(vocab_size=250_112, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)
    per = static_prompt_bytes(mt5_base, 5, 128, 32)
    assert 15e6 < per < prompt_bytes(mt5_base, 5, 128, 32) / 2
    cpu = torch.device("cpu")
    sizes = [auto_batch_size(mt5_base, cpu, 5, 128, 32, memory=m * 2**30, static=True) for m in (80, 141)]
    assert sizes == [2048, 2048]


@pytest.mark.parametrize("width", [5, 999, 4096, 10_007])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_topk_gives_the_top_k_values(width: int, dtype: torch.dtype) -> None:
    """The same values as ``torch.topk`` (a whole slice, a tail past the last slice, fewer slices than k, ties)."""
    g = torch.Generator().manual_seed(width)
    for logits in (torch.randn(7, width, generator=g), torch.randint(0, 4, (7, width), generator=g).float()):
        logits = logits.to(dtype)
        want = logits.topk(min(10, width), dim=-1).values
        values, index = chunked_topk(logits, 10, chunk=64)
        assert torch.equal(values, want)
        assert torch.equal(logits.gather(-1, index), values)  # the indices point at those values
        assert all(len(set(row)) == len(row) for row in index.tolist())  # each position once


@pytest.mark.parametrize("fused", [False, True])
def test_attention_kernels_and_topk_paths_agree(
    tokenizer: Any, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fused (``scaled_dot_product_attention``) and written-out attention compute the model's logits, and the
    chunked top-k draws what ``torch.topk`` draws (a vocabulary wide enough for several chunks)."""
    monkeypatch.setattr(static_decode, "FUSED_ATTENTION", fused)
    monkeypatch.setattr(static_decode, "TOPK_CHUNK", 16)  # 300 tokens: 18 slices and a tail
    model = _model(tokenizer, True)
    sample = DecodingConfig(top_k=10, max_new_tokens=6)
    draws = []
    for topk_from in (None, 0):
        monkeypatch.setattr(static_decode, "CHUNKED_TOPK_FROM", topk_from)
        static = QueryGenerator.from_model(model, tokenizer, device="cpu", sampler="static")
        assert static.static is not None and static.static.check(0) < 1e-5
        draws.append(static.generate(PROMPTS, 2, sample, batch_size=4, seed=(5,)))
    assert draws[0] == draws[1]
