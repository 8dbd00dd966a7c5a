"""Runs side by side on one cache: each artifact is built once (advisory build locks), the other run waits and
reuses it; complete artifacts are read without any lock."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from xqg.core import locking
from xqg.core.artifacts import ArtifactDir
from xqg.core.locking import complete_or_claim, lock_path, release_every_lock
from xqg.core.staging import staged_artifact


def _art(root: Path, name: str = "thing") -> ArtifactDir:
    return ArtifactDir.for_spec(root, "demo_kind", config={"name": name})


def _free(path: Path) -> bool:
    """Whether another holder could take the lock now (a separate descriptor: flock does not nest across them)."""
    other = FileLock(path, timeout=0)
    try:
        other.acquire()
    except TimeoutError:
        return False
    other.release()
    return True


def test_claim_holds_the_lock_until_the_artifact_is_finalized(tmp_path: Path) -> None:
    art = _art(tmp_path)
    assert complete_or_claim(art) is False
    lock = lock_path(art)
    assert lock.exists() and not _free(lock)
    assert complete_or_claim(art) is False  # re-entering its own build does not wait
    art.begin()
    art.finalize(counts={"n": 1})
    assert art.complete and not lock.exists() and _free(lock)
    assert complete_or_claim(art) is True


def test_a_failed_staged_build_releases_its_lock(tmp_path: Path) -> None:
    art = _art(tmp_path)
    assert complete_or_claim(art) is False
    with pytest.raises(RuntimeError, match="disk on fire"), staged_artifact(art):
        raise RuntimeError("disk on fire")
    assert not art.complete and not lock_path(art).exists()
    assert list((tmp_path / "demo_kind").iterdir()) == []  # no store, no staging folder, no lock file


def test_a_complete_artifact_is_read_without_a_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    art = _art(tmp_path)
    art.begin()
    art.finalize()

    def no_lock(*_a: object, **_k: object) -> None:
        raise AssertionError("a complete artifact must not need its lock (read-only caches)")

    monkeypatch.setattr(locking, "FileLock", no_lock)
    assert complete_or_claim(art) is True
    assert sorted(p.name for p in (tmp_path / "demo_kind").iterdir()) == [art.fingerprint]


def test_a_waiting_run_reuses_what_the_other_run_built(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locking, "_POLL_S", 0.05)
    art = _art(tmp_path)
    assert complete_or_claim(art) is False
    result: list[bool] = []
    with caplog.at_level(logging.INFO, logger="xqg.core.locking"):
        waiter = threading.Thread(target=lambda: result.append(complete_or_claim(_art(tmp_path))))
        waiter.start()
        deadline = time.monotonic() + 10
        while "waiting for another run" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiter.is_alive() and not result  # it waits while this "run" builds
        art.begin()
        art.finalize()
        waiter.join(timeout=10)
    assert result == [True]
    assert (
        f"waiting for another run to finish demo_kind/{art.fingerprint} (lock {lock_path(art)})"
        in caplog.text
    )


def test_a_rank_other_than_0_builds_under_rank_0s_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    art = _art(tmp_path)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert complete_or_claim(art) is False and not lock_path(art).exists()


# Each process waits for the go file, then builds the synthetic world and its corpus store; the world build is
# slowed down so that the two runs surely overlap. Prints what it built and what it got.
_RUN = textwrap.dedent(
    """
    import json, logging, sys, time
    from pathlib import Path
    import xqg.data.synthetic as synthetic
    from xqg.data.corpus import open_corpus

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    cache, go = Path(sys.argv[1]), Path(sys.argv[2])
    write_world = synthetic._write_world

    def slow_write_world(wc, root):
        print("WROTE WORLD", file=sys.stderr, flush=True)
        time.sleep(2)
        return write_world(wc, root)

    synthetic._write_world = slow_write_world
    while not go.exists():
        time.sleep(0.01)
    world = synthetic.build_world(synthetic.WorldConfig(n_entities=40, seed=3), cache)
    corpus = open_corpus(world.corpus, cache_dir=cache)
    print(json.dumps({"world": world.fingerprint, "corpus": corpus.fingerprint, "n": len(corpus)}))
    """
)


@pytest.mark.slow
def test_two_runs_on_one_empty_cache_build_each_artifact_once(tmp_path: Path) -> None:
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN, str(cache), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    time.sleep(1)
    go.touch()
    outs = [r.communicate(timeout=300) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [err[-2000:] for _, err in outs]
    logs = "".join(err for _, err in outs)
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert results[0] == results[1]  # both runs got the same world and corpus store
    assert logs.count("WROTE WORLD") == 1, logs  # built once ...
    assert logs.count(f"building synthetic/{results[0]['world']}") == 1
    assert logs.count("waiting for another run to finish synthetic/") == 1  # ... the other run waited
    assert logs.count("building corpus/") == 1
    leftovers = [
        p.name for p in cache.rglob("*") if p.name.endswith(".lock") or p.name.startswith(".building-")
    ]
    assert leftovers == []


def test_the_end_of_a_job_releases_what_a_failed_build_still_holds(tmp_path: Path) -> None:
    art, other = _art(tmp_path), _art(tmp_path, "other")
    assert complete_or_claim(art) is False and complete_or_claim(other, share="0-of-2") is False
    release_every_lock()  # what train.py / evaluate.py do when a job ends, even by an exception
    assert not lock_path(art).exists() and _free(lock_path(art)) and _free(lock_path(other, "0-of-2"))
