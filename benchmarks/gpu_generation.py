"""Generation parts of ``benchmarks/gpu.py``: mT5-base-dims sampling throughput and the demo-size generation.

* ``bench_generation``: prompts of ``prompt_len`` random ids, 5 samples of ``new_tokens`` tokens, top-k 10, per
  batch size: the decoding loop (:meth:`QueryGenerator._sample`, the store text of before), the static decoder
  (:class:`xqg.generation.static_decode.StaticT5Decoder`) with CUDA graphs and with eager steps, at the loop's
  batch sizes and at the larger ones its smaller memory allows (``auto`` for each sampler included),
  ``model.generate``, and the bare decode (encoder + cached decoder steps, argmax) as the transformers model-only
  ceiling. Static rows are timed after one warm-up batch of the same shape (the graph capture), reported apart.
* ``bench_demo``: the demo's generation (the tiny T5 of ``conf/generator/tiny.yaml``, random init; 2,010 passages
  x 7 languages x 5 samples of 32 tokens, top-k 10) through :meth:`QueryGenerator.generate` (tokenisation and
  decoding included) at the automatic batch size, loop vs static decoder; on a CPU the loop at its batch of 64
  is the figure the demo pays there.

Random-init models never sample EOS, so every sample runs the full ``new_tokens`` (the worst case).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import MT5Config, MT5ForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from xqg.core.device import autocast
from xqg.generation.sampling import DecodingConfig, QueryGenerator, auto_batch_size
from xqg.generation.static_decode import StaticT5Decoder, static_prompt_bytes
from xqg.models.tiny_t5 import TinyT5Config, build_model, train_tokenizer

N_SAMPLES = 5
DEMO_LANGUAGES = ("ar", "bn", "fi", "ja", "ko", "ru", "te")
#: conf/generator/tiny.yaml's model block (the demo's generator)
DEMO_T5 = TinyT5Config(vocab_size=4000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                       num_heads=4, dropout_rate=0.0, seed=0)  # fmt: skip


def _mt5(sz: Any, dev: torch.device) -> tuple[Any, Any]:
    tok = train_tokenizer([f"word{i} text{i % 7}" for i in range(200)], vocab_size=300)
    cfg = MT5Config(
        vocab_size=sz.gen_vocab, d_model=sz.dim, d_kv=sz.dim // sz.gen_heads, d_ff=sz.gen_ff,
        num_layers=sz.gen_layers, num_decoder_layers=sz.gen_layers, num_heads=sz.gen_heads,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    with dev:
        model = MT5ForConditionalGeneration(cfg)
    return model.eval(), tok


def _fits(config: Any, dev: torch.device, b: int, sz: Any) -> bool:
    """Whether ``b`` prompts fit the static decoder in 85% of the free GPU memory (by its estimate): a graph
    capture that runs out of memory can leave the CUDA context unusable for the parts after it."""
    if dev.type != "cuda":
        return True
    need = b * static_prompt_bytes(config, N_SAMPLES, sz.prompt_len, sz.new_tokens)
    return need < 0.85 * torch.cuda.mem_get_info(dev)[0]


def _free(gen: QueryGenerator) -> None:
    """Drop the static decoder's buffers and graphs (so the next variant's peak memory is its own)."""
    if gen.static is not None:
        gen.static._cache.clear()


def bench_generation(sz: Any, clock: Any, deadline: float) -> list[list[str]]:
    dev = clock.dev
    model, tok = _mt5(sz, dev)
    loop = QueryGenerator.from_model(model, tok, device=dev, sampler="loop")
    static = QueryGenerator.from_model(loop.model, tok, device=dev, sampler="static")
    eager = QueryGenerator.from_model(loop.model, tok, device=dev, sampler="static")
    if eager.static is not None:
        eager.static.graphs = False
    decoding = DecodingConfig(top_k=10, max_new_tokens=sz.new_tokens)
    g = torch.Generator().manual_seed(0)

    def prompts(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.randint(3, sz.gen_vocab, (b, sz.prompt_len), generator=g)
        ids[:, -1] = tok.eos_token_id
        return ids.to(dev), torch.ones_like(ids, device=dev)

    def sampling(gen: QueryGenerator) -> Callable[[int], Callable[[], Any]]:
        def make(b: int) -> Callable[[], Any]:
            ids, mask = prompts(b)
            if gen.static is not None:
                return lambda: gen._sample_static(ids, mask, N_SAMPLES, decoding, seed=b)
            return lambda: gen._sample(ids, mask, N_SAMPLES, decoding, seed=b)

        return make

    def hf(b: int) -> Callable[[], Any]:
        ids, mask = prompts(b)
        kw = decoding.generate_kwargs(N_SAMPLES)
        return lambda: model.generate(input_ids=ids, attention_mask=mask, **kw)

    def bare(b: int) -> Callable[[], Any]:
        ids, mask = prompts(b)

        def run() -> None:
            h = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            enc = BaseModelOutput(last_hidden_state=h.repeat_interleave(N_SAMPLES, 0))
            m = mask.repeat_interleave(N_SAMPLES, 0)
            cur = torch.full((m.shape[0], 1), tok.pad_token_id, device=dev)
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            for _ in range(sz.new_tokens):
                o = model(encoder_outputs=enc, attention_mask=m, decoder_input_ids=cur, past_key_values=cache)
                cache, cur = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)

        return run

    amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(loop.autocast_dtype, "fp32")  # type: ignore[arg-type]
    weights = str(next(model.parameters()).dtype).removeprefix("torch.")
    auto = auto_batch_size(model.config, dev, N_SAMPLES, sz.prompt_len, sz.new_tokens)
    auto_static = auto_batch_size(model.config, dev, N_SAMPLES, sz.prompt_len, sz.new_tokens, static=True)
    try:  # the static decoder's self-check against the model's forward, reported even when it fails
        err = f"{StaticT5Decoder(loop.model).check(tok.pad_token_id):.1e}"
    except (ValueError, RuntimeError) as e:
        err = f"failed: {e}"
    rows = [[f"**{sz.gen_name}, {weights} weights, {amp} autocast, batch size auto = {auto} (loop) / {auto_static} (static), {sz.prompt_len}-token prompts, {N_SAMPLES} x {sz.new_tokens} tokens, top-k 10**", "prompts / batch", "sequences/s", "peak GiB", "first batch s (capture)"]]  # fmt: skip
    rows.append(["static decoder vs the model's forward, relative logit error", "", err, "", ""])
    cuda = dev.type == "cuda"
    big = tuple(b * 2 for b in sz.gen_batches[-1:]) + tuple(b * 4 for b in sz.gen_batches[-1:])
    plan = [
        ("xqg sampling loop", sampling(loop), {*sz.gen_batches, auto} if cuda else set(sz.gen_batches), False),
        ("xqg static decoder, CUDA graphs" if cuda else "xqg static decoder", sampling(static),
         {*sz.gen_batches, *big, auto_static}, True),
        ("xqg static decoder, eager steps", sampling(eager), {*sz.gen_batches, auto_static} if cuda else set(), True),
        ("`model.generate`", hf, set(sz.gen_batches), False),
        ("bare decode, argmax (model only)", bare, set(sz.gen_batches), False),
    ]  # fmt: skip
    with torch.inference_mode(), autocast(dev, loop.precision):
        try:
            sampling(static if static.static is not None else loop)(2)()  # kernels warm
            if static.static is not None and eager.static is not None:
                rows += _agreement(loop, static, eager, prompts(sz.gen_batches[0]))
        except Exception as e:
            rows.append(["tokens equal", "", _failure(e), "", ""])
        for name, make, sizes, warm in plan:
            if warm and static.static is None:
                rows.append([name, "", "static decoder unavailable", "", ""])
                continue
            for b in sorted(sizes):
                if time.perf_counter() > deadline:
                    rows.append([name, str(b), "skipped (time budget)", "", ""])
                    continue
                if warm and not _fits(model.config, dev, b, sz):
                    rows.append([name, str(b), "skipped (estimate above free memory)", "", ""])
                    continue
                clock.reset_peak()
                try:
                    run = make(b)
                    first = f"{clock.once(run):.2f}" if warm else ""
                    t = clock.once(run)
                    if "CUDA graphs" in name and static.static is not None and not static.static.graphs:
                        name = name.replace("CUDA graphs", "graph capture FAILED, eager steps")
                    rows.append([name, str(b), f"{b * N_SAMPLES / t:,.0f}", f"{clock.peak_gib()}", first])
                except torch.OutOfMemoryError:
                    rows.append([name, str(b), "out of memory", "", ""])
                except Exception as e:  # one failed variant must not hide the others
                    rows.append([name, str(b), _failure(e), "", ""])
                for gen in (static, eager):
                    _free(gen)
                clock.reset_peak()
    return rows


def _failure(e: BaseException) -> str:
    """A table cell for a failed measurement."""
    text = f"{type(e).__name__}: {e}".replace("|", "/").replace("\n", " ")
    return "failed: " + text[:200]


def _agreement(
    loop: QueryGenerator,
    static: QueryGenerator,
    eager: QueryGenerator,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> list[list[str]]:
    """Share of equal tokens: greedy (top-k 1) static decoder vs the loop (same network, other arithmetic order),
    and sampling with CUDA graphs vs eager steps (same draws: should be all)."""
    ids, mask = batch
    greedy = DecodingConfig(top_k=1, max_new_tokens=8)
    sample = DecodingConfig(top_k=10, max_new_tokens=8)
    a = loop._sample(ids, mask, 2, greedy, seed=0)
    b = static._sample_static(ids, mask, 2, greedy, seed=0)
    c = static._sample_static(ids, mask, 2, sample, seed=1)
    d = eager._sample_static(ids, mask, 2, sample, seed=1)
    for gen in (static, eager):
        _free(gen)
    return [
        ["tokens equal: greedy static decoder vs loop", str(ids.shape[0]), f"{(a == b).float().mean():.1%}", "", ""],
        ["tokens equal: sampled, graphs vs eager steps", str(ids.shape[0]), f"{(c == d).float().mean():.1%}", "", ""],
    ]  # fmt: skip


def _demo_prompts(passages: int, seed: int = 0) -> list[str]:
    """Prompts shaped like the demo world's: the tiny generator's template over synthetic titled passages."""
    rnd = random.Random(seed)
    words = [f"w{i}" for i in range(500)]
    out = []
    for p in range(passages):
        text = " ".join(rnd.choice(words) for _ in range(rnd.randint(12, 60)))
        for lang in DEMO_LANGUAGES:
            out.append(f"Generate a {lang} question for this passage: Title {p} {text}")
    return out


def bench_demo(sz: Any, clock: Any, deadline: float) -> list[list[str]]:
    dev = clock.dev
    prompts = _demo_prompts(sz.demo_passages)
    tok = train_tokenizer(prompts[:2000], vocab_size=DEMO_T5.vocab_size)
    model = build_model(DEMO_T5, tok)
    decoding = DecodingConfig(top_k=10, max_new_tokens=sz.demo_new_tokens)
    queries = len(prompts) * N_SAMPLES
    head = f"**demo generation: tiny T5 (conf/generator/tiny.yaml, random init), {sz.demo_passages:,} passages x {len(DEMO_LANGUAGES)} languages x {N_SAMPLES} = {queries:,} queries of {sz.demo_new_tokens} tokens, top-k 10, tokenisation and decoding included**"  # fmt: skip
    rows = [[head, "prompts / batch", "s", "queries/s", "process CPU s"]]
    variants = ["loop", "static"]
    for sampler in variants:
        gen = QueryGenerator.from_model(model, tok, device=dev, sampler=sampler)
        static = gen.static is not None
        config = gen.model.config
        b = auto_batch_size(
            config, dev, N_SAMPLES, gen.max_source_length, decoding.max_new_tokens, static=static
        )
        name = {"loop": "xqg sampling loop", "static": "xqg static decoder"}[sampler]
        name += ", CUDA graphs" if static and dev.type == "cuda" else ""
        if sampler == "static" and not static:
            rows.append([name, "", "static decoder unavailable", "", ""])
            continue
        if time.perf_counter() > deadline:
            rows.append([name, str(b), "skipped (time budget)", "", ""])
            continue
        try:
            gen.generate(prompts[:256], N_SAMPLES, decoding, batch_size=b, seed=(0,))  # kernels warm
            cpu0 = time.process_time()
            t = clock.once(
                lambda gen=gen, b=b: gen.generate(prompts, N_SAMPLES, decoding, batch_size=b, seed=(1,))
            )
        except Exception as e:  # one failed variant must not hide the other
            rows.append([name, str(b), _failure(e), "", ""])
            continue
        cpu = time.process_time() - cpu0
        if static and dev.type == "cuda" and gen.static is not None and not gen.static.graphs:
            name = name.replace("CUDA graphs", "graph capture FAILED, eager steps")
        rows.append([name + (" (the CPU's batch)" if dev.type != "cuda" else ""), str(b), f"{t:.2f}",
                     f"{queries / t:,.0f}", f"{cpu:.1f}"])  # fmt: skip
        _free(gen)
        clock.reset_peak()
    return rows
