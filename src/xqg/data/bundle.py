"""The one place a ``data`` config becomes files: :func:`load_data` -> :class:`DataBundle`.

Kinds (``data.kind``):
- ``synthetic``: builds (once, cached) the synthetic world of ``data.world`` (see :mod:`xqg.data.synthetic`);
- ``files``: real data (XOR-TyDi, NQ): every file is a source (local path, ``hf://datasets/...``, URL, or a
  mapping ``{path, url | repo + filename + revision}``, see :mod:`xqg.data.sources`) resolved on first use, so
  evaluating never downloads training data; the corpus may be several files (the 19 released shards), read in
  natural order as one corpus;
- ``xquad_r``: the XQuAD-R benchmark built from ``data.source`` (a folder, or ``{path, url}``: the LAReQA files
  fetched when the folder lacks them; see :mod:`xqg.data.xquad_r`).

Generator pairs for real XOR-TyDi come from the XOR-TyDi Gold Paragraph data (the reference generator's training
data, ``generator_pairs.from: gold_paragraph``, see :mod:`xqg.data.formats.gold_paragraph`), or are derived from a
Tevatron training file (``from: <files key>``: query -> its first positive), with each query's language taken from
the file, from the raw XOR-TyDi train questions, or from its script.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from xqg.core.artifacts import ArtifactDir, file_fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES, normalize_lang, script_share
from xqg.core.locking import complete_or_claim
from xqg.core.staging import staged_artifact
from xqg.data.formats.gold_paragraph import DEV_MEMBER, TRAIN_MEMBER, iter_gold_paragraph_pairs
from xqg.data.formats.pairs import write_generator_pairs
from xqg.data.formats.tevatron import iter_tevatron
from xqg.data.formats.xor import iter_xor_questions
from xqg.data.records import GeneratorPair
from xqg.data.sources import resolve_source, resolve_sources
from xqg.data.synthetic import build_world
from xqg.data.xquad_r import build_xquad_r

PAIRS_CODE_VERSION = "1"
MULTI_FILE_KEYS = frozenset({"corpus"})  # sources that may name several files (read in order as one)
GOLD_PARAGRAPH = "gold_paragraph"  # generator_pairs.from: the XOR-TyDi Gold Paragraph data
_FILE_KEYS = {
    "corpus": "corpus_path",
    "train": "train_path",
    "val": "val_path",
    "english_train": "english_train_path",
    "english_val": "english_dev_train_path",
    "dev_questions": "dev_questions_path",
    "test_questions": "test_questions_path",
    "train_questions": "train_questions_path",
    "xor_train": "xor_train_path",  # XOR-TyDi Tevatron file when `train` is another one (zero-shot NQ)
}


class DataBundle:
    """Paths of one data setting. File attributes resolve (and download) lazily and are None when absent.

    Attributes: ``name``, ``languages``, ``corpus_path``, ``train_path`` (Tevatron, retriever training),
    ``val_path`` (= ``dev_train_path``: held-out Tevatron examples), ``english_train_path`` /
    ``english_dev_train_path`` (NQ-like, zero-shot), ``dev_questions_path``, ``test_questions_path`` (XOR-TyDi
    question JSONL), ``generator_pairs`` (a JSONL path, ``{"train": path, "dev": path}``, or GeneratorPairs),
    ``qrels`` (split -> TREC qrels, when the data has gold passage ids).
    """

    def __init__(
        self,
        name: str,
        languages: Iterable[str],
        sources: Mapping[str, Any],
        cache_dir: str | Path,
        generator_pairs: Any = None,
        qrels: Mapping[str, Path] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.languages = tuple(normalize_lang(x) for x in languages)
        self.cache_dir = Path(cache_dir)
        self._sources = {k: v for k, v in sources.items() if v not in (None, "")}
        self._resolved: dict[str, Path] = {}
        self._generator_pairs = generator_pairs
        self.qrels = dict(qrels or {})
        self.info = dict(info or {})

    def path(self, key: str) -> Any:
        """The local path of source ``key`` (see ``_FILE_KEYS``), fetched on first use; None when not set. The
        corpus may be several files (a list, a glob, a hub folder): then a tuple of paths in reading order, which
        :func:`xqg.data.corpus.open_corpus` reads as one corpus."""
        if key not in self._sources:
            return None
        if key not in self._resolved:
            what = f"data '{self.name}' {key.replace('_', ' ')} file"
            files = resolve_sources(self._sources[key], self.cache_dir, what=what)
            if len(files) > 1 and key not in MULTI_FILE_KEYS:
                raise XqgInputError(
                    f"names {len(files)} files; only {sorted(MULTI_FILE_KEYS)} may be several files",
                    field=f"data.files.{key}",
                )
            self._resolved[key] = files[0] if len(files) == 1 else tuple(files)
        return self._resolved[key]

    def same_source(self, a: str, b: str) -> bool:
        """Whether sources ``a`` and ``b`` are set to the same file (e.g. NQ is both train and English train)."""
        return a in self._sources and self._sources.get(a) == self._sources.get(b)

    corpus_path = property(lambda self: self.path("corpus"))
    train_path = property(lambda self: self.path("train"))
    val_path = property(lambda self: self.path("val"))
    dev_train_path = val_path
    english_train_path = property(lambda self: self.path("english_train"))
    english_dev_train_path = property(lambda self: self.path("english_val"))
    dev_questions_path = property(lambda self: self.path("dev_questions"))
    test_questions_path = property(lambda self: self.path("test_questions"))
    train_questions_path = property(lambda self: self.path("train_questions"))
    xor_train_path = property(lambda self: self.path("xor_train"))

    @property
    def generator_pairs(self) -> Any:
        g = self._generator_pairs
        if callable(g):
            self._generator_pairs = g = g()
        return g

    def __repr__(self) -> str:
        return f"DataBundle({self.name!r}, languages={list(self.languages)}, sources={sorted(self._sources)})"


def load_data(data: Mapping[str, Any], cache_dir: str | Path) -> DataBundle:
    """Turn a data setting (the ``data`` group's fields: name, kind, languages, world, files, ...) into a
    :class:`DataBundle` whose files live (or are downloaded, or built) under ``cache_dir``."""
    cache_dir = Path(cache_dir)
    name = str(data.get("name", "data"))
    kind = str(data.get("kind", name))
    languages = data.get("languages") or XOR_LANGUAGES
    try:
        languages = [normalize_lang(str(x)) for x in languages]
    except KeyError as e:
        raise XqgInputError(str(e.args[0]), field="data.languages") from None
    if kind == "synthetic":
        return _synthetic(name, languages, data, cache_dir)
    if kind == "xquad_r":
        return _xquad_r(name, languages, data, cache_dir)
    if kind == "files":
        return _files(name, languages, data, cache_dir)
    raise XqgInputError(f"unknown data kind {kind!r} (synthetic | files | xquad_r)", field="data.kind")


def _synthetic(name: str, languages: list[str], data: Mapping[str, Any], cache_dir: Path) -> DataBundle:
    world = build_world(data.get("world"), cache_dir)
    sources = {
        "corpus": world.corpus,
        "train": world.tevatron["train"],
        "val": world.tevatron["dev"],
        "english_train": world.tevatron_english["train"],
        "english_val": world.tevatron_english["dev"],
        "dev_questions": world.questions["dev"],
        "test_questions": world.questions["test"],
        "train_questions": world.questions["train"],
    }
    pairs = {"train": world.generator_pairs["train"], "dev": world.generator_pairs["dev"]}
    info = {"fingerprint": world.fingerprint, "root": str(world.root), "counts": world.counts}
    return DataBundle(name, languages, sources, cache_dir, pairs, world.qrels, info)


def _xquad_r(name: str, languages: list[str], data: Mapping[str, Any], cache_dir: Path) -> DataBundle:
    split = tuple(data.get("split") or (0.5, 0.25, 0.25))
    b = build_xquad_r(xquad_r_folder(data.get("source"), languages, cache_dir), cache_dir, languages, split)
    unit = str(data.get("unit", "paragraph"))
    if unit not in ("paragraph", "sentence"):
        raise XqgInputError(f"must be paragraph or sentence, got {unit!r}", field="data.unit")
    sources = {
        "corpus": b.corpus if unit == "paragraph" else b.sentence_corpus,
        "train": b.tevatron["train"],
        "val": b.tevatron["dev"],
        "dev_questions": b.questions["dev"],
        "test_questions": b.questions["test"],
        "train_questions": b.questions["train"],
    }
    qrels = b.qrels if unit == "paragraph" else b.sentence_qrels
    pairs = {"train": b.generator_pairs["train"], "dev": b.generator_pairs["dev"]}
    return DataBundle(name, languages, sources, cache_dir, pairs, qrels, {"counts": b.counts, "unit": unit})


def xquad_r_folder(source: Any, languages: Iterable[str], cache_dir: Path) -> Path:
    """The folder holding XQuAD-R's ``{lang}.json`` files: ``source`` itself (a folder), or for a mapping
    ``{path: folder, url: base URL}`` the local folder when it has every file needed (English + ``languages``),
    else the download cache folder the files are fetched into from ``<url><lang>.json``."""
    if not source:
        raise XqgInputError("set data.source to the xquad-r folder", field="data.source")
    if not isinstance(source, Mapping):
        return Path(str(source)).expanduser()
    local = Path(str(source.get("path") or "")).expanduser() if source.get("path") else None
    names = [f"{x}.json" for x in ["en", *languages]]
    if local is not None and all((local / n).is_file() for n in names):
        return local
    base = str(source.get("url") or "")
    if not base:
        if local is None:
            raise XqgInputError("data.source needs 'path' or 'url'", field="data.source")
        return local
    base = base if base.endswith("/") else base + "/"
    paths = [
        resolve_source(
            {"url": base + n, "note": source.get("note") or "XQuAD-R"}, cache_dir, what=f"XQuAD-R {n}"
        )
        for n in names
    ]
    return paths[0].parent


def _files(name: str, languages: list[str], data: Mapping[str, Any], cache_dir: Path) -> DataBundle:
    files = dict(data.get("files") or {})
    unknown = sorted(set(files) - set(_FILE_KEYS))
    if unknown:
        raise XqgInputError(
            f"unknown data file key(s) {unknown}; known: {sorted(_FILE_KEYS)}", field="data.files"
        )
    qrels = {k: Path(str(v)) for k, v in (data.get("qrels") or {}).items() if v}
    bundle = DataBundle(name, languages, files, cache_dir, None, qrels)
    spec = data.get("generator_pairs")
    if isinstance(spec, Mapping) and spec.get("derive") and spec.get("from") == GOLD_PARAGRAPH:
        gp = dict(spec.get(GOLD_PARAGRAPH) or {})
        if not gp.get("source"):
            raise XqgInputError(
                "generator pairs from the gold paragraph data need its source",
                field=f"data.generator_pairs.{GOLD_PARAGRAPH}.source",
            )

        def gold() -> dict[str, Path]:
            src = resolve_source(
                gp["source"], cache_dir, what="XOR-TyDi gold paragraph data (tydi_xor_gp.zip)"
            )
            return gold_paragraph_pairs(
                src,
                cache_dir,
                languages,
                train_member=str(gp.get("train_member") or TRAIN_MEMBER),
                dev_member=str(gp["dev_member"]) if gp.get("dev_member") else None,
                title_skip=int(gp.get("title_skip") or 0),
            )

        bundle._generator_pairs = gold
    elif isinstance(spec, Mapping) and spec.get("derive"):
        from_key = str(spec.get("from", "train"))
        langs_key = spec.get("languages_from", "train_questions")

        def derive() -> Path:
            src = bundle.path(from_key)
            if src is None:
                raise XqgInputError(
                    f"generator pairs derive from data.files.{from_key}, which is not set",
                    field="data.generator_pairs",
                )
            qs = bundle.path(str(langs_key)) if langs_key else None
            return derive_generator_pairs(src, qs, cache_dir, languages)

        bundle._generator_pairs = derive
    elif spec:
        if isinstance(spec, Mapping):
            bundle._generator_pairs = {
                k: resolve_source(v, cache_dir, what=f"generator pairs ({k})") for k, v in spec.items() if v
            }
        else:
            bundle._generator_pairs = resolve_source(spec, cache_dir, what="generator pairs")
    return bundle


def guess_language(text: str, candidates: Iterable[str] = XOR_LANGUAGES) -> str:
    """The candidate language whose script covers most of ``text`` (Latin text -> the Latin-script candidate)."""
    cands = list(candidates)
    return max(cands, key=lambda c: (script_share(text, c), -cands.index(c)))


def derive_generator_pairs(
    tevatron_path: Path, questions_path: Path | None, cache_dir: Path, languages: Iterable[str]
) -> Path:
    """Generator pairs (first positive passage -> query in its language) from a Tevatron training file, cached
    in ``<cache>/generator_pairs/<fingerprint>/pairs.jsonl``; only queries in ``languages`` are kept."""
    langs = [normalize_lang(x) for x in languages]
    inputs = {"tevatron": file_fingerprint(tevatron_path)}
    if questions_path is not None:
        inputs["questions"] = file_fingerprint(questions_path)
    art = ArtifactDir.for_spec(
        cache_dir,
        "generator_pairs",
        config={"languages": langs},
        inputs=inputs,
        code_version=PAIRS_CODE_VERSION,
    )
    if not complete_or_claim(art):
        lang_of = {q.qid: q.lang for q in iter_xor_questions(questions_path)} if questions_path else {}

        def pairs() -> Iterator[GeneratorPair]:
            for ex in iter_tevatron(tevatron_path):
                lang = ex.lang or lang_of.get(ex.qid) or guess_language(ex.query, langs)
                if lang not in langs:
                    continue
                p = ex.positives[0]
                yield GeneratorPair(p.docid, lang, p.title, p.text, ex.query)

        with staged_artifact(art) as staging:
            n = write_generator_pairs(staging.path / "pairs.jsonl", pairs())
            staging.finalize(counts={"pairs": n}, extra={"source": str(tevatron_path)})
    return art.path / "pairs.jsonl"


def gold_paragraph_pairs(
    source: Path,
    cache_dir: Path,
    languages: Iterable[str],
    *,
    train_member: str = TRAIN_MEMBER,
    dev_member: str | None = DEV_MEMBER,
    title_skip: int = 0,
) -> dict[str, Path]:
    """Generator pairs from the XOR-TyDi Gold Paragraph data (a zip or an extracted JSON file), cached in
    ``<cache>/generator_pairs/<fingerprint>/``: ``{"train": pairs}``, plus ``"dev"`` (its dev file's pairs, the
    reference's validation data, with questions already in train skipped) when ``dev_member`` is set."""
    langs = [normalize_lang(x) for x in languages]
    config = {
        "source": GOLD_PARAGRAPH,
        "languages": langs,
        "train_member": train_member,
        "dev_member": dev_member,
        "title_skip": title_skip,
    }
    art = ArtifactDir.for_spec(
        cache_dir,
        "generator_pairs",
        config=config,
        inputs={"gold_paragraph": file_fingerprint(source)},
        code_version=PAIRS_CODE_VERSION,
    )
    splits = {"train": train_member, **({"dev": dev_member} if dev_member else {})}
    if not complete_or_claim(art):
        with staged_artifact(art) as staging:
            seen: set[str] = set()  # question ids: the reference skips dev questions already in train
            counts = {}
            for split, member in splits.items():
                pairs = iter_gold_paragraph_pairs(
                    source, member, languages=langs, title_skip=title_skip, seen=seen
                )
                counts[f"{split}_pairs"] = write_generator_pairs(staging.path / f"{split}.jsonl", pairs)
            staging.finalize(counts=counts, extra={"source": str(source)})
    return {split: art.path / f"{split}.jsonl" for split in splits}
