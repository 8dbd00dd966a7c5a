"""The generated-query store: sharded on disk, written shard by shard (atomically, resumable), read as one.

Layout (``<out_root>/generated/<fingerprint>/``, an :class:`xqg.core.artifacts.ArtifactDir`)::

    spec.json                 what is being built (settings, generator and corpus fingerprints)
    shards/shard-00000.parquet   columns docid (str), lang (str), k (int32, 0-based), text (str);
                                  or shard-00000.jsonl.gz with one {"docid", "lang", "k", "text"} per line
    shards/shard-00000.json   the shard's done-marker, written after its data file: row range and counts
    manifest.json             written last: counts (passages, records, empty, duplicate, shards, ...),
                              extra (languages, n, decoding, generator, prompt template)

Within a (docid, lang) the n samples are stored in order ``k = 0..n-1``; empty and duplicate samples are kept (so
every passage has exactly n per language) and counted in the manifest. Any worker may be the last to finish a
shard, so whichever finds every shard done writes the manifest (:func:`finalize_store`).

Reading (the contract the query encoder codes against)::

    store = GeneratedStore.open(path)       # raises unless complete (allow_incomplete=True to inspect)
    store.languages, store.n                # e.g. ("ar", ..., "te"), 5
    store.counts                            # manifest counts: records, passages, empty, duplicate, ...
    len(store)                              # number of (docid, lang, k) records
    for q in store: q.docid, q.lang, q.k, q.text      # GeneratedQuery, shard by shard, row order
    for docid, by_lang in store.iter_passages():     # {lang: [text_k for k in 0..n-1]}, corpus row order
    store.queries("doc12")                  # {lang: [texts]} for one docid (builds a docid index once)
    store.iter_tables()                     # one pyarrow.Table per shard (bulk encoding)
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from xqg.core.artifacts import ArtifactDir, atomic_path
from xqg.core.errors import XqgInputError
from xqg.core.sharded import ShardFiles

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


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise XqgInputError(
            f"unknown store format {fmt!r}; use one of {FORMATS}", field="generator.store_format"
        )


# --------------------------------------------------------------------------------------------------- shards


def shard_files(art_path: Path, fmt: str) -> ShardFiles:
    """The store's layout on :mod:`xqg.core.sharded`: ``shards/shard-<i>.<fmt>`` (the records) and
    ``shards/shard-<i>.json`` (the done marker with the shard's counts, written last)."""
    return ShardFiles(Path(art_path), done_when=(fmt, "json"), stem="shard-{:05d}", folder=SHARDS)


def _write_records(path: Path, records: Sequence[GeneratedQuery], fmt: str) -> None:
    """One shard's data, atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        if fmt == "parquet":
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
class ShardStats:
    """One shard's counts (records, empty and duplicate samples, passages, records per language)."""

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


def finish_shard(
    art: ArtifactDir,
    s: int,
    records: list[GeneratedQuery],
    stats: ShardStats,
    fmt: str,
    extra: Mapping[str, Any],
) -> None:
    """Data file first, then the done-marker: a shard counts as done only when both are there."""
    files = shard_files(art.path, fmt)
    data = files.path(s, fmt)
    _write_records(data, records, fmt)
    files.write_json(s, "json", {"shard": s, "file": data.name, **asdict(stats), **extra})


def done_shards(art_path: Path) -> dict[int, dict[str, Any]]:
    """The done-markers of the finished shards, by shard number."""
    folder = art_path / SHARDS
    done: dict[int, dict[str, Any]] = {}
    if not folder.exists():
        return done
    for marker in folder.glob("shard-*.json"):
        info = json.loads(marker.read_text())
        if (folder / info["file"]).exists():
            done[int(info["shard"])] = info
    return done


def finalize_store(art: ArtifactDir, total_shards: int, extra: Mapping[str, Any]) -> bool:
    """Write the manifest if every shard is done (any worker may be the last one)."""
    done = done_shards(art.path)
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
        return sum(int(i["records"]) for i in done_shards(self.path).values())

    def shard_files(self) -> list[Path]:
        """Data files of the finished shards, in shard order."""
        if self.complete:
            return [self.path / SHARDS / f for f in self.manifest["extra"]["shard_files"]]
        done = done_shards(self.path)
        return [self.path / SHARDS / done[s]["file"] for s in sorted(done)]

    def __iter__(self) -> Iterator[GeneratedQuery]:
        return self.iter_records()

    def iter_records(self) -> Iterator[GeneratedQuery]:
        for f in self.shard_files():
            yield from _read_records(f)

    def iter_tables(self) -> Iterator[pa.Table]:
        """One ``pyarrow.Table`` (docid, lang, k, text) per shard, for bulk processing."""
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
