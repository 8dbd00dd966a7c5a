"""The passage corpus as an on-disk store with random access by docid and by row.

The real corpus (DPR ``psgs_w100.tsv``-style, ``id\\ttext\\ttitle`` with a header row, 18M rows, 13 GB) is streamed
once into ``<cache>/corpus/<fingerprint>/``: three UTF-8 blobs (docids, titles, texts) with int64 offsets
(``.npy``, memory-mapped) and a docid index (sorted 64-bit docid hashes + row order, binary search). Nothing is
held in Python dicts, so peak memory stays far below 1 GB at any corpus size, and opening a built store is
instant. JSONL corpora (``{docid, title, text}``, maybe gzip) and parquet are read the same way (rows streamed by
:mod:`xqg.data.corpus_rows`; DPR TSV files are written by :mod:`xqg.data.formats.dpr`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import mmap
import os
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from xqg.core.artifacts import ArtifactDir, file_fingerprint, fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.locking import complete_or_claim
from xqg.core.staging import staged_artifact
from xqg.data.corpus_rows import CorpusRows, detect_format
from xqg.data.records import Passage

#: Bump when the store layout or the parsing changes: old stores are then rebuilt, never reused.
#: 2: the DPR TSV reader refuses rows it could misread; stores built from such files by version 1 are rebuilt.
CODE_VERSION = "2"
_FIELDS = ("docids", "titles", "texts")
_FLUSH = 1 << 16  # offsets buffered per flush


def docid_hash(docid: bytes) -> int:
    """Stable 64-bit hash of a docid (the key of the sorted index)."""
    return int.from_bytes(hashlib.blake2b(docid, digest_size=8).digest(), "little")


def default_cache_root(path: Path) -> Path:
    """``$XQG_CACHE`` if set, else a sibling ``.<name>.xqg-store/`` folder (or ``$XQG_HOME``/~/.cache/xqg when
    the corpus sits in a read-only folder)."""
    env = os.environ.get("XQG_CACHE")
    if env:
        return Path(env)
    if os.access(path.parent, os.W_OK):
        return path.parent / f".{path.name}.xqg-store"
    home = os.environ.get("XQG_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "xqg")
    return Path(home) / "stores"


class _BlobWriter:
    """Appends byte strings to ``<name>.bin`` and their end offsets to a raw int64 file."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.data = open(folder / f"{name}.bin", "wb", buffering=1 << 20)
        self.raw_offsets_path = folder / f"{name}.offsets.raw"
        self.offsets = open(self.raw_offsets_path, "wb")
        self.pos = 0
        self.buf = array("q", [0])

    def add(self, value: bytes) -> None:
        self.data.write(value)
        self.pos += len(value)
        self.buf.append(self.pos)
        if len(self.buf) >= _FLUSH:
            self.buf.tofile(self.offsets)
            self.buf = array("q")

    def close(self, n: int) -> int:
        """Finish: write ``<name>.offsets.npy`` (n + 1 entries) chunk by chunk; returns bytes of the blob."""
        self.buf.tofile(self.offsets)
        self.offsets.close()
        self.data.close()
        out = np.lib.format.open_memmap(
            self.folder / f"{self.name}.offsets.npy", mode="w+", dtype="<i8", shape=(n + 1,)
        )
        src = np.fromfile(self.raw_offsets_path, dtype="<i8", count=-1) if n < _FLUSH * 16 else None
        if src is not None:
            out[:] = src
        else:
            mm = np.memmap(self.raw_offsets_path, dtype="<i8", mode="r")
            for i in range(0, n + 1, 1 << 22):
                out[i : i + (1 << 22)] = mm[i : i + (1 << 22)]
            del mm
        out.flush()
        del out
        self.raw_offsets_path.unlink()
        return self.pos


