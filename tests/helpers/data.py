"""Readers that only tests need (the pipeline streams these files instead of listing them)."""

from __future__ import annotations

from pathlib import Path

from xqg.data.formats.tevatron import iter_tevatron
from xqg.data.records import TrainExample


def read_tevatron(path: str | Path, *, require_positive: bool = True) -> list[TrainExample]:
    """Every example of a Tevatron file, validated (see :func:`xqg.data.formats.tevatron.iter_tevatron`)."""
    return list(iter_tevatron(path, require_positive=require_positive))
