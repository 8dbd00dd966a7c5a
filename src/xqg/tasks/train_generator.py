"""Fine-tune the xQG generator (``python train.py task=generator ...``) into a fingerprinted HF checkpoint.

The checkpoint lives in ``<cfg.paths.cache_dir>/generator/<fp>/`` where the fingerprint covers the base model,
the training hyperparameters, the prompt template, max lengths, the seed and the training pairs' fingerprint:
``evaluate.py`` calls :func:`train_or_load` and reuses a checkpoint only when all of these match. A generator
config with ``train.enabled: false`` (the released ``ielabgroup/xor-tydi-docTquery-mt5-base``) is used as is.

Effective batch (the paper's 128) = ``train.batch_size`` x gradient accumulation x devices; accumulation is
derived from ``train.effective_batch_size``. Lightning's own ``.ckpt`` files are pickles, so they are not written:
the result is ``save_pretrained`` weights (safetensors) + tokenizer + ``xqg_generator.json``. A run killed during
training starts the training again (the checkpoint folder has no manifest until the end).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xqg.core.artifacts import ArtifactDir, fingerprint
from xqg.core.errors import XqgInputError
from xqg.tasks.tracking import finish_loggers, lightning_loggers

log = logging.getLogger(__name__)

KIND = "generator"
CODE_VERSION = "1"
TRAIN_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "lr": 1e-4,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "max_steps": 2000,
    "batch_size": 16,
    "effective_batch_size": 128,
    "val_fraction": 0.05,
    "val_every_steps": 500,
    "num_workers": 0,
}


def generator_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The ``generator`` group as plain data with training defaults filled in."""
    g = cfg.get("generator") if isinstance(cfg, DictConfig | Mapping) else None
    if g is None:
        raise XqgInputError(
            "no generator config (add `generator: tiny|mt5_base|released_xqg`)", field="generator"
        )
    gcfg = OmegaConf.to_container(g, resolve=True) if isinstance(g, DictConfig) else dict(g)
    assert isinstance(gcfg, dict)
    gcfg["train"] = {**TRAIN_DEFAULTS, **(gcfg.get("train") or {})}
    gcfg.setdefault("model", {})
    from xqg.models.generator_module import DEFAULT_PROMPT

    gcfg.setdefault("prompt_template", DEFAULT_PROMPT)
    gcfg.setdefault("max_source_length", 128)
    gcfg.setdefault("max_target_length", 32)
    return gcfg


def _pairs(cfg: DictConfig) -> tuple[list[Any], list[Any] | None]:
    """Training pairs (``GeneratorPair``) from the data layer, and its validation pairs when it has a split
    (``{"train": path, "dev": path}``); None means "hold out part of the training pairs"."""
    from xqg.data.bundle import load_data
    from xqg.data.formats.pairs import read_generator_pairs

    def load(src: Any) -> list[Any]:
        return read_generator_pairs(src) if isinstance(src, str | Path) else list(src)

    source = load_data(cfg.data, cfg.paths).generator_pairs
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


def pairs_fingerprint(pairs: Sequence[Any]) -> str:
    return fingerprint([[p.docid, p.lang, p.title, p.passage, p.question] for p in pairs])


def split_pairs(pairs: Sequence[Any], val_fraction: float) -> tuple[list[Any], list[Any]]:
    """Hold out whole passages (by docid hash) for the validation loss, so it measures unseen passages."""
    if val_fraction <= 0:
        return list(pairs), []
    docids = sorted({p.docid for p in pairs}, key=lambda d: fingerprint(d))
    n_val = max(1, round(len(docids) * val_fraction)) if len(docids) > 1 else 0
    val_docs = set(docids[:n_val])
    return [p for p in pairs if p.docid not in val_docs], [p for p in pairs if p.docid in val_docs]


