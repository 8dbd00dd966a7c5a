"""The sharded, resumable, fingerprinted embedding store (passages, and questions in one shard).

The corpus is encoded into ``<cache>/embeddings/<fingerprint>/`` in shards of consecutive corpus rows (shard ``i``
of ``N``, so GPUs or nodes can split a corpus), each shard in sub-chunks written atomically: a killed encode
resumes where it stopped and never redoes finished work (the pattern is :mod:`xqg.core.sharded`). The fingerprint
covers the retriever checkpoint's identity, the corpus fingerprint, dtype, the effective max length and the shard
layout; batch size and device do not change the result and are not in it.

Layout::

    shards/00000.ids.npy                    the shard's docids (fixed-width UTF-8 bytes)
    shards/00000.emb.npy                    its (rows, dim) matrix, fp16 or fp32; with the ids: the shard is done
    shards/00000.parts/part-<a>-<b>.*.npy   sub-chunks of an unfinished shard (joined, then removed)
    spec.json, manifest.json                manifest written last; ``extra`` holds dim, dtype and the shard bounds
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from xqg.core.artifacts import ArtifactDir, Manifest, atomic_path, fingerprint
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.locking import complete_or_claim
from xqg.core.sharded import ChunkFiles, ShardFiles, ShardPlan, save_npy
from xqg.data.records import passage_text
from xqg.retrieval.encode import Retriever

log = logging.getLogger(__name__)

#: Bump when encoding or the store layout changes: older stores are then rebuilt, never reused.
CODE_VERSION = "1"
DTYPES: dict[str, type[np.floating]] = {"fp16": np.float16, "fp32": np.float32}
DEFAULT_SHARD_SIZE = 100_000
DEFAULT_CHUNK_SIZE = 20_000
IDS, EMB = "ids.npy", "emb.npy"

Embed = Callable[[list[str]], np.ndarray]


def batching(plan: ShardPlan, batch_size: int, chunk_size: int | None) -> dict[str, int]:
    """How rows are grouped for the encoder, which the stored bits depend on: a shard is encoded a chunk at a
    time, each chunk sorted by length and cut into batches, and a text's embedding changes in its last bits with
    the batch it is padded and multiplied with (measured: 1 row in 230 differs in fp16 between chunkings). So the
    effective chunk and batch size are part of a store's fingerprint; values that group rows identically
    (a chunk as large as the shard or larger) give one fingerprint."""
    chunk = min(int(chunk_size or min(plan.shard_size, DEFAULT_CHUNK_SIZE)), plan.shard_size)
    return {"chunk_size": chunk, "batch_size": min(int(batch_size), chunk)}


# A row source yields (docids, texts) blocks for rows [start, stop); corpora and question lists both fit.
RowSource = Callable[[int, int, int], Iterator[tuple[list[str], list[str]]]]


def ids_array(ids: Sequence[str]) -> np.ndarray:
    """Docids as fixed-width UTF-8 bytes (``S`` dtype): compact, memory-mappable, no pickle."""
    raw = [str(s).encode("utf-8") for s in ids]
    width = max((len(r) for r in raw), default=1) or 1
    return np.array(raw, dtype=f"S{width}")


def ids_list(arr: np.ndarray) -> list[str]:
    return [b.decode("utf-8") for b in arr.tolist()]


def _shard_files(root: Path) -> ShardFiles:
    return ShardFiles(root, done_when=(IDS, EMB))


class EmbeddingStore:
    """A complete embedding artifact: docids and a ``(rows, dim)`` matrix in shards of consecutive rows (the
    matrices memory-mapped on read)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        art_manifest = self.path / "manifest.json"
        if not art_manifest.exists():
            raise MissingResourceError(
                f"{self.path}: incomplete embedding store (no manifest.json); run the encode again to resume it"
            )
        self.manifest = Manifest.from_dict(json.loads(art_manifest.read_text()))
        extra = self.manifest.extra
        self.fingerprint: str = self.manifest.fingerprint
        self.dim: int = int(extra["dim"])
        self.dtype: str = str(extra["dtype"])
        self.shards: list[tuple[int, int]] = [(int(a), int(b)) for a, b in extra["shards"]]
        self._rows = int(self.manifest.counts["rows"])
        self._files = _shard_files(self.path)
        self._ids: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | Path) -> EmbeddingStore:
        return cls(path)

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, rows={self._rows}, dim={self.dim}, dtype={self.dtype})"

    @property
    def ids(self) -> np.ndarray:
        """All docids in row order (a numpy ``str`` array, so ``store.ids[rows]`` maps search rows to docids)."""
        if self._ids is None:
            parts = [np.load(self._files.path(i, IDS), allow_pickle=False) for i in range(len(self.shards))]
            self._ids = np.array(ids_list(np.concatenate(parts)) if parts else [], dtype=str)
        return self._ids

    def shard_matrix(self, i: int) -> np.ndarray:
        """Shard ``i``'s embeddings as stored (memory-mapped, fp16 or fp32)."""
        return np.load(self._files.path(i, EMB), mmap_mode="r", allow_pickle=False)

    def iter_chunks(self, rows: int = 65_536) -> Iterator[tuple[int, list[str], np.ndarray]]:
        """``(row offset, docids, float32 matrix)`` for consecutive blocks of at most ``rows`` rows, in row order
        (blocks never span shards); memory stays at one block whatever the corpus size."""
        if rows <= 0:
            raise ValueError("rows must be positive")
        for i, (start, _stop) in enumerate(self.shards):
            ids = np.load(self._files.path(i, IDS), mmap_mode="r", allow_pickle=False)
            mat = self.shard_matrix(i)
            for a in range(0, mat.shape[0], rows):
                b = min(a + rows, mat.shape[0])
                yield start + a, ids_list(np.asarray(ids[a:b])), np.asarray(mat[a:b], dtype=np.float32)

    def load(self) -> np.ndarray:
        """The whole matrix as float32 (small corpora; use :meth:`iter_chunks` for large ones)."""
        out = np.empty((self._rows, self.dim), dtype=np.float32)
        for i, (a, b) in enumerate(self.shards):
            out[a:b] = self.shard_matrix(i)
        return out


