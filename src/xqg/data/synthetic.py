"""A synthetic cross-lingual world: the offline default for the README's main job and for tests.

English Wikipedia-like passages about invented entities (syllable-generated Latin-script names) state typed facts
(birth year, birthplace, capital, river, founder, ...); questions about those facts are written in the seven
XOR-TyDi languages in their own scripts (hand-written templates in ``templates/questions.json``, several
phrasings per relation, the entity name kept in Latin script) and in English (the zero-shot setting). Each
entity's facts are spread over a few passages mixed with filler sentences, and fillers reuse relation words
("born", "capital", "river") without the answer, so name matching alone finds the entity's passages but not the
right one: the world is learnable (names and relation words carry the signal) and not trivial.

Everything is written in exactly the real formats (DPR TSV corpus, XOR-TyDi question JSONL, Tevatron train
JSONL.gz for XOR languages and for English/NQ, generator pairs JSONL), deterministically from the seed, into
``<cache_dir>/synthetic/<fingerprint>/`` (fingerprint of the world config, the templates and the code version).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from xqg.core.artifacts import ArtifactDir, atomic_write_text
from xqg.core.config import dataclass_from_mapping
from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES
from xqg.core.progress import progress
from xqg.core.staging import staged_artifact
from xqg.data.corpus import write_dpr_tsv
from xqg.data.formats.pairs import write_generator_pairs
from xqg.data.formats.tevatron import write_tevatron
from xqg.data.formats.xor import write_xor_questions
from xqg.data.records import GeneratorPair, Passage, Question, TrainExample

#: Bump when generation changes: cached worlds are then rebuilt.
CODE_VERSION = "2"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class WorldConfig:
    """What determines a world (all of it goes into the fingerprint)."""

    seed: int = 13
    n_entities: int = 500
    passages_per_entity: int = 4  # mean; each entity gets this +-1 (at least 2)
    words_per_passage: int = 70  # target length, filler sentences fill up to it
    languages: tuple[str, ...] = XOR_LANGUAGES
    langs_per_fact: int = 2  # XOR-language questions per fact (distinct languages)
    english_questions: bool = True  # one English question per fact (NQ-like zero-shot training, English dev)
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/dev/test share of entities
    n_negatives: int = 8  # hard negatives per Tevatron training example

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | WorldConfig | None) -> WorldConfig:
        if cfg is None:
            return cls()
        if isinstance(cfg, WorldConfig):
            return cfg
        wc = dataclass_from_mapping(
            cls, cfg, what="synthetic world", field="data.world", tuples=("languages", "split")
        )
        wc.validate()
        return wc

    def validate(self) -> None:
        def bad(name: str, msg: str) -> XqgInputError:
            return XqgInputError(msg, field=f"data.world.{name}")

        if self.n_entities < 10:
            raise bad("n_entities", "need at least 10 entities")
        if self.passages_per_entity < 2:
            raise bad("passages_per_entity", "need at least 2 passages per entity")
        for lang in self.languages:
            if lang not in _templates():
                raise bad("languages", f"no question templates for {lang!r}; have {sorted(_templates())}")
        if not 1 <= self.langs_per_fact <= len(self.languages):
            raise bad("langs_per_fact", f"must be between 1 and {len(self.languages)}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-6:
            raise bad("split", "three non-negative shares (train, dev, test) summing to 1")
        if self.n_negatives < 0:
            raise bad("n_negatives", "must be >= 0")


@dataclass(frozen=True)
class WorldPaths:
    """The files of a built world (all in the real formats)."""

    root: Path
    corpus: Path  # DPR TSV
    questions: dict[str, Path]  # split -> XOR-TyDi question JSONL (XOR languages)
    english_questions: dict[str, Path]  # split -> XOR-format JSONL of the English questions
    tevatron: dict[str, Path]  # train/dev -> Tevatron JSONL.gz (XOR languages)
    tevatron_english: dict[str, Path]  # train/dev -> Tevatron JSONL.gz (English; NQ-like)
    generator_pairs: dict[str, Path]  # train/dev -> generator pairs JSONL
    qrels: dict[str, Path]  # split -> TREC qrels (qid 0 docid 1) of every question (XOR and English)
    counts: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""


# --------------------------------------------------------------------------- templates and word lists


def _templates_text() -> str:
    return resources.files("xqg.data").joinpath("templates/questions.json").read_text(encoding="utf-8")


_TEMPLATE_CACHE: dict[str, dict[str, list[str]]] = {}


def _templates() -> dict[str, dict[str, list[str]]]:
    if not _TEMPLATE_CACHE:
        data = json.loads(_templates_text())
        _TEMPLATE_CACHE.update({k: v for k, v in data.items() if not k.startswith("_")})
    return _TEMPLATE_CACHE


def question_templates(lang: str) -> dict[str, list[str]]:
    """Relation -> question phrasings of one language (``{e}`` is the entity name)."""
    return _templates()[lang]


RELATIONS: dict[str, tuple[str, ...]] = {
    "person": ("birth_year", "birthplace", "occupation"),
    "country": ("capital", "language", "population"),
    "city": ("located_in", "river", "founded_year"),
    "organisation": ("founder", "headquarters", "founded_year"),
    "river": ("length", "source"),
}
_TYPE_SHARE = {"country": 0.08, "river": 0.1, "city": 0.25, "person": 0.35, "organisation": 0.22}

FACT_SENTENCES: dict[str, tuple[str, ...]] = {
    "birth_year": (
        "{e} was born in {a} and grew up in a large family.",
        "According to parish records, {e} was born in the year {a}.",
    ),
    "birthplace": (
        "{e} was born in the city of {a}.",
        "The birthplace of {e} was {a}, where the family had lived for generations.",
    ),
    "occupation": ("{e} worked as a {a} for most of a long career.", "{e} became a well-known {a}."),
    "capital": ("The capital of {e} is {a}.", "{a} serves as the capital and largest city of {e}."),
    "language": ("The official language of {e} is {a}.", "Most people in {e} speak {a} at home."),
    "population": ("{e} has a population of {a}.", "At the last census {e} had {a} inhabitants."),
    "located_in": ("{e} is a city in {a}.", "{e} lies in the northern part of {a}."),
    "river": ("The {a} river flows through {e}.", "{e} was built on the banks of the {a}."),
    "founded_year": ("{e} was founded in {a}.", "{e} was established in the year {a}."),
    "founder": ("{e} was founded by {a}.", "{a} established {e} together with a few partners."),
    "headquarters": ("{e} has its headquarters in {a}.", "The main offices of {e} are located in {a}."),
    "length": ("The {e} is {a} long.", "The {e} river runs for {a} before reaching the sea."),
    "source": ("The {e} rises in {a}.", "The source of the {e} lies in the mountains of {a}."),
}
INTROS: dict[str, tuple[str, ...]] = {
    "person": (
        "{e} was {a_adj} figure of the {century} century.",
        "{e} is remembered as {a_adj} public figure.",
    ),
    "country": (
        "{e} is {a_adj} country with a long history.",
        "{e} is a sovereign state known for its {noun}.",
    ),
    "city": ("{e} is {a_adj} city.", "{e} is an old town known for its {noun}."),
    "organisation": ("{e} is {a_adj} organisation.", "{e} is an institution known for its {noun}."),
    "river": ("The {e} is {a_adj} river.", "The {e} is a river known for its {noun}."),
}
FILLERS: tuple[str, ...] = (
    "{e} is mentioned in {num} entries of the regional archive.",
    "Travellers of the {century} century often described {e} as {adj}.",
    "The {noun} associated with {e} attracted wide attention.",
    "Several scholars have compared {e} with its neighbours.",
    "Little is known about the early history of {e}.",
    "One of the {adj} {noun} was later named after {e}.",
    "The name {e} is thought to come from an older word meaning {adj} {noun}.",
    "Historians still debate where the first records were kept.",
    "Many residents were born elsewhere and moved to the region later.",
    "The population of the surrounding region grew slowly during this period.",
    "Its founders are rarely mentioned in official documents.",
    "The capital of the province hosted an exhibition about {e} in {year}.",
    "A river festival is held there every {season}.",
    "Several languages and local dialects are spoken in the area.",
    "The headquarters of a local newspaper covered these events in {year}.",
    "In {year}, a commission published {a_adj} report on the {noun}.",
    "The area is known for its {adj} {noun} and {adj2} {noun2}.",
    "About {num} kilometres of new roads were opened in {year}.",
    "Local craftsmen produced {noun} for markets across the region.",
    "The {noun} of {e} was restored in {year}.",
    "Visitors usually arrive in {season}, when the weather is {adj}.",
    "A museum holds {a_adj} collection of {noun} from this time.",
    "The work of {e} was discussed at a conference in {year}.",
    "Records from {year} list {num} {noun} in the district.",
    "{e} is often compared with {other}.",
    "A delegation from {other} visited in {year}.",
    "Letters sent to {other} mention the {noun} of the area.",
    "The {noun} of {other} were admired there as well.",
)
OCCUPATIONS = (
    "painter",
    "sculptor",
    "poet",
    "architect",
    "astronomer",
    "composer",
    "botanist",
    "engineer",
    "cartographer",
    "physician",
    "novelist",
    "chemist",
    "violinist",
    "mathematician",
    "historian",
    "diplomat",
    "photographer",
    "geologist",
)
ORG_KINDS = (
    "Company",
    "Institute",
    "Society",
    "Foundation",
    "Works",
    "Bank",
    "Press",
    "Guild",
    "Observatory",
    "Academy",
    "Trading House",
    "Library",
)
ADJECTIVES = (
    "quiet",
    "famous",
    "remote",
    "prosperous",
    "ancient",
    "modest",
    "busy",
    "colourful",
    "northern",
    "influential",
    "small",
    "celebrated",
    "mild",
    "rugged",
    "wealthy",
    "humble",
    "curious",
    "bright",
)
NOUNS = (
    "bridges",
    "markets",
    "orchards",
    "textiles",
    "festivals",
    "manuscripts",
    "gardens",
    "harbours",
    "mills",
    "ceramics",
    "songs",
    "towers",
    "vineyards",
    "maps",
    "glassworks",
    "lighthouses",
    "coins",
    "tapestries",
    "observatories",
    "fisheries",
)
SEASONS = ("spring", "summer", "autumn", "winter")
CENTURIES = ("sixteenth", "seventeenth", "eighteenth", "nineteenth", "twentieth")
_ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "gr",
    "kr",
    "tr",
    "st",
    "sk",
    "th",
    "ch",
    "sh",
    "j",
    "w",
    "y",
    "pl",
    "fl",
)
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou", "ia", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "th", "nd", "k", "v")
_LANG_SUFFIX = ("ic", "ish", "an", "ese", "i", "ian")


# --------------------------------------------------------------------------- the world


@dataclass
class Entity:
    index: int
    kind: str
    name: str
    facts: dict[str, str] = field(default_factory=dict)


class _Namer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, lo: int = 2, hi: int = 3) -> str:
        r = self.rng
        n = r.randint(lo, hi)
        s = "".join(
            r.choice(_ONSETS) + r.choice(_VOWELS) + (r.choice(_CODAS) if i == n - 1 else "") for i in range(n)
        )
        return s.capitalize()

    def unique(self, make: Any) -> str:
        for _ in range(1000):
            name = make()
            if name not in self.used:
                self.used.add(name)
                return name
        raise RuntimeError(
            "could not invent a unique name; the syllable space is exhausted"
        )  # pragma: no cover


def _make_entities(wc: WorldConfig, rng: random.Random) -> list[Entity]:
    namer = _Namer(rng)
    counts = {k: max(2, round(share * wc.n_entities)) for k, share in _TYPE_SHARE.items()}
    counts["person"] += wc.n_entities - sum(counts.values())
    ents: dict[str, list[Entity]] = {k: [] for k in _TYPE_SHARE}
    idx = 0

    def new(kind: str, name: str) -> Entity:
        nonlocal idx
        e = Entity(idx, kind, name)
        idx += 1
        ents[kind].append(e)
        return e

    languages = sorted(
        {
            namer.unique(lambda: namer.word(2, 2) + rng.choice(_LANG_SUFFIX))
            for _ in range(max(4, counts["country"]))
        }
    )
    for _ in range(counts["country"]):
        e = new("country", namer.unique(namer.word))
        e.facts["language"] = rng.choice(languages)
        e.facts["population"] = str(rng.randint(150_000, 95_000_000))
    for _ in range(counts["river"]):
        e = new("river", namer.unique(namer.word))
        e.facts["length"] = f"{rng.randint(40, 3200)} kilometres"
        e.facts["source"] = rng.choice(ents["country"]).name
    for i in range(counts["city"]):
        e = new("city", namer.unique(namer.word))
        country = ents["country"][i] if i < len(ents["country"]) else rng.choice(ents["country"])
        e.facts["located_in"] = country.name
        e.facts["river"] = rng.choice(ents["river"]).name
        e.facts["founded_year"] = str(rng.randint(900, 1950))
    cities_in: dict[str, list[Entity]] = {}
    for c in ents["city"]:
        cities_in.setdefault(c.facts["located_in"], []).append(c)
    for country in ents["country"]:
        country.facts["capital"] = rng.choice(cities_in.get(country.name) or ents["city"]).name
    # Like real people, persons share first names and family names (each full name is unique), and half of the
    # organisations carry a family name: matching one name part is not enough to find the right passages.
    first_names = [namer.unique(lambda: namer.word(2, 2)) for _ in range(max(10, counts["person"] // 4))]
    family_names = [namer.unique(lambda: namer.word(2, 3)) for _ in range(max(10, counts["person"] // 6))]
    for _ in range(counts["person"]):
        e = new("person", namer.unique(lambda: f"{rng.choice(first_names)} {rng.choice(family_names)}"))
        e.facts["birth_year"] = str(rng.randint(1600, 1995))
        e.facts["birthplace"] = rng.choice(ents["city"]).name
        e.facts["occupation"] = rng.choice(OCCUPATIONS)

    def org_name() -> str:
        stem = rng.choice(family_names) if rng.random() < 0.5 else namer.word(2, 3)
        return f"{stem} {rng.choice(ORG_KINDS)}"

    for _ in range(counts["organisation"]):
        e = new("organisation", namer.unique(org_name))
        e.facts["founder"] = rng.choice(ents["person"]).name
        e.facts["headquarters"] = rng.choice(ents["city"]).name
        e.facts["founded_year"] = str(rng.randint(1700, 2015))
    out = [e for kind in _TYPE_SHARE for e in ents[kind]]
    out.sort(key=lambda e: e.index)
    # order facts canonically (relation order of the type), so iteration is deterministic
    for e in out:
        e.facts = {r: e.facts[r] for r in RELATIONS[e.kind]}
    return out


def _slots(rng: random.Random, name: str, names: list[str]) -> dict[str, str]:
    adj = rng.choice(ADJECTIVES)
    return {
        "e": name,
        "other": rng.choice(names),
        "adj": adj,
        "a_adj": ("an " if adj[0] in "aeiou" else "a ") + adj,
        "adj2": rng.choice(ADJECTIVES),
        "noun": rng.choice(NOUNS),
        "noun2": rng.choice(NOUNS),
        "num": str(rng.randint(2, 400)),
        "year": str(rng.randint(1500, 2020)),
        "season": rng.choice(SEASONS),
        "century": rng.choice(CENTURIES),
    }


@dataclass
class _Doc:
    docid: str
    entity: int
    title: str
    text: str
    relations: tuple[str, ...]  # facts stated in this passage


def _entity_passages(
    e: Entity, wc: WorldConfig, rng: random.Random, next_id: int, names: list[str]
) -> list[_Doc]:
    n = max(2, wc.passages_per_entity + rng.randint(-1, 1))
    rels = list(e.facts)
    rng.shuffle(rels)
    placed: list[list[str]] = [[] for _ in range(n)]
    for i, rel in enumerate(rels):
        placed[i % n].append(rel)
    docs = []
    for p in range(n):
        sentences = []
        for rel in placed[p]:
            sentences.append(rng.choice(FACT_SENTENCES[rel]).format(e=e.name, a=e.facts[rel]))
        words = sum(len(s.split()) for s in sentences)
        target = wc.words_per_passage + rng.randint(-10, 10)
        while words < target:
            s = rng.choice(FILLERS).format(**_slots(rng, e.name, names))
            sentences.append(s)
            words += len(s.split())
        rng.shuffle(sentences)
        if p == 0:
            sentences.insert(0, rng.choice(INTROS[e.kind]).format(**_slots(rng, e.name, names)))
        docs.append(_Doc(str(next_id + p), e.index, e.name, " ".join(sentences), tuple(placed[p])))
    return docs


def iter_synthetic_passages(
    n_passages: int, seed: int = 13, passages_per_entity: int = 4, words_per_passage: int = 70
) -> Iterator[Passage]:
    """Just the corpus of a world with exactly ``n_passages`` rows, streamed: for benchmarks of the corpus store
    at up to millions of passages."""
    # every entity gets at least passages_per_entity - 1 passages, so this many entities always suffice
    n_entities = max(10, n_passages // max(1, passages_per_entity - 1) + 1)
    wc = WorldConfig(
        seed=seed,
        n_entities=n_entities,
        passages_per_entity=max(2, passages_per_entity),
        words_per_passage=words_per_passage,
    )
    rng = random.Random(seed)
    entities = _make_entities(wc, rng)
    names = [e.name for e in entities]
    made = 0
    for e in entities:
        for d in _entity_passages(e, wc, rng, made + 1, names):
            if made >= n_passages:
                return
            yield Passage(d.docid, d.title, d.text)
            made += 1


def _split_entities(wc: WorldConfig, entities: list[Entity], rng: random.Random) -> dict[int, str]:
    order = [e.index for e in entities]
    rng.shuffle(order)
    n = len(order)
    n_dev = max(1, round(wc.split[1] * n)) if wc.split[1] > 0 else 0
    n_test = max(1, round(wc.split[2] * n)) if wc.split[2] > 0 else 0
    n_train = n - n_dev - n_test
    out = {}
    for i, idx in enumerate(order):
        out[idx] = "train" if i < n_train else ("dev" if i < n_train + n_dev else "test")
    return out


@dataclass
class _Query:
    qid: str
    text: str
    lang: str
    answer: str
    entity: int
    relation: str
    positive: _Doc
    split: str


def _make_questions(
    wc: WorldConfig,
    entities: list[Entity],
    fact_doc: dict[tuple[int, str], _Doc],
    split_of: dict[int, str],
    rng: random.Random,
) -> list[_Query]:
    qs = []
    for e in entities:
        for rel, answer in e.facts.items():
            langs = rng.sample(list(wc.languages), wc.langs_per_fact)
            if wc.english_questions:
                langs.append("en")
            for lang in langs:
                text = rng.choice(question_templates(lang)[rel]).format(e=e.name)
                qs.append(
                    _Query(
                        f"syn-{e.index}-{rel}-{lang}",
                        text,
                        lang,
                        answer,
                        e.index,
                        rel,
                        fact_doc[(e.index, rel)],
                        split_of[e.index],
                    )
                )
    return qs


def _hard_negatives(
    q: _Query,
    n: int,
    by_entity: dict[int, list[_Doc]],
    by_relation: dict[str, list[_Doc]],
    docs: list[_Doc],
    rng: random.Random,
) -> list[_Doc]:
    """Same entity, other passages first (shuffled); then the same relation about other entities; then any."""
    same_entity = [d for d in by_entity[q.entity] if d.docid != q.positive.docid and q.answer not in d.text]
    rng.shuffle(same_entity)
    out = same_entity[: max(1, n // 2)] if n else []
    seen = {d.docid for d in out} | {q.positive.docid}
    pool = by_relation[q.relation]
    tries = 0
    while len(out) < n and tries < 4 * n:
        tries += 1
        d = rng.choice(pool) if tries % 4 else rng.choice(docs)
        if d.docid in seen or q.answer in d.text:
            continue
        out.append(d)
        seen.add(d.docid)
    return out


def _passage(d: _Doc) -> Passage:
    return Passage(d.docid, d.title, d.text)


def world_artifact(wc: WorldConfig, cache_dir: str | Path) -> ArtifactDir:
    templates_hash = hashlib.sha256(_templates_text().encode("utf-8")).hexdigest()[:16]
    return ArtifactDir.for_spec(
        cache_dir,
        "synthetic",
        config=asdict(wc),
        inputs={"templates": templates_hash},
        code_version=CODE_VERSION,
    )


def _paths(root: Path, fp: str = "", counts: dict[str, int] | None = None) -> WorldPaths:
    return WorldPaths(
        root=root,
        corpus=root / "corpus.tsv",
        questions={s: root / f"xor_{s}.jsonl" for s in SPLITS},
        english_questions={s: root / f"en_{s}.jsonl" for s in SPLITS},
        tevatron={s: root / f"tevatron_xor_{s}.jsonl.gz" for s in ("train", "dev")},
        tevatron_english={s: root / f"tevatron_en_{s}.jsonl.gz" for s in ("train", "dev")},
        generator_pairs={s: root / f"generator_pairs_{s}.jsonl" for s in ("train", "dev")},
        qrels={s: root / f"qrels_{s}.txt" for s in SPLITS},
        counts=dict(counts or {}),
        fingerprint=fp,
    )


def build_world(cfg: Mapping[str, Any] | WorldConfig | None, cache_dir: str | Path) -> WorldPaths:
    """Build (once; cached by fingerprint) the synthetic world's files and return their paths."""
    wc = WorldConfig.from_mapping(cfg)
    art = world_artifact(wc, cache_dir)
    if not art.complete:
        with staged_artifact(art) as staging:
            counts = _write_world(wc, staging.path)
            staging.finalize(counts=counts, extra={"files": sorted(p.name for p in staging.path.iterdir())})
    manifest = art.manifest()
    return _paths(art.path, art.fingerprint, manifest.counts)


