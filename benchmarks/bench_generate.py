"""Benchmark query generation: the batched generator of ``xqg.generation.sampling`` vs one call per passage and language.

The reference (ielab/xQG4xDR README) generates with ``pipeline("text2text-generation")``, one call per passage
prompt, ``num_return_sequences`` samples each. transformers 5 removed that pipeline task, so the baseline emulates
it faithfully: one ``model.generate`` call per (passage, language) prompt, batch size 1, the same decoding
(sampling, top_k 10, n samples, max_new_tokens 32). Ours: :class:`xqg.generation.sampling.QueryGenerator` (prompts of all
passages x languages, length-sorted, batched). Both count generated tokens the same way (non-pad tokens after the
decoder start). Model: the ``generator=tiny`` T5 fine-tuned briefly on a small synthetic world (so samples end at
EOS with varying lengths, as real ones do; trained once, cached in benchmarks/work/), on CPU.

    python benchmarks/bench_generate.py [--passages 24] [--n 5] [--batch-size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from xqg.core.languages import XOR_LANGUAGES
from xqg.data.corpus import open_corpus
from xqg.generation.sampling import DecodingConfig, QueryGenerator
from xqg.tasks.schema import register_configs, to_settings
from xqg.tasks.train_generator import train_or_load

REPO = Path(__file__).resolve().parents[1]


def baseline(gen: QueryGenerator, prompts: list[str], n: int, decoding: DecodingConfig) -> tuple[int, float]:
    """One generate call per prompt (what a per-passage text2text pipeline call does), batch size 1."""
    tok, model = gen.tokenizer, gen.model
    kwargs = decoding.generate_kwargs(n)
    pad = tok.pad_token_id
    tokens = 0
    t0 = time.perf_counter()
    for i, prompt in enumerate(prompts):
        enc = tok(prompt, truncation=True, max_length=gen.max_source_length, return_tensors="pt")
        torch.manual_seed(i)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        tokens += int((out[:, 1:] != pad).sum())
        tok.batch_decode(out[:, 1:], skip_special_tokens=True)
    return tokens, time.perf_counter() - t0


def batched(
    gen: QueryGenerator, prompts: list[str], n: int, decoding: DecodingConfig, batch_size: int
) -> tuple[int, float]:
    gen.generated_tokens = 0
    t0 = time.perf_counter()
    gen.generate(prompts, n, decoding, batch_size=batch_size, seed=(0,))
    return gen.generated_tokens, time.perf_counter() - t0


def trained_generator(cache: Path, max_source_length: int) -> tuple[Path, Path]:
    """The ``generator=tiny`` model fine-tuned on a small synthetic world (cached under ``cache``), so that
    samples stop at EOS with realistic, varying lengths; and the world's corpus file."""
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf")):
        cfg = compose(
            config_name="train",
            overrides=[
                "task=generator",
                "generator=tiny",
                "trainer=cpu",
                "logger=none",
                f"paths.cache_dir={cache}",
                "data=synthetic",
                "data.world.n_entities=40",
                "data.world.langs_per_fact=7",
                f"generator.max_source_length={max_source_length}",
            ],
        )
    settings = to_settings(cfg)
    return Path(train_or_load(settings)), Path(settings.data.bundle(str(cache)).corpus_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=24)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-source-length", type=int, default=64)
    ap.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "work" / "generate_cache")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    path, corpus_path = trained_generator(args.cache, args.max_source_length)
    train_s = time.perf_counter() - t0
    gen = QueryGenerator(path, device="cpu")
    corpus = open_corpus(corpus_path, args.cache)
    passages = next(corpus.iter_batches(args.passages, start=len(corpus) // 2))
    prompts = gen.prompts(passages, XOR_LANGUAGES)
    decoding = DecodingConfig()  # the paper's: sampling, top_k 10, 32 new tokens
    batched(gen, prompts[:8], args.n, decoding, args.batch_size)  # warm-up
    base = [baseline(gen, prompts, args.n, decoding) for _ in range(args.repeats)]
    ours = [batched(gen, prompts, args.n, decoding, args.batch_size) for _ in range(args.repeats)]

    def rate(runs: list[tuple[int, float]]) -> tuple[int, float, float]:
        tokens, secs = min(runs, key=lambda r: r[1] / max(r[0], 1))
        return tokens, secs, tokens / secs

    bt, bs, br = rate(base)
    ot, os_, orate = rate(ours)
    print(f"# generation benchmark ({platform.machine()}, torch threads {args.threads})")
    print(
        f"prompts: {len(prompts)} ({args.passages} passages x {len(XOR_LANGUAGES)} languages), n={args.n}, "
        f"sampling top_k 10, max_new_tokens 32; tiny T5 fine-tuned on the synthetic world "
        f"(max_source_length {args.max_source_length}; training/loading took {train_s:.0f}s)"
    )
    print("| generator | generated tokens | seconds | tokens/s |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| one generate() per prompt, batch 1 (pipeline emulation) | {bt} | {bs:.2f} | {br:.0f} |")
    print(
        f"| xqg QueryGenerator, batch {args.batch_size} prompts, length-sorted | {ot} | {os_:.2f} | {orate:.0f} |"
    )
    print(f"speed-up: {orate / br:.1f}x (best of {args.repeats} runs each)")
    if orate / br < 5:
        print("below the 5x target", file=sys.stderr)


if __name__ == "__main__":
    main()
