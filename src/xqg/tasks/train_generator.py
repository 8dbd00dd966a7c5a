"""Fine-tune the xQG generator (``python train.py task=generator ...``) into a fingerprinted HF checkpoint.

The checkpoint lives in ``<paths.cache_dir>/generator/<fp>/`` where the fingerprint covers the base model, the
training hyperparameters, the prompt template, max lengths, the seed and the training pairs' fingerprint:
``evaluate.py`` calls :func:`train_or_load` and reuses a checkpoint only when all of these match. A generator
with ``train.enabled: false`` (the released ``ielabgroup/xor-tydi-docTquery-mt5-base``) is used as is.

Effective batch (the paper's 128) = ``train.batch_size`` x gradient accumulation x devices; accumulation is
derived from ``train.effective_batch_size``. The result is ``save_pretrained`` weights (safetensors) + tokenizer +
``xqg_generator.json``. While training, Lightning's ``lightning/last.ckpt`` is written every
``train.checkpoint_every_n_steps`` optimizer steps (model, optimizer, scheduler, loop counters, the place in the
epoch, RNG states: :mod:`xqg.tasks.resume`); a killed run resumes from it, loading with ``weights_only=True``, to
the weights of an uninterrupted run, and it is deleted once the checkpoint is complete.

The fingerprint covers the Trainer arguments that change the weights
(:func:`xqg.tasks.trainer_identity.weight_settings`: e.g. ``trainer.limit_train_batches``, precision, clipping),
not logging, worker count or checkpoint frequency.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from transformers import AutoTokenizer

from xqg.core.artifacts import ArtifactDir
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.languages import get_language
from xqg.core.locking import complete_or_claim
from xqg.core.progress import bars_enabled
from xqg.data.delex import delexicalise_pairs
from xqg.data.formats.pairs import pairs_fingerprint, read_generator_pairs, split_pairs
from xqg.data.generator_data import GeneratorDataModule
from xqg.data.records import GeneratorPair
from xqg.models.generator_module import GeneratorModule, GeneratorSpec, missing_model_message
from xqg.models.hub import split_revision, with_revision
from xqg.models.tiny_t5 import CODE_VERSION as TINY_CODE_VERSION
from xqg.models.tiny_t5 import TinyT5Config, tiny_t5_checkpoint
from xqg.tasks.builders import build_trainer, world_size
from xqg.tasks.console import StepProgressBar
from xqg.tasks.resume import ExactResume, checkpoint_callback, fit, resume_path
from xqg.tasks.schema import GeneratorSettings, Settings, frozen
from xqg.tasks.tracking import finish_loggers, lightning_loggers
from xqg.tasks.trainer_identity import weight_settings

log = logging.getLogger(__name__)

KIND = "generator"
CODE_VERSION = "1"
# training settings that change no weight (left out of the fingerprint)
_NOT_IN_FINGERPRINT = ("num_workers", "val_every_steps", "checkpoint_every_n_steps")


def load_pairs(settings: Settings) -> tuple[list[GeneratorPair], list[GeneratorPair] | None]:
    """Training pairs from the data setting, and its validation pairs when it has a split (``{"train": path,
    "dev": path}``); None means "hold out part of the training pairs"."""

    def load(src: Any) -> list[GeneratorPair]:
        return read_generator_pairs(src) if isinstance(src, str | Path) else list(src)

    source = settings.data.bundle(settings.paths.cache_dir).generator_pairs
    if source is None:
        raise XqgInputError("the data config has no generator training pairs", field="data")
    if isinstance(source, Mapping):
        train = load(source["train"])
        val = load(source["dev"]) if source.get("dev") is not None else None
    else:
        train, val = load(source), None
    if not train:
        raise XqgInputError("the data config yields no generator training pairs", field="data")
    return train, val


def base_model(g: GeneratorSettings, pairs: Sequence[GeneratorPair], cache_dir: str | Path) -> str:
    """The model to fine-tune: a hub name or local path, or a tiny T5 built on the pairs' text."""
    if g.model.tiny is not None:
        template = g.prompt_template.split("{")[0]
        texts = [t for p in pairs for t in (p.title, p.passage, p.question)]
        texts += sorted({f"{template}{get_language(p.lang).name}" for p in pairs})
        return str(tiny_t5_checkpoint(frozen(g.model.tiny, TinyT5Config), texts, cache_dir))
    if not g.model.name_or_path:
        raise XqgInputError(
            "set generator.model.name_or_path or generator.model.tiny", field="generator.model"
        )
    return with_revision(g.model.name_or_path, g.model.revision, "generator.model.revision")


