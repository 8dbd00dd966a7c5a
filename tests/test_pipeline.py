"""evaluate.py end to end on the synthetic world: tiny trained retriever -> embeddings -> search -> R@kt.

One short training run per test session (cached in a session cache dir and reused by every test); each test
composes the real Hydra config and calls ``pipeline.run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.config import settings
from xqg.data.formats.runs import read_run
from xqg.retrieval.embeddings import EmbeddingStore
from xqg.tasks import evaluate as pipeline
from xqg.tasks import results, tracking
from xqg.tasks.schema import EvaluateSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
LANGS = ["ar", "bn", "fi", "ja", "ko", "ru", "te"]


SMALL = [
    "data=synthetic",
    "data.world.n_entities=60",
    "data.world.passages_per_entity=3",
    "backbone=tiny",
    "trainer=cpu",
    "train.epochs=1",
    "trainer.max_steps=3",  # a trained checkpoint, not a good one: the test is about the pipeline
    "train.batch_size=4",
    "train.train_n_passages=2",
    "backbone.p_max_len=64",
    "train.dev.source=none",
    "logger=none",
    "retrieval.passage_batch_size=64",
    "metrics.workers=1",
]


def _compose(cache: Path, out: Path, *overrides: str) -> EvaluateSettings:
    """The evaluate settings of a small, quickly trained pipeline on the synthetic world."""
    return settings("evaluate", *SMALL, *overrides, cache=cache, out=out)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline_cache")


@pytest.fixture(scope="module")
def first_run(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("run1")
    trackers: list[tracking.Tracker] = []

    def start_run(logger: object, *, config: object, job_type: str, name: str) -> tracking.Tracker:
        assert (job_type, name) == ("evaluate", "default-evaluate")
        trackers.append(tracking.Tracker(None))
        return trackers[-1]

    mp = pytest.MonkeyPatch()
    mp.setattr(results, "start_run", start_run)
    try:
        cfg = _compose(cache, out, "retrieval.depth=30")
        value = pipeline.run(cfg)
    finally:
        mp.undo()
    return {"cfg": cfg, "out": out, "value": value, "trackers": trackers}


def test_evaluate_writes_results_runs_and_logs(first_run: dict) -> None:
    out: Path = first_run["out"]
    results = json.loads((out / "results.json").read_text())
    for metric in ("R@2kt", "R@5kt"):
        block = results["metrics"][metric]
        assert set(LANGS) <= set(block) and 0.0 <= block["macro"] <= 100.0
        assert block["macro"] == pytest.approx(np.mean([block[lang] for lang in LANGS]))
    assert first_run["value"] == results["metrics"]["R@2kt"]["macro"] == results["objective"]["value"]
    tev, trec = read_run(out / "run.tsv"), read_run(out / "run.trec")
    assert len(tev) == results["questions"] and all(len(v) == 30 for v in tev.values())
    assert {q: [d for d, _ in v] for q, v in tev.items()} == {q: [d for d, _ in v] for q, v in trec.items()}
    (tracker,) = first_run["trackers"]
    (logged,) = [h["data"] for h in tracker.history if h["kind"] == "summary"]  # final values, no histories
    assert logged["R@2kt/macro"] == first_run["value"] and {f"R@5kt/{x}" for x in LANGS} <= set(logged)
    (table,) = [h for h in tracker.history if h["kind"] == "table"]
    assert table["columns"] == ["metric", *LANGS, "macro"]
    assert {"R@2kt", "R@5kt"} <= {row[0] for row in table["data"]}  # one row per metric computed


def test_run_equals_brute_force_dot_product_search(first_run: dict) -> None:
    results = json.loads((first_run["out"] / "results.json").read_text())
    passages = EmbeddingStore.open(results["artifacts"]["passage_embeddings"])
    queries = EmbeddingStore.open(results["artifacts"]["query_embeddings"])
    assert passages.dtype == "fp16" and passages.manifest.inputs.keys() == {"retriever", "corpus"}
    scores = queries.load().astype(np.float64) @ passages.load().astype(np.float64).T
    run = read_run(first_run["out"] / "run.tsv")
    docids = passages.ids
    for i, qid in enumerate(queries.ids):
        order = np.lexsort((np.arange(len(docids)), -scores[i]))[:31]
        got = run[str(qid)]
        np.testing.assert_allclose([s for _, s in got], scores[i, order[:30]], rtol=1e-5, atol=1e-5)
        ref = [str(d) for d in docids[order]]
        for rank, (docid, _score) in enumerate(got):
            if docid != ref[rank]:  # only a float-rounding tie may swap places
                near = abs(scores[i, order[rank]] - scores[i, order[rank + 1]]) < 1e-4 or (
                    rank > 0 and abs(scores[i, order[rank]] - scores[i, order[rank - 1]]) < 1e-4
                )
                assert near, (qid, rank, docid, ref[rank])


def test_settings_that_matter_rebuild_and_others_reuse(first_run: dict, cache: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in (cache / "embeddings").iterdir())
    first = json.loads((first_run["out"] / "results.json").read_text())["artifacts"]
    # depth and logging do not change the embeddings: everything is reused, nothing is encoded again
    # (the encoder's batch size does change them, in the last bits: xqg.retrieval.embeddings.batching)
    cfg = _compose(cache, tmp_path / "a", "retrieval.depth=10", "logger=csv")
    value = pipeline.run(cfg)
    again = json.loads((tmp_path / "a" / "results.json").read_text())
    assert again["artifacts"] == first and sorted(p.name for p in (cache / "embeddings").iterdir()) == before
    assert value <= first_run["value"] + 1e-9  # fewer passages cannot find more answers
    # dtype and max length do: new embeddings
    cfg = _compose(cache, tmp_path / "b", "retrieval.dtype=fp32", "retrieval.p_max_len=48")
    pipeline.run(cfg)
    rebuilt = json.loads((tmp_path / "b" / "results.json").read_text())["artifacts"]
    assert rebuilt["passage_embeddings"] != first["passage_embeddings"]
    assert rebuilt["query_embeddings"] == first["query_embeddings"]
    assert len(list((cache / "embeddings").iterdir())) == len(before) + 1


def test_bad_settings_fail_with_one_line_naming_the_field(cache: Path, tmp_path: Path) -> None:
    from xqg.core.errors import XqgInputError

    # caught when the settings are made (xqg.tasks.config_checks), before any stage runs
    with pytest.raises(XqgInputError, match=r"field 'retrieval.split': must be one of \['dev', 'test'\]"):
        _compose(cache, tmp_path, "retrieval.split=val")
    with pytest.raises(XqgInputError, match=r"field 'retrieval.run_formats': .*'csv'"):
        _compose(cache, tmp_path, "retrieval.run_formats=[tevatron,csv]")
    # and by the stages themselves, for callers that build settings another way
    cfg = _compose(cache, tmp_path)
    cfg.retrieval.split = "val"
    with pytest.raises(XqgInputError, match=r"field 'retrieval.split': must be dev or test"):
        pipeline.load_questions(cfg, cfg.data.bundle(cfg.paths.cache_dir))
    cfg.retrieval.split, cfg.retrieval.run_formats = "dev", ["tevatron", "csv"]
    with pytest.raises(XqgInputError, match="unknown run format 'csv'"):  # before anything runs
        pipeline.run(cfg)
