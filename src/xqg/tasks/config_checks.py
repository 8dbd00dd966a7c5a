"""Every setting that can be checked from the composed config alone, checked before any stage runs.

The schema's types catch a misspelt key or a value of the wrong type at composition; this module catches the
values of the right type that are still wrong (a negative depth, an unknown dtype or device, a significance
level of 2, a tune split called ``foo``, a fused language that was never generated), each with the config key
named, so a mistake costs a second instead of the minutes of training, generation or encoding that come before
the stage that would have noticed. :func:`check_settings` is called by :func:`xqg.tasks.schema.validate`; the
stages keep their own checks for callers that do not come through the config.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES, normalize_lang
from xqg.data.formats.runs import FORMATS as RUN_FORMATS
from xqg.evaluation.result import metric_name
from xqg.evaluation.score_files import ScoreOptions
from xqg.generation.sampling import SAMPLERS
from xqg.generation.store import FORMATS as STORE_FORMATS
from xqg.models.alignment_loss import AlignmentConfig
from xqg.models.biencoder import RetrieverSpec
from xqg.retrieval.embeddings import DTYPES
from xqg.retrieval.fusion import Fusion
from xqg.retrieval.torch_search import BACKENDS

DATA_KINDS = ("synthetic", "files", "xquad_r")
UNITS = ("paragraph", "sentence")
RECIPE_SOURCES = ("xor", "english")  # as xqg.tasks.train_retriever.SOURCES
DEV_SOURCES = ("auto", "heldout", "train", "none")  # as xqg.tasks.train_retriever.DEV_SOURCES
SPLITS = ("dev", "test")
TUNE_SPLITS = (None, "tune", "report")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
PROMPT_FIELDS = {"language", "lang", "title", "passage"}
SEED_MAX = 2**32  # numpy and Lightning take seeds in [0, 2**32)
_SEARCH_DEVICE = re.compile(r"auto|cpu|gpu|cuda(:\d+)?")
_TORCH_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_DEV_OBJECTIVE = re.compile(r"(recall|mrr)@(\d+)")
#: ScoreOptions field -> the ``metrics`` key that sets it.
METRICS_KEYS = {
    "ks": "metrics.ks",
    "permutations": "metrics.significance.permutations",
    "seed": "metrics.significance.seed",
    "level": "metrics.significance.level",
    "decimals": "metrics.decimals",
    "workers": "metrics.workers",
    "tests": "metrics.significance.tests",
    "correction": "metrics.correction",
}


def _bad(key: str, message: str) -> XqgInputError:
    return XqgInputError(message, field=key)


def _int_at_least(value: Any, low: int, key: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(key, f"must be an integer >= {low}, got {value!r}")


def _number_in(value: float, low: float, high: float, key: str, *, open_low: bool = False) -> None:
    ok = (low < value if open_low else low <= value) and value <= high
    if not ok:
        lo = "(" if open_low else "["
        raise _bad(key, f"must be in {lo}{low:g}, {high:g}], got {value!r}")


def _positive(value: float, key: str) -> None:
    if not value > 0:  # also false for NaN
        raise _bad(key, f"must be > 0, got {value!r}")


def _seed(value: int, key: str) -> None:
    if not 0 <= value < SEED_MAX:
        raise _bad(key, f"must be in [0, 2**32), got {value!r}")


def _choice(value: Any, choices: Sequence[Any], key: str) -> None:
    if value not in choices:
        raise _bad(key, f"must be one of {list(choices)}, got {value!r}")


def _languages(codes: Iterable[str], key: str, *, allow_empty: bool = False) -> list[str]:
    out = []
    for code in codes:
        try:
            out.append(normalize_lang(code))
        except KeyError as e:
            raise _bad(key, str(e.args[0])) from None
    if not out and not allow_empty:
        raise _bad(key, "empty language list")
    if len(set(out)) != len(out):
        raise _bad(key, f"duplicate languages in {out}")
    return out


def _device(value: str, pattern: re.Pattern[str], key: str, what: str) -> None:
    if not pattern.fullmatch(value):
        raise _bad(key, f"must be {what}, got {value!r}")


# -- groups -------------------------------------------------------------------------------------------------------
def check_data(d: Any) -> None:
    _choice(d.kind, DATA_KINDS, "data.kind")
    _languages(d.languages, "data.languages", allow_empty=True)
    if d.kind == "xquad_r":
        _choice(d.unit, UNITS, "data.unit")
        if d.split is not None and (len(d.split) != 3 or min(d.split) < 0 or abs(sum(d.split) - 1.0) > 1e-6):
            raise _bad(
                "data.split", f"three non-negative shares (train, dev, test) summing to 1, got {d.split}"
            )
    if d.world is not None:
        _seed(d.world.seed, "data.world.seed")


def check_backbone(b: Any) -> None:
    try:
        RetrieverSpec(
            backbone=b.name_or_path or b.name,
            pooling=b.pooling,
            shared=b.shared,
            normalize=b.normalize,
            temperature=b.temperature,
            q_max_len=b.q_max_len,
            p_max_len=b.p_max_len,
        )
    except XqgInputError as e:
        raise _bad(f"backbone.{e.field}", e.message) from None


def check_synthetic(syn: Any) -> None:
    """``train.synthetic`` (xqg.tasks.synthetic_train): counts, negatives, languages, few-shot size and ratio."""
    for name in ("passages_per_language", "queries_per_passage", "shard_size", "round_trip_depth"):
        _int_at_least(getattr(syn, name), 1, f"train.synthetic.{name}")
    _int_at_least(syn.n_negatives, 0, "train.synthetic.n_negatives")
    _int_at_least(syn.few_shot, 0, "train.synthetic.few_shot", optional=True)
    _choice(syn.negatives, ("random", "mined"), "train.synthetic.negatives")
    if syn.ratio is not None:
        _number_in(syn.ratio, 0, 1, "train.synthetic.ratio")
    if syn.max_languages is not None and not 1 <= syn.max_languages <= len(syn.languages):
        raise _bad("train.synthetic.max_languages", f"must be between 1 and {len(syn.languages)}")


def check_recipe(t: Any) -> None:
    _choice(t.source, RECIPE_SOURCES, "train.source")
    for name in ("batch_size", "train_n_passages", "epochs"):
        _int_at_least(getattr(t, name), 1, f"train.{name}")
    _positive(t.lr, "train.lr")
    _positive(t.adam_eps, "train.adam_eps")
    _number_in(t.weight_decay, 0, 1e9, "train.weight_decay")
    _number_in(t.warmup_ratio, 0, 1, "train.warmup_ratio")
    _int_at_least(t.warmup_steps, 0, "train.warmup_steps", optional=True)
    _seed(t.seed, "train.seed")
    _int_at_least(t.num_workers, 0, "train.num_workers")
    _int_at_least(t.num_threads, 1, "train.num_threads", optional=True)
    _int_at_least(t.checkpoint_every_n_steps, 1, "train.checkpoint_every_n_steps", optional=True)
    a = t.alignment
    try:
        AlignmentConfig(kind=a.kind, weight=a.weight, temperature=a.temperature)
    except XqgInputError as e:
        raise _bad(f"train.alignment.{e.field}", e.message) from None
    check_synthetic(t.synthetic)
    dev = t.dev
    _choice(dev.source, DEV_SOURCES, "train.dev.source")
    for name in ("max_queries", "max_passages", "batch_size", "every_n_epochs"):
        _int_at_least(getattr(dev, name), 1, f"train.dev.{name}")
    if not dev.ks or any(k < 1 for k in dev.ks):
        raise _bad("train.dev.ks", f"must be positive integers, got {list(dev.ks)}")
    m = _DEV_OBJECTIVE.fullmatch(str(dev.objective))
    names = [f"recall@{k}" for k in dev.ks] + [f"mrr@{max(dev.ks)}"]
    if m is None or (m.group(1) == "recall" and int(m.group(2)) not in dev.ks):
        raise _bad("train.dev.objective", f"must be one of {names}, got {dev.objective!r}")


def check_oracle(settings: Any) -> None:
    """``generator=oracle`` needs data that knows each question's gold passage, and has no model to train."""
    g, d = settings.generator, settings.data
    if not g.oracle:
        return
    if g.queries_source:
        raise _bad("generator.queries_source", "oracle queries and released queries exclude each other")
    if d.kind == "files" and not d.qrels:
        raise _bad(
            "generator.oracle",
            f"data {d.name!r} has no known questions per passage (no qrels): generator=oracle needs the "
            "synthetic world, XQuAD-R or data.qrels",
        )
    if getattr(settings, "task", None) == "generator":
        raise _bad("generator.oracle", "oracle queries come from the data; there is no generator to train")


