"""Bad input of every kind gives exactly one clean line naming file:line:field or the config key (exit code 2 at
the fronts), and good input that looks odd is accepted with the right result: never a traceback, never a silent
result.

Table-driven: config values (through the real composed config + ``validate``), ``xqg-eval`` flags and files,
question JSONL, predictions, runs (Tevatron/TREC), Tevatron training JSONL(.gz), generator pairs, released query
files, XQuAD-R, paths (directories, missing, unreadable, empty, gzip that is not, bad UTF-8), read-only and full
places. Most cases run in-process; a few go through a subprocess to prove the exit code and the single line.
"""

from __future__ import annotations

import copy
import errno
import gzip
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import HydraException

from helpers.config import compose_config, settings
from helpers.paths import REPO
from xqg.core.artifacts import atomic_path
from xqg.core.errors import XqgInputError
from xqg.data.formats.jsonl import write_jsonl
from xqg.data.formats.pairs import read_generator_pairs
from xqg.data.formats.predictions import read_predictions
from xqg.data.formats.released import iter_released_records
from xqg.data.formats.runs import read_run, write_run
from xqg.data.formats.tevatron import TevatronFile, iter_tevatron
from xqg.data.formats.xor import read_xor_questions
from xqg.data.xquad_r import load_xquad_r
from xqg.evaluation.scoring import evaluate_predictions
from xqg.tasks import entrypoints, eval_cli
from xqg.tasks.config_errors import config_error_line
from xqg.tasks.schema import to_settings, validate

NLTK = str(REPO.parent / "shared" / "data" / "nltk_data")


def clean_line(e: BaseException | str) -> str:
    """The error as the user sees it: one line, no traceback."""
    msg = str(e)
    assert "\n" not in msg.strip() and "Traceback" not in msg, msg
    return msg


# -- config values: the composed config, changed one value at a time, then validated -------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cfg")
    kw = {"cache": root / "cache", "out": root / "out"}
    return {
        "evaluate": settings("evaluate", "logger=none", **kw),
        "xqg": settings("evaluate", "logger=none", "augmentation=xqg", **kw),
        "train": settings("train", "logger=none", **kw),
        "xquad": settings("evaluate", "logger=none", "data=xquad_r", **kw),
    }