def checkpoint_artifact(
    g: GeneratorSettings,
    inputs: Mapping[str, str],
    seed: int,
    cache_dir: str | Path,
    *,
    trainer: Mapping[str, Any],
) -> ArtifactDir:
    """Where the checkpoint for these settings and pairs lives (worker count and logging do not matter);
    ``trainer`` is :func:`trainer_identity` of the run's settings."""
    train = {k: v for k, v in dataclasses.asdict(g.train).items() if k not in _NOT_IN_FINGERPRINT}
    config: dict[str, Any] = {
        # an unpinned model keeps the fingerprint it had before `revision` existed
        "model": {k: v for k, v in dataclasses.asdict(g.model).items() if k != "revision" or v},
        "train": train,
        "trainer": dict(trainer),
        "prompt_template": g.prompt_template,
        "max_source_length": g.max_source_length,
        "max_target_length": g.max_target_length,
        "seed": seed,
    }
    if g.delexicalise:
        config["delexicalise"] = True  # (absent when off: fingerprints from before the option stay valid)
    if g.model.tiny is not None:
        config["tiny_code_version"] = TINY_CODE_VERSION  # a new tokenizer recipe is a new base model
    return ArtifactDir.for_spec(cache_dir, KIND, config=config, inputs=inputs, code_version=CODE_VERSION)


def trainer_identity(settings: Settings) -> dict[str, Any]:
    """The Trainer settings that change the generator's weights: the ``trainer`` node with what the task owns."""
    return weight_settings(settings.trainer, owned=trainer_arguments(settings))


