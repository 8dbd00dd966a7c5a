"""Generation batch sizes: from the GPU's total memory unless set (a deterministic function of the GPU and the
model, so seeded text and resumption stay reproducible), 64 on the CPU (the text and store fingerprint of
before), and bf16 weights only on a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import MT5Config

from helpers.tiny import one_torch_thread, tiny_generator_checkpoint
from xqg.data.corpus import open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.records import Passage
from xqg.generation.generate import generate_queries
from xqg.generation.sampling import (
    CPU_BATCH_SIZE,
    MAX_AUTO_BATCH,
    DecodingConfig,
    QueryGenerator,
    auto_batch_size,
    prompt_bytes,
    resolve_batch_size,
)
from xqg.generation.store import GeneratedStore

GIB = 2**30
MT5_BASE = MT5Config(vocab_size=250_112, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)


SETTINGS = {
    "languages": ["ja", "ru"],
    "n": 2,
    "decoding": DecodingConfig(max_new_tokens=6, top_k=50, temperature=20.0),  # samples that vary
    "shard_size": 3,
    "device": "cpu",
}


_one_thread = pytest.fixture(autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_generator_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("corpus")
    write_dpr_tsv(
        root / "corpus.tsv",
        [Passage(f"d{i}", f"Title {i}", f"Passage {i} on topic {i % 3}.") for i in range(7)],
    )
    return open_corpus(root / "corpus.tsv", root / "cache")


def records(store: GeneratedStore) -> list[tuple]:
    return [tuple(r) for r in store]


def test_prompt_bytes_match_the_measured_peak_at_mt5_base() -> None:
    per = prompt_bytes(MT5_BASE, n=5, source_len=128, new_tokens=32)
    assert 50e6 < per < 58e6  # measured on an H200: 54 GiB peak at 1,024 prompts, 1.2 GB of it weights


def test_auto_batch_size_follows_total_memory_in_powers_of_two() -> None:
    cpu = torch.device("cpu")
    assert auto_batch_size(MT5_BASE, cpu, 5, 128, 32) == CPU_BATCH_SIZE
    h100, h200 = (auto_batch_size(MT5_BASE, cpu, 5, 128, 32, memory=m * GIB) for m in (80, 141))
    assert (h100, h200) == (512, 1024)
    assert auto_batch_size(MT5_BASE, cpu, 5, 128, 32, memory=10**6) == 1
    tiny = MT5Config(vocab_size=300, d_model=32, d_kv=8, num_layers=1, num_heads=2)
    assert auto_batch_size(tiny, cpu, 5, 128, 32, memory=80 * GIB) == MAX_AUTO_BATCH


def test_unset_batch_size_on_the_cpu_is_the_old_default_same_store(
    generator: Path, corpus, tmp_path: Path
) -> None:
    assert resolve_batch_size(None, generator, "cpu", 2, None, 6) == CPU_BATCH_SIZE
    assert resolve_batch_size(7, generator, "cpu", 2, None, 6) == 7
    settings = {**SETTINGS, "batch_size": CPU_BATCH_SIZE}
    fixed = generate_queries(generator, corpus, out_root=tmp_path / "a", **settings)
    auto = generate_queries(generator, corpus, out_root=tmp_path / "b", **{**settings, "batch_size": None})
    assert fixed.path.name == auto.path.name  # same fingerprint
    assert records(fixed) == records(auto)


def test_weights_stay_fp32_on_the_cpu(generator: Path) -> None:
    gen = QueryGenerator(generator, device="cpu")
    assert next(gen.model.parameters()).dtype == torch.float32 and gen.autocast_dtype is None


def test_static_sampler_stores_carry_their_own_fingerprint(generator: Path, corpus, tmp_path: Path) -> None:
    settings = {**SETTINGS, "batch_size": 4}
    loop = generate_queries(generator, corpus, out_root=tmp_path, **settings)
    static = generate_queries(generator, corpus, out_root=tmp_path, sampler="static", **settings)
    assert loop.path != static.path and static.complete  # other text, never mixed into the loop's store
    assert len(records(static)) == len(records(loop)) == 7 * 2 * 2
    again = generate_queries(generator, corpus, out_root=tmp_path, sampler="static", **settings)
    assert again.path == static.path and records(again) == records(static)