def _set(obj: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for name in parents:
        obj = getattr(obj, name)
    setattr(obj, last, value)


# (base, {key: value}, key named in the error, or None: accepted)
CONFIG_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    # retrieval
    ("evaluate", {"retrieval.depth": 0}, "retrieval.depth"),
    ("evaluate", {"retrieval.depth": -1}, "retrieval.depth"),
    ("evaluate", {"retrieval.dtype": "fp8"}, "retrieval.dtype"),
    ("evaluate", {"retrieval.device": "tpu"}, "retrieval.device"),
    ("evaluate", {"retrieval.device": "cuda:x"}, "retrieval.device"),
    ("evaluate", {"retrieval.split": "train"}, "retrieval.split"),
    ("evaluate", {"retrieval.backend": "annoy"}, "retrieval.backend"),
    ("evaluate", {"retrieval.passage_batch_size": 0}, "retrieval.passage_batch_size"),
    ("evaluate", {"retrieval.query_batch_size": -5}, "retrieval.query_batch_size"),
    ("evaluate", {"retrieval.shard_size": 0}, "retrieval.shard_size"),
    ("evaluate", {"retrieval.chunk_size": 0}, "retrieval.chunk_size"),
    ("evaluate", {"retrieval.search_chunk_rows": 0}, "retrieval.search_chunk_rows"),
    ("evaluate", {"retrieval.p_max_len": 1}, "retrieval.p_max_len"),
    ("evaluate", {"retrieval.q_max_len": 0}, "retrieval.q_max_len"),
    ("evaluate", {"retrieval.num_shards": 0}, "retrieval.num_shards"),
    ("evaluate", {"retrieval.shard_index": -1}, "retrieval.shard_index"),
    ("evaluate", {"retrieval.num_shards": 2, "retrieval.shard_index": 2}, "retrieval.shard_index"),
    ("evaluate", {"retrieval.run_formats": ["foo"]}, "retrieval.run_formats"),
    ("evaluate", {"retrieval.run_formats": ["trec", "trec"]}, "retrieval.run_formats"),
    ("evaluate", {"retrieval.objective": "R@3kt"}, "retrieval.objective"),
    ("evaluate", {"retrieval.objective": "R@2kt/xx"}, "retrieval.objective"),
    ("evaluate", {"retrieval.objective": {"R@2kt": "a"}}, "retrieval.objective"),
    ("evaluate", {"retrieval.objective": []}, "retrieval.objective"),
    ("evaluate", {"retrieval.objective": {}}, "retrieval.objective"),
    ("evaluate", {"retrieval.objective": 3}, "retrieval.objective"),
    # metrics and significance
    ("evaluate", {"metrics.ks": []}, "metrics.ks"),
    ("evaluate", {"metrics.ks": [0]}, "metrics.ks"),
    ("evaluate", {"metrics.ks": [-2, 5]}, "metrics.ks"),
    ("evaluate", {"metrics.decimals": -1}, "metrics.decimals"),
    ("evaluate", {"metrics.decimals": 11}, "metrics.decimals"),
    ("evaluate", {"metrics.workers": -1}, "metrics.workers"),
    ("evaluate", {"metrics.objective": "R@7kt"}, "metrics.objective"),
    ("evaluate", {"metrics.significance.permutations": 0}, "metrics.significance.permutations"),
    ("evaluate", {"metrics.significance.permutations": -1}, "metrics.significance.permutations"),
    ("evaluate", {"metrics.significance.level": 0.0}, "metrics.significance.level"),
    ("evaluate", {"metrics.significance.level": 1.0}, "metrics.significance.level"),
    ("evaluate", {"metrics.significance.level": 2.0}, "metrics.significance.level"),
    ("evaluate", {"metrics.significance.level": math.nan}, "metrics.significance.level"),
    ("evaluate", {"metrics.significance.seed": -1}, "metrics.significance.seed"),
    ("evaluate", {"metrics.significance.tests": ["anova"]}, "metrics.significance.tests"),
    ("evaluate", {"metrics.significance.tests": ["ttest", "ttest"]}, "metrics.significance.tests"),
    # augmentation (values checked even when disabled; how they fit together when enabled)
    ("evaluate", {"augmentation.alpha": 2.0}, "augmentation.alpha"),
    ("evaluate", {"augmentation.alpha": -0.1}, "augmentation.alpha"),
    ("evaluate", {"augmentation.n": 0}, "augmentation.n"),
    ("xqg", {"augmentation.n": 6}, "augmentation.n"),
    ("evaluate", {"augmentation.mode": "max"}, "augmentation.mode"),
    ("evaluate", {"augmentation.languages": ["xx"]}, "augmentation.languages"),
    ("xqg", {"augmentation.languages": []}, "augmentation.languages"),
    ("xqg", {"augmentation.languages": ["ar"]}, "augmentation.languages"),
    ("xqg", {"augmentation.languages": ["de"]}, "augmentation.languages"),
    ("evaluate", {"augmentation.tune_split": "foo"}, "augmentation.tune_split"),
    ("evaluate", {"augmentation.sums.dtype": "int8"}, "augmentation.sums.dtype"),
    ("evaluate", {"augmentation.sums.n_max": 0}, "augmentation.sums.n_max"),
    ("evaluate", {"augmentation.sums.shard_rows": 0}, "augmentation.sums.shard_rows"),
    # generator
    ("evaluate", {"generator.num_queries": 0}, "generator.num_queries"),
    ("evaluate", {"generator.languages": ["xx"]}, "generator.languages"),
    ("evaluate", {"generator.languages": ["ar", "ar"]}, "generator.languages"),
    ("evaluate", {"generator.languages": []}, "generator.languages"),
    ("evaluate", {"generator.store_format": "csv"}, "generator.store_format"),
    ("evaluate", {"generator.device": "gpu0"}, "generator.device"),
    ("evaluate", {"generator.precision": "fp8"}, "generator.precision"),
    ("evaluate", {"generator.seed": -1}, "generator.seed"),
    ("evaluate", {"generator.generate_batch_size": 0}, "generator.generate_batch_size"),
    ("evaluate", {"generator.shard.count": 0}, "generator.shard.count"),
    ("evaluate", {"generator.shard.index": 1}, "generator.shard.index"),
    ("evaluate", {"generator.shard.size": 0}, "generator.shard.size"),
    ("evaluate", {"generator.prompt_template": "{foo} {passage}"}, "generator.prompt_template"),
    ("evaluate", {"generator.prompt_template": "{passage"}, "generator.prompt_template"),
    ("evaluate", {"generator.max_source_length": 0}, "generator.max_source_length"),
    ("evaluate", {"generator.max_target_length": -1}, "generator.max_target_length"),
    ("train", {"generator.train.lr": 0.0}, "generator.train.lr"),
    ("train", {"generator.train.max_steps": 0}, "generator.train.max_steps"),
    ("train", {"generator.train.val_fraction": 1.0}, "generator.train.val_fraction"),
    ("train", {"generator.train.batch_size": 0}, "generator.train.batch_size"),
    ("train", {"generator.train.warmup_steps": -1}, "generator.train.warmup_steps"),
    ("train", {"generator.train.val_every_steps": 0}, "generator.train.val_every_steps"),
    # data
    ("evaluate", {"data.kind": "tsv"}, "data.kind"),
    ("evaluate", {"data.languages": ["xx"]}, "data.languages"),
    ("evaluate", {"data.world.seed": -1}, "data.world.seed"),
    ("evaluate", {"data.world.n_entities": 5}, "data.world.n_entities"),
    ("evaluate", {"data.world.split": [0.5, 0.5, 0.5]}, "data.world.split"),
    ("xquad", {"data.unit": "word"}, "data.unit"),
    ("xquad", {"data.split": [1.0, 0.0]}, "data.split"),
    # job, backbone and recipe
    ("evaluate", {"seed": -1}, "seed"),
    ("evaluate", {"seed": 2**32}, "seed"),
    ("train", {"backbone.pooling": "max"}, "backbone.pooling"),
    ("train", {"backbone.temperature": 0.0}, "backbone.temperature"),
    ("train", {"backbone.q_max_len": 1}, "backbone.q_max_len"),
    ("train", {"train.source": "french"}, "train.source"),
    ("train", {"train.dev.source": "dev"}, "train.dev.source"),
    ("train", {"train.batch_size": 0}, "train.batch_size"),
    ("train", {"train.lr": -1.0}, "train.lr"),
    ("train", {"train.warmup_ratio": 1.5}, "train.warmup_ratio"),
    ("train", {"train.epochs": 0}, "train.epochs"),
    ("train", {"train.checkpoint_every_n_steps": 0}, "train.checkpoint_every_n_steps"),
    ("train", {"train.dev.objective": "recall@7"}, "train.dev.objective"),
    ("train", {"train.dev.objective": "ndcg@10"}, "train.dev.objective"),
    ("train", {"train.dev.ks": []}, "train.dev.ks"),
    ("train", {"train.num_threads": 0}, "train.num_threads"),
    ("train", {"train.seed": -3}, "train.seed"),
    ("evaluate", {"score.predictions": "p.json", "score.run": "r.tsv"}, "score.run"),
    # accepted: edge values that are right
    ("evaluate", {"retrieval.depth": 1}, None),
    ("evaluate", {"metrics.significance.level": 0.001}, None),
    ("evaluate", {"metrics.significance.permutations": 1}, None),
    ("evaluate", {"metrics.decimals": 0}, None),
    ("evaluate", {"retrieval.objective": "R@5kt/ja"}, None),
    ("evaluate", {"retrieval.objective": {"R@2kt": 0.5, "R@5kt": 0.5}}, None),
    ("evaluate", {"retrieval.objective": ["R@2kt", "R@5kt"]}, None),
    ("xqg", {"augmentation.languages": ["ar"], "augmentation.sums.per_language": True}, None),
    ("xqg", {"augmentation.n": 1, "augmentation.tune_split": "report"}, None),
    ("evaluate", {"retrieval.device": "cuda:1"}, None),
    ("evaluate", {"generator.device": "mps", "generator.precision": "bf16"}, None),
    ("evaluate", {"retrieval.run_formats": []}, None),
    ("evaluate", {"seed": 0, "generator.seed": 2**32 - 1}, None),
    ("evaluate", {"augmentation.n": 9}, None),  # disabled: n need not fit the stored sums
    ("train", {"train.dev.objective": "mrr@100"}, None),
]


@pytest.mark.parametrize(
    ("which", "values", "key"), CONFIG_CASES, ids=[f"{w}:{v}" for w, v, _ in CONFIG_CASES]
)
def test_config_value(base: dict[str, Any], which: str, values: dict[str, Any], key: str | None) -> None:
    s = copy.deepcopy(base[which])
    for dotted, value in values.items():
        _set(s, dotted, value)
    if key is None:
        validate(s)
        return
    with pytest.raises(XqgInputError) as e:
        validate(s)
    assert e.value.field == key, clean_line(e.value)
    assert clean_line(e.value).startswith(f"field '{key}': ")


