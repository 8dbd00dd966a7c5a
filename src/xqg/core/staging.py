"""Build an artifact folder in a private staging folder and move it into place only when complete.

A killed build leaves at most a ``.building-*`` folder (removed on the next attempt's cleanup), never a
half-written artifact; two concurrent builders of the same artifact both end up reading one complete copy. Call
sites take the artifact's build lock first (``if not complete_or_claim(art): build``, see
:mod:`xqg.core.locking`) so a second run waits instead of building it again; the lock is released here when the
build ends, whether it succeeded or not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from xqg.core.artifacts import MANIFEST, ArtifactDir
from xqg.core.locking import release_all

_STALE_S = 24 * 3600


@contextlib.contextmanager
def staged_artifact(art: ArtifactDir) -> Iterator[ArtifactDir]:
    """Yield an :class:`ArtifactDir` to fill and ``finalize()``; on success it replaces ``art.path``."""
    final = art.path
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final.parent)
    staging_root = Path(tempfile.mkdtemp(prefix=f".building-{art.fingerprint}-", dir=final.parent))
    staging = ArtifactDir(staging_root, art.kind, art.fingerprint, art.spec)
    try:
        staging.begin()
        yield staging
        if not staging.complete:
            raise RuntimeError(f"staged artifact {art.kind}/{art.fingerprint} was not finalized")
        if final.exists():
            if (final / MANIFEST).exists():  # a concurrent builder finished first: keep theirs
                return
            shutil.rmtree(final)  # an unfinished earlier attempt
        try:
            os.replace(staging.path, final)
        except OSError:
            if not (final / MANIFEST).exists():
                raise
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
        release_all(art)


def _remove_stale(folder: Path) -> None:
    """Staging folders older than a day belong to killed runs."""
    now = time.time()
    for p in folder.glob(".building-*"):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > _STALE_S:
                shutil.rmtree(p, ignore_errors=True)
