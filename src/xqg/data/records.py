"""The typed records every reader yields and every stage consumes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def passage_text(title: str, text: str) -> str:
    """The text a retriever encodes for a passage: ``title + " " + text`` (as Tevatron does)."""
    return f"{title} {text}"


@dataclass(frozen=True, slots=True)
class Passage:
    """One corpus passage (a row of the DPR TSV or of a Tevatron/JSONL corpus)."""

    docid: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        return passage_text(self.title, self.text)

    def to_json(self) -> dict[str, str]:
        return {"docid": self.docid, "title": self.title, "text": self.text}


def _tuple(items: Iterable[object]) -> tuple:
    return items if isinstance(items, tuple) else tuple(items)


@dataclass(frozen=True, slots=True)
class Question:
    """An evaluation question (XOR-TyDi ``{id, question, answers, lang}``); ``lang`` is normalised."""

    qid: str
    text: str
    lang: str
    answers: tuple[str, ...]
    split: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", _tuple(self.answers))


@dataclass(frozen=True, slots=True)
class TrainExample:
    """A retriever training example (Tevatron format): a query with positive and hard negative passages."""

    qid: str
    query: str
    answers: tuple[str, ...]
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...]
    lang: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", _tuple(self.answers))
        object.__setattr__(self, "positives", _tuple(self.positives))
        object.__setattr__(self, "negatives", _tuple(self.negatives))


@dataclass(frozen=True, slots=True)
class GeneratorPair:
    """A generator training pair: passage (title, text) -> question in language ``lang``."""

    docid: str
    lang: str
    title: str
    passage: str
    question: str

    def to_json(self) -> dict[str, str]:
        return {
            "docid": self.docid,
            "lang": self.lang,
            "title": self.title,
            "passage": self.passage,
            "question": self.question,
        }
