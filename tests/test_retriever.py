"""Retriever: bi-encoder save/load, tiny backbone, Tevatron loss (incl. the DDP gather maths), and training on
the synthetic world (the loss falls, dev retrieval beats the untrained model, the cache is reused, a killed run
resumes), plus the Hydra experiments."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers.config import settings
from xqg.core.errors import XqgInputError
from xqg.data.dev_set import DevSet
from xqg.models.biencoder import SPEC_FILE, BiEncoder, RetrieverSpec, load_retriever
from xqg.models.retriever_module import ContrastiveOutput, RetrieverModule, contrastive_loss
from xqg.models.tiny_bert import TinyBertConfig, build_tiny_bert, tiny_bert_backbone, train_wordpiece
from xqg.retrieval.dev_check import evaluate_dev
from xqg.tasks.builders import build_trainer
from xqg.tasks.schema import TrainSettings

SCRIPTS = {
    "ar": "ولد الملك في مدينة القاهرة عام ألف",
    "bn": "রাজা কোন শহরে জন্মগ্রহণ করেছিলেন",
    "ja": "王はどの都市で生まれましたか。東京です",
    "ko": "왕은 어느 도시에서 태어났습니까",
    "te": "రాజు ఏ నగరంలో జన్మించాడు",
    "ru": "В каком городе родился король Иван",
    "fi": "Missä kaupungissa kuningas syntyi vuonna",
    "zh": "国王出生在哪个城市",
    "en": "In which city was the king born? Helsinki, 1850.",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = list(SCRIPTS.values()) * 3
    return tiny_bert_backbone(
        tmp_path_factory.mktemp("tiny"), TinyBertConfig(vocab_size=400), lambda: texts, "t1"
    )


def _batch(tok: object, texts: list[str], max_len: int = 32) -> dict[str, torch.Tensor]:
    return tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")  # type: ignore[operator]


# -- tiny backbone and tokenizer -----------------------------------------------------------------------------
def test_tiny_tokenizer_covers_every_script() -> None:
    tok = train_wordpiece(list(SCRIPTS.values()) * 2, vocab_size=300)
    for lang, text in SCRIPTS.items():
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, (lang, tok.convert_ids_to_tokens(ids))
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        # cased, accents and vowel signs kept: decoding gives the words back (CJK split into characters)
        decoded = tok.decode(ids, skip_special_tokens=True).replace(" ", "")
        assert decoded == "".join(text.split()), lang


def test_tiny_backbone_is_cached_by_texts_and_config(tmp_path: Path) -> None:
    texts = list(SCRIPTS.values())
    calls: list[int] = []

    def source() -> list[str]:
        calls.append(1)
        return texts

    cfg = TinyBertConfig(vocab_size=300, hidden_size=32, num_heads=2, intermediate_size=64)
    a = tiny_bert_backbone(tmp_path, cfg, source, "fp-a")
    b = tiny_bert_backbone(tmp_path, cfg, source, "fp-a")
    assert a == b and len(calls) == 1 and (a / "manifest.json").exists()
    assert tiny_bert_backbone(tmp_path, cfg, source, "fp-b") != a  # other training text
    assert (
        tiny_bert_backbone(
            tmp_path,
            TinyBertConfig(vocab_size=301, hidden_size=32, num_heads=2, intermediate_size=64),
            source,
            "fp-a",
        )
        != a
    )
    # seeded: the same config builds the same weights without touching the global RNG
    state = torch.random.get_rng_state()
    m1, m2 = build_tiny_bert(cfg, 50), build_tiny_bert(cfg, 50)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(
        torch.equal(x, y) for x, y in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True)
    )


# -- bi-encoder ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        RetrieverSpec(),
        RetrieverSpec(pooling="mean", normalize=True, temperature=0.05, q_max_len=16, p_max_len=64),
        RetrieverSpec(shared=False),
    ],
    ids=["cls-shared", "mean-normalized", "separate"],
)
def test_save_load_gives_identical_embeddings(tiny_dir: Path, tmp_path: Path, spec: RetrieverSpec) -> None:
    torch.manual_seed(0)
    model = BiEncoder.from_backbone(tiny_dir, spec)
    _, tok, _ = load_retriever(tiny_dir)
    if not spec.shared:  # make the two encoders differ, as after training
        with torch.no_grad():
            for p in model.passage_encoder.parameters():
                p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "ckpt", tok)
    loaded, tok2, spec2 = load_retriever(tmp_path / "ckpt")
    assert spec2 == spec and (tmp_path / "ckpt" / SPEC_FILE).exists()
    model.eval()
    b = _batch(tok, list(SCRIPTS.values()))
    b2 = _batch(tok2, list(SCRIPTS.values()))
    assert torch.equal(b["input_ids"], b2["input_ids"])
    with torch.no_grad():
        for fn in ("encode_query", "encode_passage"):
            x = getattr(model, fn)(b["input_ids"], b["attention_mask"])
            y = getattr(loaded, fn)(b2["input_ids"], b2["attention_mask"])
            assert torch.equal(x, y), fn
        q = model.encode_query(b["input_ids"], b["attention_mask"])
        p = model.encode_passage(b["input_ids"], b["attention_mask"])
    if spec.normalize:
        assert torch.allclose(q.norm(dim=-1), torch.ones(len(SCRIPTS)), atol=1e-5)
    assert torch.equal(q, p) == spec.shared


def test_plain_hf_checkpoint_loads_with_reference_defaults(tiny_dir: Path, tmp_path: Path) -> None:
    """A checkpoint without xqg_retriever.json (e.g. the released ielabgroup model): CLS, shared, dot product,
    and the embedding is exactly last_hidden_state[:, 0] of the plain AutoModel."""
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(str(tiny_dir)).eval()
    shutil.copytree(tiny_dir, tmp_path / "plain")
    (tmp_path / "plain" / "manifest.json").unlink()
    model, tok, spec = load_retriever(tmp_path / "plain")
    assert (spec.pooling, spec.shared, spec.normalize, spec.temperature) == ("cls", True, False, 1.0)
    assert (spec.q_max_len, spec.p_max_len) == (32, 128)
    b = _batch(tok, list(SCRIPTS.values()))
    with torch.no_grad():
        ref = hf(**b).last_hidden_state[:, 0]
        assert torch.allclose(
            model.eval().encode_passage(b["input_ids"], b["attention_mask"]), ref, atol=1e-6
        )


def test_bad_spec_file_is_one_clear_error(tiny_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_dir, tmp_path / "ckpt")
    (tmp_path / "ckpt" / SPEC_FILE).write_text('{"pooling": "max"}')
    with pytest.raises(XqgInputError, match=r"xqg_retriever.json field 'pooling'"):
        load_retriever(tmp_path / "ckpt")


# -- loss --------------------------------------------------------------------------------------------------------
def test_contrastive_loss_is_tevatrons() -> None:
    torch.manual_seed(0)
    q, p = torch.randn(3, 8), torch.randn(12, 8)  # 3 queries x 4 passages, positive first
    out = contrastive_loss(q, p, temperature=0.5)
    scores = q @ p.T / 0.5
    expected = torch.nn.functional.cross_entropy(scores, torch.tensor([0, 4, 8]))
    assert out.n_passages == 4 and torch.allclose(out.loss, expected)
    assert out.accuracy.item() == pytest.approx(
        float((scores.argmax(1) == torch.tensor([0, 4, 8])).float().mean())
    )
    with pytest.raises(ValueError, match="multiple of queries"):
        contrastive_loss(q, p[:11])


def test_cross_device_loss_gives_the_global_batch_gradient() -> None:
    """What DDP does with Tevatron's gathered loss: each of W ranks back-propagates W x CE(global batch) into its
    own slice only, and DDP averages the gradients: the result must equal the single-process gradient of the
    CE over the whole global batch (so the in-batch negatives span all devices)."""
    torch.manual_seed(0)
    world, nq, n, dim = 3, 2, 4, 8
    q_all, p_all = torch.randn(world * nq, dim), torch.randn(world * nq * n, dim)
    ref_q, ref_p = q_all.clone().requires_grad_(), p_all.clone().requires_grad_()
    ref = contrastive_loss(ref_q, ref_p)
    ref.loss.backward()

    grad_q, grad_p = torch.zeros_like(q_all), torch.zeros_like(p_all)
    for rank in range(world):
        q_loc = q_all[rank * nq : (rank + 1) * nq].clone().requires_grad_()
        p_loc = p_all[rank * nq * n : (rank + 1) * nq * n].clone().requires_grad_()

        def fake_gather(t: torch.Tensor, rank: int = rank, q_loc: torch.Tensor = q_loc) -> torch.Tensor:
            full = (q_all if t is q_loc else p_all).clone()
            rows = t.size(0)
            return torch.cat([full[: rank * rows], t, full[(rank + 1) * rows :]])

        out: ContrastiveOutput = contrastive_loss(q_loc, p_loc, gather=fake_gather, world_size=world)
        assert torch.allclose(out.ce, ref.ce) and torch.allclose(out.loss, ref.loss * world)
        out.loss.backward()
        grad_q[rank * nq : (rank + 1) * nq] = q_loc.grad
        grad_p[rank * nq * n : (rank + 1) * nq * n] = p_loc.grad
    # each rank's slice gets W x its share; DDP's average over ranks divides by W again
    assert torch.allclose(grad_q / world, ref_q.grad, atol=1e-6)
    assert torch.allclose(grad_p / world, ref_p.grad, atol=1e-6)


@pytest.mark.parametrize("warmup", [{"warmup_ratio": 0.095}, {"warmup_steps": 10}], ids=["ratio", "steps"])
def test_linear_warmup_then_decay(warmup: dict) -> None:
    """transformers' linear schedule; a warmup ratio of the estimated steps rounds up (9.5 -> 10 steps)."""
    module = RetrieverModule(torch.nn.Linear(2, 2), lr=1.0, **warmup)  # type: ignore[arg-type]
    module._trainer = SimpleNamespace(estimated_stepping_batches=100)  # type: ignore[assignment]
    f = module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert [f(0), f(5), f(10), f(55), f(100), f(120)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]


