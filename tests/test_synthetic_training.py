"""Synthetic training queries (SWIM-IR style): the exact mixing ratio, seeded few-shot and passage samples, the
stage resuming after a kill with no pair lost or written twice, and the retriever's fingerprint (one test, one
generation: the machine is shared)."""

from __future__ import annotations

import os
import shutil
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.config import settings
from helpers.faults import KILLED, patch_to_die
from xqg.core.errors import XqgInputError
from xqg.data.corpus import open_corpus
from xqg.data.formats.tevatron import TevatronFile
from xqg.data.records import Passage, TrainExample
from xqg.data.synthetic_pairs import MixedExamples, few_shot, pair_qid, sample_rows
from xqg.tasks.studies.common import backbone_checkpoint
from xqg.tasks.synthetic_train import ensure_synthetic, generated_store, sampled_corpus
from xqg.tasks.train_generator import train_or_load as train_generator
from xqg.tasks.train_retriever import artifact_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _examples(prefix: str, n: int) -> list[TrainExample]:
    return [
        TrainExample(f"{prefix}{i}", f"q{i}", (), (Passage(f"{prefix}p{i}", "t", "x"),), ()) for i in range(n)
    ]


# -- mixing ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_real", "n_syn", "ratio", "size"), [(10, 37, 0.25, 40), (3, 50, 0.9, 30), (7, 2, 0.5, 20)]
)
def test_the_mixing_ratio_is_exact(n_real: int, n_syn: int, ratio: float, size: int) -> None:
    mixed = MixedExamples(_examples("r", n_real), _examples("s", n_syn), ratio, size=size, seed=3)
    synthetic = [mixed[i].qid for i in range(len(mixed)) if mixed.is_synthetic(i)]
    assert len(mixed) == size and len(synthetic) == round(ratio * size) == mixed.n_synthetic
    assert all(q.startswith("s") for q in synthetic)
    # without repetition until a source is used up (then each full cycle once more)
    for ids, pool in (
        (synthetic, n_syn),
        ([mixed[i].qid for i in range(size) if not mixed.is_synthetic(i)], n_real),
    ):
        counts = {q: ids.count(q) for q in set(ids)}
        assert max(counts.values()) - min(counts.values()) <= 1 and len(counts) == min(pool, len(ids))
    again = MixedExamples(_examples("r", n_real), _examples("s", n_syn), ratio, size=size, seed=3)
    assert [again[i].qid for i in range(size)] == [mixed[i].qid for i in range(size)]


def test_natural_mixing_keeps_both_sources_whole_and_bad_ratios_fail() -> None:
    mixed = MixedExamples(_examples("r", 4), _examples("s", 6))
    assert sorted(mixed[i].qid for i in range(len(mixed))) == sorted(
        [f"r{i}" for i in range(4)] + [f"s{i}" for i in range(6)]
    )
    with pytest.raises(XqgInputError, match="ratio"):
        MixedExamples(_examples("r", 4), [], 0.5)
    with pytest.raises(XqgInputError, match="ratio"):
        MixedExamples(_examples("r", 4), _examples("s", 4), 1.5)


def test_few_shot_and_passage_samples_are_seeded_and_independent_per_language() -> None:
    real = _examples("r", 50)
    assert [e.qid for e in few_shot(real, 10, 1)] == [e.qid for e in few_shot(real, 10, 1)]
    assert len(few_shot(real, 10, 1)) == 10 and few_shot(real, None, 1) == real and few_shot(real, 0, 1) == []
    ja = sample_rows(1000, 30, 42, "ja")
    assert (
        ja == sample_rows(1000, 30, 42, "ja") and ja != sample_rows(1000, 30, 42, "ko") and len(set(ja)) == 30
    )
    assert sample_rows(10, 30, 42, "ja") == list(range(10))


# -- the stage ---------------------------------------------------------------------------------------------------
_TINY = (
    "data.world.n_entities=30",
    "backbone.tiny.vocab_size=500",
    "logger=none",
    "generator.train.max_steps=4",
    "generator.model.tiny.d_model=32",
    "generator.model.tiny.d_ff=64",
    "generator.model.tiny.num_layers=1",
    "generator.model.tiny.num_decoder_layers=1",
    "train.synthetic.enabled=true",
    "train.synthetic.languages=[ja,fi]",
    "train.synthetic.passages_per_language=8",
    "train.synthetic.shard_size=3",  # three shards per language
    "train.synthetic.n_negatives=3",
)


