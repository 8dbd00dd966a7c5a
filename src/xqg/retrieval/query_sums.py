"""xQG's cached input: per-passage prefix sums of generated-query embeddings (settings, address, reader).

The reference (``fuse_embeds.py``) keeps all 35 generated-query embeddings per passage (7 languages x 5) as full
fp32 matrices and fuses ``(1 - alpha) * p + alpha * SUM`` over them. A sweep over ``alpha``, ``n`` (queries per
language) and a language subset needs far less: for every passage and k = 1..n_max the sum of the embeddings of
the first k queries, i.e. prefix sums over k. They are kept per *group* of languages:

* ``per_language: false`` (default): one group holding all stored languages, ``n_max`` matrices in total
  (5 at the paper's settings, instead of 35); any ``n <= n_max`` is one slice.
* ``per_language: true``: one group per language (``n_max`` matrices each), so any language subset and any
  ``n`` is a sum of slices. Use it when language subsets are swept.

Prefix sums are accumulated in fp32 and stored in ``dtype`` (fp16 by default) as npy memory maps, aligned to the
passage embedding store's row order, in shards of consecutive rows (built by :mod:`xqg.retrieval.query_sums_build`,
resumable through :mod:`xqg.core.sharded`).

Artifact layout (``<cache>/query_sums/<fingerprint>/``, an :class:`xqg.core.artifacts.ArtifactDir`)::

    spec.json                          what is being built (settings, input fingerprints)
    shards/00000.<group>.npy           prefix sums, shape (n_max, shard rows, dim), dtype fp16/fp32
    shards/00000.counts.npy            uint8 (groups, n_max, shard rows): queries summed at each n
    shards/00000.ids.npy               the shard's docids (UTF-8 bytes), to check alignment at fusion time
    shards/00000.json                  done-marker, written after the data files: row range and counts
    manifest.json                      written last: counts (rows, queries, missing, ...), extra (groups, dim)

The fingerprint covers the retriever, the generated-query store, the passage row order (docids), the stored
languages, n_max, dtype, grouping and shard size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xqg.core.artifacts import ArtifactDir, Manifest
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.languages import XOR_LANGUAGES, normalize_lang
from xqg.core.sharded import ShardFiles

KIND = "query_sums"
#: Bump when what a given config produces changes: older artifacts are then rebuilt, never reused.
CODE_VERSION = "1"
DTYPES: dict[str, type[np.floating]] = {"fp16": np.float16, "fp32": np.float32}
ALL_GROUP = "all"
DONE = "json"  # shards/<i>.json: the shard's done marker (and its counts)


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

    def to_json(self) -> dict[str, Any]:
        """The plain dict in the artifact's spec and manifest (its fingerprint)."""
        return {**asdict(self), "languages": list(self.languages)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> QuerySumsConfig:
        """Back from :meth:`to_json` (a manifest's ``config``)."""
        return cls(**{**d, "languages": tuple(d["languages"])})

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """Group name -> languages summed in it, in storage order."""
        if self.per_language:
            return {lang: (lang,) for lang in self.languages}
        return {ALL_GROUP: self.languages}


def shard_files(root: Path) -> ShardFiles:
    return ShardFiles(root, done_when=(DONE,))


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
    return ArtifactDir.for_spec(
        cache_dir,
        KIND,
        config=cfg.to_json(),
        inputs={**{k: str(v) for k, v in inputs.items()}, "docids": docids_fingerprint(docids)},
        code_version=CODE_VERSION,
    )


def reference_bytes_per_passage(dim: int, n_queries: int = 35, itemsize: int = 4) -> int:
    """What the reference keeps per passage: every generated-query embedding, fp32."""
    return int(dim) * int(n_queries) * int(itemsize)


def _add_f32(out: np.ndarray, src: np.ndarray, *, first: bool) -> None:
    """``out = src`` (first) or ``out += src`` in float32. fp16 sources are converted through torch, whose
    vectorised fp16 -> fp32 copy is ~10x faster than numpy's (it dominates a trial's fusion cost otherwise)."""
    if src.dtype == np.float16:
        t_out = torch.from_numpy(out)
        t_src = torch.from_numpy(np.ascontiguousarray(src))
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
        self.config = QuerySumsConfig.from_json(self.manifest.config)
        extra = self.manifest.extra
        self.dim = int(extra["dim"])
        self.shards: list[tuple[int, int]] = [(int(a), int(b)) for a, b in extra["shards"]]
        self.groups: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in extra["groups"].items()}
        self.counts: dict[str, int] = dict(self.manifest.counts)
        self.rows = int(self.counts["rows"])
        self._files = shard_files(self.path)
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
                self._files.path(shard, f"{part}.npy"), mmap_mode="c", allow_pickle=False
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

    def check_n(self, n: int | None) -> int:
        """``n`` (``n_max`` when None), checked against the stored ``n_max``."""
        n = self.n_max if n is None else int(n)
        if not 1 <= n <= self.n_max:
            raise XqgInputError(
                f"n must be in 1..{self.n_max} (the stored n_max), got {n}", field="augmentation.n"
            )
        return n

    def _check(self, start: int, stop: int, n: int | None) -> int:
        if not 0 <= start <= stop <= self.rows:
            raise IndexError(f"rows [{start}, {stop}) outside [0, {self.rows})")
        return self.check_n(n)

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
