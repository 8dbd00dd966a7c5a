"""What a search loads, kept resident across searches in one process: the trials of a sweep reuse it.

A Hydra multirun with the basic launcher runs its trials one after another in one process; each trial searches
the same passage embeddings, fused with query sums whose ``n`` and languages may change. The torch backend asks
this cache for each passage block (float32 matrix and docids) and each block's query sums and counts, so a trial
after the first pays fusion, search and scoring, not the reading and conversion of the stores again.

Entries are keyed by the artifact's fingerprint, path and creation time (plus the block's rows, and ``n`` and the language groups
for sums): a rebuilt or different artifact has another fingerprint and is never served from here. A tensor stays
on the search's GPU while the device budget allows (and the GPU keeps a quarter of its memory free), else in
pinned host memory within the host budget; on the CPU in host memory. Past both budgets the least recently used
entries go; a block larger than the budget is not kept (the search streams it as before). The values are the ones
the uncached path computes, so results do not depend on the cache.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

#: default budgets: this share of the GPU's total memory, and of the host's physical memory
DEVICE_SHARE = 0.5
HOST_SHARE = 0.25
_KEEP_FREE = 0.25  # share of a GPU's memory left free for the search itself


@dataclass
class _Entry:
    tensor: torch.Tensor
    extra: Any
    on_device: bool
    nbytes: int


def _host_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class ResidentCache:
    """Tensors (with an optional host-side companion, e.g. a block's docids) by key, LRU within two budgets."""

    def __init__(self, device_bytes: int | None = None, host_bytes: int | None = None) -> None:
        self.device_bytes = device_bytes
        self.host_bytes = int(host_bytes if host_bytes is not None else HOST_SHARE * _host_memory())
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def used(self, on_device: bool) -> int:
        return sum(e.nbytes for e in self._entries.values() if e.on_device == on_device)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _device_budget(self, dev: torch.device) -> int:
        if self.device_bytes is not None:
            return int(self.device_bytes)
        return int(DEVICE_SHARE * torch.cuda.get_device_properties(dev).total_memory)

    def _evict(self, on_device: bool, need: int, budget: int) -> None:
        while self.used(on_device) + need > budget:
            victim = next((k for k, e in self._entries.items() if e.on_device == on_device), None)
            if victim is None:
                return
            del self._entries[victim]

    def get(
        self, key: Hashable, load: Callable[[], tuple[torch.Tensor, Any]], device: torch.device
    ) -> tuple[torch.Tensor, Any]:
        """``(tensor, extra)`` for ``key``: from the cache (the tensor on ``device``, or pinned on the host for a
        GPU search), else ``load()``'s, kept when a budget allows."""
        full = (key, str(device))
        with self._lock:
            hit = self._entries.get(full)
            if hit is not None:
                self._entries.move_to_end(full)
                self.hits += 1
                return hit.tensor, hit.extra
        tensor, extra = load()
        self.misses += 1
        nbytes = tensor.numel() * tensor.element_size()
        with self._lock:
            if device.type == "cuda":
                budget = self._device_budget(device)
                if nbytes <= budget:
                    self._evict(True, nbytes, budget)
                    free, total = torch.cuda.mem_get_info(device)
                    if free - nbytes >= _KEEP_FREE * total:
                        kept = tensor.to(device)
                        self._entries[full] = _Entry(kept, extra, True, nbytes)
                        return kept, extra
                if nbytes <= self.host_bytes:
                    self._evict(False, nbytes, self.host_bytes)
                    kept = tensor.cpu().pin_memory()
                    self._entries[full] = _Entry(kept, extra, False, nbytes)
                    return kept, extra
                return tensor, extra
            if nbytes <= self.host_bytes:
                self._evict(False, nbytes, self.host_bytes)
                kept = tensor.to(device)
                self._entries[full] = _Entry(kept, extra, False, nbytes)
                return kept, extra
        return tensor, extra


#: the process's cache (what a sweep's trials share)
CACHE = ResidentCache()


def artifact_key(artifact: Any) -> tuple[str, str, str]:
    """An artifact's identity in keys: fingerprint, path and creation time (a store object with ``fingerprint``,
    ``path`` and ``manifest``), so even an artifact rebuilt in place is not served stale."""
    manifest = getattr(artifact, "manifest", None)
    return str(artifact.fingerprint), str(artifact.path), str(getattr(manifest, "created", ""))


def resident_blocks(store: Any, rows: int, device: torch.device, cache: ResidentCache | None = None) -> Any:
    """``store.iter_chunks(rows)`` as ``(offset, docids, float32 tensor)``, each block served from ``cache``
    (default :data:`CACHE`) when a search in this process loaded it before. The store is read only when a block
    is missing (one forward pass over its chunks, skipping those before the missing block)."""
    cache = CACHE if cache is None else cache
    base = ("passages", *artifact_key(store), int(rows))
    bounds = block_bounds(store, rows)
    reader: Any = None
    for offset, stop in bounds:

        def load(offset: int = offset, stop: int = stop) -> tuple[torch.Tensor, Sequence[str]]:
            nonlocal reader
            if reader is None:
                reader = store.iter_chunks(rows)
            for o, ids, block in reader:
                if o == offset:
                    # a read-only memory map is copied (torch needs writable arrays; nothing keeps the file)
                    block = np.array(
                        block,
                        dtype=np.float32,
                        copy=not block.flags.writeable or not block.flags.c_contiguous,
                    )
                    return torch.from_numpy(block), list(ids)
            raise RuntimeError(f"{store}: no block at row {offset}")

        key = (*base, offset, stop)
        tensor, ids = cache.get(key, load, device)
        yield offset, ids, tensor


def block_bounds(store: Any, rows: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` rows of ``store.iter_chunks(rows)``'s blocks (blocks never span shards)."""
    out = []
    for start, stop in store.shards:
        out += [(a, min(a + rows, stop)) for a in range(start, stop, rows)]
    return out
