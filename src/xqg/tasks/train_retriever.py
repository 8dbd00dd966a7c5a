"""Retriever training behind ``python train.py task=retriever``: a bi-encoder fine-tuned with Lightning.

The trained model is a fingerprinted artifact, ``<paths.cache_dir>/retriever/<fp>/``: the HF export (weights,
config, tokenizer, ``xqg_retriever.json``) at its root, Lightning's ``lightning/last.ckpt`` beside it and
``manifest.json`` written last. The fingerprint covers the backbone (hub name, or the content of a local
folder), the training data's content, the embedding spec (pooling, sharing, normalisation, temperature, max
lengths), the recipe (batch size, passages per query, lr, epochs, warmup, weight decay, seed, dev hold-out),
the Trainer arguments that change the weights (:func:`xqg.tasks.trainer_identity.weight_settings`: precision,
world size, accumulation, clipping, step and batch limits, ...; not logging or checkpoint frequency) and the code
version. ``evaluate.py`` calls :func:`train_or_load` and reuses a model only when all of these
match; a changed hyperparameter trains a new one. A killed run resumes from ``last.ckpt`` (saved every epoch,
or every ``train.checkpoint_every_n_steps``; loaded with ``weights_only``) to the weights of an uninterrupted
run: the checkpoint holds the place in the epoch and the RNG states too (:mod:`xqg.tasks.resume`).

``train.alignment`` adds a cross-lingual alignment objective (:mod:`xqg.tasks.train_alignment`); its settings,
translations and teacher enter the fingerprint only when its kind is not ``none``. ``train.synthetic`` adds
generated training queries (:mod:`xqg.tasks.synthetic_train`); its pairs, few-shot size and ratio enter the
fingerprint only when enabled.

``train.source`` picks the training file: ``xor`` (the data's cross-lingual file, e.g. XOR-TyDi) or
``english`` (its English file, e.g. NQ: the paper's zero-shot setting).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from lightning_fabric.utilities.rank_zero import rank_zero_only

from xqg.core.artifacts import ArtifactDir, atomic_write_json, file_fingerprint, fingerprint
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.locking import complete_or_claim
from xqg.data.bundle import DataBundle
from xqg.data.datamodules import ContrastiveDataModule
from xqg.data.dev_set import build_dev_set, split_heldout
from xqg.data.formats.tevatron import TevatronFile, iter_tevatron
from xqg.data.records import passage_text
from xqg.models.biencoder import BiEncoder, RetrieverSpec, load_tokenizer
from xqg.models.hub import with_revision
from xqg.models.retriever_module import RetrieverModule
from xqg.models.tiny_bert import TinyBertConfig, tiny_bert_backbone
from xqg.retrieval.dev_check import DevRetrievalCheck
from xqg.tasks.builders import build_callbacks, build_trainer
from xqg.tasks.resume import LAST, ExactResume, fit, resume_path
from xqg.tasks.schema import BackboneSettings, Settings, frozen
from xqg.tasks.synthetic_train import SyntheticData, ensure_synthetic, mixed_training_examples
from xqg.tasks.tracking import finish_loggers, lightning_loggers
from xqg.tasks.train_alignment import AlignmentPlan, load_teacher, plan_alignment
from xqg.tasks.trainer_identity import weight_settings

log = logging.getLogger(__name__)

KIND = "retriever"
#: Bump when training changes in a way that changes the model: cached checkpoints are then retrained.
CODE_VERSION = "1"
SOURCES = ("xor", "english")
DEV_SOURCES = ("auto", "heldout", "train", "none")
_SPEC_KEYS = ("pooling", "shared", "normalize", "temperature", "q_max_len", "p_max_len")
_RECIPE_KEYS = (
    "source",
    "batch_size",
    "train_n_passages",
    "epochs",
    "lr",
    "weight_decay",
    "warmup_ratio",
    "warmup_steps",
    "adam_eps",
    "seed",
    "gather_across_devices",
)


def retriever_spec(backbone: BackboneSettings, name: str) -> RetrieverSpec:
    """The embedding spec the backbone settings ask for (the backbone's name filled in once resolved)."""
    try:
        return RetrieverSpec(backbone=name, **{k: getattr(backbone, k) for k in _SPEC_KEYS})
    except XqgInputError as e:
        raise XqgInputError(e.message, field=f"backbone.{e.field}") from None


# -- data --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainData:
    """The files one training run reads, and what identifies them."""

    train_path: Path  # the examples trained on (hold-out removed)
    source_path: Path  # the data's file before any hold-out
    dev_path: Path | None  # Tevatron-format dev examples with gold positives, or None
    dev_name: str  # "dev" (held out or the data's dev file) or "train_slice" (seen in training)
    corpus_path: Path | None
    identity: dict[str, str]  # fingerprints that go into the checkpoint's fingerprint


def _auto_dev_path(bundle: DataBundle, source: str) -> Path | None:
    """The data's own Tevatron dev file for the chosen training file, if it has one."""
    keys = ["english_dev_train_path"] if source == "english" else ["dev_train_path"]
    if source == "xor" and bundle.same_source("train", "english_train"):
        keys.append(
            "english_dev_train_path"
        )  # data=nq: the training file is the English one, so is its dev file
    for key in keys:
        path = getattr(bundle, key)
        if path is not None and path.exists():
            return path
    return None


def resolve_train_data(settings: Settings) -> TrainData:
    """Pick the training file (``train.source``) and the dev examples (``train.dev.source``)."""
    tr, dev = settings.train, settings.train.dev
    if tr.source not in SOURCES:
        raise XqgInputError(f"must be one of {SOURCES}, got {tr.source!r}", field="train.source")
    if dev.source not in DEV_SOURCES:
        raise XqgInputError(f"must be one of {DEV_SOURCES}, got {dev.source!r}", field="train.dev.source")
    bundle = settings.data.bundle(settings.paths.cache_dir)
    if tr.source == "english":
        src, what = bundle.english_train_path, "an English (NQ) training file for zero-shot training"
    else:
        src, what = bundle.train_path, "a cross-lingual training file"
    if src is None:
        raise XqgInputError(f"data {bundle.name!r} has no {what}", field="train.source")
    if not src.exists():
        raise MissingResourceError(f"training file {src} does not exist (train.source={tr.source})")
    dev_source = dev.source
    train_path, dev_path, dev_name = src, None, "dev"
    identity = {"train": file_fingerprint(src)}
    if dev_source == "auto":
        dev_path = _auto_dev_path(bundle, tr.source)
        if dev_path is None:
            dev_source = "heldout"
    if dev_source == "heldout" and dev.max_queries > 0:
        train_path, dev_path = split_heldout(src, dev.max_queries, settings.paths.cache_dir)
        identity["heldout"] = str(dev.max_queries)
    elif dev_source == "train":
        dev_path, dev_name = src, "train_slice"
    corpus = bundle.corpus_path if dev.fill_from_corpus else None
    return TrainData(train_path, src, dev_path, dev_name, corpus, identity)


def _example_texts(path: Path) -> Iterator[str]:
    for ex in iter_tevatron(path):
        yield ex.query
        for p in (*ex.positives, *ex.negatives):
            yield passage_text(p.title, p.text)


def _vocab_extra_files(settings: Settings, data: TrainData) -> list[Path]:
    """The data's cross-lingual training file when the retriever trains on another one (zero-shot): its
    questions' text joins the tiny vocabulary's text (``backbone.tiny.vocab_text: all_languages``)."""
    bundle = settings.data.bundle(settings.paths.cache_dir)
    candidates = (bundle.xor_train_path, bundle.train_path)
    files = [Path(p) for p in candidates if p is not None and Path(p).exists()]
    return [p for p in dict.fromkeys(files) if p.resolve() != Path(data.source_path).resolve()][:1]


def _vocab_texts(train_path: Path, extra: list[Path]) -> Iterator[str]:
    yield from _example_texts(train_path)
    for path in extra:  # question text only: no passage, no label
        yield from (ex.query for ex in iter_tevatron(path))


def _files_identity(files: list[Path]) -> str:
    return "".join(f"+{file_fingerprint(p)}" for p in files)


# -- backbone ------------------------------------------------------------------------------------------------
def _folder_identity(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return fingerprint({str(p.relative_to(path)): file_fingerprint(p) for p in files})


def resolve_backbone(settings: Settings, data: TrainData) -> tuple[str, str]:
    """``(name_or_path, identity)``: a hub name, a local folder (identified by content), or the tiny BERT
    built from the training text (``backbone.name_or_path: null`` with a ``backbone.tiny`` block)."""
    bb = settings.backbone
    if bb.name_or_path:
        name = with_revision(bb.name_or_path, bb.revision, "backbone.revision")  # owner/name@revision
        p = Path(bb.name_or_path).expanduser()
        if p.is_dir():
            return str(p), f"dir:{_folder_identity(p)}"
        return name, f"hub:{name}"
    if bb.tiny is None:
        raise XqgInputError(
            "set backbone.name_or_path (hub name or folder) or a backbone.tiny block",
            field="backbone.name_or_path",
        )
    tiny = frozen(bb.tiny, TinyBertConfig)
    if bb.p_max_len > tiny.max_position:
        raise XqgInputError(
            f"p_max_len {bb.p_max_len} exceeds the tiny model's max_position {tiny.max_position}",
            field="backbone.p_max_len",
        )
    extra = _vocab_extra_files(settings, data) if tiny.vocab_text == "all_languages" else []
    path = tiny_bert_backbone(
        settings.paths.cache_dir,
        tiny,
        lambda: _vocab_texts(data.train_path, extra),
        data.identity["train"] + "/" + data.identity.get("heldout", "-") + _files_identity(extra),
    )
    return str(path), f"tiny:{path.name}"


# -- the artifact --------------------------------------------------------------------------------------------
def retriever_artifact(
    settings: Settings,
    data: TrainData,
    backbone_identity: str,
    alignment: AlignmentPlan | None = None,
    synthetic: SyntheticData | None = None,
) -> ArtifactDir:
    trainer_part = weight_settings(settings.trainer, owned=_owned_trainer_arguments(settings))
    config = {
        "backbone": backbone_identity,
        "spec": {k: getattr(settings.backbone, k) for k in _SPEC_KEYS},
        "recipe": {k: getattr(settings.train, k) for k in _RECIPE_KEYS},
        "trainer": trainer_part,
    }
    if alignment is not None:  # absent for kind none: plain xDR checkpoints keep their fingerprints
        config["alignment"] = alignment.identity
    if synthetic is not None:  # absent when disabled, likewise
        config["synthetic"] = synthetic.identity
    return ArtifactDir.for_spec(
        settings.paths.cache_dir, KIND, config=config, inputs=data.identity, code_version=CODE_VERSION
    )


def _owned_trainer_arguments(settings: Settings) -> dict[str, Any]:
    """The Trainer arguments the task sets over the config's ``trainer`` node (that change the weights)."""
    return {"max_epochs": settings.train.epochs}


def artifact_for(settings: Settings) -> ArtifactDir:
    """Where the settings' checkpoint lives (complete or not), without training it (synthetic training data is
    generated, though: its fingerprint is part of the checkpoint's)."""
    data = resolve_train_data(settings)
    _, identity = resolve_backbone(settings, data)
    plan = plan_alignment(settings, lambda s: artifact_for(s).path)
    synthetic = ensure_synthetic(settings, train_or_load)
    return retriever_artifact(settings, data, identity, plan, synthetic)


def _run_dir(fallback: Path) -> Path:
    """The Hydra run folder under ``train.py``; ``fallback`` when called from Python (tests, notebooks)."""
    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else fallback


def train_or_load(settings: Settings, run_dir: str | Path | None = None) -> Path:
    """The retriever checkpoint for these settings (an HF folder ``load_retriever`` reads): trained once, then
    reused."""
    data = resolve_train_data(settings)
    backbone, identity = resolve_backbone(settings, data)
    plan = plan_alignment(settings, lambda s: train_or_load(s, _side_run_dir(run_dir, "teacher")))
    synthetic = ensure_synthetic(settings, lambda s: train_or_load(s, _side_run_dir(run_dir, "real_data")))
    art = retriever_artifact(settings, data, identity, plan, synthetic)
    if complete_or_claim(art):
        log.info("retriever checkpoint found: %s", art.path)
        _link_run(run_dir, art)
        return art.path
    threads, before = settings.train.num_threads, torch.get_num_threads()
    if threads:  # speed only, not in the fingerprint; restored after
        torch.set_num_threads(threads)
    try:
        return _fit_and_export(settings, data, backbone, art, run_dir, plan, synthetic)
    finally:
        torch.set_num_threads(before)


def _side_run_dir(run_dir: str | Path | None, name: str) -> Path | None:
    """A retriever trained on the way (a distillation teacher, the real-data retriever that filters synthetic
    pairs) logs into ``<name>/`` of this run's folder."""
    if run_dir is not None:
        return Path(run_dir) / name
    return _run_dir(Path()) / name if HydraConfig.initialized() else None


def _link_run(run_dir: str | Path | None, art: ArtifactDir) -> None:
    """Point the run folder at the checkpoint (a symlink where possible, and a JSON note always)."""
    folder = Path(run_dir) if run_dir is not None else _run_dir(art.path / "logs")
    if folder == art.path / "logs":
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        folder / "retriever_checkpoint.json",
        {"path": str(art.path.resolve()), "fingerprint": art.fingerprint},
    )
    link = folder / "retriever_checkpoint"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(art.path.resolve(), link, target_is_directory=True)
    except OSError:  # e.g. filesystems without symlinks: the JSON note is enough
        pass


def _fit_and_export(
    settings: Settings,
    data: TrainData,
    backbone: str,
    art: ArtifactDir,
    run_dir: str | Path | None,
    alignment: AlignmentPlan | None = None,
    synthetic: SyntheticData | None = None,
) -> Path:
    tr, dev_cfg = settings.train, settings.train.dev
    pl.seed_everything(tr.seed, workers=True, verbose=False)
    art.begin()
    folder = Path(run_dir) if run_dir is not None else _run_dir(art.path / "logs")
    spec = retriever_spec(settings.backbone, settings.backbone.name_or_path or backbone)
    tokenizer = load_tokenizer(backbone)
    model = BiEncoder.from_backbone(backbone, spec)
    teacher, teacher_tokenizer = None, None
    if alignment is not None and alignment.config.kind == "distill":
        teacher, teacher_tokenizer = load_teacher(alignment, model, tokenizer)
    align = alignment.config if alignment is not None else None
    module = RetrieverModule(
        model,
        lr=tr.lr,
        weight_decay=tr.weight_decay,
        warmup_ratio=tr.warmup_ratio,
        warmup_steps=tr.warmup_steps,
        adam_eps=tr.adam_eps,
        gather_across_devices=tr.gather_across_devices,
        alignment_kind=align.kind if align else "none",
        alignment_weight=align.weight if align else 1.0,
        alignment_temperature=align.temperature if align else 1.0,
        teacher=teacher,
    )
    callbacks = [*build_callbacks(settings.callbacks, checkpoint_dir=art.path / "lightning"), ExactResume()]
    dev = None
    if data.dev_path is not None and dev_cfg.source != "none":
        dev = build_dev_set(
            data.dev_path,
            data.corpus_path,
            max_queries=dev_cfg.max_queries,
            max_passages=dev_cfg.max_passages,
            cache_dir=settings.paths.cache_dir,
            name=data.dev_name,
        )
        check = DevRetrievalCheck(
            dev,
            tokenizer,
            ks=tuple(dev_cfg.ks),
            batch_size=dev_cfg.batch_size,
            every_n_epochs=dev_cfg.every_n_epochs,
        )
        callbacks.append(check)
    dm = ContrastiveDataModule(
        train_path=(
            mixed_training_examples(TevatronFile(data.train_path), synthetic, settings)
            if synthetic is not None
            else data.train_path
        ),
        tokenizer=tokenizer,
        batch_size=tr.batch_size,
        train_n_passages=tr.train_n_passages,
        q_max_len=spec.q_max_len,
        p_max_len=spec.p_max_len,
        seed=tr.seed,
        num_workers=tr.num_workers,
        translations=alignment.table if alignment is not None else None,
        translation_tokenizer=teacher_tokenizer,
    )
    config = dataclasses.asdict(settings)
    loggers = lightning_loggers(settings.logger, folder, config=config, job_type="train_retriever")
    trainer = build_trainer(
        settings.trainer,
        **_owned_trainer_arguments(settings),
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(folder),
    )
    last = art.path / "lightning" / LAST
    try:
        fit(trainer, module, dm, resume_path(last.parent, "retriever"))
    finally:
        finish_loggers(loggers)
    if trainer.is_global_zero:
        model.save_pretrained(art.path, tokenizer)
        history = next((cb.history for cb in callbacks if isinstance(cb, DevRetrievalCheck)), [])
        art.finalize(
            counts={
                "steps": int(trainer.global_step),
                "epochs": int(trainer.current_epoch),
                "world_size": int(trainer.world_size),
                "dev_queries": len(dev.qids) if dev else 0,
                "dev_passages": len(dev.docids) if dev else 0,
            },
            extra={
                "backbone": backbone,
                "dev_name": data.dev_name if dev else None,
                "dev": history[-1] if history else None,
                "dev_history": history,
                "train_path": str(data.train_path),
                "run_dir": str(folder),
            },
        )
        if not tr.keep_lightning_ckpt and last.exists():
            last.unlink()
        _link_run(folder, art)
        log.info("retriever checkpoint: %s", art.path)
    return art.path


def run(settings: Settings) -> float | None:
    """``train.py task=retriever``: train (or find) the checkpoint; returns the last dev metric named by
    ``train.dev.objective`` (default ``recall@20``), so Hydra sweeps can optimise it."""
    path = train_or_load(settings)
    if rank_zero_only.rank != 0:  # DDP worker processes: rank 0 reports
        return None
    print(f"retriever checkpoint: {path}")
    manifest_path = Path(path) / "manifest.json"
    extra = json.loads(manifest_path.read_text()).get("extra") or {} if manifest_path.exists() else {}
    last, name = extra.get("dev") or {}, extra.get("dev_name") or "dev"
    value = last.get(f"{name}/{settings.train.dev.objective}")
    if value is not None:
        print(f"{name} {settings.train.dev.objective}: {value:.4f}")
    return float(value) if value is not None else None
