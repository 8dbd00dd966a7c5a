"""Where data files come from: a local path, a Hugging Face Hub file, or a URL; one file or several.

- a local path is read where it is;
- ``hf://datasets/<owner>/<repo>[@<revision>]/<file>`` (also ``hf://dataset/...``, ``models``, ``spaces``) or a
  mapping ``{repo, filename, repo_type, revision}`` downloads that raw file with ``huggingface_hub`` (HF
  ``datasets`` 4+ no longer runs loading scripts such as Tevatron's, so raw files are the way) into the shared
  Hugging Face cache (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), at the pinned revision, so every
  project and ``huggingface-cli download`` share one copy. A file copied by hand to
  ``<cache>/sources/hf/<repo_type>/<owner>/<repo>/<revision>/<file>`` (``<revision>``: the pin, URL-quoted, so
  ``refs/convert/parquet`` is one folder, or ``main``; the folder older versions downloaded into) is used first; a
  changed pin never reuses the old file. Copies at ``.../<repo>/<file>`` (no revision folder) are not used;
  errors point at them;
- ``http(s)://...`` (or ``{url}``) downloads with resume (HTTP Range) into ``<cache>/sources/url/<host>/<path>``,
  atomically (a ``.part`` file grows; the final name appears only when complete).

Every remote target stays inside ``<cache>/sources``: ``..``, ``.``, empty segments, absolute paths and
backslashes are rejected, and the resolved target is checked to lie inside the cache.

Several files (:func:`resolve_sources`): a list of sources (read in the given order), a glob (``data/shard_*.jsonl``,
local or on the hub) or a hub folder (``hf://datasets/<owner>/<repo>@<rev>/data/``, trailing slash), expanded in
natural order (``shard_2`` before ``shard_10``). Offline, a hub glob resolves against its cache folder. A mapping
may say how many files it must yield (``count``), so a half-copied folder is never read as the whole.

A file already at its cache location (or in the HF cache) is used without any network access, so users on offline
machines can copy files there by hand. Offline (``HF_HUB_OFFLINE=1``, ``XQG_OFFLINE=1``, or no network), a missing
remote file fails at once with a message naming the URL to download and the path to put it at.

No network, no retries: before the first hub request of a process, :func:`xqg.data.hub_cache.hub_offline` probes the hub once (one
request, a few seconds at most); when it cannot be reached the whole process switches to offline mode
(``HF_HUB_OFFLINE=1`` for huggingface_hub, transformers and child processes), so no later call, ours or a
library's ``from_pretrained``, spends ~25 s in connection retries.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, hf_hub_download
from tqdm.auto import tqdm

from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.data.hub_cache import files_under, hf_cached, hf_snapshot, hub_offline, is_offline

_TYPES = {
    "dataset": "dataset",
    "datasets": "dataset",
    "model": "model",
    "models": "model",
    "space": "space",
    "spaces": "space",
}
_SHAPE = "must look like hf://datasets/<owner>/<repo>[@<revision>]/<file>"
# revisions that contain "/" (as HfFileSystem recognises them): refs/convert/<name>, refs/pr/<n>
_SPECIAL_REVISION = re.compile(r"^(refs/convert/[\w.-]+|refs/pr/\d+)(?:/|$)")
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GLOB_CHARS = ("*", "?", "[")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers by value: ``shard_2`` before ``shard_10``."""
    parts = re.split(r"(\d+)", name)
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name)


def is_pattern(path: str) -> bool:
    return any(c in path for c in _GLOB_CHARS)


