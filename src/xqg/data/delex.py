"""Delexicalised titles: the passage's entity name replaced by a placeholder, for generators that cannot copy.

A small generator trained from scratch (the tiny T5 of the offline demo) never learns to copy a name it has not
seen in training, which mT5 brings from pre-training: it writes the right language and relation words around
the wrong name (or none), so its queries, fused into dev passages, add noise. With the title (the entity the
passage is about) replaced by :data:`PLACEHOLDER` in prompt and target, the model learns where the name goes,
and :func:`relexicalise` puts the passage's own title back into what it generated. Pure text: training pairs
(:func:`delexicalise_pair`) and corpus passages (:func:`delexicalise_passage`) are rewritten the same way, so a
generator trained on delexicalised pairs must also generate from delexicalised prompts (``generator.delexicalise``
is part of both fingerprints). Only the exact title string is replaced (other names in the passage stay).
"""

from __future__ import annotations

from collections.abc import Iterable

from xqg.data.records import GeneratorPair, Passage

#: Stands for the title in prompts and targets; a string that no passage or question of the data contains.
PLACEHOLDER = "<ent>"


def delexicalise(text: str, title: str) -> str:
    """``text`` with every occurrence of ``title`` replaced by :data:`PLACEHOLDER` (unchanged if ``title`` is
    empty)."""
    return text.replace(title, PLACEHOLDER) if title else text


def relexicalise(text: str, title: str) -> str:
    """Generated ``text`` with :data:`PLACEHOLDER` replaced by the passage's ``title``."""
    return text.replace(PLACEHOLDER, title)


def delexicalise_passage(p: Passage) -> Passage:
    """The passage as a delexicalised generator sees it: the placeholder as title and in the text."""
    return Passage(p.docid, PLACEHOLDER, delexicalise(p.text, p.title))


def delexicalise_pair(pair: GeneratorPair) -> GeneratorPair:
    """A training pair with its title replaced by the placeholder in title, passage and question."""
    return GeneratorPair(
        pair.docid,
        pair.lang,
        PLACEHOLDER,
        delexicalise(pair.passage, pair.title),
        delexicalise(pair.question, pair.title),
    )


def delexicalise_pairs(pairs: Iterable[GeneratorPair]) -> list[GeneratorPair]:
    """:func:`delexicalise_pair` over ``pairs``."""
    return [delexicalise_pair(p) for p in pairs]
