"""Where the tests find the repository and the shared offline data (``XQG_SHARED_DATA`` overrides)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("XQG_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
PARITY_DIR = SHARED_DATA.parent / "parity"
SET_ME = "set XQG_SHARED_DATA to the shared data folder"