def corpus_rows(corpus: Any) -> RowSource:
    """Passages of a ``CorpusStore`` as (docids, ``title + " " + text``) blocks."""

    def rows(start: int, stop: int, block: int) -> Iterator[tuple[list[str], list[str]]]:
        for batch in corpus.iter_batches(block, start, stop):
            yield [p.docid for p in batch], [passage_text(p.title, p.text) for p in batch]

    return rows


def memory_rows(ids: Sequence[str], texts: Sequence[str]) -> RowSource:
    def rows(start: int, stop: int, block: int) -> Iterator[tuple[list[str], list[str]]]:
        for a in range(start, stop, block):
            b = min(a + block, stop)
            yield list(ids[a:b]), list(texts[a:b])

    return rows


def _encode_shard(
    files: ShardFiles,
    i: int,
    bounds: tuple[int, int],
    rows: RowSource,
    embed: Embed,
    dtype: type[np.floating],
    chunk_size: int,
    on_rows: Callable[[int], None] = lambda n: None,
) -> int:
    """Encode one shard in sub-chunks (each written atomically, skipped when present), then join them into the
    shard files. Returns the number of rows encoded now (0 when the shard was already done)."""
    chunks = ChunkFiles(files.dir / f"{files.stem.format(i)}.parts", done_when=(IDS, EMB))
    if files.is_done(i):
        shutil.rmtree(chunks.dir, ignore_errors=True)  # leftovers of a run killed right after joining
        return 0
    start, stop = bounds
    done = chunks.done_run(start)
    pos = done[-1][1] if done else start
    encoded = 0
    chunks.dir.mkdir(parents=True, exist_ok=True)
    while pos < stop:
        end = min(pos + chunk_size, stop)
        ids: list[str] = []
        texts: list[str] = []
        for block_ids, block_texts in rows(pos, end, 4096):
            ids.extend(block_ids)
            texts.extend(block_texts)
        if len(ids) != end - pos:
            raise XqgInputError(f"expected {end - pos} rows in [{pos}, {end}), the source gave {len(ids)}")
        stored = embed(texts).astype(dtype)
        if not np.isfinite(stored).all():
            raise XqgInputError(
                f"embeddings overflow {np.dtype(dtype).name} in rows [{pos}, {end}); use dtype fp32",
                field="dtype",
            )
        save_npy(chunks.path(pos, end, IDS), ids_array(ids))
        save_npy(chunks.path(pos, end, EMB), stored)  # written last: marks the piece finished
        done.append((pos, end))
        encoded += end - pos
        on_rows(end - pos)
        pos = end
    _join_chunks(chunks, done, files.path(i, IDS), files.path(i, EMB))
    shutil.rmtree(chunks.dir, ignore_errors=True)
    return encoded


def _join_chunks(chunks: ChunkFiles, done: list[tuple[int, int]], ids_path: Path, emb_path: Path) -> None:
    if len(done) == 1:  # one sub-chunk: rename, no copy
        os.replace(chunks.path(*done[0], IDS), ids_path)
        os.replace(chunks.path(*done[0], EMB), emb_path)
        return
    id_parts = [np.load(chunks.path(a, b, IDS)) for a, b in done]
    width = max(p.dtype.itemsize for p in id_parts)
    save_npy(ids_path, np.concatenate([p.astype(f"S{width}") for p in id_parts]))
    mats = [np.load(chunks.path(a, b, EMB), mmap_mode="r") for a, b in done]
    rows = sum(m.shape[0] for m in mats)
    with atomic_path(emb_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=mats[0].dtype, shape=(rows, mats[0].shape[1]))
        pos = 0
        for m in mats:
            out[pos : pos + m.shape[0]] = m
            pos += m.shape[0]
        out.flush()
        del out


