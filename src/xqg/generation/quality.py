"""How good generated queries are, measured right after generation: whether xQG can help depends on them, and
R@kt alone cannot tell a weak generator from a weak fusion.

Per language (and the macro mean over languages), over a deterministic sample of passages:
- ``right_script``: share of queries whose letters (the passage's entity name left out, since names often stay
  in Latin script) are mostly in the language's script (:func:`xqg.core.languages.script_share` >= 0.5);
- ``names_entity``: share naming the passage's entity (its title, case-folded), where the data knows titles;
- ``distinct_1`` / ``distinct_2``: distinct unigrams (bigrams) over all unigrams (bigrams) of the language's
  queries (words; characters for scripts written without spaces: ja, zh, th);
- ``equals_eval``: share equal (after stripping) to an evaluation question's text, i.e. a leak of the question
  the retriever is scored on;
- with templates (the synthetic world): ``matches_template`` (the query is one of the world's question
  phrasings for some entity) and ``right_relation`` (it asks for a fact the passage states).

Everything here is a pure function of texts; :mod:`xqg.tasks.generate` feeds it the store and writes the summary.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from xqg.core.languages import XOR_LANGUAGES, script_share

#: Languages written without spaces between words: distinct-n counts characters there.
UNSPACED = frozenset({"ja", "zh", "th"})
SCRIPT_THRESHOLD = 0.5
MACRO = "macro"


def tokens(text: str, lang: str) -> list[str]:
    """Words (whitespace split), or characters (spaces dropped) for languages in :data:`UNSPACED`."""
    if lang in UNSPACED:
        return [c for c in text if not c.isspace()]
    return text.split()


def distinct_n(texts: Iterable[str], lang: str, n: int) -> float:
    """Distinct n-grams over all n-grams of ``texts`` (0 when there is none), as Li et al. (2016) define it."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for t in texts:
        toks = tokens(t, lang)
        grams = list(zip(*(toks[i:] for i in range(n)), strict=False))  # the n-grams, in order
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def right_script(text: str, lang: str, entity: str | None = None) -> bool:
    """Whether ``text`` is mostly in ``lang``'s script, the entity's name (kept in Latin script) left out."""
    if entity:
        text = re.sub(re.escape(entity), " ", text, flags=re.IGNORECASE)
    return script_share(text, lang) >= SCRIPT_THRESHOLD


def names_entity(text: str, entity: str) -> bool:
    """Whether ``text`` names ``entity`` (case-folded substring; an empty name never matches)."""
    return bool(entity) and entity.casefold() in text.casefold()


def normalize(text: str) -> str:
    """The form compared with evaluation questions: surrounding whitespace stripped, inner runs collapsed."""
    return " ".join(text.split())


def comparable(text: str) -> str:
    """The form two questions are compared in: :func:`normalize` after Unicode NFKC, because generators' tokenizers
    (T5's SentencePiece, for one) apply NFKC, so a Japanese template's full-width ``？`` comes back as ``?``."""
    return unicodedata.normalize("NFKC", normalize(text))


def _spaces(text: str) -> str:
    """Inner whitespace runs collapsed, edges kept (template parts around ``{e}``), in NFKC (:func:`comparable`)."""
    return unicodedata.normalize("NFKC", re.sub(r"\s+", " ", text))


