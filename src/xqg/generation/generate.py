"""Cross-lingual query generation: for every passage and language, n generated questions, in a sharded store.

At the paper's scale (18M passages x 7 languages x 5) this writes 630M queries, so the stage batches prompts
across passages x languages (length-sorted so padding is small), runs under autocast on GPU, shards the corpus by
row ranges, writes each shard atomically and skips finished shards on restart. Sampling is seeded from
``(seed, shard, batch)``, so a resumed or re-split run reproduces the same text as an uninterrupted one (on the
same kind of device: CPU and GPU arithmetic differ). Batch size and shard size decide which prompts share a seeded
batch, so they are part of the fingerprint; the worker count is not.

Sampling (the paper's setting) runs our own incremental decoding loop over the model's KV cache: the encoder runs
once per prompt, the next token is drawn among the top-k candidates (same distribution as transformers' warpers),
and rows that reached EOS leave the batch; see ``benchmarks/results/generate.md``. Beam search uses
``model.generate``.

Store layout (``<out_root>/generated/<fingerprint>/``, an :class:`xqg.core.artifacts.ArtifactDir`)::

    spec.json                 what is being built (settings, generator and corpus fingerprints)
    shards/shard-00000.parquet   columns docid (str), lang (str), k (int32, 0-based), text (str);
                                  or shard-00000.jsonl.gz with one {"docid", "lang", "k", "text"} per line
    shards/shard-00000.json   the shard's done-marker, written after its data file: row range and counts
    manifest.json             written last: counts (passages, records, empty, duplicate, shards, ...),
                              extra (languages, n, decoding, generator, prompt template)

Shard ``s`` covers corpus rows ``[s * shard_size, (s + 1) * shard_size)``. A worker given
``shard_index/num_shards`` does the shards with ``s % num_shards == shard_index``; whichever worker finds every
shard done writes the manifest. Within a (docid, lang) the n samples are stored in order ``k = 0..n-1``; empty and
duplicate samples are kept (so every passage has exactly n per language) and counted in the manifest.

Reading (the contract the query encoder codes against)::

    store = GeneratedStore.open(path)       # raises unless complete (allow_incomplete=True to inspect)
    store.languages, store.n                # e.g. ("ar", ..., "te"), 5
    store.counts                            # manifest counts: records, passages, empty, duplicate, ...
    len(store)                              # number of (docid, lang, k) records
    for q in store: q.docid, q.lang, q.k, q.text      # GeneratedQuery, shard by shard, row order
    for docid, by_lang in store.iter_passages():     # {lang: [text_k for k in 0..n-1]}, corpus row order
    store.queries("doc12")                  # {lang: [texts]} for one docid (builds a docid index once)
    store.iter_tables()                     # one pyarrow.Table per shard (bulk encoding)

Writing: :func:`generate_queries` (from a generator checkpoint), :func:`import_released` (the released
``ielab/xor-tydi-xqg-augmented`` file), :func:`ensure_generated` (what ``evaluate.py`` calls).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from xqg.core.artifacts import ArtifactDir, atomic_path, atomic_write_json, file_fingerprint, fingerprint
from xqg.core.config import dataclass_from_mapping
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.languages import XOR_LANGUAGES, get_language, normalize_lang
from xqg.core.progress import progress_bar

log = logging.getLogger(__name__)

KIND = "generated"
#: Bump when what a given config produces changes (prompting, batching, seeding): old stores are not reused.
CODE_VERSION = "1"
FORMATS = ("parquet", "jsonl.gz")
SHARDS = "shards"


class GeneratedQuery(NamedTuple):
    docid: str
    lang: str
    k: int
    text: str


@dataclass(frozen=True)
class DecodingConfig:
    """Decoding settings (all part of the store fingerprint). The paper samples with top_k 10, 32 tokens."""

    do_sample: bool = True
    top_k: int | None = 10
    top_p: float | None = None
    temperature: float = 1.0
    num_beams: int = 1
    max_new_tokens: int = 32

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> DecodingConfig:
        return dataclass_from_mapping(cls, m, what="decoding", field="generator.decoding")

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


def _derive_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & ((1 << 63) - 1)


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


def missing_model_message(name: str, error: Exception) -> str:
    """What to do when a generator cannot be loaded (typically: a hub name on an offline machine)."""
    return (
        f"cannot load generator {name!r} ({str(error).splitlines()[0]}); on a machine with internet run "
        f"`huggingface-cli download {name}` (then set HF_HUB_OFFLINE=1) or point generator.model.name_or_path "
        "at a local folder"
    )


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def _autocast_dtype(device: str, precision: str) -> Any:
    """bf16 autocast on GPUs that have it; fp16 only when asked (mT5 is known to overflow in fp16)."""
    import torch

    if not device.startswith("cuda") or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return None


class _CandidateSampler:
    """Draws next tokens with transformers' sampling semantics (temperature, then top-k, then top-p keeping the
    smallest prefix with mass >= top_p, at least one token), but among the k candidates instead of over the
    whole vocabulary (a full-vocabulary multinomial took over half of the CPU time), from its own seeded
    ``torch.Generator`` (the global RNG is left alone)."""

    def __init__(self, top_k: int | None, top_p: float | None, temperature: float, generator: Any) -> None:
        self.top_k = top_k if top_k and top_k > 0 else None
        self.top_p = top_p
        self.temperature = temperature
        self.generator = generator

    def draw(self, scores: Any) -> Any:
        import torch

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


class QueryGenerator:
    """A loaded generator that turns (passage, language) prompts into n queries each, batched and sorted."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | None = "auto",
        precision: str = "auto",
        prompt_template: str | None = None,
        max_source_length: int | None = None,
    ) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from xqg.models.generator_module import GeneratorSpec

        self.path = str(path)
        self.spec = GeneratorSpec.load(path)
        self.prompt_template = prompt_template or self.spec.prompt_template
        self.max_source_length = int(max_source_length or self.spec.max_source_length)
        self.device = resolve_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForSeq2SeqLM.from_pretrained(self.path)
        except OSError as e:
            raise MissingResourceError(missing_model_message(self.path, e)) from None
        self.model = model.to(self.device).eval()
        self.autocast_dtype = _autocast_dtype(self.device, precision)
        self.generated_tokens = 0

    def prompts(self, passages: Sequence[Any], languages: Sequence[str]) -> list[str]:
        """Passage-major prompts: for each passage, one per language (the training prompt template)."""
        from xqg.data.datamodules import format_prompt

        return [
            format_prompt(self.prompt_template, lang, p.title, p.text) for p in passages for lang in languages
        ]

    def _sample(self, input_ids: Any, mask: Any, n: int, decoding: DecodingConfig, seed: int) -> Any:
        """Sampling, n per prompt, as ``(rows, max_new_tokens)`` token ids (pad after EOS).

        Our own incremental decoding loop rather than ``model.generate``: the encoder runs once per prompt
        (its output repeated n times), tokens are drawn by :class:`_CandidateSampler`, and rows that reached
        EOS are dropped from the batch (with their KV cache) once they are a quarter of it, so a few long
        samples do not keep a whole batch of finished ones computing to ``max_new_tokens``. Only the decoding
        settings of :class:`DecodingConfig` apply (not extra processors of the model's generation_config).
        """
        import torch
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import BaseModelOutput

        model = self.model
        device = input_ids.device
        hidden = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        hidden = hidden.repeat_interleave(n, dim=0)
        enc_mask = mask.repeat_interleave(n, dim=0)
        rows = hidden.shape[0]
        gcfg = model.generation_config
        start = gcfg.decoder_start_token_id
        if start is None:
            start = model.config.decoder_start_token_id
        eos = gcfg.eos_token_id if gcfg.eos_token_id is not None else self.tokenizer.eos_token_id
        eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos], device=device)
        pad = self.tokenizer.pad_token_id
        sampler = _CandidateSampler(
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
        for step in range(decoding.max_new_tokens):
            o = model(
                encoder_outputs=enc,
                attention_mask=enc_mask,
                decoder_input_ids=cur,
                past_key_values=cache,
                use_cache=True,
            )
            cache = o.past_key_values
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

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        decoding: DecodingConfig,
        *,
        batch_size: int,
        seed: Iterable[Any] = (),
        on_batch: Any = None,
    ) -> list[list[str]]:
        """``n`` texts per prompt. Prompts are length-sorted into batches of ``batch_size`` prompts; batch ``b``
        is seeded from ``(*seed, b)``, so the output depends only on the prompts, the settings and ``seed``."""
        import torch

        kwargs = decoding.generate_kwargs(n)
        enc = self.tokenizer(list(prompts), truncation=True, max_length=self.max_source_length)
        ids = enc["input_ids"]
        order = sorted(range(len(ids)), key=lambda j: (-len(ids[j]), j))
        out: list[list[str]] = [[] for _ in ids]
        pad = self.tokenizer.pad_token_id
        seed = tuple(seed)
        for b, start in enumerate(range(0, len(order), batch_size)):
            idx = order[start : start + batch_size]
            width = len(ids[idx[0]])
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, j in enumerate(idx):
                input_ids[r, : len(ids[j])] = torch.tensor(ids[j])
                mask[r, : len(ids[j])] = 1
            batch_seed = _derive_seed(*seed, b)
            ctx = (
                torch.autocast(device_type="cuda", dtype=self.autocast_dtype)
                if self.autocast_dtype is not None
                else contextlib.nullcontext()
            )
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            with torch.inference_mode(), ctx:
                if decoding.do_sample and decoding.num_beams == 1:
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


