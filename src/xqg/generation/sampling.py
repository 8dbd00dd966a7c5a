"""Decoding: the settings (:class:`DecodingConfig`) and a loaded generator that samples n queries per prompt.

Sampling (the paper's setting) runs our own incremental decoding loop over the model's KV cache: the encoder runs
once per prompt, the next token is drawn among the top-k candidates (same distribution as transformers' warpers),
and rows that reached EOS leave the batch; see ``benchmarks/results/generate.md``. On a GPU, T5-family models
sample through :class:`~xqg.generation.static_decode.StaticT5Decoder` instead (static KV cache, cross-attention
shared by a prompt's samples, one CUDA graph per step; its own text, so its own store fingerprint); the CPU keeps
the loop and its text (``sampler``: :func:`resolve_sampler`). Beam search uses ``model.generate``. Prompts are length-sorted into batches (so padding is small) and batch ``b`` is seeded from
``(*seed, b)``, so the text depends only on the prompts, the settings and the seed (on the same kind of device:
CPU and GPU arithmetic differ).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from xqg.core.device import autocast, autocast_dtype, resolve_device
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.data.generator_data import format_prompt
from xqg.data.records import Passage
from xqg.generation.static_decode import SAMPLER_VERSION, StaticT5Decoder, static_prompt_bytes, supports
from xqg.models.generator_module import GeneratorSpec, missing_model_message
from xqg.models.hub import split_revision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodingConfig:
    """Decoding settings (all part of the store fingerprint). The paper samples with top_k 10, 32 tokens."""

    do_sample: bool = True
    top_k: int | None = 10
    top_p: float | None = None
    temperature: float = 1.0
    num_beams: int = 1
    max_new_tokens: int = 32

    def generate_kwargs(self, n: int) -> dict[str, Any]:
        """Arguments for ``model.generate`` returning ``n`` sequences per prompt; rejects settings that would
        silently give n identical queries (greedy with n > 1) or fail deep in transformers (n > num_beams)."""
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_return_sequences": n}
        if self.num_beams > 1 and self.num_beams < n:
            raise XqgInputError(
                f"beam search returning n={n} queries needs num_beams >= {n}, got {self.num_beams}",
                field="generator.decoding.num_beams",
            )
        if self.do_sample:
            kw.update(do_sample=True, temperature=self.temperature, num_beams=self.num_beams)
            kw["top_k"] = self.top_k if self.top_k is not None else 0
            if self.top_p is not None:
                kw["top_p"] = self.top_p
            return kw
        if self.num_beams < n:
            raise XqgInputError(
                f"greedy decoding gives one query, not n={n}: sample (do_sample) or set num_beams >= {n}",
                field="generator.decoding.num_beams",
            )
        kw.update(do_sample=False, num_beams=self.num_beams)
        if self.num_beams > 1:
            kw["early_stopping"] = True
        return kw


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any repr-able parts (stable across processes and machines)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & ((1 << 63) - 1)


def generation_precision(device: torch.device, precision: str) -> str:
    """``precision`` in :mod:`xqg.core.device`'s terms for generation: bf16 where the GPU has it, fp16 only when
    asked (mT5 overflows in fp16), so ``auto`` on a GPU without bf16 runs in fp32 (where encoding takes fp16)."""
    if precision == "auto" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp32"
    return precision


def _placed(model: Any, device: torch.device, half: torch.dtype | None) -> Any:
    """``model`` on ``device`` in eval mode; on a GPU that generates in bf16, with bf16 weights (autocast would
    re-cast every fp32 weight at each decoding step). fp16 stays autocast over fp32 weights (mT5 overflows)."""
    model = model.to(device).eval()
    if device.type == "cuda" and half == torch.bfloat16:
        model = model.to(torch.bfloat16)
    return model


#: prompts per batch where no GPU memory decides (the CPU): the long-standing default, so CPU text is unchanged
CPU_BATCH_SIZE = 64
MAX_AUTO_BATCH = 4096
_MEMORY_SHARE = 0.6  # of the GPU's total memory, for the batch's caches, logits and activations


def prompt_bytes(config: Any, n: int, source_len: int, new_tokens: int) -> int:
    """Bytes one prompt takes while its ``n`` samples decode (bf16): the cross- and self-attention KV caches of
    every decoder layer, the fp32 encoder states repeated n times, and 18 bytes per vocabulary entry of logits
    (bf16 logits, their fp32 copy, the candidate scores; calibrated on the measured peak). mT5-base, 128-token
    prompts, n=5: ~54 MB (measured on an H200: 54 GiB peak at 1,024 prompts, 2.3 GB of it fp32 weights)."""
    inner = int(getattr(config, "num_heads", 8)) * int(getattr(config, "d_kv", 64))
    layers = int(getattr(config, "num_decoder_layers", None) or getattr(config, "num_layers", 6))
    kv = n * (source_len + new_tokens) * layers * 2 * inner * 2
    states = n * source_len * int(getattr(config, "d_model", inner)) * 4
    logits = n * int(config.vocab_size) * 18
    return kv + states + logits


def auto_batch_size(
    config: Any,
    device: torch.device,
    n: int,
    source_len: int,
    new_tokens: int,
    memory: int | None = None,
    static: bool = False,
) -> int:
    """Prompts per batch for ``device``: the largest power of two whose batch fits in a share of the GPU's *total*
    memory (``memory`` overrides), at most :data:`MAX_AUTO_BATCH`; :data:`CPU_BATCH_SIZE` on the CPU. Total, not
    free, memory: the batch size fixes the seeded batches, hence the text, so it must not depend on what else
    runs on the GPU (a resumed run on the same kind of GPU gets the same batches and the same store).
    ``static``: sized for :class:`~xqg.generation.static_decode.StaticT5Decoder` (less memory per prompt)."""
    if device.type != "cuda" and memory is None:
        return CPU_BATCH_SIZE
    total = memory if memory is not None else torch.cuda.get_device_properties(device).total_memory
    per_prompt = (static_prompt_bytes if static else prompt_bytes)(config, n, source_len, new_tokens)
    fit = int(_MEMORY_SHARE * total) // max(1, per_prompt)
    if fit < 1:
        return 1
    return int(min(MAX_AUTO_BATCH, 1 << (fit.bit_length() - 1)))


def resolve_batch_size(
    batch_size: int | None,
    generator_path: str | Path,
    device: str | torch.device | None,
    n: int,
    source_len: int | None,
    new_tokens: int,
    *,
    sampler: str = "auto",
    precision: str = "auto",
) -> int:
    """``batch_size`` when set, else :func:`auto_batch_size` from the checkpoint's config (read without the
    weights), the device and the sampler (:func:`resolve_sampler`: the static decoder of a T5-family model
    needs less memory per prompt)."""
    if batch_size is not None:
        return int(batch_size)
    dev = resolve_device(device)
    if dev.type != "cuda":
        return CPU_BATCH_SIZE
    name, revision = split_revision(str(generator_path))
    try:
        config = AutoConfig.from_pretrained(name, revision=revision)
    except OSError as e:
        raise MissingResourceError(missing_model_message(str(generator_path), e)) from None
    source_len = source_len or GeneratorSpec.load(generator_path).max_source_length
    static = (  # its memory model counts bf16 weights and caches; fp32 takes the loop's (larger) one
        resolve_sampler(sampler, dev, precision) == "static"
        and config.model_type in ("t5", "mt5")
        and autocast_dtype(dev, generation_precision(dev, precision)) == torch.bfloat16
    )
    return auto_batch_size(config, dev, n, int(source_len), new_tokens, static=static)


class CandidateSampler:
    """Draws next tokens with transformers' sampling semantics (temperature, then top-k, then top-p keeping the
    smallest prefix with mass >= top_p, at least one token), but among the k candidates instead of over the
    whole vocabulary (a full-vocabulary multinomial took over half of the CPU time), from its own seeded
    ``torch.Generator`` (the global RNG is left alone)."""

    def __init__(
        self, top_k: int | None, top_p: float | None, temperature: float, generator: torch.Generator
    ) -> None:
        self.top_k = top_k if top_k and top_k > 0 else None
        self.top_p = top_p
        self.temperature = temperature
        self.generator = generator

    def draw(self, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.top_k is not None:
            values, index = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1)
        else:
            values, index = logits.sort(dim=-1, descending=True)
        probs = values.softmax(dim=-1)
        if self.top_p is not None and self.top_p < 1.0:
            before = probs.cumsum(dim=-1) - probs
            probs = probs.masked_fill(before >= self.top_p, 0.0)
        choice = torch.multinomial(probs, 1, generator=self.generator)
        return index.gather(-1, choice).squeeze(-1)


SAMPLERS = ("auto", "loop", "static")


def resolve_sampler(sampler: str, device: torch.device, precision: str) -> str:
    """``loop`` (:meth:`QueryGenerator._sample`, the text of before) or ``static``
    (:class:`~xqg.generation.static_decode.StaticT5Decoder`); ``auto``: static on a GPU unless it generates in
    fp16 (autocast over fp32 weights), the loop on the CPU, whose text stays as it was."""
    if sampler not in SAMPLERS:
        raise XqgInputError(f"sampler must be one of {SAMPLERS}, got {sampler!r}", field="generator.sampler")
    if sampler != "auto":
        return sampler
    if (
        device.type != "cuda"
        or autocast_dtype(device, generation_precision(device, precision)) == torch.float16
    ):
        return "loop"
    return "static"


def sampler_fingerprint(sampler: str, device: str | torch.device | None, precision: str) -> str | None:
    """What goes into a generated store's fingerprint for the sampler: None for the loop (stores of before stay
    valid), :data:`~xqg.generation.static_decode.SAMPLER_VERSION` for the static decoder."""
    return (
        SAMPLER_VERSION if resolve_sampler(sampler, resolve_device(device), precision) == "static" else None
    )


class QueryGenerator:
    """A loaded generator that turns (passage, language) prompts into n queries each, batched and sorted."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device | None = "auto",
        precision: str = "auto",
        prompt_template: str | None = None,
        max_source_length: int | None = None,
        sampler: str = "auto",
    ) -> None:
        self.path = str(path)
        self.spec = GeneratorSpec.load(path)
        self.prompt_template = prompt_template or self.spec.prompt_template
        self.max_source_length = int(max_source_length or self.spec.max_source_length)
        self.device = resolve_device(device)
        try:
            name, revision = split_revision(self.path)  # owner/name@revision pins a hub revision
            self.tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
            model = AutoModelForSeq2SeqLM.from_pretrained(name, revision=revision)
        except OSError as e:
            raise MissingResourceError(missing_model_message(self.path, e)) from None
        self.precision = generation_precision(self.device, precision)
        self.autocast_dtype = autocast_dtype(self.device, self.precision)
        self.model = _placed(model, self.device, self.autocast_dtype)
        self.generated_tokens = 0
        self.static = self._static_decoder(sampler)

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        spec: GeneratorSpec | None = None,
        device: str | torch.device | None = "auto",
        precision: str = "auto",
        sampler: str = "auto",
    ) -> QueryGenerator:
        """A generator around a model and tokenizer already in memory (benchmarks, tests): no checkpoint is read."""
        self = cls.__new__(cls)
        self.path = ""
        self.spec = spec or GeneratorSpec()
        self.prompt_template = self.spec.prompt_template
        self.max_source_length = int(self.spec.max_source_length)
        self.device = resolve_device(device)
        self.tokenizer = tokenizer
        self.precision = generation_precision(self.device, precision)
        self.autocast_dtype = autocast_dtype(self.device, self.precision)
        self.model = _placed(model, self.device, self.autocast_dtype)
        self.generated_tokens = 0
        self.static = self._static_decoder(sampler)
        return self

    def _static_decoder(self, sampler: str) -> StaticT5Decoder | None:
        """The static decoder when ``sampler`` resolves to it and the model is one it implements (checked
        against the model's own forward); None: the loop samples."""
        if resolve_sampler(sampler, self.device, self.precision) != "static":
            return None
        if not supports(self.model):
            log.warning("static sampler: %s is not a T5-family model; using the decoding loop", self.path)
            return None
        try:
            decoder = StaticT5Decoder(self.model)  # checks itself against the model's forward
        except ValueError as e:
            log.warning("static sampler unavailable, using the decoding loop: %s", e)
            return None
        return decoder

    def _special_ids(self) -> tuple[int, list[int], int]:
        """Decoder start, EOS ids (a list) and pad, from the model's generation config and the tokenizer."""
        gcfg = self.model.generation_config
        start = gcfg.decoder_start_token_id
        if start is None:
            start = self.model.config.decoder_start_token_id
        eos = gcfg.eos_token_id if gcfg.eos_token_id is not None else self.tokenizer.eos_token_id
        return (
            int(start),
            list(eos) if isinstance(eos, list) else [int(eos)],
            int(self.tokenizer.pad_token_id),
        )

    def prompts(self, passages: Sequence[Passage], languages: Sequence[str]) -> list[str]:
        """Passage-major prompts: for each passage, one per language (the training prompt template)."""
        return [
            format_prompt(self.prompt_template, lang, p.title, p.text) for p in passages for lang in languages
        ]

    def _sample(
        self, input_ids: torch.Tensor, mask: torch.Tensor, n: int, decoding: DecodingConfig, seed: int
    ) -> torch.Tensor:
        """Sampling, n per prompt, as ``(rows, max_new_tokens)`` token ids (pad after EOS).

        Our own incremental decoding loop rather than ``model.generate``: the encoder runs once per prompt
        (its output repeated n times), tokens are drawn by :class:`CandidateSampler`, and rows that reached
        EOS are dropped from the batch (with their KV cache) once they are a quarter of it, so a few long
        samples do not keep a whole batch of finished ones computing to ``max_new_tokens``. Only the decoding
        settings of :class:`DecodingConfig` apply (not extra processors of the model's generation_config).
        """
        model = self.model
        device = input_ids.device
        hidden = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        hidden = hidden.repeat_interleave(n, dim=0)
        enc_mask = mask.repeat_interleave(n, dim=0)
        rows = hidden.shape[0]
        start, eos, pad = self._special_ids()
        eos_ids = torch.tensor(eos, device=device)
        sampler = CandidateSampler(
            decoding.top_k,
            decoding.top_p,
            decoding.temperature,
            torch.Generator(device=device).manual_seed(seed),
        )
        out = torch.full((rows, decoding.max_new_tokens), pad, dtype=torch.long, device=device)
        alive = torch.arange(rows, device=device)  # original row of each row still in the batch
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        cur = torch.full((rows, 1), int(start), dtype=torch.long, device=device)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        enc = BaseModelOutput(last_hidden_state=hidden)
        # transformers 5 renamed `past_key_values` to `cache` (the old name warns); 4.x knows only the old one
        cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        for step in range(decoding.max_new_tokens):
            o = model(
                encoder_outputs=enc,
                attention_mask=enc_mask,
                decoder_input_ids=cur,
                use_cache=True,
                **{cache_arg: cache},
            )
            cache = getattr(o, cache_arg)
            nxt = sampler.draw(o.logits[:, -1, :])
            nxt = torch.where(finished, torch.full_like(nxt, pad), nxt)
            out[alive, step] = nxt
            finished |= torch.isin(nxt, eos_ids)
            done = int(finished.sum())
            if done == len(alive):
                break
            if 4 * done >= len(alive):
                keep = (~finished).nonzero().squeeze(1)
                alive, finished, nxt = alive[keep], finished[keep], nxt[keep]
                enc_mask = enc_mask.index_select(0, keep)
                enc = BaseModelOutput(last_hidden_state=enc.last_hidden_state.index_select(0, keep))
                cache.batch_select_indices(keep)
            cur = nxt[:, None]
        return out

    def _sample_static(
        self, input_ids: torch.Tensor, mask: torch.Tensor, n: int, decoding: DecodingConfig, seed: int
    ) -> torch.Tensor:
        """Sampling through :class:`~xqg.generation.static_decode.StaticT5Decoder` (same result layout as
        :meth:`_sample`), seeded the same way: its own generator from ``seed``."""
        assert self.static is not None
        start, eos, pad = self._special_ids()
        return self.static.sample(
            input_ids,
            mask,
            n,
            max_new_tokens=decoding.max_new_tokens,
            top_k=decoding.top_k,
            top_p=decoding.top_p,
            temperature=decoding.temperature,
            start=start,
            eos=eos,
            pad=pad,
            generator=torch.Generator(device=input_ids.device).manual_seed(seed),
        )

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        decoding: DecodingConfig,
        *,
        batch_size: int,
        seed: Iterable[Any] = (),
        on_batch: Callable[[int], Any] | None = None,
    ) -> list[list[str]]:
        """``n`` texts per prompt. Prompts are length-sorted into batches of ``batch_size`` prompts; batch ``b``
        is seeded from ``(*seed, b)``, so the output depends only on the prompts, the settings and ``seed``."""
        kwargs = decoding.generate_kwargs(n)
        enc = self.tokenizer(list(prompts), truncation=True, max_length=self.max_source_length)
        ids = enc["input_ids"]
        order = sorted(range(len(ids)), key=lambda j: (-len(ids[j]), j))
        out: list[list[str]] = [[] for _ in ids]
        pad = self.tokenizer.pad_token_id
        seed = tuple(seed)
        for b, start in enumerate(range(0, len(order), batch_size)):
            idx = order[start : start + batch_size]
            batch = self.tokenizer.pad(
                {"input_ids": [ids[j] for j in idx]}, padding_side="right", return_tensors="pt"
            )
            input_ids = batch["input_ids"].to(self.device)
            mask = batch["attention_mask"].to(self.device)
            batch_seed = derive_seed(*seed, b)
            with torch.inference_mode(), autocast(self.device, self.precision):
                if decoding.do_sample and decoding.num_beams == 1 and self.static is not None:
                    gen = self._sample_static(input_ids, mask, n, decoding, batch_seed)
                elif decoding.do_sample and decoding.num_beams == 1:
                    gen = self._sample(input_ids, mask, n, decoding, batch_seed)
                else:  # beam search / beam sampling: transformers' own implementation
                    torch.manual_seed(batch_seed)
                    gen = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
                    gen = gen[:, 1:]  # drop the decoder start token
            self.generated_tokens += int((gen != pad).sum())
            texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
            for r, j in enumerate(idx):
                out[j] = [t.strip() for t in texts[r * n : (r + 1) * n]]
            if on_batch is not None:
                on_batch(len(idx) * n)
        return out