def _build(path: Path | list[Path], fmt: str | list[str], art: ArtifactDir, source_fp: str) -> None:
    """Stream the corpus (one file, or several in order) into a staging folder, then move it into place (see
    :mod:`xqg.core.staging`)."""
    files = path if isinstance(path, list) else [path]
    with staged_artifact(art) as staging:
        folder = staging.path
        writers = [_BlobWriter(folder, name) for name in _FIELDS]
        hashes = array("Q")
        total = sum(p.stat().st_size for p in files)
        n = 0
        with tqdm(
            disable=None, total=total, unit="B", unit_scale=True, desc=f"corpus store {files[0].name}"
        ) as bar:
            for docid, title, text in CorpusRows(files, fmt, bar):
                writers[0].add(docid)
                writers[1].add(title)
                writers[2].add(text)
                hashes.append(docid_hash(docid))
                n += 1
        if n == 0:
            raise XqgInputError(
                "corpus has no passages", path=files[0] if len(files) == 1 else files[0].parent
            )
        sizes = {name: w.close(n) for name, w in zip(_FIELDS, writers, strict=True)}
        h = np.frombuffer(hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        sorted_h = h[order]
        del h, hashes
        _check_duplicates(folder, sorted_h, order, files[0] if len(files) == 1 else files[0].parent)
        np.save(folder / "docid_hash.sorted.npy", sorted_h)
        np.save(folder / "docid_hash.order.npy", order.astype(np.int64, copy=False))
        del sorted_h, order
        disk = sum(p.stat().st_size for p in folder.iterdir())
        staging.finalize(
            counts={"passages": n, "bytes_on_disk": disk, **{f"{k}_bytes": v for k, v in sizes.items()}},
            extra={
                "source": str(path) if len(files) == 1 else [str(p) for p in files],
                "format": fmt,
                "source_fingerprint": source_fp,
            },
        )


def _check_duplicates(folder: Path, sorted_h: np.ndarray, order: np.ndarray, path: Path) -> None:
    same = np.flatnonzero(sorted_h[1:] == sorted_h[:-1])
    if same.size == 0:
        return
    blob = _Blob(folder, "docids")
    try:
        for j in same.tolist():
            a, b = sorted((int(order[j]), int(order[j + 1])))
            if blob.get(a) == blob.get(b):
                raise XqgInputError(
                    f"duplicate docid {blob.get(a).decode()!r} (passages {a} and {b}, 0-based rows)",
                    path=path,
                )
    finally:
        blob.close()


class _Blob:
    """Random access to the i-th byte string of a blob via memory-mapped offsets."""

    def __init__(self, folder: Path, name: str) -> None:
        self.offsets = np.load(folder / f"{name}.offsets.npy", mmap_mode="r")
        data_path = folder / f"{name}.bin"
        self._file = open(data_path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        self.data: mmap.mmap | bytes = (
            mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        )

    def get(self, i: int) -> bytes:
        start, end = self.offsets[i : i + 2]
        return self.data[int(start) : int(end)]

    def get_range(self, start: int, stop: int) -> list[bytes]:
        offs = self.offsets[start : stop + 1].tolist()
        chunk = self.data[offs[0] : offs[-1]]
        base = offs[0]
        return [chunk[a - base : b - base] for a, b in itertools.pairwise(offs)]

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()
        self._file.close()


class CorpusStore:
    """A built corpus store (read-only, memory-mapped): ``get(docid)``, ``row(i)``, ``iter_batches(...)``.

    ``fingerprint`` identifies the content (source file hash + store code version); downstream artifacts
    (embeddings, generated queries) key on it.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            raise XqgInputError("not a complete corpus store (no manifest.json)", path=self.path)
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        self.fingerprint: str = self.manifest["fingerprint"]
        source = self.manifest.get("extra", {}).get("source", str(self.path))
        if isinstance(source, list):  # several files
            source = f"{source[0]} (+{len(source) - 1} more files)"
        self.source: str = source
        self._n = int(self.manifest["counts"]["passages"])
        self._open()

    def _open(self) -> None:
        self._docids = _Blob(self.path, "docids")
        self._titles = _Blob(self.path, "titles")
        self._texts = _Blob(self.path, "texts")
        self._hash_sorted = np.load(self.path / "docid_hash.sorted.npy", mmap_mode="r")
        self._hash_order = np.load(self.path / "docid_hash.order.npy", mmap_mode="r")

    # Stores travel to DataLoader workers by path (mmaps cannot be pickled).
    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def close(self) -> None:
        for blob in (self._docids, self._titles, self._texts):
            blob.close()

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"CorpusStore({self.source!r}, passages={self._n}, fingerprint={self.fingerprint})"

    def _check_row(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"row {i} out of range for corpus {self.source} ({self._n} passages)")
        return i

    def docid_at(self, i: int) -> str:
        return self._docids.get(self._check_row(i)).decode("utf-8")

    def row(self, i: int) -> Passage:
        i = self._check_row(i)
        return Passage(
            docid=self._docids.get(i).decode("utf-8"),
            title=self._titles.get(i).decode("utf-8"),
            text=self._texts.get(i).decode("utf-8"),
        )

    def find(self, docid: str | int) -> int | None:
        """Row of ``docid`` or None (binary search over the hash index, then an exact comparison)."""
        key = str(docid).encode("utf-8")
        h = np.uint64(docid_hash(key))
        j = int(np.searchsorted(self._hash_sorted, h, side="left"))
        while j < self._n and self._hash_sorted[j] == h:
            r = int(self._hash_order[j])
            if self._docids.get(r) == key:
                return r
            j += 1
        return None

    def count_present(self, docids: Sequence[str]) -> int:
        """How many of ``docids`` (distinct) are in the corpus: vectorised over the hash index, each hit confirmed
        by an exact comparison (millions per second, for coverage checks)."""
        keys = [str(d).encode("utf-8") for d in docids]
        if not keys or not self._n:
            return 0
        h = np.fromiter((docid_hash(k) for k in keys), dtype=np.uint64, count=len(keys))
        j = np.searchsorted(self._hash_sorted, h, side="left")
        hit = np.zeros(len(keys), dtype=bool)
        inside = j < self._n
        hit[inside] = np.asarray(self._hash_sorted)[j[inside]] == h[inside]
        idx = np.flatnonzero(hit)
        rows = np.asarray(self._hash_order)[j[idx]].tolist()
        found = 0
        for i, r in zip(idx.tolist(), rows, strict=True):
            found += self._docids.get(r) == keys[i] or self.find(docids[i]) is not None
        return found

    def index(self, docid: str | int) -> int:
        """Row of ``docid``; KeyError naming the corpus when absent."""
        r = self.find(docid)
        if r is None:
            raise KeyError(f"docid {str(docid)!r} not in corpus {self.source} ({self._n} passages)")
        return r

    def has(self, docid: str | int) -> bool:
        return self.find(docid) is not None

    __contains__ = has

    def get(self, docid: str | int) -> Passage:
        return self.row(self.index(docid))

    def __getitem__(self, docid: str) -> Passage:
        return self.get(docid)

    def iter_batches(
        self, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[list[Passage]]:
        """Passages in row order, ``batch_size`` at a time, rows ``[start, stop)``."""
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        stop = self._n if stop is None else min(int(stop), self._n)
        for a in range(max(0, int(start)), stop, batch_size):
            b = min(a + batch_size, stop)
            ids = self._docids.get_range(a, b)
            titles = self._titles.get_range(a, b)
            texts = self._texts.get_range(a, b)
            yield [
                Passage(d.decode("utf-8"), t.decode("utf-8"), x.decode("utf-8"))
                for d, t, x in zip(ids, titles, texts, strict=True)
            ]

    def __iter__(self) -> Iterator[Passage]:
        for batch in self.iter_batches(4096):
            yield from batch


def open_corpus(path: str | Path | Sequence[str | Path], cache_dir: str | Path | None = None) -> CorpusStore:
    """Open a corpus (DPR TSV, JSONL or parquet, maybe gzip; or several such files read in the given order, e.g.
    the released shards), building its store on first use.

    The store lives in ``<cache_dir>/corpus/<fingerprint>/`` (default: ``$XQG_CACHE`` or a sibling
    ``.<name>.xqg-store/``); the fingerprint covers the file content (every file, in order) and the store code
    version, so an edited corpus is never served from a stale store. A directory that is already a store is
    opened directly.
    """
    if not isinstance(path, str | Path):
        return _open_files([Path(p).expanduser() for p in path], cache_dir)
    p = Path(path).expanduser()
    if p.is_dir() and (p / "manifest.json").exists():
        return CorpusStore(p)
    if not p.is_file():
        found = (
            "is a directory (and not a corpus store): give the corpus file"
            if p.is_dir()
            else "file not found"
        )
        raise XqgInputError(f"corpus {found}", path=p)
    p = p.resolve()
    fmt = detect_format(p)
    source_fp = file_fingerprint(p)
    root = Path(cache_dir) if cache_dir is not None else default_cache_root(p)
    art = ArtifactDir.for_spec(
        root, "corpus", config={"format": fmt}, inputs={"corpus": source_fp}, code_version=CODE_VERSION
    )
    if not complete_or_claim(art):
        _build(p, fmt, art, source_fp)
    return CorpusStore(art.path)


def _open_files(paths: list[Path], cache_dir: str | Path | None) -> CorpusStore:
    """A corpus of several files: one store, fingerprinted over every file's content in order."""
    if len(paths) == 1:
        return open_corpus(paths[0], cache_dir)
    if not paths:
        raise XqgInputError("empty list of corpus files", field="data.files.corpus")
    for p in paths:
        if not p.is_file():
            raise XqgInputError("corpus file not found", path=p)
    files = [p.resolve() for p in paths]
    fmts = [detect_format(p) for p in files]
    source_fp = fingerprint({"files": [file_fingerprint(p) for p in files]})
    root = Path(cache_dir) if cache_dir is not None else default_cache_root(files[0])
    art = ArtifactDir.for_spec(
        root, "corpus", config={"format": fmts}, inputs={"corpus": source_fp}, code_version=CODE_VERSION
    )
    if not complete_or_claim(art):
        _build(files, fmts, art, source_fp)
    return CorpusStore(art.path)
