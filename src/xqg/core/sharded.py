"""Sharded, resumable artifacts: rows cut into consecutive shards, each finished shard written atomically and
marked done, so a killed build resumes by skipping what is done, and the artifact is finalized once all are there.

The stores on top of it (passage embeddings, query sums) keep their own file names; this module only knows the
pattern. The API, for a store that builds ``<artifact>/shards/00000.<part>`` files::

    plan = ShardPlan.make(rows, shard_size=8192)        # or num_shards=...; plan.bounds(i) -> (start, stop)
    files = ShardFiles(art.path, done_when=("json",))   # shard i is done when shards/<i>.json exists
    for i in files.pending(plan):                        # resume: finished shards are skipped
        start, stop = plan.bounds(i)
        files.save_npy(i, "emb.npy", matrix)             # data parts first, each atomically (temp + rename)
        files.write_json(i, "json", {"start": start})    # the done marker last
    if files.all_done(plan):
        art.finalize(...)                                # ``xqg.core.artifacts.ArtifactDir``: the manifest

``ShardFiles(root, done_when, stem="shard-{:05d}")`` gives ``shard-00000.<part>`` names, ``folder`` another
sub-folder. A shard written in several pieces (a sub-chunk at a time) keeps them as :class:`ChunkFiles`
(``part-<start>-<stop>.<part>``, row ranges in the file name): :meth:`ChunkFiles.done_run` is the contiguous run
of finished pieces from the shard's first row, where the work resumes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xqg.core.artifacts import atomic_path, atomic_write_json
from xqg.core.errors import XqgInputError


def save_npy(dest: Path, arr: np.ndarray) -> None:
    """``np.save`` atomically and durably: readers see the whole file or none."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class ShardPlan:
    """Consecutive row ranges; shard ``i`` holds rows ``[i * shard_size, min((i + 1) * shard_size, rows))``."""

    rows: int
    shard_size: int

    @classmethod
    def make(cls, rows: int, shard_size: int | None = None, num_shards: int | None = None) -> ShardPlan:
        """``num_shards`` equal shards when given (it wins over ``shard_size``), else ``shard_size`` rows each."""
        if num_shards:
            if num_shards <= 0:
                raise XqgInputError(f"must be positive, got {num_shards}", field="num_shards")
            shard_size = max(1, -(-rows // int(num_shards)))
        if not shard_size or int(shard_size) <= 0:
            raise XqgInputError(f"must be positive, got {shard_size}", field="shard_size")
        return cls(int(rows), int(shard_size))

    @property
    def num_shards(self) -> int:
        return max(1, -(-self.rows // self.shard_size))

    def bounds(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.num_shards:
            raise XqgInputError(
                f"shard index {i} out of range (0..{self.num_shards - 1})", field="shard_index"
            )
        return i * self.shard_size, min((i + 1) * self.shard_size, self.rows)

    def shard_of(self, row: int) -> int:
        return row // self.shard_size


@dataclass(frozen=True)
class ShardFiles:
    """The files of one sharded artifact: ``<root>/<folder>/<stem(i)>.<part>``; shard ``i`` is done when every
    part in ``done_when`` exists (write those last)."""

    root: Path
    done_when: tuple[str, ...]
    stem: str = "{:05d}"
    folder: str = "shards"

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.folder

    def path(self, i: int, part: str) -> Path:
        return self.dir / f"{self.stem.format(i)}.{part}"

    def is_done(self, i: int) -> bool:
        return all(self.path(i, part).exists() for part in self.done_when)

    def done(self, plan: ShardPlan) -> set[int]:
        return {i for i in range(plan.num_shards) if self.is_done(i)}

    def pending(self, plan: ShardPlan, only: Iterable[int] | None = None) -> list[int]:
        """Shards still to build (of ``only`` when given: one worker's share), in order."""
        return [i for i in (range(plan.num_shards) if only is None else only) if not self.is_done(i)]

    def all_done(self, plan: ShardPlan) -> bool:
        return all(self.is_done(i) for i in range(plan.num_shards))

    def save_npy(self, i: int, part: str, arr: np.ndarray) -> None:
        save_npy(self.path(i, part), arr)

    def write_json(self, i: int, part: str, obj: Any) -> None:
        atomic_write_json(self.path(i, part), obj)

    def read_json(self, i: int, part: str) -> Any:
        return json.loads(self.path(i, part).read_text())


@dataclass(frozen=True)
class ChunkFiles:
    """Pieces of one shard, named by row range: ``<dir>/part-<start:012d>-<stop:012d>.<part>``; a piece is done
    when every part in ``done_when`` exists."""

    dir: Path
    done_when: tuple[str, ...]

    def path(self, start: int, stop: int, part: str) -> Path:
        return Path(self.dir) / f"part-{start:012d}-{stop:012d}.{part}"

    def done_run(self, start: int) -> list[tuple[int, int]]:
        """Finished pieces forming a contiguous run from row ``start`` (anything else is stale)."""
        found: dict[int, int] = {}
        pattern = re.compile(rf"^part-(\d{{12}})-(\d{{12}})\.{re.escape(self.done_when[-1])}$")
        if Path(self.dir).is_dir():
            for f in Path(self.dir).iterdir():
                m = pattern.match(f.name)
                if m and all(self.path(int(m[1]), int(m[2]), p).exists() for p in self.done_when):
                    found[int(m[1])] = int(m[2])
        run: list[tuple[int, int]] = []
        while start in found:
            run.append((start, found[start]))
            start = found[start]
        return run
