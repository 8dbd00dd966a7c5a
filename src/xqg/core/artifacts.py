"""Typed, self-describing, atomically written stage artifacts, addressed by fingerprint.

Every stage writes into ``<cache>/<kind>/<fingerprint>/``. The fingerprint hashes everything that determines the
output (the config values that matter, the fingerprints of the inputs and the stage's code version), so a changed
config can never reuse a stale cache, and a config change that does not matter reuses it. ``manifest.json`` is
written last: a directory without it is incomplete, and resumable stages keep their finished parts (each written
atomically) inside it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xqg import __version__
from xqg.core.locking import release_all

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
SPEC = "spec.json"


def _to_jsonable(obj: Any) -> Any:
    """Plain JSON types from dataclasses, paths, sets and numpy/torch scalars (callers pass plain data, never a
    config object: only ``xqg.tasks`` reads the Hydra config)."""
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot fingerprint object of type {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_to_jsonable)


def fingerprint(*parts: Any, length: int = 16) -> str:
    """Short sha256 hex digest of the canonical JSON of ``parts``."""
    return hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()[:length]


def _fingerprint_cache_path() -> Path:
    base = os.environ.get("XQG_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "xqg")
    return Path(base) / "file_fingerprints.json"


#: A file changed less than this long before it was hashed is not memoized: on file systems with coarse
#: timestamps a second same-size edit within one tick would leave every stat field unchanged ("racily clean").
_RACY_S = 3.0
_SAMPLE_BLOCK = 1 << 16
_SAMPLES = 16


def _stat_key(p: Path, st: os.stat_result) -> str:
    """What must be unchanged for a remembered hash to be trusted. ``st_ctime`` cannot be set by users: every
    write, ``utime`` (``touch -r``) or rename updates it; ``cp -p`` and sync tools that write a temporary file and
    rename it give a new inode; the device tells apart files on different mounts that share an inode number."""
    return f"{p}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def _sampled_digest(f: Any, size: int) -> str:
    """Hash of the first and last 64 KiB and ``_SAMPLES`` blocks spread evenly between them: a second, cheap
    check of a remembered hash (read ~1 MiB, whatever the file's size)."""
    h = hashlib.sha256(str(size).encode())
    offsets = {0, max(0, size - _SAMPLE_BLOCK)}
    offsets.update((size * i) // (_SAMPLES + 1) for i in range(1, _SAMPLES + 1))
    for off in sorted(offsets):
        f.seek(off)
        h.update(f.read(_SAMPLE_BLOCK))
    return h.hexdigest()[:16]


def _read_memo(cache_file: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        memo = json.loads(cache_file.read_text())
        if isinstance(memo, dict):
            return memo
    return {}


def file_fingerprint(path: str | Path, *, use_cache: bool = True) -> str:
    """Content hash of a file (sha256 of every byte, streamed; 16 hex digits).

    Hashing an 18M-row corpus takes minutes, so the hash is remembered (``$XQG_HOME/file_fingerprints.json``)
    under the file's path, device, inode, size, mtime and ctime (:func:`_stat_key`), and a remembered hash is used
    only when, in addition, a sampled-block hash of the file read now matches the one stored with it. A same-size
    edit that keeps the mtime (``touch -r``, ``cp -p``, ``os.utime``, rsync ``-t``) changes the ctime or the
    inode, so it is hashed again; a file modified within :data:`_RACY_S` seconds of hashing is never memoized, so
    coarse timestamps cannot hide a second edit; the sample check catches what the stat fields could still miss
    (e.g. a file system that does not keep ctime). The memo is only an accelerator: without it the result is the
    same.
    """
    p = Path(path).resolve()
    cache_file = _fingerprint_cache_path()
    with open(p, "rb") as f:
        st = os.fstat(f.fileno())
        key = _stat_key(p, st)
        memo = _read_memo(cache_file) if use_cache else {}
        entry = memo.get(key)
        if isinstance(entry, dict) and entry.get("sample") == _sampled_digest(f, st.st_size):
            return str(entry["sha256"])
        f.seek(0)
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
        digest = h.hexdigest()[:16]
        sample = _sampled_digest(f, st.st_size)
        after = os.fstat(f.fileno())
    changed_while_hashing = _stat_key(p, after) != key
    racy = time.time() - max(after.st_mtime, after.st_ctime) < _RACY_S
    if use_cache and not changed_while_hashing and not racy:
        memo = _read_memo(cache_file)  # re-read: another process may have added entries meanwhile
        memo[key] = {"sha256": digest, "sample": sample}
        with contextlib.suppress(OSError):
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache_file, json.dumps(memo, indent=0))
    return digest


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success it replaces ``dest`` atomically, on error it is
    removed, so readers never see a half-written file."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the usual umask-derived mode so a shared cache is readable.
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, dest)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(dest)  # a failed write() names no file: say which one (full disk, quota)
        raise


def atomic_write_bytes(dest: str | Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(dest: str | Path, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | Path, obj: Any) -> None:
    atomic_write_text(
        dest, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=_to_jsonable) + "\n"
    )


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class Manifest:
    """What an artifact is, how it was made and what it holds."""

    kind: str
    fingerprint: str
    code_version: str
    config: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    xqg_version: str = __version__
    created: str = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class ArtifactDir:
    """The folder of one artifact: ``<root>/<kind>/<fingerprint>/``.

    Build with :meth:`for_spec`, write parts into :attr:`path` (atomically, one file per finished unit of work),
    then :meth:`finalize`. ``complete`` is true only once the manifest exists.
    """

    def __init__(self, root: str | Path, kind: str, fp: str, spec: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.kind = kind
        self.fingerprint = fp
        self.path = self.root / kind / fp
        self.spec = dict(spec or {})

    @classmethod
    def for_spec(
        cls,
        root: str | Path,
        kind: str,
        *,
        config: Mapping[str, Any],
        inputs: Mapping[str, str] | None = None,
        code_version: str = "1",
    ) -> ArtifactDir:
        """Address an artifact by what determines it: config values that matter, input fingerprints, code."""
        spec = {
            "kind": kind,
            "code_version": str(code_version),
            "config": json.loads(canonical_json(config)),
            "inputs": dict(inputs or {}),
        }
        return cls(root, kind, fingerprint(spec), spec)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def complete(self) -> bool:
        return self.manifest_path.exists()

    def begin(self) -> Path:
        """Create the folder and record the spec being built (useful when inspecting an unfinished run)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.spec and not (self.path / SPEC).exists():
            atomic_write_json(self.path / SPEC, self.spec)
        return self.path

    def manifest(self) -> Manifest:
        return Manifest.from_dict(json.loads(self.manifest_path.read_text()))

    def finalize(
        self, counts: Mapping[str, int] | None = None, extra: Mapping[str, Any] | None = None
    ) -> Manifest:
        """Write the manifest last, marking the artifact complete."""
        m = Manifest(
            kind=self.kind,
            fingerprint=self.fingerprint,
            code_version=str(self.spec.get("code_version", "1")),
            config=dict(self.spec.get("config", {})),
            inputs=dict(self.spec.get("inputs", {})),
            counts={k: int(v) for k, v in (counts or {}).items()},
            extra=dict(extra or {}),
        )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, asdict(m))
        release_all(self)  # the build lock, if this process holds it (xqg.core.locking)
        return m

    def __repr__(self) -> str:  # pragma: no cover
        state = "complete" if self.complete else "incomplete"
        return f"ArtifactDir({self.path}, {state})"