class TemplateMatcher:
    """Recognises questions written from templates (``language -> relation -> phrasings`` with ``{e}`` for the
    entity, as the synthetic world's ``templates/questions.json``): :meth:`match` gives (relation, entity)."""

    def __init__(self, templates: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        self.templates = {lang: {rel: list(ps) for rel, ps in by.items()} for lang, by in templates.items()}
        # (literal start, literal end, pattern, relation): the literals rule most phrasings out before the regex
        self._patterns: dict[str, list[tuple[str, str, re.Pattern[str], str]]] = {}
        for lang, by_rel in self.templates.items():
            pats = []
            for rel, phrasings in by_rel.items():
                for p in phrasings:
                    before, _, after = p.partition("{e}")
                    if "{e}" in p:
                        head, tail = _spaces(before), _spaces(after)
                        rx = re.escape(head) + "(?P<e>.+?)" + re.escape(tail)
                    else:
                        head, tail = comparable(p), ""
                        rx = re.escape(head)
                    pats.append((head, tail, re.compile(rx), rel))
            self._patterns[lang] = pats

    def match(self, lang: str, text: str) -> tuple[str, str] | None:
        """(relation, entity as written) of the most specific phrasing ``text`` is an instance of (the shortest
        entity: "Missä kaupungissa X syntyi?" is not "Missä {e} syntyi?" about "kaupungissa X"); None if none."""
        t = comparable(text)
        best: tuple[str, str] | None = None
        for head, tail, rx, rel in self._patterns.get(lang, ()):
            if not (t.startswith(head) and t.endswith(tail)):
                continue
            m = rx.fullmatch(t)
            if m is not None:
                e = m.group("e") if "e" in rx.groupindex else ""
                if best is None or len(e) < len(best[1]):
                    best = (rel, e)
        return best

    def questions(self, lang: str, relations: Iterable[str], entity: str) -> list[str]:
        """Every phrasing of ``relations`` in ``lang`` about ``entity`` (template order, no duplicates)."""
        out: dict[str, None] = {}
        for rel in relations:
            for p in self.templates.get(lang, {}).get(rel, ()):
                out.setdefault(normalize(p.replace("{e}", entity)), None)
        return list(out)


@dataclass(frozen=True)
class PassageInfo:
    """What the data knows about a passage: its entity (title) and, for the synthetic world, its relations."""

    entity: str = ""
    relations: frozenset[str] = frozenset()


@dataclass
class _Counts:
    queries: int = 0
    right_script: int = 0
    names_entity: int = 0
    with_entity: int = 0
    equals_eval: int = 0
    matches_template: int = 0
    right_relation: int = 0
    with_relations: int = 0
    texts: list[str] = field(default_factory=list)


def query_quality(
    passages: Iterable[tuple[str, Mapping[str, Sequence[str]]]],
    info: Mapping[str, PassageInfo],
    eval_texts: Iterable[str] = (),
    matcher: TemplateMatcher | None = None,
    keep: set[str] | None = None,
) -> dict[str, dict[str, float]]:
    """The measures (module docstring) per language and ``macro``, in percent, plus ``queries`` (the count).

    ``passages``: ``(docid, {lang: [texts]})`` as :meth:`xqg.generation.store.GeneratedStore.iter_passages`
    yields; ``info``: docid -> :class:`PassageInfo` (absent: unknown entity and relations); ``keep``: only these
    docids. ``names_entity`` counts passages with a known entity, ``right_relation`` passages with
    known relations; a measure with nothing to count is left out."""
    evals = {comparable(t) for t in eval_texts}
    counts: dict[str, _Counts] = {}
    for docid, by_lang in passages:
        if keep is not None and docid not in keep:
            continue
        pi = info.get(docid, PassageInfo())
        for lang, texts in by_lang.items():
            c = counts.setdefault(lang, _Counts())
            for raw in texts:
                t = normalize(raw)
                c.queries += 1
                c.texts.append(t)
                c.right_script += right_script(t, lang, pi.entity or None)
                c.equals_eval += comparable(t) in evals
                if pi.entity:
                    c.with_entity += 1
                    c.names_entity += names_entity(t, pi.entity)
                if matcher is not None:
                    m = matcher.match(lang, t)
                    c.matches_template += m is not None
                    if pi.relations:
                        c.with_relations += 1
                        c.right_relation += m is not None and m[0] in pi.relations
    out: dict[str, dict[str, float]] = {}
    for lang, c in counts.items():
        if not c.queries:
            continue
        row = {
            "queries": float(c.queries),
            "right_script": 100 * c.right_script / c.queries,
            "distinct_1": 100 * distinct_n(c.texts, lang, 1),
            "distinct_2": 100 * distinct_n(c.texts, lang, 2),
            "equals_eval": 100 * c.equals_eval / c.queries,
        }
        if c.with_entity:
            row["names_entity"] = 100 * c.names_entity / c.with_entity
        if matcher is not None:
            row["matches_template"] = 100 * c.matches_template / c.queries
            if c.with_relations:
                row["right_relation"] = 100 * c.right_relation / c.with_relations
        out[lang] = row
    if out:
        names = [m for m in next(iter(out.values())) if all(m in r for r in out.values())]
        out[MACRO] = {
            m: (
                sum(r[m] for r in out.values())
                if m == "queries"
                else statistics.mean(r[m] for r in out.values())
            )
            for m in names
        }
    return out


MEASURES = (
    "right_script",
    "names_entity",
    "matches_template",
    "right_relation",
    "equals_eval",
    "distinct_1",
    "distinct_2",
)


def _order(langs: Iterable[str]) -> list[str]:
    """The paper's language order (then the others alphabetically), the macro mean last, whatever order a
    saved JSON gives."""
    s = set(langs)
    out = [x for x in XOR_LANGUAGES if x in s] + sorted(s - set(XOR_LANGUAGES) - {MACRO})
    return out + ([MACRO] if MACRO in s else [])


def summary_lines(quality: Mapping[str, Mapping[str, float]], label: str = "generated queries") -> list[str]:
    """One line per language and one for the macro mean, for the log."""
    out = []
    for lang in _order(quality):
        row = quality[lang]
        parts = [f"{m} {row[m]:.1f}%" for m in MEASURES if m in row]
        out.append(f"{label} quality [{lang}]: {int(row['queries'])} queries, " + ", ".join(parts))
    return out


def quality_table(quality: Mapping[str, Mapping[str, float]], decimals: int = 1) -> str:
    """A Markdown table: one row per measure (percent), languages as columns, the macro mean last."""
    langs = _order(quality)
    header = "| measure | " + " | ".join(langs) + " |"
    rule = "|---|" + "---:|" * len(langs)
    rows = []
    for m in ("queries", *MEASURES):
        if not any(m in quality[x] for x in langs):
            continue
        cells = []
        for x in langs:
            v = quality[x].get(m)
            cells.append("-" if v is None else (f"{int(v)}" if m == "queries" else f"{v:.{decimals}f}"))
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *rows])
