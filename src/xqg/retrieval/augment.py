"""xQG augmentation: per-passage prefix sums of generated-query embeddings, and fusion into passage embeddings.

The reference (``fuse_embeds.py``) keeps all 35 generated-query embeddings per passage (7 languages x 5) as full
fp32 matrices and fuses ``(1 - alpha) * p + alpha * SUM`` over them. A sweep over ``alpha``, ``n`` (queries per
language) and a language subset needs far less: for every passage and k = 1..n_max the sum of the embeddings of
the first k queries, i.e. prefix sums over k. They are kept per *group* of languages:

* ``per_language: false`` (default): one group holding all stored languages, ``n_max`` matrices in total
  (5 at the paper's settings, instead of 35); any ``n <= n_max`` is one slice.
* ``per_language: true``: one group per language (``n_max`` matrices each), so any language subset and any
  ``n`` is a sum of slices. Use it when language subsets are swept.

Prefix sums are accumulated in fp32 and stored in ``dtype`` (fp16 by default) as npy memory maps, aligned to the
passage embedding store's row order, in shards of consecutive rows.

Artifact layout (``<cache>/query_sums/<fingerprint>/``, an :class:`xqg.core.artifacts.ArtifactDir`)::

    spec.json                          what is being built (settings, input fingerprints)
    shards/00000.<group>.npy           prefix sums, shape (n_max, shard rows, dim), dtype fp16/fp32
    shards/00000.counts.npy            uint8 (groups, n_max, shard rows): queries summed at each n
    shards/00000.ids.npy               the shard's docids (UTF-8 bytes), to check alignment at fusion time
    shards/00000.json                  done-marker, written after the data files: row range and counts
    manifest.json                      written last: counts (rows, queries, missing, ...), extra (groups, dim)

The fingerprint covers the retriever, the generated-query store, the passage row order (docids), the stored
languages, n_max, dtype, grouping and shard size. A killed build resumes at the first unfinished shard (finished
shards are skipped without re-encoding).

Fusion is applied chunk by chunk while searching (:class:`FusionTransform`, the ``transform(row_offset, ids,
chunk) -> chunk`` hook), so no augmented copy of the passage embeddings is ever written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xqg.core.artifacts import ArtifactDir, Manifest, atomic_path, atomic_write_json
from xqg.core.config import dataclass_from_mapping
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.languages import XOR_LANGUAGES, normalize_lang
from xqg.core.progress import progress_bar

log = logging.getLogger(__name__)

KIND = "query_sums"
#: Bump when what a given config produces changes: older artifacts are then rebuilt, never reused.
CODE_VERSION = "1"
DTYPES: dict[str, type[np.floating]] = {"fp16": np.float16, "fp32": np.float32}
MODES = ("sum", "mean")
ALL_GROUP = "all"
SHARDS = "shards"

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class QuerySumsConfig:
    """What the prefix-sum artifact holds (everything here is part of its fingerprint)."""

    languages: tuple[str, ...] = XOR_LANGUAGES
    n_max: int = 5
    dtype: str = "fp16"
    per_language: bool = False
    shard_rows: int = 8192

    def __post_init__(self) -> None:
        langs = tuple(normalize_lang(x) for x in self.languages)
        object.__setattr__(self, "languages", langs)
        if not langs or len(set(langs)) != len(langs):
            raise XqgInputError(
                f"need distinct languages, got {list(self.languages)}", field="augmentation.sums.languages"
            )
        if not 1 <= int(self.n_max) <= 255:
            raise XqgInputError(f"must be in 1..255, got {self.n_max}", field="augmentation.sums.n_max")
        if self.dtype not in DTYPES:
            raise XqgInputError(
                f"must be one of {sorted(DTYPES)}, got {self.dtype!r}", field="augmentation.sums.dtype"
            )
        if int(self.shard_rows) <= 0:
            raise XqgInputError(
                f"must be positive, got {self.shard_rows}", field="augmentation.sums.shard_rows"
            )

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> QuerySumsConfig:
        return dataclass_from_mapping(
            cls, m, what="query-sum", field="augmentation.sums", tuples=("languages",)
        )

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """Group name -> languages summed in it, in storage order."""
        if self.per_language:
            return {lang: (lang,) for lang in self.languages}
        return {ALL_GROUP: self.languages}


def docids_fingerprint(docids: Sequence[str]) -> str:
    """Hash of the passage row order, so sums built for one embedding store are never used with another."""
    h = hashlib.sha256()
    step = 100_000
    for a in range(0, len(docids), step):
        h.update(("\n".join(str(d) for d in docids[a : a + step]) + "\n").encode("utf-8"))
    return h.hexdigest()[:16]


def query_sums_artifact(
    cache_dir: str | Path, cfg: QuerySumsConfig, *, docids: Sequence[str], inputs: Mapping[str, str]
) -> ArtifactDir:
    """Where the sums for these settings live. ``inputs`` must name the retriever and the generated store
    (e.g. ``{"retriever": ret.fingerprint, "generated": store.fingerprint}``); the docid order is added."""
    missing = {"retriever", "generated"} - set(inputs)
    if missing:
        raise ValueError(f"query sums need input fingerprints for {sorted(missing)}")
    config = asdict(cfg)
    config["languages"] = list(cfg.languages)
    return ArtifactDir.for_spec(
        cache_dir,
        KIND,
        config=config,
        inputs={**{k: str(v) for k, v in inputs.items()}, "docids": docids_fingerprint(docids)},
        code_version=CODE_VERSION,
    )


def _save_npy(dest: Path, arr: np.ndarray) -> None:
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _shard_file(root: Path, shard: int, part: str) -> Path:
    return root / SHARDS / f"{shard:05d}.{part}"


@dataclass
class _ShardAccumulator:
    """fp32 sums per (group, k, row) for one shard, plus which (row, language, k) were seen."""

    index: int
    start: int
    stop: int
    n_groups: int
    n_langs: int
    n_max: int
    dim: int | None = None
    acc: np.ndarray | None = None
    seen: np.ndarray = field(init=False)
    pending_text: list[str] = field(default_factory=list)
    pending_pos: list[tuple[int, int, int, int]] = field(default_factory=list)  # (group, k, row, lang)

    def __post_init__(self) -> None:
        self.seen = np.zeros((self.stop - self.start, self.n_langs, self.n_max), dtype=bool)

    def ensure(self, dim: int) -> None:
        if self.acc is None:
            self.dim = dim
            self.acc = np.zeros((self.n_groups, self.n_max, self.stop - self.start, dim), dtype=np.float32)


class _RowLocator:
    """docid -> row: walks the docid order (generated stores iterate in corpus order), builds a dict only when
    the input jumps around."""

    def __init__(self, docids: Sequence[str]) -> None:
        self.docids = docids
        self.pos = 0
        self.index: dict[str, int] | None = None

    def __call__(self, docid: str) -> int | None:
        n = len(self.docids)
        for cand in (self.pos, self.pos + 1):
            if cand < n and self.docids[cand] == docid:
                self.pos = cand
                return cand
        if self.index is None:
            self.index = {str(d): i for i, d in enumerate(self.docids)}
        row = self.index.get(docid)
        if row is not None:
            self.pos = row
        return row


def build_query_sums(
    generated: Iterable[Any],
    embed: Embed,
    docids: Sequence[str],
    cache_dir: str | Path,
    cfg: QuerySumsConfig | None = None,
    *,
    inputs: Mapping[str, str],
    embed_batch: int = 4096,
    dim: int | None = None,
    strict_docids: bool = True,
    source: str = "generated queries",
) -> QuerySums:
    """Encode generated queries and store per-passage prefix sums (see the module docstring); returns the
    complete artifact, reusing it when it already exists.

    ``generated`` yields ``(docid, lang, k, text)`` records (``xqg.generation.generate.GeneratedQuery``; ``k`` is 0-based,
    so the prefix sum at n covers ``k < n``), grouped by passage in the passage store's row order (as
    ``GeneratedStore`` iterates). ``embed(texts)`` returns float ``(len(texts), dim)`` query embeddings.
    ``docids`` is the passage embedding store's row order. Records with ``k >= n_max`` or a language that is
    not stored are skipped and counted; passages with fewer than ``n`` queries sum what they have (counted as
    missing). A docid absent from ``docids`` is an error unless ``strict_docids=False`` (then skipped, counted).
    """
    cfg = cfg or QuerySumsConfig()
    art = query_sums_artifact(cache_dir, cfg, docids=docids, inputs=inputs)
    if art.complete:
        return QuerySums.open(art.path)
    rows = len(docids)
    if rows == 0:
        raise XqgInputError("no passages to build query sums for", field="docids")
    if embed_batch <= 0:
        raise ValueError("embed_batch must be positive")
    art.begin()
    (art.path / SHARDS).mkdir(parents=True, exist_ok=True)
    groups = cfg.groups
    lang_index = {lang: i for i, lang in enumerate(cfg.languages)}
    group_of_lang = {lang: gi for gi, langs in enumerate(groups.values()) for lang in langs}
    shard_rows = int(cfg.shard_rows)
    n_shards = -(-rows // shard_rows)
    done = {s for s in range(n_shards) if _shard_file(art.path, s, "json").exists()}
    written: set[int] = set()
    locate = _RowLocator(docids)
    skipped = {"beyond_n_max": 0, "other_language": 0, "unknown_docid": 0}
    cur: _ShardAccumulator | None = None
    dims: dict[str, int | None] = {"dim": dim}

    def embed_pending(sh: _ShardAccumulator) -> None:
        if not sh.pending_text:
            return
        emb = np.asarray(embed(sh.pending_text), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(sh.pending_text):
            raise ValueError(f"embed returned shape {emb.shape} for {len(sh.pending_text)} texts")
        if dims["dim"] is None:
            dims["dim"] = int(emb.shape[1])
        if emb.shape[1] != dims["dim"]:
            raise ValueError(f"embed returned dim {emb.shape[1]}, expected {dims['dim']}")
        sh.ensure(int(emb.shape[1]))
        assert sh.acc is not None
        pos = np.asarray(sh.pending_pos, dtype=np.int64)
        # (group, k, row) is unique within one language (duplicates are rejected), so a buffered fancy-index add
        # per language is exact, and ~10x faster than np.add.at over the whole batch
        for li in np.unique(pos[:, 3]):
            m = pos[:, 3] == li
            sh.acc[pos[m, 0], pos[m, 1], pos[m, 2]] += emb[m]
        sh.pending_text.clear()
        sh.pending_pos.clear()

    def flush(sh: _ShardAccumulator) -> None:
        embed_pending(sh)
        d = dims["dim"]
        if d is None:
            raise XqgInputError(
                f"{source}: no generated query for the first shard's passages and no dim given; "
                "cannot size the query sums",
                field="dim",
            )
        sh.ensure(d)
        _write_shard(art.path, sh, cfg, docids)
        written.add(sh.index)

    total = len(generated) if hasattr(generated, "__len__") else None  # type: ignore[arg-type]
    bar = progress_bar(total=total, unit="query", unit_scale=True, desc="encode generated queries")
    try:
        for rec in generated:
            docid, lang, k, text = rec[0], rec[1], int(rec[2]), rec[3]
            row = locate(str(docid))
            if row is None:
                if strict_docids:
                    raise XqgInputError(
                        f"docid {docid!r} is not in the passage embedding store", path=source, field="docid"
                    )
                skipped["unknown_docid"] += 1
                continue
            s = row // shard_rows
            if s in done:
                continue  # finished in an earlier run: nothing to encode
            if k < 0:
                raise XqgInputError(
                    f"k must be >= 0 (0-based), got {k} for docid {docid!r}", path=source, field="k"
                )
            if k >= cfg.n_max:
                skipped["beyond_n_max"] += 1
                continue
            code = str(lang).strip().lower()
            if code not in lang_index:
                skipped["other_language"] += 1
                continue
            if cur is None or s != cur.index:
                if s in written or (cur is not None and s < cur.index):
                    raise XqgInputError(
                        f"generated queries are not in passage row order (docid {docid!r} belongs to shard {s}, "
                        "which is already written); iterate the generated store in corpus order",
                        path=source,
                        field="docid",
                    )
                if cur is not None:
                    flush(cur)
                a = s * shard_rows
                cur = _ShardAccumulator(
                    s, a, min(a + shard_rows, rows), len(groups), len(cfg.languages), cfg.n_max
                )
            local = row - cur.start
            li = lang_index[code]
            if cur.seen[local, li, k]:
                raise XqgInputError(
                    f"duplicate generated query (docid {docid!r}, lang {code}, k {k})", path=source, field="k"
                )
            cur.seen[local, li, k] = True
            cur.pending_text.append(str(text))
            cur.pending_pos.append((group_of_lang[code], k, local, li))
            bar.update(1)
            if len(cur.pending_text) >= embed_batch:
                embed_pending(cur)
        if cur is not None:
            flush(cur)
        # shards whose passages got no generated query at all: all-zero sums, everything counted missing
        for s in range(n_shards):
            if s not in done and s not in written:
                a = s * shard_rows
                flush(
                    _ShardAccumulator(
                        s, a, min(a + shard_rows, rows), len(groups), len(cfg.languages), cfg.n_max
                    )
                )
    finally:
        bar.close()
    return _finalize(art, cfg, rows, n_shards, skipped)


def _write_shard(root: Path, sh: _ShardAccumulator, cfg: QuerySumsConfig, docids: Sequence[str]) -> None:
    """Prefix sums over k (fp32), cast to the stored dtype, each file atomic; the json marker goes last."""
    assert sh.acc is not None
    np.cumsum(sh.acc, axis=1, out=sh.acc)
    out_dtype = DTYPES[cfg.dtype]
    for gi, name in enumerate(cfg.groups):
        arr = sh.acc[gi].astype(out_dtype)
        if not np.isfinite(arr).all():
            raise XqgInputError(
                f"query sums overflow {cfg.dtype} in shard {sh.index}; use dtype fp32",
                field="augmentation.sums.dtype",
            )
        _save_npy(_shard_file(root, sh.index, f"{name}.npy"), arr)
    # counts[g, n-1, row]: queries with k < n in the group's languages
    lang_group = np.zeros((len(cfg.groups), len(cfg.languages)), dtype=np.int64)
    for gi, langs in enumerate(cfg.groups.values()):
        for lang in langs:
            lang_group[gi, cfg.languages.index(lang)] = 1
    per_k = np.einsum("rlk,gl->gkr", sh.seen.astype(np.int64), lang_group)
    counts = np.cumsum(per_k, axis=1).astype(np.uint8 if len(cfg.languages) * cfg.n_max <= 255 else np.uint16)
    _save_npy(_shard_file(root, sh.index, "counts.npy"), counts)
    ids = [str(d) for d in docids[sh.start : sh.stop]]
    raw = [d.encode("utf-8") for d in ids]
    width = max((len(r) for r in raw), default=1) or 1
    _save_npy(_shard_file(root, sh.index, "ids.npy"), np.array(raw, dtype=f"S{width}"))
    n_rows = sh.stop - sh.start
    per_passage = sh.seen.sum(axis=(1, 2))
    full = len(cfg.languages) * cfg.n_max
    atomic_write_json(
        _shard_file(root, sh.index, "json"),
        {
            "start": sh.start,
            "stop": sh.stop,
            "dim": int(sh.dim or 0),
            "counts": {
                "rows": n_rows,
                "queries": int(per_passage.sum()),
                "missing_queries": int(n_rows * full - per_passage.sum()),
                "passages_missing_queries": int((per_passage < full).sum()),
                "passages_without_queries": int((per_passage == 0).sum()),
            },
        },
    )


def _finalize(
    art: ArtifactDir, cfg: QuerySumsConfig, rows: int, n_shards: int, skipped: Mapping[str, int]
) -> QuerySums:
    totals: dict[str, int] = {}
    dim = 0
    bounds = []
    for s in range(n_shards):
        meta = json.loads(_shard_file(art.path, s, "json").read_text())
        bounds.append([int(meta["start"]), int(meta["stop"])])
        dim = dim or int(meta["dim"])
        if int(meta["dim"]) != dim:
            raise MissingResourceError(f"{art.path}: shards disagree on dim; delete the folder and rebuild")
        for k, v in meta["counts"].items():
            totals[k] = totals.get(k, 0) + int(v)
    if totals.get("rows") != rows:
        raise MissingResourceError(f"{art.path}: shards cover {totals.get('rows')} rows, expected {rows}")
    totals.update({f"skipped_{k}": int(v) for k, v in skipped.items()})
    totals["shards"] = n_shards
    if totals.get("passages_missing_queries"):
        log.warning(
            "query sums: %d of %d passages have fewer than %d generated queries in some language "
            "(%d passages have none); their sums cover what exists",
            totals["passages_missing_queries"],
            rows,
            cfg.n_max,
            totals["passages_without_queries"],
        )
    art.finalize(
        counts=totals,
        extra={"dim": dim, "groups": {k: list(v) for k, v in cfg.groups.items()}, "shards": bounds},
    )
    return QuerySums.open(art.path)


_torch: Any = None


def _add_f32(out: np.ndarray, src: np.ndarray, *, first: bool) -> None:
    """``out = src`` (first) or ``out += src`` in float32. fp16 sources are converted through torch, whose
    vectorised fp16 -> fp32 copy is ~10x faster than numpy's (it dominates a trial's fusion cost otherwise)."""
    global _torch
    if src.dtype == np.float16:
        if _torch is None:
            import torch

            _torch = torch
        t_out = _torch.from_numpy(out)
        t_src = _torch.from_numpy(np.ascontiguousarray(src))
        if first:
            t_out.copy_(t_src)
        else:
            t_out.add_(t_src)
    elif first:
        np.copyto(out, src)
    else:
        np.add(out, src, out=out)


class QuerySums:
    """A complete query-sum artifact: ``sum_rows``/``count_rows`` for any row range, language subset and n."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not mpath.exists():
            raise MissingResourceError(
                f"{self.path}: incomplete query sums (no manifest.json); build again to resume"
            )
        self.manifest = Manifest.from_dict(json.loads(mpath.read_text()))
        self.fingerprint = self.manifest.fingerprint
        self.config = QuerySumsConfig.from_mapping(self.manifest.config)
        extra = self.manifest.extra
        self.dim = int(extra["dim"])
        self.shards: list[tuple[int, int]] = [(int(a), int(b)) for a, b in extra["shards"]]
        self.groups: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in extra["groups"].items()}
        self.counts: dict[str, int] = dict(self.manifest.counts)
        self.rows = int(self.counts["rows"])
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    @classmethod
    def open(cls, path: str | Path) -> QuerySums:
        return cls(path)

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        return (
            f"QuerySums({str(self.path)!r}, rows={self.rows}, dim={self.dim}, groups={list(self.groups)}, "
            f"n_max={self.n_max}, dtype={self.config.dtype})"
        )

    @property
    def n_max(self) -> int:
        return self.config.n_max

    @property
    def languages(self) -> tuple[str, ...]:
        return self.config.languages

    @property
    def nbytes(self) -> int:
        """Bytes of the stored prefix sums (the matrices; counts and ids excluded)."""
        item = np.dtype(DTYPES[self.config.dtype]).itemsize
        return len(self.groups) * self.n_max * self.rows * self.dim * item

    def _map(self, shard: int, part: str) -> np.ndarray:
        key = (shard, part)
        if key not in self._maps:
            self._maps[key] = np.load(
                _shard_file(self.path, shard, f"{part}.npy"), mmap_mode="c", allow_pickle=False
            )
        return self._maps[key]

    def groups_for(self, languages: Iterable[str] | None) -> list[str]:
        """The stored groups whose union is exactly ``languages`` (None: all stored languages)."""
        if languages is None:
            return list(self.groups)
        wanted = {normalize_lang(x) for x in languages}
        if not wanted:
            raise XqgInputError("empty language subset", field="augmentation.languages")
        unknown = wanted - set(self.languages)
        if unknown:
            raise XqgInputError(
                f"languages {sorted(unknown)} have no stored query sums (stored: {list(self.languages)})",
                field="augmentation.languages",
            )
        chosen = [g for g, langs in self.groups.items() if set(langs) <= wanted]
        covered = {lang for g in chosen for lang in self.groups[g]}
        if covered != wanted:
            raise XqgInputError(
                f"language subset {sorted(wanted)} needs per-language sums; these are stored for "
                f"{[list(v) for v in self.groups.values()]} (set augmentation.sums.per_language=true)",
                field="augmentation.languages",
            )
        return chosen

    def _check(self, start: int, stop: int, n: int | None) -> int:
        if not 0 <= start <= stop <= self.rows:
            raise IndexError(f"rows [{start}, {stop}) outside [0, {self.rows})")
        n = self.n_max if n is None else int(n)
        if not 1 <= n <= self.n_max:
            raise XqgInputError(
                f"n must be in 1..{self.n_max} (the stored n_max), got {n}", field="augmentation.n"
            )
        return n

    def _spans(self, start: int, stop: int) -> Iterable[tuple[int, int, int, int]]:
        """(shard, local start, local stop, output offset) covering rows [start, stop)."""
        for s, (a, b) in enumerate(self.shards):
            lo, hi = max(a, start), min(b, stop)
            if lo < hi:
                yield s, lo - a, hi - a, lo - start

    def sum_rows(
        self, start: int, stop: int, languages: Iterable[str] | None = None, n: int | None = None
    ) -> np.ndarray:
        """float32 ``(stop - start, dim)``: per passage, the sum of its first ``n`` generated-query embeddings in
        each of ``languages`` (all stored languages by default)."""
        n = self._check(start, stop, n)
        groups = self.groups_for(languages)
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        if not groups or stop == start:
            out.fill(0.0)
        for s, a, b, o in self._spans(start, stop):
            for gi, g in enumerate(groups):
                _add_f32(out[o : o + b - a], self._map(s, g)[n - 1, a:b], first=gi == 0)
        return out

    def count_rows(
        self, start: int, stop: int, languages: Iterable[str] | None = None, n: int | None = None
    ) -> np.ndarray:
        """int32 ``(stop - start,)``: how many generated queries :meth:`sum_rows` summed for each passage."""
        n = self._check(start, stop, n)
        idx = [list(self.groups).index(g) for g in self.groups_for(languages)]
        out = np.zeros(stop - start, dtype=np.int32)
        for s, a, b, o in self._spans(start, stop):
            out[o : o + b - a] = self._map(s, "counts")[idx, n - 1, a:b].astype(np.int32).sum(axis=0)
        return out

    def docid_at(self, row: int) -> str:
        for s, a, _b, _o in self._spans(row, row + 1):
            return bytes(self._map(s, "ids")[a]).decode("utf-8")
        raise IndexError(row)


