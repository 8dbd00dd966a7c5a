"""Official XOR-Retrieve R@kt (AkariAsai/XORQA ``evals/eval_xor_retrieve.py``), exact, fast, and strict.

The official rule, reproduced to the bit: answers come from the question file (by id); for each prediction, in
file order, its language is the prediction's ``lang``; answers equal to ``"yes"``/``"no"`` are dropped and a
question left with none is skipped; otherwise it counts. Its ctx texts are ``nltk.word_tokenize``d in rank order,
tokens appended until there are at least ``k * 1000``; the list is cut to ``k * 1000`` and joined with single
spaces; the question is a hit when any answer is a (case-sensitive) substring. Per language ``hits / count * 100``;
macro = mean over languages with at least one counted question.

Stricter than the official script where it is silently wrong: questions of the question file that have no
prediction, and predictions whose id the question file does not know, are errors (``allow_missing`` /
``allow_unknown`` turn them into reported facts). A prediction language that disagrees with the question file's
follows the official rule (the prediction's) with a warning.

Speed without changing a single result:
- each ctx is tokenised once for all k (only the first ``max(k) * 1000`` tokens are kept; a word-tokenised
  prefix of the final string for k=2 is the same prefix for k=5), and identical texts only once;
- only the passages the rule reads are tokenised (rounds: walk each ranking with known token counts and
  estimates for unknown passages, tokenise what is missing in one parallel batch, repeat);
- run mode keeps a per-passage token cache on disk (``<cache>/tokens/<fingerprint>/``, parquet parts, written
  atomically, grown as new docids are scored), so re-scoring over the same corpus (sweeps) skips nltk entirely.
  The cache stores the space-joined tokens: nltk tokens never contain whitespace (they come from ``str.split``;
  each entry is checked), so the n-th token boundary is the n-th space.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.languages import XOR_LANGUAGES
from xqg.core.progress import progress_bar

log = logging.getLogger("xqg.evaluation.metrics")

#: Answers the official evaluation ignores (XOR-TyDi's boolean questions).
YES_NO = frozenset({"yes", "no"})
#: Bump when the token cache layout or the tokenisation changes: old caches are then never reused.
TOKEN_CACHE_VERSION = "1"
DEFAULT_KS: tuple[int, ...] = (2, 5)
_FIRST_IDS = 5  # ids named in an error message
_PARALLEL_MIN_TEXTS = 512  # below this, starting worker processes costs more than it saves
_CHUNK = 64  # texts per worker task


# --------------------------------------------------------------------------------------------------------------
# tokenisation


def ensure_punkt(nltk_data: str | Path | None = None) -> None:
    """Make sure nltk's English punkt_tab is loadable (after adding ``nltk_data`` to the search path when that
    folder exists); never fall back to another tokenizer."""
    import nltk

    if nltk_data:
        d = str(Path(nltk_data).expanduser())
        if Path(d).is_dir() and d not in nltk.data.path:
            nltk.data.path.append(d)
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        raise MissingResourceError(
            "nltk 'punkt_tab' (English) not found, needed by word_tokenize for the official XOR-Retrieve metric; "
            "install it with `python -m nltk.downloader punkt_tab` or point NLTK_DATA at a folder holding "
            "tokenizers/punkt_tab (e.g. NLTK_DATA=../shared/data/nltk_data)"
        ) from None


class Tokens(NamedTuple):
    """The first ``stored`` word tokens of a text, space-joined, and the text's full token count."""

    joined: str
    stored: int
    total: int


def tokenize_text(text: str, cap: int) -> Tokens:
    """``word_tokenize`` the whole text (as the official script does), keep at most ``cap`` tokens."""
    from nltk.tokenize import word_tokenize

    toks = word_tokenize(text)
    kept = toks[:cap]
    joined = " ".join(kept)
    if kept and joined.count(" ") != len(kept) - 1:  # a token with a space would break the cache's cut rule
        raise RuntimeError(f"nltk produced a token containing a space in {text[:80]!r}")
    return Tokens(joined, len(kept), len(toks))


def _init_worker(nltk_paths: list[str]) -> None:
    import nltk

    for p in nltk_paths:
        if p not in nltk.data.path:
            nltk.data.path.append(p)


