"""``evaluate.py``: retriever checkpoint -> passage and query embeddings -> exact search -> run -> R@kt.

One small function per stage, each reusing its cached artifact when the fingerprint matches:

    data -> checkpoint (given, or trained/reused by ``train_or_load``) -> passage embeddings -> query embeddings
         -> search -> run files -> score -> report (table, results.json, W&B) -> objective

xQG plugs in between the embeddings and the search: :func:`search_run` takes a chunk ``transform`` that fuses
each block of passage embeddings with its generated-query sums before it is indexed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from xqg.artifacts import atomic_write_json
from xqg.encode import EmbeddingStore, Retriever, encode_corpus, encode_queries, resolve_device
from xqg.errors import XqgInputError
from xqg.index import SearchResult, Transform, search

log = logging.getLogger(__name__)
Run = dict[str, list[tuple[str, float]]]
RUN_FILES = {"tevatron": "run.tsv", "trec": "run.trec"}


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
    from xqg.data.xor import read_xor_questions

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
    from xqg.train_retriever import train_or_load

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
    """Exact top-``retrieval.depth`` search; ``transform`` rewrites each passage block before indexing."""
    result: SearchResult = search(
        inputs.queries.load(),
        inputs.passages,
        int(cfg.retrieval.depth),
        transform=transform,
        chunk_rows=int(cfg.retrieval.search_chunk_rows),
        device=str(cfg.retrieval.device),
    )
    return result.to_run(list(inputs.queries.ids))


def write_runs(cfg: DictConfig, run: Run, out_dir: Path) -> dict[str, str]:
    from xqg.runs import write_run

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
    from xqg.metrics import score_run
    from xqg.scoring import options_from_config

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


def objective(cfg: DictConfig, result: Any) -> float:
    """Macro of the metric named by ``retrieval.objective`` (``R@2kt`` by default): what sweeps maximise."""
    name = str(cfg.retrieval.objective)
    for k, value in result.macro.items():
        if f"R@{k}kt" == name:
            return float(value)
    raise XqgInputError(
        f"{name!r} is not among the computed metrics {list(result.to_json())}", field="retrieval.objective"
    )


def report(
    cfg: DictConfig, inputs: Inputs, result: Any, out_dir: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    """Print the per-language table, write ``results.json`` into the run folder, log to W&B."""
    from xqg.tracking import start_run

    metrics = result.to_json()
    print(result.table(name=str(cfg.retrieval.name), decimals=int(cfg.metrics.get("decimals", 2))))
    for note in result.notes():
        print(note)
    summary = {
        "metrics": result.to_json(details=bool(cfg.metrics.get("details", False))),
        "objective": {"name": str(cfg.retrieval.objective), "value": objective(cfg, result)},
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
    atomic_write_json(out_dir / "results.json", summary)
    log.info("wrote %s", out_dir / "results.json")
    langs = result.languages
    tracker = start_run(cfg, job_type="evaluate")
    try:
        flat = {f"{m}/{lang}": block[lang] for m, block in metrics.items() for lang in [*langs, "macro"]}
        tracker.log_metrics(flat)
        tracker.log_table(
            "retrieval",
            ["metric", *langs, "macro"],
            [[m, *(b[x] for x in [*langs, "macro"])] for m, b in metrics.items()],
        )
    finally:
        tracker.finish()
    return summary


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


def run(cfg: DictConfig) -> float | None:
    """``python evaluate.py``: returns macro ``retrieval.objective`` (None for a shard-encoding worker)."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = prepare(cfg)
    if inputs is None:
        return None
    ranked = search_run(cfg, inputs)
    run_files = write_runs(cfg, ranked, out_dir)
    result = score(cfg, inputs, ranked)
    summary = report(cfg, inputs, result, out_dir, {"run_files": run_files})
    return float(summary["objective"]["value"])
