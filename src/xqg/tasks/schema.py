"""The typed settings schema: Hydra structured configs for ``train.py`` and ``evaluate.py``.

Registered in Hydra's ``ConfigStore`` (:func:`register_configs`) and named first in the defaults lists of
``conf/train.yaml`` and ``conf/evaluate.yaml``, so every group's YAML is merged onto a typed node: a misspelt key
(in a YAML file or on the command line) or a value of the wrong type fails when the config is composed, naming
the key, before any stage runs. :func:`to_settings` then turns the composed config into these dataclasses once,
at the task boundary; every stage below ``tasks/`` takes explicit typed arguments.

Settings the stages own (the synthetic world, tiny models, decoding, stored query sums) are frozen dataclasses in
their own modules; OmegaConf cannot merge onto frozen nodes, so the schema holds a mutable twin of each
(:func:`_twin`, same fields, types and defaults) and :func:`frozen` converts a twin back, which runs the stage's
own validation. Trainer, loggers and callbacks are ``_target_`` nodes for ``hydra.utils.instantiate`` (Lightning
validates its own arguments), so they stay untyped mappings here.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from xqg.core.languages import XOR_LANGUAGES
from xqg.data.bundle import DataBundle, load_data
from xqg.data.synthetic import WorldConfig
from xqg.evaluation.score_files import ScoreOptions
from xqg.evaluation.significance import TESTS
from xqg.generation.sampling import DecodingConfig
from xqg.models.tiny_bert import TinyBertConfig
from xqg.models.tiny_t5 import TinyT5Config
from xqg.retrieval.fusion import Fusion
from xqg.retrieval.query_sums import QuerySumsConfig
from xqg.tasks.config_checks import check_settings
from xqg.tasks.run_dirs import register_run_id_resolver
from xqg.tasks.study_settings import StudySettings

T = TypeVar("T")


def _twin(cls: type) -> type:
    """A mutable dataclass with ``cls``'s fields, types and defaults (OmegaConf merges only onto mutable
    nodes); :func:`frozen` turns an instance back into ``cls``."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            spec = field(default=f.default)
        elif f.default_factory is not dataclasses.MISSING:
            spec = field(default_factory=f.default_factory)
        else:
            spec = field()
        fields.append((f.name, hints[f.name], spec))
    twin = dataclasses.make_dataclass(cls.__name__.removesuffix("Config") + "Settings", fields)
    twin.__doc__ = f"Mutable schema twin of :class:`{cls.__module__}.{cls.__qualname__}`."
    twin.__module__ = __name__
    return twin


def frozen(twin: Any, cls: type[T]) -> T:
    """The stage's own (frozen, validated) settings object from its schema twin."""
    return cls(**{f.name: getattr(twin, f.name) for f in dataclasses.fields(cls)})  # type: ignore[call-arg]


WorldSettings = _twin(WorldConfig)
TinyBertSettings = _twin(TinyBertConfig)
TinyT5Settings = _twin(TinyT5Config)
DecodingSettings = _twin(DecodingConfig)
QuerySumsSettings = _twin(QuerySumsConfig)


# -- where things live ------------------------------------------------------------------------------------------
@dataclass
class PathsSettings:
    root_dir: str = "."
    shared_data_dir: str = "../shared/data"
    cache_dir: str = "cache"
    log_dir: str = "outputs"
    output_dir: str = "outputs"


# -- data ---------------------------------------------------------------------------------------------------------
@dataclass
class DataSettings:
    """One data setting (``data.kind``: synthetic | files | xquad_r); see :mod:`xqg.data.bundle`."""

    name: str = "synthetic"
    kind: str = "synthetic"
    languages: list[str] = field(default_factory=lambda: list(XOR_LANGUAGES))
    world: WorldSettings | None = None  # type: ignore[valid-type]  # kind synthetic
    files: dict[str, Any] | None = (
        None  # kind files: key -> source (path, hf://, URL or {path, url|repo+filename})
    )
    generator_pairs: Any = None  # kind files: {derive, from, languages_from}, a path, or {train, dev}
    qrels: dict[str, str] | None = None
    source: Any = (
        None  # kind xquad_r: the xquad-r folder, or {path: folder, url: base URL of the {lang}.json files}
    )
    split: list[float] | None = None  # kind xquad_r: train/dev/test share of the articles
    unit: str = "paragraph"  # kind xquad_r: paragraph | sentence

    def bundle(self, cache_dir: str) -> DataBundle:
        """The files of this data setting (built, resolved or downloaded on first use, under ``cache_dir``)."""
        spec = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        spec["world"] = frozen(self.world, WorldConfig) if self.world is not None else None
        return load_data(spec, cache_dir)


