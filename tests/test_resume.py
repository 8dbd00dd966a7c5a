"""A killed run resumes to exactly what an uninterrupted run makes, and a resumed sweep repeats nothing.

Fault injection: each stage of ``evaluate.py`` (retriever training, encoding, search, scoring, generator
training, generation, query sums, the xQG search) is killed mid-way in a forked child process
(``helpers.faults``: ``os._exit`` on the n-th call of one of the stage's functions, no cleanup, like ``kill -9``),
one after the other on one cache; a last run finishes, and every artifact and the metrics must equal an uninterrupted run's, byte for
byte. Sweeps: a tiny SQLite study, resumed as Hydra's Optuna sweeper would resume it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import numpy as np
import optuna
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import RandomSampler

from helpers.config import settings
from helpers.faults import KILLED, patch_to_die, run_task
from helpers.paths import REPO
from xqg.data.resumable import ResumableLoader, resumable_loader
from xqg.tasks import sweep_resume
from xqg.tasks.evaluate import run as evaluate
from xqg.tasks.resume import rng_state, set_rng_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "experiment=demo",
    "logger=none",
    "data.world.n_entities=30",
    "data.world.passages_per_entity=2",
    "backbone.tiny.vocab_size=600",
    "backbone.p_max_len=48",
    "train.epochs=1",
    "train.batch_size=8",
    "train.train_n_passages=2",
    "train.dev.source=none",
    "train.checkpoint_every_n_steps=2",
    "generator.train.max_steps=6",
    "generator.train.batch_size=8",
    "generator.train.effective_batch_size=8",
    "generator.train.checkpoint_every_n_steps=2",
    "generator.train.val_every_steps=3",
    "generator.max_source_length=32",
    "generator.model.tiny.vocab_size=600",
    "generator.model.tiny.dropout_rate=0.1",  # resumed training must replay the dropout masks too
    "generator.num_queries=2",
    "generator.decoding.max_new_tokens=8",
    "generator.shard.size=16",
    "augmentation.n=2",
    "augmentation.sums.shard_rows=16",
    "retrieval.chunk_size=16",
    "retrieval.passage_batch_size=8",
    "retrieval.search_chunk_rows=16",
    "retrieval.depth=20",
    "retrieval.run_formats=[tevatron]",
    "metrics.workers=1",
]

# (function to kill in, calls that finish first), in the order evaluate.py reaches them
KILLS = [
    ("xqg.models.retriever_module:RetrieverModule.training_step", 3),  # after the checkpoint at step 2
    ("xqg.retrieval.encode:Retriever.encode", 2),  # passage encoding, third chunk
    ("xqg.retrieval.runs:search", 0),  # the baseline search
    ("xqg.evaluation.token_cache:TokenCache.add", 0),  # scoring, writing the tokens it made
    ("xqg.models.generator_module:GeneratorModule.training_step", 5),  # after the checkpoint at step 4
    ("xqg.generation.generate:finish_shard", 1),  # generation, second shard
    ("xqg.retrieval.query_sums_build:_write_shard", 1),  # query sums, second shard
    ("xqg.retrieval.fused_scores:_sum_scores", 1),  # the xQG search (kept scores on the CPU), second block
]
IGNORED = {"manifest.json", "spec.json", "file_fingerprints.json"}  # timestamps; a per-user memo
IGNORED_DIRS = {"logs", "lightning", "csv"}


def _contents(root: Path) -> dict[str, list[bytes]]:
    """Every file of every artifact under ``root``, keyed by ``<kind>/<path inside the artifact>`` (fingerprints
    differ between two caches: a checkpoint's identity includes its creation time), except what records when,
    not what."""
    out: dict[str, list[bytes]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if not p.is_file() or p.name in IGNORED or IGNORED_DIRS & set(rel[:-1]) or len(rel) < 3:
            continue
        if p.name.startswith(".") or p.name.endswith(".lock"):
            continue
        if rel[0] == "tokens" and p.suffix == ".parquet":  # parts named by time: compare the rows they hold
            rows = pq.read_table(p).to_pylist()
            out.setdefault("tokens/rows", []).extend(json.dumps(r, sort_keys=True).encode() for r in rows)
            continue
        data = p.read_bytes()
        if p.suffix == ".json":  # paths name the cache, and shard records their wall time
            record = json.loads(data.decode().replace(str(root), "<cache>"))
            if isinstance(record, dict):
                record.pop("seconds", None)
            data = json.dumps(record, sort_keys=True).encode()
        out.setdefault("/".join((rel[0], *rel[2:])), []).append(data)
    return {k: sorted(v) for k, v in out.items()}


def _kill(target: str, n: int, cache: Path, out: Path) -> None:
    """Run ``evaluate.py`` in a forked child (it shares this process's imports, so no start-up cost) that dies
    with ``os._exit`` on the ``n + 1``-th call of ``target``; the child must reach that point."""
    overrides = [
        *TINY,
        f"paths.cache_dir={cache}",
        f"paths.output_dir={out}",
        f"paths.log_dir={out.parent / 'logs'}",
    ]
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            patch_to_die(target, n)
            run_task("evaluate", overrides)
            code = 0
        except BaseException:  # report anything, then leave without pytest's cleanup
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == KILLED, f"{target}: the kill point was not reached"


@pytest.mark.slow
def test_every_stage_killed_mid_way_resumes_to_the_uninterrupted_artifacts(tmp_path: Path) -> None:
    ref_cache, cache = tmp_path / "ref", tmp_path / "killed"
    expected = evaluate(settings("evaluate", *TINY, cache=ref_cache, out=tmp_path / "ref_out"))
    for target, n in KILLS:
        _kill(target, n, cache, tmp_path / "killed_out")
    got = evaluate(settings("evaluate", *TINY, cache=cache, out=tmp_path / "out"))
    assert got == expected

    ref, res = _contents(ref_cache), _contents(cache)
    kinds = {k.split("/")[0] for k in ref}
    assert {"retriever", "generator", "generated", "embeddings", "query_sums", "runs"} <= kinds, kinds
    assert sorted(res) == sorted(ref)
    different = [k for k in ref if res[k] != ref[k]]
    assert not different, different
    for name in ("results.json",):
        a = json.loads((tmp_path / "ref_out" / name).read_text())
        b = json.loads((tmp_path / "out" / name).read_text())
        assert a["metrics"] == b["metrics"]
    # the stores load to the same arrays (not only the same bytes on disk)
    emb = [np.load(next(c.glob("embeddings/*/shards/00000.emb.npy"))) for c in (ref_cache, cache)]
    assert np.array_equal(*emb)


# -- sweeps ----------------------------------------------------------------------------------------------------
GRID = {"augmentation.alpha": "choice(0.0, 0.01, 0.05)", "augmentation.n": "range(1, 3)"}
SPACE = {"augmentation.alpha": [0.0, 0.01, 0.05], "augmentation.n": [1, 2]}


def _sweep_config(storage: str, sampler: dict, n_trials: int, overrides: tuple[str, ...] = ()) -> DictConfig:
    """The part of a composed multirun config that :func:`prepare_resume` reads."""
    return OmegaConf.create(
        {
            "seed": 42,
            "hydra": {
                "overrides": {"task": ["experiment=demo", *overrides]},
                "sweeper": {
                    "storage": storage,
                    "study_name": "s",
                    "n_trials": n_trials,
                    "sampler": sampler,
                    "params": dict(GRID),
                },
            },
        }
    )


def _suggest(trial: optuna.Trial) -> tuple[float, int]:
    return (
        trial.suggest_categorical("augmentation.alpha", SPACE["augmentation.alpha"]),
        trial.suggest_int("augmentation.n", 1, 2),
    )


def _run_like_hydra(cfg: DictConfig) -> None:
    """What Hydra's Optuna sweeper does with the (prepared) config: build the sampler, load the study, ask
    ``n_trials`` trials, suggest the parameters, tell the values."""
    sw = cfg.hydra.sweeper
    if sw.sampler._target_ == sweep_resume.GRID_SAMPLER:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(SPACE, seed=sw.sampler.get("seed"))
    else:
        sampler = optuna.samplers.TPESampler(seed=int(sw.sampler.seed), n_startup_trials=10)
    study = optuna.create_study(study_name="s", storage=sw.storage, sampler=sampler, load_if_exists=True)
    for _ in range(int(sw.n_trials)):
        trial = study.ask()
        alpha, n = _suggest(trial)
        try:
            study.tell(trial, alpha + n)
        except RuntimeError as e:  # the grid sampler stops the study at its last point; Hydra ignores it too
            assert "Study.stop" in str(e)


def test_resumed_grid_sweep_fails_the_interrupted_trial_and_runs_each_point_once(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    grid = optuna.samplers.GridSampler(SPACE, seed=42)
    study = optuna.create_study(study_name="s", storage=storage, sampler=grid)
    for _ in range(2):  # the killed sweep: two trials told, the third asked and never told
        t = study.ask()
        study.tell(t, sum(_suggest(t)))
    _suggest(study.ask())

    cfg = _sweep_config(storage, {"_target_": sweep_resume.GRID_SAMPLER, "seed": 42}, n_trials=6)
    sweep_resume.prepare_resume(cfg)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "WAITING"]
    assert trials[3].system_attrs["fixed_params"] == trials[2].params  # the interrupted point, queued again
    assert cfg.hydra.sweeper.n_trials == 4  # 6 points - 3 finished + the re-queued one

    _run_like_hydra(cfg)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    points = [tuple(t.params.values()) for t in trials if t.state.name == "COMPLETE"]
    assert sorted(points) == sorted(
        (a, n) for a in SPACE["augmentation.alpha"] for n in SPACE["augmentation.n"]
    )
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


def test_grid_points_follow_command_line_sweep_overrides() -> None:
    points = sweep_resume.grid_points(GRID, ["experiment=demo", "augmentation.n=choice(5)"])
    assert len(points) == 3 and {p["augmentation.n"] for p in points} == {5}


def test_resumed_seeded_sampler_does_not_replay_its_proposals(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sampler = {"_target_": "optuna.samplers.TPESampler", "seed": "${seed}"}
    first = _sweep_config(storage, sampler, n_trials=3)
    sweep_resume.prepare_resume(first)  # a fresh study: nothing changes
    assert first.hydra.sweeper.sampler.seed == 42
    _run_like_hydra(first)
    resumed = _sweep_config(storage, sampler, n_trials=3)
    sweep_resume.prepare_resume(resumed)
    assert resumed.hydra.sweeper.sampler.seed == 45
    _run_like_hydra(resumed)
    params = [tuple(t.params.values()) for t in optuna.load_study(study_name="s", storage=storage).trials]
    # not resumed, the same seed would have proposed trials 3-5 exactly as trials 0-2
    assert params[3:] != params[:3]


# -- a real Hydra multirun, killed and resumed ----------------------------------------------------------------
TOY_APP = textwrap.dedent(
    """
    import os
    import hydra
    from omegaconf import DictConfig

    CALLS = [0]

    @hydra.main(config_path="conf", config_name="toy", version_base=None)
    def main(cfg: DictConfig) -> float:
        CALLS[0] += 1
        if CALLS[0] > int(os.environ.get("TOY_DIE_AFTER", "1000")):
            os._exit(86)  # kill -9 in the middle of a trial: the sweeper's process dies with it
        return float(cfg.augmentation.alpha) * 100 + int(cfg.augmentation.n)

    if __name__ == "__main__":
        main()
    """
)
TOY_CONF = "defaults:\n  - _self_\n  - augmentation: none\n  - sweep: null\nseed: 7\nretrieval:\n  objective: R@2kt\n"
TOY_CONF += "generator:\n  languages: [ar, bn, fi, ja, ko, ru, te]\n  num_queries: 5\nlogger: {}\n"


def _toy_sweep(app: Path, die_after: int | None, *overrides: str) -> int:
    env = {**os.environ, "TOY_DIE_AFTER": str(die_after if die_after is not None else 1000)}
    proc = subprocess.run(
        [sys.executable, str(app / "toy.py"), "-m", "sweep=grid_paper", *overrides],
        capture_output=True,
        text=True,
        cwd=app.parent,
        env=env,
        timeout=120,
    )
    assert proc.returncode in (0, 86), proc.stderr[-3000:]
    return proc.returncode


@pytest.mark.slow
def test_a_killed_grid_sweep_resumes_through_hydra_without_repeating_a_point(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "conf").mkdir(parents=True)
    (app / "toy.py").write_text(TOY_APP)
    (app / "conf" / "toy.yaml").write_text(TOY_CONF)
    (app / "conf" / "sweep").symlink_to(REPO / "sweeps")
    (app / "conf" / "augmentation").symlink_to(REPO / "conf" / "augmentation")
    db = tmp_path / "optuna.db"
    grid = ["augmentation.alpha=choice(0.0,0.01,0.05)", "augmentation.n=range(1,3)"]
    common = [f"hydra.sweeper.storage=sqlite:///{db}", *grid]
    assert _toy_sweep(app, 3, f"hydra.sweep.dir={tmp_path / 's1'}", *common) == 86
    (name,) = optuna.get_all_study_names(f"sqlite:///{db}")  # xqg-grid_paper-<experiment>-<storage digest>
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 + ["RUNNING"]

    assert _toy_sweep(app, None, f"hydra.sweep.dir={tmp_path / 's2'}", *common) == 0
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials  # the same study, resumed
    states = [t.state.name for t in trials]
    assert states.count("FAIL") == 1 and "RUNNING" not in states and "WAITING" not in states
    points = sorted(tuple(t.params.values()) for t in trials if t.state.name == "COMPLETE")
    assert points == sorted((a, n) for a in (0.0, 0.01, 0.05) for n in (1, 2))  # each once, none repeated


# -- the pieces: loader position and RNG states ---------------------------------------------------------------
def _loader(seed: int = 3) -> ResumableLoader:
    generator = torch.Generator().manual_seed(seed)
    data = list(range(40))
    return resumable_loader(data, RandomSampler(data, generator=generator), batch_size=4, generator=generator)


def _through_a_checkpoint(state: dict, tmp_path: Path) -> dict:
    torch.save(state, tmp_path / "state.pt")
    return torch.load(tmp_path / "state.pt", weights_only=True)


def _epoch(loader: ResumableLoader, batches: int | None = None) -> list[list[int]]:
    """One pass as Lightning takes it: by count (it never asks past the last batch it wants)."""
    it = iter(loader)
    return [next(it).tolist() for _ in range(len(loader) if batches is None else batches)]


def test_a_loader_resumes_mid_pass_with_the_same_order(tmp_path: Path) -> None:
    full = _loader()
    epochs = [_epoch(full) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]

    killed = _loader()
    _epoch(killed)
    seen = _epoch(killed, 3)  # epoch 2, killed after 3 batches
    state = _through_a_checkpoint(killed.state_dict(), tmp_path)
    assert state["batches"] == 3 and seen == epochs[1][:3]
    resumed = _loader(seed=99)  # a fresh process: the generator's state is gone
    resumed.load_state_dict(state)
    assert _epoch(resumed, len(resumed) - 3) == epochs[1][3:]  # the rest of epoch 2, nothing repeated
    assert _epoch(resumed) == epochs[2]

    limited = _loader()  # limit_train_batches=3: the trainer takes 3 batches a pass
    short = [_epoch(limited, 3) for _ in range(2)]
    state = _through_a_checkpoint(limited.state_dict(), tmp_path)  # saved at the end of the 2nd pass
    after = _epoch(limited, 3)
    resumed = _loader(seed=99)
    resumed.batches_per_pass = 3
    resumed.load_state_dict(state)
    assert _epoch(resumed, 3) == after != short[1]  # a new pass, continuing the generator's stream


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = _through_a_checkpoint(rng_state(), tmp_path)
    expected = (random.random(), np.random.rand(), torch.rand(3).tolist())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(3).tolist()) == expected
