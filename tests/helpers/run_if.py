"""``RunIf``: one skip mark for tests that need a GPU, a torch version, the shared data or GPU faiss.

In the spirit of lightning-hydra-template's ``tests/helpers/run_if.py``::

    @RunIf(min_gpus=1)
    def test_on_gpu(): ...

    @RunIf(shared_data=True)
    def test_reads_the_real_dev_file(): ...

Every unmet condition is named in the skip reason, e.g. ``Requires: [1 GPU (found 0)]``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from packaging.version import Version

from helpers.paths import PARITY_DIR, SET_ME, SHARED_DATA


def faiss_gpu_available() -> bool:
    """faiss is installed, was built with GPU support and sees a GPU (it is an optional dependency)."""
    if importlib.util.find_spec("faiss") is None:
        return False
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class RunIf:
    """``RunIf(...)`` is a ``pytest.mark.skipif`` that skips unless every given condition holds."""

    def __new__(
        cls,
        min_gpus: int = 0,
        min_torch: str | None = None,
        shared_data: bool = False,
        parity: bool = False,
        faiss_gpu: bool = False,
        **kwargs: Any,
    ) -> pytest.MarkDecorator:
        """
        Args:
            min_gpus: at least this many CUDA GPUs visible to torch.
            min_torch: at least this torch version, e.g. ``"2.5"``.
            shared_data: the shared offline data folder exists (``../shared/data`` or ``$XQG_SHARED_DATA``).
            parity: the official-evaluation parity files exist (``../shared/parity``).
            faiss_gpu: faiss with GPU support and a GPU (``pip install faiss-gpu``).
            kwargs: passed on to ``pytest.mark.skipif`` (e.g. ``strict``).
        """
        reasons = []
        if min_gpus:
            found = torch.cuda.device_count()
            if found < min_gpus:
                reasons.append(f"{min_gpus} GPU{'s' if min_gpus > 1 else ''} (found {found})")
        if min_torch and Version(torch.__version__.split("+")[0]) < Version(min_torch):
            reasons.append(f"torch>={min_torch} (found {torch.__version__})")
        if shared_data and not SHARED_DATA.is_dir():
            reasons.append(f"shared data at {SHARED_DATA} ({SET_ME})")
        if parity and not PARITY_DIR.is_dir():
            reasons.append(f"parity files at {PARITY_DIR} ({SET_ME})")
        if faiss_gpu and not faiss_gpu_available():
            reasons.append("faiss with GPU support and a GPU (pip install faiss-gpu)")
        return pytest.mark.skipif(bool(reasons), reason=f"Requires: [{' + '.join(reasons)}]", **kwargs)