def _tokenize_chunk(args: tuple[int, list[str], int]) -> tuple[int, list[Tokens]]:
    start, texts, cap = args
    return start, [tokenize_text(t, cap) for t in texts]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Tokenizer:
    """Tokenises batches of texts, in worker processes (all cores) when a batch is big enough.

    A ``ProcessPoolExecutor`` rather than ``multiprocessing.Pool``: when a worker dies (killed, out of memory)
    the executor reports it instead of waiting forever; the rest is then tokenised here, by the same tokenizer.
    """

    def __init__(self, cap: int, workers: int | None = None) -> None:
        self.cap = cap
        self.workers = available_cores() if not workers or workers <= 0 else int(workers)
        self._pool: Any = None
        self.tokenized = 0

    def __enter__(self) -> _Tokenizer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _get_pool(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            import nltk

            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_init_worker, initargs=(list(nltk.data.path),)
            )
        return self._pool

    def __call__(self, texts: Sequence[str], desc: str = "tokenise") -> list[Tokens]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        self.tokenized += len(texts)
        if self.workers <= 1 or len(texts) < _PARALLEL_MIN_TEXTS:
            return [tokenize_text(t, self.cap) for t in texts]
        out: list[Tokens | None] = [None] * len(texts)
        tasks = [(i, list(texts[i : i + _CHUNK]), self.cap) for i in range(0, len(texts), _CHUNK)]
        with progress_bar(total=len(texts), desc=desc, unit="psg") as bar:
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


# --------------------------------------------------------------------------------------------------------------
# on-disk token cache (run mode)