@pytest.fixture(scope="module")
def generator_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache holding the tiny generator (trained once, copied into each test's cache)."""
    cache = tmp_path_factory.mktemp("gen_cache")
    train_generator(settings("train", *_TINY, cache=cache))
    yield cache


def _cache_with_generator(generator_cache: Path, dest: Path) -> Path:
    shutil.copytree(generator_cache, dest)
    return dest


def _fork_and_die(target: str, n: int, cache: Path) -> None:
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            patch_to_die(target, n)
            ensure_synthetic(settings("train", *_TINY, cache=cache), lambda s: Path("unused"))
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == KILLED, "the kill point was not reached"


@pytest.mark.slow
def test_the_stage_resumes_after_a_kill_with_no_pair_lost_or_duplicated_and_is_fingerprinted(
    generator_cache: Path, tmp_path: Path
) -> None:
    ref_cache = _cache_with_generator(generator_cache, tmp_path / "ref")
    cache = _cache_with_generator(generator_cache, tmp_path / "killed")
    ref = ensure_synthetic(settings("train", *_TINY, cache=ref_cache), lambda s: Path("unused"))
    assert ref is not None
    # killed after the first finished generation shard of the first language, then after the first pair file
    _fork_and_die("xqg.generation.store:finish_shard", 1, cache)
    _fork_and_die("xqg.tasks.synthetic_train:write_tevatron", 1, cache)
    s = settings("train", *_TINY, cache=cache)
    got = ensure_synthetic(s, lambda s: Path("unused"))
    assert got is not None and got.identity == ref.identity
    corpus = open_corpus(s.data.bundle(str(cache)).corpus_path, str(cache))
    for lang, path in got.pair_files.items():
        rows = [
            (e.qid, e.query, e.positives[0].docid, tuple(n.docid for n in e.negatives))
            for e in TevatronFile(path)[:]
        ]
        expected = [
            (e.qid, e.query, e.positives[0].docid, tuple(n.docid for n in e.negatives))
            for e in TevatronFile(ref.pair_files[lang])[:]
        ]
        assert rows == expected
        qids = [r[0] for r in rows]
        assert len(qids) == len(set(qids))  # none twice
        sampled = sampled_corpus(corpus, lang, s)
        store = generated_store(str(train_generator(s)), sampled, lang, s)
        nonempty = {pair_qid(lang, r.docid, r.k) for r in store.iter_records() if r.text.strip()}
        assert set(qids) == nonempty and len(store) == 8  # none lost: every sampled passage, once
        assert all(r[2] not in r[3] and len(r[3]) == 3 for r in rows)  # random negatives, never the positive
    # round trip and mined negatives with a given retriever (the tiny backbone as initialised): a pair is kept
    # only when its passage is in the retriever's top 5; its negatives are that ranking's others
    retriever = backbone_checkpoint(settings("evaluate", *_TINY, cache=cache))
    mined = ensure_synthetic(
        settings(
            "train",
            *_TINY,
            "train.synthetic.round_trip=true",
            "train.synthetic.round_trip_depth=5",
            "train.synthetic.negatives=mined",
            f"train.synthetic.retriever={retriever}",
            cache=cache,
        ),
        lambda s: Path("unused"),
    )
    assert mined is not None and mined.identity["pairs"] != got.identity["pairs"]
    for lang, path in mined.pair_files.items():
        kept = TevatronFile(path)[:]
        assert len(kept) <= len(TevatronFile(got.pair_files[lang]))
        assert all(
            len(e.negatives) == 3 and e.positives[0].docid not in {n.docid for n in e.negatives} for e in kept
        )
    # the retriever's fingerprint: unchanged when disabled, the pairs and few-shot size when enabled
    off = artifact_for(settings("train", *_TINY, "train.synthetic.enabled=false", cache=cache))
    on = artifact_for(s)
    more = artifact_for(settings("train", *_TINY, "train.synthetic.few_shot=5", cache=cache))
    assert "synthetic" not in off.spec["config"]
    assert set(on.spec["config"]["synthetic"]["pairs"]) == {"ja", "fi"}
    assert len({off.fingerprint, on.fingerprint, more.fingerprint}) == 3


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.synthetic.negatives=hard", "train.synthetic.negatives"),
        ("train.synthetic.ratio=1.5", "train.synthetic.ratio"),
        ("train.synthetic.max_languages=9", "train.synthetic.max_languages"),
        ("train.synthetic.few_shot=-1", "train.synthetic.few_shot"),
    ],
)
def test_bad_synthetic_settings_fail_when_the_config_is_composed(override: str, key: str) -> None:
    with pytest.raises(XqgInputError) as e:
        settings("train", override)
    assert e.value.field == key
