"""DPR TSV corpus files (``psgs_w100.tsv``): an ``id\\ttext\\ttitle`` header row, then one passage per line,
csv-quoted. Written atomically; read through :class:`xqg.data.corpus_rows.CorpusRows`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from xqg.core.artifacts import atomic_path
from xqg.core.errors import XqgInputError
from xqg.data.formats.jsonl import close_writer, open_write_binary
from xqg.data.records import Passage


def write_dpr_tsv(path: str | Path, passages: Iterable[Passage]) -> int:
    """Write passages as a DPR TSV (``id\\ttext\\ttitle`` header, csv quoting), atomically; returns the count."""
    n = 0
    p = Path(path)
    with atomic_path(p) as tmp:
        raw = open_write_binary(tmp, p.name.endswith(".gz"))
        try:
            f = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=False)
            w = csv.writer(f, delimiter="\t", quotechar='"', lineterminator="\n")
            w.writerow(["id", "text", "title"])
            for psg in passages:
                if "\n" in psg.text or "\n" in psg.title or "\r" in psg.text or "\r" in psg.title:
                    raise XqgInputError("passage contains a line break", field=f"docid {psg.docid}")
                w.writerow([psg.docid, psg.text, psg.title])
                n += 1
            f.flush()
            f.detach()
        finally:
            close_writer(raw)
    return n
