"""The reproduction matrix (``reproductions/sigir2023.yaml``) and its runner (``xqg-reproduce``): every condition's
commands compose against the real configs, the dry run prints them all, the checks compare published with measured
numbers, and one small condition really runs end to end (scoring files, no models)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from helpers.config import compose_config
from helpers.paths import REPO
from xqg.core.errors import XqgInputError
from xqg.data.formats.jsonl import write_jsonl
from xqg.tasks.reproduce import (
    DEFAULT_MATRIX,
    Condition,
    Row,
    check_condition,
    command_argv,
    load_matrix,
    main,
    step_dir,
)

MATRIX = REPO / DEFAULT_MATRIX


def test_matrix_lists_every_paper_condition():
    m = load_matrix(MATRIX)
    names = {c.name for c in m.conditions}
    paper = {"mbert", "mbert_xqg", "xlmr", "xlmr_xqg", "zeroshot_mbert", "zeroshot_mbert_xqg"}
    assert paper | {"released_runs", "released_mbert_xqg", "ablation_n"} <= names
    published = {
        c.name: {r.name: r.expected["R@2kt"]["macro"] for r in c.rows if r.expected}
        for c in m.conditions
        if c.name in paper
    }
    assert published["mbert_xqg"] == {"mBERT": 44.1, "mBERT + xQG": 46.2}
    assert published["xlmr_xqg"] == {"XLM-R": 27.5, "XLM-R + xQG": 29.8}
    assert published["zeroshot_mbert_xqg"] == {"mBERT zero-shot": 33.0, "mBERT zero-shot + xQG": 36.0}
    for c in m.conditions:
        for r in c.rows:
            if r.expected and len(r.expected["R@2kt"]) > 1:  # per-language rows: the macro is their mean
                langs = [v for k, v in r.expected["R@2kt"].items() if k != "macro"]
                assert r.expected["R@2kt"]["macro"] == pytest.approx(sum(langs) / len(langs), abs=0.01)


def _overrides(argv: list[str]) -> tuple[str, list[str]]:
    script = Path(argv[1]).stem
    return ("train" if script == "train" else "evaluate"), [a for a in argv[2:] if not a.startswith("hydra.")]


@pytest.mark.parametrize("name", [c.name for c in load_matrix(MATRIX).conditions])
def test_every_command_composes_against_the_real_configs(name, tmp_path):
    """A typo in a matrix command (an unknown experiment, key or group option) fails here, not on a GPU."""
    m = load_matrix(MATRIX)
    c = m.condition(name)
    for i, cmd in enumerate(c.commands, 1):
        argv = command_argv(cmd, m.variables, step_dir(tmp_path, c, i))
        assert argv[0] == sys.executable and argv[-1] == f"hydra.run.dir={step_dir(tmp_path, c, i)}"
        config, overrides = _overrides(argv)
        cfg = compose_config(config, *overrides, cache=tmp_path / "cache")
        assert cfg is not None


def test_dry_run_prints_every_condition(capsys, tmp_path):
    assert main(["--matrix", str(MATRIX), "--all", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    m = load_matrix(MATRIX)
    for c in m.conditions:
        assert f"# {c.name}: " in out
        for i in range(1, len(c.commands) + 1):
            assert f"hydra.run.dir={step_dir(tmp_path.resolve(), c, i)}" in out
    commands = [line for line in out.splitlines() if line.startswith("python ")]
    assert len(commands) == sum(len(c.commands) for c in m.conditions)
    assert all(shlex.split(line)[1] in ("train.py", "evaluate.py") for line in commands)


def test_set_overrides_a_variable(capsys, tmp_path):
    rc = main(
        [
            "--matrix",
            str(MATRIX),
            "--condition",
            "released_runs",
            "--dry-run",
            "--set",
            "released_corpus=/d/s.tsv",
        ]
    )
    assert rc == 0 and "score.corpus=/d/s.tsv" in capsys.readouterr().out


def _results(folder: Path, metrics: dict, **blocks: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"metrics": metrics, **blocks}))


def test_checks_published_against_measured(tmp_path):
    cond = Condition(
        name="c",
        title="t",
        commands=("evaluate.py a=1", "evaluate.py a=2"),
        rows=(
            Row("base", block="baseline", expected={"R@2kt": {"ar": 40.0, "macro": 44.1}}),
            Row("xqg", expected={"R@2kt": {"macro": 46.2}}),
            Row("first step", step=1),
        ),
        tolerance=0.5,
    )
    _results(
        step_dir(tmp_path, cond, 2),
        {"R@2kt": {"ar": 41.0, "macro": 46.0}, "R@5kt": {"macro": 50.0}},
        baseline={"R@2kt": {"ar": 40.4, "macro": 44.0}},
    )
    checks = {(c.row, c.metric, c.language): c for c in check_condition(cond, tmp_path, ["R@2kt", "R@5kt"])}
    assert checks[("base", "R@2kt", "ar")].status == "OK"
    assert checks[("base", "R@2kt", "ar")].diff == pytest.approx(0.4)
    assert checks[("base", "R@2kt", "macro")].status == "OK"
    assert checks[("xqg", "R@2kt", "macro")].status == "OK"
    assert checks[("first step", "R@2kt", "macro")].status == "MISSING"  # step 1 never wrote results
    _results(step_dir(tmp_path, cond, 1), {"R@2kt": {"macro": 30.0}, "R@5kt": {"macro": 35.0}})
    checks = {(c.row, c.metric, c.language): c for c in check_condition(cond, tmp_path, ["R@2kt", "R@5kt"])}
    assert checks[("first step", "R@5kt", "macro")].status == "reported"
    assert checks[("first step", "R@5kt", "macro")].measured == 35.0
    far = Condition(
        "c", "t", cond.commands, (Row("xqg", expected={"R@2kt": {"macro": 47.0}}),), tolerance=0.5
    )
    assert [c.status for c in check_condition(far, tmp_path, ["R@2kt"])] == ["FAIL"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            "conditions: [{name: a, commands: [train.py]}, {name: a, commands: [train.py]}]",
            "conditions[1].name",
        ),
        ("conditions: [{name: a, commands: [train.py], rows: [{name: r, from: nowhere}]}]", "rows[0].from"),
        ("conditions: [{name: a, commands: [train.py], rows: [{name: r, step: 3}]}]", "rows[0].step"),
        ("conditions: [{name: a}]", "conditions[0].commands"),
        ("conditions: [{name: a, commands: [x], rows: [{name: r, expected: {R@2kt: {ar: high}}}]}]", "R@2kt"),
        ("[1, 2", None),
    ],
)
def test_bad_matrix_is_one_line(tmp_path, capsys, body, field):
    path = tmp_path / "m.yaml"
    path.write_text(body)
    with pytest.raises(XqgInputError) as e:
        load_matrix(path)
    if field:
        assert field in str(e.value)
    assert str(path) in str(e.value)
    assert main(["--matrix", str(path), "--all", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_unknown_condition_and_bad_command(tmp_path, capsys):
    assert main(["--matrix", str(MATRIX), "--condition", "nope", "--dry-run"]) == 2
    assert "released_runs" in capsys.readouterr().err  # the error lists the choices
    path = tmp_path / "m.yaml"
    path.write_text("conditions: [{name: a, commands: ['rm -rf /']}]")
    assert main(["--matrix", str(path), "--all", "--dry-run"]) == 2
    assert "must start with" in capsys.readouterr().err


@pytest.mark.slow
def test_runner_runs_a_condition_and_checks_it(tmp_path, capsys):
    """A real run shaped like ``released_runs``: ``evaluate.py score.*`` with a run file over a corpus given as a
    glob of shards (read in natural order), where half the questions find their answer."""
    qs = [{"id": f"q{i}", "question": f"q {i}?", "answers": [f"ans{i}"], "lang": "ja"} for i in range(4)]
    write_jsonl(tmp_path / "q.jsonl", qs)
    for shard in (0, 1):  # answers for q0, q1 in shard_0 / shard_1; q2, q3 are answered nowhere
        rows = [{"docid": f"d{shard}", "title": "t", "text": f"the answer is ans{shard} ."}]
        write_jsonl(tmp_path / "shards" / f"shard_{shard}.jsonl", rows)
    (tmp_path / "run.tsv").write_text("".join(f"q{i}\td{i % 2}\t1.0\n" for i in range(4)))
    (tmp_path / "m.yaml").write_text(
        f"""
conditions:
  - name: tiny
    title: scoring only
    tolerance: 0.01
    commands: ["evaluate.py score.questions=${{qs}} score.run=${{run}} 'score.corpus=${{corpus}}' logger=none"]
    rows: [{{name: sys, expected: {{R@2kt: {{ja: 50.0, macro: 50.0}}}}}}]
variables: {{qs: {tmp_path / "q.jsonl"}, run: {tmp_path / "run.tsv"}, corpus: "{tmp_path / "shards"}/shard_*.jsonl"}}
"""
    )
    out = tmp_path / "out"
    rc = main(["--matrix", str(tmp_path / "m.yaml"), "--all", "--out", str(out), "--root", str(REPO)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "| tiny | sys | R@2kt | ja | 50.00 | 50.00 | +0.00 | 0.01 | OK |" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["failed"] == [] and {c["status"] for c in report["checks"]} == {"OK"}
    # the same results checked against a wrong expectation fail, without running anything again
    (tmp_path / "m.yaml").write_text((tmp_path / "m.yaml").read_text().replace("ja: 50.0", "ja: 75.0"))
    assert main(["--matrix", str(tmp_path / "m.yaml"), "--all", "--out", str(out), "--check-only"]) == 1