class TokenCache:
    """Per-passage tokens of one corpus, in ``<tokens_root>/<fingerprint>/part-*.parquet``.

    The fingerprint covers the corpus fingerprint, the tokenizer (nltk version, English punkt) and the layout
    version. Parts are written atomically and only ever added (a part names new entries), so concurrent
    scorers and killed runs are safe; many small parts are compacted into one. Rows with ``total == -1`` record
    docids verified to exist in the corpus but not tokenised (the unknown-docid check then costs nothing warm).
    """

    MAX_PARTS = 16

    def __init__(self, tokens_root: str | Path, corpus_fingerprint: str) -> None:
        import nltk

        from xqg.core.artifacts import ArtifactDir, fingerprint

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
        self.load()

    def _parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet")) if self.path.exists() else []

    def load(self) -> None:
        """Read the index (docids and counts) of every part; tokens stay on disk until asked for."""
        import pyarrow.parquet as pq

        for _attempt in range(3):
            index: dict[str, tuple[Path, int, int, int]] = {}
            try:
                for part in self._parts():
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
            self.sizes = {d: (e[2], e[3]) for d, e in index.items() if e[3] >= 0}
            return
        raise RuntimeError(f"token cache {self.path} keeps changing while being read")

    def entry_counts(self, docid: str) -> tuple[int, int] | None:
        """(stored, total) of a tokenised passage; None when not tokenised."""
        return self.sizes.get(docid)

    def verified(self, docid: str) -> bool:
        return docid in self.index

    def fetch(self, docids: Iterable[str]) -> dict[str, Tokens]:
        """Tokens of cached docids, reading only the rows asked for."""
        import pyarrow.parquet as pq

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

    def add(self, entries: Mapping[str, Tokens], verified: Iterable[str] = ()) -> None:
        """Write new entries (and verified-only docids) as one new part, atomically; compact when needed."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from xqg.core.artifacts import atomic_path

        new_verified = [d for d in verified if d not in self.index and d not in entries]
        if not entries and not new_verified:
            return
        self.art.begin()
        docids = list(entries) + new_verified
        table = pa.table(
            {
                "docid": pa.array(docids, pa.string()),
                "tokens": pa.array(
                    [e.joined for e in entries.values()] + [""] * len(new_verified), pa.large_string()
                ),
                "stored": pa.array(
                    [e.stored for e in entries.values()] + [0] * len(new_verified), pa.int32()
                ),
                "total": pa.array([e.total for e in entries.values()] + [-1] * len(new_verified), pa.int32()),
            }
        )
        part = self.path / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(part, suffix=".tmp") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        self._known_parts.add(part)
        for row, d in enumerate(docids):
            e = entries.get(d)
            old = self.index.get(d)
            if e is None:
                self.index[d] = (part, row, 0, -1)
            elif old is None or old[3] < 0 or e.stored > old[2]:
                self.index[d] = (part, row, e.stored, e.total)
                self.sizes[d] = (e.stored, e.total)
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
        import pyarrow as pa
        import pyarrow.parquet as pq

        from xqg.core.artifacts import atomic_path

        old_parts = [p for p in self._parts() if p in self._known_parts]  # never drop a part we have not read
        docids = list(self.index)
        tokenised = [d for d in docids if self.index[d][3] >= 0]
        toks = self.fetch(tokenised)
        table = pa.table(
            {
                "docid": pa.array(docids, pa.string()),
                "tokens": pa.array([toks[d].joined if d in toks else "" for d in docids], pa.large_string()),
                "stored": pa.array([self.index[d][2] for d in docids], pa.int32()),
                "total": pa.array([self.index[d][3] for d in docids], pa.int32()),
            }
        )
        part = self.path / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(part, suffix=".tmp") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        for p in old_parts:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.index = {d: (part, row, self.index[d][2], self.index[d][3]) for row, d in enumerate(docids)}
        self._known_parts = {part}


# --------------------------------------------------------------------------------------------------------------
# the scoring core


@dataclass
class _Item:
    """One counted question: its id, the language it is scored under, its span answers and ranked keys."""

    qid: str
    lang: str
    answers: list[str]
    keys: Sequence[Hashable]


def _usable(counts: tuple[int, int] | None, cap: int) -> bool:
    return counts is not None and counts[0] >= min(counts[1], cap)


def _resolve(
    items: Sequence[_Item],
    counts_of: Callable[[Hashable], tuple[int, int] | None],
    strings_of: Callable[[Hashable], str | None],
    text_of: Callable[[Hashable], str],
    tokenize: Callable[[list[str]], list[Tokens]],
    store: Callable[[dict[Hashable, Tokens]], None],
    caps: Sequence[int],
) -> None:
    """Tokenise exactly what the official rule reads, and no more: rounds of (walk each ranking with known
    token counts and estimates for unknown passages, tokenise the unknown in one parallel batch, store).

    Round 0 reaches for the smallest cap only; afterwards a question whose known prefix already contains an
    answer is settled (that prefix lies inside every longer cut, so the larger k are hits too) and needs no
    more passages. On return every question either has all passages up to the largest cap tokenised, or a
    tokenised prefix that contains an answer (:func:`_item_hits` relies on this).
    """
    max_cap = caps[-1]
    chars_per_token = 4.5  # first guess, deliberately low: more rounds rather than wasted tokenisation
    pending = list(range(len(items)))
    rnd = 0
    while pending:
        horizon = caps[min(rnd, len(caps) - 1)]
        request: dict[Hashable, str] = {}
        still: list[int] = []
        for qi in pending:
            item = items[qi]
            keys = item.keys
            acc = 0
            i = 0
            while i < len(keys):
                c = counts_of(keys[i])
                if not _usable(c, max_cap):
                    break
                acc += c[1]  # type: ignore[index]
                i += 1
                if acc >= max_cap:
                    break
            if acc >= max_cap or i == len(keys):
                continue  # complete
            if _prefix_hit(item, keys[:i], strings_of):
                continue  # settled early
            est = float(acc)
            for key in keys[i:]:
                c = counts_of(key)
                if _usable(c, max_cap):
                    est += c[1]  # type: ignore[index]
                else:
                    text = request.get(key)
                    if text is None:
                        text = request[key] = text_of(key)
                    est += max(1.0, len(text) / chars_per_token)
                if est >= horizon:
                    break
            still.append(qi)
        rnd += 1
        if not request:
            return
        keys_req = list(request)
        texts = [request[k] for k in keys_req]
        toks = tokenize(texts)
        n_chars = sum(len(t) for t, e in zip(texts, toks, strict=True) if e.total)
        n_toks = sum(e.total for e in toks)
        if n_toks:
            chars_per_token = 0.9 * n_chars / n_toks
        store(dict(zip(keys_req, toks, strict=True)))
        pending = still


def _prefix_hit(
    item: _Item, prefix: Sequence[Hashable], strings_of: Callable[[Hashable], str | None]
) -> bool:
    """Whether an answer occurs in the space-joined tokens of ``prefix`` (False when a string is not at hand)."""
    pieces = []
    for key in prefix:
        s = strings_of(key)
        if s is None:
            return False
        if s:
            pieces.append(s)
    concat = " ".join(pieces)
    return any(a in concat for a in item.answers)


def _first_tokens(joined: str, n: int) -> str:
    """The first ``n`` space-separated tokens of ``joined``."""
    if n <= 0:
        return ""
    parts = joined.split(" ", n)
    if len(parts) <= n:
        return joined
    return joined[: len(joined) - len(parts[-1]) - 1]


def _item_hits(item: _Item, entries: Mapping[Hashable, Tokens], caps: Sequence[int]) -> list[bool]:
    """Hit per cap (ascending): the official concat string for the largest cap, cut points for the others."""
    max_cap = caps[-1]
    pieces: list[str] = []
    length = 0  # characters of " ".join(pieces)
    ends: list[int | None] = [None] * len(caps)
    used = 0
    for key in item.keys:
        e = entries.get(key)
        if e is None:  # settled early: the tokenised prefix already holds an answer
            break
        if e.total == 0:
            continue
        take = min(e.total, max_cap - used)
        piece = e.joined if take >= e.stored else _first_tokens(e.joined, take)
        start = length + (1 if pieces else 0)
        for ci, c in enumerate(caps):
            if ends[ci] is None and used < c <= used + take:
                ends[ci] = start + len(_first_tokens(piece, c - used))
        pieces.append(piece)
        length = start + len(piece)
        used += take
        if used >= max_cap:
            break
    concat = " ".join(pieces)
    cut = [len(concat) if e is None else e for e in ends]
    hits = [False] * len(caps)
    for a in item.answers:
        pos = concat.find(a)
        if pos < 0:
            continue
        end = pos + len(a)
        for ci in range(len(caps)):
            if end <= cut[ci]:
                hits[ci] = True
    return hits


def _used_keys(
    item: _Item, counts_of: Callable[[Hashable], tuple[int, int] | None], cap: int
) -> list[Hashable]:
    """The passages :func:`_item_hits` reads: the tokenised prefix, up to ``cap`` tokens."""
    used: list[Hashable] = []
    acc = 0
    for key in item.keys:
        c = counts_of(key)
        if not _usable(c, cap):
            break
        used.append(key)
        acc += c[1]  # type: ignore[index]
        if acc >= cap:
            break
    return used


# --------------------------------------------------------------------------------------------------------------
# results


def lang_order(langs: Iterable[str]) -> list[str]:
    """The paper's column order (ar bn fi ja ko ru te) first, any other language after, alphabetically."""
    s = set(langs)
    return [x for x in XOR_LANGUAGES if x in s] + sorted(s - set(XOR_LANGUAGES))


