"""Small objects several test modules build the same way: an embedding store over given vectors and the tiny T5
generator checkpoint used by the generation tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from xqg.core.artifacts import ArtifactDir
from xqg.core.sharded import ShardPlan
from xqg.models.tiny_t5 import TinyT5Config, tiny_t5_checkpoint
from xqg.retrieval.embeddings import EmbeddingStore, build_store, memory_rows

GENERATOR_TEXTS = [
    "Generate a Japanese question for this passage:",
    "東京はどこですか",
    "Где находится Москва?",
] * 5


def embedding_store(
    tmp: Path, p: np.ndarray, shard_size: int, dtype: str = "fp32", chunk_size: int = 400
) -> EmbeddingStore:
    """An embedding store whose row ``i`` (docid ``doc<i>``) is ``p[i]``, in shards of ``shard_size`` rows."""
    ids = [f"doc{i}" for i in range(p.shape[0])]
    art = ArtifactDir.for_spec(tmp, "embeddings", config={"test": shard_size, "dtype": dtype})
    store = build_store(
        art,
        memory_rows(ids, ids),
        ShardPlan.make(p.shape[0], shard_size),
        lambda texts: p[[int(t[3:]) for t in texts]],
        dtype=dtype,
        chunk_size=chunk_size,
    )
    assert store is not None
    return store


def tiny_generator_checkpoint(folder: Path) -> Path:
    """A one-layer tiny T5 with a tokenizer fitted on Japanese and Russian text (seconds to build)."""
    cfg = TinyT5Config(
        vocab_size=300, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2
    )
    return tiny_t5_checkpoint(cfg, GENERATOR_TEXTS, folder)


def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one thread avoids oversubscription stalls (a fixture body)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
