"""evaluate.py with xQG on the synthetic world: imported generated queries -> prefix sums -> fused search.

The generated queries come in the released format (``ielab/xor-tydi-xqg-augmented``) through
``generator.queries_source``, so no generator is trained here; generation itself is tested in test_generate.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from test_pipeline import _compose
from xqg.data.corpus import open_corpus
from xqg.data.formats.runs import read_run
from xqg.tasks import evaluate as pipeline
from xqg.tasks.schema import EvaluateSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LANGS = ["ar", "bn", "fi", "ja", "ko", "ru", "te"]
# R@kt, and the gold-passage measures of the world's qrels up to retrieval.depth=30
MEASURES = {"R@2kt", "R@5kt", "MRR@10", "Recall@1", "Recall@5", "Recall@20"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A cache with a trained retriever and baseline, plus a released-format file of generated queries that
    copy each passage's title and a question word of every language (so fusion really moves the embeddings)."""
    cache = tmp_path_factory.mktemp("xqg_cache")
    base_out = tmp_path_factory.mktemp("baseline")
    cfg = _compose(cache, base_out, "retrieval.depth=30")
    pipeline.run(cfg)
    corpus = open_corpus(str(_bundle_corpus(cfg)), str(cache))
    words = {"ar": "ما", "bn": "কী", "fi": "mikä", "ja": "何", "ko": "무엇", "ru": "что", "te": "ఏమి"}
    released = tmp_path_factory.mktemp("released") / "generated.jsonl.gz"
    with gzip.open(released, "wt", encoding="utf-8") as f:
        for i in range(len(corpus)):
            p = corpus.row(i)
            gq = {lang: [f"{words[lang]} {p.title} {k}" for k in range(3)] for lang in LANGS}
            f.write(
                json.dumps({"docid": p.docid, "title": p.title, "text": p.text, "generated_queries": gq})
                + "\n"
            )
    return {"cache": cache, "baseline_out": base_out, "released": released}


def _bundle_corpus(cfg: EvaluateSettings) -> Path:
    return Path(cfg.data.bundle(cfg.paths.cache_dir).corpus_path)


def _xqg_run(setup: dict, out: Path, *overrides: str) -> tuple[float, dict]:
    cfg = _compose(
        setup["cache"],
        out,
        "retrieval.depth=30",
        "augmentation=xqg",
        f"generator.queries_source={setup['released']}",
        "augmentation.sums.n_max=3",
        "augmentation.n=3",
        *overrides,
    )
    value = pipeline.run(cfg)
    return value, json.loads((out / "results.json").read_text())


def test_alpha_zero_reproduces_the_baseline_run_exactly(setup: dict, tmp_path: Path) -> None:
    value, results = _xqg_run(setup, tmp_path, "augmentation.alpha=0.0", "augmentation.n=3")
    assert read_run(tmp_path / "run.tsv") == read_run(setup["baseline_out"] / "run.tsv")
    base = json.loads((setup["baseline_out"] / "results.json").read_text())
    assert results["metrics"] == base["metrics"] == results["baseline"]
    assert value == base["objective"]["value"]
    p_values = [
        t["p_value"]
        for per in results["significance"]["tests"].values()
        for tests in per.values()
        for t in tests.values()
    ]
    assert p_values and all(p == 1.0 for p in p_values)


def test_fusion_changes_the_run_and_records_the_trial(setup: dict, tmp_path: Path) -> None:
    value, results = _xqg_run(setup, tmp_path, "augmentation.alpha=0.5", "augmentation.n=2")
    assert read_run(tmp_path / "run.tsv") != read_run(setup["baseline_out"] / "run.tsv")
    assert results["augmentation"]["alpha"] == 0.5 and results["augmentation"]["n"] == 2
    assert set(results["significance"]["tests"]) == MEASURES
    assert value == results["metrics"]["R@2kt"]["macro"]
    record = json.loads((tmp_path / "trial.json").read_text())
    assert record["params"]["alpha"] == 0.5 and record["baseline"] == results["baseline"]
    assert set(record["markers"]) == MEASURES


def test_tune_and_report_halves_are_disjoint(setup: dict, tmp_path: Path) -> None:
    _, tune = _xqg_run(setup, tmp_path / "tune", "augmentation.tune_split=tune")
    _, report = _xqg_run(setup, tmp_path / "report", "augmentation.tune_split=report")
    q_tune = set(read_run(tmp_path / "tune" / "run.tsv"))
    q_report = set(read_run(tmp_path / "report" / "run.tsv"))
    assert q_tune and q_report and not q_tune & q_report
    assert tune["questions"] + report["questions"] == len(q_tune | q_report)


def test_holm_corrects_r_at_kt_and_the_gold_measures_as_one_family(setup: dict, tmp_path: Path) -> None:
    """metrics.correction=holm adjusts every test of the run's comparison as one family, gold measures included."""
    _, results = _xqg_run(
        setup, tmp_path, "augmentation.alpha=0.5", "augmentation.n=2", "metrics.correction=holm"
    )
    sig = results["significance"]
    assert sig["correction"] == "holm" and set(sig["tests"]) == MEASURES
    tests_count = sum(len(per_t) for per in sig["tests"].values() for per_t in per.values())
    assert sig["family"] == tests_count
    adjusted = sig["adjusted"]
    assert set(adjusted) == MEASURES
