"""``evaluate.py``: retriever checkpoint -> passage and query embeddings -> exact search -> run -> R@kt, and the
same with xQG-augmented passages, compared with paired significance tests.

One small function per stage, each reusing its cached artifact when the fingerprint matches:

    data -> checkpoint (given, or trained/reused by ``train_or_load``) -> passage embeddings -> query embeddings
         -> [xQG: generated queries -> prefix sums of their embeddings -> fusion transform]
         -> search (cached run) -> run files -> score -> report (table, results.json, trial.json, W&B) -> objective

xQG plugs in between the embeddings and the search: :func:`search_run` takes a chunk ``transform`` that fuses
each block of passage embeddings with its generated-query sums before it is indexed, so a sweep trial that
changes alpha or n re-encodes nothing; the baseline (no fusion) run is cached and re-scored from the warm token
cache, so every trial reports its significance against alpha = 0 at little cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from xqg.core.artifacts import ArtifactDir, atomic_write_json, fingerprint
from xqg.core.config import plain
from xqg.core.errors import XqgInputError
from xqg.retrieval.encode import EmbeddingStore, Retriever, encode_corpus, encode_queries, resolve_device
from xqg.retrieval.index import SearchResult, Transform, search

log = logging.getLogger(__name__)
Run = dict[str, list[tuple[str, float]]]
RUN_FILES = {"tevatron": "run.tsv", "trec": "run.trec"}
RUNS_KIND = "runs"
RUNS_CODE_VERSION = "1"
BASELINE, XQG = "xDR", "+xQG"


@dataclass
class Inputs:
    """What every search over one setup shares: data, checkpoint and the cached embeddings."""

    questions: list[Any]
    corpus: Any
    retriever: Retriever
    passages: EmbeddingStore
    queries: EmbeddingStore


# -- stages -----------------------------------------------------------------------------------------------------
def load_questions(cfg: DictConfig, data: Any) -> list[Any]:
    """The questions of ``retrieval.split`` (dev or test) in the bundle's languages."""
    from xqg.data.formats.xor import read_xor_questions

    split = str(cfg.retrieval.split)
    if split not in ("dev", "test"):
        raise XqgInputError(f"must be dev or test, got {split!r}", field="retrieval.split")
    path = data.dev_questions_path if split == "dev" else data.test_questions_path  # resolves only this one
    if path is None:
        raise XqgInputError(f"data {data.name!r} has no {split} questions", field="retrieval.split")
    return read_xor_questions(path, getattr(data, "languages", None) or None)


def retriever_checkpoint(cfg: DictConfig) -> str:
    """``retrieval.checkpoint`` (a folder or hub name) when set, else the retriever ``train.py`` would train
    for this config, trained now or reused from the cache."""
    if cfg.retrieval.get("checkpoint"):
        return str(cfg.retrieval.checkpoint)
    from xqg.tasks.train_retriever import train_or_load

    return str(train_or_load(cfg))


def encode_passages(cfg: DictConfig, retriever: Retriever, corpus: Any) -> EmbeddingStore | None:
    """Cached passage embeddings; None when ``retrieval.shard_index`` made this a worker encoding one share."""
    r = cfg.retrieval
    return encode_corpus(
        retriever,
        corpus,
        cfg.paths.cache_dir,
        dtype=str(r.dtype),
        batch_size=int(r.passage_batch_size),
        shard_size=r.shard_size,
        num_shards=r.num_shards,
        shard_index=r.shard_index,
        max_len=r.p_max_len,
        chunk_size=r.chunk_size,
    )


def encode_questions(cfg: DictConfig, retriever: Retriever, questions: list[Any]) -> EmbeddingStore:
    r = cfg.retrieval
    return encode_queries(
        retriever,
        [q.qid for q in questions],
        [q.text for q in questions],
        cfg.paths.cache_dir,
        batch_size=int(r.query_batch_size),
        max_len=r.q_max_len,
    )


def search_run(cfg: DictConfig, inputs: Inputs, transform: Transform | None = None) -> Run:
    """Exact top-``retrieval.depth`` search for ``inputs.questions``; ``transform`` rewrites each passage block
    before indexing."""
    all_ids = list(inputs.queries.ids)
    wanted = {q.qid for q in inputs.questions}
    rows = [i for i, qid in enumerate(all_ids) if qid in wanted]
    matrix = inputs.queries.load()
    if len(rows) != len(all_ids):
        matrix = matrix[rows]
    result: SearchResult = search(
        matrix,
        inputs.passages,
        int(cfg.retrieval.depth),
        transform=transform,
        chunk_rows=int(cfg.retrieval.search_chunk_rows),
        device=str(cfg.retrieval.device),
    )
    return result.to_run([all_ids[i] for i in rows])