# --------------------------------------------------------------------------------------------------- shards


def _shard_stem(s: int) -> str:
    return f"shard-{s:05d}"


def _write_records(path: Path, records: Sequence[GeneratedQuery], fmt: str) -> None:
    """One shard's data, atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table(
                {
                    "docid": pa.array([r.docid for r in records], pa.string()),
                    "lang": pa.array([r.lang for r in records], pa.string()),
                    "k": pa.array([r.k for r in records], pa.int32()),
                    "text": pa.array([r.text for r in records], pa.string()),
                }
            )
            pq.write_table(table, tmp, compression="zstd")
        else:
            with gzip.open(tmp, "wb", compresslevel=6) as f:
                for r in records:
                    f.write(json.dumps(r._asdict(), ensure_ascii=False).encode("utf-8") + b"\n")


def _read_records(path: Path) -> Iterator[GeneratedQuery]:
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        cols = [t.column(c).to_pylist() for c in ("docid", "lang", "k", "text")]
        for d, lang, k, text in zip(*cols, strict=True):
            yield GeneratedQuery(d, lang, int(k), text)
    else:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                try:
                    o = json.loads(line)
                    yield GeneratedQuery(str(o["docid"]), str(o["lang"]), int(o["k"]), str(o["text"]))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise XqgInputError(f"bad generated-query record ({e})", path=path, line=i) from None


@dataclass
class _ShardStats:
    records: int = 0
    empty: int = 0
    duplicate: int = 0
    passages: int = 0
    by_lang: dict[str, int] = field(default_factory=dict)

    def add_group(self, lang: str, texts: Sequence[str]) -> None:
        seen: set[str] = set()
        for t in texts:
            self.records += 1
            if not t:
                self.empty += 1
            elif t in seen:
                self.duplicate += 1
            seen.add(t)
        self.by_lang[lang] = self.by_lang.get(lang, 0) + len(texts)


def _finish_shard(
    art: ArtifactDir,
    s: int,
    records: list[GeneratedQuery],
    stats: _ShardStats,
    fmt: str,
    extra: Mapping[str, Any],
) -> None:
    """Data file first, then the done-marker: a shard counts as done only when both are there."""
    folder = art.path / SHARDS
    data = folder / f"{_shard_stem(s)}.{fmt}"
    _write_records(data, records, fmt)
    atomic_write_json(
        folder / f"{_shard_stem(s)}.json", {"shard": s, "file": data.name, **asdict(stats), **extra}
    )


def _done_shards(art_path: Path) -> dict[int, dict[str, Any]]:
    folder = art_path / SHARDS
    done: dict[int, dict[str, Any]] = {}
    if not folder.exists():
        return done
    for marker in folder.glob("shard-*.json"):
        info = json.loads(marker.read_text())
        if (folder / info["file"]).exists():
            done[int(info["shard"])] = info
    return done


def _finalize(art: ArtifactDir, total_shards: int, extra: Mapping[str, Any]) -> bool:
    """Write the manifest if every shard is done (any worker may be the last one)."""
    done = _done_shards(art.path)
    if any(s not in done for s in range(total_shards)):
        return False
    infos = [done[s] for s in range(total_shards)]
    by_lang: dict[str, int] = {}
    for i in infos:
        for lang, c in i.get("by_lang", {}).items():
            by_lang[lang] = by_lang.get(lang, 0) + c
    counts = {key: sum(int(i[key]) for i in infos) for key in ("records", "empty", "duplicate", "passages")}
    counts["shards"] = total_shards
    if all("generated_tokens" in i for i in infos):
        counts["generated_tokens"] = sum(int(i["generated_tokens"]) for i in infos)
    counts.update({f"records_{lang}": c for lang, c in sorted(by_lang.items())})
    art.finalize(
        counts=counts, extra={**extra, "shard_files": [done[s]["file"] for s in range(total_shards)]}
    )
    return True


# ------------------------------------------------------------------------------------------------ the store


class GeneratedStore:
    """Read access to a generated-query store (see the module docstring for the layout and API)."""

    def __init__(self, path: str | Path, *, allow_incomplete: bool = False) -> None:
        self.path = Path(path)
        self.complete = (self.path / "manifest.json").exists()
        if not self.complete and not allow_incomplete:
            raise XqgInputError(
                "generated-query store is incomplete (no manifest.json): rerun to resume", path=self.path
            )
        if self.complete:
            self.manifest: dict[str, Any] = json.loads((self.path / "manifest.json").read_text())
        else:
            spec = (
                json.loads((self.path / "spec.json").read_text())
                if (self.path / "spec.json").exists()
                else {}
            )
            self.manifest = {
                "fingerprint": self.path.name,
                "config": spec.get("config", {}),
                "counts": {},
                "extra": {},
            }
        self._index: dict[str, int] | None = None
        self._cached: tuple[int, dict[str, dict[str, list[str]]]] | None = None

    @classmethod
    def open(cls, path: str | Path, *, allow_incomplete: bool = False) -> GeneratedStore:
        return cls(path, allow_incomplete=allow_incomplete)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"GeneratedStore({self.path}, {state}, languages={self.languages}, n={self.n})"

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def languages(self) -> tuple[str, ...]:
        langs = self.manifest.get("extra", {}).get("languages") or self.manifest.get("config", {}).get(
            "languages"
        )
        return tuple(langs or ())

    @property
    def n(self) -> int:
        n = self.manifest.get("extra", {}).get("n") or self.manifest.get("config", {}).get("n")
        return int(n or 0)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest.get("counts", {}))

    def __len__(self) -> int:
        if self.complete:
            return int(self.counts["records"])
        return sum(int(i["records"]) for i in _done_shards(self.path).values())

    def shard_files(self) -> list[Path]:
        """Data files of the finished shards, in shard order."""
        if self.complete:
            return [self.path / SHARDS / f for f in self.manifest["extra"]["shard_files"]]
        done = _done_shards(self.path)
        return [self.path / SHARDS / done[s]["file"] for s in sorted(done)]

    def __iter__(self) -> Iterator[GeneratedQuery]:
        return self.iter_records()

    def iter_records(self) -> Iterator[GeneratedQuery]:
        for f in self.shard_files():
            yield from _read_records(f)

    def iter_tables(self) -> Iterator[Any]:
        """One ``pyarrow.Table`` (docid, lang, k, text) per shard, for bulk processing."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        for f in self.shard_files():
            if f.name.endswith(".parquet"):
                yield pq.read_table(f)
            else:
                recs = list(_read_records(f))
                yield pa.table({c: [getattr(r, c) for r in recs] for c in GeneratedQuery._fields})

    @staticmethod
    def _group(records: Iterable[GeneratedQuery]) -> Iterator[tuple[str, dict[str, list[str]]]]:
        cur: str | None = None
        by_lang: dict[str, list[str]] = {}
        for r in records:
            if r.docid != cur:
                if cur is not None:
                    yield cur, by_lang
                cur, by_lang = r.docid, {}
            by_lang.setdefault(r.lang, []).append(r.text)
        if cur is not None:
            yield cur, by_lang

    def iter_passages(self) -> Iterator[tuple[str, dict[str, list[str]]]]:
        """``(docid, {lang: [text for k = 0..n-1]})`` per passage, in store (corpus row) order."""
        for f in self.shard_files():
            yield from self._group(_read_records(f))

    def queries(self, docid: str) -> dict[str, list[str]]:
        """All queries of one passage by language ({} when absent). The first call reads the docid column of
        every shard to build an index; one shard is kept decoded, so nearby look-ups are cheap."""
        if self._index is None:
            self._index = {}
            for s, f in enumerate(self.shard_files()):
                for r in _read_records(f):
                    self._index.setdefault(r.docid, s)
        s = self._index.get(str(docid))
        if s is None:
            return {}
        if self._cached is None or self._cached[0] != s:
            self._cached = (s, dict(self._group(_read_records(self.shard_files()[s]))))
        return {lang: list(t) for lang, t in self._cached[1].get(str(docid), {}).items()}


