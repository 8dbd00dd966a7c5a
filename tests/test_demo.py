"""The README's main job shows what the paper shows; reproductions/demo.yaml pins it and .ci/run checks it.

The expected numbers must carry the paper's claims (+xQG beats xDR for both tiny retrievers, the zero-shot gain
the larger, both gains significant), and the check the CI runs after the main job must fail when a gain stops
being significant or a number moves. The check is exercised on a real results.json of the pipeline on the demo
world (tests/fixtures/demo/results_real.json: the README main job's best xDR trial, trimmed to the blocks the check reads).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from helpers.config import settings
from helpers.paths import REPO
from xqg.core.errors import XqgInputError
from xqg.data.formats.xor import iter_xor_questions
from xqg.models.tiny_bert import TinyBertConfig
from xqg.tasks.reproduce import check_condition, load_matrix
from xqg.tasks.train_retriever import resolve_backbone, resolve_train_data

MATRIX = REPO / "reproductions" / "demo.yaml"
REAL = json.loads((REPO / "tests" / "fixtures" / "demo" / "results_real.json").read_text())


def _gain(condition_name: str, metric: str = "R@2kt") -> float:
    c = load_matrix(MATRIX).condition(condition_name)
    base, system = (next(r for r in c.rows if r.block == b) for b in ("baseline", "metrics"))
    assert base.expected and system.expected
    return system.expected[metric]["macro"] - base.expected[metric]["macro"]


def test_expected_numbers_carry_the_papers_claims() -> None:
    matrix = load_matrix(MATRIX)
    assert [c.name for c in matrix.conditions] == ["demo_xdr", "demo_zeroshot"]
    for c in matrix.conditions:
        assert [r.significant for r in c.rows if r.block == "metrics"] == [("R@2kt",)], c.name
        assert _gain(c.name) > 0 and _gain(c.name, "R@5kt") > 0
    assert _gain("demo_zeroshot") > _gain("demo_xdr") > 0


def _statuses(tmp_path: Path, results: dict) -> list[str]:
    """The check's verdicts on ``results`` against a condition that expects the real run's own numbers and a
    significant macro R@2kt gain (the form of reproductions/demo.yaml)."""
    expected = {
        block: {m: {"macro": round(REAL[block][m]["macro"], 2)} for m in ("R@2kt", "R@5kt")}
        for block in ("baseline", "metrics")
    }
    matrix = {
        "conditions": [
            {
                "name": "real",
                "tolerance": 0.5,
                "commands": ["evaluate.py experiment=demo"],
                "rows": [
                    {"name": "xDR", "from": "baseline", "expected": expected["baseline"]},
                    {
                        "name": "+xQG",
                        "from": "metrics",
                        "significant": ["R@2kt"],
                        "expected": expected["metrics"],
                    },
                ],
            }
        ]
    }
    (tmp_path / "m.yaml").write_text(json.dumps(matrix))  # JSON is YAML
    (tmp_path / "real" / "1").mkdir(parents=True)
    (tmp_path / "real" / "1" / "results.json").write_text(json.dumps(results))
    condition = load_matrix(tmp_path / "m.yaml").condition("real")
    return [c.status for c in check_condition(condition, tmp_path, ("R@2kt", "R@5kt"))]


def test_check_passes_on_a_real_significant_gain(tmp_path: Path) -> None:
    statuses = _statuses(tmp_path, REAL)
    assert len(statuses) == 5 and set(statuses) == {"OK"}  # 4 numbers + 1 significance check


def _not_significant(results: dict) -> None:
    for test in results["significance"]["tests"]["R@2kt"]["macro"].values():
        test["p_value"] = 0.2


def _worse(results: dict) -> None:  # significant, but for the baseline
    for test in results["significance"]["tests"]["R@2kt"]["macro"].values():
        test["diff"] = -abs(test["diff"])


def _corrected_away(results: dict) -> None:  # Holm-adjusted p-values decide when the run corrected
    results["significance"]["adjusted"] = {"R@2kt": {"macro": {"ttest": 0.08, "randomization": 0.09}}}


def _moved(results: dict) -> None:
    results["metrics"]["R@2kt"]["macro"] -= 1.0


def _untested(results: dict) -> None:
    del results["significance"]


@pytest.mark.parametrize("spoil", [_not_significant, _worse, _corrected_away, _moved, _untested])
def test_check_fails_when_the_gain_is_lost(tmp_path: Path, spoil) -> None:
    results = copy.deepcopy(REAL)
    spoil(results)
    assert {"FAIL", "MISSING"} & set(_statuses(tmp_path, results))


def test_zero_shot_vocabulary_covers_every_language(tmp_path: Path) -> None:
    """The zero-shot retriever trains on English only; its tiny vocabulary (``vocab_text: all_languages``) is also
    fitted on the XOR-language training questions' text, so those lose no word to [UNK] and far fewer evaluation
    questions do (in a 40-entity world some dev words use characters no training question has)."""
    world = ("data.world.n_entities=40", "train.dev.source=none")
    unknown: dict[str, dict[str, float]] = {}
    for vocab in ("all_languages", "train"):
        s = settings(
            "train", "experiment=demo_zeroshot", *world, f"backbone.tiny.vocab_text={vocab}", cache=tmp_path
        )
        assert s.train.source == "english"
        path, _ = resolve_backbone(s, resolve_train_data(s))
        tok = AutoTokenizer.from_pretrained(path)
        bundle = s.data.bundle(tmp_path)
        unknown[vocab] = {}
        for split in ("train", "dev"):
            questions = list(iter_xor_questions(Path(bundle.path("train").parent, f"xor_{split}.jsonl")))
            has_unk = [tok.unk_token_id in tok(q.text)["input_ids"] for q in questions]
            unknown[vocab][split] = sum(has_unk) / len(has_unk)
    assert unknown["all_languages"]["train"] == 0.0 and unknown["train"]["train"] > 0.5
    assert unknown["all_languages"]["dev"] < unknown["train"]["dev"] / 2
    assert (
        "vocab_text" not in TinyBertConfig().identity()
    )  # tiny models built before the option keep their cache
    with pytest.raises(XqgInputError, match="vocab_text"):
        TinyBertConfig(vocab_text="everything")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_main_job_runs_both_studies_side_by_side_without_spinning_threads(tmp_path: Path) -> None:
    """`make -j2 demo` (the README's main job and .ci/run's) starts both studies at once, each with the README's
    own command, and with idle OpenMP threads asleep (OMP_WAIT_POLICY=PASSIVE: spinning threads of one study take
    the cores the other needs). A fake interpreter records what each job was started with and fails unless the
    other job starts while it runs (one after the other, the first would wait for the second in vain)."""
    started = tmp_path / "started"
    fake = tmp_path / "python"
    fake.write_text(
        f'#!/bin/sh\necho "$OMP_WAIT_POLICY $*" >> {started}\ni=0\n'
        f'while [ "$(wc -l < {started})" -lt 2 ]; do i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done\n'
    )
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MAKEFLAGS", "MAKELEVEL")}
    subprocess.run(["make", "-s", "-j2", "demo", f"PY={fake}"], cwd=REPO, env=env, check=True, timeout=60)
    commands = sorted(started.read_text().splitlines())
    assert commands == [
        "PASSIVE evaluate.py -m experiment=demo sweep=demo",
        "PASSIVE evaluate.py -m experiment=demo_zeroshot sweep=demo_zeroshot",
    ]
    started.unlink()
    sequential = subprocess.run(["make", "-s", "demo", f"PY={fake}"], cwd=REPO, env=env, timeout=60)
    assert sequential.returncode != 0  # the fake does tell side by side from one after the other
    readme, ci = (REPO / "README.md").read_text(), (REPO / ".ci" / "run").read_text()
    assert all(f"python {c.removeprefix('PASSIVE ')}" in readme for c in commands)
    main_job = re.search(r"```bash\n(python3 -m venv .*)\n```", readme)
    assert main_job and main_job.group(1).endswith("&& make -j2 demo")
    assert re.search(r"^make -j2 demo(\s|$)", ci, re.M)
