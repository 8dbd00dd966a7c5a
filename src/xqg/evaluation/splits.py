"""Honest tuning: a deterministic split of the questions into ``tune`` and ``report`` halves by a hash of the qid,
so alpha and n chosen on one half are reported on the other (``augmentation.tune_split``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from xqg.core.errors import XqgInputError

SPLITS = ("tune", "report")
DEFAULT_SALT = "xqg-tune-split"
T = TypeVar("T")


def split_of(qid: str, salt: str = DEFAULT_SALT, tune_fraction: float = 0.5) -> str:
    """``"tune"`` or ``"report"`` for one qid: a hash of ``salt`` and the qid, so the split is the same on every
    machine and run, independent of question order and of which other questions exist."""
    if not 0.0 < tune_fraction < 1.0:
        raise XqgInputError(f"must be in (0, 1), got {tune_fraction}", field="augmentation.tune_fraction")
    digest = hashlib.sha256(f"{salt}\0{qid}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return "tune" if u < tune_fraction else "report"


def _qid(item: Any) -> str:
    if isinstance(item, str):
        return item
    for attr in ("qid", "id"):
        if hasattr(item, attr):
            return str(getattr(item, attr))
        if isinstance(item, Mapping) and attr in item:
            return str(item[attr])
    raise TypeError(f"cannot find a qid in {type(item).__name__}")


def split_questions(
    questions: Sequence[T], part: str | None, salt: str = DEFAULT_SALT, tune_fraction: float = 0.5
) -> list[T]:
    """The questions (objects with ``qid``/``id``, mappings or plain qids) in ``part`` (``tune``/``report``),
    in their input order; ``part=None`` keeps all of them."""
    if part is None:
        return list(questions)
    if part not in SPLITS:
        raise XqgInputError(f"must be null, tune or report, got {part!r}", field="augmentation.tune_split")
    return [q for q in questions if split_of(_qid(q), salt, tune_fraction) == part]
