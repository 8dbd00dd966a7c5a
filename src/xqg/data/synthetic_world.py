"""The invented world behind :mod:`xqg.data.synthetic`: entities with typed facts, the passages stating them, the
questions asking for them, and hard negatives, all drawn deterministically from one seeded ``random.Random``.

Names are syllable-generated (Latin script); the English sentence templates and word lists live in
``words/synthetic_world.json`` and the questions' templates (seven XOR-TyDi languages + English) in
``templates/questions.json``, both read once. The order of every draw is part of the world: reordering code or
lists changes every file of it (bump ``synthetic.CODE_VERSION`` then).
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "split", tuple(self.split))

    def validate(self) -> None:
        def bad(name: str, msg: str) -> XqgInputError:
            return XqgInputError(msg, field=f"data.world.{name}")

        if self.n_entities < 10:
            raise bad("n_entities", "need at least 10 entities")
        if self.passages_per_entity < 2:
            raise bad("passages_per_entity", "need at least 2 passages per entity")
        for lang in self.languages:
            if lang not in templates():
                raise bad("languages", f"no question templates for {lang!r}; have {sorted(templates())}")
        if not 1 <= self.langs_per_fact <= len(self.languages):
            raise bad("langs_per_fact", f"must be between 1 and {len(self.languages)}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-6:
            raise bad("split", "three non-negative shares (train, dev, test) summing to 1")
        if self.n_negatives < 0:
            raise bad("n_negatives", "must be >= 0")


# --------------------------------------------------------------------------- templates and word lists


def _read(name: str) -> str:
    return resources.files("xqg.data").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def templates_text() -> str:
    """The question templates file as text (its hash is part of a world's fingerprint)."""
    return _read("templates/questions.json")


@functools.cache
def templates() -> dict[str, dict[str, list[str]]]:
    """Language -> relation -> question phrasings (``{e}`` is the entity name)."""
    return {k: v for k, v in json.loads(templates_text()).items() if not k.startswith("_")}


def question_templates(lang: str) -> dict[str, list[str]]:
    """Relation -> question phrasings of one language (``{e}`` is the entity name)."""
    return templates()[lang]


RELATIONS: dict[str, tuple[str, ...]] = {
    "person": ("birth_year", "birthplace", "occupation"),
    "country": ("capital", "language", "population"),
    "city": ("located_in", "river", "founded_year"),
    "organisation": ("founder", "headquarters", "founded_year"),
    "river": ("length", "source"),
}
_TYPE_SHARE = {"country": 0.08, "river": 0.1, "city": 0.25, "person": 0.35, "organisation": 0.22}

_WORDS: dict[str, Any] = json.loads(_read("words/synthetic_world.json"))
FACT_SENTENCES: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _WORDS["fact_sentences"].items()}
INTROS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _WORDS["intros"].items()}
FILLERS: tuple[str, ...] = tuple(_WORDS["fillers"])
OCCUPATIONS: tuple[str, ...] = tuple(_WORDS["occupations"])
ORG_KINDS: tuple[str, ...] = tuple(_WORDS["organisation_kinds"])
ADJECTIVES: tuple[str, ...] = tuple(_WORDS["adjectives"])
NOUNS: tuple[str, ...] = tuple(_WORDS["nouns"])
SEASONS: tuple[str, ...] = tuple(_WORDS["seasons"])
CENTURIES: tuple[str, ...] = tuple(_WORDS["centuries"])
_ONSETS: tuple[str, ...] = tuple(_WORDS["name_syllables"]["onsets"])
_VOWELS: tuple[str, ...] = tuple(_WORDS["name_syllables"]["vowels"])
_CODAS: tuple[str, ...] = tuple(_WORDS["name_syllables"]["codas"])
_LANG_SUFFIX: tuple[str, ...] = tuple(_WORDS["language_suffixes"])


# --------------------------------------------------------------------------- entities and passages


@dataclass
class Entity:
    """An invented entity of one kind (person, country, city, organisation, river) and its facts."""

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


def make_entities(wc: WorldConfig, rng: random.Random) -> list[Entity]:
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
class Doc:
    """A passage of the world, with the entity it is about and the facts it states."""

    docid: str
    entity: int
    title: str
    text: str
    relations: tuple[str, ...]  # facts stated in this passage


def entity_passages(
    e: Entity, wc: WorldConfig, rng: random.Random, next_id: int, names: list[str]
) -> list[Doc]:
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
        docs.append(Doc(str(next_id + p), e.index, e.name, " ".join(sentences), tuple(placed[p])))
    return docs


def split_entities(wc: WorldConfig, entities: list[Entity], rng: random.Random) -> dict[int, str]:
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
class Query:
    """A question about one fact, with its answer, its positive passage and its split."""

    qid: str
    text: str
    lang: str
    answer: str
    entity: int
    relation: str
    positive: Doc
    split: str


def make_questions(
    wc: WorldConfig,
    entities: list[Entity],
    fact_doc: dict[tuple[int, str], Doc],
    split_of: dict[int, str],
    rng: random.Random,
) -> list[Query]:
    qs = []
    for e in entities:
        for rel, answer in e.facts.items():
            langs = rng.sample(list(wc.languages), wc.langs_per_fact)
            if wc.english_questions:
                langs.append("en")
            for lang in langs:
                text = rng.choice(question_templates(lang)[rel]).format(e=e.name)
                qs.append(
                    Query(
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


def hard_negatives(
    q: Query,
    n: int,
    by_entity: dict[int, list[Doc]],
    by_relation: dict[str, list[Doc]],
    docs: list[Doc],
    rng: random.Random,
) -> list[Doc]:
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