# --------------------------------------------------------------------------------------------- generation


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
    decoding: DecodingConfig | Mapping[str, Any] | None = None,
    batch_size: int = 64,
    shard_size: int = 10000,
    seed: int = 42,
    fmt: str = "parquet",
    precision: str = "auto",
    prompt_template: str | None = None,
    max_source_length: int | None = None,
) -> ArtifactDir:
    """Where the store for these settings lives (batch and shard size are in the fingerprint because they
    fix which prompts share a seeded batch, hence the sampled text)."""
    dec = decoding if isinstance(decoding, DecodingConfig) else DecodingConfig.from_mapping(decoding)
    if fmt not in FORMATS:
        raise XqgInputError(
            f"unknown store format {fmt!r}; use one of {FORMATS}", field="generator.store_format"
        )
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
    inputs = {"generator": generator_fingerprint(generator_path), "corpus": str(corpus.fingerprint)}
    return ArtifactDir.for_spec(out_root, KIND, config=config, inputs=inputs, code_version=CODE_VERSION)


def generate_queries(
    generator_path: str | Path,
    corpus: Any,
    languages: Sequence[str] = XOR_LANGUAGES,
    n: int = 5,
    out_root: str | Path = "cache",
    *,
    decoding: DecodingConfig | Mapping[str, Any] | None = None,
    batch_size: int = 64,
    shard_size: int = 10000,
    shard_index: int = 0,
    num_shards: int = 1,
    seed: int = 42,
    fmt: str = "parquet",
    device: str | None = "auto",
    precision: str = "auto",
    prompt_template: str | None = None,
    max_source_length: int | None = None,
) -> GeneratedStore:
    """Generate ``n`` queries per passage of ``corpus`` (a :class:`xqg.data.corpus.CorpusStore`) and language.

    ``batch_size`` counts prompts (each yields ``n`` sequences). ``shard_index/num_shards`` splits the shards
    between workers (GPUs, nodes) without changing any text. Finished shards are skipped, so rerunning after a
    kill resumes. Returns the store; it is incomplete (``store.complete`` false) only when other workers' shards
    are still missing.
    """
    dec = decoding if isinstance(decoding, DecodingConfig) else DecodingConfig.from_mapping(decoding)
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
    )
    langs = tuple(art.spec["config"]["languages"])
    total_shards = max(1, math.ceil(len(corpus) / shard_size))
    if art.complete:
        return GeneratedStore(art.path)
    art.begin()
    done = _done_shards(art.path)
    mine = [s for s in range(total_shards) if s % num_shards == shard_index and s not in done]
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
        )
        extra.update(prompt_template=gen.prompt_template, max_source_length=gen.max_source_length)
        todo_rows = sum(min(len(corpus), (s + 1) * shard_size) - s * shard_size for s in mine)
        t0 = time.perf_counter()
        with progress_bar(total=todo_rows * len(langs) * n, unit="q", desc="generating queries") as bar:
            for s in mine:
                shard_t0, tokens0 = time.perf_counter(), gen.generated_tokens
                start, stop = s * shard_size, min(len(corpus), (s + 1) * shard_size)
                passages = [p for batch in corpus.iter_batches(stop - start, start, stop) for p in batch]
                texts = gen.generate(
                    gen.prompts(passages, langs),
                    n,
                    dec,
                    batch_size=batch_size,
                    seed=(seed, s),
                    on_batch=bar.update,
                )
                records: list[GeneratedQuery] = []
                stats = _ShardStats(passages=len(passages))
                it = iter(texts)
                for p in passages:
                    for lang in langs:
                        group = next(it)
                        stats.add_group(lang, group)
                        records.extend(GeneratedQuery(p.docid, lang, k, t) for k, t in enumerate(group))
                timing = {
                    "seconds": round(time.perf_counter() - shard_t0, 3),
                    "generated_tokens": gen.generated_tokens - tokens0,
                }
                _finish_shard(art, s, records, stats, fmt, {"rows": [start, stop], **timing})
        seconds = time.perf_counter() - t0
        log.info("generated %d shards in %.1fs (%d tokens)", len(mine), seconds, gen.generated_tokens)
    if _finalize(art, total_shards, extra):
        return GeneratedStore(art.path)
    return GeneratedStore(art.path, allow_incomplete=True)