def validate_fusion(alpha: float, mode: str) -> None:
    if mode not in MODES:
        raise XqgInputError(f"must be one of {list(MODES)}, got {mode!r}", field="augmentation.mode")
    if not (0.0 <= float(alpha) <= 1.0):
        raise XqgInputError(f"must be in [0, 1], got {alpha}", field="augmentation.alpha")


def fuse_arrays(
    p: np.ndarray, qsum: np.ndarray, alpha: float, mode: str = "sum", counts: np.ndarray | None = None
) -> np.ndarray:
    """``(1 - alpha) * p + alpha * qsum`` (``mode="sum"``, the reference), or with ``qsum / count`` (``"mean"``).

    ``alpha == 0`` returns ``p`` itself, so the baseline is reproduced bit for bit. Otherwise float32 math
    and a float32 result. A passage with no generated query has a zero sum (and mean), i.e. ``(1 - alpha) * p``,
    as the reference formula gives.
    """
    validate_fusion(alpha, mode)
    if float(alpha) == 0.0:
        return p
    if mode == "mean" and counts is None:
        raise ValueError("mode='mean' needs the per-passage query counts")
    return _fuse_inplace(
        np.array(qsum, dtype=np.float32, copy=True), p, float(alpha), counts if mode == "mean" else None
    )


