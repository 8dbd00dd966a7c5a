"""Tiny, randomly initialised Hugging Face checkpoints of the paper's model families, written with
``save_pretrained`` into a folder so tests exercise the real hub loading path (``from_pretrained`` on a local
folder) without the hub:

- :func:`write_tiny_mbert`: ``BertModel`` + a cased WordPiece ``BertTokenizerFast`` (as bert-base-multilingual-cased);
- :func:`write_tiny_xlmr`: ``XLMRobertaModel`` + a SentencePiece-style Unigram ``XLMRobertaTokenizerFast``;
- :func:`write_tiny_mt5`: ``MT5ForConditionalGeneration`` + a Unigram ``T5TokenizerFast`` (as google/mt5-base).

Each tokenizer is trained with the ``tokenizers`` library on the given text (the fixture's passages and
questions), so no script falls back to the unknown token. Sizes are the smallest that keep the architecture.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    MT5Config,
    MT5ForConditionalGeneration,
    T5TokenizerFast,
    XLMRobertaConfig,
    XLMRobertaModel,
    XLMRobertaTokenizerFast,
)

HIDDEN = 32
MAX_POSITIONS = 160


def _alphabet(texts: list[str]) -> list[str]:
    """Every character of the text, so the trained vocabulary covers all scripts."""
    return sorted({ch for t in texts for ch in t if not ch.isspace()})


def write_tiny_mbert(out: Path, texts: Iterable[str], vocab_size: int = 2000, seed: int = 0) -> Path:
    """A tiny ``BertModel`` with a cased WordPiece tokenizer (mBERT's normalisation: no lowercasing, no accent
    stripping, CJK split into characters)."""
    texts = list(texts)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=_alphabet(texts), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    hf_tok = BertTokenizerFast(tokenizer_object=tok, do_lower_case=False, tokenize_chinese_chars=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    return _save(out, BertModel(config), hf_tok)


def _unigram(texts: list[str], specials: list[str], unk: str, vocab_size: int) -> Tokenizer:
    """A SentencePiece-style Unigram tokenizer: NFKC, whitespace as ``▁`` prepended to every word."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        unk_token=unk,
        initial_alphabet=_alphabet(texts),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def write_tiny_xlmr(out: Path, texts: Iterable[str], vocab_size: int = 2000, seed: int = 0) -> Path:
    """A tiny ``XLMRobertaModel`` with a Unigram tokenizer in XLM-R's layout (``<s> $A </s>``, ids 0-3 for
    ``<s> <pad> </s> <unk>``, ``<mask>`` last)."""
    texts = list(texts)
    tok = _unigram(texts, ["<s>", "<pad>", "</s>", "<unk>"], "<unk>", vocab_size)
    tok.add_special_tokens(["<mask>"])
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    hf_tok = XLMRobertaTokenizerFast(tokenizer_object=tok)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=MAX_POSITIONS + 2,  # RoBERTa positions start after the padding index
        pad_token_id=tok.token_to_id("<pad>"),
        bos_token_id=bos,
        eos_token_id=eos,
    )
    return _save(out, XLMRobertaModel(config), hf_tok)


def write_tiny_mt5(out: Path, texts: Iterable[str], vocab_size: int = 2000, seed: int = 0) -> Path:
    """A tiny ``MT5ForConditionalGeneration`` (gated-GELU, untied head, as mT5) with a Unigram tokenizer in
    mT5's layout (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2; ``$A </s>``)."""
    texts = list(texts)
    tok = _unigram(texts, ["<pad>", "</s>", "<unk>"], "<unk>", vocab_size)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    hf_tok = T5TokenizerFast(tokenizer_object=tok, extra_ids=0)
    torch.manual_seed(seed)
    config = MT5Config(
        vocab_size=len(hf_tok),
        d_model=HIDDEN,
        d_kv=8,
        d_ff=2 * HIDDEN,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=eos,
        decoder_start_token_id=0,
    )
    return _save(out, MT5ForConditionalGeneration(config), hf_tok)


def _save(out: Path, model: torch.nn.Module, tokenizer: object) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    return out
