"""``benchmarks/gpu.py --tiny``: the GPU benchmark's code runs end to end (on the CPU, at tiny sizes) where only
torch, transformers and Lightning are installed: hydra, omegaconf, optuna, nltk and faiss are hidden from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HIDDEN = ("hydra", "omegaconf", "optuna", "nltk", "faiss")
RUN = (
    "import runpy, sys\n"
    f"for name in {HIDDEN!r}:\n"
    "    sys.modules[name] = None  # any import of it raises ImportError\n"
    "sys.argv = ['gpu.py', *sys.argv[1:]]\n"
    "runpy.run_path('benchmarks/gpu.py', run_name='__main__')\n"
)


@pytest.mark.slow
def test_tiny_run_writes_every_table_without_the_optional_packages(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RUN, "--tiny", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    assert "Traceback" not in report, report
    for part in ("## search", "## generation", "## encoding", "## training", "## demo"):
        assert part in report
    for row in ("xqg torch backend + xQG fusion per block", "xqg sampling loop", "`model.generate`",
                "xqg static decoder |", "`encode_texts`", "model only", "Lightning `RetrieverModule`",
                "bare PyTorch loop", "demo generation: tiny T5", "xqg static decoder (the CPU's batch)"):  # fmt: skip
        assert row in report
    assert "static decoder vs the model's forward, relative logit error |  | " in report
    assert "unavailable" not in report and "failed" not in report
    assert "| tokens equal: greedy static decoder vs loop | 2 | 100.0% |" in report  # fp32 on the CPU: exact
    assert "| tokens equal: sampled, graphs vs eager steps | 2 | 100.0% |" in report
    assert "faiss not installed" in report  # hidden here, so the benchmark says so instead of failing
    assert "(`block_topk` == score desc, row asc) | PASS" in report
    assert "skipped" not in report  # every measurement fits its budget at tiny sizes
