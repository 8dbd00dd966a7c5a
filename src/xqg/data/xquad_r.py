"""XQuAD-R (LAReQA) as a cross-lingual retrieval benchmark: questions in ten languages, English corpus.

Read from ``<shared>/xquad-r/{lang}.json`` (SQuAD v1.1 format plus ``sentences``/``sentence_breaks``; the 11
files are parallel: same 48 articles, 240 paragraphs, 1,190 question ids). The benchmark built here:
- queries: every non-English language's questions (qid ``<xquad id>-<lang>``);
- corpus: the English paragraphs (docid ``xq<article>-<paragraph>``, title = article title) or the English
  sentences (docid ``xq<article>-<paragraph>-<sentence>``);
- answers: the English answer strings (so the official R@kt runs on the English corpus), and gold ids (the
  paragraph, and the sentence holding the answer start) for Recall@k / MRR;
- a deterministic split by article into train/dev/test (articles ordered by a hash of their title);
- generator pairs (English paragraph -> question in language L) and Tevatron training examples (positive = gold
  paragraph, hard negatives = the other paragraphs of the same article) for the train/dev articles.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xqg.core.artifacts import ArtifactDir, atomic_write_text, file_fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.io import open_text
from xqg.core.languages import normalize_lang
from xqg.core.locking import complete_or_claim
from xqg.core.staging import staged_artifact
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.formats.pairs import write_generator_pairs
from xqg.data.formats.tevatron import write_tevatron
from xqg.data.formats.xor import write_xor_questions
from xqg.data.records import GeneratorPair, Passage, Question, TrainExample

CODE_VERSION = "1"
XQUAD_R_LANGUAGES: tuple[str, ...] = ("ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh")
SPLITS = ("train", "dev", "test")


@dataclass
class XquadR:
    """The whole benchmark in memory (it is small)."""

    languages: list[str]
    articles: list[str]  # titles, file order
    paragraphs: list[Passage]
    sentences: list[Passage]
    paragraph_article: dict[str, int]  # paragraph docid -> article index
    questions: dict[str, list[Question]]  # lang -> questions (English answers)
    gold_paragraph: dict[str, str]  # qid -> paragraph docid
    gold_sentence: dict[str, str]  # qid -> sentence docid
    split_of_article: dict[int, str] = field(default_factory=dict)

    def split_questions(self, split: str, languages: Iterable[str] | None = None) -> list[Question]:
        langs = list(languages) if languages is not None else self.languages
        return [
            Question(q.qid, q.text, q.lang, q.answers, split)
            for lang in langs
            for q in self.questions[lang]
            if self.split_of_article[self.paragraph_article[self.gold_paragraph[q.qid]]] == split
        ]


def _load_json(path: Path) -> dict[str, Any]:
    """One XQuAD-R file (plain or gzip); unreadable, non-UTF-8 or malformed content is one error naming it."""
    try:
        with open_text(path, what="XQuAD-R file") as f:
            data = json.loads(f.read())
    except UnicodeDecodeError as e:
        raise XqgInputError(f"not valid UTF-8 ({e.reason})", path=path) from None
    except json.JSONDecodeError as e:
        raise XqgInputError(f"malformed JSON ({e.msg})", path=path, line=e.lineno) from None
    except (EOFError, OSError, zlib.error) as e:
        raise XqgInputError(f"cannot read ({e})", path=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise XqgInputError("expected a SQuAD-format object with a 'data' list", path=path, field="data")
    return data


def _objects(parent: Any, key: str, path: Path, where: str) -> list[dict[str, Any]]:
    """``parent[key]`` as a list of JSON objects (absent: empty); anything else names the field."""
    name = f"{where}.{key}" if where else key
    items = parent.get(key, [])
    if not isinstance(items, list):
        raise XqgInputError(f"expected a list, got {type(items).__name__}", path=path, field=name)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise XqgInputError(
                f"expected an object, got {type(item).__name__}", path=path, field=f"{name}[{i}]"
            )
    return items


def _breaks(para: dict[str, Any], n: int, path: Path, where: str) -> list[tuple[int, int]]:
    """The paragraph's sentence spans ``[[start, end], ...]`` (default: the whole paragraph), checked."""
    raw = para.get("sentence_breaks") or [[0, n]]
    out = []
    for i, span in enumerate(raw if isinstance(raw, list) else [None]):
        ok = isinstance(span, list) and len(span) == 2 and all(_is_int(x) for x in span)
        if not ok or not 0 <= span[0] <= span[1] <= n:
            raise XqgInputError(
                f"expected [start, end] offsets within the context (0..{n}), got {span!r}",
                path=path,
                field=f"{where}.sentence_breaks[{i}]",
            )
        out.append((span[0], span[1]))
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _split_articles(titles: Sequence[str], shares: Sequence[float]) -> dict[int, str]:
    if len(shares) != 3 or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
        raise XqgInputError("three non-negative shares (train, dev, test) summing to 1", field="data.split")
    order = sorted(range(len(titles)), key=lambda i: hashlib.sha256(titles[i].encode("utf-8")).hexdigest())
    n = len(order)
    n_train = round(shares[0] * n)
    n_dev = round(shares[1] * n)
    return {
        a: ("train" if r < n_train else "dev" if r < n_train + n_dev else "test") for r, a in enumerate(order)
    }


