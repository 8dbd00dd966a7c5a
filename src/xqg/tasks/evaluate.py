"""``evaluate.py``: retriever checkpoint -> passage and query embeddings -> exact search -> run -> R@kt, and the
same with xQG-augmented passages, compared with paired significance tests.

Each step reuses its cached artifact when the fingerprint matches:

    data -> checkpoint (given, or trained/reused by ``train_or_load``) -> passage embeddings -> query embeddings
         -> [xQG: generated queries -> prefix sums of their embeddings -> fusion transform]
         -> search (cached run) -> run files -> score -> report (table, results.json, trial.json, W&B) -> objective

xQG plugs in between the embeddings and the search: the search takes a chunk ``transform`` that fuses each block
of passage embeddings with its generated-query sums before it is indexed, so a sweep trial that changes alpha or
n re-encodes nothing; the baseline (no fusion) run is cached and re-scored from the warm token cache, so every
trial reports its significance against alpha = 0 at little cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from xqg.core.artifacts import atomic_write_json, atomic_write_text
from xqg.core.device import resolve_device
from xqg.core.errors import XqgInputError
from xqg.data.bundle import DataBundle
from xqg.data.corpus import CorpusStore, open_corpus
from xqg.data.formats.qrels import Qrels, read_qrels
from xqg.data.formats.runs import Run, write_run
from xqg.data.formats.xor import read_xor_questions
from xqg.data.records import Question
from xqg.evaluation.gold_measures import GoldOptions, with_gold
from xqg.evaluation.result import EvalResult
from xqg.evaluation.score_files import compare_results, score_ranked
from xqg.evaluation.splits import split_questions
from xqg.generation.quality import quality_table
from xqg.generation.store import GeneratedStore
from xqg.retrieval.embeddings import EmbeddingStore, encode_corpus, encode_queries
from xqg.retrieval.encode import Retriever
from xqg.retrieval.fusion import Fusion, FusionTransform
from xqg.retrieval.query_sums_build import ensure_query_sums
from xqg.retrieval.runs import cached_search
from xqg.tasks import train_retriever
from xqg.tasks.generate import ensure_generated, generated_quality
from xqg.tasks.results import BASELINE, report, xqg_name
from xqg.tasks.schema import EvaluateSettings
from xqg.tasks.score import options_from_settings

log = logging.getLogger(__name__)
RUN_FILES = {"tevatron": "run.tsv", "trec": "run.trec"}


@dataclass
class Inputs:
    """What every search over one setup shares: data, checkpoint and the cached embeddings."""

    questions: list[Question]
    corpus: CorpusStore
    retriever: Retriever
    passages: EmbeddingStore
    queries: EmbeddingStore
    qrels: Qrels | None = None  # gold passages of the questions, where the data has them (gold measures)


@dataclass(frozen=True)
class XqgSearch:
    """The xQG side of a run: the fusion transform, its setting, and the artifact it reads."""

    transform: FusionTransform
    fusion: Fusion
    query_sums: str  # fingerprint of the query-sum artifact
    generated: GeneratedStore | None = None  # the queries fused (their quality goes into the report)


# -- stages -----------------------------------------------------------------------------------------------------
def load_questions(settings: EvaluateSettings, data: DataBundle) -> list[Question]:
    """The questions of ``retrieval.split`` (dev or test) in the bundle's languages."""
    split = settings.retrieval.split
    if split not in ("dev", "test"):
        raise XqgInputError(f"must be dev or test, got {split!r}", field="retrieval.split")
    path = data.dev_questions_path if split == "dev" else data.test_questions_path  # resolves only this one
    if path is None:
        raise XqgInputError(f"data {data.name!r} has no {split} questions", field="retrieval.split")
    return read_xor_questions(path, data.languages or None)