# Values of the wrong type, through Hydra's composition (the typed schema): the key is named, nothing runs.
COMPOSE_CASES: list[tuple[str, str | None, Callable[[Any], bool] | None]] = [
    ("augmentation.alpha=abc", "augmentation.alpha", None),
    ("retrieval.depth=abc", "retrieval.depth", None),
    ("data.world.seed=abc", "data.world.seed", None),
    ("augmentation.n=2.5", "augmentation.n", None),
    ("metrics.ks='25'", "metrics.ks", None),
    ("augmentation.enabled=maybe", "augmentation.enabled", None),
    ("metrics.significance.level=abc", "metrics.significance.level", None),
    ("retrieval.depht=5", "depht", None),
    ("augmentation.languages=[xx]", "augmentation.languages", None),
    ("metrics.allow_missing='false'", None, lambda s: s.metrics.allow_missing is False),
    ("metrics.allow_missing=true", None, lambda s: s.metrics.allow_missing is True),
    ("metrics.ks=[2,'5']", None, lambda s: s.metrics.ks == [2, 5]),
    ("data=nope", "data/nope", None),
    ("augmentation.alpha=[1", "augmentation.alpha=[1", None),
    ("train.epochs=1.5", "train.epochs", None),
    ("+retrieval.depht=5", "retrieval.depht", None),  # Hydra's own hint for a misspelt key: never ignored
    ("+data.world.sed=3", "did you mean data.world.seed", None),
    ("+trainer.gradient_clip_val=1.0", None, lambda s: s.trainer["gradient_clip_val"] == 1.0),
]


@pytest.mark.parametrize(("override", "key", "check"), COMPOSE_CASES, ids=[c[0] for c in COMPOSE_CASES])
def test_config_type_at_composition(
    tmp_path: Path, override: str, key: str | None, check: Callable[[Any], bool] | None
) -> None:
    def compose() -> Any:
        cfg = compose_config("evaluate", "logger=none", override, cache=tmp_path / "c", out=tmp_path / "o")
        return to_settings(cfg)

    if key is None:
        assert check is not None and check(compose())
        return
    with pytest.raises((HydraException, XqgInputError)) as e:
        compose()
    line = str(e.value) if isinstance(e.value, XqgInputError) else config_error_line(e.value)
    assert line is not None and key in clean_line(line), line


def test_broken_interpolation_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = compose_config(
        "evaluate", "logger=none", "retrieval.name=${nope.missing}", cache=tmp_path, out=tmp_path
    )
    with pytest.raises(SystemExit) as e:
        entrypoints.evaluate(cfg)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: field 'retrieval.name': "), err