# ------------------------------------------------------------------------------------------------ released


def import_released(
    path: str | Path, out_root: str | Path, *, shard_size: int = 10000, fmt: str = "parquet"
) -> GeneratedStore:
    """Import released generated queries (``ielab/xor-tydi-xqg-augmented``: docid, title, text,
    generated_queries {lang: [5 strings]}) into a store, so users can skip generation. Resumable like
    generation; shards hold ``shard_size`` passages in file order."""
    from xqg.data.formats.released import iter_released_generated

    if fmt not in FORMATS:
        raise XqgInputError(
            f"unknown store format {fmt!r}; use one of {FORMATS}", field="generator.store_format"
        )
    p = Path(path)
    art = ArtifactDir.for_spec(
        out_root,
        KIND,
        config={"source": "released", "shard_size": shard_size, "format": fmt},
        inputs={"released": file_fingerprint(p)},
        code_version=CODE_VERSION,
    )
    if art.complete:
        return GeneratedStore(art.path)
    art.begin()
    done = _done_shards(art.path)
    languages: list[str] = []
    n = 0
    s = 0
    records: list[GeneratedQuery] = []
    stats = _ShardStats()
    docs_in_shard: set[str] = set()
    last_doc: str | None = None

    def flush() -> None:
        nonlocal records, stats, docs_in_shard, s
        if s not in done:
            _finish_shard(art, s, records, stats, fmt, {})
        s += 1
        records, stats, docs_in_shard = [], _ShardStats(), set()

    with progress_bar(unit="q", desc=f"importing {p.name}") as bar:
        for docid, lang, texts in iter_released_generated(p):
            lang = get_language(lang).code
            if docid != last_doc:
                if len(docs_in_shard) == shard_size:
                    flush()
                if docid in docs_in_shard:
                    raise XqgInputError(
                        f"docid {docid!r} appears in two separate places", path=p, field="docid"
                    )
                docs_in_shard.add(docid)
                stats.passages += 1
                last_doc = docid
            if lang not in languages:
                languages.append(lang)
            n = max(n, len(texts))
            texts = [t.strip() for t in texts]
            stats.add_group(lang, texts)
            if s not in done:
                records.extend(GeneratedQuery(docid, lang, k, t) for k, t in enumerate(texts))
            bar.update(len(texts))
    if stats.passages or s == 0:
        flush()
    order = [c for c in XOR_LANGUAGES if c in languages] + [c for c in languages if c not in XOR_LANGUAGES]
    if not _finalize(art, s, {"languages": order, "n": n, "source": str(p)}):  # pragma: no cover
        raise RuntimeError(f"import of {p} did not complete")
    return GeneratedStore(art.path)


