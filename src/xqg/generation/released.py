"""Import the released generated queries (``ielab/xor-tydi-xqg-augmented``) into a store, so users can skip
training the generator and generating; the result reads like a generated store (:mod:`xqg.generation.store`)."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from xqg.core.artifacts import ArtifactDir, file_fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES, get_language
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


def import_released(
    path: str | Path, out_root: str | Path, *, shard_size: int = 10000, fmt: str = "parquet"
) -> GeneratedStore:
    """Import released generated queries (docid, title, text, generated_queries {lang: [5 strings]}) into a
    store. Resumable like generation; shards hold ``shard_size`` passages in file order."""
    check_format(fmt)
    p = Path(path)
    art = ArtifactDir.for_spec(
        out_root,
        KIND,
        config={"source": "released", "shard_size": shard_size, "format": fmt},
        inputs={"released": file_fingerprint(p)},
        code_version=CODE_VERSION,
    )
    if art.complete:
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

    with tqdm(disable=None, unit="q", desc=f"importing {p.name}") as bar:
        for docid, lang, texts in iter_released_generated(p):
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
    if not finalize_store(art, s, {"languages": order, "n": n, "source": str(p)}):  # pragma: no cover
        raise RuntimeError(f"import of {p} did not complete")
    return GeneratedStore(art.path)