def safe_relpath(path: str, what: str) -> str:
    """``path`` as a relative POSIX path with no ``..``/``.``/empty segments (a hub file or URL path)."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path or re.match(r"^[A-Za-z]:", path):
        raise XqgInputError(f"{what} {path!r} must be a relative path inside the repository", field="source")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise XqgInputError(
            f"{what} {path!r} has an empty, '.' or '..' segment; it must stay inside the repository",
            field="source",
        )
    return path


def confined(target: Path, cache: Path) -> Path:
    """``target`` if it resolves inside ``<cache>/sources`` (symlinks included), else an input error."""
    root = (cache / "sources").resolve()
    if not target.resolve().is_relative_to(root):
        raise XqgInputError(f"source target {target} lies outside the download cache {root}", field="source")
    return target


@dataclass(frozen=True)
class HubFile:
    """A file (or, with a pattern or trailing ``/``, a set of files) in a hub repository at one revision."""

    repo: str
    filename: str
    repo_type: str = "dataset"
    revision: str | None = None

    def __post_init__(self) -> None:
        parts = self.repo.split("/")
        if len(parts) != 2 or not all(_REPO_PART.match(p) and ".." not in p for p in parts):
            raise XqgInputError(f"hub repository {self.repo!r} must be '<owner>/<name>'", field="source")
        if self.repo_type not in _TYPES.values():
            raise XqgInputError(f"unknown hub repo_type {self.repo_type!r}", field="source")
        if self.revision is not None and (
            self.revision in ("", ".", "..") or ".." in self.revision.split("/") or "\\" in self.revision
        ):
            raise XqgInputError(f"bad hub revision {self.revision!r}", field="source")
        safe_relpath(self.filename.rstrip("/") or "/", "hub file")

    @property
    def many(self) -> bool:
        """A glob pattern or a folder (trailing ``/``): expands to several files."""
        return self.filename.endswith("/") or is_pattern(self.filename)

    def url_for(self, filename: str) -> str:
        prefix = {"dataset": "datasets/", "space": "spaces/"}.get(self.repo_type, "")
        rev = urllib.parse.quote(self.revision or "main", safe="")
        return f"https://huggingface.co/{prefix}{self.repo}/resolve/{rev}/{filename}"

    @property
    def url(self) -> str:
        return self.url_for(self.filename)

    @property
    def tree_url(self) -> str:
        """The web page listing the folder of :attr:`filename` at this revision."""
        prefix = {"dataset": "datasets/", "space": "spaces/"}.get(self.repo_type, "")
        rev = urllib.parse.quote(self.revision or "main", safe="")
        folder = self.filename.rsplit("/", 1)[0] if "/" in self.filename else ""
        return f"https://huggingface.co/{prefix}{self.repo}/tree/{rev}/{folder}".rstrip("/")

    def local_dir(self, cache_dir: Path) -> Path:
        """``<cache>/sources/hf/<type>/<owner>/<repo>/<revision or main>`` (the revision URL-quoted)."""
        rev = urllib.parse.quote(self.revision or "main", safe="")
        return Path(cache_dir) / "sources" / "hf" / self.repo_type / self.repo / rev

    def legacy_target(self, cache_dir: Path) -> Path:
        """Where versions before the revision folder put this file (never used, only pointed at)."""
        return Path(cache_dir) / "sources" / "hf" / self.repo_type / self.repo / self.filename

    def target(self, cache_dir: Path) -> Path:
        return confined(self.local_dir(cache_dir) / self.filename, Path(cache_dir))


def parse_hub(spec: str) -> HubFile:
    """``hf://<type>/<owner>/<repo>[@<revision>]/<path>``; a revision may contain ``/`` when it is one of the
    hub's special refs (``refs/convert/parquet``, ``refs/pr/3``), written plain or URL-encoded."""
    rest = spec[len("hf://") :]
    kind, _, rest = rest.partition("/")
    if kind not in _TYPES:
        raise XqgInputError(f"hub source {spec!r} {_SHAPE}", field="source")
    owner, _, rest = rest.partition("/")
    name, _, rest = rest.partition("/")
    revision: str | None = None
    if "@" in name:
        name, revision = name.split("@", 1)
        revision = urllib.parse.unquote(revision)  # refs%2Fconvert%2Fparquet: the path follows the next "/"
        m = _SPECIAL_REVISION.match(f"{revision}/{rest}") if revision == "refs" else None
        if m:  # written plain: refs/convert/parquet/<path>
            rest = f"{revision}/{rest}"[len(m.group(0)) :]
            revision = m.group(1)
    if not owner or not name or not rest or (revision is not None and not revision):
        raise XqgInputError(f"hub source {spec!r} {_SHAPE}", field="source")
    return HubFile(f"{owner}/{name}", rest, _TYPES[kind], revision)


def hub_from_mapping(spec: Mapping[str, Any], filename: str) -> HubFile:
    repo = str(spec.get("repo") or spec.get("repo_id"))
    revision = spec.get("revision")
    return HubFile(repo, filename, str(spec.get("repo_type", "dataset")), str(revision) if revision else None)


