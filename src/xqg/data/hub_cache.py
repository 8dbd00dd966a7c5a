"""The shared Hugging Face cache and offline detection, for every hub access of a process.

Hub files live in the shared HF cache (``HF_HUB_CACHE``), looked up there without network (:func:`hf_cached`,
:func:`hf_snapshot`). Offline is detected once: :func:`hub_offline` is offline when asked (``HF_HUB_OFFLINE`` /
``XQG_OFFLINE``), else it probes the hub endpoint with one request the first time it is called; when the hub
cannot be reached the process switches to offline mode (:func:`go_offline`: ``HF_HUB_OFFLINE=1`` for
huggingface_hub, transformers and child processes), so no later call spends ~25 s in connection retries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import get_session, snapshot_download, try_to_load_from_cache

log = logging.getLogger(__name__)
_TRUE = ("1", "true", "yes", "on")
PROBE_TIMEOUT_S = 3.0  # the one reachability probe of the hub
_PROBED: dict[str, bool] = {}  # "reachable" -> the probe's answer, once per process


def is_offline() -> bool:
    """Offline by request: ``HF_HUB_OFFLINE`` or ``XQG_OFFLINE`` set to a true value."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "XQG_OFFLINE"))


def probe_hub(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub endpoint answers at all (any HTTP status), else why not; one request, no retries (the
    proxy settings huggingface_hub uses apply)."""
    try:
        get_session().head(hf_constants.ENDPOINT, timeout=timeout)
    except Exception as e:  # DNS, refused, timeout, proxy errors: all mean "not reachable"
        return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
    return None


def go_offline(reason: str) -> None:
    """Offline mode for the rest of this process and its children: huggingface_hub (and transformers, which asks
    it) then reads the caches only, without connection attempts."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_constants.HF_HUB_OFFLINE = True
    log.warning(
        "the Hugging Face Hub cannot be reached (%s): offline mode for this run, files come from the caches only "
        "(set HF_HUB_OFFLINE=1 to skip this check)",
        reason,
    )


def hub_offline(probe: Callable[[], str | None] | None = None) -> bool:
    """Whether hub access must stay local: asked for (:func:`is_offline`), or the hub found unreachable by the one
    probe this process makes (``probe``, default :func:`probe_hub`; then :func:`go_offline`). Call it before a
    first hub request; later calls cost nothing."""
    if is_offline() or hf_constants.HF_HUB_OFFLINE:
        return True
    if "reachable" not in _PROBED:
        reason = (probe or probe_hub)()
        _PROBED["reachable"] = reason is None
        if reason is not None:
            go_offline(reason)
    return not _PROBED["reachable"]


def files_under(folder: Path | None) -> list[str]:
    """Relative paths of the files under ``folder`` (hub download metadata in ``.cache`` left out)."""
    if folder is None or not folder.is_dir():
        return []
    return [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(folder).parts
    ]


def hf_snapshot(repo: str, repo_type: str, revision: str | None) -> Path | None:
    """The HF cache's snapshot folder of the pinned revision, when that revision is cached (no network)."""
    try:
        folder = snapshot_download(repo, repo_type=repo_type, revision=revision, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError) or an unreadable cache: nothing there
        return None
    return Path(str(folder))


def hf_cached(repo: str, filename: str, repo_type: str, revision: str | None) -> Path | None:
    """The file in the shared HF cache at the pinned revision, when it is there (no network)."""
    found = try_to_load_from_cache(repo, filename, revision=revision, repo_type=repo_type)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None