def trainer_arguments(settings: Settings) -> dict[str, Any]:
    """What the task owns on the generator's Trainer: the step budget, the accumulation that makes up the
    effective batch, validation every ``val_every_steps`` optimizer steps."""
    tr = settings.generator.train
    accumulate = max(1, math.ceil(tr.effective_batch_size / (tr.batch_size * world_size(settings.trainer))))
    owned: dict[str, Any] = {
        "max_steps": tr.max_steps,
        "max_epochs": -1,
        "min_epochs": None,
        "accumulate_grad_batches": accumulate,
        "enable_checkpointing": True,
        "check_val_every_n_epoch": None,
        "val_check_interval": tr.val_every_steps * accumulate,
        "num_sanity_val_steps": 0,
    }
    if str(settings.trainer.get("precision", "")) in ("16", "16-mixed"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            # T5/mT5 activations overflow fp16 (NaN losses); bf16 has the range at the same speed.
            log.info(
                "generator: using bf16-mixed instead of %s (mT5 overflows in fp16)",
                settings.trainer["precision"],
            )
            owned["precision"] = "bf16-mixed"
    return owned


def train_or_load(settings: Settings) -> Path | str:
    """The generator checkpoint for these settings: trained once, then reused from the cache.

    Returns a hub name or local path unchanged when ``generator.train.enabled`` is false.
    """
    g = settings.generator
    if not g.train.enabled:
        if not g.model.name_or_path:
            raise XqgInputError("train.enabled is false but no model.name_or_path", field="generator.model")
        return with_revision(g.model.name_or_path, g.model.revision, "generator.model.revision")
    pairs, val = load_pairs(settings)
    if val is None:
        pairs, val = split_pairs(pairs, g.train.val_fraction)
    if g.delexicalise:
        pairs, val = delexicalise_pairs(pairs), delexicalise_pairs(val)
    inputs = {"train_pairs": pairs_fingerprint(pairs), "val_pairs": pairs_fingerprint(val)}
    art = checkpoint_artifact(
        g, inputs, settings.seed, settings.paths.cache_dir, trainer=trainer_identity(settings)
    )
    if complete_or_claim(art):
        log.info("generator checkpoint found: %s", art.path)
        return art.path
    return train(settings, pairs, val, art)


def train(
    settings: Settings,
    train_pairs: Sequence[GeneratorPair],
    val_pairs: Sequence[GeneratorPair],
    art: ArtifactDir,
) -> Path:
    """Fine-tune and save into ``art`` (manifest last, with the final validation loss)."""
    g, seed = settings.generator, settings.seed
    pl.seed_everything(seed, workers=True)
    base = base_model(g, [*train_pairs, *val_pairs], settings.paths.cache_dir)
    try:
        name, revision = split_revision(base)
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    except OSError as e:
        raise MissingResourceError(missing_model_message(base, e)) from None
    dm = GeneratorDataModule(
        train_pairs,
        tokenizer,
        prompt_template=g.prompt_template,
        max_source_len=g.max_source_length,
        max_target_len=g.max_target_length,
        batch_size=g.train.batch_size,
        seed=seed,
        num_workers=g.train.num_workers,
        val_pairs=list(val_pairs),
    )
    module = GeneratorModule(
        base,
        lr=g.train.lr,
        weight_decay=g.train.weight_decay,
        warmup_steps=g.train.warmup_steps,
        max_steps=g.train.max_steps,
    )
    owned = trainer_arguments(settings)
    if not val_pairs:
        owned.update(limit_val_batches=0, val_check_interval=None, check_val_every_n_epoch=1)
    run_dir = art.begin() / "logs"
    config = dataclasses.asdict(settings)
    loggers = lightning_loggers(settings.logger, run_dir, config=config, job_type="train_generator")
    ckpt_dir = art.path / "lightning"
    callbacks = [checkpoint_callback(ckpt_dir, g.train.checkpoint_every_n_steps), ExactResume()]
    bar = settings.trainer.get("enable_progress_bar")
    if bar or (bar is None and bars_enabled()):
        callbacks.append(StepProgressBar())  # step-bounded training: `step k/N`, not Lightning's `Epoch 6/-2`
    trainer = build_trainer(
        settings.trainer, logger=loggers, callbacks=callbacks, default_root_dir=str(run_dir), **owned
    )
    try:
        fit(trainer, module, dm, resume_path(ckpt_dir, "generator"))
        val_loss = None
        if val_pairs:
            val_loss = float(trainer.validate(module, datamodule=dm, verbose=False)[0]["val_loss"])
    finally:
        finish_loggers(loggers)
    if trainer.is_global_zero:
        spec = GeneratorSpec(
            prompt_template=g.prompt_template,
            max_source_length=g.max_source_length,
            max_target_length=g.max_target_length,
            base_model=base,
        )
        module.save_checkpoint_dir(art.path, tokenizer, spec)
        art.finalize(
            counts={
                "train_pairs": len(train_pairs),
                "val_pairs": len(val_pairs),
                "steps": trainer.global_step,
            },
            extra={
                "val_loss": val_loss,
                "base_model": base,
                "accumulate_grad_batches": owned["accumulate_grad_batches"],
            },
        )
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # complete: nothing to resume any more
    log.info("generator trained: %s (val_loss %s)", art.path, val_loss)
    return art.path


def run(settings: Settings) -> float | None:
    """``train.py task=generator``: train (or find) the checkpoint; returns its validation loss."""
    path = Path(train_or_load(settings))
    print(f"generator checkpoint: {path}")
    if (path / "manifest.json").exists():
        val = ArtifactDir(path.parent.parent, KIND, path.name).manifest().extra.get("val_loss")
        return float(val) if val is not None else None
    return None
