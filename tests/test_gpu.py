"""GPU smoke tests: encoding, exact search and query generation on CUDA agree with the CPU / numpy results.

Skipped (with the reason) where there is no GPU; they run wherever there is one. The models are the tiny
offline ones the CPU tests build (tests/test_encode.py, tests/test_generate.py), so nothing is downloaded.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, T5ForConditionalGeneration

from helpers.run_if import RunIf
from xqg.core.languages import get_language, script_share
from xqg.data.corpus import open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.records import Passage
from xqg.generation.generate import generate_queries
from xqg.generation.sampling import DecodingConfig
from xqg.models.biencoder import BiEncoder, RetrieverSpec, load_retriever
from xqg.models.tiny_bert import TinyBertConfig, tiny_bert_backbone
from xqg.models.tiny_t5 import TinyT5Config, tiny_t5_checkpoint
from xqg.retrieval.encode import encode_texts
from xqg.retrieval.index import search

WORDS = "alpha beta gamma delta river mountain city king queen born founded capital music sea".split()
PROMPT = "Generate a {language} question for this passage: {title} {passage}"
QUESTIONS = {
    "ja": ["東京はどこですか", "この川の長さは何ですか", "誰が設立しましたか", "首都はどこですか"],
    "ru": ["Где находится Москва?", "Какая длина реки?", "Кто основал город?", "Какая столица страны?"],
}


def tiny_retriever(root: Path, texts: list[str]) -> tuple[BiEncoder, object]:
    """An untrained tiny BERT bi-encoder and its tokenizer (as tests/test_encode.py builds it)."""
    backbone = tiny_bert_backbone(
        root / "cache", TinyBertConfig(vocab_size=300, max_position=72, seed=0), lambda: texts, "gpu"
    )
    model = BiEncoder.from_backbone(
        backbone, RetrieverSpec(backbone=str(backbone), q_max_len=16, p_max_len=64)
    )
    _, tokenizer, _ = load_retriever(backbone)
    return model, tokenizer


def trained_tiny_t5(root: Path, device: str, steps: int = 300) -> Path:
    """The tiny T5 of tests/test_generate.py, fitted for a few hundred steps on ``device`` to write a Japanese
    or a Russian question as the prompt asks, so the script of what it generates can be checked."""
    passages = [
        f"Passage {i} about {WORDS[i % len(WORDS)]} and {WORDS[(3 * i) % len(WORDS)]}." for i in range(8)
    ]
    # every question of a language for every passage: only the language named in the prompt predicts the script
    pairs = [
        (PROMPT.format(language=get_language(lang).name, title=f"Title {i}", passage=p), q)
        for lang, qs in QUESTIONS.items()
        for i, p in enumerate(passages)
        for q in qs
    ]
    cfg = TinyT5Config(
        vocab_size=300,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
    )
    ckpt = tiny_t5_checkpoint(cfg, [t for pair in pairs for t in pair] * 3, root / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    model = T5ForConditionalGeneration.from_pretrained(ckpt).to(device).train()
    enc = tokenizer([p for p, _ in pairs], padding=True, return_tensors="pt").to(device)
    labels = tokenizer([q for _, q in pairs], padding=True, return_tensors="pt")["input_ids"].to(device)
    labels[labels == tokenizer.pad_token_id] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(steps):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = root / "trained"
    model.cpu().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@RunIf(min_gpus=1)
def test_encode_on_cuda_matches_cpu(tmp_path: Path) -> None:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))) for _ in range(100)]
    model, tokenizer = tiny_retriever(tmp_path, texts)
    cpu = encode_texts(model, tokenizer, texts, "passage", max_len=64, batch_size=16, device="cpu")
    gpu = encode_texts(model, tokenizer, texts, "passage", max_len=64, batch_size=16, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert gpu.shape == cpu.shape == (100, 64) and gpu.dtype == np.float32
    # CUDA encodes under bf16 autocast: close, not equal
    cosine = (gpu * cpu).sum(1) / (np.linalg.norm(gpu, axis=1) * np.linalg.norm(cpu, axis=1))
    assert cosine.min() > 0.99, cosine.min()
    np.testing.assert_allclose(gpu, cpu, rtol=0.1, atol=0.05 * float(np.abs(cpu).max()))


@RunIf(min_gpus=1, faiss_gpu=True)
def test_search_on_cuda_equals_brute_force() -> None:
    check_search("cuda")


def check_search(device: str) -> None:
    rng = np.random.default_rng(0)
    p = rng.standard_normal((5000, 32)).astype(np.float32)
    q = rng.standard_normal((50, 32)).astype(np.float32)
    k = 20
    res = search(
        q, p, k, ids=[f"d{i}" for i in range(len(p))], chunk_rows=1500, device=device, backend="faiss"
    )
    scores = q.astype(np.float64) @ p.astype(np.float64).T
    ref = np.argsort(-scores, axis=1, kind="stable")[:, : k + 1]
    ref_scores = np.take_along_axis(scores, ref, axis=1)
    np.testing.assert_allclose(res.scores, ref_scores[:, :k], rtol=1e-4, atol=1e-4)
    # same ids at every rank, except where two scores agree to float32 rounding (they may swap)
    firm = np.ones((len(q), k), dtype=bool)
    close = np.abs(np.diff(ref_scores, axis=1)) < 1e-4
    firm[:, 1:] &= ~close[:, : k - 1]
    firm &= ~close[:, :k]
    assert firm.mean() > 0.9
    np.testing.assert_array_equal(res.rows[firm], ref[:, :k][firm])
    assert res.docids[0, 0] == f"d{res.rows[0, 0]}"


@RunIf(min_gpus=1)
def test_generate_on_cuda_right_count_and_script(tmp_path: Path) -> None:
    check_generation(tmp_path, "cuda")


def check_generation(tmp_path: Path, device: str) -> None:
    ckpt = trained_tiny_t5(tmp_path, device)
    passages = [Passage(f"d{i}", f"Title {i}", f"Passage {i} about {WORDS[i]}.") for i in range(6)]
    write_dpr_tsv(tmp_path / "corpus.tsv", passages)
    corpus = open_corpus(tmp_path / "corpus.tsv", tmp_path / "cache")
    store = generate_queries(
        ckpt,
        corpus,
        ["ja", "ru"],
        3,
        tmp_path / "out",
        decoding=DecodingConfig(max_new_tokens=16, top_k=5),
        batch_size=4,
        shard_size=4,
        device=device,
        prompt_template=PROMPT,
    )
    assert store.complete and len(store) == 6 * 2 * 3
    for p in passages:
        by_lang = store.queries(p.docid)
        assert sorted(by_lang) == ["ja", "ru"] and all(len(v) == 3 for v in by_lang.values())
    for lang, other in (("ja", "ru"), ("ru", "ja")):
        texts = [q.text for q in store if q.lang == lang]
        own = sum(script_share(t, lang) for t in texts) / len(texts)
        assert own > 0.8 and own > 5 * sum(script_share(t, other) for t in texts) / len(texts), (lang, texts)
