"""Typed settings of the research studies (the ``study`` config group, ``conf/study/<name>.yaml``).

A study is one question answered by one command, ``python evaluate.py experiment=demo study=<name>``: the job
builds (or reuses from the cache) the model states it compares, measures, and writes ``report.md``, CSV tables
and PNG figures into the run folder (and W&B). ``study.name`` picks the task in :mod:`xqg.tasks.studies`; each
study reads only its own node below (``study.alignment``, ``study.robustness``, ``study.xquad_r``) and the shared
fields here. Kept apart from :mod:`xqg.tasks.schema` (which holds one ``study`` field of this type) so the study
tasks can import the schema without a cycle; a new study adds a node here and a YAML file in ``conf/study/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the model states of the alignment study, in table order
ALIGNMENT_STATES = ("backbone", "zero_shot", "zero_shot_xqg", "xdr", "xdr_xqg")
#: the query perturbations of the robustness study (:mod:`xqg.data.perturb`)
PERTURBATIONS = ("typo", "char_noise", "transliterate", "code_switch", "no_diacritics", "word_order")


@dataclass
class AlignmentStudySettings:
    """Study 1: alignment of query and passage embeddings across languages on parallel XQuAD."""

    source: str = "../shared/data/xquad"  # folder of xquad.<lang>.json (SQuAD v1.1 format, parallel)
    pivot: str = "en"  # the language compared against, and the passages' language
    languages: list[str] = field(
        default_factory=lambda: ["ar", "de", "el", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]
    )
    max_articles: int | None = None  # the first N articles only (a quick slice); null: all 48
    states: list[str] = field(default_factory=lambda: list(ALIGNMENT_STATES))
    mi_folds: int = 2  # cross-fitting folds of the InfoNCE critic's scale


@dataclass
class RobustnessStudySettings:
    """Study 2: R@kt of perturbed dev questions, xDR against +xQG."""

    perturbations: list[str] = field(default_factory=lambda: list(PERTURBATIONS))
    rates: list[float] = field(default_factory=lambda: [0.1, 0.3])
    seed: int = 13  # the perturbations' seed (independent of the models' seeds)


@dataclass
class XquadRStudySettings:
    """Study 3: gold-paragraph retrieval on XQuAD-R (LAReQA), plain backbone vs xDR vs +xQG."""

    ks: list[int] = field(default_factory=lambda: [1, 5, 20])  # Recall@k of the gold paragraph
    map_depth: int = 20  # mAP@20, LAReQA's metric


@dataclass
class StudySettings:
    """``study=<name>`` (conf/study/); ``name: null`` runs the plain evaluation pipeline."""

    name: str | None = None
    bootstrap: int = 1000  # bootstrap resamples of the questions for confidence intervals
    confidence: float = 0.95
    seed: int = 42  # bootstrap seed
    alignment: AlignmentStudySettings = field(default_factory=AlignmentStudySettings)
    robustness: RobustnessStudySettings = field(default_factory=RobustnessStudySettings)
    xquad_r: XquadRStudySettings = field(default_factory=XquadRStudySettings)
