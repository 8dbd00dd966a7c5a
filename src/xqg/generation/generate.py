"""Cross-lingual query generation: for every passage and language, n generated questions, in a sharded store.

At the paper's scale (18M passages x 7 languages x 5) this writes 630M queries, so the stage batches prompts
across passages x languages (:class:`xqg.generation.sampling.QueryGenerator`), shards the corpus by row ranges,
writes each shard atomically and skips finished shards on restart (:mod:`xqg.generation.store`). Sampling is
seeded from ``(seed, shard, batch)``, so a resumed or re-split run reproduces the same text as an uninterrupted one
(on the same kind of device). Batch size and shard size decide which prompts share a seeded batch, so they are
part of the fingerprint; the worker count is not.

Shard ``s`` covers corpus rows ``[s * shard_size, (s + 1) * shard_size)``. A worker given
``shard_index/num_shards`` does the shards with ``s % num_shards == shard_index``; whichever worker finds every
shard done writes the manifest.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from xqg.core.artifacts import ArtifactDir, file_fingerprint, fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES, normalize_lang
from xqg.core.locking import complete_or_claim
from xqg.core.sharded import ShardPlan
from xqg.data.delex import delexicalise_passage, relexicalise
from xqg.generation.sampling import DecodingConfig, QueryGenerator, resolve_batch_size, sampler_fingerprint
from xqg.generation.store import (
    CODE_VERSION,
    KIND,
    GeneratedQuery,
    GeneratedStore,
    ShardStats,
    check_format,
    finalize_store,
    finish_shard,
    shard_files,
)

log = logging.getLogger(__name__)


def generator_fingerprint(path: str | Path) -> str:
    """Identity of a generator checkpoint: its artifact fingerprint when it is one, else a hash of its files;
    a hub name (not a local folder) is identified by name."""
    p = Path(path)
    if p.is_dir():
        manifest = p / "manifest.json"
        if manifest.exists():
            return str(json.loads(manifest.read_text())["fingerprint"])
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        return fingerprint({str(f.relative_to(p)): file_fingerprint(f) for f in files})
    return fingerprint({"hub": str(path)})


def _check_languages(languages: Iterable[str]) -> tuple[str, ...]:
    out = []
    for code in languages:
        try:
            out.append(normalize_lang(code))
        except KeyError as e:
            raise XqgInputError(str(e).strip("\"'"), field="generator.languages") from None
    if not out:
        raise XqgInputError("no languages to generate for", field="generator.languages")
    if len(set(out)) != len(out):
        raise XqgInputError(f"duplicate languages in {out}", field="generator.languages")
    return tuple(out)


def generation_artifact(
    generator_path: str | Path,
    corpus: Any,
    languages: Sequence[str],
    n: int,
    out_root: str | Path,
    *,
    decoding: DecodingConfig | None = None,
    batch_size: int = 64,
    shard_size: int = 10000,
    seed: int = 42,
    fmt: str = "parquet",
    precision: str = "auto",
    prompt_template: str | None = None,
    max_source_length: int | None = None,
    delexicalise: bool = False,
    sampler: str | None = None,
) -> ArtifactDir:
    """Where the store for these settings lives (batch and shard size are in the fingerprint because they
    fix which prompts share a seeded batch, hence the sampled text)."""
    dec = decoding or DecodingConfig()
    check_format(fmt)
    if n < 1 or batch_size < 1 or shard_size < 1:
        raise XqgInputError("n, batch_size and shard_size must be positive", field="generator")
    dec.generate_kwargs(n)  # validate early
    config = {
        "languages": list(_check_languages(languages)),
        "n": int(n),
        "decoding": asdict(dec),
        "batch_size": int(batch_size),
        "shard_size": int(shard_size),
        "seed": int(seed),
        "format": fmt,
        "precision": precision,
        "prompt_template": prompt_template,
        "max_source_length": max_source_length,
    }
    if delexicalise:  # absent when off, so stores from before the option stay valid
        config["delexicalise"] = True
    if sampler is not None:  # the static GPU decoder's version (other text); absent for the loop's stores
        config["sampler"] = sampler
    inputs = {"generator": generator_fingerprint(generator_path), "corpus": str(corpus.fingerprint)}
    return ArtifactDir.for_spec(out_root, KIND, config=config, inputs=inputs, code_version=CODE_VERSION)


def generate_queries(
    generator_path: str | Path,
    corpus: Any,
    languages: Sequence[str] = XOR_LANGUAGES,
    n: int = 5,
    out_root: str | Path = "cache",
    *,
    decoding: DecodingConfig | None = None,
    batch_size: int | None = 64,
    shard_size: int = 10000,
    shard_index: int = 0,
    num_shards: int = 1,
    seed: int = 42,
    fmt: str = "parquet",
    device: str | None = "auto",
    precision: str = "auto",
    prompt_template: str | None = None,
    max_source_length: int | None = None,
    delexicalise: bool = False,
    sampler: str = "auto",
) -> GeneratedStore:
    """Generate ``n`` queries per passage of ``corpus`` (a :class:`xqg.data.corpus.CorpusStore`) and language.

    ``batch_size`` counts prompts (each yields ``n`` sequences); None: from the GPU's total memory
    (:func:`~xqg.generation.sampling.resolve_batch_size`; 64 on the CPU), the resolved number going into the
    fingerprint as a set one would. ``shard_index/num_shards`` splits the shards
    between workers (GPUs, nodes) without changing any text. Finished shards are skipped, so rerunning after a
    kill resumes. ``delexicalise``: prompts carry a placeholder for the passage's title, put back into the
    generated text (:mod:`xqg.data.delex`; for a generator trained that way). ``sampler``: ``auto`` (the static
    CUDA-graph decoder on a GPU, the loop on the CPU), ``loop`` or ``static``
    (:func:`~xqg.generation.sampling.resolve_sampler`). Returns the store; it is
    incomplete (``store.complete`` false) only when other workers' shards are still missing.
    """
    dec = decoding or DecodingConfig()
    batch_size = resolve_batch_size(
        batch_size,
        generator_path,
        device,
        n,
        max_source_length,
        dec.max_new_tokens,
        sampler=sampler,
        precision=precision,
    )
    if not 0 <= shard_index < num_shards:
        raise XqgInputError(
            f"shard_index {shard_index} not in [0, {num_shards})", field="generator.shard_index"
        )
    art = generation_artifact(
        generator_path,
        corpus,
        languages,
        n,
        out_root,
        decoding=dec,
        batch_size=batch_size,
        shard_size=shard_size,
        seed=seed,
        fmt=fmt,
        precision=precision,
        prompt_template=prompt_template,
        max_source_length=max_source_length,
        delexicalise=delexicalise,
        sampler=sampler_fingerprint(sampler, device, precision),
    )
    langs = tuple(art.spec["config"]["languages"])
    plan = ShardPlan.make(len(corpus), shard_size)
    if complete_or_claim(art, share=f"{shard_index}-of-{num_shards}" if num_shards > 1 else ""):
        return GeneratedStore(art.path)
    art.begin()
    mine = shard_files(art.path, fmt).pending(plan, only=range(shard_index, plan.num_shards, num_shards))
    extra: dict[str, Any] = {
        "languages": list(langs),
        "n": n,
        "decoding": asdict(dec),
        "generator": str(generator_path),
        "passages": len(corpus),
    }
    if mine:
        gen = QueryGenerator(
            generator_path,
            device=device,
            precision=precision,
            prompt_template=prompt_template,
            max_source_length=max_source_length,
            sampler=sampler,
        )
        extra.update(prompt_template=gen.prompt_template, max_source_length=gen.max_source_length)
        todo_rows = sum(stop - start for start, stop in map(plan.bounds, mine))
        t0 = time.perf_counter()
        with tqdm(disable=None, total=todo_rows * len(langs) * n, unit="q", desc="generating queries") as bar:
            for s in mine:
                shard_t0, tokens0 = time.perf_counter(), gen.generated_tokens
                start, stop = plan.bounds(s)
                passages = [p for batch in corpus.iter_batches(stop - start, start, stop) for p in batch]
                seen = [delexicalise_passage(p) for p in passages] if delexicalise else passages
                texts = gen.generate(
                    gen.prompts(seen, langs),
                    n,
                    dec,
                    batch_size=batch_size,
                    seed=(seed, s),
                    on_batch=bar.update,
                )
                records: list[GeneratedQuery] = []
                stats = ShardStats(passages=len(passages))
                it = iter(texts)
                for p in passages:
                    for lang in langs:
                        group = next(it)
                        if delexicalise:
                            group = [relexicalise(t, p.title) for t in group]
                        stats.add_group(lang, group)
                        records.extend(GeneratedQuery(p.docid, lang, k, t) for k, t in enumerate(group))
                timing = {
                    "seconds": round(time.perf_counter() - shard_t0, 3),
                    "generated_tokens": gen.generated_tokens - tokens0,
                }
                finish_shard(art, s, records, stats, fmt, {"rows": [start, stop], **timing})
        seconds = time.perf_counter() - t0
        log.info("generated %d shards in %.1fs (%d tokens)", len(mine), seconds, gen.generated_tokens)
    if finalize_store(art, plan.num_shards, extra):
        return GeneratedStore(art.path)
    return GeneratedStore(art.path, allow_incomplete=True)