def build_store(
    art: ArtifactDir,
    rows: RowSource,
    plan: ShardPlan,
    embed: Embed,
    *,
    dtype: str = "fp16",
    chunk_size: int | None = None,
    shard_index: int | None = None,
    extra: dict[str, Any] | None = None,
) -> EmbeddingStore | None:
    """Encode the missing shards of ``art`` (only ``shard_index`` when given) and finalize it once every shard is
    there. Returns the store, or None when other shards (other workers' share) are still missing."""
    if complete_or_claim(art, share="" if shard_index is None else f"shard-{shard_index}"):
        log.info("%s: reusing %s", art.kind, art.path)
        return EmbeddingStore(art.path)
    if dtype not in DTYPES:
        raise XqgInputError(f"must be one of {sorted(DTYPES)}, got {dtype!r}", field="dtype")
    files = _shard_files(art.begin())
    chunk = int(chunk_size or min(plan.shard_size, DEFAULT_CHUNK_SIZE))
    todo = range(plan.num_shards) if shard_index is None else [int(shard_index)]
    log.info("%s: encoding %d rows in %d shard(s) into %s", art.kind, plan.rows, plan.num_shards, art.path)
    total = sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in todo)
    with tqdm(
        disable=None, total=total, unit="row", unit_scale=True, desc=f"{art.kind} {art.fingerprint}"
    ) as bar:
        for i in todo:
            n = _encode_shard(files, i, plan.bounds(i), rows, embed, DTYPES[dtype], chunk, bar.update)
            bar.update(plan.bounds(i)[1] - plan.bounds(i)[0] - n)  # rows finished by an earlier run
            log.info(
                "%s: shard %d/%d: %s", art.kind, i + 1, plan.num_shards, f"{n} rows encoded" if n else "done"
            )
    if not files.all_done(plan):
        return None
    dim = int(np.load(files.path(0, EMB), mmap_mode="r").shape[1])
    art.finalize(
        counts={"rows": plan.rows, "shards": plan.num_shards},
        extra={
            "dim": dim,
            "dtype": dtype,
            "shard_size": plan.shard_size,
            "shards": [list(plan.bounds(i)) for i in range(plan.num_shards)],
            **(extra or {}),
        },
    )
    return EmbeddingStore(art.path)


def encode_corpus(
    retriever: str | Path | Retriever,
    corpus: Any,
    out_root: str | Path,
    dtype: str = "fp16",
    batch_size: int = 64,
    shard_size: int | None = None,
    num_shards: int | None = None,
    shard_index: int | None = None,
    device: str | torch.device | None = "auto",
    *,
    max_len: int | None = None,
    chunk_size: int | None = None,
) -> EmbeddingStore | None:
    """Passage embeddings of ``corpus`` (a ``CorpusStore``) in ``<out_root>/embeddings/<fingerprint>/``.

    Reused when complete; resumed when partial. ``max_len`` overrides the checkpoint's ``p_max_len``. With
    ``shard_index`` only that shard is encoded (one worker's share): the result is None until all are present;
    a later call without ``shard_index`` finalizes (encoding anything still missing).
    """
    ret = Retriever.of(retriever, device)
    plan = ShardPlan.make(len(corpus), shard_size or DEFAULT_SHARD_SIZE, num_shards)
    art = ArtifactDir.for_spec(
        out_root,
        "embeddings",
        config={
            "kind": "passage",
            "dtype": dtype,
            "max_len": ret.max_len("passage", max_len),
            "shard_size": plan.shard_size,
            "batching": batching(plan, batch_size, chunk_size),
        },
        inputs={"retriever": ret.fingerprint, "corpus": corpus.fingerprint},
        code_version=CODE_VERSION,
    )
    return build_store(
        art,
        corpus_rows(corpus),
        plan,
        lambda texts: ret.encode(texts, "passage", max_len=max_len, batch_size=batch_size),
        dtype=dtype,
        chunk_size=chunk_size,
        shard_index=shard_index,
        extra={"retriever": ret.path, "corpus": getattr(corpus, "source", "")},
    )


def encode_queries(
    retriever: str | Path | Retriever,
    qids: Sequence[str],
    texts: Sequence[str],
    out_root: str | Path,
    batch_size: int = 128,
    device: str | torch.device | None = "auto",
    *,
    max_len: int | None = None,
) -> EmbeddingStore:
    """Query embeddings (fp32, one shard), cached in ``<out_root>/query_embeddings/<fingerprint>/`` keyed by the
    checkpoint, the (qid, text) list and the max length; ``store.ids`` are the qids in input order."""
    if len(qids) != len(texts):
        raise ValueError("qids and texts differ in length")
    if not qids:
        raise XqgInputError("no questions to encode")
    ret = Retriever.of(retriever, device)
    plan = ShardPlan(len(qids), len(qids))
    art = ArtifactDir.for_spec(
        out_root,
        "query_embeddings",
        config={
            "kind": "query",
            "dtype": "fp32",
            "max_len": ret.max_len("query", max_len),
            "batching": batching(plan, batch_size, None),
        },
        inputs={"retriever": ret.fingerprint, "queries": fingerprint(list(qids), list(texts))},
        code_version=CODE_VERSION,
    )
    store = build_store(
        art,
        memory_rows(qids, texts),
        plan,
        lambda t: ret.encode(t, "query", max_len=max_len, batch_size=batch_size),
        dtype="fp32",
    )
    assert store is not None
    return store
