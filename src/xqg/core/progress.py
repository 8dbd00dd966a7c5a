"""When to show progress bars. xqg's own bars are tqdm's with ``disable=None`` (off when stderr is not a
terminal); :func:`bars_enabled` applies the same rule, plus tqdm's ``TQDM_DISABLE`` switch, to the bars xqg does
not draw itself (Lightning's trainer bar, Hugging Face's download and load bars)."""

from __future__ import annotations

import os
import sys


def bars_enabled() -> bool:
    """True on an interactive terminal unless ``TQDM_DISABLE`` is set (tests and CI logs stay quiet)."""
    return sys.stderr.isatty() and os.environ.get("TQDM_DISABLE", "") in ("", "0", "false", "False")
