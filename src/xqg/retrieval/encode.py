"""Dense encoding: length-sorted batched inference and a sharded, resumable, fingerprinted embedding store.

Batches are formed after sorting texts by token length, so each batch is padded to its own longest text rather
than to ``max_len``; on short texts (queries) that removes most of the wasted compute. The corpus is encoded into
``<cache>/embeddings/<fingerprint>/`` in shards of consecutive corpus rows (shard ``i`` of ``N``, so GPUs or
nodes can split a corpus), each shard in sub-chunks written atomically: a killed encode resumes where it stopped
and never redoes finished work. The fingerprint covers the retriever checkpoint's identity, the corpus
fingerprint, dtype, the effective max length and the shard layout; batch size and device do not change the
result and are not in it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xqg.core.artifacts import ArtifactDir, Manifest, atomic_path, file_fingerprint, fingerprint
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.progress import progress_bar
from xqg.data.records import passage_text

log = logging.getLogger(__name__)

#: Bump when encoding or the store layout changes: older stores are then rebuilt, never reused.
CODE_VERSION = "1"
DTYPES: dict[str, type[np.floating]] = {"fp16": np.float16, "fp32": np.float32}
DEFAULT_SHARD_SIZE = 100_000
DEFAULT_CHUNK_SIZE = 20_000
_PART_RE = re.compile(r"^part-(\d{12})-(\d{12})\.emb\.npy$")


# -- devices ----------------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> the first CUDA GPU when there is one, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Half-precision matmuls on GPU (bf16 where supported); full precision on CPU, where autocast is slower."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


# -- batched encoding -------------------------------------------------------------------------------------------
def _pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one in the batch."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def encode_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    kind: str = "query",
    *,
    max_len: int,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    desc: str | None = None,
    leave: bool = True,
) -> np.ndarray:
    """Embed ``texts`` with ``model.encode_query`` or ``model.encode_passage``; float32 ``(len(texts), dim)``.

    Texts are tokenized once (truncated to ``max_len`` tokens incl. specials), sorted by length (longest first,
    so an out-of-memory batch shows up at once), padded per batch, and the rows restored to input order.
    """
    if kind not in ("query", "passage"):
        raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    if len(texts) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    encode = model.encode_query if kind == "query" else model.encode_passage
    token_ids: list[list[int]] = tokenizer(
        list(texts), truncation=True, max_length=max_len, add_special_tokens=True
    )["input_ids"]
    lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))
    order = np.argsort(-lengths, kind="stable")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: np.ndarray | None = None
    was_training = model.training
    model.eval()
    tokens = 0
    start = time.perf_counter()
    try:
        with (
            torch.inference_mode(),
            _autocast(dev),
            progress_bar(
                total=len(texts), unit=kind, unit_scale=True, desc=desc or f"encode {kind}s", leave=leave
            ) as bar,
        ):
            for a in range(0, len(order), batch_size):
                idx = order[a : a + batch_size]
                ids, mask = _pad_batch([token_ids[i] for i in idx], pad_id)
                emb = encode(ids.to(dev, non_blocking=True), mask.to(dev, non_blocking=True))
                emb_np = emb.float().cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), emb_np.shape[1]), dtype=np.float32)
                out[idx] = emb_np
                tokens += int(lengths[idx].sum())
                bar.update(len(idx))
                bar.set_postfix(
                    tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):,.0f}", refresh=False
                )
    finally:
        model.train(was_training)
    assert out is not None
    return out


# -- the retriever checkpoint, fingerprinted without loading it -------------------------------------------------
def checkpoint_fingerprint(name_or_path: str | Path) -> str:
    """Identity of a retriever checkpoint, computed without loading it.

    An xqg artifact folder (``train_or_load``'s output, with ``manifest.json``) is immutable once complete: its
    fingerprint plus creation time identify it. Any other folder: a content hash of the files the loader reads
    (top-level files and Tevatron's ``query_model/`` and ``passage_model/``; not Lightning ``.ckpt`` files or
    logs), each hashed once and cached by size and mtime. A hub name is taken as is (pin a revision in it).
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return file_fingerprint(p)
    if not p.is_dir():
        name = str(name_or_path)
        if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
            raise XqgInputError("retriever checkpoint folder not found", path=name)
        return fingerprint({"hub": name})
    manifest = p / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if m.get("fingerprint"):
            return fingerprint(
                {"artifact": m["fingerprint"], "kind": m.get("kind"), "created": m.get("created")}
            )
    files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix != ".ckpt"]
    for sub in ("query_model", "passage_model"):
        if (p / sub).is_dir():
            files += [f for f in (p / sub).iterdir() if f.is_file() and not f.name.startswith(".")]
    if not files:
        raise XqgInputError("retriever checkpoint folder has no files", path=p)
    return fingerprint({str(f.relative_to(p)): file_fingerprint(f) for f in sorted(files)})