def retriever_checkpoint(settings: EvaluateSettings) -> str:
    """``retrieval.checkpoint`` (a folder or hub name) when set, else the retriever ``train.py`` would train
    for these settings, trained now or reused from the cache."""
    if settings.retrieval.checkpoint:
        return settings.retrieval.checkpoint
    return str(train_retriever.train_or_load(settings))


def prepare(settings: EvaluateSettings) -> Inputs | None:
    """Data, checkpoint and embeddings (each cached); None when this call only encoded one shard."""
    r, cache = settings.retrieval, settings.paths.cache_dir
    data = settings.data.bundle(cache)
    questions = load_questions(settings, data)
    corpus = open_corpus(data.corpus_path, cache)
    retriever = Retriever(retriever_checkpoint(settings), resolve_device(r.device))
    passages = encode_corpus(
        retriever,
        corpus,
        cache,
        dtype=r.dtype,
        batch_size=r.passage_batch_size,
        shard_size=r.shard_size,
        num_shards=r.num_shards,
        shard_index=r.shard_index,
        max_len=r.p_max_len,
        chunk_size=r.chunk_size,
    )
    if passages is None:
        log.info(
            "encoded shard %s of the passage embeddings; run again without retrieval.shard_index once every "
            "shard is done to search",
            r.shard_index,
        )
        return None
    queries = encode_queries(
        retriever,
        [q.qid for q in questions],
        [q.text for q in questions],
        cache,
        batch_size=r.query_batch_size,
        max_len=r.q_max_len,
    )
    split = settings.retrieval.split
    qrels = read_qrels(data.qrels[split]) if split in data.qrels else None
    return Inputs(questions, corpus, retriever, passages, queries, qrels)


def xqg_search(settings: EvaluateSettings, inputs: Inputs, fusion: Fusion) -> XqgSearch:
    """Generated queries (made or imported if missing) -> cached prefix sums of their query embeddings -> the
    fusion transform for the search."""
    generated = ensure_generated(settings, inputs.corpus)
    sums = ensure_query_sums(
        generated,
        inputs.retriever,
        inputs.passages,
        settings.paths.cache_dir,
        settings.augmentation.query_sums,
        batch_size=settings.retrieval.query_batch_size,
        max_len=settings.retrieval.q_max_len,
    )
    return XqgSearch(FusionTransform(sums, fusion), fusion, str(sums.fingerprint), generated)


def search(settings: EvaluateSettings, inputs: Inputs, xqg: XqgSearch | None = None) -> Run:
    """The (cached) run of ``inputs.questions``: the baseline, or with xQG-fused passages."""
    r = settings.retrieval
    return cached_search(
        inputs.queries,
        [q.qid for q in inputs.questions],
        inputs.passages,
        r.depth,
        settings.paths.cache_dir,
        transform=xqg.transform if xqg else None,
        fusion=xqg.fusion.to_json() if xqg else None,
        extra_inputs={"query_sums": xqg.query_sums} if xqg else None,
        chunk_rows=r.search_chunk_rows,
        device=r.device,
        backend=r.backend,
        reuse_scores=r.reuse_scores,
    )


def write_runs(formats: list[str], run: Run, out_dir: Path) -> dict[str, str]:
    """The run in each of ``formats`` (checked before anything ran) in the run folder."""
    written = {}
    for fmt in formats:
        path = out_dir / RUN_FILES[fmt]
        write_run(path, run, fmt=fmt)
        written[fmt] = str(path)
    return written


def gold_options(settings: EvaluateSettings, inputs: Inputs) -> GoldOptions | None:
    """MRR and Recall@k of the gold passages (``metrics.mrr_depth``, ``metrics.gold_ks``) when the data has qrels
    for the scored split; cut-offs deeper than ``retrieval.depth`` are left out (the run holds only that many)."""
    m, depth = settings.metrics, settings.retrieval.depth
    ks = tuple(k for k in m.gold_ks if k <= depth)
    if inputs.qrels is None or not (m.mrr_depth or ks):
        return None
    if len(ks) < len(m.gold_ks):
        log.info(
            "Recall@k beyond retrieval.depth (%d) left out: %s", depth, [k for k in m.gold_ks if k > depth]
        )
    return GoldOptions(min(m.mrr_depth, depth), ks)