# ------------------------------------------------------------------------------------------------- config


def generation_settings(gcfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :func:`generate_queries` from a ``generator`` config group."""
    g = dict(gcfg)
    shard = dict(g.get("shard") or {})
    return {
        "languages": list(g.get("languages") or XOR_LANGUAGES),
        "n": int(g.get("num_queries", 5)),
        "decoding": DecodingConfig.from_mapping(g.get("decoding")),
        "batch_size": int(g.get("generate_batch_size", 64)),
        "shard_size": int(shard.get("size", 10000)),
        "shard_index": int(shard.get("index", 0)),
        "num_shards": int(shard.get("count", 1)),
        "seed": int(g.get("seed", 42)),
        "fmt": str(g.get("store_format", "parquet")),
        "device": g.get("device", "auto"),
        "precision": str(g.get("precision", "auto")),
    }


def ensure_generated(cfg: Any, corpus: Any) -> GeneratedStore:
    """The store for the current ``cfg.generator`` settings and corpus, made if missing: imports the released
    queries when ``generator.queries_source`` is set, else trains/loads the generator and generates."""
    from omegaconf import OmegaConf

    gcfg = (
        OmegaConf.to_container(cfg.generator, resolve=True)
        if not isinstance(cfg.generator, dict)
        else cfg.generator
    )
    assert isinstance(gcfg, dict)
    cache = Path(cfg.paths.cache_dir)
    source = gcfg.get("queries_source")
    if source:
        from xqg.data.sources import resolve_source

        store = import_released(
            resolve_source(source, cache), cache, fmt=str(gcfg.get("store_format", "parquet"))
        )
        wanted = set(gcfg.get("languages") or XOR_LANGUAGES)
        if not wanted <= set(store.languages):
            raise XqgInputError(
                f"released queries cover {store.languages}, not all of {sorted(wanted)}",
                path=str(source),
                field="generator.languages",
            )
        return store
    from xqg.tasks.train_generator import train_or_load

    path = train_or_load(cfg)
    return generate_queries(path, corpus, out_root=cache, **generation_settings(gcfg))