def metric_name(k: int) -> str:
    return f"R@{k}kt"


@dataclass
class EvalResult:
    """R@kt per language and macro, counts, and per-question hits (for significance tests)."""

    ks: tuple[int, ...]
    counts: dict[str, int]
    hits: dict[int, dict[str, bool]]  # k -> qid -> hit (counted questions, scoring order)
    question_lang: dict[str, str]  # qid -> language it was scored under
    missing_ids: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)  # yes/no-only questions
    # (qid, prediction's lang, question file's lang) where they disagree
    lang_mismatch: list[tuple[str, str, str]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    kind: str = "predictions"  # what was scored: "predictions" or "run"
    stats: dict[str, float] = field(default_factory=dict)  # timings and tokenisation counts

    @property
    def languages(self) -> list[str]:
        return lang_order(lang for lang, n in self.counts.items() if n > 0)

    @property
    def per_language(self) -> dict[int, dict[str, float]]:
        """k -> language -> R@kt in percent, computed as the official script does: hits / count * 100."""
        out: dict[int, dict[str, float]] = {}
        for k in self.ks:
            h: dict[str, int] = dict.fromkeys(self.counts, 0)
            for qid, hit in self.hits[k].items():
                if hit:
                    h[self.question_lang[qid]] += 1
            out[k] = {lang: (h[lang] / self.counts[lang]) * 100 for lang in self.languages}
        return out

    @property
    def macro(self) -> dict[int, float]:
        """k -> mean over languages with count > 0 (``statistics.mean``: exactly rounded, so order-free)."""
        return {k: statistics.mean(v.values()) for k, v in self.per_language.items()}

    def to_json(self, details: bool = False) -> dict[str, Any]:
        """``{"R@2kt": {lang: .., "macro": .., "count": {lang: n}}, ...}``; ``details`` adds the ids that were
        missing, unknown, skipped (yes/no) and the language disagreements."""
        per = self.per_language
        macro = self.macro
        out: dict[str, Any] = {}
        for k in self.ks:
            block: dict[str, Any] = dict(per[k])
            block["macro"] = macro[k]
            block["count"] = {lang: self.counts[lang] for lang in self.languages}
            out[metric_name(k)] = block
        if details:
            out["details"] = {
                "missing_ids": list(self.missing_ids),
                "unknown_ids": list(self.unknown_ids),
                "skipped_yes_no_ids": list(self.skipped_ids),
                "lang_mismatch": [
                    {"id": q, "prediction": p, "questions": f} for q, p, f in self.lang_mismatch
                ],
                "sources": dict(self.sources),
            }
        return out

    def table(self, name: str = "system", fmt: str = "text", decimals: int = 2) -> str:
        from xqg.evaluation.report import paper_table

        return paper_table({name: self.to_json()}, fmt=fmt, decimals=decimals)

    def notes(self) -> list[str]:
        """Human-readable facts worth printing under the table (allowed missing/unknown ids, lang warnings)."""
        out = []
        if self.missing_ids:
            out.append(
                f"{len(self.missing_ids)} questions had no {'run entry' if self.kind == 'run' else 'prediction'} "
                "and were not scored (allowed): " + _first_ids(self.missing_ids)
            )
        if self.unknown_ids:
            out.append(
                f"{len(self.unknown_ids)} predictions have ids unknown to the question file and were ignored "
                f"(allowed): " + _first_ids(self.unknown_ids)
            )
        if self.lang_mismatch:
            out.append(_mismatch_message(self.lang_mismatch))
        return out


def _first_ids(ids: Sequence[str]) -> str:
    more = f", ... (+{len(ids) - _FIRST_IDS} more)" if len(ids) > _FIRST_IDS else ""
    return ", ".join(ids[:_FIRST_IDS]) + more


def _mismatch_message(mm: Sequence[tuple[str, str, str]]) -> str:
    ex = ", ".join(f"{q} ({p} vs {f})" for q, p, f in mm[:_FIRST_IDS])
    return (
        f"{len(mm)} predictions give a language other than the question file's; scored under the prediction's "
        f"language as the official script does: {ex}"
    )


# --------------------------------------------------------------------------------------------------------------
# inputs


class Prediction(NamedTuple):
    """One item of the official prediction format ``{id, lang, ctxs: [passage text, ...]}``."""

    qid: str
    lang: str
    ctxs: Sequence[str]


def _questions_from(questions: str | Path | Sequence[Any]) -> tuple[list[Any], str]:
    if isinstance(questions, str | Path):
        from xqg.data.formats.xor import read_xor_questions

        return read_xor_questions(questions), str(questions)
    qs = list(questions)
    seen: set[str] = set()
    for q in qs:
        if q.qid in seen:
            raise XqgInputError(f"duplicate question id {q.qid!r}", field="id")
        if not q.answers:
            raise XqgInputError(f"question {q.qid!r} has an empty answer list", field="answers")
        seen.add(q.qid)
    return qs, "<questions>"


def _line_of_item(text: str, index: int) -> int | None:
    """Line where the ``index``-th element of a top-level JSON array starts (only computed for error messages)."""
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    for i in range(index + 1):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if i == index:
            return text.count("\n", 0, pos) + 1
        try:
            _, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
    return None  # pragma: no cover


def _validate_prediction(obj: Any, path: str, line: int | None, where: str) -> Prediction:
    def err(f: str | None, msg: str) -> XqgInputError:
        return XqgInputError(f"{where}: {msg}" if line is None else msg, path=path, line=line, field=f)

    if not isinstance(obj, dict):
        raise err(None, f"expected a JSON object {{id, lang, ctxs}}, got {type(obj).__name__}")
    for f in ("id", "lang", "ctxs"):
        if f not in obj or obj[f] is None:
            raise err(f, "missing")
    qid = obj["id"]
    if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
        raise err("id", f"expected a non-empty string id, got {qid!r}")
    lang = obj["lang"]
    if not isinstance(lang, str) or not lang.strip():
        raise err("lang", f"expected a language code, got {lang!r}")
    ctxs = obj["ctxs"]
    if not isinstance(ctxs, list):
        raise err("ctxs", f"expected a list of passage texts, got {type(ctxs).__name__}")
    for i, c in enumerate(ctxs):
        if not isinstance(c, str):
            raise err(f"ctxs[{i}]", f"expected a passage text (str), got {type(c).__name__}")
    return Prediction(str(qid), lang.strip(), ctxs)


def read_predictions(path: str | Path) -> list[Prediction]:
    """Official prediction file: a JSON array ``[{id, lang, ctxs}]`` (or JSONL of such objects), plain or gzip.

    Malformed JSON, missing or mistyped fields and duplicate ids are one-line errors naming file and line."""
    from xqg.data.formats.jsonl import open_text, parse_jsonl_lines

    p = str(path)
    try:
        with open_text(path) as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise XqgInputError(f"not valid UTF-8 ({e.reason})", path=p) from None
    except (EOFError, OSError) as e:
        raise XqgInputError(f"cannot read ({e})", path=p) from None
    stripped = text.lstrip()
    preds: list[Prediction] = []
    lines: list[int | None] = []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise XqgInputError(
                f"malformed JSON ({e.msg} at column {e.colno})", path=p, line=e.lineno
            ) from None
        for i, obj in enumerate(data):
            try:
                preds.append(_validate_prediction(obj, p, None, f"item {i}"))
            except XqgInputError as e:
                line = _line_of_item(text, i)
                if line is None:
                    raise
                raise XqgInputError(
                    f"item {i}: " + e.message.split(": ", 1)[-1], path=p, line=line, field=e.field
                ) from None
            lines.append(None)
    elif stripped.startswith("{"):
        for lineno, _raw, obj in parse_jsonl_lines(text.splitlines(), p):
            preds.append(_validate_prediction(obj, p, lineno, ""))
            lines.append(lineno)
    elif not stripped:
        raise XqgInputError("empty predictions file", path=p)
    else:
        raise XqgInputError(
            "not a predictions file: expected a JSON array [{id, lang, ctxs}] or JSONL", path=p, line=1
        )
    seen: dict[str, int] = {}
    for i, pr in enumerate(preds):
        if pr.qid in seen:
            j = seen[pr.qid]
            line = lines[i] if lines[i] is not None else _line_of_item(text, i)
            first = f"line {lines[j]}" if lines[j] is not None else f"item {j}"
            raise XqgInputError(
                f"duplicate prediction id {pr.qid!r} (first at {first})", path=p, line=line, field="id"
            )
        seen[pr.qid] = i
    return preds


def _predictions_from(predictions: str | Path | Sequence[Any]) -> tuple[list[Prediction], str]:
    if isinstance(predictions, str | Path):
        return read_predictions(predictions), str(predictions)
    out: list[Prediction] = []
    seen: set[str] = set()
    for i, obj in enumerate(predictions):
        pr = (
            obj
            if isinstance(obj, Prediction)
            else _validate_prediction(obj, "<predictions>", None, f"item {i}")
        )
        if pr.qid in seen:
            raise XqgInputError(f"duplicate prediction id {pr.qid!r}", path="<predictions>", field="id")
        seen.add(pr.qid)
        out.append(pr)
    return out, "<predictions>"


def _plan(
    questions: Sequence[Any],
    entries: Sequence[tuple[str, str | None, Sequence[Hashable]]],
    *,
    q_src: str,
    p_src: str,
    kind: str,
    allow_missing: bool,
    allow_unknown: bool,
) -> tuple[list[_Item], EvalResult]:
    """Apply the official rules that need no tokens: which predictions count, under which language."""
    by_id = {q.qid: q for q in questions}
    present = {qid for qid, _, _ in entries}
    unknown = [qid for qid, _, _ in entries if qid not in by_id]
    if unknown and not allow_unknown:
        raise XqgInputError(
            f"{len(unknown)} ids of the {kind} are not in the question file {q_src} (first: {_first_ids(unknown)}); "
            f"wrong question file? (allow_unknown / --allow-unknown ignores them, as the official script does)",
            path=p_src,
        )
    missing = [q.qid for q in questions if q.qid not in present]
    if missing and not allow_missing:
        raise XqgInputError(
            f"{len(missing)} of {len(questions)} questions of {q_src} have no "
            f"{'entry in the run' if kind == 'run' else 'prediction'} (first: "
            f"{_first_ids(missing)}); the official script would silently drop them from the denominator "
            f"(allow_missing / --allow-missing scores only the present ones and reports the rest)",
            path=p_src,
        )
    items: list[_Item] = []
    skipped: list[str] = []
    mismatch: list[tuple[str, str, str]] = []
    counts: dict[str, int] = {}
    for qid, lang, keys in entries:
        q = by_id.get(qid)
        if q is None:
            continue
        if lang is None:
            lang = q.lang
        elif lang != q.lang:
            mismatch.append((qid, lang, q.lang))
        spans = [a for a in q.answers if a not in YES_NO]
        if not spans:
            skipped.append(qid)
            continue
        if lang not in counts:
            counts[lang] = 0
        counts[lang] += 1
        items.append(_Item(qid, lang, spans, keys))
    if mismatch:
        log.warning("%s", _mismatch_message(mismatch))
    result = EvalResult(
        ks=(),
        counts=counts,
        hits={},
        question_lang={it.qid: it.lang for it in items},
        missing_ids=missing,
        unknown_ids=unknown,
        skipped_ids=skipped,
        lang_mismatch=mismatch,
        sources={"questions": q_src, kind: p_src},
        kind=kind,
    )
    return items, result


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in ks}))
    if not out or out[0] <= 0:
        raise XqgInputError(
            f"ks must be positive integers (thousands of tokens), got {list(ks)!r}", field="ks"
        )
    return out


