"""xQG fusion, the paper's formula, applied to passage embeddings while they are searched:

    p' = (1 - alpha) * p + alpha * SUM_{lang in languages, k < n} q_{lang,k}      (mode "sum", the reference)
    p' = (1 - alpha) * p + alpha * MEAN(...)                                         (mode "mean")

The sums come from the cached prefix sums (:class:`xqg.retrieval.query_sums.QuerySums`); :class:`FusionTransform`
is the search's ``transform(row_offset, ids, chunk) -> chunk`` hook, so no augmented copy of the passage
embeddings is ever written and a trial that changes alpha / n / languages / mode re-encodes nothing.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xqg.core.errors import XqgInputError
from xqg.core.languages import normalize_lang
from xqg.retrieval.query_sums import QuerySums

MODES = ("sum", "mean")
_FUSE_BLOCK = 4096  # rows per fusion step: keeps the working set in cache (~2x faster than whole-matrix ops)


def _check_alpha_mode(alpha: Any, mode: str) -> None:
    if mode not in MODES:
        raise XqgInputError(f"must be one of {list(MODES)}, got {mode!r}", field="augmentation.mode")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) <= 1.0:
        raise XqgInputError(f"must be in [0, 1], got {alpha!r}", field="augmentation.alpha")


@dataclass(frozen=True)
class Fusion:
    """The fusion settings of one run: weight ``alpha``, ``n`` generated queries per language, ``mode`` and the
    fused ``languages`` (None: every stored language). ``alpha`` is kept as given (an int 0 stays 0), so
    :meth:`to_json` is the dict run fingerprints were always made from."""

    alpha: float
    n: int
    mode: str = "sum"
    languages: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_alpha_mode(self.alpha, self.mode)
        if isinstance(self.n, bool) or not isinstance(self.n, numbers.Integral) or self.n < 1:
            raise XqgInputError(f"must be an integer >= 1, got {self.n!r}", field="augmentation.n")
        object.__setattr__(self, "n", int(self.n))
        if self.languages is not None:
            try:
                langs = tuple(normalize_lang(x) for x in self.languages)
            except KeyError as e:
                raise XqgInputError(str(e.args[0]), field="augmentation.languages") from None
            if not langs:
                raise XqgInputError("empty language subset", field="augmentation.languages")
            object.__setattr__(self, "languages", langs)

    def to_json(self) -> dict[str, Any]:
        """``{alpha, n, mode, languages}``: for the run fingerprint, W&B and the trial record."""
        langs = list(self.languages) if self.languages is not None else None
        return {"alpha": self.alpha, "n": self.n, "mode": self.mode, "languages": langs}


def fuse_arrays(
    p: np.ndarray, qsum: np.ndarray, alpha: float, mode: str = "sum", counts: np.ndarray | None = None
) -> np.ndarray:
    """``(1 - alpha) * p + alpha * qsum`` (``mode="sum"``, the reference), or with ``qsum / count`` (``"mean"``).

    ``alpha == 0`` returns ``p`` itself, so the baseline is reproduced bit for bit. Otherwise float32 math
    and a float32 result. A passage with no generated query has a zero sum (and mean), i.e. ``(1 - alpha) * p``,
    as the reference formula gives.
    """
    _check_alpha_mode(alpha, mode)
    if float(alpha) == 0.0:
        return p
    if mode == "mean" and counts is None:
        raise ValueError("mode='mean' needs the per-passage query counts")
    return _fuse_inplace(
        np.array(qsum, dtype=np.float32, copy=True), p, float(alpha), counts if mode == "mean" else None
    )


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


def fuse(p_chunk: np.ndarray, sums: QuerySums, fusion: Fusion, row_offset: int = 0) -> np.ndarray:
    """Fuse passage rows ``[row_offset, row_offset + len(p_chunk))`` with their generated-query sums.

    ``mode="mean"`` divides each passage's sum by the number of queries summed for it. That equals ``sum`` with
    alpha scaled by ``1 / count`` *only when every passage has the same count* (e.g. all 7 x n queries present);
    with missing queries the two rank differently. ``alpha == 0`` returns ``p_chunk`` unchanged (bitwise).
    """
    if float(fusion.alpha) == 0.0:
        return p_chunk
    start, stop = int(row_offset), int(row_offset) + int(p_chunk.shape[0])
    if p_chunk.ndim != 2 or p_chunk.shape[1] != sums.dim:
        raise ValueError(
            f"passage chunk of shape {p_chunk.shape} does not match query sums of dim {sums.dim}"
        )
    qsum = sums.sum_rows(start, stop, fusion.languages, fusion.n)  # a fresh float32 array: fused in place
    counts = sums.count_rows(start, stop, fusion.languages, fusion.n) if fusion.mode == "mean" else None
    return _fuse_inplace(qsum, p_chunk, float(fusion.alpha), counts)


@dataclass
class FusionTransform:
    """The search's per-chunk hook: ``transform(row_offset, ids, chunk) -> fused chunk``.

    Checks that the chunk's first and last docids are the ones the sums were built for (cheap, catches a
    misaligned store at once).
    """

    sums: QuerySums
    fusion: Fusion
    check_ids: bool = True

    def __post_init__(self) -> None:
        self.sums.check_n(self.fusion.n)
        self.sums.groups_for(self.fusion.languages)

    def __call__(self, row_offset: int, ids: Sequence[str], chunk: np.ndarray) -> np.ndarray:
        self.check_rows(row_offset, ids, chunk.shape[0])
        return fuse(chunk, self.sums, self.fusion, row_offset)

    def check_rows(self, row_offset: int, ids: Sequence[str], rows: int) -> None:
        """Raise unless the chunk's first and last docids are the sums' rows there (the torch search's device
        fusion calls this too)."""
        if self.check_ids and len(ids):
            if len(ids) != rows:
                raise ValueError(f"{len(ids)} ids for a chunk of {rows} rows")
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