def cached_search(
    cfg: DictConfig,
    inputs: Inputs,
    transform: Transform | None = None,
    fusion: dict[str, Any] | None = None,
    extra_inputs: dict[str, str] | None = None,
) -> Run:
    """:func:`search_run`, remembered as a run file in ``<cache>/runs/<fp>/`` (fp: embeddings, questions, depth
    and the fusion settings), so the baseline is searched once for a whole sweep and a repeated trial is free."""
    from xqg.data.formats.runs import read_run, write_run

    art = ArtifactDir.for_spec(
        cfg.paths.cache_dir,
        RUNS_KIND,
        config={
            "depth": int(cfg.retrieval.depth),
            "fusion": fusion,
            "questions": fingerprint(sorted(q.qid for q in inputs.questions)),
        },
        inputs={
            "passages": str(inputs.passages.fingerprint),
            "queries": str(inputs.queries.fingerprint),
            **(extra_inputs or {}),
        },
        code_version=RUNS_CODE_VERSION,
    )
    path = art.path / "run.tsv"
    if art.complete:
        log.info("reusing cached run %s", path)
        return read_run(path)
    ranked = search_run(cfg, inputs, transform)
    art.begin()
    write_run(path, ranked, fmt="tevatron")
    art.finalize(counts={"queries": len(ranked), "depth": int(cfg.retrieval.depth)})
    return ranked


def write_runs(cfg: DictConfig, run: Run, out_dir: Path) -> dict[str, str]:
    from xqg.data.formats.runs import write_run

    written = {}
    for fmt in cfg.retrieval.run_formats:
        if fmt not in RUN_FILES:
            raise XqgInputError(
                f"unknown run format {fmt!r}; choose from {sorted(RUN_FILES)}", field="retrieval.run_formats"
            )
        path = out_dir / RUN_FILES[fmt]
        write_run(path, run, fmt=fmt)
        written[fmt] = str(path)
    return written


def score(cfg: DictConfig, inputs: Inputs, run: Run) -> Any:
    """Official XOR-Retrieve R@kt with the ``metrics`` group's settings; passage tokens are cached (under
    ``metrics.token_cache_dir``) across runs and sweep trials."""
    from xqg.evaluation.metrics import score_run
    from xqg.tasks.score import options_from_config

    o = options_from_config(cfg.metrics)
    return score_run(
        inputs.questions,
        run,
        inputs.corpus,
        o.ks,
        cache_dir=cfg.paths.cache_dir,
        allow_missing=o.allow_missing,
        allow_unknown=o.allow_unknown,
        token_cache_dir=o.token_cache_dir,
        workers=o.workers,
        nltk_data=o.nltk_data,
    )


def compare_to_baseline(cfg: DictConfig, baseline: Any, result: Any) -> Any:
    """Paired t-test and randomisation test of +xQG against the baseline, per language and macro."""
    from xqg.evaluation.significance import compare
    from xqg.tasks.score import options_from_config

    o = options_from_config(cfg.metrics)
    return compare(
        baseline,
        result,
        tests=o.tests,
        permutations=o.permutations,
        seed=o.seed,
        alpha=o.alpha,
        name_a=BASELINE,
        name_b=XQG,
    )


def results_table(cfg: DictConfig, result: Any, baseline: Any = None, comparison: Any = None) -> str:
    """The paper's table: the system alone, or baseline and +xQG rows with significance markers."""
    from xqg.evaluation.report import paper_table, significance_footnotes

    decimals = int(cfg.metrics.get("decimals", 2))
    if comparison is None:
        return result.table(name=str(cfg.retrieval.name), decimals=decimals)
    return paper_table(
        {BASELINE: baseline.to_json(), XQG: result.to_json()},
        markers={XQG: comparison.marker_map()},
        decimals=decimals,
        footnotes=significance_footnotes(comparison.alpha, BASELINE, list(cfg.metrics.significance.tests)),
    )