def check_generator(g: Any) -> None:
    _int_at_least(g.quality_passages, 1, "generator.quality_passages", optional=True)
    _int_at_least(g.max_source_length, 1, "generator.max_source_length")
    _int_at_least(g.max_target_length, 1, "generator.max_target_length")
    _languages(g.languages, "generator.languages")
    _int_at_least(g.num_queries, 1, "generator.num_queries")
    _int_at_least(g.generate_batch_size, 1, "generator.generate_batch_size", optional=True)
    _choice(g.store_format, STORE_FORMATS, "generator.store_format")
    _device(g.device, _TORCH_DEVICE, "generator.device", "auto, cpu, mps or cuda[:N]")
    _choice(g.precision, PRECISIONS, "generator.precision")
    _choice(g.sampler, SAMPLERS, "generator.sampler")
    _seed(g.seed, "generator.seed")
    _int_at_least(g.shard.size, 1, "generator.shard.size")
    _int_at_least(g.shard.count, 1, "generator.shard.count")
    if not 0 <= g.shard.index < g.shard.count:
        raise _bad("generator.shard.index", f"must be in 0..{g.shard.count - 1}, got {g.shard.index}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(g.prompt_template) if f is not None}
    except ValueError as e:
        raise _bad("generator.prompt_template", f"not a format string ({e})") from None
    unknown = sorted(fields - PROMPT_FIELDS)
    if unknown:
        raise _bad(
            "generator.prompt_template",
            f"unknown placeholder(s) {unknown}; use {{language}}, {{lang}}, {{title}}, {{passage}}",
        )
    tr = g.train
    _positive(tr.lr, "generator.train.lr")
    _number_in(tr.weight_decay, 0, 1e9, "generator.train.weight_decay")
    for name, low in (
        ("warmup_steps", 0),
        ("max_steps", 1),
        ("batch_size", 1),
        ("effective_batch_size", 1),
        ("val_every_steps", 1),
        ("num_workers", 0),
    ):
        _int_at_least(getattr(tr, name), low, f"generator.train.{name}")
    if not 0 <= tr.val_fraction < 1:
        raise _bad("generator.train.val_fraction", f"must be in [0, 1), got {tr.val_fraction!r}")


def check_augmentation(a: Any) -> None:
    """Each fusion and stored-sums value is checked even when ``enabled`` is false (a bad value is bad either
    way); whether they fit together (languages that have sums, ``n <= n_max``) only when fusion runs."""
    _choice(a.tune_split, TUNE_SPLITS, "augmentation.tune_split")
    fusion = Fusion(alpha=a.alpha, n=a.n, mode=a.mode, languages=tuple(a.languages))
    sums = a.query_sums
    if not a.enabled:
        return
    stored = set(sums.languages)
    wanted = set(fusion.languages)
    if not wanted <= stored:
        raise _bad(
            "augmentation.languages",
            f"languages {sorted(wanted - stored)} have no query sums (augmentation.sums.languages: "
            f"{list(sums.languages)})",
        )
    if wanted != stored and not sums.per_language:
        raise _bad(
            "augmentation.languages",
            f"language subset {sorted(wanted)} needs per-language sums (set augmentation.sums.per_language=true)",
        )
    if fusion.n > sums.n_max:
        raise _bad("augmentation.n", f"must be in 1..{sums.n_max} (augmentation.sums.n_max), got {fusion.n}")


def check_retrieval(r: Any, ks: Sequence[int], languages: Sequence[str]) -> None:
    _choice(r.split, SPLITS, "retrieval.split")
    _int_at_least(r.depth, 1, "retrieval.depth")
    _choice(r.dtype, sorted(DTYPES), "retrieval.dtype")
    _device(r.device, _SEARCH_DEVICE, "retrieval.device", "auto, cpu, gpu or cuda[:N]")
    _choice(r.backend, BACKENDS, "retrieval.backend")
    for name in ("passage_batch_size", "query_batch_size", "shard_size", "chunk_size", "search_chunk_rows"):
        _int_at_least(getattr(r, name), 1, f"retrieval.{name}")
    _int_at_least(r.p_max_len, 2, "retrieval.p_max_len", optional=True)
    _int_at_least(r.q_max_len, 2, "retrieval.q_max_len", optional=True)
    _int_at_least(r.num_shards, 1, "retrieval.num_shards", optional=True)
    _int_at_least(r.shard_index, 0, "retrieval.shard_index", optional=True)
    if r.shard_index is not None and r.num_shards is not None and r.shard_index >= r.num_shards:
        raise _bad("retrieval.shard_index", f"must be in 0..{r.num_shards - 1}, got {r.shard_index}")
    formats = list(r.run_formats)
    if any(f not in RUN_FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise _bad("retrieval.run_formats", f"must be distinct names from {list(RUN_FORMATS)}, got {formats}")
    check_objective(r.objective, ks, languages, "retrieval.objective")


def check_objective(spec: Any, ks: Sequence[int], languages: Sequence[str], key: str) -> None:
    """``R@2kt``, ``R@2kt/ja``, ``{R@2kt: 0.5, R@5kt: 0.5}`` or a list of those, over the computed metrics."""
    names = [metric_name(k) for k in ks]
    specs = list(spec) if isinstance(spec, Sequence) and not isinstance(spec, str) else [spec]
    if not specs:
        raise _bad(key, "empty objective list")
    for s in specs:
        if isinstance(s, Mapping):
            if not s:
                raise _bad(key, "empty objective mix")
            parts = list(s.items())
        elif isinstance(s, str):
            parts = [(s, 1.0)]
        else:
            raise _bad(key, f"must be a metric name or {{metric: weight}}, got {s!r}")
        for name, weight in parts:
            metric, _, lang = str(name).partition("/")
            if metric not in names:
                raise _bad(key, f"{metric!r} is not among the computed metrics {names} (metrics.ks)")
            if lang and lang not in languages:
                raise _bad(key, f"language {lang!r} is not evaluated (data.languages: {list(languages)})")
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise _bad(key, f"weight of {name!r} must be a number, got {weight!r}")


def check_metrics(m: Any, options: ScoreOptions) -> None:
    options.check(METRICS_KEYS)
    gold_ks = list(m.gold_ks)
    bad_k = any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in gold_ks)
    if bad_k or len(set(gold_ks)) != len(gold_ks):
        raise _bad("metrics.gold_ks", f"must be distinct positive integers, got {gold_ks!r}")
    _int_at_least(m.mrr_depth, 0, "metrics.mrr_depth")
    names = [metric_name(k) for k in options.ks]
    if m.objective and m.objective not in names:
        raise _bad("metrics.objective", f"must be one of the computed metrics {names}, got {m.objective!r}")


def check_no_extra_keys(obj: Any, prefix: str = "") -> None:
    """Keys a typed node does not have, added with ``+key=value`` (as Hydra's own error suggests for a misspelt
    key), would be silently ignored: refuse them, naming the key and the closest known one."""
    if not dataclasses.is_dataclass(obj):
        return
    known = [f.name for f in dataclasses.fields(obj)]
    for name in vars(obj):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise _bad(f"{prefix}{name}", f"not a setting of {type(obj).__name__} (nothing reads it){hint}")
    for name in known:
        check_no_extra_keys(getattr(obj, name), f"{prefix}{name}.")


# -- the two jobs -------------------------------------------------------------------------------------------------
def check_settings(settings: Any, score_options: ScoreOptions | None = None) -> None:
    """Check a job's typed settings (``TrainSettings`` or ``EvaluateSettings``); ``score_options``: the
    evaluate job's scoring options (from ``metrics``)."""
    check_no_extra_keys(settings)
    _seed(settings.seed, "seed")
    check_data(settings.data)
    check_backbone(settings.backbone)
    check_recipe(settings.train)
    check_generator(settings.generator)
    check_oracle(settings)
    check_augmentation(settings.augmentation)
    if score_options is not None:
        check_metrics(settings.metrics, score_options)
        languages = _languages(settings.data.languages, "data.languages", allow_empty=True)
        check_retrieval(settings.retrieval, score_options.ks, languages or list(XOR_LANGUAGES))
        s = settings.score
        if s.predictions and s.run:
            raise _bad("score.run", "give score.predictions or score.run, not both")
