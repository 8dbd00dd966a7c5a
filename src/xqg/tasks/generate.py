"""The generated queries ``evaluate.py`` augments with: the released queries (``generator.queries_source``), or a
generator (trained or loaded by :func:`xqg.tasks.train_generator.train_or_load`) run over the corpus; made when
missing, reused from the cache otherwise."""

from __future__ import annotations

from pathlib import Path

from xqg.core.errors import XqgInputError
from xqg.data.corpus import CorpusStore
from xqg.data.sources import resolve_sources
from xqg.generation.generate import generate_queries
from xqg.generation.released import check_coverage, import_released
from xqg.generation.sampling import DecodingConfig
from xqg.generation.store import GeneratedStore
from xqg.tasks.schema import EvaluateSettings, frozen
from xqg.tasks.train_generator import train_or_load


def ensure_generated(settings: EvaluateSettings, corpus: CorpusStore) -> GeneratedStore:
    """The store for the ``generator`` settings and this corpus, made if missing."""
    g, cache = settings.generator, Path(settings.paths.cache_dir)
    if g.queries_source:
        files = resolve_sources(g.queries_source, cache, what="released generated queries")
        store = import_released(files, cache, fmt=g.store_format)
        if not set(g.languages) <= set(store.languages):
            raise XqgInputError(
                f"released queries cover {store.languages}, not all of {sorted(g.languages)}",
                path=str(files[0]),
                field="generator.languages",
            )
        if corpus is not None:  # stop before the query sums when most passages would go without queries
            check_coverage(store, corpus, cache, max_missing_share=g.max_missing_share)
        return store
    return generate_queries(
        train_or_load(settings),
        corpus,
        g.languages,
        g.num_queries,
        cache,
        decoding=frozen(g.decoding, DecodingConfig),
        batch_size=g.generate_batch_size,
        shard_size=g.shard.size,
        shard_index=g.shard.index,
        num_shards=g.shard.count,
        seed=g.seed,
        fmt=g.store_format,
        device=g.device,
        precision=g.precision,
    )
