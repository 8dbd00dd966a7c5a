"""The official XOR-Retrieve R@kt rule (AkariAsai/XORQA ``evals/eval_xor_retrieve.py``), reproduced to the bit.

For each counted question, its ctx texts are ``nltk.word_tokenize``d in rank order, tokens appended until there
are at least ``k * 1000``; the list is cut to ``k * 1000`` and joined with single spaces; the question is a hit
when any answer (``"yes"``/``"no"`` dropped) is a case-sensitive substring.

Here: each ctx is tokenised once for all k (only the first ``max(k) * 1000`` tokens are kept; a word-tokenised
prefix of the final string for k=2 is the same prefix for k=5), and only the passages the rule reads are
tokenised (:func:`resolve`: rounds of walking each ranking with known token counts and estimates for unknown
passages, tokenising what is missing in one batch). nltk tokens never contain whitespace (checked per text), so
the n-th token boundary of a space-joined token string is its n-th space.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import nltk
from nltk.tokenize import word_tokenize

from xqg.core.errors import MissingResourceError

#: Answers the official evaluation ignores (XOR-TyDi's boolean questions).
YES_NO = frozenset({"yes", "no"})
DEFAULT_KS: tuple[int, ...] = (2, 5)


def ensure_punkt(nltk_data: str | Path | None = None) -> None:
    """Make sure nltk's English punkt_tab is loadable (after adding ``nltk_data`` to the search path when that
    folder exists); never fall back to another tokenizer."""
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
    toks = word_tokenize(text)
    kept = toks[:cap]
    joined = " ".join(kept)
    if kept and joined.count(" ") != len(kept) - 1:  # a token with a space would break the cache's cut rule
        raise RuntimeError(f"nltk produced a token containing a space in {text[:80]!r}")
    return Tokens(joined, len(kept), len(toks))


@dataclass
class Item:
    """One counted question: its id, the language it is scored under, its span answers and ranked keys."""

    qid: str
    lang: str
    answers: list[str]
    keys: Sequence[Hashable]


def _usable(counts: tuple[int, int] | None, cap: int) -> bool:
    return counts is not None and counts[0] >= min(counts[1], cap)


def resolve(
    items: Sequence[Item],
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
    tokenised prefix that contains an answer (:func:`item_hits` relies on this).
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


def _prefix_hit(item: Item, prefix: Sequence[Hashable], strings_of: Callable[[Hashable], str | None]) -> bool:
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


def item_hits(item: Item, entries: Mapping[Hashable, Tokens], caps: Sequence[int]) -> list[bool]:
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


def used_keys(
    item: Item, counts_of: Callable[[Hashable], tuple[int, int] | None], cap: int
) -> list[Hashable]:
    """The passages :func:`item_hits` reads: the tokenised prefix, up to ``cap`` tokens."""
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
