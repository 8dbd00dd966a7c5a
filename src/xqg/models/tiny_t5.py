"""A tiny T5 (mT5-style gated-GELU) with a locally trained tokenizer, for offline tests and demos.

The hub is unreachable on CI machines, so tests cannot load ``google/mt5-small``. Instead we train a byte-level
character-level BPE tokenizer with byte fallback on the generator pairs' own text (every script, Arabic to
Telugu, is covered, and characters never seen fall back to byte tokens, so nothing is unknown), wrap it as a ``PreTrainedTokenizerFast`` with T5's special-token layout
(``<pad>`` = 0, also the decoder start; ``</s>`` = 1, appended to every input; ``<unk>`` = 2; no sentinels, as
the generator never does span corruption), and build a randomly initialised ``T5ForConditionalGeneration`` from
a small config. The pair is saved in HF format as a fingerprinted artifact (``<cache>/tiny_t5/<fp>/``), so the
rest of the code treats it exactly like a hub checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

from xqg.core.artifacts import ArtifactDir
from xqg.core.locking import complete_or_claim

CODE_VERSION = "2"
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


@dataclass(frozen=True)
class TinyT5Config:
    """Size of the tiny model and its tokenizer; every field is part of the artifact fingerprint."""

    vocab_size: int = 4000
    d_model: int = 64
    d_kv: int = 16
    d_ff: int = 128
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    relative_attention_num_buckets: int = 32
    dropout_rate: float = 0.0
    seed: int = 0


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Character-level BPE with byte fallback trained on ``texts``, T5 special tokens, ``</s>`` appended.

    Characters seen in training (every script of the pairs) are single tokens at least, which a tiny model
    learns far faster than the 3-byte pieces of a byte-level BPE; unseen characters fall back to ``<0xNN>``
    byte tokens, so no text is ever unknown.
    """
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # Add the 256 byte tokens to the model's vocabulary and switch byte fallback on.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="right"
    )


def build_model(config: TinyT5Config, tokenizer: PreTrainedTokenizerFast) -> T5ForConditionalGeneration:
    """A randomly initialised (seeded) T5 whose special ids match the tokenizer."""
    t5 = T5Config(
        vocab_size=len(tokenizer),
        d_model=config.d_model,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_layers=config.num_layers,
        num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        dropout_rate=config.dropout_rate,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        return T5ForConditionalGeneration(t5)


def tiny_t5_checkpoint(config: TinyT5Config | None, texts: Iterable[str], cache_dir: str | Path) -> Path:
    """Build (once) and return the folder of a tiny T5 + tokenizer trained on ``texts``.

    The fingerprint covers the config and a hash of the texts, so new training text gives a new tokenizer.
    """
    cfg = config or TinyT5Config()
    texts = list(texts)
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\n")
    art = ArtifactDir.for_spec(
        cache_dir,
        "tiny_t5",
        config=asdict(cfg),
        inputs={"texts": h.hexdigest()[:16]},
        code_version=CODE_VERSION,
    )
    if complete_or_claim(art):
        return art.path
    art.begin()
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    model = build_model(cfg, tokenizer)
    model.save_pretrained(art.path)
    tokenizer.save_pretrained(art.path)
    n_params = sum(p.numel() for p in model.parameters())
    art.finalize(counts={"texts": len(texts), "vocab": len(tokenizer), "parameters": n_params})
    return art.path