# -- retriever ----------------------------------------------------------------------------------------------------
@dataclass
class BackboneSettings:
    """The retriever's encoder and how it embeds (the model only; the recipe is :class:`RecipeSettings`)."""

    name: str = "tiny"
    name_or_path: str | None = None
    revision: str | None = None  # hub revision (commit, tag, branch) of name_or_path; null: main
    pooling: str = "cls"
    shared: bool = True
    normalize: bool = False
    temperature: float = 1.0
    q_max_len: int = 32
    p_max_len: int = 128
    tiny: TinyBertSettings | None = None  # type: ignore[valid-type]


@dataclass
class DevCheckSettings:
    """Retrieval over a dev slice during training (Recall@k, MRR against the gold positive docids)."""

    source: str = "auto"  # auto | heldout | train | none
    max_queries: int = 500
    max_passages: int = 5000
    fill_from_corpus: bool = True
    ks: list[int] = field(default_factory=lambda: [1, 5, 20, 100])
    batch_size: int = 128
    every_n_epochs: int = 1
    objective: str = "recall@20"


@dataclass
class AlignmentSettings:
    """A cross-lingual alignment objective added to the retrieval loss (:mod:`xqg.models.alignment_loss`)."""

    # none | contrastive (query vs its translation) | distill (frozen teacher's English embedding)
    kind: str = "none"
    weight: float = 1.0
    temperature: float = 1.0  # contrastive only
    # null: the data's English parallel questions; or XOR-TyDi's question-translations folder
    translations: str | None = None
    # distill: english (this recipe on the English questions) | initial | a checkpoint folder
    teacher: str = "english"


@dataclass
class SyntheticTrainSettings:
    """Synthetic training queries (SWIM-IR style) mixed with real examples (:mod:`xqg.tasks.synthetic_train`)."""

    enabled: bool = False
    # languages with synthetic queries, in the order the scaling study adds them
    languages: list[str] = field(default_factory=lambda: list(XOR_LANGUAGES))
    max_languages: int | None = None  # only the first N of languages (the scaling study's axis); null: all
    passages_per_language: int = 200  # corpus passages sampled per language (seeded by seed and language)
    queries_per_passage: int = 1
    seed: int = 42
    shard_size: int = 1000  # sampled passages per resumable generation shard
    round_trip: bool = False  # keep a pair only if its passage is in the retriever's top round_trip_depth
    round_trip_depth: int = 20
    # random corpus passages | mined (the retriever's top passages, the positive left out)
    negatives: str = "random"
    n_negatives: int = 7
    # round trip / mining: xdr (this recipe on the real data alone) | a checkpoint folder
    retriever: str = "xdr"
    few_shot: int | None = None  # real training examples kept (seeded); null: all of them
    # share of synthetic examples per epoch (exact); null: the sources' own proportion
    ratio: float | None = None


@dataclass
class RecipeSettings:
    """The retriever's training recipe (the ``train`` node, chosen by the ``recipe`` group)."""

    source: str = "xor"  # xor | english (zero-shot)
    batch_size: int = 128
    train_n_passages: int = 8
    epochs: int = 40
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    adam_eps: float = 1e-8
    seed: int = 42
    gather_across_devices: bool = True
    num_workers: int = 0
    num_threads: int | None = None
    checkpoint_every_n_steps: int | None = None
    keep_lightning_ckpt: bool = True
    dev: DevCheckSettings = field(default_factory=DevCheckSettings)
    alignment: AlignmentSettings = field(default_factory=AlignmentSettings)
    synthetic: SyntheticTrainSettings = field(default_factory=SyntheticTrainSettings)


# -- generator ----------------------------------------------------------------------------------------------------
@dataclass
class GeneratorModelSettings:
    name_or_path: str | None = None
    revision: str | None = None  # hub revision (commit, tag, branch) of name_or_path; null: main
    tiny: TinyT5Settings | None = None  # type: ignore[valid-type]


@dataclass
class GeneratorTrainSettings:
    enabled: bool = True
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_steps: int = 2000
    batch_size: int = 16
    effective_batch_size: int = 128
    val_fraction: float = 0.05
    val_every_steps: int = 500
    num_workers: int = 0
    checkpoint_every_n_steps: int | None = None  # resumable Lightning checkpoint; null: at every epoch end


