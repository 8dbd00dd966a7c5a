"""Test-wide settings: no network, no W&B, no progress bars, shared data located once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("XQG_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
PARITY_DIR = SHARED_DATA.parent / "parity"

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("XQG_PROGRESS", "0")
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
    if not SHARED_DATA.exists():
        pytest.fail(f"shared data not found at {SHARED_DATA}; set XQG_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not PARITY_DIR.exists():
        pytest.fail(f"parity files not found at {PARITY_DIR}; set XQG_SHARED_DATA")
    return PARITY_DIR


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP spinning makes them
    many times slower; restored afterwards. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
