"""The retriever's dev slice: examples held out of a Tevatron training file, and the queries, gold docids and
passages a dev retrieval check searches during training."""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xqg.core.artifacts import ArtifactDir, file_fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.locking import complete_or_claim
from xqg.core.staging import staged_artifact
from xqg.data.corpus import open_corpus
from xqg.data.formats.tevatron import iter_tevatron, write_tevatron
from xqg.data.records import passage_text

SPLIT_KIND = "retriever_split"
SPLIT_CODE_VERSION = "1"


@dataclass
class DevSet:
    """Dev queries with their gold positive docids, and the passages to search (which include the golds)."""

    qids: list[str]
    queries: list[str]
    gold: list[frozenset[str]]
    docids: list[str]
    passages: list[str]
    name: str = "dev"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.qids) == len(self.queries) == len(self.gold)):
            raise ValueError("qids, queries and gold must have the same length")
        if len(self.docids) != len(self.passages):
            raise ValueError("docids and passages must have the same length")


def _qid_rank(qid: str) -> str:
    return hashlib.sha256(qid.encode("utf-8")).hexdigest()


def split_heldout(source: Path, n_dev: int, cache_dir: str | Path) -> tuple[Path, Path]:
    """Hold ``n_dev`` examples out of a Tevatron file (chosen by a hash of the query id, so the split does not
    depend on file order or seed), as a cached artifact with ``train.jsonl.gz`` and ``dev.jsonl.gz``."""
    art = ArtifactDir.for_spec(
        cache_dir,
        SPLIT_KIND,
        config={"n_dev": int(n_dev)},
        inputs={"train": file_fingerprint(source)},
        code_version=SPLIT_CODE_VERSION,
    )
    if not complete_or_claim(art):
        ranks = [_qid_rank(ex.qid) for ex in iter_tevatron(source)]
        chosen = set(heapq.nsmallest(n_dev, ranks))
        if len(chosen) >= len(ranks):
            raise XqgInputError(
                f"holding out {n_dev} dev examples leaves nothing to train on; lower train.dev.max_queries",
                path=source,
                field="train.dev.max_queries",
            )
        with staged_artifact(art) as staging:
            n_train = write_tevatron(
                staging.path / "train.jsonl.gz",
                (e for e in iter_tevatron(source) if _qid_rank(e.qid) not in chosen),
            )
            n_dev_written = write_tevatron(
                staging.path / "dev.jsonl.gz",
                (e for e in iter_tevatron(source) if _qid_rank(e.qid) in chosen),
            )
            staging.finalize(counts={"train": n_train, "dev": n_dev_written})
    return art.path / "train.jsonl.gz", art.path / "dev.jsonl.gz"


def build_dev_set(
    dev_path: Path,
    corpus_path: Path | None,
    *,
    max_queries: int,
    max_passages: int,
    cache_dir: str | Path,
    name: str = "dev",
) -> DevSet:
    """Dev queries with gold positive docids, and the passages to search: the golds and hard negatives of
    those queries first, then corpus rows in order until ``max_passages``."""
    qids: list[str] = []
    queries: list[str] = []
    gold: list[frozenset[str]] = []
    passages: dict[str, str] = {}
    for ex in iter_tevatron(dev_path):
        if len(qids) >= max_queries:
            break
        qids.append(ex.qid)
        queries.append(ex.query)
        gold.append(frozenset(p.docid for p in ex.positives))
        for p in (*ex.positives, *ex.negatives):
            passages.setdefault(p.docid, passage_text(p.title, p.text))
    if corpus_path is not None and len(passages) < max_passages:
        store = open_corpus(corpus_path, cache_dir)
        for batch in store.iter_batches(1024):
            for p in batch:
                if len(passages) >= max_passages:
                    break
                passages.setdefault(p.docid, passage_text(p.title, p.text))
            if len(passages) >= max_passages:
                break
    return DevSet(qids, queries, gold, list(passages), list(passages.values()), name=name)