_FUSE_BLOCK = 4096  # rows per fusion step: keeps the working set in cache (~2x faster than whole-matrix ops)


def _fuse_inplace(q: np.ndarray, p: np.ndarray, alpha: float, counts: np.ndarray | None) -> np.ndarray:
    """Turn ``q`` (float32, owned by the caller) into ``(1 - alpha) * p + alpha * q`` (``q / counts`` first when
    given), block by block; the same float32 operations, hence the same bits, as the whole-matrix formula."""
    a, b1 = np.float32(alpha), np.float32(1.0 - alpha)
    div = np.maximum(np.asarray(counts), 1).astype(np.float32)[:, None] if counts is not None else None
    for i in range(0, q.shape[0], _FUSE_BLOCK):
        qb = q[i : i + _FUSE_BLOCK]
        if div is not None:
            qb /= div[i : i + _FUSE_BLOCK]
        qb *= a
        qb += np.multiply(p[i : i + _FUSE_BLOCK], b1, dtype=np.float32)
    return q


def fuse(
    p_chunk: np.ndarray,
    sums: QuerySums,
    alpha: float,
    n: int,
    languages: Iterable[str] | None = None,
    mode: str = "sum",
    row_offset: int = 0,
) -> np.ndarray:
    """Fuse passage rows ``[row_offset, row_offset + len(p_chunk))`` with their generated-query sums.

    ``mode="sum"``: ``(1 - alpha) * p + alpha * sum_{lang in languages, k < n} q``, the reference's formula.
    ``mode="mean"``: the sum divided by the number of queries summed for that passage. That equals ``sum``
    with alpha scaled by ``1 / count`` (inside the alpha term only) *only when every passage has the same count*
    (e.g. all 7 x n queries present); with missing queries the two rank differently.
    ``alpha == 0`` returns ``p_chunk`` unchanged (bitwise).
    """
    validate_fusion(alpha, mode)
    if float(alpha) == 0.0:
        return p_chunk
    start, stop = int(row_offset), int(row_offset) + int(p_chunk.shape[0])
    if p_chunk.ndim != 2 or p_chunk.shape[1] != sums.dim:
        raise ValueError(
            f"passage chunk of shape {p_chunk.shape} does not match query sums of dim {sums.dim}"
        )
    langs = list(languages) if languages is not None else None
    qsum = sums.sum_rows(start, stop, langs, n)  # a fresh float32 array: fused in place
    counts = sums.count_rows(start, stop, langs, n) if mode == "mean" else None
    return _fuse_inplace(qsum, p_chunk, float(alpha), counts)


