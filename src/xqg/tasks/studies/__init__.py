"""The research studies behind ``evaluate.py study=<name>`` (``conf/study/``, docs/studies.md): each builds or reuses
the cached model states it compares, measures, and writes ``report.md`` + CSV + PNG into the run folder."""

from __future__ import annotations

from collections.abc import Callable

from xqg.core.errors import XqgInputError
from xqg.tasks.schema import EvaluateSettings
from xqg.tasks.studies import alignment, robustness, xquad_r
from xqg.tasks.studies import train_alignment as train_alignment_study
from xqg.tasks.studies import train_scaling as train_scaling_study

#: study name (``study.name``) -> its task
STUDIES: dict[str, Callable[[EvaluateSettings], float | None]] = {
    "alignment": alignment.run,
    "robustness": robustness.run,
    "xquad_r": xquad_r.run,
    "train_alignment": train_alignment_study.run,
    "train_scaling": train_scaling_study.run,
}


def run(settings: EvaluateSettings) -> float | None:
    """Run the study ``study.name`` names."""
    name = settings.study.name
    if name not in STUDIES:
        raise XqgInputError(f"unknown study {name!r}; choose from {sorted(STUDIES)}", field="study.name")
    return STUDIES[name](settings)
