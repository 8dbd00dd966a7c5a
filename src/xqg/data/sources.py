"""Where data files come from: a local path, a Hugging Face Hub file, or a URL.

- a local path is read where it is;
- ``hf://datasets/<owner>/<repo>/<file>`` (also ``hf://dataset/...``) or ``{repo, filename, repo_type, revision}``
  downloads that raw file with ``huggingface_hub.hf_hub_download`` (HF ``datasets`` 4+ no longer runs loading
  scripts such as Tevatron's, so raw files are the way) into ``<cache>/sources/hf/<repo_type>/<repo>/<file>``;
- ``http(s)://...`` (or ``{url}``) downloads with resume (HTTP Range) into ``<cache>/sources/url/<host>/<path>``,
  atomically (a ``.part`` file grows; the final name appears only when complete).

A file already at its cache location is used without any network access, so users on offline machines can copy
files there by hand. Offline (``HF_HUB_OFFLINE=1``, ``XQG_OFFLINE=1``, or no network), a missing remote file fails
at once with a message naming the URL to download and the path to put it at.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download
from tqdm.auto import tqdm

from xqg.core.errors import MissingResourceError, XqgInputError

_TRUE = ("1", "true", "yes", "on")


def is_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "XQG_OFFLINE"))


@dataclass(frozen=True)
class HubFile:
    repo: str
    filename: str
    repo_type: str = "dataset"
    revision: str | None = None

    @property
    def url(self) -> str:
        prefix = {"dataset": "datasets/", "space": "spaces/"}.get(self.repo_type, "")
        return f"https://huggingface.co/{prefix}{self.repo}/resolve/{self.revision or 'main'}/{self.filename}"

    def local_dir(self, cache_dir: Path) -> Path:
        return cache_dir / "sources" / "hf" / self.repo_type / self.repo

    def target(self, cache_dir: Path) -> Path:
        return self.local_dir(cache_dir) / self.filename


def parse_hub(spec: str) -> HubFile:
    """``hf://datasets/<owner>/<repo>/<path/in/repo>`` (``dataset``/``datasets``/``models``/``model``)."""
    rest = spec[len("hf://") :]
    kind, _, rest = rest.partition("/")
    types = {
        "dataset": "dataset",
        "datasets": "dataset",
        "model": "model",
        "models": "model",
        "space": "space",
        "spaces": "space",
    }
    if kind not in types:
        raise XqgInputError(
            f"hub source {spec!r} must look like hf://datasets/<owner>/<repo>/<file>", field="source"
        )
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise XqgInputError(
            f"hub source {spec!r} must look like hf://datasets/<owner>/<repo>/<file>", field="source"
        )
    repo = "/".join(parts[:2])
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    return HubFile(repo, "/".join(parts[2:]), types[kind], revision)


def resolve_source(
    spec: str | Path | Mapping[str, Any],
    cache_dir: str | Path,
    offline: bool | None = None,
    what: str = "file",
) -> Path:
    """The local path of ``spec``, downloading it into ``cache_dir`` when it is remote (see module doc).

    A mapping may name a local copy and its origin together (``{path, url}`` or ``{path, repo, filename}``):
    the local copy is used when it exists, else the remote one is fetched; ``note`` adds a hint to errors.
    """
    offline = is_offline() if offline is None else offline
    cache = Path(cache_dir)
    if isinstance(spec, Mapping):
        if spec.get("note"):  # a human hint on where the file comes from, added to every error message
            what = f"{what} ({spec['note']})"
        local = spec.get("path")
        repo = spec.get("repo") or spec.get("repo_id")
        has_remote = bool(spec.get("url") or (repo and spec.get("filename")))
        if local and (Path(str(local)).expanduser().exists() or not has_remote):
            return _local(local, what)
        if spec.get("url"):
            return _url(str(spec["url"]), cache, offline, what, local)
        if repo and spec.get("filename"):
            hub = HubFile(
                str(repo), str(spec["filename"]), str(spec.get("repo_type", "dataset")), spec.get("revision")
            )
            return _hub(hub, cache, offline, what, local)
        raise XqgInputError(f"source {spec!r} needs 'path', 'url', or 'repo' and 'filename'", field="source")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        raise XqgInputError(f"no source given for the {what}", field="source")
    s = str(spec)
    if s.startswith("hf://"):
        return _hub(parse_hub(s), cache, offline, what)
    if s.startswith(("http://", "https://")):
        return _url(s, cache, offline, what)
    return _local(s, what)


def _local(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise MissingResourceError(f"{what} not found: {p}")
    return p


def _missing(what: str, url: str, target: Path, reason: str, local: Any = None) -> MissingResourceError:
    where = f"{local} (or {target})" if local else str(target)
    return MissingResourceError(
        f"{what} is not available {reason}: download {url} and put it at {where}, or point the config at a local copy"
    )


def _hub(hub: HubFile, cache: Path, offline: bool, what: str, local: Any = None) -> Path:
    target = hub.target(cache)
    if target.is_file():
        return target
    if offline:
        raise _missing(what, hub.url, target, "offline (HF_HUB_OFFLINE=1)", local)
    try:
        path = hf_hub_download(
            repo_id=hub.repo,
            filename=hub.filename,
            repo_type=hub.repo_type,
            revision=hub.revision,
            local_dir=hub.local_dir(cache),
        )
    except Exception as e:  # network errors, missing repos, gated files: one clear message
        first = (str(e).splitlines() or [""])[0][:200]
        raise _missing(what, hub.url, target, f"({type(e).__name__}: {first})", local) from e
    return Path(path)


def url_target(url: str, cache: Path) -> Path:
    u = urllib.parse.urlsplit(url)
    parts = [p for p in u.path.split("/") if p and p not in (".", "..")]
    if not parts:
        parts = ["index"]
    return cache / "sources" / "url" / (u.hostname or "host") / Path(*parts)


def _url(url: str, cache: Path, offline: bool, what: str, local: Any = None) -> Path:
    target = url_target(url, cache)
    if target.is_file():
        return target
    if offline:
        raise _missing(what, url, target, "offline (HF_HUB_OFFLINE=1 / XQG_OFFLINE=1)", local)
    try:
        download_with_resume(url, target)
    except (urllib.error.URLError, OSError) as e:
        raise _missing(what, url, target, f"({type(e).__name__}: {e})", local) from e
    return target


def download_with_resume(url: str, target: Path, chunk: int = 1 << 20, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``target``; an interrupted download continues from its ``.part`` file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part file is already complete
            shutil.move(part, target)
            return target
        raise
    with resp:
        if have and resp.status != 206:  # server ignored Range: start over
            have = 0
        length = resp.headers.get("Content-Length")
        total = (int(length) + have) if length is not None else None
        with (
            open(part, "ab" if have else "wb") as f,
            tqdm(
                disable=None,
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=f"download {target.name}",
            ) as bar,
        ):
            while True:
                block = resp.read(chunk)
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and part.stat().st_size != total:
        raise OSError(
            f"download of {url} stopped at {part.stat().st_size} of {total} bytes; run again to resume"
        )
    os.replace(part, target)
    return target