# -- one file -------------------------------------------------------------------------------------------------
def resolve_source(
    spec: str | Path | Mapping[str, Any],
    cache_dir: str | Path,
    offline: bool | None = None,
    what: str = "file",
) -> Path:
    """The local path of a one-file ``spec``, downloading it when it is remote (module doc). ``offline``: None
    (default) asks :func:`is_offline`, then probes the hub once before a first hub request; True/False decide.

    A mapping may name a local copy and its origin together (``{path, url}`` or ``{path, repo, filename}``):
    the local copy is used when it exists, else the remote one is fetched; ``note`` adds a hint to errors.
    """
    paths = resolve_sources(spec, cache_dir, offline=offline, what=what)
    if len(paths) != 1:
        raise XqgInputError(f"the {what} must be one file, but its source names {len(paths)}", field="source")
    return paths[0]


def resolve_sources(
    spec: Any, cache_dir: str | Path, offline: bool | None = None, what: str = "file"
) -> list[Path]:
    """Every local file of ``spec`` (one file, a list, a glob, a hub folder), in a stable order (module doc)."""
    offline = True if offline is None and is_offline() else offline
    cache = Path(cache_dir)
    if isinstance(spec, Sequence) and not isinstance(spec, str | bytes):
        if not spec:
            raise XqgInputError(f"empty list of sources for the {what}", field="source")
        return [p for item in spec for p in resolve_sources(item, cache, offline, what)]
    if isinstance(spec, Mapping):
        return _mapping(spec, cache, offline, what)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        raise XqgInputError(f"no source given for the {what}", field="source")
    s = str(spec)
    if s.startswith("hf://"):
        return _hub(parse_hub(s), cache, offline, what)
    if s.startswith(("http://", "https://")):
        return [_url(s, cache, offline, what)]
    return _local(s, what)


def _mapping(spec: Mapping[str, Any], cache: Path, offline: bool | None, what: str) -> list[Path]:
    if spec.get("note"):  # a human hint on where the file comes from, added to every error message
        what = f"{what} ({spec['note']})"
    count = spec.get("count")
    if count is not None and (isinstance(count, bool) or not str(count).isdigit() or int(count) < 1):
        raise XqgInputError(f"count must be a positive number of files, got {count!r}", field="source.count")
    local = spec.get("path")
    repo = spec.get("repo") or spec.get("repo_id")
    filenames = spec.get("filename") or spec.get("filenames")
    has_remote = bool(spec.get("url") or (repo and filenames))
    if not local and not has_remote:
        raise XqgInputError(
            f"source {dict(spec)!r} needs 'path', 'url', or 'repo' and 'filename'", field="source"
        )
    paths: list[Path] = []
    if local:
        found = _local_matches(str(local))
        if found or not has_remote:
            paths = found or _local(str(local), what)
    if not paths:
        if spec.get("url"):
            urls = spec["url"] if isinstance(spec["url"], list | tuple) else [spec["url"]]
            paths = [_url(str(u), cache, offline, what, local) for u in urls]
        else:
            names = filenames if isinstance(filenames, list | tuple) else [filenames]
            paths = [
                p for n in names for p in _hub(hub_from_mapping(spec, str(n)), cache, offline, what, local)
            ]
    if count is not None and len(paths) != int(count):
        raise MissingResourceError(
            f"{what}: expected {int(count)} files, found {len(paths)} ({paths[0].parent if paths else local}); "
            "copy the missing ones or fix 'count'"
        )
    return paths


def _local_matches(path: str) -> list[Path]:
    p = os.path.expanduser(path)
    if is_pattern(p):
        return sorted((Path(m) for m in glob.glob(p) if Path(m).is_file()), key=lambda x: natural_key(str(x)))
    return [Path(p)] if Path(p).exists() else []


def _local(path: str, what: str) -> list[Path]:
    found = _local_matches(path)
    if not found:
        kind = "no file matches" if is_pattern(path) else "not found"
        raise MissingResourceError(f"{what} {kind}: {Path(path).expanduser()}")
    return found


def _missing(
    what: str, url: str, target: Path, reason: str, local: Any = None, hub: HubFile | None = None
) -> MissingResourceError:
    where = f"{local} (or {target})" if local else str(target)
    fetch = ""
    if hub is not None:
        kind = {"dataset": " --repo-type dataset", "space": " --repo-type space"}.get(hub.repo_type, "")
        rev = f" --revision {hub.revision}" if hub.revision else ""
        fetch = f" (or `huggingface-cli download {hub.repo} {hub.filename}{kind}{rev}` into the HF cache)"
    return MissingResourceError(
        f"{what} is not available {reason}: download {url} and put it at {where}{fetch}, or point the config at a "
        "local copy"
    )