@dataclass
class FusionTransform:
    """The search's per-chunk hook: ``transform(row_offset, ids, chunk) -> fused chunk``.

    Checks that the chunk's first and last docids are the ones the sums were built for (cheap, catches a
    misaligned store at once).
    """

    sums: QuerySums
    alpha: float
    n: int
    languages: tuple[str, ...] | None = None
    mode: str = "sum"
    check_ids: bool = True

    def __post_init__(self) -> None:
        validate_fusion(self.alpha, self.mode)
        self.sums._check(0, 0, self.n)
        if self.languages is not None:
            self.languages = tuple(self.languages)
            self.sums.groups_for(self.languages)

    def __call__(self, row_offset: int, ids: Sequence[str], chunk: np.ndarray) -> np.ndarray:
        if self.check_ids and len(ids):
            if len(ids) != chunk.shape[0]:
                raise ValueError(f"{len(ids)} ids for a chunk of {chunk.shape[0]} rows")
            last = row_offset + len(ids) - 1
            if (
                last >= self.sums.rows
                or self.sums.docid_at(row_offset) != str(ids[0])
                or self.sums.docid_at(last) != str(ids[-1])
            ):
                raise XqgInputError(
                    f"passage rows {row_offset}..{last} do not match the query sums' docids ({self.sums.path}); "
                    "they were built for another embedding store",
                    field="augmentation",
                )
        return fuse(chunk, self.sums, self.alpha, self.n, self.languages, self.mode, row_offset)