@dataclass
class GenerationShardSettings:
    size: int = 10000  # corpus rows per shard (part of the fingerprint: it fixes the seeded batches)
    index: int = 0  # this worker's share: shards s with s % count == index
    count: int = 1


@dataclass
class GeneratorSettings:
    model: GeneratorModelSettings = field(default_factory=GeneratorModelSettings)
    prompt_template: str = "Generate a {language} question for this passage: {title} {passage}"
    max_source_length: int = 128
    max_target_length: int = 32
    delexicalise: bool = False  # title -> placeholder while training and generating (xqg.data.delex)
    train: GeneratorTrainSettings = field(default_factory=GeneratorTrainSettings)
    languages: list[str] = field(default_factory=lambda: list(XOR_LANGUAGES))
    num_queries: int = 5
    decoding: DecodingSettings = field(default_factory=DecodingSettings)  # type: ignore[valid-type]
    generate_batch_size: int | None = None  # None: from the GPU's memory (64 on the CPU)
    store_format: str = "parquet"
    device: str = "auto"
    precision: str = "auto"
    sampler: str = "auto"  # auto: static decoder on a bf16/fp32 GPU, else the loop (generator/mt5_base.yaml)
    seed: int = 42
    shard: GenerationShardSettings = field(default_factory=GenerationShardSettings)
    queries_source: Any = (
        None  # released queries: a source, a list, a glob or {path, repo, filename, revision}
    )
    max_missing_share: float = 0.01  # largest share of corpus passages allowed without released queries
    oracle: bool = (
        False  # generator=oracle: held-out real questions instead of a generator (xqg.generation.oracle)
    )
    quality_passages: int | None = 2000  # first passages of the store whose queries are measured (null: all)


# -- xQG augmentation, retrieval, metrics --------------------------------------------------------------------------
@dataclass
class AugmentationSettings:
    """xQG fusion (``enabled``, alpha, n, mode, languages), the tune/report split and the stored query sums."""

    enabled: bool = False
    alpha: float = 0.01
    n: int = 5
    mode: str = "sum"
    languages: list[str] = field(default_factory=lambda: list(XOR_LANGUAGES))
    tune_split: str | None = None  # null | tune | report
    split_salt: str = "xqg-tune-split"
    sums: QuerySumsSettings = field(default_factory=QuerySumsSettings)  # type: ignore[valid-type]

    @property
    def fusion(self) -> Fusion | None:
        """The one frozen fusion setting (None for the baseline): run fingerprint, transform, W&B, records."""
        if not self.enabled:
            return None
        return Fusion(alpha=self.alpha, n=self.n, mode=self.mode, languages=tuple(self.languages))

    @property
    def query_sums(self) -> QuerySumsConfig:
        return frozen(self.sums, QuerySumsConfig)


@dataclass
class RetrievalSettings:
    name: str = "xDR"
    checkpoint: str | None = None
    split: str = "dev"
    depth: int = 100
    objective: Any = (
        "R@2kt"  # a metric, R@2kt/<lang>, a weighted {metric: weight} mix, or a list (multi-objective)
    )
    device: str = "auto"
    dtype: str = "fp16"
    passage_batch_size: int = 128
    query_batch_size: int = 256
    p_max_len: int | None = None
    q_max_len: int | None = None
    shard_size: int = 100000
    num_shards: int | None = None
    shard_index: int | None = None
    chunk_size: int = 20000
    search_chunk_rows: int = 262144
    backend: str = "auto"  # auto | torch | faiss: exact search (auto: torch on a GPU, faiss on the CPU)
    reuse_scores: bool = True  # CPU: xQG trials combine kept Q.P, Q.S scores (xqg.retrieval.fused_scores)
    run_formats: list[str] = field(default_factory=lambda: ["tevatron", "trec"])


@dataclass
class SignificanceSettings:
    tests: list[str] = field(default_factory=lambda: ["ttest", "randomization"])
    permutations: int = 10000
    seed: int = 42
    level: float = 0.05  # the significance level (never called alpha: that is the fusion weight)