def _finish(
    items: Sequence[_Item], entries: Mapping[Hashable, Tokens], ks: tuple[int, ...], res: EvalResult
) -> None:
    caps = [k * 1000 for k in ks]
    res.ks = ks
    res.hits = {k: {} for k in ks}
    for it in items:
        hs = _item_hits(it, entries, caps)
        for k, h in zip(ks, hs, strict=True):
            res.hits[k][it.qid] = h


def evaluate_predictions(
    questions: str | Path | Sequence[Any],
    predictions: str | Path | Sequence[Any],
    ks: Sequence[int] = DEFAULT_KS,
    allow_missing: bool = False,
    *,
    allow_unknown: bool = False,
    workers: int | None = None,
    nltk_data: str | Path | None = None,
) -> EvalResult:
    """Score an official prediction file (``[{id, lang, ctxs: [text, ...]}]``) against XOR-TyDi questions.

    ``questions``: a path or ``Question`` records; ``predictions``: a path or a list of dicts/``Prediction``.
    """
    t0 = time.perf_counter()
    ks = _check_ks(ks)
    ensure_punkt(nltk_data)
    qs, q_src = _questions_from(questions)
    preds, p_src = _predictions_from(predictions)
    # identical ctx texts are tokenised once: key = index of the distinct text
    text_ids: dict[str, int] = {}
    texts: list[str] = []

    def key_of(t: str) -> int:
        i = text_ids.get(t)
        if i is None:
            i = text_ids[t] = len(texts)
            texts.append(t)
        return i

    entries = [(p.qid, p.lang, [key_of(c) for c in p.ctxs]) for p in preds]
    items, res = _plan(
        qs,
        entries,
        q_src=q_src,
        p_src=p_src,
        kind="predictions",
        allow_missing=allow_missing,
        allow_unknown=allow_unknown,
    )
    cap = ks[-1] * 1000
    table: dict[Hashable, Tokens] = {}

    def counts_of(key: Hashable) -> tuple[int, int] | None:
        e = table.get(key)
        return None if e is None else (e.stored, e.total)

    with _Tokenizer(cap, workers) as tok:
        _resolve(
            items,
            counts_of,
            lambda k: e.joined if (e := table.get(k)) is not None else None,
            lambda k: texts[k],  # type: ignore[index]
            tok,
            table.update,
            [k * 1000 for k in ks],
        )
        n_tok = tok.tokenized
    _finish(items, table, ks, res)
    res.stats = {"seconds": time.perf_counter() - t0, "tokenized": n_tok, "distinct_ctxs": len(texts)}
    return res


