"""English translations of training queries, for the cross-lingual alignment objectives
(:mod:`xqg.models.alignment_loss`).

Two sources: XOR-TyDi's human translations (:mod:`xqg.data.formats.translations`, keyed by language and question
text, because the released files carry no ids), and a data set's own parallel questions keyed by id (the
synthetic world asks each fact as ``syn-<entity>-<relation>-<lang>`` in several languages and in English, so a
question's translation is the English question with the same id stem). Every training query must have one when
an alignment objective is on: the first that has none is an error naming the training file and its line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xqg.core.errors import XqgInputError
from xqg.data.formats.tevatron import iter_tevatron
from xqg.data.formats.translations import read_parallel_folder, text_key
from xqg.data.records import TrainExample


def id_stem(qid: str) -> str:
    """A parallel question's id without its trailing ``-<lang>`` (``syn-3-born-ja`` -> ``syn-3-born``)."""
    return qid.rsplit("-", 1)[0]


@dataclass(frozen=True)
class TranslationTable:
    """Translations by id stem (parallel questions) and by question text (XOR-TyDi's files)."""

    source: str  # where they come from, for error messages
    by_stem: Mapping[str, str] = field(default_factory=dict)
    by_text: Mapping[str, str] = field(default_factory=dict)  # text_key(question) -> translation

    def __len__(self) -> int:
        return len(self.by_stem) + len(self.by_text)

    def lookup(self, ex: TrainExample) -> str | None:
        found = self.by_stem.get(id_stem(ex.qid))
        if found is None and self.by_text:
            found = self.by_text.get(text_key(ex.query))
        return found


def parallel_questions(english_examples: Iterable[TrainExample], source: str) -> TranslationTable:
    """The table of a data set's English parallel questions (e.g. the synthetic world's English file)."""
    by_stem: dict[str, str] = {}
    for ex in english_examples:
        by_stem[id_stem(ex.qid)] = ex.query
    return TranslationTable(source=source, by_stem=by_stem)


def english_tevatron_table(paths: Sequence[Path]) -> TranslationTable:
    """:func:`parallel_questions` over Tevatron files of English questions."""
    examples = (ex for p in paths for ex in iter_tevatron(p))
    return parallel_questions(examples, ", ".join(str(p) for p in paths))


def folder_table(folder: str | Path, languages: Iterable[str] | None = None) -> TranslationTable:
    """XOR-TyDi's ``question-translations`` folder as a table."""
    table = read_parallel_folder(folder, languages)
    return TranslationTable(source=str(folder), by_text={text: en for (_, text), en in table.items()})


def join_translations(
    examples: Sequence[TrainExample], table: TranslationTable, *, path: str | Path | None, field: str
) -> list[str]:
    """The translation of every example, in order; the first example without one is an error naming ``path``
    (the training file), its line and the config key ``field`` that asked for translations."""
    out: list[str] = []
    for i in range(len(examples)):
        ex = examples[i]
        found = table.lookup(ex)
        if found is None:
            raise XqgInputError(
                f"training query {ex.qid!r} (lang {ex.lang}) has no English translation in {table.source}; "
                f"{field} needs one for every training query",
                path=path,
                line=i + 1 if path is not None else None,
                field=field,
            )
        out.append(found)
    return out