# -- files on disk -------------------------------------------------------------------------------------------------
WORDS = ["Tokyo", "is", "big", ".", "Seoul", "Paris", "river", "New", "York", "capital"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 questions in two languages, a corpus, two runs and the equivalent predictions, plus bad variants."""
    w = tmp_path_factory.mktemp("world")
    passages = [
        {"docid": f"d{i}", "title": "t", "text": " ".join(WORDS[(i * j) % len(WORDS)] for j in range(40))}
        for i in range(20)
    ]
    write_jsonl(w / "corpus.jsonl", passages)
    answers = ["Tokyo", "Seoul", "Paris", "New York", "Lima", "Oslo"]
    qs = [
        {
            "id": f"q{i}",
            "question": f"where {i}?",
            "answers": [answers[i % 6]],
            "lang": "ja" if i % 2 else "ko",
        }
        for i in range(12)
    ]
    write_jsonl(w / "q.jsonl", qs)
    write_jsonl(w / "q_yesno.jsonl", [{**q, "answers": ["yes", "no"]} for q in qs])
    (w / "q_empty.jsonl").write_text("")
    text = {p["docid"]: p["text"] for p in passages}
    for name, shift in (("a", 0), ("b", 7)):
        run = {x["id"]: [(f"d{(i + shift + j) % 20}", 5.0 - j) for j in range(5)] for i, x in enumerate(qs)}
        write_run(w / f"run_{name}.tsv", run)
        preds = [{"id": x["id"], "lang": x["lang"], "ctxs": [text[d] for d, _ in run[x["id"]]]} for x in qs]
        (w / f"pred_{name}.json").write_text(json.dumps(preds))
    (w / "pred_empty_list.json").write_text("[]")
    (w / "pred_unknown.json").write_text(json.dumps([{"id": "zz", "lang": "ja", "ctxs": ["Tokyo"]}]))
    (w / "empty.json").write_text("")
    (w / "blank.json").write_text("  \n\n ")
    (w / "folder").mkdir()
    (w / "not_gzip.json.gz").write_bytes(b"\x1f\x8b" + b"garbage that is not deflate")
    (w / "bad_utf8.json").write_bytes(b'[{"id": "q1", "lang": "ko", "ctxs": ["\xff\xfe"]}]')
    (w / "run_inf.tsv").write_text("q0\td1\tinf\nq0\td2\t1.0\n")
    (w / "run_nan.tsv").write_text("q0\td1\t1.0\nq0\td2\tNaN\n")
    (w / "run_neginf.trec").write_text("q0 Q0 d1 1 -inf tag\n")
    (w / "a_file").write_text("x")
    return w


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = eval_cli.main(list(argv))
    except SystemExit as e:  # argparse's own errors
        rc = int(e.code or 0)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_cli_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> str:
    rc, _out, err = cli(capsys, *argv)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("xqg-eval: error: ") and "Traceback" not in err
    assert needle in err, err
    return err


# (extra arguments after --questions q.jsonl --predictions pred_a.json --workers 1 ..., what the line names);
# "{w}" is the world folder.
CLI_CASES: list[tuple[list[str], str]] = [
    (["--decimals", "-1"], "'--decimals'"),
    (["--decimals", "11"], "'--decimals'"),
    (["--decimals", "two"], "--decimals"),
    (["--permutations", "-1", "--compare", "{w}/pred_b.json"], "'--permutations'"),
    (["--permutations", "0", "--compare", "{w}/pred_b.json"], "'--permutations'"),
    (["--level", "2", "--compare", "{w}/pred_b.json"], "'--level'"),
    (["--level", "0"], "'--level'"),
    (["--level", "-0.1"], "'--level'"),
    (["--level", "nan"], "'--level'"),
    (["--seed", "-1"], "'--seed'"),
    (["--k", "0"], "'--k'"),
    (["--k", "-1", "2"], "'--k'"),
    (["--k", "abc"], "--k"),
    (["--workers", "-1"], "'--workers'"),
    (["--tests", "anova"], "--tests"),
    (["--frobnicate"], "--frobnicate"),
    (["--run", "{w}/run_a.tsv"], "not allowed with argument"),
    (["--json", "{w}/folder"], "'--json'"),
    (["--json", "{w}/a_file/out.json"], "'--json'"),
    (["--cache-dir", "{w}/a_file"], "'--cache-dir'"),
    (["--compare", "{w}/folder"], "folder: compare file is a directory"),
    (["--compare", "{w}/nope.json"], "nope.json: compare file not found"),
    (["--compare", "{w}/empty.json"], "empty.json: empty compare file"),
    (["--compare", "{w}/run_a.tsv"], "run_a.tsv: this is a run file"),
]


@pytest.mark.parametrize(("extra", "needle"), CLI_CASES, ids=[" ".join(c[0])[:40] for c in CLI_CASES])
def test_cli_flag(world: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str) -> None:
    base_args = ["--questions", str(world / "q.jsonl"), "--predictions", str(world / "pred_a.json")]
    argv = base_args + ["--workers", "1", "--nltk-data", NLTK] + [a.format(w=world) for a in extra]
    assert_cli_error(capsys, argv, needle)


# (--questions, --predictions/--run, more, what the line names)
CLI_FILE_CASES: list[tuple[str, list[str], str]] = [
    ("folder", ["--predictions", "pred_a.json"], "folder: file is a directory"),
    ("nope.jsonl", ["--predictions", "pred_a.json"], "nope.jsonl: file not found"),
    ("q.jsonl", ["--predictions", "folder"], "folder: predictions/run file is a directory"),
    ("q.jsonl", ["--predictions", "empty.json"], "empty.json: empty predictions/run file"),
    ("q.jsonl", ["--predictions", "blank.json"], "blank.json: empty predictions/run file"),
    (
        "q.jsonl",
        ["--predictions", "pred_empty_list.json", "--allow-missing"],
        "nothing to score: no predictions",
    ),
    ("q_yesno.jsonl", ["--predictions", "pred_a.json"], "yes/no"),
    (
        "q.jsonl",
        ["--predictions", "pred_unknown.json", "--allow-unknown", "--allow-missing"],
        "none of the 1 ids of the predictions is a question",
    ),
    ("q_empty.jsonl", ["--predictions", "pred_a.json"], "q_empty.jsonl: no questions"),
    ("q.jsonl", ["--predictions", "not_gzip.json.gz"], "not_gzip.json.gz"),
    ("q.jsonl", ["--predictions", "bad_utf8.json"], "bad_utf8.json: not valid UTF-8"),
    ("q.jsonl", ["--run", "run_a.tsv"], "--run needs --corpus"),
    ("q.jsonl", ["--run", "run_a.tsv", "--corpus", "folder"], "folder"),
    ("q.jsonl", ["--run", "run_a.tsv", "--corpus", "nope.tsv"], "nope.tsv"),
    ("q.jsonl", ["--run", "run_inf.tsv", "--corpus", "corpus.jsonl"], "run_inf.tsv:1 field 'score'"),
    ("q.jsonl", ["--run", "run_nan.tsv", "--corpus", "corpus.jsonl"], "run_nan.tsv:2 field 'score'"),
    ("q.jsonl", ["--run", "run_neginf.trec", "--corpus", "corpus.jsonl"], "run_neginf.trec:1 field 'score'"),
    ("q.jsonl", ["--run", "empty.json", "--corpus", "corpus.jsonl"], "empty.json: empty"),
    ("q.jsonl", ["--predictions", "run_a.tsv"], "this is a run file"),
]


@pytest.mark.parametrize(
    ("questions", "system", "needle"), CLI_FILE_CASES, ids=[c[2][:40] for c in CLI_FILE_CASES]
)
def test_cli_file(
    world: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    questions: str,
    system: list[str],
    needle: str,
) -> None:
    files = [a if a.startswith("--") else str(world / a) for a in system]
    argv = ["--questions", str(world / questions), *files, "--workers", "1", "--nltk-data", NLTK]
    assert_cli_error(capsys, [*argv, "--cache-dir", str(tmp_path / "cache")], needle)


CLI_ACCEPT_CASES: list[tuple[list[str], str]] = [
    (["--decimals", "0"], "R@2kt"),
    (["--level", "0.01", "--permutations", "1", "--compare", "{w}/pred_b.json"], "p < 0.01"),
    (["--k", "1", "--markdown"], "R@1kt"),
    (["--run", "{w}/run_a.tsv", "--corpus", "{w}/corpus.jsonl"], "run_a"),
]


@pytest.mark.parametrize(
    ("extra", "needle"), CLI_ACCEPT_CASES, ids=[" ".join(c[0])[:40] for c in CLI_ACCEPT_CASES]
)
def test_cli_accepts(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    system = [] if "--run" in extra else ["--predictions", str(world / "pred_a.json")]
    argv = ["--questions", str(world / "q.jsonl"), *system, "--workers", "1", "--nltk-data", NLTK]
    argv += ["--cache-dir", str(tmp_path / "c")] + [a.format(w=world) for a in extra]
    rc, out, err = cli(capsys, *argv)
    assert rc == 0, err
    assert needle in out


def test_permutations_and_level_never_mark_without_evidence(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's false markers: --permutations 0 and --level 2 are refused; a valid run marks only p < level."""
    args = ["--questions", str(world / "q.jsonl"), "--predictions", str(world / "pred_a.json")]
    args += ["--compare", str(world / "pred_b.json"), "--workers", "1", "--nltk-data", NLTK, "--json"]
    out_json = world / "cmp.json"
    rc, _out, err = cli(capsys, *args, str(out_json), "--level", "0.05")
    assert rc == 0, err
    sig = json.loads(out_json.read_text())["significance"]
    for per in sig["tests"].values():
        for tests in per.values():
            for t in tests.values():
                assert 0 < t["p_value"] <= 1


# -- readers: one table over every input format -------------------------------------------------------------------
def _tev(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "query_id": "1",
        "query": "where?",
        "answers": ["Tokyo"],
        "positive_passages": [{"docid": "d1", "title": "T", "text": "Tokyo is big."}],
        "negative_passages": [{"docid": "d2", "title": "T", "text": "Seoul."}],
    }
    row.update(over)
    return row


def _q(**over: Any) -> dict[str, Any]:
    return {"id": "q1", "question": "where?", "answers": ["Tokyo"], "lang": "ja", **over}


def _pair(**over: Any) -> dict[str, Any]:
    return {
        "docid": "d1",
        "lang": "ja",
        "title": "T",
        "passage": "Tokyo is big.",
        "question": "どこ?",
        **over,
    }


def _released(**over: Any) -> dict[str, Any]:
    return {"docid": "d1", "title": "T", "text": "Tokyo.", "generated_queries": {"ja": ["a", "b"]}, **over}


def _lines(*objs: Any) -> bytes:
    return b"".join(json.dumps(o, ensure_ascii=False).encode("utf-8") + b"\n" for o in objs)


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


READERS: dict[str, Callable[[Path], Any]] = {
    "questions": read_xor_questions,
    "predictions": read_predictions,
    "run": read_run,
    "tevatron": lambda p: list(iter_tevatron(p)),
    "tevatron_file": lambda p: list(TevatronFile(p)),
    "pairs": read_generator_pairs,
    "released": lambda p: list(iter_released_records(p)),
}

# (reader, file name, content, expected: a regex the one line must match, or a check of the parsed result)
GOOD_Q = _lines(_q(), _q(id="q2"))
READER_CASES: list[tuple[str, str, bytes, str | Callable[[Any], bool]]] = [
    # XOR-TyDi questions
    ("questions", "q.jsonl", b'{"id": "q1"}\n{"id": \n', r"q\.jsonl:1 field 'question': missing"),
    ("questions", "q.jsonl", _lines(_q()) + b"{oops\n", r"q\.jsonl:2: malformed JSON"),
    ("questions", "q.jsonl", _lines(_q()) + b"[1, 2]\n", r"q\.jsonl:2: expected a JSON object, got list"),
    ("questions", "q.jsonl", _lines(_q(id=True)), r"q\.jsonl:1 field 'id': expected str or int, got bool"),
    ("questions", "q.jsonl", _lines(_q(id=" ")), r"q\.jsonl:1 field 'id': empty id"),
    (
        "questions",
        "q.jsonl",
        _lines(_q(), _q()),
        r"q\.jsonl:2 field 'id': duplicate id 'q1' \(first on line 1\)",
    ),
    ("questions", "q.jsonl", _lines(_q(question=7)), r"q\.jsonl:1 field 'question': expected str, got int"),
    ("questions", "q.jsonl", _lines(_q(question="")), r"q\.jsonl:1 field 'question': empty string"),
    (
        "questions",
        "q.jsonl",
        _lines(_q(answers="Tokyo")),
        r"q\.jsonl:1 field 'answers': expected list, got str",
    ),
    ("questions", "q.jsonl", _lines(_q(answers=[])), r"q\.jsonl:1 field 'answers': empty list"),
    ("questions", "q.jsonl", _lines(_q(answers=["a", 3])), r"q\.jsonl:1 field 'answers\[1\]': expected str"),
    ("questions", "q.jsonl", _lines(_q(lang="xx")), r"q\.jsonl:1 field 'lang': unknown language code 'xx'"),
    (
        "questions",
        "q.jsonl",
        _lines({k: v for k, v in _q().items() if k != "lang"}),
        r":1 field 'lang': missing",
    ),
    ("questions", "q.jsonl", _lines(_q(split=3)), r"q\.jsonl:1 field 'split': expected str, got int"),
    ("questions", "q.jsonl", _lines(_q()) + b'{"id": "\xff"}\n', r"q\.jsonl:2: not valid UTF-8"),
    ("questions", "q.jsonl.gz", b"\x1f\x8bnot deflate at all", r"q\.jsonl\.gz:1: truncated or corrupt gzip"),
    ("questions", "q.jsonl.gz", _gz(GOOD_Q)[:-12], r"q\.jsonl\.gz:\d+: truncated or corrupt gzip"),
    ("questions", "q.jsonl", b"", lambda r: r == []),
    ("questions", "q.jsonl", _lines(_q(lang=" ar", id=7)), lambda r: (r[0].lang, r[0].qid) == ("ar", "7")),
    (
        "questions",
        "q.jsonl",
        GOOD_Q.replace(b"\n", b"\r\n") + b"\n\n",
        lambda r: [q.qid for q in r] == ["q1", "q2"],
    ),
    ("questions", "q.jsonl.gz", _gz(GOOD_Q), lambda r: len(r) == 2),
    (
        "questions",
        "q.jsonl",
        _lines(_q(question='a\tb "c" \u05d0\u05d1')),
        lambda r: r[0].text == 'a\tb "c" אב',
    ),
    # predictions
    (
        "predictions",
        "p.json",
        b'[\n{"id": "q1", "lang": "ja", "ctxs": []},\n{"id": ',
        r"p\.json:3: malformed JSON",
    ),
    ("predictions", "p.json", b"[\n  3\n]", r"p\.json:2: item 0: expected a JSON object"),
    (
        "predictions",
        "p.json",
        b'[\n{"id": "q1", "lang": "ja"}\n]',
        r"p\.json:2 field 'ctxs': item 0: missing",
    ),
    (
        "predictions",
        "p.json",
        b'[{"id": "q1", "lang": "ja", "ctxs": "t"}]',
        r"p\.json:1 field 'ctxs': item 0: expected a list",
    ),
    (
        "predictions",
        "p.json",
        b'[{"id": "q1", "lang": "ja", "ctxs": ["a", 2]}]',
        r"p\.json:1 field 'ctxs\[1\]'",
    ),
    ("predictions", "p.json", b'[{"id": "q1", "lang": " ", "ctxs": []}]', r"p\.json:1 field 'lang'"),
    ("predictions", "p.json", b'[{"id": "", "lang": "ja", "ctxs": []}]', r"p\.json:1 field 'id'"),
    ("predictions", "p.json", b'[{"id": false, "lang": "ja", "ctxs": []}]', r"p\.json:1 field 'id'"),
    (
        "predictions",
        "p.json",
        b'[{"id": "q1", "lang": "ja", "ctxs": []},\n{"id": "q1", "lang": "ja", "ctxs": []}]',
        r"p\.json:2 field 'id': duplicate prediction id 'q1'",
    ),
    (
        "predictions",
        "p.jsonl",
        b'{"id": "q1", "lang": "ja", "ctxs": []}\n{"id": "q2"\n',
        r"p\.jsonl:2: malformed JSON",
    ),
    (
        "predictions",
        "p.jsonl",
        b'{"id": "q1", "lang": "ja", "ctxs": []}\n{"id": "q2", "ctxs": []}\n',
        r"p\.jsonl:2 field 'lang': missing",
    ),
    ("predictions", "p.json", b"42", r"p\.json:1: not a predictions file"),
    ("predictions", "p.json", b"", r"p\.json: empty predictions file"),
    ("predictions", "p.json", b'[{"id": "q1", "lang": "ja", "ctxs": ["\xc3"]}]', r"p\.json: not valid UTF-8"),
    ("predictions", "p.json.gz", b"\x1f\x8b\x08\x00garbage", r"p\.json\.gz: cannot read"),
    (
        "predictions",
        "p.json",
        b'[{"id": 5, "lang": "ja", "ctxs": ["x\\ty"]}]',
        lambda r: r[0].qid == "5" and r[0].ctxs == ["x\ty"],
    ),
    ("predictions", "p.json.gz", _gz(b'[{"id": "q1", "lang": "ja", "ctxs": []}]'), lambda r: r[0].ctxs == []),
    ("predictions", "p.json", b"[]", lambda r: r == []),
    # runs
    ("run", "r.tsv", b"q1\td1\n", r"r\.tsv:1: unrecognised run line with 2 columns"),
    ("run", "r.tsv", b"q1\td1\t1.0\nq1\td2\t0.5\textra\n", r"r\.tsv:2: expected 3 columns"),
    ("run", "r.tsv", b"q1\td1\tabc\n", r"r\.tsv:1 field 'score': score 'abc' is not a number"),
    ("run", "r.tsv", b"q1\td1\tnan\n", r"r\.tsv:1 field 'score': score 'nan' is not finite"),
    ("run", "r.tsv", b"q1\td1\t1\nq1\td2\tinf\n", r"r\.tsv:2 field 'score': score 'inf' is not finite"),
    ("run", "r.tsv", b"q1\td1\t-Infinity\n", r"r\.tsv:1 field 'score'"),
    ("run", "r.tsv", b"q1\td1\t1e999\n", r"r\.tsv:1 field 'score'"),
    ("run", "r.trec", b"q1 Q0 d1 one 1.0 t\n", r"r\.trec:1 field 'rank': rank 'one' is not an integer"),
    ("run", "r.trec", b"q1 Q1 d1 1 1.0 t\n", r"r\.trec:1: unrecognised run line with 6 columns"),
    ("run", "r.trec", b"q1 Q0 d1 1 1.0 t\nq1\td2\t0.5\n", r"r\.trec:2: expected 6 columns"),
    ("run", "r.tsv", b"q1\td1\t1.0\nq1\td1\t0.5\n", r"r\.tsv:2 field 'docid': docid 'd1' listed twice"),
    ("run", "r.tsv", b"", r"r\.tsv: empty run file"),
    ("run", "r.tsv", b"\n  \n", r"r\.tsv: empty run file"),
    ("run", "r.tsv", b"q1\td\xff\t1.0\n", r"r\.tsv: not valid UTF-8"),
    (
        "run",
        "r.tsv.gz",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x00\x00",
        r"r\.tsv\.gz: truncated or corrupt gzip",
    ),
    ("run", "r.tsv.gz", _gz(b"q1\td1\t1.0\n" * 50)[:-9], r"r\.tsv\.gz: truncated or corrupt gzip"),
    (
        "run",
        "r.tsv",
        b"q1\td1\t1.0\r\nq1\td2\t2e-3\r\n\r\n",
        lambda r: r == {"q1": [("d1", 1.0), ("d2", 0.002)]},
    ),
    (
        "run",
        "r.tsv",
        b"q1\ta\t-1\nq1\tb\t-1\nq1\tc\t0\n",
        lambda r: [d for d, _ in r["q1"]] == ["c", "a", "b"],
    ),
    ("run", "r.trec", b"q1 Q0 b 2 1.0 t\nq1 Q0 a 1 1.0 t\n", lambda r: [d for d, _ in r["q1"]] == ["a", "b"]),
    ("run", "r.tsv.gz", _gz(b"q1\td1\t1.0\n"), lambda r: r == {"q1": [("d1", 1.0)]}),
    # Tevatron training JSONL(.gz)
    (
        "tevatron",
        "t.jsonl",
        _lines({k: v for k, v in _tev().items() if k != "query_id"}),
        r"t\.jsonl:1 field 'query_id': missing",
    ),
    ("tevatron", "t.jsonl", _lines(_tev(query="  ")), r"t\.jsonl:1 field 'query': empty string"),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(positive_passages={"docid": "d"})),
        r"t\.jsonl:1 field 'positive_passages': expected list",
    ),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(), _tev(positive_passages=[])),
        r"t\.jsonl:2 field 'positive_passages': empty list",
    ),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(positive_passages=["d1"])),
        r"t\.jsonl:1 field 'positive_passages\[0\]': expected an object",
    ),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(positive_passages=[{"docid": "d1"}])),
        r"t\.jsonl:1 field 'positive_passages\[0\]\.text': missing",
    ),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(positive_passages=[{"docid": True, "text": "x"}])),
        r"field 'positive_passages\[0\]\.docid'",
    ),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(positive_passages=[{"docid": "d", "text": "x", "title": 3}])),
        r"field 'positive_passages\[0\]\.title'",
    ),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(negative_passages=[{"docid": "a", "text": "x"}, {"docid": "b", "text": 1}])),
        r"t\.jsonl:1 field 'negative_passages\[1\]\.text'",
    ),
    ("tevatron", "t.jsonl", _lines(_tev(answers="Tokyo")), r"t\.jsonl:1 field 'answers': expected list"),
    ("tevatron", "t.jsonl", _lines(_tev(lang="klingon")), r"t\.jsonl:1 field 'lang': unknown language code"),
    ("tevatron", "t.jsonl.gz", _gz(_lines(_tev()) + b"{bad\n"), r"t\.jsonl\.gz:2: malformed JSON"),
    (
        "tevatron",
        "t.jsonl.gz",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffgarbage",
        r"t\.jsonl\.gz:1: truncated or corrupt gzip",
    ),
    ("tevatron_file", "t.jsonl", _lines(_tev(), _tev(query=None)), r"t\.jsonl:2 field 'query': missing"),
    (
        "tevatron_file",
        "t.jsonl",
        _lines(_tev(query_id=[1])),
        r"t\.jsonl:1 field 'query_id': expected str or int",
    ),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(query_id=17, negative_passages=None)),
        lambda r: r[0].qid == "17" and r[0].negatives == (),
    ),
    (
        "tevatron",
        "t.jsonl",
        _lines(_tev(positive_passages=[{"id": 4, "text": "x"}])),
        lambda r: r[0].positives[0].docid == "4",
    ),
    (
        "tevatron_file",
        "t.jsonl.gz",
        _gz(_lines(_tev(), _tev(query_id="2"))),
        lambda r: [e.qid for e in r] == ["1", "2"],
    ),
    # generator pairs
    (
        "pairs",
        "g.jsonl",
        _lines({k: v for k, v in _pair().items() if k != "passage"}),
        r"g\.jsonl:1 field 'passage': missing",
    ),
    ("pairs", "g.jsonl", _lines(_pair(lang="xx")), r"g\.jsonl:1 field 'lang': unknown language code 'xx'"),
    ("pairs", "g.jsonl", _lines(_pair(docid="")), r"g\.jsonl:1 field 'docid': empty id"),
    (
        "pairs",
        "g.jsonl",
        _lines(_pair(), _pair(question=3)),
        r"g\.jsonl:2 field 'question': expected str, got int",
    ),
    ("pairs", "g.jsonl", _lines(_pair(title=["T"])), r"g\.jsonl:1 field 'title': expected str, got list"),
    ("pairs", "g.jsonl", b"not json\n", r"g\.jsonl:1: malformed JSON"),
    (
        "pairs",
        "g.jsonl",
        _lines({k: v for k, v in _pair().items() if k != "title"}),
        lambda r: r[0].title == "",
    ),
    # released generated queries
    (
        "released",
        "r.jsonl",
        _lines(_released(generated_queries=["a"])),
        r"r\.jsonl:1 field 'generated_queries': expected dict",
    ),
    (
        "released",
        "r.jsonl",
        _lines(_released(generated_queries={"xx": ["a"]})),
        r"r\.jsonl:1 field 'generated_queries\.xx'",
    ),
    (
        "released",
        "r.jsonl",
        _lines(_released(generated_queries={"ja": [1, 2]})),
        r"r\.jsonl:1 field 'generated_queries\.ja': expected a list of strings",
    ),
    (
        "released",
        "r.jsonl",
        _lines(_released(), {k: v for k, v in _released().items() if k != "docid"}),
        r"r\.jsonl:2 field 'docid': missing",
    ),
    ("released", "r.parquet", b"PAR1 not really parquet", r"r\.parquet: not a readable parquet file"),
    (
        "released",
        "r.jsonl",
        _lines(_released(generated_queries={" ar": ["س"]})),
        lambda r: r[0][1] == {"ar": ["س"]},
    ),
]


