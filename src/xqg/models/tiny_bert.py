"""A tiny BERT backbone with a WordPiece tokenizer trained locally, for offline tests and demos.

The hub is unreachable on CI machines, so tests cannot load ``bert-base-multilingual-cased``. Instead we fit
a cased WordPiece tokenizer (mBERT-style normalisation: no lowercasing, no accent stripping, so Bengali and
Telugu vowel signs survive; CJK ideographs split into single characters; the full character alphabet of the
text kept, so no script falls back to ``[UNK]``; the vocabulary chosen deterministically, so the same text
always gives the same tokenizer) to the training text itself (queries + passages; with
``vocab_text="all_languages"`` also the text of the data's questions in every language, see
:data:`VOCAB_TEXTS`), and build a
randomly initialised ``BertModel`` from a small config. Both are saved in HF format as a fingerprinted artifact
(``<cache>/tiny_bert/<fp>/``) so every later stage treats the tiny backbone exactly like a hub checkpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from xqg.core.artifacts import ArtifactDir
from xqg.core.errors import XqgInputError
from xqg.core.locking import complete_or_claim
from xqg.models.biencoder import quiet_hf_progress

CODE_VERSION = "2"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Unsegmented scripts (Japanese kana, Thai) make long "words"; WordPiece maps a word it cannot split to [UNK].
MAX_CHARS_PER_WORD = 256
# Longest vocabulary piece considered (besides whole words); keeps candidate counting linear in the text.
MAX_PIECE_CHARS = 8
#: What the vocabulary is fitted on. ``train``: the retriever's training text. ``all_languages``: that text plus
#: the question text (no labels) of the data's cross-lingual training file, as mBERT's vocabulary covers every
#: script from pre-training. It matters for a zero-shot retriever trained on English only: fitted on English
#: text, every non-Latin word is ``[UNK]`` and Japanese/Korean names glued to particles vanish with it.
VOCAB_TEXTS = ("train", "all_languages")


@dataclass(frozen=True)
class TinyBertConfig:
    """Size of the tiny model and its tokenizer; every field is part of the artifact fingerprint."""

    vocab_size: int = 8000
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128
    max_position: int = 160
    dropout: float = 0.1
    max_tokenizer_texts: int = 200_000
    seed: int = 0
    vocab_text: str = "train"  # see VOCAB_TEXTS

    def __post_init__(self) -> None:
        if self.vocab_text not in VOCAB_TEXTS:
            raise XqgInputError(
                f"must be one of {VOCAB_TEXTS}, got {self.vocab_text!r}", field="backbone.tiny.vocab_text"
            )

    def identity(self) -> dict[str, Any]:
        """The fields that identify the model (``vocab_text`` only when not the default, so tiny models built
        before the option keep their fingerprints)."""
        out = asdict(self)
        if out["vocab_text"] == "train":
            del out["vocab_text"]
        return out


def _normalizer_and_pretokenizer() -> tuple[Any, Any]:
    norm = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    return norm, pre_tokenizers.BertPreTokenizer()


def wordpiece_vocab(
    texts: Iterable[str], vocab_size: int, max_piece_chars: int = MAX_PIECE_CHARS
) -> list[str]:
    """A WordPiece vocabulary chosen deterministically (the ``tokenizers`` trainer breaks ties in hash order,
    so two runs on the same text give different vocabularies, and different models).

    It holds the special tokens, every character of the text (alone and as a ``##`` continuation, so no word
    of a seen script becomes ``[UNK]``), then the word-initial pieces and ``##`` continuations (up to
    ``max_piece_chars`` characters, whole words included) that save the most tokens: frequency x (length - 1),
    ties broken by the piece itself. The alphabet is always kept, even beyond ``vocab_size``.
    """
    norm, pre = _normalizer_and_pretokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    chars: Counter[str] = Counter()
    pieces: Counter[str] = Counter()
    for word, n in words.items():
        for ch in word:
            chars[ch] += n
        for i in range(len(word)):
            for j in range(i + 2, min(len(word), i + max_piece_chars) + 1):
                pieces[word[i:j] if i == 0 else "##" + word[i:j]] += n
        if len(word) > max_piece_chars:
            pieces[word] += n
    vocab = list(SPECIAL_TOKENS)
    alphabet = sorted(chars, key=lambda c: (-chars[c], c))
    vocab += alphabet + ["##" + c for c in alphabet]
    seen = set(vocab)
    budget = max(0, vocab_size - len(vocab))

    def saving(piece: str) -> int:
        return pieces[piece] * (len(piece.removeprefix("##")) - 1)

    ranked = sorted((p for p in pieces if p not in seen), key=lambda p: (-saving(p), p))
    return vocab + ranked[:budget]


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """A cased multilingual WordPiece tokenizer fitted to ``texts``, as a ``PreTrainedTokenizerFast``."""
    vocab = wordpiece_vocab(texts, vocab_size)
    tok = Tokenizer(
        models.WordPiece(
            {t: i for i, t in enumerate(vocab)},
            unk_token="[UNK]",
            max_input_chars_per_word=MAX_CHARS_PER_WORD,
        )
    )
    tok.normalizer, tok.pre_tokenizer = _normalizer_and_pretokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def build_tiny_bert(cfg: TinyBertConfig, vocab_size: int, pad_token_id: int = 0) -> BertModel:
    """A randomly initialised ``BertModel`` (no pooler), seeded without touching the global RNG."""
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return BertModel(config, add_pooling_layer=False)


def _capped(texts: Iterable[str], n: int) -> Iterable[str]:
    for i, t in enumerate(texts):
        if i >= n:
            return
        yield t


def tiny_bert_backbone(
    cache_dir: str | Path,
    cfg: TinyBertConfig,
    texts: Callable[[], Iterable[str]],
    texts_fingerprint: str,
) -> Path:
    """Folder of a tiny BERT + tokenizer in HF format, built once per (texts, config) and then reused.

    ``texts`` is called only on a cache miss; ``texts_fingerprint`` identifies what it yields (e.g. the
    training file's fingerprint), so another training set gets its own tokenizer.
    """
    art = ArtifactDir.for_spec(
        cache_dir,
        "tiny_bert",
        config=cfg.identity(),
        inputs={"texts": texts_fingerprint},
        code_version=CODE_VERSION,
    )
    if complete_or_claim(art):
        return art.path
    quiet_hf_progress()
    out = art.begin()
    tokenizer = train_wordpiece(_capped(texts(), cfg.max_tokenizer_texts), cfg.vocab_size, cfg.max_position)
    model = build_tiny_bert(cfg, len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    art.finalize(counts={"vocab_size": len(tokenizer), "parameters": n_params})
    return out