# -- the hub ----------------------------------------------------------------------------------------------------
def _hub(hub: HubFile, cache: Path, offline: bool | None, what: str, local: Any = None) -> list[Path]:
    if hub.many:
        return [
            _hub_file(h, cache, offline, what, local) for h in _expand_hub(hub, cache, offline, what, local)
        ]
    return [_hub_file(hub, cache, offline, what, local)]


def _expand_hub(hub: HubFile, cache: Path, offline: bool | None, what: str, local: Any) -> list[HubFile]:
    """The files a hub glob or folder names: listed online, else those already in its cache folder."""
    pattern = hub.filename + "*" if hub.filename.endswith("/") else hub.filename
    folder = hub.local_dir(cache)
    if offline is None:
        offline = hub_offline()
    if offline:
        names = sorted(
            {*files_under(folder), *files_under(hf_snapshot(hub.repo, hub.repo_type, hub.revision))}
        )
        reason = "offline (HF_HUB_OFFLINE=1)"
    else:
        try:
            names = HfApi().list_repo_files(hub.repo, revision=hub.revision, repo_type=hub.repo_type)
        except Exception as e:  # network errors, missing repos: one clear message
            first = (str(e).splitlines() or [""])[0][:200]
            raise _missing(
                what, hub.url, folder / hub.filename, f"({type(e).__name__}: {first})", local
            ) from e
        reason = "on the hub"
    matches = sorted((n for n in names if fnmatch.fnmatchcase(n, pattern)), key=natural_key)
    if not matches:
        where = f"{local} (or {folder})" if local else str(folder)
        kind = {"dataset": " --repo-type dataset", "space": " --repo-type space"}.get(hub.repo_type, "")
        rev = f" --revision {hub.revision}" if hub.revision else ""
        raise MissingResourceError(
            f"{what}: no file matches {pattern!r} {reason}; download them with `huggingface-cli download "
            f"{hub.repo}{kind}{rev} --include '{pattern}' --local-dir {folder}` (from {hub.tree_url}) or put "
            f"them at {where}"
        )
    return [replace(hub, filename=safe_relpath(n, "hub file")) for n in matches]


def _hub_file(hub: HubFile, cache: Path, offline: bool | None, what: str, local: Any = None) -> Path:
    target = hub.target(cache)
    if target.is_file():  # copied by hand (or downloaded by an older xqg) for this revision
        return target
    cached = hf_cached(hub.repo, hub.filename, hub.repo_type, hub.revision)
    if cached is not None:
        return cached
    legacy = hub.legacy_target(cache)
    if legacy.is_file():
        what = f"{what} (an unpinned copy at {legacy} from an older xqg is not used: move it if it is this revision)"
    if offline is None:
        offline = hub_offline()
    if offline:
        raise _missing(what, hub.url, target, "offline (HF_HUB_OFFLINE=1)", local, hub)
    try:
        path = hf_hub_download(
            repo_id=hub.repo, filename=hub.filename, repo_type=hub.repo_type, revision=hub.revision
        )
    except Exception as e:  # network errors, missing repos, gated files: one clear message
        first = (str(e).splitlines() or [""])[0][:200]
        raise _missing(what, hub.url, target, f"({type(e).__name__}: {first})", local, hub) from e
    return Path(path)


# -- URLs -------------------------------------------------------------------------------------------------------
def url_target(url: str, cache: Path) -> Path:
    """``<cache>/sources/url/<host>/<path>``; a path that would leave that folder is an input error."""
    u = urllib.parse.urlsplit(url)
    host = (u.hostname or "").lower()
    if not host or not re.fullmatch(r"[a-z0-9.-]+", host) or host.strip(".") != host or ".." in host:
        raise XqgInputError(f"URL {url!r} has no usable host name", field="source")
    raw = u.path.lstrip("/")
    parts = [urllib.parse.unquote(p) for p in raw.split("/")] if raw else ["index"]
    if parts[-1] == "":
        parts[-1] = "index"
    safe_relpath("/".join(parts), "URL path")
    if any("/" in p for p in parts):
        raise XqgInputError(f"URL {url!r} has an encoded '/' in its path", field="source")
    return confined(cache / "sources" / "url" / host / Path(*parts), cache)


def _url(url: str, cache: Path, offline: bool | None, what: str, local: Any = None) -> Path:
    target = url_target(url, cache)
    if target.is_file():
        return target
    if offline is None:
        offline = is_offline()
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