def base_model(gcfg: Mapping[str, Any], pairs: Sequence[Any], cache_dir: str | Path) -> str:
    """The model to fine-tune: a hub name or local path, or a tiny T5 built on the pairs' text."""
    model = gcfg.get("model") or {}
    if model.get("tiny"):
        from xqg.core.languages import get_language
        from xqg.models.tiny_t5 import tiny_t5_checkpoint

        template = gcfg["prompt_template"].split("{")[0]
        texts = [t for p in pairs for t in (p.title, p.passage, p.question)]
        texts += sorted({f"{template}{get_language(p.lang).name}" for p in pairs})
        return str(tiny_t5_checkpoint(model["tiny"], texts, cache_dir))
    name = model.get("name_or_path")
    if not name:
        raise XqgInputError(
            "set generator.model.name_or_path or generator.model.tiny", field="generator.model"
        )
    return str(name)


def checkpoint_artifact(
    gcfg: Mapping[str, Any], inputs: Mapping[str, str], seed: int, cache_dir: str | Path
) -> ArtifactDir:
    """Where the checkpoint for these settings and pairs lives (worker count and logging do not matter)."""
    train = {k: v for k, v in gcfg["train"].items() if k not in ("num_workers", "val_every_steps")}
    config = {
        "model": gcfg.get("model"),
        "train": train,
        "prompt_template": gcfg["prompt_template"],
        "max_source_length": gcfg["max_source_length"],
        "max_target_length": gcfg["max_target_length"],
        "seed": seed,
    }
    if (gcfg.get("model") or {}).get("tiny"):
        from xqg.models.tiny_t5 import CODE_VERSION as TINY_CODE_VERSION

        config["tiny_code_version"] = TINY_CODE_VERSION  # a new tokenizer recipe is a new base model
    return ArtifactDir.for_spec(cache_dir, KIND, config=config, inputs=inputs, code_version=CODE_VERSION)


def _world_size(trainer_kwargs: Mapping[str, Any]) -> int:
    devices = trainer_kwargs.get("devices", 1)
    nodes = int(trainer_kwargs.get("num_nodes", 1) or 1)
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if isinstance(devices, list | tuple):
        return len(devices) * nodes
    import torch

    accel = str(trainer_kwargs.get("accelerator", "auto"))
    if accel in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return max(1, torch.cuda.device_count()) * nodes
    return nodes


def trainer_kwargs(cfg: DictConfig, gcfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg.trainer`` (accelerator, devices, strategy, precision, ...) with the generator's step budget."""
    import pytorch_lightning as pl

    t = cfg.get("trainer")
    base = OmegaConf.to_container(t, resolve=True) if isinstance(t, DictConfig) else dict(t or {})
    assert isinstance(base, dict)
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters)
    kw = {k: v for k, v in base.items() if k in accepted}
    tr = gcfg["train"]
    per_step = int(tr["batch_size"]) * _world_size(kw)
    accumulate = max(1, math.ceil(int(tr["effective_batch_size"]) / per_step))
    kw.update(
        max_steps=int(tr["max_steps"]),
        max_epochs=-1,
        accumulate_grad_batches=accumulate,
        enable_checkpointing=False,
        check_val_every_n_epoch=None,
        val_check_interval=int(tr["val_every_steps"]) * accumulate,
        num_sanity_val_steps=0,
    )
    kw.pop("min_epochs", None)
    if str(kw.get("precision", "")) in ("16", "16-mixed"):
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            # T5/mT5 activations overflow fp16 (NaN losses); bf16 has the range at the same speed.
            log.info("generator: using bf16-mixed instead of %s (mT5 overflows in fp16)", kw["precision"])
            kw["precision"] = "bf16-mixed"
    kw.setdefault("enable_model_summary", False)
    return kw


def _datamodule(
    pairs: Sequence[Any], val: Sequence[Any], tokenizer: Any, gcfg: Mapping[str, Any], seed: int
) -> Any:
    from xqg.data.datamodules import GeneratorDataModule

    return GeneratorDataModule(
        pairs,
        tokenizer,
        prompt_template=gcfg["prompt_template"],
        max_source_len=int(gcfg["max_source_length"]),
        max_target_len=int(gcfg["max_target_length"]),
        batch_size=int(gcfg["train"]["batch_size"]),
        seed=seed,
        num_workers=int(gcfg["train"]["num_workers"]),
        val_pairs=list(val),
    )


