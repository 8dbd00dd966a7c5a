"""The retriever's cross-lingual alignment objective (``train.alignment``) resolved for one training run: the
translation table joined to the training queries, the distillation teacher, and their share of the checkpoint's
fingerprint (nothing at all for ``kind: none``, so plain xDR checkpoints keep their fingerprints).

``train.alignment.translations: null`` takes the data's own English parallel questions (the synthetic world's
English training file); a folder path takes XOR-TyDi's ``question-translations`` (joined by question text).
``train.alignment.teacher`` (distill only): ``english`` trains (or reuses) the same recipe on the data's English
questions (``train.source=english``, no alignment) and uses it frozen; ``initial`` is a frozen copy of the
backbone as loaded; anything else is a retriever checkpoint folder.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xqg.core.artifacts import file_fingerprint, fingerprint
from xqg.core.errors import XqgInputError
from xqg.data.translations import TranslationTable, english_tevatron_table, folder_table
from xqg.models.alignment_loss import AlignmentConfig
from xqg.models.biencoder import BiEncoder, load_retriever
from xqg.tasks.schema import Settings

FIELD = "train.alignment"
TEACHERS = ("english", "initial")


@dataclass(frozen=True)
class AlignmentPlan:
    """What one run's alignment objective needs; ``identity`` goes into the checkpoint's fingerprint."""

    config: AlignmentConfig
    table: TranslationTable
    teacher: str  # "initial" or a checkpoint folder (distill), "" otherwise
    identity: dict[str, Any]


def alignment_config(settings: Settings) -> AlignmentConfig:
    a = settings.train.alignment
    try:
        return AlignmentConfig(kind=a.kind, weight=a.weight, temperature=a.temperature)
    except XqgInputError as e:
        raise XqgInputError(e.message, field=f"{FIELD}.{e.field}") from None


def _folder_identity(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return fingerprint({str(p.relative_to(path)): file_fingerprint(p) for p in files})


def _table(settings: Settings) -> tuple[TranslationTable, str]:
    source = settings.train.alignment.translations
    if source:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise XqgInputError(
                f"{folder} is not a folder of {{xx}}-en translations", field=f"{FIELD}.translations"
            )
        return folder_table(folder, settings.data.languages), f"dir:{_folder_identity(folder)}"
    bundle = settings.data.bundle(settings.paths.cache_dir)
    paths = [Path(p) for p in (bundle.english_train_path,) if p is not None and Path(p).exists()]
    if not paths:
        raise XqgInputError(
            f"data {bundle.name!r} has no English parallel questions; set it to XOR-TyDi's "
            "question-translations folder",
            field=f"{FIELD}.translations",
        )
    return english_tevatron_table(paths), "+".join(file_fingerprint(p) for p in paths)


def english_teacher_settings(settings: Settings) -> Settings:
    """The teacher's settings for ``teacher: english``: this recipe on the English questions, no alignment."""
    train = dataclasses.replace(
        settings.train, source="english", alignment=dataclasses.replace(settings.train.alignment, kind="none")
    )
    return dataclasses.replace(settings, train=train)


def plan_alignment(settings: Settings, english_teacher: Callable[[Settings], Path]) -> AlignmentPlan | None:
    """The run's alignment plan, or None for ``kind: none``; ``english_teacher`` trains or finds the English
    model (``teacher: english``)."""
    config = alignment_config(settings)
    if not config.enabled:
        return None
    if settings.train.source == "english":
        raise XqgInputError(
            "an alignment objective pulls non-English queries to their English translations; "
            "train.source=english has none",
            field=f"{FIELD}.kind",
        )
    table, table_identity = _table(settings)
    identity: dict[str, Any] = dataclasses.asdict(config) | {"translations": table_identity}
    teacher = ""
    if config.kind == "distill":
        choice = settings.train.alignment.teacher
        if choice == "english":
            path = english_teacher(english_teacher_settings(settings))
            teacher, identity["teacher"] = str(path), f"ckpt:{Path(path).name}"
        elif choice == "initial":
            teacher, identity["teacher"] = "initial", "initial"
        else:
            folder = Path(choice).expanduser()
            if not folder.is_dir():
                raise XqgInputError(
                    f"must be one of {TEACHERS} or a retriever checkpoint folder, got {choice!r}",
                    field=f"{FIELD}.teacher",
                )
            teacher, identity["teacher"] = str(folder), f"dir:{_folder_identity(folder)}"
    return AlignmentPlan(config, table, teacher, identity)


def load_teacher(plan: AlignmentPlan, student: BiEncoder, student_tokenizer: Any) -> tuple[BiEncoder, Any]:
    """The frozen distillation teacher and its tokenizer (the student's own for ``initial``)."""
    if plan.teacher == "initial":
        teacher, tokenizer = copy.deepcopy(student), student_tokenizer  # before any training step
    else:
        teacher, tokenizer, _ = load_retriever(plan.teacher)
    dims = [int(m.query_model.config.hidden_size) for m in (teacher, student)]
    if dims[0] != dims[1]:
        raise XqgInputError(
            f"the teacher embeds in {dims[0]} dimensions, the student in {dims[1]}; they must match",
            field=f"{FIELD}.teacher",
        )
    teacher.requires_grad_(False).eval()
    return teacher, tokenizer