@dataclass
class Retriever:
    """A retriever checkpoint addressed by content; the weights load on first use, so a run whose embeddings
    are all cached never loads the model."""

    path: str
    device: torch.device = field(default_factory=lambda: resolve_device("auto"))
    fingerprint: str = ""
    _loaded: tuple[Any, Any, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = str(self.path)
        if not self.fingerprint:
            self.fingerprint = checkpoint_fingerprint(self.path)

    @classmethod
    def of(cls, retriever: str | Path | Retriever, device: str | torch.device | None = "auto") -> Retriever:
        if isinstance(retriever, Retriever):
            return retriever
        return cls(str(retriever), resolve_device(device))

    def load(self) -> tuple[Any, Any, Any]:
        """``(BiEncoder, tokenizer, RetrieverSpec)`` on :attr:`device`, in eval mode."""
        if self._loaded is None:
            from xqg.models.biencoder import load_retriever

            model, tokenizer, spec = load_retriever(self.path)
            model.to(self.device).eval()
            self._loaded = (model, tokenizer, spec)
        return self._loaded

    def max_len(self, kind: str, override: int | None = None) -> int:
        """``override``, else the checkpoint's own ``q_max_len``/``p_max_len`` (read from its spec file, without
        loading the weights, so fingerprints can use the effective value)."""
        if override:
            return int(override)
        from xqg.models.biencoder import read_spec

        spec = self._loaded[2] if self._loaded is not None else read_spec(self.path)
        return int(spec.q_max_len if kind == "query" else spec.p_max_len)

    def encode(
        self, texts: Sequence[str], kind: str, *, max_len: int | None = None, batch_size: int = 64
    ) -> np.ndarray:
        model, tokenizer, _ = self.load()
        return encode_texts(
            model,
            tokenizer,
            texts,
            kind,
            max_len=self.max_len(kind, max_len),
            batch_size=batch_size,
            device=self.device,
            leave=False,  # one bar per block; the store build shows the overall progress
        )


# -- the embedding store ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardPlan:
    """Consecutive corpus row ranges; shard ``i`` holds rows ``[i * shard_size, min((i + 1) * shard_size, n))``."""

    rows: int
    shard_size: int

    @classmethod
    def make(cls, rows: int, shard_size: int | None = None, num_shards: int | None = None) -> ShardPlan:
        """``num_shards`` equal shards when given (it wins over ``shard_size``), else ``shard_size`` rows each."""
        if num_shards:
            if num_shards <= 0:
                raise XqgInputError(f"must be positive, got {num_shards}", field="num_shards")
            shard_size = max(1, -(-rows // int(num_shards)))
        size = int(shard_size or DEFAULT_SHARD_SIZE)
        if size <= 0:
            raise XqgInputError(f"must be positive, got {size}", field="shard_size")
        return cls(int(rows), size)

    @property
    def num_shards(self) -> int:
        return max(1, -(-self.rows // self.shard_size))

    def bounds(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.num_shards:
            raise XqgInputError(
                f"shard index {i} out of range (0..{self.num_shards - 1})", field="shard_index"
            )
        return i * self.shard_size, min((i + 1) * self.shard_size, self.rows)


def _save_npy(dest: Path, arr: np.ndarray) -> None:
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _encode_ids(ids: Sequence[str]) -> np.ndarray:
    """Docids as fixed-width UTF-8 bytes (``S`` dtype): compact, memory-mappable, no pickle."""
    raw = [s.encode("utf-8") for s in ids]
    width = max((len(r) for r in raw), default=1) or 1
    return np.array(raw, dtype=f"S{width}")


def _decode_ids(arr: np.ndarray) -> list[str]:
    return [b.decode("utf-8") for b in arr.tolist()]


class EmbeddingStore:
    """A complete embedding artifact: docids and a ``(rows, dim)`` matrix in shards of consecutive rows.

    Files: ``shards/<i>.ids.npy`` (UTF-8 docids) and ``shards/<i>.emb.npy`` (fp16 or fp32, memory-mapped on
    read), ``spec.json``, ``manifest.json`` (written last; ``extra`` holds dim, dtype and the shard bounds).
    """

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
        self._ids: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | Path) -> EmbeddingStore:
        return cls(path)

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, rows={self._rows}, dim={self.dim}, dtype={self.dtype})"

    def _shard_files(self, i: int) -> tuple[Path, Path]:
        return _shard_paths(self.path, i)

    @property
    def ids(self) -> np.ndarray:
        """All docids in row order (a numpy ``str`` array, so ``store.ids[rows]`` maps search rows to docids)."""
        if self._ids is None:
            parts = [np.load(self._shard_files(i)[0], allow_pickle=False) for i in range(len(self.shards))]
            self._ids = np.array(_decode_ids(np.concatenate(parts)) if parts else [], dtype=str)
        return self._ids

    def shard_matrix(self, i: int) -> np.ndarray:
        """Shard ``i``'s embeddings as stored (memory-mapped, fp16 or fp32)."""
        return np.load(self._shard_files(i)[1], mmap_mode="r", allow_pickle=False)

    def iter_chunks(self, rows: int = 65_536) -> Iterator[tuple[int, list[str], np.ndarray]]:
        """``(row offset, docids, float32 matrix)`` for consecutive blocks of at most ``rows`` rows, in row order
        (blocks never span shards); memory stays at one block whatever the corpus size."""
        if rows <= 0:
            raise ValueError("rows must be positive")
        for i, (start, _stop) in enumerate(self.shards):
            ids = np.load(self._shard_files(i)[0], mmap_mode="r", allow_pickle=False)
            mat = self.shard_matrix(i)
            for a in range(0, mat.shape[0], rows):
                b = min(a + rows, mat.shape[0])
                yield start + a, _decode_ids(np.asarray(ids[a:b])), np.asarray(mat[a:b], dtype=np.float32)

    def load(self) -> np.ndarray:
        """The whole matrix as float32 (small corpora; use :meth:`iter_chunks` for large ones)."""
        out = np.empty((self._rows, self.dim), dtype=np.float32)
        for i, (a, b) in enumerate(self.shards):
            out[a:b] = self.shard_matrix(i)
        return out


def _shard_paths(root: Path, i: int) -> tuple[Path, Path]:
    base = root / "shards" / f"{i:05d}"
    return base.with_name(base.name + ".ids.npy"), base.with_name(base.name + ".emb.npy")


def _parts_dir(root: Path, i: int) -> Path:
    return root / "shards" / f"{i:05d}.parts"


# A row source yields (docids, texts) blocks for rows [start, stop); corpora and question lists both fit.
RowSource = Callable[[int, int, int], Iterator[tuple[list[str], list[str]]]]


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


def _done_parts(parts: Path, start: int) -> list[tuple[int, int, Path]]:
    """Finished sub-chunks forming a contiguous run from the shard start (anything else is stale)."""
    found: dict[int, tuple[int, Path]] = {}
    if parts.is_dir():
        for f in parts.iterdir():
            m = _PART_RE.match(f.name)
            if m and f.with_name(f.name.replace(".emb.npy", ".ids.npy")).exists():
                found[int(m.group(1))] = (int(m.group(2)), f)
    run: list[tuple[int, int, Path]] = []
    pos = start
    while pos in found:
        end, f = found[pos]
        run.append((pos, end, f))
        pos = end
    return run


def _encode_shard(
    root: Path,
    i: int,
    bounds: tuple[int, int],
    rows: RowSource,
    embed: Callable[[list[str]], np.ndarray],
    dtype: type[np.floating],
    chunk_size: int,
    on_rows: Callable[[int], None] = lambda n: None,
) -> int:
    """Encode one shard in sub-chunks (each written atomically, skipped when present), then join them into the
    shard files. Returns the number of rows encoded now (0 when the shard was already done)."""
    ids_path, emb_path = _shard_paths(root, i)
    parts = _parts_dir(root, i)
    if emb_path.exists() and ids_path.exists():
        shutil.rmtree(parts, ignore_errors=True)  # leftovers of a run killed right after joining
        return 0
    start, stop = bounds
    done = _done_parts(parts, start)
    pos = done[-1][1] if done else start
    encoded = 0
    parts.mkdir(parents=True, exist_ok=True)
    while pos < stop:
        end = min(pos + chunk_size, stop)
        ids: list[str] = []
        texts: list[str] = []
        for block_ids, block_texts in rows(pos, end, 4096):
            ids.extend(block_ids)
            texts.extend(block_texts)
        if len(ids) != end - pos:
            raise XqgInputError(f"expected {end - pos} rows in [{pos}, {end}), the source gave {len(ids)}")
        emb = embed(texts)
        stored = emb.astype(dtype)
        if not np.isfinite(stored).all():
            raise XqgInputError(
                f"embeddings overflow {np.dtype(dtype).name} in rows [{pos}, {end}); use dtype fp32",
                field="dtype",
            )
        stem = parts / f"part-{pos:012d}-{end:012d}"
        _save_npy(stem.with_name(stem.name + ".ids.npy"), _encode_ids(ids))
        _save_npy(stem.with_name(stem.name + ".emb.npy"), stored)  # written last: marks the part finished
        done.append((pos, end, stem.with_name(stem.name + ".emb.npy")))
        encoded += end - pos
        on_rows(end - pos)
        pos = end
    _join_parts(done, ids_path, emb_path)
    shutil.rmtree(parts, ignore_errors=True)
    return encoded


def _join_parts(done: list[tuple[int, int, Path]], ids_path: Path, emb_path: Path) -> None:
    if len(done) == 1:  # one sub-chunk: rename, no copy
        emb = done[0][2]
        os.replace(emb.with_name(emb.name.replace(".emb.npy", ".ids.npy")), ids_path)
        os.replace(emb, emb_path)
        return
    id_parts = [np.load(f.with_name(f.name.replace(".emb.npy", ".ids.npy"))) for _, _, f in done]
    width = max(p.dtype.itemsize for p in id_parts)
    _save_npy(ids_path, np.concatenate([p.astype(f"S{width}") for p in id_parts]))
    mats = [np.load(f, mmap_mode="r") for _, _, f in done]
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
    embed: Callable[[list[str]], np.ndarray],
    *,
    dtype: str = "fp16",
    chunk_size: int | None = None,
    shard_index: int | None = None,
    extra: dict[str, Any] | None = None,
) -> EmbeddingStore | None:
    """Encode the missing shards of ``art`` (only ``shard_index`` when given) and finalize it once every shard is
    there. Returns the store, or None when other shards (other workers' share) are still missing."""
    if art.complete:
        log.info("%s: reusing %s", art.kind, art.path)
        return EmbeddingStore(art.path)
    if dtype not in DTYPES:
        raise XqgInputError(f"must be one of {sorted(DTYPES)}, got {dtype!r}", field="dtype")
    root = art.begin()
    chunk = int(chunk_size or min(plan.shard_size, DEFAULT_CHUNK_SIZE))
    todo = range(plan.num_shards) if shard_index is None else [int(shard_index)]
    log.info("%s: encoding %d rows in %d shard(s) into %s", art.kind, plan.rows, plan.num_shards, root)
    total = sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in todo)
    with progress_bar(total=total, unit="row", unit_scale=True, desc=f"{art.kind} {art.fingerprint}") as bar:
        for i in todo:
            n = _encode_shard(root, i, plan.bounds(i), rows, embed, DTYPES[dtype], chunk, bar.update)
            bar.update(plan.bounds(i)[1] - plan.bounds(i)[0] - n)  # rows finished by an earlier run
            log.info(
                "%s: shard %d/%d: %s", art.kind, i + 1, plan.num_shards, f"{n} rows encoded" if n else "done"
            )
    if not all(p.exists() for i in range(plan.num_shards) for p in _shard_paths(root, i)):
        return None
    dim = int(np.load(_shard_paths(root, 0)[1], mmap_mode="r").shape[1])
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
    plan = ShardPlan.make(len(corpus), shard_size, num_shards)
    art = ArtifactDir.for_spec(
        out_root,
        "embeddings",
        config={
            "kind": "passage",
            "dtype": dtype,
            "max_len": ret.max_len("passage", max_len),
            "shard_size": plan.shard_size,
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
    art = ArtifactDir.for_spec(
        out_root,
        "query_embeddings",
        config={"kind": "query", "dtype": "fp32", "max_len": ret.max_len("query", max_len)},
        inputs={"retriever": ret.fingerprint, "queries": fingerprint(list(qids), list(texts))},
        code_version=CODE_VERSION,
    )
    store = build_store(
        art,
        memory_rows(qids, texts),
        ShardPlan(len(qids), len(qids)),
        lambda t: ret.encode(t, "query", max_len=max_len, batch_size=batch_size),
        dtype="fp32",
    )
    assert store is not None
    return store
