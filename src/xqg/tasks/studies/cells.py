"""The training-side studies run as Hydra multiruns, one job per point of their axis (an alignment objective, a
number of synthetic languages and a few-shot size). Each job trains (or reuses) its retriever, scores its
systems on the dev questions and leaves a *cell* in its run folder: ``study_cell.json`` with the axis values
and each system's per-question hits, so the report can run paired significance tests across jobs.
:class:`xqg.tasks.studies.train_callback.TrainStudyCallback` (``hydra.callbacks`` of those study configs) gathers the cells of the sweep at its
end and writes the study's report into ``<sweep dir>/study/``; a single job (no ``-m``) reports on its own cell.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xqg.core.artifacts import atomic_write_json
from xqg.core.errors import XqgInputError
from xqg.evaluation.result import EvalResult
from xqg.evaluation.score_files import ScoreOptions
from xqg.evaluation.significance import Comparison, compare

log = logging.getLogger(__name__)
CELL_FILE = "study_cell.json"
REPORT_DIR = "study"


def result_to_json(r: EvalResult) -> dict[str, Any]:
    """What significance tests need of a result: ks, counts, per-question hits, languages, gold measures."""
    return {
        "ks": list(r.ks),
        "counts": dict(r.counts),
        "hits": {str(k): dict(h) for k, h in r.hits.items()},
        "question_lang": dict(r.question_lang),
        "measures": {name: dict(v) for name, v in r.measures.items()},
    }


def result_from_json(d: Mapping[str, Any]) -> EvalResult:
    return EvalResult(
        ks=tuple(int(k) for k in d["ks"]),
        counts={str(k): int(v) for k, v in d["counts"].items()},
        hits={int(k): {str(q): bool(h) for q, h in v.items()} for k, v in d["hits"].items()},
        question_lang={str(q): str(lang) for q, lang in d["question_lang"].items()},
        measures={
            str(m): {str(q): float(v) for q, v in vals.items()} for m, vals in d.get("measures", {}).items()
        },
    )


@dataclass
class Cell:
    """One job's share of a study: its axis values, systems (name -> result) and notes (checkpoints, counts)."""

    study: str
    axes: dict[str, Any]
    systems: dict[str, EvalResult]
    significance: dict[str, Any]  # tests, permutations, seed, level
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "axes": self.axes,
            "systems": {k: result_to_json(v) for k, v in self.systems.items()},
            "significance": self.significance,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Cell:
        return cls(
            study=str(d["study"]),
            axes=dict(d["axes"]),
            systems={k: result_from_json(v) for k, v in d["systems"].items()},
            significance=dict(d["significance"]),
            extra=dict(d.get("extra") or {}),
        )

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / CELL_FILE
        atomic_write_json(path, self.to_json())
        return path


def significance_options(options: ScoreOptions) -> dict[str, Any]:
    return {
        "tests": list(options.tests),
        "permutations": options.permutations,
        "seed": options.seed,
        "level": options.level,
    }


def compare_cells(
    a: EvalResult, b: EvalResult, sig: Mapping[str, Any], name_a: str, name_b: str
) -> Comparison:
    """Paired tests of ``b`` against ``a`` with the significance options the jobs ran with."""
    return compare(
        a,
        b,
        tests=tuple(sig["tests"]),
        permutations=int(sig["permutations"]),
        seed=int(sig["seed"]),
        level=float(sig["level"]),
        name_a=name_a,
        name_b=name_b,
    )


def load_cells(folder: Path, study: str) -> list[Cell]:
    """The cells of ``study`` in the job folders under ``folder`` (sorted by path: Hydra's job order)."""
    cells = []
    for path in sorted(folder.glob(f"*/{CELL_FILE}"), key=lambda p: _job_order(p.parent.name)):
        try:
            cell = Cell.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError) as e:
            raise XqgInputError(f"unreadable study cell ({e})", path=path) from None
        if cell.study == study:
            cells.append(cell)
    return cells


def _job_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)
