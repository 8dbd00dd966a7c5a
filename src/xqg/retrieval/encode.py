"""Dense encoding: length-sorted batched inference, and the retriever checkpoint addressed by content.

Batches are formed after sorting texts by token length, so each batch is padded to its own longest text rather
than to ``max_len``; on short texts (queries) that removes most of the wasted compute. Tokenisation and padding
run in a worker thread ahead of the model, and embeddings are gathered on the device, so a GPU is not left
waiting on the host between batches. A fast tokenizer is called through its Rust tokenizer (checked to give the
same ids), which skips transformers' per-text Python conversion: that conversion held the GIL against the model's
thread (on an H200, BERT-base passages went from 9,138 to 11,173/s; 11,404/s, 80% of the model alone, with
vectorised padding; 12,560/s, 88%, once the first window is two batches, :func:`window_bounds`). The sharded
embedding store built from it is :mod:`xqg.retrieval.embeddings`.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from xqg.core.artifacts import file_fingerprint, fingerprint
from xqg.core.device import autocast, resolve_device
from xqg.core.errors import XqgInputError
from xqg.models.biencoder import load_retriever, read_spec

log = logging.getLogger(__name__)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one: ``(input_ids, attention_mask)``, int64. The same tensors as
    ``tokenizer.pad(..., padding_side="right")``, 10x faster (on an H200, ``tokenizer.pad`` cut bert-base
    passage encoding from 6,263 to 5,017 passages/s)."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    width = int(lengths.max())
    keep = np.arange(width) < lengths[:, None]  # row-major: each row's ids fill its first len(row) places
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    ids[keep] = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(ids), torch.from_numpy(keep.astype(np.int64))


#: texts tokenised and length-sorted together on a GPU; the next window is tokenised while this one is encoded
GPU_WINDOW = 16_384
_QUEUE_BATCHES = 4  # padded batches prepared ahead of the model
#: texts per tokenisation task: a window is cut into pieces tokenised by a pool of threads (fast tokenizers run
#: in Rust without the GIL), results joined in order, so the ids are those of one call on the whole window
TOKENIZE_PIECE = 2048
#: tokenisation threads by default: one. A fast tokenizer already spreads a batch over every core (Rust, without
#: the GIL); on an H200 with 16 cores, 2 and 4 threads lowered BERT-base encoding from 11,131 to 9,625 and 7,958
#: passages/s (tokenising alone: 20,475 / 21,661 texts/s with 1 / 4 threads), the threads fighting the model's
#: thread for the GIL. More help slow (Python) tokenizers on many cores.
DEFAULT_WORKERS = 1


def default_workers() -> int:
    """Tokenisation threads when ``encode_texts(workers=None)``: :data:`DEFAULT_WORKERS`."""
    return DEFAULT_WORKERS


@dataclass
class _Batch:
    rows: np.ndarray  # positions in ``texts``
    ids: torch.Tensor
    mask: torch.Tensor
    tokens: int
    index: torch.Tensor  # ``rows`` relative to the window, int64 (pinned on a GPU)
    window: tuple[int, int]  # the window's ``[start, stop)`` in ``texts``


def window_bounds(n: int, window: int, first: int | None = None) -> list[tuple[int, int]]:
    """``[start, stop)`` of the windows over ``n`` texts: ``first`` texts, then twice as many each time up to
    ``window``. A small first window starts the model after tokenising a couple of batches instead of a whole
    window (the later windows are tokenised while earlier ones are encoded). On an H200, BERT-base over 40,000
    passages at batch 1,024: 10,999 passages/s with whole 16,384-text windows, 12,560/s starting at two batches
    (78% and 88% of the model alone on the same batches)."""
    size = max(1, min(window, first or window))
    out, start = [], 0
    while start < n:
        out.append((start, min(start + size, n)))
        start, size = start + size, min(window, 2 * size)
    return out


class _Tokenizers:
    """One tokenizer per worker thread: a fast tokenizer used by two threads at once can fail ("Already
    borrowed") when one of them changes its truncation settings, so each thread borrows its own copy. The copies
    are kept with the tokenizer (a large one takes a while to copy) while it lives."""

    _copies: ClassVar[weakref.WeakKeyDictionary[Any, list[Any]]] = weakref.WeakKeyDictionary()

    def __init__(self, tokenizer: Any, workers: int) -> None:
        self.free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.free.put(tokenizer)
        if workers <= 1:
            return
        try:
            copies = self._copies.setdefault(tokenizer, [])
        except TypeError:  # not weakly referenceable: copies for this call only
            copies = []
        while len(copies) < workers - 1:
            copies.append(copy.deepcopy(tokenizer))
        for c in copies[: workers - 1]:
            self.free.put(c)

    def ids(self, texts: list[str], max_len: int) -> list[list[int]]:
        tok = self.free.get()
        try:
            backend = _direct_backend(tok, max_len, texts)
            if backend is not None:
                return [e.ids for e in backend.encode_batch(texts, add_special_tokens=True)]
            return _call(tok, texts, max_len)
        finally:
            self.free.put(tok)


def _call(tok: Any, texts: list[str], max_len: int) -> list[list[int]]:
    return tok(
        texts,
        truncation=True,
        max_length=max_len,
        add_special_tokens=True,
        return_attention_mask=False,  # only the ids are used: less conversion under the GIL
        return_token_type_ids=False,
    )["input_ids"]


#: per tokenizer and ``max_len``: its Rust tokenizer set to truncate, or None where that is not the same ids
_DIRECT: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()
_DIRECT_CHECK = 64  # texts tokenised both ways before the direct path is trusted


def _direct_backend(tok: Any, max_len: int, sample: list[str]) -> Any:
    """A copy of a fast tokenizer's Rust ``backend_tokenizer`` truncating to ``max_len``, when it gives the
    same ids as the tokenizer's call on ``sample``'s first texts; else None. Its ``encode_batch`` skips
    transformers' per-text Python conversion, which holds the GIL: on an H200 with 16 cores that conversion
    in the worker thread held back the model's thread (BERT-base passages: 11,131/s against 13,858/s with
    batches ready)."""
    try:
        known = _DIRECT.setdefault(tok, {})
    except TypeError:
        return None
    if max_len in known:
        return known[max_len]
    backend = None
    source = getattr(tok, "backend_tokenizer", None) if getattr(tok, "is_fast", False) else None
    if source is not None and hasattr(source, "encode_batch"):
        backend = copy.deepcopy(source)
        backend.no_padding()
        backend.enable_truncation(
            max_len, stride=0, strategy="longest_first", direction=getattr(tok, "truncation_side", "right")
        )
        check = sample[:_DIRECT_CHECK]
        if [e.ids for e in backend.encode_batch(check, add_special_tokens=True)] != _call(
            tok, check, max_len
        ):
            log.info("tokenizer %s: direct Rust path gives other ids; using its call", type(tok).__name__)
            backend = None
    known[max_len] = backend
    return backend


def prepare_batches(
    tokenizer: Any,
    texts: Sequence[str],
    max_len: int,
    batch_size: int,
    window: int,
    pin: bool,
    workers: int = 1,
    first_window: int | None = None,
) -> Iterator[_Batch]:
    """Padded batches, window by window: texts of a window are tokenised once (truncated to ``max_len`` tokens incl.
    specials), sorted by length (longest first, so an out-of-memory batch shows up at once) and cut into batches
    padded to their longest text (windows of :func:`window_bounds`: ``first_window`` texts, doubling up to
    ``window``). One window holding every text gives the batches of a whole-list sort. With
    ``workers > 1`` the windows are tokenised in pieces by a thread pool, the next window while this one is
    padded; the ids (hence the batches) are the same as with one worker."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bounds = window_bounds(len(texts), window, first_window)
    piece = max(1, min(TOKENIZE_PIECE, -(-window // max(1, workers))))
    workers = max(1, min(workers, -(-min(window, len(texts)) // piece)))  # no idle threads (nor copies)
    toks = _Tokenizers(tokenizer, workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xqg-tokenize") as pool:

        def submit(w: int, stop: int) -> list[Future[list[list[int]]]]:
            return [
                pool.submit(toks.ids, list(texts[a : min(a + piece, stop)]), max_len)
                for a in range(w, stop, piece)
            ]

        ahead = deque(submit(*b) for b in bounds[:2])
        try:
            for i, (w, stop) in enumerate(bounds):
                futures = ahead.popleft()
                if i + 2 < len(bounds):
                    ahead.append(submit(*bounds[i + 2]))
                token_ids = [t for f in futures for t in f.result()]
                lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))
                order = np.argsort(-lengths, kind="stable")
                for a in range(0, len(order), batch_size):
                    idx = order[a : a + batch_size]
                    ids, mask = pad_batch([token_ids[i] for i in idx], pad_id)
                    index = torch.from_numpy(idx)
                    if pin:
                        ids, mask, index = ids.pin_memory(), mask.pin_memory(), index.pin_memory()
                    yield _Batch(idx + w, ids, mask, int(lengths[idx].sum()), index, (w, stop))
        finally:
            for futures in ahead:
                for f in futures:
                    f.cancel()


def _background(items: Iterator[_Batch], depth: int) -> Iterator[_Batch]:
    """``items`` produced by a worker thread, ``depth`` ahead (tokenisation and padding overlap the model's
    compute); the worker's exception is raised here, and it stops when the consumer does."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as e:  # handed to the consumer
            put(e)

    worker = threading.Thread(target=work, name="xqg-encode-batches", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


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
    window: int | None = None,
    workers: int | None = None,
    first_window: int | None = None,
) -> np.ndarray:
    """Embed ``texts`` with ``model.encode_query`` or ``model.encode_passage``; float32 ``(len(texts), dim)``.

    Texts are tokenized (truncated to ``max_len`` tokens incl. specials), sorted by length (longest first), padded
    per batch (right, to the batch's longest text), and the rows restored to input order. A worker thread
    tokenises and pads ahead of the model (pinned memory, non-blocking copies on a GPU); embeddings are gathered
    on the device and come back one copy per window. On the CPU all texts are sorted together; on a GPU windows
    of :data:`GPU_WINDOW` texts are (``window`` overrides), so tokenising the next window overlaps encoding this
    one; there the first window is two batches, doubling up to ``window`` (``first_window`` overrides, on either
    device; :func:`window_bounds`). ``workers`` threads tokenise (default :func:`default_workers`; the result
    does not depend on it). Half
    precision on the GPU (bf16 where supported, else fp16), fp32 on the CPU.
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
    cuda = dev.type == "cuda"
    if window is None:
        window = max(GPU_WINDOW, 4 * batch_size) if cuda else len(texts)
    window = max(1, int(window))
    workers = default_workers() if workers is None else int(workers)
    if workers <= 0:
        raise ValueError("workers must be positive")
    out: np.ndarray | None = None
    buf: torch.Tensor | None = None  # the current window's embeddings, on the device
    buf_at = 0
    was_training = model.training
    model.eval()
    tokens = 0
    start = time.perf_counter()
    first = first_window if first_window is not None else (2 * batch_size if cuda else None)
    batches = _background(
        prepare_batches(tokenizer, texts, max_len, batch_size, window, cuda, workers, first), _QUEUE_BATCHES
    )
    try:
        with (
            torch.inference_mode(),
            autocast(dev, "auto"),
            tqdm(
                disable=None,
                total=len(texts),
                unit=kind,
                unit_scale=True,
                desc=desc or f"encode {kind}s",
                leave=leave,
            ) as bar,
        ):
            for b in batches:
                emb = encode(b.ids.to(dev, non_blocking=True), b.mask.to(dev, non_blocking=True)).float()
                w0, w1 = b.window
                if out is None:
                    out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
                if buf is None or w0 != buf_at:
                    _flush(out, buf, buf_at)
                    buf_at, rows = w0, w1 - w0
                    buf = (
                        torch.empty((rows, emb.shape[1]), dtype=torch.float32, device=dev)
                        if cuda
                        else torch.from_numpy(out[w0 : w0 + rows])  # the CPU writes in place
                    )
                buf.index_copy_(0, b.index.to(dev, non_blocking=True), emb)
                tokens += b.tokens
                bar.update(len(b.rows))
                bar.set_postfix(
                    tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):,.0f}", refresh=False
                )
        assert out is not None
        _flush(out, buf, buf_at)
    finally:
        batches.close()
        model.train(was_training)
    return out


def _flush(out: np.ndarray, buf: torch.Tensor | None, at: int) -> None:
    """Copy a window's embeddings gathered on a GPU into ``out`` (on the CPU they were written in place)."""
    if buf is not None and buf.device.type != "cpu":
        out[at : at + buf.shape[0]] = buf.cpu().numpy()


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
            model, tokenizer, spec = load_retriever(self.path)
            model.to(self.device).eval()
            self._loaded = (model, tokenizer, spec)
        return self._loaded

    def max_len(self, kind: str, override: int | None = None) -> int:
        """``override``, else the checkpoint's own ``q_max_len``/``p_max_len`` (read from its spec file, without
        loading the weights, so fingerprints can use the effective value)."""
        if override:
            return int(override)
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
