"""``xqg-eval`` and ``evaluate.py score.*=...``: the paper-layout table, comparisons with significance markers,
JSON output, and one-line errors (exit code 2, no traceback) for bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import settings
from xqg.core.errors import XqgInputError
from xqg.data.formats.jsonl import write_jsonl
from xqg.data.formats.runs import write_run
from xqg.tasks.eval_cli import main
from xqg.tasks.score import options_from_settings

REPO = Path(__file__).resolve().parents[1]
DEV = "xor-tydi/xor_dev_retrieve_eng_span_v1_1.jsonl"


@pytest.fixture()
def small_world(tmp_path):
    """12 questions in two languages, a corpus, two runs and the equivalent two prediction files."""
    words = ["Tokyo", "is", "big", ".", "Seoul", "Paris", "river", "New", "York", "capital"]
    passages = [
        {"docid": f"d{i}", "title": "t", "text": " ".join(words[(i * j) % len(words)] for j in range(40))}
        for i in range(20)
    ]
    write_jsonl(tmp_path / "corpus.jsonl", passages)
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
    write_jsonl(tmp_path / "q.jsonl", qs)
    text = {p["docid"]: p["text"] for p in passages}
    for name, shift in (("a", 0), ("b", 7)):
        run = {x["id"]: [(f"d{(i + shift + j) % 20}", 5.0 - j) for j in range(5)] for i, x in enumerate(qs)}
        write_run(tmp_path / f"run_{name}.tsv", run)
        preds = [{"id": x["id"], "lang": x["lang"], "ctxs": [text[d] for d, _ in run[x["id"]]]} for x in qs]
        (tmp_path / f"pred_{name}.json").write_text(json.dumps(preds))
    return tmp_path


def test_parity_file_table_and_json(shared_data, parity_dir, tmp_path, capsys):
    out = tmp_path / "out.json"
    rc = main(
        [
            "--questions",
            str(shared_data / DEV),
            "--predictions",
            str(parity_dir / "xor_dev_predictions_a.json.gz"),
            "--allow-missing",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["System", "Metric", "ar", "bn", "fi", "ja", "ko", "ru", "te", "Avg"]
    assert lines[2].split() == [
        "xor_dev_predictions_a",
        "R@2kt",
        "13.79",
        "24.73",
        "15.91",
        "18.06",
        "17.11",
        "19.70",
        "20.31",
        "18.51",
    ]
    assert lines[4].split() == ["questions", "87", "93", "88", "72", "76", "66", "64", "546"]
    assert any("1510 questions had no prediction" in x for x in lines)
    expected = json.loads((parity_dir / "xor_dev_predictions_a.expected.json").read_text())
    got = json.loads(out.read_text())
    assert got.keys() == expected.keys()
    for m in expected:
        assert got[m]["count"] == expected[m]["count"]
        for key in expected[m]:
            if key != "count":
                assert got[m][key] == pytest.approx(expected[m][key], abs=1e-9)


def test_compare_two_prediction_files(small_world, capsys):
    w = small_world
    out = w / "cmp.json"
    rc = main(
        [
            "--questions",
            str(w / "q.jsonl"),
            "--predictions",
            str(w / "pred_a.json"),
            "--compare",
            str(w / "pred_b.json"),
            "--json",
            str(out),
            "--k",
            "1",
            "--markdown",
            "--level",
            "0.01",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "| System | Metric | ja | ko | Avg |" in text
    assert "| pred_a | R@1kt |" in text and "| pred_b | R@1kt |" in text
    assert "† p < 0.01 vs pred_a, paired t-test" in text
    assert "‡ p < 0.01 vs pred_a, paired randomisation test" in text
    got = json.loads(out.read_text())
    assert list(got) == ["R@1kt", "compare", "significance"]
    assert got["significance"]["level"] == 0.01 and "alpha" not in got["significance"]
    assert got["compare"]["name"] == "pred_b"
    assert set(got["significance"]["tests"]["R@1kt"]) == {"ja", "ko", "macro"}


def test_run_mode_with_compare_equals_prediction_mode(small_world, capsys):
    w = small_world
    base = ["--questions", str(w / "q.jsonl"), "--k", "1"]
    assert (
        main(
            [
                *base,
                "--predictions",
                str(w / "pred_a.json"),
                "--compare",
                str(w / "pred_b.json"),
                "--json",
                str(w / "p.json"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *base,
                "--run",
                str(w / "run_a.tsv"),
                "--corpus",
                str(w / "corpus.jsonl"),
                "--cache-dir",
                str(w / "cache"),
                "--compare",
                str(w / "run_b.tsv"),
                "--json",
                str(w / "r.json"),
            ]
        )
        == 0
    )
    p = json.loads((w / "p.json").read_text())
    r = json.loads((w / "r.json").read_text())
    assert p["R@1kt"] == r["R@1kt"] and p["compare"]["R@1kt"] == r["compare"]["R@1kt"]
    assert (w / "cache" / "tokens").is_dir()
    out = capsys.readouterr().out
    assert "run_a" in out and "run_b" in out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("xqg-eval: error: ")
    return err


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("malformed", r"bad\.json:3: malformed JSON"),
        ("missing_field", r"bad\.json:2 field 'ctxs': item 0: missing"),
        ("duplicate", r"bad\.json:3 field 'id': duplicate prediction id 'q1'"),
        ("empty_answers", r"q\.jsonl:2 field 'answers': empty list"),
        ("unknown_docid", r"run\.tsv: 1 docids of the run are not in the corpus .*ghost"),
        ("run_without_corpus", r"--run needs --corpus"),
        ("no_such_file", r"nope\.json: predictions/run file not found"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(small_world, capsys, case, pattern):
    w = small_world
    q = w / "q.jsonl"
    args = ["--questions", str(q), "--predictions", str(w / "bad.json"), "--allow-missing"]
    if case == "malformed":
        (w / "bad.json").write_text(
            '[\n{"id": "q1", "lang": "ko", "ctxs": []},\n{"id": "q2", "lang": "ja",}\n]'
        )
    elif case == "missing_field":
        (w / "bad.json").write_text('[\n{"id": "q1", "lang": "ko"}\n]')
    elif case == "duplicate":
        (w / "bad.json").write_text(
            '[\n{"id": "q1", "lang": "ko", "ctxs": []},\n{"id": "q1", "lang": "ko", "ctxs": []}\n]'
        )
    elif case == "empty_answers":
        lines = q.read_text().splitlines()
        row = json.loads(lines[1])
        row["answers"] = []
        lines[1] = json.dumps(row)
        q.write_text("\n".join(lines) + "\n")
        args[3] = str(w / "pred_a.json")
    elif case == "unknown_docid":
        write_run(w / "run.tsv", {"q0": [("d1", 2.0), ("ghost", 1.0)]})
        args = [
            "--questions",
            str(q),
            "--run",
            str(w / "run.tsv"),
            "--corpus",
            str(w / "corpus.jsonl"),
            "--cache-dir",
            str(w / "cache"),
            "--allow-missing",
        ]
    elif case == "run_without_corpus":
        args = ["--questions", str(q), "--run", str(w / "run_a.tsv")]
    elif case == "no_such_file":
        args[3] = str(w / "nope.json")
    assert main(args) == 2
    assert re.search(pattern, _error_line(capsys))


def test_console_script_exit_code_and_single_line(small_world):
    w = small_world
    (w / "bad.json").write_text("[\n{oops}\n]")
    exe = Path(sys.executable).with_name("xqg-eval")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "xqg.tasks.eval_cli"]
    proc = subprocess.run(
        [*cmd, "--questions", str(w / "q.jsonl"), "--predictions", str(w / "bad.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "bad.json:2: malformed JSON" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_evaluate_py_scores_files_and_writes_results_json(small_world, shared_data):
    w = small_world
    env = {**os.environ, "XQG_SHARED_DATA": str(shared_data), "WANDB_MODE": "disabled"}
    env.pop("NLTK_DATA", None)  # found through metrics.nltk_data = ${paths.shared_data_dir}/nltk_data
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "evaluate.py"),
            f"score.questions={w / 'q.jsonl'}",
            f"score.predictions={w / 'pred_a.json'}",
            f"score.compare={w / 'pred_b.json'}",
            "metrics.ks=[1,2]",
            "logger=none",
            f"paths.log_dir={w / 'outputs'}",
            f"paths.cache_dir={w / 'cache'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=w,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pred_b" in proc.stdout and "R@2kt" in proc.stdout
    results = list((w / "outputs").rglob("results.json"))
    assert len(results) == 1
    got = json.loads(results[0].read_text())
    assert set(got) == {"R@1kt", "R@2kt", "compare", "significance"}
    # no warnings at all from Hydra or this config (not even the version_base deprecation)
    stderr = [x for x in proc.stderr.splitlines() if x.strip()]
    stray = [x for x in stderr if "Warning" in x]
    assert not stray, proc.stderr


def test_several_named_systems_qrels_measures_and_every_output(small_world, capsys):
    """Three runs against the first, with names, qrels measures, Holm, and the LaTeX/CSV/per-question files."""
    w = small_world
    qids = [f"q{i}" for i in range(12)]
    run_c = {q: [(f"d{(i + 1 + j) % 20}", 5.0 - j) for j in range(5)] for i, q in enumerate(qids)}
    write_run(w / "run_c.tsv", run_c)
    # the gold passage of q<i> is d<i+1>: rank 2 in run_a, absent from run_b, rank 1 in run_c
    (w / "dev.qrels").write_text("".join(f"q{i} 0 d{(i + 1) % 20} 1\n" for i in range(12)))
    out = {x: w / f"out.{x}" for x in ("json", "tex", "csv", "tsv")}
    argv = ["--questions", str(w / "q.jsonl"), "--corpus", str(w / "corpus.jsonl"), "--k", "1"]
    argv += ["--run", *(str(w / f"run_{x}.tsv") for x in "abc"), "--names", "base", "x", "y"]
    argv += ["--qrels", str(w / "dev.qrels"), "--measures", "MRR@10", "Recall@1", "nDCG@10", "mAP@20"]
    argv += ["--correction", "holm", "--cache-dir", str(w / "cache"), "--json", str(out["json"])]
    argv += ["--latex", str(out["tex"]), "--csv", str(out["csv"]), "--per-query", str(out["tsv"])]
    assert main(argv) == 0
    text = capsys.readouterr().out
    rows = {tuple(line.split()[:2]) for line in text.splitlines()}
    for name in ("base", "x", "y"):
        assert {(name, "R@1kt"), (name, "MRR@10"), (name, "Recall@1"), (name, "mAP@20")} <= rows
    assert (
        "(Holm-adjusted over the 30 tests of each comparison)" in text
    )  # (ja, ko, macro) x 5 metrics x 2 tests
    got = json.loads(out["json"].read_text())
    assert got["MRR@10"]["macro"] == pytest.approx(50.0) and got["compare"]["name"] == "x"
    assert [s["name"] for s in got["systems"]] == ["x", "y"]
    y = got["systems"][1]
    assert y["MRR@10"]["macro"] == 100.0 and y["Recall@1"]["ja"] == 100.0
    assert y["significance"]["correction"] == "holm" and y["significance"]["a"] == "base"
    assert set(y["significance"]["tests"]) == {"R@1kt", "MRR@10", "Recall@1", "nDCG@10", "mAP@20"}
    tex = out["tex"].read_text()
    assert tex.startswith(r"\begin{tabular}{llrrr}") and r"y & MRR@10 & 100.00" in tex
    csv_rows = out["csv"].read_text().splitlines()
    assert csv_rows[0] == (
        "system,metric,language,value,questions,markers,p_ttest,p_randomization,"
        "p_ttest_adjusted,p_randomization_adjusted"
    )
    assert len(csv_rows) == 1 + 3 * 5 * 3  # systems x metrics x (ja, ko, macro)
    assert any(r.startswith("base,MRR@10,macro,50.0,12,,,") for r in csv_rows)
    per_query = [r.split("\t") for r in out["tsv"].read_text().splitlines()]
    assert per_query[0] == ["system", "qid", "lang", "R@1kt", "MRR@10", "Recall@1", "nDCG@10", "mAP@20"]
    assert len(per_query) == 1 + 3 * 12
    assert ["base", "q0", "ko"] == per_query[1][:3] and per_query[1][4] == "0.5"
    assert {r[3] for r in per_query[1:]} <= {"0", "1"}
    # the LaTeX table can go to stdout instead of the text one
    assert main([*argv[: argv.index("--json")], "--latex", "-"]) == 0
    assert capsys.readouterr().out.startswith(r"\begin{tabular}")


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--names", "only-one"], r"field '--names': 1 names for 2 systems"),
        (["--names", "s", "s"], r"field '--names': names must be distinct"),
        (["--qrels", "dev.qrels"], r"--qrels needs --run files"),
        (["--latex", "-", "--csv", "-"], r"only one table can go to stdout"),
        (["--correction", "bonferroni"], r"argument --correction: invalid choice"),
    ],
)
def test_multi_system_flags_fail_before_scoring(small_world, capsys, extra, pattern):
    w = small_world
    argv = [
        "--questions",
        str(w / "q.jsonl"),
        "--predictions",
        str(w / "pred_a.json"),
        str(w / "pred_b.json"),
    ]
    if "invalid choice" in pattern:  # argparse's own usage error: exit code 2 as well
        with pytest.raises(SystemExit) as exc:
            main([*argv, *extra])
        assert exc.value.code == 2
    else:
        assert main([*argv, *extra]) == 2
    assert re.search(pattern, capsys.readouterr().err)


def test_bad_measure_names_the_flag(small_world, capsys):
    w = small_world
    (w / "dev.qrels").write_text("q0 0 d1 1\n")
    argv = [
        "--questions",
        str(w / "q.jsonl"),
        "--corpus",
        str(w / "corpus.jsonl"),
        "--run",
        str(w / "run_a.tsv"),
    ]
    assert main([*argv, "--qrels", str(w / "dev.qrels"), "--measures", "MRR@ten"]) == 2
    assert "field '--measures': unknown measure 'MRR@ten'" in _error_line(capsys)


def test_metrics_correction_setting_reaches_the_scoring_options():
    assert options_from_settings(settings("evaluate").metrics).correction == "none"
    assert options_from_settings(settings("evaluate", "metrics.correction=holm").metrics).correction == "holm"
    with pytest.raises(XqgInputError, match=r"field 'metrics.correction': must be one of \['none', 'holm'\]"):
        options_from_settings(settings("evaluate", "metrics.correction=bonferroni").metrics)
