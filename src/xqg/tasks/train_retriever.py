"""Retriever training behind ``python train.py task=retriever``: a bi-encoder fine-tuned with Lightning.

The trained model is a fingerprinted artifact, ``<cfg.paths.cache_dir>/retriever/<fp>/``: the HF export
(weights, config, tokenizer, ``xqg_retriever.json``) at its root, Lightning's ``lightning/last.ckpt`` beside it
and ``manifest.json`` written last. The fingerprint covers the backbone (hub name, or the content of a local
folder), the training data's content, the embedding spec (pooling, sharing, normalisation, temperature, max
lengths), the recipe (batch size, passages per query, lr, epochs, warmup, weight decay, seed, dev hold-out),
what changes the optimisation on the trainer side (precision, world size, accumulation, clipping, step limits)
and the code version. ``evaluate.py`` calls :func:`train_or_load` and reuses a model only when all of these
match; a changed hyperparameter trains a new one. A killed run resumes from ``last.ckpt`` (saved every epoch,
or every ``train.checkpoint_every_n_steps``).

``train.source`` picks the training file: ``xor`` (the data's cross-lingual file, e.g. XOR-TyDi) or
``english`` (its English file, e.g. NQ: the paper's zero-shot setting).
"""

from __future__ import annotations

import hashlib
import heapq
import inspect
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from xqg.core.artifacts import ArtifactDir, atomic_write_json, file_fingerprint, fingerprint
from xqg.core.config import plain
from xqg.core.errors import MissingResourceError, XqgInputError

log = logging.getLogger(__name__)

KIND = "retriever"
#: Bump when training changes in a way that changes the model: cached checkpoints are then retrained.
CODE_VERSION = "1"
SPLIT_CODE_VERSION = "1"
SOURCES = ("xor", "english")
DEV_SOURCES = ("auto", "heldout", "train", "none")
# Trainer keys that change the trained weights (the rest, e.g. logging frequency, do not).
_TRAINER_KEYS_THAT_MATTER = (
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "max_steps",
    "limit_train_batches",
    "deterministic",
)
_SPEC_KEYS = ("pooling", "shared", "normalize", "temperature", "q_max_len", "p_max_len")


# -- configuration ---------------------------------------------------------------------------------------------


def _section(cfg: DictConfig, key: str) -> dict[str, Any]:
    node = cfg.get(key)
    if node is None:
        raise XqgInputError(
            f"the config has no `{key}` section (add `{key}=...` to the command line)", field=key
        )
    return dict(plain(node))


def retriever_spec(cfg: DictConfig, backbone_name: str) -> Any:
    """The embedding spec a config asks for (the backbone name filled in once it is resolved)."""
    from xqg.models.biencoder import RetrieverSpec

    bb = _section(cfg, "backbone")
    values = {k: bb[k] for k in _SPEC_KEYS if k in bb and bb[k] is not None}
    try:
        return RetrieverSpec(backbone=backbone_name, **values)
    except XqgInputError as e:
        raise XqgInputError(e.message, field=f"backbone.{e.field}") from None