def load_xquad_r(
    folder: str | Path, languages: Iterable[str] | None = None, split: Sequence[float] = (0.5, 0.25, 0.25)
) -> XquadR:
    """Read and cross-check the English file and the query languages' files (parallel by question id)."""
    root = Path(folder)
    langs = [normalize_lang(x) for x in (languages or XQUAD_R_LANGUAGES)]
    if "en" in langs:
        raise XqgInputError(
            "English is the corpus language of XQuAD-R, not a query language", field="data.languages"
        )
    en_path = root / "en.json"
    en = _load_json(en_path)
    articles: list[str] = []
    paragraphs: list[Passage] = []
    sentences: list[Passage] = []
    paragraph_article: dict[str, int] = {}
    answers: dict[str, tuple[str, ...]] = {}
    gold_p: dict[str, str] = {}
    gold_s: dict[str, str] = {}
    order: list[str] = []  # question ids in file order
    for a, art in enumerate(_objects(en, "data", en_path, "")):
        title = str(art.get("title", f"article {a}")).replace("_", " ")
        articles.append(title)
        for p, para in enumerate(_objects(art, "paragraphs", en_path, f"data[{a}]")):
            docid = f"xq{a}-{p}"
            where = f"data[{a}].paragraphs[{p}]"
            context = para.get("context")
            if not isinstance(context, str):
                raise XqgInputError("missing paragraph context", path=en_path, field=f"{where}.context")
            context = context.replace("\r", " ").replace("\n", " ")  # one line per row in TSV; offsets kept
            paragraphs.append(Passage(docid, title, context.strip()))
            paragraph_article[docid] = a
            breaks = _breaks(para, len(context), en_path, where)
            for s, (start, end) in enumerate(breaks):
                sentences.append(Passage(f"{docid}-{s}", title, context[start:end].strip()))
            for j, qa in enumerate(_objects(para, "qas", en_path, where)):
                qid = qa.get("id")
                given = _objects(qa, "answers", en_path, f"{where}.qas[{j}]")
                ans = [x.get("text") for x in given if isinstance(x.get("text"), str)]
                if not isinstance(qid, str) or not ans:
                    raise XqgInputError("question without id or answers", path=en_path, field=f"{where}.qas")
                if qid in answers:
                    raise XqgInputError(
                        f"duplicate question id {qid!r}", path=en_path, field=f"{where}.qas[{j}].id"
                    )
                answers[qid] = tuple(dict.fromkeys(ans))
                gold_p[qid] = docid
                start = given[0].get("answer_start", 0)
                if not _is_int(start):
                    raise XqgInputError(
                        f"expected an integer offset, got {start!r}",
                        path=en_path,
                        field=f"{where}.qas[{j}].answers[0].answer_start",
                    )
                s_idx = next((s for s, (b, e) in enumerate(breaks) if b <= start < e), 0)
                gold_s[qid] = f"{docid}-{s_idx}"
                order.append(qid)
    questions: dict[str, list[Question]] = {}
    qid_gold_p: dict[str, str] = {}
    qid_gold_s: dict[str, str] = {}
    for lang in langs:
        path = root / f"{lang}.json"
        data = _load_json(path)
        texts: dict[str, str] = {}
        for a, art in enumerate(_objects(data, "data", path, "")):
            for p, para in enumerate(_objects(art, "paragraphs", path, f"data[{a}]")):
                for qa in _objects(para, "qas", path, f"data[{a}].paragraphs[{p}]"):
                    qid, text = qa.get("id"), qa.get("question")
                    if not isinstance(qid, str) or qid not in answers:
                        raise XqgInputError(
                            f"question id {qid!r} is not in en.json (files must be parallel)",
                            path=path,
                            field=f"data[{a}].paragraphs[{p}].qas",
                        )
                    if gold_p[qid] != f"xq{a}-{p}":
                        raise XqgInputError(
                            f"question {qid!r} sits in another paragraph than in en.json",
                            path=path,
                            field=f"data[{a}].paragraphs[{p}].qas",
                        )
                    if not isinstance(text, str) or not text.strip():
                        raise XqgInputError(f"question {qid!r} has no text", path=path, field="question")
                    texts[qid] = text.strip()
        missing = [q for q in order if q not in texts]
        if missing:
            raise XqgInputError(
                f"{len(missing)} questions of en.json are missing (e.g. {missing[0]!r})", path=path
            )
        qs = []
        for q in order:
            qid = f"{q}-{lang}"
            qs.append(Question(qid, texts[q], lang, answers[q]))
            qid_gold_p[qid] = gold_p[q]
            qid_gold_s[qid] = gold_s[q]
        questions[lang] = qs
    return XquadR(
        langs,
        articles,
        paragraphs,
        sentences,
        paragraph_article,
        questions,
        qid_gold_p,
        qid_gold_s,
        _split_articles(articles, split),
    )