def train_or_load(cfg: DictConfig) -> Path | str:
    """The generator checkpoint for ``cfg``: trained once, then reused from the cache.

    Returns a hub name or local path unchanged when ``generator.train.enabled`` is false.
    """
    gcfg = generator_config(cfg)
    if not gcfg["train"]["enabled"]:
        name = (gcfg.get("model") or {}).get("name_or_path")
        if not name:
            raise XqgInputError("train.enabled is false but no model.name_or_path", field="generator.model")
        return str(name)
    cache = Path(cfg.paths.cache_dir)
    seed = int(cfg.get("seed", 42))
    pairs, val = _pairs(cfg)
    if val is None:
        pairs, val = split_pairs(pairs, float(gcfg["train"]["val_fraction"]))
    art = checkpoint_artifact(
        gcfg, {"train_pairs": pairs_fingerprint(pairs), "val_pairs": pairs_fingerprint(val)}, seed, cache
    )
    if art.complete:
        log.info("generator checkpoint found: %s", art.path)
        return art.path
    return train(cfg, gcfg, pairs, val, art)


def train(
    cfg: DictConfig,
    gcfg: Mapping[str, Any],
    train_pairs: Sequence[Any],
    val_pairs: Sequence[Any],
    art: ArtifactDir,
) -> Path:
    """Fine-tune and save into ``art`` (manifest last, with the final validation loss)."""
    import pytorch_lightning as pl
    from transformers import AutoTokenizer

    from xqg.models.generator_module import GeneratorModule, GeneratorSpec

    seed = int(cfg.get("seed", 42))
    pl.seed_everything(seed, workers=True)
    cache = Path(cfg.paths.cache_dir)
    base = base_model(gcfg, [*train_pairs, *val_pairs], cache)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except OSError as e:
        from xqg.core.errors import MissingResourceError
        from xqg.generation.generate import missing_model_message

        raise MissingResourceError(missing_model_message(base, e)) from None
    dm = _datamodule(train_pairs, val_pairs, tokenizer, gcfg, seed)
    tr = gcfg["train"]
    module = GeneratorModule(
        base,
        lr=float(tr["lr"]),
        weight_decay=float(tr["weight_decay"]),
        warmup_steps=int(tr["warmup_steps"]),
        max_steps=int(tr["max_steps"]),
    )
    kw = trainer_kwargs(cfg, gcfg)
    run_dir = art.begin() / "logs"
    kw["logger"] = lightning_loggers(cfg, run_dir, job_type="train_generator")
    if not val_pairs:
        kw.update(limit_val_batches=0, val_check_interval=None, check_val_every_n_epoch=1)
    trainer = pl.Trainer(default_root_dir=str(run_dir), **kw)
    try:
        trainer.fit(module, datamodule=dm)
        val_loss = None
        if val_pairs:
            val_loss = float(trainer.validate(module, datamodule=dm, verbose=False)[0]["val_loss"])
    finally:
        finish_loggers(kw["logger"])
    if trainer.is_global_zero:
        spec = GeneratorSpec(
            prompt_template=gcfg["prompt_template"],
            max_source_length=int(gcfg["max_source_length"]),
            max_target_length=int(gcfg["max_target_length"]),
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
                "accumulate_grad_batches": kw["accumulate_grad_batches"],
            },
        )
    log.info("generator trained: %s (val_loss %s)", art.path, val_loss)
    return art.path


def run(cfg: DictConfig) -> float | None:
    """``train.py task=generator``: train (or find) the checkpoint; returns its validation loss."""
    path = train_or_load(cfg)
    print(f"generator checkpoint: {path}")
    manifest = Path(path) / "manifest.json"
    if manifest.exists():
        m = ArtifactDir(Path(path).parent.parent, KIND, Path(path).name).manifest()
        val = m.extra.get("val_loss")
        return float(val) if val is not None else None
    return None
