"""Hub model references with a pinned revision: ``owner/name@revision``.

``backbone.revision`` and ``generator.model.revision`` join their ``name_or_path`` into one reference
(:func:`with_revision`) at the task boundary, so every fingerprint that names a hub model names its revision too
(unpinned names are unchanged, and so are their fingerprints); the loaders split it again
(:func:`split_revision`) and pass ``revision=`` to ``from_pretrained``. ``retrieval.checkpoint`` takes the same
form. A local folder is never split, whatever its name. Hub models come from (and download into) the shared HF
cache, as ``from_pretrained`` does by default.
"""

from __future__ import annotations

import re
from pathlib import Path

from xqg.core.errors import XqgInputError
from xqg.data.hub_cache import hub_offline

_HUB_REF = re.compile(
    r"^(?P<name>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*|[A-Za-z0-9][\w.-]*)@(?P<rev>[^@\s]+)$"
)


def with_revision(name_or_path: str, revision: str | None, field: str = "revision") -> str:
    """``name@revision`` for a hub name pinned to ``revision``; the name itself when unpinned. A revision given
    for a local folder is an error (a folder has no revisions)."""
    if not revision:
        return name_or_path
    if Path(name_or_path).expanduser().exists():
        raise XqgInputError(f"{name_or_path!r} is a local folder: it has no hub revision to pin", field=field)
    if "@" in name_or_path:
        raise XqgInputError(f"{name_or_path!r} already names a revision", field=field)
    ref = f"{name_or_path}@{revision}"
    if not _HUB_REF.match(ref):
        raise XqgInputError(f"{ref!r} is not a hub model name with a revision", field=field)
    return ref


def split_revision(name_or_path: str | Path) -> tuple[str, str | None]:
    """``(name, revision)`` of ``owner/name@revision``; ``(name_or_path, None)`` for anything else, including an
    existing local path whose name contains ``@``.

    Every loader calls this right before ``from_pretrained``; for a name that is not a local path it first makes
    sure an unreachable hub is known (:func:`xqg.data.hub_cache.hub_offline`: one probe per process, then offline
    mode), so ``from_pretrained`` reads the shared HF cache at once instead of retrying connections for ~25 s."""
    s = str(name_or_path)
    if Path(s).expanduser().exists():
        return s, None
    hub_offline()
    if "@" not in s:
        return s, None
    m = _HUB_REF.match(s)
    return (m.group("name"), m.group("rev")) if m else (s, None)