def _reader_id(case: tuple[str, str, bytes, Any]) -> str:
    kind, name, _content, expected = case
    return f"{kind}-{name}-{expected if isinstance(expected, str) else 'accept'}"[:70]


@pytest.mark.parametrize(
    ("kind", "name", "content", "expected"), READER_CASES, ids=[_reader_id(c) for c in READER_CASES]
)
def test_reader(
    tmp_path: Path, kind: str, name: str, content: bytes, expected: str | Callable[[Any], bool]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    if callable(expected):
        assert expected(READERS[kind](path))
        return
    with pytest.raises(XqgInputError, match=expected) as e:
        READERS[kind](path)
    assert clean_line(e.value).startswith(str(path))


PATH_CASES = [(kind, state) for kind in READERS for state in ("missing", "directory", "unreadable")]


@pytest.mark.parametrize(("kind", "state"), PATH_CASES, ids=[f"{k}-{s}" for k, s in PATH_CASES])
def test_reader_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, state: str) -> None:
    """A missing path, a folder, or a file this process may not read: one line naming the path."""
    path = tmp_path / "x.jsonl"
    expected = {"missing": "not found", "directory": "is a directory", "unreadable": "permission denied"}[
        state
    ]
    if state == "directory":
        path.mkdir()
    elif state == "unreadable":
        path.write_bytes(b"{}\n")
        real_open = open

        def no_read(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
            if Path(str(file)) == path:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(file, mode, *a, **k)

        monkeypatch.setattr("builtins.open", no_read)
    with pytest.raises(XqgInputError) as e:
        READERS[kind](path)
    line = clean_line(e.value)
    assert str(path) in line and expected in line, line


# -- XQuAD-R -------------------------------------------------------------------------------------------------------
def _squad(question: str, **para: Any) -> dict[str, Any]:
    qa = {"id": "x1", "question": question, "answers": [{"text": "Tokyo", "answer_start": 0}]}
    p = {"context": "Tokyo is big. It rains.", "qas": [qa], "sentence_breaks": [[0, 13], [14, 23]], **para}
    return {"data": [{"title": "Big_City", "paragraphs": [p]}]}


XQUAD_CASES: list[tuple[Any, Any, str | None]] = [
    ("missing", _squad("كم؟"), r"en\.json: XQuAD-R file not found"),
    ("directory", _squad("كم؟"), r"en\.json: XQuAD-R file is a directory"),
    (b'{"data": [', _squad("كم؟"), r"en\.json:1: malformed JSON"),
    (b'{"data": "x"}', _squad("كم؟"), r"en\.json field 'data': expected a SQuAD-format object"),
    (b'{"data": ["\xff"]}', _squad("كم؟"), r"en\.json: not valid UTF-8"),
    (
        {"data": [{"paragraphs": "p"}]},
        _squad("كم؟"),
        r"en\.json field 'data\[0\]\.paragraphs': expected a list",
    ),
    (
        {"data": [{"paragraphs": [{"context": "c", "qas": [5]}]}]},
        _squad("كم؟"),
        r"field 'data\[0\]\.paragraphs\[0\]\.qas\[0\]': expected an object",
    ),
    (
        {"data": [{"paragraphs": [{"qas": []}]}]},
        _squad("كم؟"),
        r"field 'data\[0\]\.paragraphs\[0\]\.context': missing paragraph context",
    ),
    (
        _squad("q?", sentence_breaks=[[0, 99]]),
        _squad("كم؟"),
        r"field 'data\[0\]\.paragraphs\[0\]\.sentence_breaks\[0\]'",
    ),
    (_squad("q?", sentence_breaks=[["a", 3]]), _squad("كم؟"), r"sentence_breaks\[0\]"),
    (
        _squad("q?", qas=[{"id": "x1", "question": "q", "answers": [{"text": "T", "answer_start": "0"}]}]),
        _squad("كم؟"),
        r"answer_start",
    ),
    (
        _squad("q?", qas=[{"id": "x1", "question": "q", "answers": []}]),
        _squad("كم؟"),
        r"question without id or answers",
    ),
    (
        _squad("q?"),
        {"data": [{"paragraphs": [{"qas": [{"id": "zz", "question": "q"}]}]}]},
        r"ar\.json field .*'zz' is not in en\.json",
    ),
    (_squad("q?"), _squad("   "), r"ar\.json field 'question': question 'x1' has no text"),
    (_squad("q?"), {"data": []}, r"ar\.json: 1 questions of en\.json are missing"),
    (_squad("q?"), _squad("كم؟"), None),
]


@pytest.mark.parametrize(("en", "ar", "expected"), XQUAD_CASES, ids=[str(c[2])[:50] for c in XQUAD_CASES])
def test_xquad_r(tmp_path: Path, en: Any, ar: Any, expected: str | None) -> None:
    en_path = tmp_path / "en.json"
    if en == "directory":
        en_path.mkdir()
    elif isinstance(en, bytes):
        en_path.write_bytes(en)
    elif en != "missing":
        en_path.write_text(json.dumps(en, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "ar.json").write_text(json.dumps(ar, ensure_ascii=False), encoding="utf-8")
    if expected is None:
        b = load_xquad_r(tmp_path, ["ar"], split=(1.0, 0.0, 0.0))
        assert [q.text for q in b.questions["ar"]] == ["كم؟"] and b.paragraphs[0].title == "Big City"
        assert [s.text for s in b.sentences] == ["Tokyo is big.", "It rains."]
        return
    with pytest.raises(XqgInputError, match=expected) as e:
        load_xquad_r(tmp_path, ["ar"], split=(1.0, 0.0, 0.0))
    clean_line(e.value)


# -- empty evaluation sets, in memory ------------------------------------------------------------------------------
def test_all_yes_no_in_memory_is_an_error_not_a_statistics_error(world: Path) -> None:
    preds = json.loads((world / "pred_a.json").read_text())
    with pytest.raises(XqgInputError, match="yes/no") as e:
        evaluate_predictions(world / "q_yesno.jsonl", preds, workers=1, nltk_data=NLTK)
    clean_line(e.value)


# -- read-only places and full disks -------------------------------------------------------------------------------
PLACE_ERRORS = [
    (errno.EROFS, "read-only file system", "fix its permissions"),
    (errno.EACCES, "permission denied", "fix its permissions"),
    (errno.ENOSPC, "no space left on device", "free space"),
    (errno.EDQUOT, "disk quota exceeded", "free space"),
]


@pytest.mark.parametrize(
    ("code", "what", "todo"), PLACE_ERRORS, ids=[errno.errorcode[c[0]] for c in PLACE_ERRORS]
)
def test_guarded_turns_place_errors_into_one_line(
    capsys: pytest.CaptureFixture[str], code: int, what: str, todo: str
) -> None:
    def fail() -> None:
        raise OSError(code, os.strerror(code), "/cache/run/x.npy")

    with pytest.raises(SystemExit) as e:
        entrypoints._guarded(fail)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    verb = "cannot access" if code == errno.EACCES else "cannot write"
    assert err.startswith(f"error: {verb} /cache/run/x.npy: ") and what in err and todo in err


def test_guarded_keeps_other_os_errors_as_bugs() -> None:
    def fail() -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError, match="Bad file descriptor"):
        entrypoints._guarded(fail)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_full_disk_on_json_leaves_nothing(
    world: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
) -> None:
    """A write that fails half way (a full disk: write() names no file) is one line naming the file; the
    temporary file is gone and no partial JSON is left."""

    def write_half(dest: Path, obj: Any) -> None:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b'{"R@2kt": ')
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(eval_cli, "atomic_write_json", write_half)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--questions", str(world / "q.jsonl"), "--predictions", str(world / "pred_a.json")]
    argv += ["--workers", "1", "--nltk-data", NLTK, "--json", str(out / "m.json")]
    err = assert_cli_error(capsys, argv, f"cannot write {out / 'm.json'}")
    assert os.strerror(code).lower().split()[0] in err.lower() or "read-only" in err
    assert list(out.iterdir()) == []


