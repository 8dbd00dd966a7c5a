"""The dense retriever: a bi-encoder over any Hugging Face ``AutoModel``.

Defaults follow the reference (Tevatron ``DenseModel``): the embedding is ``last_hidden_state[:, 0]`` (CLS, no
pooler), no normalisation, score = dot product, one encoder shared by queries and passages. Mean pooling,
separate query/passage encoders, L2 normalisation and a temperature are options. How a checkpoint must be used
(pooling, normalisation, max lengths, ...) travels with it in ``xqg_retriever.json`` so the encode and search
stages embed exactly as training did. A plain HF checkpoint without that file (e.g. the released
``ielabgroup/bert-base-multilingual-cased-xor-tydi``) loads with the reference defaults.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from xqg.core.artifacts import atomic_write_json
from xqg.core.errors import XqgInputError
from xqg.core.progress import bars_enabled
from xqg.models.hub import split_revision

SPEC_FILE = "xqg_retriever.json"
# Tevatron's layout for untied encoders, so its checkpoints load too.
QUERY_SUBDIR = "query_model"
PASSAGE_SUBDIR = "passage_model"
POOLINGS = ("cls", "mean")
# Architectures whose AutoModel has an optional pooler layer. The bi-encoder never uses it, and unused
# parameters would break DDP's gradient reduction, so it is not built at all.
_POOLER_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "ernie"})


@dataclass(frozen=True)
class RetrieverSpec:
    """How a retriever checkpoint embeds text; saved next to the weights."""

    backbone: str = ""
    pooling: str = "cls"
    shared: bool = True
    normalize: bool = False
    temperature: float = 1.0
    q_max_len: int = 32
    p_max_len: int = 128
    format_version: int = 1

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise XqgInputError(f"must be one of {POOLINGS}, got {self.pooling!r}", field="pooling")
        if not self.temperature > 0:
            raise XqgInputError(f"must be > 0, got {self.temperature}", field="temperature")
        for name in ("q_max_len", "p_max_len"):
            if int(getattr(self, name)) < 2:
                raise XqgInputError(f"must be >= 2, got {getattr(self, name)}", field=name)

    @classmethod
    def from_mapping(cls, m: dict[str, Any], *, path: str | Path | None = None) -> RetrieverSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(m) - known)
        if unknown:
            raise XqgInputError(f"unknown retriever spec fields {unknown}", path=path, field=unknown[0])
        try:
            return cls(**m)
        except XqgInputError as e:
            raise XqgInputError(e.message, path=path, field=e.field) from None

    @classmethod
    def read(cls, path: str | Path) -> RetrieverSpec:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise XqgInputError(f"invalid JSON: {e.msg}", path=path, line=e.lineno) from None
        if not isinstance(data, dict):
            raise XqgInputError("expected a JSON object", path=path)
        return cls.from_mapping(data, path=path)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def quiet_hf_progress() -> None:
    """Turn off HF's per-load/save progress bars off a terminal or under ``TQDM_DISABLE`` (they flood logs and
    CI output), as xqg's own bars do."""
    if not bars_enabled():
        hf_logging.disable_progress_bar()