@dataclass
class MetricsSettings:
    ks: list[int] = field(default_factory=lambda: [2, 5])
    objective: str = "R@2kt"
    allow_missing: bool = False
    allow_unknown: bool = False
    details: bool = False
    decimals: int = 2
    workers: int = 0
    nltk_data: str | None = None
    token_cache_dir: str | None = None
    significance: SignificanceSettings = field(default_factory=SignificanceSettings)
    # gold-passage measures where the data has qrels (xqg.evaluation.gold_measures), beside R@kt
    gold_ks: list[int] = field(default_factory=lambda: [1, 5, 20, 100])  # Recall@k ([]: none)
    mrr_depth: int = 10  # MRR@depth (0: none)
    correction: str = "none"  # multiple tests of each comparison: none | holm (Holm-Bonferroni)

    def score_options(self, cache_dir: str | None = None) -> ScoreOptions:
        """The scoring options these settings ask for (``xqg-eval``'s flags are the other front)."""
        sig = self.significance
        return ScoreOptions(
            ks=tuple(self.ks),
            allow_missing=self.allow_missing,
            allow_unknown=self.allow_unknown,
            nltk_data=self.nltk_data,
            cache_dir=cache_dir,
            token_cache_dir=self.token_cache_dir,
            workers=self.workers,
            tests=tuple(sig.tests or TESTS),
            permutations=sig.permutations,
            seed=sig.seed,
            level=sig.level,
            decimals=self.decimals,
            details=self.details,
            correction=self.correction,
        )


@dataclass
class ScoreSettings:
    """``evaluate.py score.*=...``: score files you already have instead of running the pipeline."""

    questions: str | None = None
    predictions: str | None = None
    run: str | None = None
    corpus: str | None = None
    compare: str | None = None


# -- the two jobs ---------------------------------------------------------------------------------------------------
@dataclass
class _Common:
    task_name: str = "train"
    seed: int = 42
    paths: PathsSettings = field(default_factory=PathsSettings)
    data: DataSettings = field(default_factory=DataSettings)
    backbone: BackboneSettings = field(default_factory=BackboneSettings)
    train: RecipeSettings = field(default_factory=RecipeSettings)
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)
    trainer: dict[str, Any] = field(
        default_factory=dict
    )  # _target_: pytorch_lightning.Trainer + its arguments
    logger: dict[str, Any] = field(default_factory=dict)  # name -> _target_ Lightning logger
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> _target_ Lightning callback


@dataclass
class TrainSettings(_Common):
    """``train.py``: ``task=retriever`` (xDR, or zero-shot on English) or ``task=generator`` (xQG)."""

    task: str = "retriever"


@dataclass
class EvaluateSettings(_Common):
    """``evaluate.py``: the pipeline (or ``score.*`` files), returning the sweep objective."""

    task_name: str = "evaluate"
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    study: StudySettings = field(default_factory=StudySettings)  # study=<name>: conf/study/


Settings = TrainSettings | EvaluateSettings


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (``train_schema``, ``evaluate_schema``); idempotent."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainSettings)
    cs.store(name="evaluate_schema", node=EvaluateSettings)
    register_run_id_resolver()  # ${xqg_run_id:} in conf/hydra/default.yaml's run folders


def to_settings(cfg: DictConfig) -> Any:
    """The composed config as typed settings (interpolations resolved), validated (:func:`validate`)."""
    _hydra_output_dir_or(cfg)
    settings = OmegaConf.to_object(cfg)
    validate(settings)
    return settings


def _hydra_output_dir_or(cfg: DictConfig) -> None:
    """Outside a Hydra app (notebooks, tests composing with ``hydra.compose``) ``paths.output_dir`` cannot
    resolve ``${hydra:runtime.output_dir}``: use ``<log_dir>/<task_name>/python`` instead."""
    if HydraConfig.initialized() or "paths" not in cfg:
        return
    raw = OmegaConf.to_container(cfg.paths, resolve=False)
    if isinstance(raw, dict) and "${hydra:" in str(raw.get("output_dir", "")):
        cfg.paths.output_dir = f"{cfg.paths.log_dir}/{cfg.task_name}/python"


def validate(settings: Settings) -> None:
    """Build every stage-owned settings object once, so their own checks (the world, tiny models, decoding,
    query sums, fusion) fail now, with the field named, rather than after training, and check every other
    value the config alone decides (:mod:`xqg.tasks.config_checks`)."""
    if settings.data.world is not None:
        frozen(settings.data.world, WorldConfig).validate()
    if settings.backbone.tiny is not None:
        frozen(settings.backbone.tiny, TinyBertConfig)
    if settings.generator.model.tiny is not None:
        frozen(settings.generator.model.tiny, TinyT5Config)
    metrics = getattr(settings, "metrics", None)
    check_settings(settings, metrics.score_options() if metrics is not None else None)
    frozen(settings.generator.decoding, DecodingConfig).generate_kwargs(settings.generator.num_queries)
