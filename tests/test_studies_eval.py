"""The evaluation-side research studies end to end (``evaluate.py study=<name>``) on a small slice: a tiny
synthetic world, models trained for a few steps (shared by every study here through one cache), few questions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers.config import compose_config, few_steps, settings
from xqg.tasks import entrypoints
from xqg.tasks.studies import common

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SMALL = [
    "experiment=demo",
    "data.world.n_entities=40",
    "data.world.passages_per_entity=3",
    *few_steps(3),
    "train.dev.source=none",
    "backbone.tiny.max_tokenizer_texts=2000",  # the tokenizer's fit is the slow part of a tiny run
    "generator.max_source_length=64",
    "generator.num_queries=2",
    "generator.max_target_length=8",
    "generator.languages=[ja,ru]",
    "augmentation.languages=[ja,ru]",
    "augmentation.n=2",
    "logger=none",
    "metrics.workers=1",
    "study.bootstrap=20",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("studies_cache")


def _run(cache: Path, out: Path, *overrides: str) -> Path:
    """``evaluate.py`` with ``overrides`` through the entry point; the run folder."""
    entrypoints.evaluate(compose_config("evaluate", *SMALL, *overrides, cache=cache, out=out))
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def alignment_run(cache: Path, tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return _run(
        cache,
        tmp_path_factory.mktemp("alignment"),
        "study=alignment",
        f"study.alignment.source={shared_data / 'xquad'}",
        "study.alignment.max_articles=1",
        "study.alignment.languages=[de,zh]",
    )


def test_alignment_study_writes_tables_per_metric_and_state(alignment_run: Path) -> None:
    rows = _csv(alignment_run / "alignment.csv")
    states = ["backbone", "zero_shot", "zero_shot_xqg", "xdr", "xdr_xqg"]
    assert sorted({r["state"] for r in rows}) == sorted(states)
    by = {(r["state"], r["metric"], r["lang"]): r for r in rows}
    for s in states:
        for metric in ("cosine", "translation", "cka"):
            assert (s, metric, "de") in by and (s, metric, "en") not in by
        for metric in ("margin", "hard_margin", "mi"):
            assert all((s, metric, x) in by for x in ("de", "zh", "en"))
    for r in rows:  # a percentile interval of a mean holds the mean; CKA's (rows drawn twice) need not
        lo, value, hi = float(r["ci_low"]), float(r["value"]), float(r["ci_high"])
        assert lo <= hi and (r["metric"] == "cka" or lo - 1e-9 <= value <= hi + 1e-9)
    mi_cap = np.log(5)  # the first article has 5 paragraphs: the bound is capped at log 5
    assert all(float(r["value"]) <= mi_cap + 1e-9 for r in rows if r["metric"] == "mi")
    # xQG changes passages only: question-side metrics equal the retriever's, passage-side ones move
    for metric in ("cosine", "translation", "cka"):
        assert by[("xdr_xqg", metric, "de")]["value"] == by[("xdr", metric, "de")]["value"]
    assert by[("xdr_xqg", "margin", "en")]["value"] != by[("xdr", "margin", "en")]["value"]
    report = (alignment_run / "report.md").read_text()
    assert "InfoNCE" in report and "alignment_heatmaps.png" in report
    assert (alignment_run / "alignment_heatmaps.png").stat().st_size > 10_000
    assert (alignment_run / "alignment_mi.csv").is_file()


def test_alignment_study_is_cached_and_reproducible(
    alignment_run: Path, cache: Path, tmp_path: Path, shared_data: Path
) -> None:
    again = _run(
        cache,
        tmp_path,
        "study=alignment",
        f"study.alignment.source={shared_data / 'xquad'}",
        "study.alignment.max_articles=1",
        "study.alignment.languages=[de,zh]",
    )
    assert (again / "alignment.csv").read_text() == (alignment_run / "alignment.csv").read_text()


def test_a_study_setting_out_of_range_fails_before_any_work(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        _run(cache, tmp_path, "study=alignment", "study.alignment.states=[backbone,finetuned]")
    assert e.value.code == 2


def test_backbone_state_is_the_untrained_encoder_exported_once(cache: Path, tmp_path: Path) -> None:
    s = settings("evaluate", *SMALL, cache=cache, out=tmp_path)
    first = common.backbone_checkpoint(s)
    assert first == common.backbone_checkpoint(s)
    spec = json.loads((Path(first) / "xqg_retriever.json").read_text())
    assert spec["pooling"] == s.backbone.pooling and spec["normalize"] == s.backbone.normalize


def test_robustness_study_scores_every_perturbation_for_both_systems(cache: Path, tmp_path: Path) -> None:
    out = _run(
        cache,
        tmp_path,
        "study=robustness",
        "data.languages=[ja,ru]",
        "study.robustness.perturbations=[typo,transliterate,code_switch]",
        "study.robustness.rates=[0.5]",
    )
    rows = _csv(out / "robustness.csv")
    conditions = {(r["perturbation"], r["rate"]) for r in rows}
    assert conditions == {("clean", "0.0"), ("typo", "0.5"), ("transliterate", "0.5"), ("code_switch", "0.5")}
    by = {(r["perturbation"], r["lang"], r["metric"]): r for r in rows}
    for (kind, lang, metric), r in by.items():
        clean = by[("clean", lang, metric)]
        assert float(r["xdr_drop"]) == pytest.approx(float(r["xdr"]) - float(clean["xdr"]), abs=0.011)
        assert float(r["xqg_minus_xdr"]) == pytest.approx(float(r["xqg"]) - float(r["xdr"]), abs=0.011)
        assert 0.0 <= float(r["p_randomization"]) <= 1.0
        assert float(r["changed_share"]) > 0.5 or kind == "clean"
    assert {r["lang"] for r in rows} == {"ja", "ru", "macro"}
    report = (out / "report.md").read_text()
    assert "robustness gain" in report and (out / "robustness.png").stat().st_size > 10_000


def test_xquad_r_study_compares_backbone_xdr_and_xqg_per_language(
    cache: Path, tmp_path: Path, shared_data: Path
) -> None:
    out = _run(
        cache,
        tmp_path,
        "data=xquad_r",
        f"data.source.path={shared_data / 'xquad-r'}",
        "data.languages=[de,zh]",
        "data.split=[0.5,0.4,0.1]",  # 5 test articles
        "study=xquad_r",
        "retrieval.split=test",
    )
    rows = _csv(out / "xquad_r.csv")
    measures = {"mAP@20", "Recall@1", "Recall@5", "Recall@20"}
    assert {r["measure"] for r in rows} == measures
    assert {(r["system"], r["against"]) for r in rows} == {
        ("backbone", ""),
        ("xDR", "backbone"),
        ("+xQG", "xDR"),
    }
    assert {r["lang"] for r in rows} == {"de", "zh", "macro"}
    by = {(r["measure"], r["system"], r["lang"]): float(r["value"]) for r in rows}
    for system in ("backbone", "xDR", "+xQG"):  # recall grows with k; mAP@20 lies within [0, 100]
        assert (
            by[("Recall@1", system, "de")]
            <= by[("Recall@5", system, "de")]
            <= by[("Recall@20", system, "de")]
        )
        assert 0.0 <= by[("mAP@20", system, "macro")] <= 100.0
    for r in rows:
        if r["against"]:
            assert 0.0 <= float(r["p_ttest"]) <= 1.0 and 0.0 <= float(r["p_randomization"]) <= 1.0
    assert "mAP@20" in (out / "report.md").read_text() and (out / "xquad_r.png").is_file()