def load_backbone(name_or_path: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """``AutoModel`` without its pooler (never with remote code), in ``dtype`` (fp32 master weights to train);
    ``owner/name@revision`` loads that hub revision (:mod:`xqg.models.hub`)."""
    quiet_hf_progress()
    name, revision = split_revision(name_or_path)
    config = AutoConfig.from_pretrained(name, revision=revision, trust_remote_code=False)
    kwargs: dict[str, Any] = {}
    if getattr(config, "model_type", None) in _POOLER_MODEL_TYPES:
        kwargs["add_pooling_layer"] = False
    model = AutoModel.from_pretrained(
        name, config=config, revision=revision, trust_remote_code=False, dtype=dtype, **kwargs
    )
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """CLS (first token) or attention-masked mean of the last hidden states."""
    if pooling == "cls":
        return last_hidden_state[:, 0]
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class BiEncoder(nn.Module):
    """Query and passage encoders (one shared module by default) plus the spec that says how to embed."""

    def __init__(
        self, query_encoder: nn.Module, passage_encoder: nn.Module | None, spec: RetrieverSpec
    ) -> None:
        super().__init__()
        self.spec = spec
        if spec.shared:
            if passage_encoder is not None and passage_encoder is not query_encoder:
                raise ValueError("spec.shared is true but two different encoders were given")
            self.encoder = query_encoder
        else:
            if passage_encoder is None or passage_encoder is query_encoder:
                raise ValueError("spec.shared is false: give two separate encoders")
            self.query_encoder = query_encoder
            self.passage_encoder = passage_encoder

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_backbone(
        cls, name_or_path: str | Path, spec: RetrieverSpec | None = None, dtype: torch.dtype = torch.float32
    ) -> BiEncoder:
        """A fresh retriever to fine-tune: the backbone once (shared) or twice (separate encoders)."""
        spec = spec or RetrieverSpec(backbone=str(name_or_path))
        q = load_backbone(name_or_path, dtype)
        p = None if spec.shared else load_backbone(name_or_path, dtype)
        return cls(q, p, spec).train()  # HF loads in eval mode; fine-tuning wants dropout on

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> BiEncoder:
        """Load a saved retriever: ours (with ``xqg_retriever.json``), Tevatron's, or a plain HF checkpoint."""
        spec = read_spec(path)
        root = Path(path)
        if spec.shared:
            return cls(load_backbone(path, dtype), None, spec)
        return cls(
            load_backbone(root / QUERY_SUBDIR, dtype), load_backbone(root / PASSAGE_SUBDIR, dtype), spec
        )

    def save_pretrained(self, out_dir: str | Path, tokenizer: Any | None = None) -> Path:
        """HF format (weights, config, tokenizer) plus ``xqg_retriever.json``, written last."""
        quiet_hf_progress()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.spec.shared:
            self.encoder.save_pretrained(out)
        else:
            self.query_encoder.save_pretrained(out / QUERY_SUBDIR)
            self.passage_encoder.save_pretrained(out / PASSAGE_SUBDIR)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        atomic_write_json(out / SPEC_FILE, self.spec.to_json())
        return out

    # -- encoding -----------------------------------------------------------------------------------------
    @property
    def query_model(self) -> nn.Module:
        return self.encoder if self.spec.shared else self.query_encoder

    @property
    def passage_model(self) -> nn.Module:
        return self.encoder if self.spec.shared else self.passage_encoder

    def _embed(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        emb = pool(out.last_hidden_state, attention_mask, self.spec.pooling)
        if self.spec.normalize:
            emb = F.normalize(emb.float(), dim=-1).to(emb.dtype)
        return emb

    def encode_query(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._embed(self.query_model, input_ids, attention_mask)

    def encode_passage(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._embed(self.passage_model, input_ids, attention_mask)

    def forward(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        passage_input_ids: torch.Tensor,
        passage_attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self.encode_query(query_input_ids, query_attention_mask),
            self.encode_passage(passage_input_ids, passage_attention_mask),
        )

    def score(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Similarity matrix (fp32): dot product divided by the temperature."""
        return (q.float() @ p.float().T) / self.spec.temperature


def read_spec(path: str | Path) -> RetrieverSpec:
    """The spec saved with a checkpoint; for a folder without one, the reference defaults (CLS, shared), or
    separate encoders when it has Tevatron's ``query_model/`` and ``passage_model/`` sub-folders."""
    root = Path(path)
    if (root / SPEC_FILE).is_file():
        return RetrieverSpec.read(root / SPEC_FILE)
    untied = (root / QUERY_SUBDIR).is_dir() and (root / PASSAGE_SUBDIR).is_dir()
    return RetrieverSpec(backbone=str(path), shared=not untied)


def load_tokenizer(path: str | Path) -> Any:
    name, revision = split_revision(path)
    return AutoTokenizer.from_pretrained(name, revision=revision, trust_remote_code=False)


def load_retriever(
    path: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[BiEncoder, Any, RetrieverSpec]:
    """``(model, tokenizer, spec)`` from a local folder or a hub name; the tokenizer sits at the root, or in
    the query encoder's folder for an untied Tevatron checkpoint."""
    model = BiEncoder.from_pretrained(path, dtype)
    root = Path(path)
    tok_dir: str | Path = path
    if not model.spec.shared and not (root / "tokenizer_config.json").exists():
        tok_dir = root / QUERY_SUBDIR
    return model, load_tokenizer(tok_dir), model.spec