def _docids_of(docs: Sequence[Any]) -> list[str]:
    """Docids of a ranked list given as ``[(docid, score), ...]`` or ``[docid, ...]``."""
    if not docs:
        return []
    if isinstance(docs[0], str):
        return [str(d) for d in docs]
    if isinstance(docs[0][0], str):
        return [d[0] for d in docs]
    return [str(d[0]) for d in docs]


def _tokens_root(store: Any, cache_dir: str | Path | None, token_cache_dir: str | Path | None) -> Path | None:
    """``token_cache_dir``, else ``<cache_dir>/tokens``, else next to the corpus store (``<root>/corpus/<fp>`` ->
    ``<root>/tokens``), else None (no disk cache)."""
    if token_cache_dir:
        return Path(token_cache_dir)
    if cache_dir:
        return Path(cache_dir) / "tokens"
    store_path = getattr(store, "path", None)
    if isinstance(store_path, Path) and store_path.parent.name == "corpus":
        return store_path.parent.parent / "tokens"
    return None


def score_run(
    questions: str | Path | Sequence[Any],
    run: str | Path | Mapping[str, Sequence[Any]],
    corpus: Any,
    ks: Sequence[int] = DEFAULT_KS,
    cache_dir: str | Path | None = None,
    allow_missing: bool = False,
    *,
    allow_unknown: bool = False,
    token_cache_dir: str | Path | None = None,
    workers: int | None = None,
    nltk_data: str | Path | None = None,
) -> EvalResult:
    """Score a run (Tevatron/TREC file or ``{qid: [(docid, score), ...]}`` ranked) over a corpus (path or
    ``CorpusStore``); ctx = passage text without title, as the reference evaluation did.

    Tokens are cached per passage in ``token_cache_dir`` (default ``<cache_dir>/tokens``, else beside the
    corpus store) under a fingerprint of the corpus and tokenizer. Unknown docids are an error. Each question's language is the question file's (a run carries none).
    """
    t0 = time.perf_counter()
    ks = _check_ks(ks)
    ensure_punkt(nltk_data)
    qs, q_src = _questions_from(questions)
    if isinstance(run, str | Path):
        from xqg.data.formats.runs import read_run

        run_map, r_src = read_run(run), str(run)
    else:
        run_map, r_src = run, "<run>"
    if isinstance(corpus, str | Path):
        from xqg.data.corpus import open_corpus

        store = open_corpus(corpus, cache_dir)
    else:
        store = corpus
    c_src = str(getattr(store, "source", corpus))
    entries = [(qid, None, _docids_of(docs)) for qid, docs in run_map.items()]
    items, res = _plan(
        qs,
        entries,
        q_src=q_src,
        p_src=r_src,
        kind="run",
        allow_missing=allow_missing,
        allow_unknown=allow_unknown,
    )
    res.sources["corpus"] = c_src
    t_read = time.perf_counter()

    tokens_root = _tokens_root(store, cache_dir, token_cache_dir)
    cache = TokenCache(tokens_root, store.fingerprint) if tokens_root is not None else None

    # every docid of the run must be in the corpus (those the cache has seen are known to be)
    all_docids: set[Any] = set()
    for it in items:
        all_docids.update(it.keys)
    to_check = sorted(all_docids - cache.index.keys() if cache is not None else all_docids)
    unknown = {d for d in to_check if not store.has(d)}
    if unknown:
        unknown_docs = list(dict.fromkeys(d for it in items for d in it.keys if d in unknown))
        raise XqgInputError(
            f"{len(unknown_docs)} docids of the run are not in the corpus {c_src} (first: "
            f"{_first_ids(unknown_docs)}); was the run made over another corpus?",  # type: ignore[arg-type]
            path=r_src,
        )

    cap = ks[-1] * 1000
    mem: dict[Hashable, Tokens] = {}
    known: dict[Hashable, tuple[int, int]] = dict(cache.sizes) if cache is not None else {}
    counts_of = known.get

    def store_new(new: dict[Hashable, Tokens]) -> None:
        mem.update(new)
        known.update((k, (e.stored, e.total)) for k, e in new.items())
        if cache is not None:
            cache.add(new)  # type: ignore[arg-type]

    def fetch_used() -> int:
        """Bring the cached tokens of every question's usable prefix into memory (one read per part)."""
        need = list({k for it in items for k in _used_keys(it, counts_of, cap) if k not in mem})
        if need and cache is not None:
            mem.update(cache.fetch(need))  # type: ignore[arg-type]
        return len(need)

    from_cache = fetch_used()
    with _Tokenizer(cap, workers) as tok:
        _resolve(
            items,
            counts_of,
            lambda k: e.joined if (e := mem.get(k)) is not None else None,
            lambda d: store.get(d).text,
            tok,
            store_new,
            [k * 1000 for k in ks],
        )
        n_tok = tok.tokenized
    if cache is not None and to_check:
        cache.add({}, verified=to_check)  # type: ignore[arg-type]
    t_tok = time.perf_counter()
    from_cache += fetch_used()
    _finish(items, mem, ks, res)
    res.stats = {
        "seconds": time.perf_counter() - t0,
        "read_seconds": t_read - t0,
        "tokenize_seconds": t_tok - t_read,
        "tokenized": n_tok,
        "from_cache": from_cache,
    }
    if cache is not None:
        res.sources["token_cache"] = str(cache.path)
    return res


def iter_counted(result: EvalResult, k: int) -> Iterator[tuple[str, str, bool]]:
    """(qid, lang, hit) for every counted question at ``k``, in scoring order."""
    for qid, hit in result.hits[k].items():
        yield qid, result.question_lang[qid], hit
