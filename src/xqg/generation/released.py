"""Import the released generated queries (``ielab/xor-tydi-xqg-augmented``: 19 JSONL shards) into a store, so
users can skip training the generator and generating; the result reads like a generated store
(:mod:`xqg.generation.store`). :func:`check_coverage` stops a run whose corpus is mostly without queries (one shard
of 19 given where all were meant), which would otherwise give silently wrong +xQG numbers."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from xqg.core.artifacts import ArtifactDir, file_fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES, get_language
from xqg.core.locking import complete_or_claim
from xqg.data.corpus import CorpusStore
from xqg.data.formats.released import iter_released_generated
from xqg.generation.store import (
    CODE_VERSION,
    KIND,
    GeneratedQuery,
    GeneratedStore,
    ShardStats,
    check_format,
    done_shards,
    finalize_store,
    finish_shard,
)

log = logging.getLogger(__name__)


def _files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    files = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
    if not files:
        raise XqgInputError("no released query files given", field="generator.queries_source")
    return files


def import_released(
    path: str | Path | Sequence[str | Path],
    out_root: str | Path,
    *,
    shard_size: int = 10000,
    fmt: str = "parquet",
) -> GeneratedStore:
    """Import released generated queries (docid, title, text, generated_queries {lang: [5 strings]}) from one
    file or several (read in the given order, e.g. the 19 released shards) into a store. Resumable like
    generation; shards hold ``shard_size`` passages in file order. The fingerprint covers every file in order."""
    check_format(fmt)
    files = _files(path)
    fps = [file_fingerprint(f) for f in files]
    art = ArtifactDir.for_spec(
        out_root,
        KIND,
        config={"source": "released", "shard_size": shard_size, "format": fmt},
        inputs={"released": fps[0] if len(fps) == 1 else fps},
        code_version=CODE_VERSION,
    )
    if complete_or_claim(art):
        return GeneratedStore(art.path)
    art.begin()
    done = done_shards(art.path)
    languages: list[str] = []
    n = 0
    s = 0
    records: list[GeneratedQuery] = []
    stats = ShardStats()
    docs_in_shard: set[str] = set()
    last_doc: str | None = None

    def flush() -> None:
        nonlocal records, stats, docs_in_shard, s
        if s not in done:
            finish_shard(art, s, records, stats, fmt, {})
        s += 1
        records, stats, docs_in_shard = [], ShardStats(), set()

    with tqdm(disable=None, unit="q", desc=f"importing {files[0].name} ({len(files)} files)") as bar:
        for p, docid, lang, texts in _records(files):
            lang = get_language(lang).code
            if docid != last_doc:
                if len(docs_in_shard) == shard_size:
                    flush()
                if docid in docs_in_shard:
                    raise XqgInputError(
                        f"docid {docid!r} appears in two separate places", path=p, field="docid"
                    )
                docs_in_shard.add(docid)
                stats.passages += 1
                last_doc = docid
            if lang not in languages:
                languages.append(lang)
            n = max(n, len(texts))
            texts = [t.strip() for t in texts]
            stats.add_group(lang, texts)
            if s not in done:
                records.extend(GeneratedQuery(docid, lang, k, t) for k, t in enumerate(texts))
            bar.update(len(texts))
    if stats.passages or s == 0:
        flush()
    order = [c for c in XOR_LANGUAGES if c in languages] + [c for c in languages if c not in XOR_LANGUAGES]
    source = str(files[0]) if len(files) == 1 else [str(f) for f in files]
    if not finalize_store(art, s, {"languages": order, "n": n, "source": source}):  # pragma: no cover
        raise RuntimeError(f"import of {files[0]} did not complete")
    return GeneratedStore(art.path)


def _records(files: Sequence[Path]) -> Iterator[tuple[Path, str, str, list[str]]]:
    for p in files:
        for docid, lang, texts in iter_released_generated(p):
            yield p, docid, lang, texts


def _store_docids(store: GeneratedStore) -> Iterator[str]:
    """Each passage's docid once, shard by shard (parquet shards: only the docid column is read)."""
    for f in store.shard_files():
        if f.name.endswith(".parquet"):
            yield from pc.unique(pq.read_table(f, columns=["docid"]).column("docid")).to_pylist()
    if not all(f.name.endswith(".parquet") for f in store.shard_files()):
        for table in store.iter_tables():
            yield from pc.unique(table.column("docid")).to_pylist()


def check_coverage(
    store: GeneratedStore,
    corpus: CorpusStore,
    cache_dir: str | Path,
    *,
    max_missing_share: float = 0.01,
    key: str = "generator.max_missing_share",
) -> dict[str, int]:
    """Stop (``XqgInputError``) when more than ``max_missing_share`` of the corpus passages have no generated
    queries in ``store``; returns ``{passages, covered, missing}``. Counted once per (store, corpus) and cached."""
    if not 0.0 <= max_missing_share <= 1.0:
        raise XqgInputError(f"must be a share in [0, 1], got {max_missing_share}", field=key)
    art = ArtifactDir.for_spec(
        cache_dir,
        "coverage",
        config={},
        inputs={"generated": store.fingerprint, "corpus": corpus.fingerprint},
        code_version="1",
    )
    if complete_or_claim(art):
        counts = {k: int(v) for k, v in art.manifest().counts.items()}
    else:
        covered = 0
        batch: list[str] = []
        for docid in _store_docids(store):
            batch.append(docid)
            if len(batch) == 1 << 16:
                covered += corpus.count_present(batch)
                batch = []
        covered += corpus.count_present(batch)
        covered = min(covered, len(corpus))
        counts = {"passages": len(corpus), "covered": covered, "missing": len(corpus) - covered}
        art.begin()
        art.finalize(counts=counts)
    missing, total = counts["missing"], counts["passages"]
    if total and missing / total > max_missing_share:
        raise XqgInputError(
            f"{missing:,} of {total:,} corpus passages ({missing / total:.1%}) have no generated queries in "
            f"{store.path} (allowed: {max_missing_share:.1%}); give every released shard, or set {key}="
            f"{(missing / total):.3f} to run anyway",
            field=key,
        )
    if missing:
        log.warning("%d of %d corpus passages have no generated queries (allowed by %s)", missing, total, key)
    return counts