def test_dev_check_metrics_leave_weights_rng_and_mode_alone(tiny_dir: Path) -> None:
    torch.manual_seed(0)
    model = BiEncoder.from_backbone(tiny_dir, RetrieverSpec(pooling="mean", normalize=True))
    _, tok, _ = load_retriever(tiny_dir)
    texts = list(SCRIPTS.values())
    dev = DevSet(
        qids=["q0", "q1", "q2", "q3"],
        queries=[texts[0], texts[3], texts[5], "nothing gold here"],
        gold=[frozenset({"d0"}), frozenset({"d3", "d4"}), frozenset({"d5"}), frozenset({"missing"})],
        docids=[f"d{i}" for i in range(len(texts))],
        passages=texts,
    )
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    rng = torch.random.get_rng_state()
    m = evaluate_dev(model, tok, dev, ks=(1, 2, 100), batch_size=3)
    assert model.training and torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    # reference: brute-force scores in torch; a query's own text is among the passages, so it ranks first
    model.eval()
    with torch.no_grad():
        b = _batch(tok, texts, 64)
        p = model.encode_passage(b["input_ids"], b["attention_mask"])
        b = _batch(tok, dev.queries[:3], 32)
        ranks = (model.encode_query(b["input_ids"], b["attention_mask"]) @ p.T).argsort(
            dim=1, descending=True
        )
    assert ranks[:, 0].tolist() == [0, 3, 5]
    second = 1.0 if int(ranks[1, 1]) == 4 else 0.0
    assert m["queries"] == 3.0 and m["recall@1"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["recall@2"] == pytest.approx((1 + (0.5 + 0.5 * second) + 1) / 3)
    assert m["recall@100"] == 1.0 and m["mrr@9"] == 1.0


# -- training on the synthetic world ---------------------------------------------------------------------------
def _train_cfg(cache: Path, extra: list[str] = ()) -> TrainSettings:  # type: ignore[assignment]
    return settings(
        "train",
        "experiment=demo",
        "logger=csv",
        "data.world.n_entities=120",
        "backbone.tiny.vocab_size=2000",
        "backbone.p_max_len=64",
        "train.epochs=2",
        "train.dev.max_queries=120",
        "trainer.log_every_n_steps=1",
        *extra,
        cache=cache,
    )


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from xqg.tasks.train_retriever import train_or_load

    cache = tmp_path_factory.mktemp("cache")
    run_dir = tmp_path_factory.mktemp("run")
    cfg = _train_cfg(cache)
    torch.manual_seed(0)
    path = train_or_load(cfg, run_dir=run_dir)
    return {"cache": cache, "run_dir": run_dir, "cfg": cfg, "path": path}


@pytest.mark.slow
def test_training_lowers_the_loss_and_beats_the_untrained_model(trained: dict) -> None:
    from xqg.core.artifacts import Manifest

    path, run_dir = Path(trained["path"]), Path(trained["run_dir"])
    m = Manifest.from_dict(json.loads((path / "manifest.json").read_text()))
    history = m.extra["dev_history"]
    assert history[0]["step"] == 0 and history[-1]["step"] == m.counts["steps"] > 0
    before, after = history[0]["dev/recall@20"], history[-1]["dev/recall@20"]
    # measured 0.46 -> 0.80 (70 dev queries, 486 passages; mean pooling of random embeddings already matches
    # shared entity-name tokens, hence the untrained model's head start)
    assert after >= before + 0.2, (before, after)
    assert history[-1]["dev/mrr@100"] > history[0]["dev/mrr@100"]
    losses = [float(r["train/loss_step"]) for r in _csv_rows(run_dir) if r.get("train/loss_step")]
    assert len(losses) >= 10
    k = max(3, len(losses) // 5)
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k - 0.5, losses
    lrs = [float(r["train/lr"]) for r in _csv_rows(run_dir) if r.get("train/lr")]
    assert max(lrs) <= 1e-3 + 1e-9 and lrs[-1] < max(lrs)  # warmup then decay
    # the run folder points at the checkpoint; the checkpoint is a loadable HF folder
    assert (run_dir / "retriever_checkpoint").resolve() == path.resolve()
    assert (path / "lightning" / "last.ckpt").exists() and (path / SPEC_FILE).exists()
    _, _, spec = load_retriever(path)
    assert (spec.pooling, spec.normalize, spec.p_max_len) == ("mean", True, 64)


@pytest.mark.slow
def test_trained_checkpoint_is_reused_and_a_changed_hyperparameter_retrains(trained: dict) -> None:
    from xqg.tasks.train_retriever import artifact_for, train_or_load

    cache, cfg = Path(trained["cache"]), trained["cfg"]
    mtime = (Path(trained["path"]) / "manifest.json").stat().st_mtime_ns
    assert train_or_load(cfg) == trained["path"]  # found, not retrained
    assert (Path(trained["path"]) / "manifest.json").stat().st_mtime_ns == mtime
    base = artifact_for(cfg).fingerprint
    assert artifact_for(_train_cfg(cache, ["trainer.log_every_n_steps=5"])).fingerprint == base
    for change in [
        "train.lr=5e-4",
        "train.seed=1",
        "backbone.pooling=cls",
        "train.train_n_passages=2",
        "trainer.precision=bf16-mixed",
        "trainer.accumulate_grad_batches=2",
        "train.source=english",
    ]:
        assert artifact_for(_train_cfg(cache, [change])).fingerprint != base, change


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_checkpoint(trained: dict, tmp_path: Path) -> None:
    """A 3-epoch run that finds the 2-epoch run's last.ckpt (what a kill after epoch 2 leaves) trains only the
    third epoch."""
    from xqg.core.artifacts import Manifest
    from xqg.tasks.train_retriever import artifact_for, train_or_load

    cache = Path(trained["cache"])
    cfg3 = _train_cfg(cache, ["train.epochs=3", "train.dev.every_n_epochs=5"])
    art = artifact_for(cfg3)
    done = Manifest.from_dict(json.loads((Path(trained["path"]) / "manifest.json").read_text()))
    per_epoch = done.counts["steps"] // 2
    (art.path / "lightning").mkdir(parents=True)
    shutil.copy(Path(trained["path"]) / "lightning" / "last.ckpt", art.path / "lightning" / "last.ckpt")
    path = train_or_load(cfg3, run_dir=tmp_path)
    m = Manifest.from_dict(json.loads((path / "manifest.json").read_text()))
    assert m.counts["steps"] == 3 * per_epoch
    # the curve goes on: the first run's dev points (from the checkpoint), no second step-0 point, and one at
    # the end of the resumed epoch
    assert [h["step"] for h in m.extra["dev_history"]] == [0, per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert len([r for r in _csv_rows(tmp_path) if r.get("train/loss_step")]) == per_epoch


def test_bad_training_config_is_one_clear_error(tmp_path: Path) -> None:
    from xqg.tasks.train_retriever import train_or_load

    with pytest.raises(XqgInputError, match=r"train\.source"):
        train_or_load(_train_cfg(tmp_path, ["train.source=french"]))
    with pytest.raises(XqgInputError, match=r"field 'trainer'.*not_a_flag"):
        build_trainer(_train_cfg(tmp_path, ["+trainer.not_a_flag=1"]).trainer)
