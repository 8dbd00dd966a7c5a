"""The training-side research studies end to end on a small slice (a tiny synthetic world, models trained for a
few steps, one cache): each job of the multirun through the entry point, then the Hydra callback's report over the
jobs' cells."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from omegaconf import open_dict

from helpers.config import compose_config
from xqg.tasks import entrypoints
from xqg.tasks.studies.cells import CELL_FILE, REPORT_DIR, load_cells
from xqg.tasks.studies.train_callback import TrainStudyCallback

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SMALL = [
    "experiment=demo",
    "data.world.n_entities=30",
    "data.world.passages_per_entity=3",
    "train.epochs=1",
    "trainer.max_steps=3",
    "train.batch_size=4",
    "train.train_n_passages=2",
    "train.dev.source=none",
    "backbone.p_max_len=48",
    "backbone.tiny.vocab_size=500",
    "generator.train.max_steps=3",
    "generator.model.tiny.d_model=32",
    "generator.model.tiny.num_layers=1",
    "generator.model.tiny.num_decoder_layers=1",
    "generator.languages=[ja,fi]",
    "augmentation.languages=[ja,fi]",
    "generator.num_queries=1",
    "augmentation.n=1",
    "logger=none",
    "metrics.workers=1",
    "metrics.significance.permutations=200",
]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _multirun(cache: Path, sweep: Path, study: str, jobs: list[list[str]]) -> Path:
    """Each job through ``evaluate.py``'s entry point into ``<sweep>/<n>``, then the callback's report."""
    for n, overrides in enumerate(jobs):
        cfg = compose_config(
            "evaluate", *SMALL, f"study={study}", *overrides, cache=cache, out=sweep / str(n)
        )
        entrypoints.evaluate(cfg)
        assert (sweep / str(n) / CELL_FILE).exists() and (sweep / str(n) / "report.md").exists()
    cfg = compose_config("evaluate", *SMALL, f"study={study}", cache=cache, out=sweep, hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(sweep)
    TrainStudyCallback().on_multirun_end(cfg)
    return sweep / REPORT_DIR


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for both studies: the tiny generator and the xDR retriever are trained once."""
    return tmp_path_factory.mktemp("train_studies_cache")


def test_alignment_study_tables_every_objective_with_and_without_xqg_against_xdr(
    cache: Path, tmp_path: Path
) -> None:
    kinds = ["none", "contrastive", "distill"]
    jobs = [[f"train.alignment.kind={k}", "train.alignment.teacher=initial"] for k in kinds]
    out = _multirun(cache, tmp_path / "sweep", "train_alignment", jobs)
    report = (out / "report.md").read_text()
    for name in ("xDR", "xDR +xQG", "xDR +contrastive", "xDR +contrastive +xQG", "xDR +distill +xQG"):
        assert f"| {name} | R@2kt |" in report
    assert "p < 0.05 vs xDR" in report and (out / "train_alignment.png").stat().st_size > 1000
    rows = _csv(out / "train_alignment.csv")
    langs = {r["lang"] for r in rows}
    assert "macro" in langs and "ja" in langs and {r["kind"] for r in rows} == set(kinds)
    assert len(rows) == 6 * 2 * len(langs)  # systems x (R@2kt, R@5kt) x (languages, macro)
    reference = [r for r in rows if r["system"] == "xDR"]
    assert all(r["diff_vs_xdr"] == "0.0" and r["p_ttest"] == "" for r in reference)
    tested = [r for r in rows if r["system"] != "xDR"]
    assert all(0.0 <= float(r["p_randomization"]) <= 1.0 for r in tested)
    cells = load_cells(tmp_path / "sweep", "train_alignment")
    assert [c.axes["kind"] for c in cells] == kinds
    checkpoints = {c.extra["checkpoint"] for c in cells}
    assert len(checkpoints) == 3  # one retriever per objective


def test_scaling_study_reports_recall_at_20_over_languages_and_few_shot_sizes(
    cache: Path, tmp_path: Path
) -> None:
    grid = [(1, 0), (2, 0), (2, 10)]
    small = ["train.synthetic.passages_per_language=6", "train.synthetic.languages=[ja,fi]"]
    jobs = [[*small, f"train.synthetic.max_languages={n}", f"train.synthetic.few_shot={k}"] for n, k in grid]
    out = _multirun(cache, tmp_path / "sweep", "train_scaling", jobs)
    report = (out / "report.md").read_text()
    assert "### Recall@20 (macro)" in report and "### R@2kt (macro)" in report
    assert "| few-shot \\ synthetic languages | 1 | 2 |" in report
    rows = _csv(out / "train_scaling.csv")
    assert {(int(r["synthetic_languages"]), int(r["few_shot"])) for r in rows} == set(grid)
    recall = [float(r["value"]) for r in rows if r["measure"] == "Recall@20"]
    assert recall and all(0.0 <= v <= 100.0 for v in recall)
    assert (out / "train_scaling.png").stat().st_size > 1000
    cells = load_cells(tmp_path / "sweep", "train_scaling")
    assert [c.extra["synthetic_languages"] for c in cells] == [["ja"], ["ja", "fi"], ["ja", "fi"]]
    assert len({c.extra["checkpoint"] for c in cells}) == 3
