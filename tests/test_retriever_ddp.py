"""The command users run, with data parallelism: ``train.py`` under DDP on 2 CPU processes (gloo), so the
cross-device gather of queries and passages, the world-size loss scaling and rank-0-only export really run."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xqg.models.biencoder import SPEC_FILE, load_retriever

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_py_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    env = {**os.environ, "XQG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "experiment=demo",
        "logger=csv",
        f"paths.log_dir={tmp_path / 'out'}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "data.world.n_entities=40",
        "backbone.tiny.vocab_size=1000",
        "backbone.p_max_len=48",
        "train.batch_size=8",
        "train.epochs=1",
        "train.dev.max_passages=300",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    printed = [line for line in res.stdout.splitlines() if line.startswith("retriever checkpoint:")]
    assert len(printed) == 1  # rank 0 reports, rank 1 stays quiet
    assert "dev recall@20:" in res.stdout
    run_dirs = list((tmp_path / "out" / "train" / "runs").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "csv" / "metrics.csv").exists()
    ckpt = (run_dirs[0] / "retriever_checkpoint").resolve()
    assert (ckpt / SPEC_FILE).exists()
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["counts"]["world_size"] == 2 and manifest["config"]["trainer"]["world_size"] == 2
    # each process takes half of the examples per epoch: ceil(ceil(n / 2) / batch) steps
    with gzip.open(manifest["extra"]["train_path"], "rt") as f:
        n_train = sum(1 for _ in f)
    assert manifest["counts"]["steps"] == math.ceil(math.ceil(n_train / 2) / 8)
    model, _, spec = load_retriever(ckpt)
    assert spec.pooling == "mean" and sum(p.numel() for p in model.parameters()) > 0