def report(
    cfg: DictConfig,
    inputs: Inputs,
    result: Any,
    out_dir: Path,
    extra: dict[str, Any],
    baseline: Any = None,
    comparison: Any = None,
) -> dict[str, Any]:
    """Print the per-language table, write ``results.json`` (and ``trial.json`` for sweep reports) into the run
    folder, log metrics, the baseline and p-values to W&B."""
    from xqg.tasks.sweep import objective_value, write_trial_record
    from xqg.tasks.tracking import start_run

    metrics = result.to_json()
    base = baseline.to_json() if comparison is not None else None  # only meaningful next to its comparison
    print(results_table(cfg, result, baseline, comparison))
    for note in result.notes():
        print(note)
    value = objective_value(metrics, plain(cfg.retrieval.objective))
    aug = plain(cfg.get("augmentation") or {"enabled": False})
    summary = {
        "metrics": result.to_json(details=bool(cfg.metrics.get("details", False))),
        "objective": {"name": plain(cfg.retrieval.objective), "value": value},
        "augmentation": aug,
        "depth": int(cfg.retrieval.depth),
        "split": str(cfg.retrieval.split),
        "questions": len(inputs.questions),
        "checkpoint": inputs.retriever.path,
        "artifacts": {
            "passage_embeddings": str(inputs.passages.path),
            "query_embeddings": str(inputs.queries.path),
        },
        **extra,
    }
    if base is not None:
        summary["baseline"] = base
        summary["significance"] = comparison.to_json()
    atomic_write_json(out_dir / "results.json", summary)
    write_trial_record(
        out_dir,
        aug,
        metrics,
        objective=value,
        objective_spec=plain(cfg.retrieval.objective),
        markers=_markers_json(comparison),
        baseline=base,
    )
    log.info("wrote %s", out_dir / "results.json")
    langs = result.languages
    tracker = start_run(cfg, job_type="evaluate")
    try:
        flat = {f"{m}/{lang}": block[lang] for m, block in metrics.items() for lang in [*langs, "macro"]}
        if aug.get("enabled"):
            flat.update({"xqg/alpha": float(aug["alpha"]), "xqg/n": int(aug["n"])})
        if base is not None:
            flat.update({f"baseline/{m}/{x}": b[x] for m, b in base.items() for x in [*langs, "macro"]})
            for m, per in comparison.tests.items():
                for lang, tests in per.items():
                    for t, r in tests.items():
                        flat[f"p_value/{t}/{m}/{lang}"] = r.p_value
        tracker.log_metrics(flat)
        tracker.log_table(
            "retrieval",
            ["metric", *langs, "macro"],
            [[m, *(b[x] for x in [*langs, "macro"])] for m, b in metrics.items()],
        )
    finally:
        tracker.finish()
    return summary


def _markers_json(comparison: Any) -> dict[str, dict[str, str]] | None:
    if comparison is None:
        return None
    out: dict[str, dict[str, str]] = {}
    for (metric, lang), mark in comparison.marker_map().items():
        out.setdefault(metric, {})[lang] = mark
    return out


def xqg_transform(cfg: DictConfig, inputs: Inputs) -> tuple[Transform | None, dict[str, Any], dict[str, str]]:
    """Generated queries (made or imported if missing) -> cached prefix sums of their query embeddings -> the
    fusion transform for the search, with the fusion settings and the artifacts they came from."""
    from xqg.generation.generate import ensure_generated
    from xqg.retrieval.augment import ensure_query_sums, fusion_from_config, query_sums_config

    aug = plain(cfg.augmentation)
    generated = ensure_generated(cfg, inputs.corpus)
    sums = ensure_query_sums(
        generated,
        inputs.retriever,
        inputs.passages,
        cfg.paths.cache_dir,
        query_sums_config(aug),
        batch_size=int(cfg.retrieval.query_batch_size),
        max_len=cfg.retrieval.q_max_len,
    )
    fusion = {k: aug.get(k) for k in ("alpha", "n", "mode", "languages")}
    return fusion_from_config(aug, sums), fusion, {"query_sums": str(sums.fingerprint)}


# -- the job ----------------------------------------------------------------------------------------------------
def prepare(cfg: DictConfig) -> Inputs | None:
    """Data, checkpoint and embeddings (each cached); None when this call only encoded one shard."""
    from xqg.data.bundle import load_data
    from xqg.data.corpus import open_corpus

    data = load_data(cfg.data, cfg.paths)
    questions = load_questions(cfg, data)
    corpus = open_corpus(data.corpus_path, cfg.paths.cache_dir)
    retriever = Retriever(retriever_checkpoint(cfg), resolve_device(str(cfg.retrieval.device)))
    passages = encode_passages(cfg, retriever, corpus)
    if passages is None:
        log.info(
            "encoded shard %s of the passage embeddings; run again without retrieval.shard_index once every "
            "shard is done to search",
            cfg.retrieval.shard_index,
        )
        return None
    queries = encode_questions(cfg, retriever, questions)
    return Inputs(questions, corpus, retriever, passages, queries)


def run(cfg: DictConfig) -> float | list[float] | None:
    """``python evaluate.py``: returns the objective (macro ``retrieval.objective``; a list for multi-objective
    sweeps; None for a shard-encoding worker)."""
    from dataclasses import replace

    from xqg.tasks.sweep import split_from_config

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = prepare(cfg)
    if inputs is None:
        return None
    aug = cfg.get("augmentation")
    if aug is not None:
        inputs = replace(inputs, questions=split_from_config(inputs.questions, plain(aug)))
    baseline_run = cached_search(cfg, inputs)
    baseline = score(cfg, inputs, baseline_run)
    ranked, result, comparison, extra = baseline_run, baseline, None, {}
    if aug is not None and aug.get("enabled"):
        transform, fusion, sums = xqg_transform(cfg, inputs)
        ranked = cached_search(cfg, inputs, transform, fusion=fusion, extra_inputs=sums)
        result = score(cfg, inputs, ranked)
        comparison = compare_to_baseline(cfg, baseline, result)
        extra["artifacts_xqg"] = sums
    run_files = write_runs(cfg, ranked, out_dir)
    summary = report(
        cfg,
        inputs,
        result,
        out_dir,
        {"run_files": run_files, **extra},
        baseline=baseline,
        comparison=comparison,
    )
    return summary["objective"]["value"]