def test_read_only_cache_is_refused_before_any_work(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unwritable ``paths.cache_dir`` fails at the start, naming the key (simulated: tests may run as root)."""
    cache = tmp_path / "ro"
    cache.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        entrypoints.os, "access", lambda p, m: False if Path(p) == cache else real_access(p, m)
    )
    cfg = compose_config(
        "evaluate",
        "logger=none",
        f"score.questions={world / 'q.jsonl'}",
        f"score.predictions={world / 'pred_a.json'}",
        cache=cache / "sub",
        out=tmp_path / "out",
    )
    with pytest.raises(SystemExit) as e:
        entrypoints.evaluate(cfg)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: field 'paths.cache_dir': {cache} is not writable (read-only or no permission)"
    ]


def test_cache_dir_that_is_a_file(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    cfg = compose_config("evaluate", "logger=none", cache=tmp_path / "f" / "cache", out=tmp_path / "out")
    with pytest.raises(SystemExit):
        entrypoints.evaluate(cfg)
    assert "field 'paths.cache_dir'" in capsys.readouterr().err


def test_full_disk_while_scoring_through_evaluate_py(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(dest: Path, obj: Any) -> None:
        with atomic_path(dest) as tmp:
            tmp.write_text("{")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("xqg.tasks.score.atomic_write_json", full)
    out = tmp_path / "out"
    cfg = compose_config(
        "evaluate",
        "logger=none",
        f"score.questions={world / 'q.jsonl'}",
        f"score.predictions={world / 'pred_a.json'}",
        "metrics.workers=1",
        f"metrics.nltk_data={NLTK}",
        cache=tmp_path / "cache",
        out=out,
    )
    with pytest.raises(SystemExit) as e:
        entrypoints.evaluate(cfg)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write {out / 'results.json'}: no space left")
    assert not any(out.iterdir())


# -- through a real process: exit code 2 and exactly one line on stderr -------------------------------------------
@pytest.mark.slow
def test_subprocesses_exit_2_with_one_line(world: Path, tmp_path: Path) -> None:
    env = {**os.environ, "NLTK_DATA": NLTK, "HYDRA_FULL_ERROR": ""}
    q, p = str(world / "q.jsonl"), str(world / "pred_a.json")
    eval_cli_cmd = [sys.executable, "-m", "xqg.tasks.eval_cli", "--workers", "1"]
    cases = {
        "decimals": (
            [*eval_cli_cmd, "--questions", q, "--predictions", p, "--decimals", "-1"],
            "'--decimals'",
        ),
        "directory": (
            [*eval_cli_cmd, "--questions", str(world / "folder"), "--predictions", p],
            "is a directory",
        ),
        "argparse": ([*eval_cli_cmd, "--questions", q, "--predictions", p, "--k", "x"], "--k"),
        "evaluate.py": (
            [
                sys.executable,
                str(REPO / "evaluate.py"),
                "augmentation.alpha=abc",
                f"paths.cache_dir={tmp_path / 'cache'}",
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            "error: field 'augmentation.alpha': ",
        ),
    }
    procs = {
        name: subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (cmd, _) in cases.items()
    }
    for name, proc in procs.items():
        _out, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, err)
        assert len(lines) == 1 and "Traceback" not in err, (name, err)
        assert cases[name][1] in lines[0], (name, err)