@dataclass(frozen=True)
class XquadRPaths:
    root: Path
    corpus: Path  # English paragraphs, DPR TSV
    sentence_corpus: Path  # English sentences, DPR TSV
    questions: dict[str, Path]  # split -> XOR-format question JSONL (all query languages)
    qrels: dict[str, Path]  # split -> TREC qrels against paragraphs
    sentence_qrels: dict[str, Path]  # split -> TREC qrels against sentences
    tevatron: dict[str, Path]  # train/dev -> Tevatron JSONL.gz
    generator_pairs: dict[str, Path]  # train/dev -> generator pairs JSONL
    languages: tuple[str, ...]
    counts: dict[str, int]


def _paths(root: Path, languages: Sequence[str], counts: Mapping[str, int]) -> XquadRPaths:
    return XquadRPaths(
        root=root,
        corpus=root / "corpus_paragraphs.tsv",
        sentence_corpus=root / "corpus_sentences.tsv",
        questions={s: root / f"questions_{s}.jsonl" for s in SPLITS},
        qrels={s: root / f"qrels_{s}.txt" for s in SPLITS},
        sentence_qrels={s: root / f"qrels_sentences_{s}.txt" for s in SPLITS},
        tevatron={s: root / f"tevatron_{s}.jsonl.gz" for s in ("train", "dev")},
        generator_pairs={s: root / f"generator_pairs_{s}.jsonl" for s in ("train", "dev")},
        languages=tuple(languages),
        counts=dict(counts),
    )


def build_xquad_r(
    folder: str | Path,
    cache_dir: str | Path,
    languages: Iterable[str] | None = None,
    split: Sequence[float] = (0.5, 0.25, 0.25),
) -> XquadRPaths:
    """Write the benchmark's files (real formats) once into ``<cache>/xquad_r/<fingerprint>/``."""
    root = Path(folder)
    langs = [normalize_lang(x) for x in (languages or XQUAD_R_LANGUAGES)]
    inputs = {
        f"{x}.json": file_fingerprint(root / f"{x}.json")
        for x in ["en", *langs]
        if (root / f"{x}.json").exists()
    }
    art = ArtifactDir.for_spec(
        cache_dir,
        "xquad_r",
        config={"languages": langs, "split": list(split)},
        inputs=inputs,
        code_version=CODE_VERSION,
    )
    if not complete_or_claim(art):
        bench = load_xquad_r(root, langs, split)
        with staged_artifact(art) as staging:
            counts = _write(bench, _paths(staging.path, langs, {}))
            staging.finalize(counts=counts, extra={"source": str(root)})
    return _paths(art.path, langs, art.manifest().counts)


def _write(b: XquadR, paths: XquadRPaths) -> dict[str, int]:
    counts = {
        "articles": len(b.articles),
        "paragraphs": write_dpr_tsv(paths.corpus, b.paragraphs),
        "sentences": write_dpr_tsv(paths.sentence_corpus, b.sentences),
    }
    by_id = {p.docid: p for p in b.paragraphs}
    article_paragraphs: dict[int, list[Passage]] = {}
    for p in b.paragraphs:
        article_paragraphs.setdefault(b.paragraph_article[p.docid], []).append(p)
    for s in SPLITS:
        qs = b.split_questions(s)
        counts[f"questions_{s}"] = write_xor_questions(paths.questions[s], qs)
        atomic_write_text(paths.qrels[s], "".join(f"{q.qid} 0 {b.gold_paragraph[q.qid]} 1\n" for q in qs))
        atomic_write_text(
            paths.sentence_qrels[s], "".join(f"{q.qid} 0 {b.gold_sentence[q.qid]} 1\n" for q in qs)
        )
        if s == "test":
            continue
        examples = []
        pairs = []
        for q in qs:
            pos = by_id[b.gold_paragraph[q.qid]]
            negs = tuple(
                p for p in article_paragraphs[b.paragraph_article[pos.docid]] if p.docid != pos.docid
            )
            examples.append(TrainExample(q.qid, q.text, q.answers, (pos,), negs, q.lang))
            pairs.append(GeneratorPair(pos.docid, q.lang, pos.title, pos.text, q.text))
        counts[f"tevatron_{s}"] = write_tevatron(paths.tevatron[s], examples)
        counts[f"generator_pairs_{s}"] = write_generator_pairs(paths.generator_pairs[s], pairs)
    return counts