def _gold(inputs: Inputs, run: Run, result: EvalResult, options: GoldOptions | None) -> EvalResult:
    if options is None or inputs.qrels is None:
        return result
    return with_gold(result, run, inputs.qrels, options)


def write_quality(settings: EvaluateSettings, store: GeneratedStore, inputs: Inputs, out_dir: Path) -> dict:
    """The fused queries' quality (:func:`xqg.tasks.generate.generated_quality`) as ``generator_quality.json``
    and ``generator_quality.md`` in the run folder; returns it (for ``results.json``)."""
    q = generated_quality(settings, store, inputs.corpus, inputs.questions)
    atomic_write_json(out_dir / "generator_quality.json", q)
    parts = [f"# Quality of the {q['label']} (store {q['store']})", ""]
    for part, what in (
        ("gold", "gold passages of the scored questions"),
        ("sample", "first passages of the store"),
    ):
        if q.get(part):
            parts += [f"## {what} ({q['passages'][part]} passages, percent)", "", quality_table(q[part]), ""]
    atomic_write_text(out_dir / "generator_quality.md", "\n".join(parts))
    return q


# -- the job ----------------------------------------------------------------------------------------------------
def run(settings: EvaluateSettings) -> float | list[float] | None:
    """``python evaluate.py``: returns the objective (macro ``retrieval.objective``; a list for multi-objective
    sweeps; None for a shard-encoding worker)."""
    aug = settings.augmentation
    fusion = aug.fusion  # validated before anything runs
    for fmt in settings.retrieval.run_formats:
        if fmt not in RUN_FILES:
            raise XqgInputError(
                f"unknown run format {fmt!r}; choose from {sorted(RUN_FILES)}", field="retrieval.run_formats"
            )
    out_dir = Path(settings.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = prepare(settings)
    if inputs is None:
        return None
    inputs = replace(inputs, questions=split_questions(inputs.questions, aug.tune_split, aug.split_salt))
    # official R@kt; passage tokens are cached (metrics.token_cache_dir) across runs and sweep trials
    scoring = options_from_settings(settings.metrics, settings.paths.cache_dir)
    baseline_run = search(settings, inputs)
    gold_opts = gold_options(settings, inputs)
    baseline = _gold(
        inputs, baseline_run, score_ranked(inputs.questions, baseline_run, inputs.corpus, scoring), gold_opts
    )
    ranked, result, comparison, extra = baseline_run, baseline, None, {}
    if fusion is not None:
        xqg = xqg_search(settings, inputs, fusion)
        ranked = search(settings, inputs, xqg)
        result = _gold(
            inputs, ranked, score_ranked(inputs.questions, ranked, inputs.corpus, scoring), gold_opts
        )
        # R@kt and the gold measures, tested (and corrected, if asked) as one family
        comparison = compare_results(baseline, result, scoring, BASELINE, xqg_name(settings))
        extra["artifacts_xqg"] = {"query_sums": xqg.query_sums}
        if xqg.generated is not None:
            extra["generator_quality"] = write_quality(settings, xqg.generated, inputs, out_dir)
    extra["run_files"] = write_runs(settings.retrieval.run_formats, ranked, out_dir)
    artifacts = {
        "passage_embeddings": str(inputs.passages.path),
        "query_embeddings": str(inputs.queries.path),
    }
    summary = report(
        settings,
        result,
        out_dir,
        questions=len(inputs.questions),
        checkpoint=inputs.retriever.path,
        artifacts=artifacts,
        extra=extra,
        baseline=baseline,
        comparison=comparison,
    )
    return summary["objective"]["value"]
