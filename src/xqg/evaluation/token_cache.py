"""Tokenising passages fast: a parallel ``word_tokenize`` over batches, and the on-disk per-passage token cache.

Run mode keeps the tokens of every passage it reads in ``<tokens_root>/<fingerprint>/part-*.parquet``
(written atomically, grown as new docids are scored), so re-scoring over the same corpus (sweeps) skips nltk
entirely. The cache stores the space-joined tokens (see :mod:`xqg.evaluation.xor_rule` for why that is exact).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import ClassVar

import nltk
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from xqg.core.artifacts import ArtifactDir, atomic_path, fingerprint
from xqg.core.workers import end_with_parent
from xqg.evaluation.xor_rule import Tokens, tokenize_text

log = logging.getLogger(__name__)

#: Bump when the token cache layout or the tokenisation changes: old caches are then never reused.
TOKEN_CACHE_VERSION = "1"
_PARALLEL_MIN_TEXTS = 512  # below this, starting worker processes costs more than it saves
_CHUNK = 64  # texts per worker task


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _init_worker(nltk_paths: list[str], run_pid: int) -> None:
    end_with_parent(run_pid)  # no orphan workers when the run is killed (kill -9 included)
    for p in nltk_paths:
        if p not in nltk.data.path:
            nltk.data.path.append(p)


def _tokenize_chunk(args: tuple[int, list[str], int]) -> tuple[int, list[Tokens]]:
    start, texts, cap = args
    return start, [tokenize_text(t, cap) for t in texts]


class ParallelTokenizer:
    """Tokenises batches of texts, in worker processes (all cores) when a batch is big enough.

    A ``ProcessPoolExecutor`` rather than ``multiprocessing.Pool``: when a worker dies (killed, out of memory)
    the executor reports it instead of waiting forever; the rest is then tokenised here, by the same tokenizer.
    When this process dies (``kill -9`` included) the workers end too (:func:`xqg.core.workers.end_with_parent`).
    """

    def __init__(self, cap: int, workers: int | None = None) -> None:
        self.cap = cap
        self.workers = available_cores() if not workers or workers <= 0 else int(workers)
        self._pool: ProcessPoolExecutor | None = None
        self.tokenized = 0

    def __enter__(self) -> ParallelTokenizer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":  # the server imports nltk once; its forks inherit it
                ctx.set_forkserver_preload(["__main__", __name__])
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(list(nltk.data.path), os.getpid()),
            )
        return self._pool

    def __call__(self, texts: Sequence[str], desc: str = "tokenise") -> list[Tokens]:
        self.tokenized += len(texts)
        if self.workers <= 1 or len(texts) < _PARALLEL_MIN_TEXTS:
            return [tokenize_text(t, self.cap) for t in texts]
        out: list[Tokens | None] = [None] * len(texts)
        tasks = [(i, list(texts[i : i + _CHUNK]), self.cap) for i in range(0, len(texts), _CHUNK)]
        with tqdm(disable=None, total=len(texts), desc=desc, unit="psg") as bar:
            try:
                pool = self._get_pool()
                for fut in as_completed([pool.submit(_tokenize_chunk, t) for t in tasks]):
                    start, toks = fut.result()
                    out[start : start + len(toks)] = toks
                    bar.update(len(toks))
            except BrokenProcessPool:
                log.warning("a tokenisation worker died; tokenising the rest in this process")
                self.__exit__()
                self.workers = 1
                for i, t in enumerate(texts):
                    if out[i] is None:
                        out[i] = tokenize_text(t, self.cap)
                        bar.update(1)
        return out  # type: ignore[return-value]


class TokenCache:
    """Per-passage tokens of one corpus, in ``<tokens_root>/<fingerprint>/part-*.parquet``.

    The fingerprint covers the corpus fingerprint, the tokenizer (nltk version, English punkt) and the layout
    version. Parts are written atomically and only ever added (a part names new entries), so concurrent
    scorers and killed runs are safe; many small parts are compacted into one. Rows with ``total == -1`` record
    docids verified to exist in the corpus but not tokenised (the unknown-docid check then costs nothing warm).
    """

    MAX_PARTS = 16
    #: characters of fetched tokens an instance keeps in memory (about as many bytes); past it the memo restarts
    MEMO_CHARS = 1 << 30
    _open: ClassVar[dict[tuple[str, str], TokenCache]] = {}
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def open(cls, tokens_root: str | Path, corpus_fingerprint: str) -> TokenCache:
        """The process's instance for this cache, brought up to date with parts other processes added since
        (a sweep's trials score in one process: the index is read once and fetched tokens stay in memory; on 2
        CPU cores that took a warm 2,110-question scoring over 100k passages from 1.40 to 0.97 s)."""
        key = (str(Path(tokens_root).resolve()), corpus_fingerprint)
        with cls._open_lock:
            cache = cls._open.get(key)
            if cache is None:
                cache = cls._open[key] = cls(tokens_root, corpus_fingerprint)
            else:
                cache.refresh()
            return cache

    def __init__(self, tokens_root: str | Path, corpus_fingerprint: str) -> None:
        root = Path(tokens_root)
        spec = {
            "kind": "tokens",
            "code_version": TOKEN_CACHE_VERSION,
            "config": {"tokenizer": "nltk.word_tokenize", "language": "english", "nltk": nltk.__version__},
            "inputs": {"corpus": corpus_fingerprint},
        }
        self.corpus_fingerprint = corpus_fingerprint
        self.art = ArtifactDir(root.parent, root.name, fingerprint(spec), spec)
        self.path = self.art.path
        # docid -> (part file, row, stored, total); total == -1: verified to exist, not tokenised
        self.index: dict[str, tuple[Path, int, int, int]] = {}
        # docid -> (stored, total) of the tokenised ones
        self.sizes: dict[str, tuple[int, int]] = {}
        self._known_parts: set[Path] = set()  # parts this instance has read or written
        self._on_disk: set[Path] = set()  # the parts on disk when this instance last read or wrote them
        self._memo: dict[str, Tokens] = {}  # tokens fetched or added, as the index has them
        self._memo_chars = 0
        self.load()

    def refresh(self) -> None:
        """Read the index again when the parts on disk are not the ones this instance knows (another process
        added or compacted); memoised tokens stay unless the index now has a better entry for them."""
        if set(self._parts()) != self._on_disk:
            self.load()
            self._memo = {d: t for d, t in self._memo.items() if self.sizes.get(d) == (t.stored, t.total)}
            self._memo_chars = sum(len(t.joined) for t in self._memo.values())

    def _remember(self, tokens: Mapping[str, Tokens]) -> None:
        if self._memo_chars > self.MEMO_CHARS:
            self._memo.clear()
            self._memo_chars = 0
        self._memo.update(tokens)
        self._memo_chars += sum(len(t.joined) for t in tokens.values())

    def _parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet")) if self.path.exists() else []

    def load(self) -> None:
        """Read the index (docids and counts) of every part; tokens stay on disk until asked for."""
        for _attempt in range(3):
            index: dict[str, tuple[Path, int, int, int]] = {}
            parts = self._parts()
            try:
                for part in parts:
                    t = pq.read_table(part, columns=["docid", "stored", "total"], memory_map=True)
                    docids = t.column("docid").to_pylist()
                    stored = t.column("stored").to_pylist()
                    total = t.column("total").to_pylist()
                    for row, (d, s, n) in enumerate(zip(docids, stored, total, strict=True)):
                        old = index.get(d)
                        if old is None or (n >= 0 and (old[3] < 0 or s > old[2])):
                            index[d] = (part, row, s, n)
            except FileNotFoundError:  # a concurrent compaction removed a part: read again
                continue
            self.index = index
            self._known_parts = {e[0] for e in index.values()}
            self._on_disk = set(parts)
            self.sizes = {d: (e[2], e[3]) for d, e in index.items() if e[3] >= 0}
            return
        raise RuntimeError(f"token cache {self.path} keeps changing while being read")

    def entry_counts(self, docid: str) -> tuple[int, int] | None:
        """(stored, total) of a tokenised passage; None when not tokenised."""
        return self.sizes.get(docid)

    def verified(self, docid: str) -> bool:
        return docid in self.index

    def fetch(self, docids: Iterable[str]) -> dict[str, Tokens]:
        """Tokens of cached docids: from memory when fetched before, else reading only the rows asked for."""
        out: dict[str, Tokens] = {}
        missing = []
        for d in docids:
            t = self._memo.get(d)
            if t is None:
                missing.append(d)
            else:
                out[d] = t
        if missing:
            try:
                read = self._read(missing)
            except FileNotFoundError:  # another process compacted the parts away: read the index again
                self.load()
                read = self._read(missing)
            self._remember(read)
            out.update(read)
        return out

    def _read(self, docids: Iterable[str]) -> dict[str, Tokens]:
        by_part: dict[Path, list[tuple[int, str]]] = {}
        for d in docids:
            part, row, _s, n = self.index[d]
            if n < 0:
                raise KeyError(d)
            by_part.setdefault(part, []).append((row, d))
        out: dict[str, Tokens] = {}
        for part, rows in by_part.items():
            col = pq.read_table(part, columns=["tokens"], memory_map=True).column("tokens")
            picked = col.take([r for r, _ in rows]).to_pylist()
            for (_r, d), joined in zip(rows, picked, strict=True):
                _p, _r, s, n = self.index[d]
                out[d] = Tokens(joined, s, n)
        return out

    def _write_part(self, docids: list[str], tokens: list[str], stored: list[int], total: list[int]) -> Path:
        table = pa.table(
            {
                "docid": pa.array(docids, pa.string()),
                "tokens": pa.array(tokens, pa.large_string()),
                "stored": pa.array(stored, pa.int32()),
                "total": pa.array(total, pa.int32()),
            }
        )
        part = self.path / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(part, suffix=".tmp") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return part

    def add(self, entries: Mapping[str, Tokens], verified: Iterable[str] = ()) -> None:
        """Write new entries (and verified-only docids) as one new part, atomically; compact when needed."""
        new_verified = [d for d in verified if d not in self.index and d not in entries]
        if not entries and not new_verified:
            return
        self.art.begin()
        docids = list(entries) + new_verified
        part = self._write_part(
            docids,
            [e.joined for e in entries.values()] + [""] * len(new_verified),
            [e.stored for e in entries.values()] + [0] * len(new_verified),
            [e.total for e in entries.values()] + [-1] * len(new_verified),
        )
        self._known_parts.add(part)
        self._on_disk.add(part)
        accepted = {}
        for row, d in enumerate(docids):
            e = entries.get(d)
            old = self.index.get(d)
            if e is None:
                self.index[d] = (part, row, 0, -1)
            elif old is None or old[3] < 0 or e.stored > old[2]:
                self.index[d] = (part, row, e.stored, e.total)
                self.sizes[d] = (e.stored, e.total)
                accepted[d] = Tokens(*e)
        self._remember(accepted)
        if len(self._known_parts) > self.MAX_PARTS:
            try:
                self.compact()
            except FileNotFoundError:  # a concurrent scorer compacted first; its merged part has our rows
                self.load()
        self.art.finalize(counts=self.counts())

    def counts(self) -> dict[str, int]:
        tokenised = sum(1 for e in self.index.values() if e[3] >= 0)
        return {"passages": tokenised, "verified_only": len(self.index) - tokenised}

    def compact(self) -> None:
        """Merge every part into one (new part first, then the old ones go), keeping the best entry per docid."""
        old_parts = [p for p in self._parts() if p in self._known_parts]  # never drop a part we have not read
        docids = list(self.index)
        tokenised = [d for d in docids if self.index[d][3] >= 0]
        toks = self._read(tokenised)
        part = self._write_part(
            docids,
            [toks[d].joined if d in toks else "" for d in docids],
            [self.index[d][2] for d in docids],
            [self.index[d][3] for d in docids],
        )
        for p in old_parts:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.index = {d: (part, row, self.index[d][2], self.index[d][3]) for row, d in enumerate(docids)}
        self._known_parts = {part}
        self._on_disk = set(self._parts())