def fusion_from_config(aug: Mapping[str, Any], sums: QuerySums | None) -> FusionTransform | None:
    """The transform for an ``augmentation`` config, or None when augmentation is off (the baseline)."""
    if not aug.get("enabled", False):
        return None
    if sums is None:
        raise ValueError("augmentation is enabled but no query sums were given")
    langs = aug.get("languages")
    return FusionTransform(
        sums,
        float(aug.get("alpha", 0.0)),
        int(aug.get("n", sums.n_max)),
        tuple(langs) if langs is not None else None,
        str(aug.get("mode", "sum")),
    )


def query_sums_config(aug: Mapping[str, Any]) -> QuerySumsConfig:
    """The stored-sum settings of an ``augmentation`` config (``augmentation.sums``)."""
    return QuerySumsConfig.from_mapping(aug.get("sums"))


def reference_bytes_per_passage(dim: int, n_queries: int = 35, itemsize: int = 4) -> int:
    """What the reference keeps per passage: every generated-query embedding, fp32."""
    return int(dim) * int(n_queries) * int(itemsize)


def ensure_query_sums(
    generated: Any,
    retriever: Any,
    passages: Any,
    cache_dir: str | Path,
    cfg: QuerySumsConfig | None = None,
    *,
    batch_size: int = 256,
    max_len: int | None = None,
) -> QuerySums:
    """The query sums for a generated store (``xqg.generation.generate.GeneratedStore``), a query encoder
    (``xqg.retrieval.encode.Retriever``: ``.encode(texts, "query", ...)`` and ``.fingerprint``) and a passage store
    (``xqg.retrieval.encode.EmbeddingStore``: ``.ids``, ``.fingerprint``), built now or reused from the cache."""
    cfg = cfg or QuerySumsConfig()
    store_n = getattr(generated, "n", None)
    if store_n is not None and int(store_n) < cfg.n_max:
        log.warning(
            "the generated store has %s queries per language, fewer than n_max=%d", store_n, cfg.n_max
        )
    store_langs = set(getattr(generated, "languages", None) or ())
    if store_langs and not set(cfg.languages) <= store_langs:
        log.warning("languages %s are not in the generated store", sorted(set(cfg.languages) - store_langs))

    def embed(texts: list[str]) -> np.ndarray:
        return retriever.encode(texts, "query", max_len=max_len, batch_size=batch_size)

    return build_query_sums(
        generated,
        embed,
        passages.ids,
        cache_dir,
        cfg,
        inputs={
            "retriever": str(retriever.fingerprint),
            "generated": str(generated.fingerprint),
            "passages": str(passages.fingerprint),
        },
        embed_batch=max(batch_size * 16, 1024),
        source=str(getattr(generated, "path", "generated queries")),
    )
