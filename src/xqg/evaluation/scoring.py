"""Score a prediction file or a run (+ corpus) with the official XOR-Retrieve R@kt, strictly.

Answers come from the question file (by id); for each prediction, in file order, its language is the
prediction's ``lang`` (a run carries none: the question file's); a question whose answers are all yes/no is
skipped; otherwise it counts (see :mod:`xqg.evaluation.xor_rule` for the hit).

Stricter than the official script where it is silently wrong: questions of the question file that have no
prediction, and predictions whose id the question file does not know, are errors (``allow_missing`` /
``allow_unknown`` turn them into reported facts). A prediction language that disagrees with the question file's
follows the official rule (the prediction's) with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xqg.core.errors import XqgInputError
from xqg.data.corpus import CorpusStore, open_corpus
from xqg.data.formats.predictions import predictions_from
from xqg.data.formats.runs import read_run
from xqg.data.formats.xor import read_xor_questions
from xqg.data.records import Question
from xqg.evaluation.result import EvalResult, first_ids, mismatch_message
from xqg.evaluation.token_cache import ParallelTokenizer, TokenCache
from xqg.evaluation.xor_rule import (
    DEFAULT_KS,
    YES_NO,
    Item,
    Tokens,
    ensure_punkt,
    item_hits,
    resolve,
    used_keys,
)

log = logging.getLogger(__name__)

Ranked = Sequence[Any]  # [(docid, score), ...] or [docid, ...], best first


def _questions_from(questions: str | Path | Sequence[Question]) -> tuple[list[Question], str]:
    if isinstance(questions, str | Path):
        qs = read_xor_questions(questions)
        if not qs:
            raise XqgInputError("no questions in the question file (it is empty)", path=questions)
        return qs, str(questions)
    qs = list(questions)
    seen: set[str] = set()
    for q in qs:
        if q.qid in seen:
            raise XqgInputError(f"duplicate question id {q.qid!r}", field="id")
        if not q.answers:
            raise XqgInputError(f"question {q.qid!r} has an empty answer list", field="answers")
        seen.add(q.qid)
    return qs, "<questions>"


def _plan(
    questions: Sequence[Question],
    entries: Sequence[tuple[str, str | None, Sequence[Hashable]]],
    *,
    q_src: str,
    p_src: str,
    kind: str,
    allow_missing: bool,
    allow_unknown: bool,
) -> tuple[list[Item], EvalResult]:
    """Apply the official rules that need no tokens: which predictions count, under which language."""
    by_id = {q.qid: q for q in questions}
    present = {qid for qid, _, _ in entries}
    unknown = [qid for qid, _, _ in entries if qid not in by_id]
    if unknown and not allow_unknown:
        raise XqgInputError(
            f"{len(unknown)} ids of the {kind} are not in the question file {q_src} (first: {first_ids(unknown)}); "
            f"wrong question file? (allow_unknown / --allow-unknown ignores them, as the official script does)",
            path=p_src,
        )
    missing = [q.qid for q in questions if q.qid not in present]
    if missing and not allow_missing:
        raise XqgInputError(
            f"{len(missing)} of {len(questions)} questions of {q_src} have no "
            f"{'entry in the run' if kind == 'run' else 'prediction'} (first: "
            f"{first_ids(missing)}); the official script would silently drop them from the denominator "
            f"(allow_missing / --allow-missing scores only the present ones and reports the rest)",
            path=p_src,
        )
    items: list[Item] = []
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
        items.append(Item(qid, lang, spans, keys))
    if mismatch:
        log.warning("%s", mismatch_message(mismatch))
    if not items:
        raise XqgInputError(_nothing_to_score(len(entries), len(skipped), kind, q_src), path=p_src)
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


def _nothing_to_score(n_entries: int, n_skipped: int, kind: str, q_src: str) -> str:
    """Why an evaluation set is empty (R@kt of no question is undefined, never 0)."""
    if n_entries == 0:
        return (
            "nothing to score: the run has no entries"
            if kind == "run"
            else "nothing to score: no predictions"
        )
    if n_skipped:
        return (
            f"nothing to score: the answers of all {n_skipped} questions of {q_src} that the {kind} covers are "
            "yes/no, which the official rule skips"
        )
    return f"nothing to score: none of the {n_entries} ids of the {kind} is a question of {q_src}"


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in ks}))
    if not out or out[0] <= 0:
        raise XqgInputError(
            f"ks must be positive integers (thousands of tokens), got {list(ks)!r}", field="ks"
        )
    return out


def _finish(
    items: Sequence[Item], entries: Mapping[Hashable, Tokens], ks: tuple[int, ...], res: EvalResult
) -> None:
    caps = [k * 1000 for k in ks]
    res.ks = ks
    res.hits = {k: {} for k in ks}
    for it in items:
        hs = item_hits(it, entries, caps)
        for k, h in zip(ks, hs, strict=True):
            res.hits[k][it.qid] = h


def evaluate_predictions(
    questions: str | Path | Sequence[Question],
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
    Identical ctx texts are tokenised once.
    """
    t0 = time.perf_counter()
    ks = _check_ks(ks)
    ensure_punkt(nltk_data)
    qs, q_src = _questions_from(questions)
    preds, p_src = predictions_from(predictions)
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

    with ParallelTokenizer(cap, workers) as tok:
        resolve(
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


def _docids_of(docs: Ranked) -> list[str]:
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
    questions: str | Path | Sequence[Question],
    run: str | Path | Mapping[str, Ranked],
    corpus: str | Path | CorpusStore,
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
    corpus store) under a fingerprint of the corpus and tokenizer. Unknown docids are an error. Each question's
    language is the question file's (a run carries none).
    """
    t0 = time.perf_counter()
    ks = _check_ks(ks)
    ensure_punkt(nltk_data)
    qs, q_src = _questions_from(questions)
    if isinstance(run, str | Path):
        run_map, r_src = read_run(run), str(run)
    else:
        run_map, r_src = run, "<run>"
    store = open_corpus(corpus, cache_dir) if isinstance(corpus, str | Path) else corpus
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
    cache = TokenCache.open(tokens_root, store.fingerprint) if tokens_root is not None else None

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
            f"{first_ids(unknown_docs)}); was the run made over another corpus?",
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
        need = list({k for it in items for k in used_keys(it, counts_of, cap) if k not in mem})
        if need and cache is not None:
            mem.update(cache.fetch(need))  # type: ignore[arg-type]
        return len(need)

    from_cache = fetch_used()
    with ParallelTokenizer(cap, workers) as tok:
        resolve(
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
        cache.add({}, verified=to_check)
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
