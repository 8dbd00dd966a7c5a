"""Test-wide settings: no network, no W&B, no progress bars, shared data located once (tests that need it skip,
naming the path, where it is absent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from helpers.paths import PARITY_DIR, SET_ME, SHARED_DATA

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NLTK_DATA", str(SHARED_DATA / "nltk_data"))


@pytest.fixture(autouse=True)
def _isolated_xqg_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the per-user fingerprint cache out of the developer's home."""
    monkeypatch.setenv("XQG_HOME", str(tmp_path_factory.getbasetemp() / "xqg_home"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared offline data folder; the test is skipped (naming the path) where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} ({SET_ME})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """The official-evaluation parity files; the test is skipped (naming the path) where they are absent."""
    if not PARITY_DIR.is_dir():
        pytest.skip(f"parity files not found at {PARITY_DIR} ({SET_ME})")
    return PARITY_DIR


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP spinning makes them
    many times slower; restored afterwards. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
