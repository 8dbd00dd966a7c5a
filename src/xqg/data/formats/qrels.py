"""TREC qrels: ``qid 0 docid relevance`` per line (whitespace-separated, plain or gzip), the gold passages the
synthetic world and XQuAD-R write. Only positive relevance counts as gold; a malformed line is one error naming
the file and line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from xqg.core.errors import XqgInputError
from xqg.core.io import open_text

Qrels = dict[str, dict[str, int]]  # qid -> docid -> relevance (> 0)


def read_qrels(paths: str | Path | Iterable[str | Path]) -> Qrels:
    """The gold passages of one or several qrels files (later files add to earlier ones)."""
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    out: Qrels = {}
    for path in files:
        with open_text(path, what="qrels file") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 4:
                    raise XqgInputError(
                        f"expected 4 columns 'qid 0 docid relevance', got {len(fields)}",
                        path=path,
                        line=lineno,
                    )
                try:
                    rel = int(fields[3])
                except ValueError:
                    raise XqgInputError(
                        f"relevance must be an integer, got {fields[3]!r}",
                        path=path,
                        line=lineno,
                        field="relevance",
                    ) from None
                if rel > 0:
                    out.setdefault(fields[0], {})[fields[2]] = rel
    return out