def _write_world(wc: WorldConfig, root: Path) -> dict[str, int]:
    rng = random.Random(wc.seed)
    entities = _make_entities(wc, rng)
    names = [e.name for e in entities]
    docs: list[_Doc] = []
    for e in progress(entities, desc="synthetic passages"):
        docs.extend(_entity_passages(e, wc, rng, len(docs) + 1, names))
    fact_doc = {(d.entity, rel): d for d in docs for rel in d.relations}
    by_entity: dict[int, list[_Doc]] = {}
    by_relation: dict[str, list[_Doc]] = {}
    for d in docs:
        by_entity.setdefault(d.entity, []).append(d)
        for rel in d.relations:
            by_relation.setdefault(rel, []).append(d)
    split_of = _split_entities(wc, entities, rng)
    queries = _make_questions(wc, entities, fact_doc, split_of, rng)
    paths = _paths(root)
    counts: dict[str, int] = {"entities": len(entities), "passages": len(docs)}
    counts["corpus_rows"] = write_dpr_tsv(paths.corpus, (_passage(d) for d in docs))

    def question(q: _Query) -> Question:
        return Question(q.qid, q.text, q.lang, (q.answer,), q.split)

    for s in SPLITS:
        xor = [q for q in queries if q.split == s and q.lang != "en"]
        en = [q for q in queries if q.split == s and q.lang == "en"]
        counts[f"questions_{s}"] = write_xor_questions(paths.questions[s], (question(q) for q in xor))
        counts[f"english_questions_{s}"] = write_xor_questions(
            paths.english_questions[s], (question(q) for q in en)
        )
        qrels = "".join(f"{q.qid} 0 {q.positive.docid} 1\n" for q in queries if q.split == s)
        atomic_write_text(paths.qrels[s], qrels)
    for s in ("train", "dev"):
        for english, dest in ((False, paths.tevatron[s]), (True, paths.tevatron_english[s])):
            chosen = [q for q in queries if q.split == s and (q.lang == "en") == english]
            examples = [
                TrainExample(
                    q.qid,
                    q.text,
                    (q.answer,),
                    (_passage(q.positive),),
                    tuple(
                        _passage(d)
                        for d in _hard_negatives(q, wc.n_negatives, by_entity, by_relation, docs, rng)
                    ),
                    q.lang,
                )
                for q in chosen
            ]
            key = f"tevatron_{'en' if english else 'xor'}_{s}"
            counts[key] = write_tevatron(dest, examples)
        pairs = [
            GeneratorPair(q.positive.docid, q.lang, q.positive.title, q.positive.text, q.text)
            for q in queries
            if q.split == s and q.lang != "en"
        ]
        counts[f"generator_pairs_{s}"] = write_generator_pairs(paths.generator_pairs[s], pairs)
    return counts
