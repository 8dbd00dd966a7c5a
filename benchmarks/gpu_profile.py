"""Where the static decoder's GPU time goes (mT5-base dims, the batch of ``gpu.py``'s best row): the torch
profiler's kernel time per op over one batch with eager steps, and the step's large pieces alone (the LM head's
matmul, top-k over the whole vocabulary, top-k from chunk maxima); each variant of the decoder's step timed
over a whole batch (the top-k, the attention kernels).

    PYTHONPATH=src python benchmarks/gpu_profile.py              # ~1 min on one H100/H200
    PYTHONPATH=src python benchmarks/gpu_profile.py --tiny       # the same code, tiny, on the CPU
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import TINY, Sizes
from gpu_generation import N_SAMPLES, _mt5

from xqg.core.device import autocast, resolve_device
from xqg.generation import static_decode
from xqg.generation.sampling import DecodingConfig, QueryGenerator
from xqg.generation.static_decode import chunked_topk


def _time(dev: torch.device, fn: Callable[[], Any], reps: int = 10) -> float:
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per batch (default 1024; tiny 8)")
    args = ap.parse_args()
    sz = TINY if args.tiny else Sizes()
    dev = resolve_device("cpu" if args.tiny else "auto")
    b = args.prompts or (8 if args.tiny else 1024)
    model, tok = _mt5(sz, dev)
    decoding = DecodingConfig(top_k=10, max_new_tokens=sz.new_tokens)
    ids = torch.randint(3, sz.gen_vocab, (b, sz.prompt_len), device=dev)
    ids[:, -1] = tok.eos_token_id
    mask = torch.ones_like(ids)
    rows = b * N_SAMPLES
    print(f"{sz.gen_name}, {b} prompts x {N_SAMPLES} samples x {sz.new_tokens} tokens on {dev}")
    default = (static_decode.CHUNKED_TOPK_FROM, static_decode.FUSED_ATTENTION)
    top = 0 if args.tiny else default[0]  # the tiny vocabulary is below the default width
    variants = {
        "torch.topk, matmul attention (static-1)": (None, False),
        "chunked top-k, matmul attention": (top, False),
        "torch.topk, fused attention": (None, True),
        "chunked top-k, fused attention": (top, True),
    }
    variants = {f"{k} (default)" if v == (top, default[1]) else k: v for k, v in variants.items()}
    with torch.inference_mode():
        for name, (topk_from, fused) in variants.items():
            static_decode.CHUNKED_TOPK_FROM, static_decode.FUSED_ATTENTION = topk_from, fused
            for graphs in (True, False) if (topk_from, fused) == (top, default[1]) else (True,):
                g = QueryGenerator.from_model(model, tok, device=dev, sampler="static")
                assert g.static is not None
                g.static.graphs = graphs and dev.type == "cuda"
                with autocast(dev, g.precision):
                    s = _time(dev, lambda g=g: g._sample_static(ids, mask, N_SAMPLES, decoding, seed=1), 2)
                how = "CUDA graphs" if g.static.graphs else "eager steps"
                print(f"batch, {name}, {how}: {s:.3f} s = {rows / s:,.0f} sequences/s "
                      f"(logit error vs the model {g.static.error:.1e})")  # fmt: skip
                g.static._cache.clear()
        static_decode.CHUNKED_TOPK_FROM, static_decode.FUSED_ATTENTION = top, default[1]
        eager = QueryGenerator.from_model(model, tok, device=dev, sampler="static")
        assert eager.static is not None
        eager.static.graphs = False
        acts = [torch.profiler.ProfilerActivity.CPU]
        if dev.type == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        with autocast(dev, eager.precision), torch.profiler.profile(activities=acts) as prof:
            eager._sample_static(ids, mask, N_SAMPLES, decoding, seed=2)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        eager.static._cache.clear()
        static_decode.CHUNKED_TOPK_FROM, static_decode.FUSED_ATTENTION = default
        key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        print("profile of one batch, the default variant, eager steps:")
        print(prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=60))
        vocab = model.lm_head.weight.shape[0]
        x = torch.randn(rows, model.config.d_model, device=dev, dtype=model.lm_head.weight.dtype)
        logits = model.lm_head(x)
        steps = sz.new_tokens
        parts = {
            "LM head matmul": lambda: model.lm_head(x),
            "top-k 10 over the vocabulary (torch.topk)": lambda: logits.topk(10, dim=-1),
            "top-k 10, chunk maxima first (chunked_topk)": lambda: chunked_topk(logits, 10),
            "argmax over the vocabulary": lambda: logits.argmax(-1),
        }
        for name, fn in parts.items():
            s = _time(dev, fn)
            print(
                f"{name}, {rows} x {vocab}: {s * 1e3:.2f} ms/step, {s * steps:.3f} s per batch of {steps} steps"
            )
        same = torch.equal(logits.topk(10, dim=-1).values, chunked_topk(logits, 10)[0])
        print("chunked top-k gives torch.topk's values:", same)


if __name__ == "__main__":
    main()