def world_size(trainer_cfg: Mapping[str, Any]) -> int:
    """Processes the Trainer will run (devices x nodes), resolved without building it."""
    nodes = int(trainer_cfg.get("num_nodes") or 1)
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, list | tuple):
        return max(1, len(devices)) * nodes
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    accel = str(trainer_cfg.get("accelerator", "auto"))
    if accel in ("gpu", "cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count()) * nodes
    return nodes


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.trainer`` filtered to what ``pl.Trainer`` accepts, with the recipe's epoch count."""
    import pytorch_lightning as pl

    from xqg.core.progress import progress_enabled

    t = dict(plain(cfg.get("trainer")) or {})
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    unknown = sorted(set(t) - accepted)
    if unknown:
        raise XqgInputError(
            f"not a pytorch_lightning.Trainer argument: {unknown}", field=f"trainer.{unknown[0]}"
        )
    kw = {k: v for k, v in t.items() if v is not None or k in ("gradient_clip_val",)}
    if kw.get("enable_progress_bar") is None:
        kw["enable_progress_bar"] = progress_enabled()
    kw["max_epochs"] = int(_section(cfg, "train")["epochs"])
    kw.setdefault("num_sanity_val_steps", 0)
    return kw


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


def _bundle_attr(bundle: Any, *names: str) -> Path | None:
    for name in names:
        value = getattr(bundle, name, None)
        if value:
            return Path(value)
    return None


def _qid_rank(qid: str) -> str:
    return hashlib.sha256(qid.encode("utf-8")).hexdigest()


def split_heldout(source: Path, n_dev: int, cache_dir: str | Path) -> tuple[Path, Path]:
    """Hold ``n_dev`` examples out of a Tevatron file (chosen by a hash of the query id, so the split does not
    depend on file order or seed), as a cached artifact with ``train.jsonl.gz`` and ``dev.jsonl.gz``."""
    from xqg.core.staging import staged_artifact
    from xqg.data.formats.tevatron import iter_tevatron, write_tevatron

    art = ArtifactDir.for_spec(
        cache_dir,
        "retriever_split",
        config={"n_dev": int(n_dev)},
        inputs={"train": file_fingerprint(source)},
        code_version=SPLIT_CODE_VERSION,
    )
    if not art.complete:
        ranks = [_qid_rank(ex.qid) for ex in iter_tevatron(source)]
        chosen = set(heapq.nsmallest(n_dev, ranks))
        if len(chosen) >= len(ranks):
            raise XqgInputError(
                f"holding out {n_dev} dev examples leaves nothing to train on; lower train.dev.max_queries",
                path=source,
                field="train.dev.max_queries",
            )
        with staged_artifact(art) as staging:
            n_train = write_tevatron(
                staging.path / "train.jsonl.gz",
                (e for e in iter_tevatron(source) if _qid_rank(e.qid) not in chosen),
            )
            n_dev_written = write_tevatron(
                staging.path / "dev.jsonl.gz",
                (e for e in iter_tevatron(source) if _qid_rank(e.qid) in chosen),
            )
            staging.finalize(counts={"train": n_train, "dev": n_dev_written})
    return art.path / "train.jsonl.gz", art.path / "dev.jsonl.gz"


def _auto_dev_path(bundle: Any, source: str) -> Path | None:
    """The data's own Tevatron dev file for the chosen training file, if it has one."""
    keys = ["english_dev_train_path"] if source == "english" else ["dev_train_path"]
    if source == "xor" and getattr(bundle, "_sources", {}).get("train") == getattr(
        bundle, "_sources", {}
    ).get("english_train", object()):  # data=nq: the training file is the English one, so is its dev file
        keys.append("english_dev_train_path")
    for key in keys:
        path = _bundle_attr(bundle, key)
        if path is not None and path.exists():
            return path
    return None


def resolve_train_data(cfg: DictConfig) -> TrainData:
    """Pick the training file (``train.source``) and the dev examples (``train.dev.source``)."""
    from xqg.data.bundle import load_data

    tr = _section(cfg, "train")
    source = str(tr.get("source", "xor"))
    if source not in SOURCES:
        raise XqgInputError(f"must be one of {SOURCES}, got {source!r}", field="train.source")
    bundle = load_data(cfg.data, cfg.paths)
    if source == "english":
        src = _bundle_attr(bundle, "english_train_path")
        what = "an English (NQ) training file for zero-shot training"
    else:
        src = _bundle_attr(bundle, "train_path")
        what = "a cross-lingual training file"
    if src is None:
        raise XqgInputError(f"data {getattr(bundle, 'name', '?')!r} has no {what}", field="train.source")
    if not src.exists():
        raise MissingResourceError(f"training file {src} does not exist (train.source={source})")
    dev = dict(tr.get("dev") or {})
    dev_source = str(dev.get("source", "auto"))
    if dev_source not in DEV_SOURCES:
        raise XqgInputError(f"must be one of {DEV_SOURCES}, got {dev_source!r}", field="train.dev.source")
    n_dev = int(dev.get("max_queries", 500))
    train_path, dev_path, dev_name = src, None, "dev"
    identity = {"train": file_fingerprint(src)}
    if dev_source == "auto":
        dev_path = _auto_dev_path(bundle, source)
        if dev_path is None:
            dev_source = "heldout"
    if dev_source == "heldout" and n_dev > 0:
        train_path, dev_path = split_heldout(src, n_dev, cfg.paths.cache_dir)
        identity["heldout"] = str(n_dev)
    elif dev_source == "train":
        dev_path, dev_name = src, "train_slice"
    corpus = _bundle_attr(bundle, "corpus_path") if dev.get("fill_from_corpus", True) else None
    return TrainData(train_path, src, dev_path, dev_name, corpus, identity)


def _example_texts(path: Path) -> Iterator[str]:
    from xqg.data.formats.tevatron import iter_tevatron
    from xqg.data.records import passage_text

    for ex in iter_tevatron(path):
        yield ex.query
        for p in (*ex.positives, *ex.negatives):
            yield passage_text(p.title, p.text)


def build_dev_set(
    dev_path: Path,
    corpus_path: Path | None,
    *,
    max_queries: int,
    max_passages: int,
    cache_dir: str | Path,
    name: str = "dev",
) -> Any:
    """Dev queries with gold positive docids, and the passages to search: the golds and hard negatives of
    those queries first, then corpus rows in order until ``max_passages``."""
    from xqg.data.formats.tevatron import iter_tevatron
    from xqg.data.records import passage_text
    from xqg.models.retriever_module import DevSet

    qids: list[str] = []
    queries: list[str] = []
    gold: list[frozenset[str]] = []
    passages: dict[str, str] = {}
    for ex in iter_tevatron(dev_path):
        if len(qids) >= max_queries:
            break
        qids.append(ex.qid)
        queries.append(ex.query)
        gold.append(frozenset(p.docid for p in ex.positives))
        for p in (*ex.positives, *ex.negatives):
            passages.setdefault(p.docid, passage_text(p.title, p.text))
    if corpus_path is not None and len(passages) < max_passages:
        from xqg.data.corpus import open_corpus

        store = open_corpus(corpus_path, cache_dir)
        for batch in store.iter_batches(1024):
            for p in batch:
                if len(passages) >= max_passages:
                    break
                passages.setdefault(p.docid, passage_text(p.title, p.text))
            if len(passages) >= max_passages:
                break
    return DevSet(qids, queries, gold, list(passages), list(passages.values()), name=name)


# -- backbone ------------------------------------------------------------------------------------------------
def _folder_identity(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return fingerprint({str(p.relative_to(path)): file_fingerprint(p) for p in files})


def resolve_backbone(cfg: DictConfig, data: TrainData) -> tuple[str, str]:
    """``(name_or_path, identity)``: a hub name, a local folder (identified by content), or the tiny BERT
    built from the training text (``backbone.name_or_path: null`` with a ``backbone.tiny`` block)."""
    bb = _section(cfg, "backbone")
    name = bb.get("name_or_path")
    if name:
        p = Path(str(name)).expanduser()
        if p.is_dir():
            return str(p), f"dir:{_folder_identity(p)}"
        return str(name), f"hub:{name}"
    if bb.get("tiny") is None:
        raise XqgInputError(
            "set backbone.name_or_path (hub name or folder) or a backbone.tiny block",
            field="backbone.name_or_path",
        )
    from xqg.models.tiny_bert import TinyBertConfig, tiny_bert_backbone

    tcfg = TinyBertConfig.from_mapping(bb["tiny"])
    spec = retriever_spec(cfg, "tiny")
    if spec.p_max_len > tcfg.max_position:
        raise XqgInputError(
            f"p_max_len {spec.p_max_len} exceeds the tiny model's max_position {tcfg.max_position}",
            field="backbone.p_max_len",
        )
    path = tiny_bert_backbone(
        cfg.paths.cache_dir,
        tcfg,
        lambda: _example_texts(data.train_path),
        data.identity["train"] + "/" + data.identity.get("heldout", "-"),
    )
    return str(path), f"tiny:{path.name}"


# -- the artifact --------------------------------------------------------------------------------------------
def _recipe(cfg: DictConfig) -> dict[str, Any]:
    tr = _section(cfg, "train")
    keys = (
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
    return {k: tr.get(k) for k in keys}


def retriever_artifact(cfg: DictConfig, data: TrainData, backbone_identity: str) -> ArtifactDir:
    t = dict(plain(cfg.get("trainer")) or {})
    trainer_part = {k: t.get(k) for k in _TRAINER_KEYS_THAT_MATTER}
    trainer_part["world_size"] = world_size(t)
    spec = retriever_spec(cfg, "")
    config = {
        "backbone": backbone_identity,
        "spec": {k: getattr(spec, k) for k in _SPEC_KEYS},
        "recipe": _recipe(cfg),
        "trainer": trainer_part,
    }
    return ArtifactDir.for_spec(
        cfg.paths.cache_dir, KIND, config=config, inputs=data.identity, code_version=CODE_VERSION
    )


def artifact_for(cfg: DictConfig) -> ArtifactDir:
    """Where ``cfg``'s checkpoint lives (complete or not), without training."""
    data = resolve_train_data(cfg)
    _, identity = resolve_backbone(cfg, data)
    return retriever_artifact(cfg, data, identity)


def _run_dir(cfg: DictConfig, fallback: Path) -> Path:
    """The Hydra run folder under ``train.py``; ``fallback`` when called from Python (tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return fallback


def _datamodule(cfg: DictConfig, data: TrainData, tokenizer: Any, spec: Any) -> Any:
    from xqg.data.datamodules import ContrastiveDataModule

    tr = _section(cfg, "train")
    return ContrastiveDataModule(
        train_path=data.train_path,
        tokenizer=tokenizer,
        batch_size=int(tr["batch_size"]),
        train_n_passages=int(tr["train_n_passages"]),
        q_max_len=spec.q_max_len,
        p_max_len=spec.p_max_len,
        seed=int(tr["seed"]),
        num_workers=int(tr.get("num_workers") or 0),
    )


def train_or_load(cfg: DictConfig, run_dir: str | Path | None = None) -> Path:
    """The retriever checkpoint for ``cfg`` (an HF folder ``load_retriever`` reads): trained once, then reused."""
    data = resolve_train_data(cfg)
    backbone, identity = resolve_backbone(cfg, data)
    art = retriever_artifact(cfg, data, identity)
    if art.complete:
        log.info("retriever checkpoint found: %s", art.path)
        _link_run(cfg, run_dir, art)
        return art.path
    return _train(cfg, data, backbone, art, run_dir)


def _link_run(cfg: DictConfig, run_dir: str | Path | None, art: ArtifactDir) -> None:
    """Point the run folder at the checkpoint (a symlink where possible, and a JSON note always)."""
    folder = Path(run_dir) if run_dir is not None else _run_dir(cfg, art.path / "logs")
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


def _train(
    cfg: DictConfig, data: TrainData, backbone: str, art: ArtifactDir, run_dir: str | Path | None
) -> Path:
    """Train with ``train.num_threads`` CPU threads (speed only, not in the fingerprint), restored after."""
    import torch

    threads = _section(cfg, "train").get("num_threads")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _fit_and_export(cfg, data, backbone, art, run_dir)
    finally:
        torch.set_num_threads(before)


def _fit_and_export(
    cfg: DictConfig, data: TrainData, backbone: str, art: ArtifactDir, run_dir: str | Path | None
) -> Path:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from xqg.models.biencoder import BiEncoder, load_tokenizer
    from xqg.models.retriever_module import RetrieverModule
    from xqg.tasks.tracking import finish_loggers, lightning_loggers

    tr = _section(cfg, "train")
    dev_cfg = dict(tr.get("dev") or {})
    pl.seed_everything(int(tr["seed"]), workers=True, verbose=False)
    art.begin()
    folder = Path(run_dir) if run_dir is not None else _run_dir(cfg, art.path / "logs")
    spec = retriever_spec(cfg, str(_section(cfg, "backbone").get("name_or_path") or backbone))
    tokenizer = load_tokenizer(backbone)
    model = BiEncoder.from_backbone(backbone, spec)
    dev = None
    if data.dev_path is not None and str(dev_cfg.get("source", "auto")) != "none":
        dev = build_dev_set(
            data.dev_path,
            data.corpus_path,
            max_queries=int(dev_cfg.get("max_queries", 500)),
            max_passages=int(dev_cfg.get("max_passages", 5000)),
            cache_dir=cfg.paths.cache_dir,
            name=data.dev_name,
        )
    module = RetrieverModule(
        model,
        lr=float(tr["lr"]),
        weight_decay=float(tr.get("weight_decay") or 0.0),
        warmup_ratio=float(tr.get("warmup_ratio") or 0.0),
        warmup_steps=tr.get("warmup_steps"),
        adam_eps=float(tr.get("adam_eps") or 1e-8),
        gather_across_devices=bool(tr.get("gather_across_devices", True)),
        tokenizer=tokenizer,
        dev=dev,
        dev_ks=tuple(int(k) for k in dev_cfg.get("ks", (1, 5, 20, 100))),
        dev_batch_size=int(dev_cfg.get("batch_size", 128)),
        dev_every_n_epochs=int(dev_cfg.get("every_n_epochs", 1)),
    )
    dm = _datamodule(cfg, data, tokenizer, spec)
    ckpt_dir = art.path / "lightning"
    every = tr.get("checkpoint_every_n_steps")
    checkpoint = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        save_last=True,
        save_top_k=0,
        every_n_train_steps=int(every) if every else None,
        save_on_train_epoch_end=True,
    )
    kw = trainer_kwargs(cfg)
    kw["logger"] = lightning_loggers(cfg, folder, job_type="train_retriever")
    kw["callbacks"] = [checkpoint]
    kw["default_root_dir"] = str(folder)
    trainer = pl.Trainer(**kw)
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if last.exists() else None
    if resume:
        log.info("resuming retriever training from %s", resume)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume)
    finally:
        finish_loggers(kw["logger"])
    if trainer.is_global_zero:
        model.save_pretrained(art.path, tokenizer)
        history = module.dev_history
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
        if not bool(tr.get("keep_lightning_ckpt", True)) and last.exists():
            last.unlink()
        _link_run(cfg, folder, art)
        log.info("retriever checkpoint: %s", art.path)
    return art.path


def run(cfg: DictConfig) -> float | None:
    """``train.py task=retriever``: train (or find) the checkpoint; returns the last dev metric named by
    ``train.dev.objective`` (default ``recall@20``), so Hydra sweeps can optimise it."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    path = train_or_load(cfg)
    if rank_zero_only.rank != 0:  # DDP worker processes: rank 0 reports
        return None
    print(f"retriever checkpoint: {path}")
    manifest = (
        json.loads((Path(path) / "manifest.json").read_text())
        if (Path(path) / "manifest.json").exists()
        else {}
    )
    last = (manifest.get("extra") or {}).get("dev") or {}
    objective = str((_section(cfg, "train").get("dev") or {}).get("objective", "recall@20"))
    name = (manifest.get("extra") or {}).get("dev_name") or "dev"
    value = last.get(f"{name}/{objective}")
    if value is not None:
        print(f"{name} {objective}: {value:.4f}")
    return float(value) if value is not None else None
