"""The cross-lingual alignment objectives: hand-computed values, zero gradient at the optimum, the DDP gather
(two gloo processes give the loss and gradient of one process on the gathered batch), the translation join and
its one-line error, and the checkpoint fingerprint (unchanged for ``kind: none``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers.config import settings
from xqg.core.errors import XqgInputError
from xqg.data.datamodules import ContrastiveCollator, ContrastiveDataset
from xqg.data.formats.translations import read_parallel_folder
from xqg.data.records import Passage, TrainExample
from xqg.data.translations import TranslationTable, folder_table, join_translations, parallel_questions
from xqg.models.alignment_loss import AlignmentConfig, distillation_loss, translation_contrastive_loss
from xqg.models.retriever_module import contrastive_loss, gather_with_grad


# -- values ----------------------------------------------------------------------------------------------------
def test_contrastive_loss_equals_a_hand_computed_case() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    out = translation_contrastive_loss(q, t, temperature=0.5)
    # scores = q t^T / 0.5 = [[2, 2], [0, 4]]
    rows = (math.log(2) + math.log(1 + math.exp(-4))) / 2  # query -> translations
    cols = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-2))) / 2  # translation -> queries
    assert out.value.item() == pytest.approx((rows + cols) / 2, rel=1e-6)
    assert out.loss.item() == pytest.approx(out.value.item())
    assert out.accuracy is not None and out.accuracy.item() == 1.0


def test_identical_inputs_at_the_optimum_give_zero_loss_and_zero_gradient() -> None:
    q = (30.0 * torch.eye(4, 8)).requires_grad_(True)
    t = (30.0 * torch.eye(4, 8)).requires_grad_(True)
    out = translation_contrastive_loss(q, t)
    out.loss.backward()
    assert out.value.item() == 0.0
    assert q.grad is not None and t.grad is not None
    assert torch.count_nonzero(q.grad) == 0 and torch.count_nonzero(t.grad) == 0
    # identical but not separable (every pair alike): the loss is log(batch) and the gradient is not zero
    same = torch.ones(3, 4, requires_grad=True)
    flat = translation_contrastive_loss(same, same.detach().clone())
    assert flat.value.item() == pytest.approx(math.log(3))


def test_distillation_is_mse_and_zero_gradient_at_its_target() -> None:
    q = torch.tensor([[1.0, 2.0], [3.0, 5.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    assert distillation_loss(q, target).value.item() == pytest.approx((4 + 1) / 4)
    exact = target.clone().requires_grad_(True)
    out = distillation_loss(exact, target)
    out.loss.backward()
    assert out.value.item() == 0.0 and exact.grad is not None and torch.count_nonzero(exact.grad) == 0


def test_alignment_config_names_the_bad_field() -> None:
    with pytest.raises(XqgInputError, match="kind"):
        AlignmentConfig(kind="mse")
    with pytest.raises(XqgInputError, match="temperature"):
        AlignmentConfig(kind="contrastive", temperature=0)


# -- DDP -------------------------------------------------------------------------------------------------------
_SIZES = (4, 2)  # unequal shards: the gather pads and unpads
_DIM, _IN = 6, 5


def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    n = sum(_SIZES)
    x = torch.randn(n, _IN, generator=g)  # queries
    y = x + 0.3 * torch.randn(n, _IN, generator=g)  # their translations
    p = torch.randn(2 * n, _IN, generator=g)  # positive + one negative per query
    w = torch.randn(_IN, _DIM, generator=g)
    return x, y, p, w


def _total_loss(
    w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, p: torch.Tensor, gather: object, world: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``RetrieverModule.training_step``: retrieval loss + 0.5 * contrastive + 0.25 * distillation."""
    q, t, pp = x @ w, y @ w, p @ w
    teacher = (y @ w.detach()) * 0.9
    ret = contrastive_loss(q, pp, gather=gather, world_size=world)  # type: ignore[arg-type]
    con = translation_contrastive_loss(q, t, temperature=0.7, gather=gather, world_size=world)  # type: ignore[arg-type]
    dis = distillation_loss(q, teacher, gather=gather, world_size=world)  # type: ignore[arg-type]
    value = ret.ce + 0.5 * con.value + 0.25 * dis.value
    return ret.loss + 0.5 * con.loss + 0.25 * dis.loss, value


def _rank(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        x, y, p, w = _global_batch()
        lo = sum(_SIZES[:rank])
        sl = slice(lo, lo + _SIZES[rank])
        w = w.clone().requires_grad_(True)
        loss, value = _total_loss(
            w, x[sl], y[sl], p[2 * lo : 2 * (lo + _SIZES[rank])], gather_with_grad, world
        )
        loss.backward()
        assert w.grad is not None
        grad = w.grad.clone()
        dist.all_reduce(grad)
        grad /= world  # what DDP does to the gradients
        np.save(Path(out) / f"rank{rank}.npy", np.concatenate([[value.item()], grad.numpy().ravel()]))
    finally:
        dist.destroy_process_group()


def test_ddp_on_two_gloo_processes_equals_one_process_on_the_gathered_batch(tmp_path: Path) -> None:
    x, y, p, w = _global_batch()
    w = w.clone().requires_grad_(True)
    loss, value = _total_loss(w, x, y, p, None, 1)
    loss.backward()
    assert w.grad is not None
    init = f"file://{tmp_path / 'rendezvous'}"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # fork: the children need no fresh interpreter importing this module (seconds on a loaded machine)
    mp.start_processes(_rank, args=(2, init, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npy")
        assert got[0] == pytest.approx(value.item(), rel=1e-5)  # every rank sees the global-batch loss
        np.testing.assert_allclose(got[1:], w.grad.numpy().ravel(), rtol=1e-4, atol=1e-6)


# -- translations ----------------------------------------------------------------------------------------------
def _example(qid: str, query: str, lang: str | None = "ja") -> TrainExample:
    return TrainExample(qid, query, ("a",), (Passage(f"{qid}-p", "t", "x"),), (), lang)


def test_parallel_questions_join_by_id_stem_and_missing_one_is_an_error(tmp_path: Path) -> None:
    table = parallel_questions([_example("syn-1-born-en", "Where was Ab born?", "en")], "en.jsonl")
    examples = [_example("syn-1-born-ja", "アブはどこで生まれた"), _example("syn-2-born-ko", "어디")]
    assert join_translations(examples[:1], table, path=None, field="f") == ["Where was Ab born?"]
    with pytest.raises(XqgInputError) as e:
        join_translations(examples, table, path=tmp_path / "train.jsonl", field="train.alignment.kind")
    assert "train.jsonl:2" in str(e.value) and "syn-2-born-ko" in str(e.value)
    assert "train.alignment.kind" in str(e.value)


def test_xor_tydi_translation_folder_joins_by_text(tmp_path: Path) -> None:
    pair = tmp_path / "ja-en"
    pair.mkdir()
    (pair / "ja.txt").write_text("東京は  どこ\n大阪は何\n", encoding="utf-8")
    (pair / "en.txt").write_text("Where is Tokyo\nWhat is Osaka\n", encoding="utf-8")
    table = folder_table(tmp_path, ["ja"])
    got = join_translations([_example("123", "東京は どこ", None)], table, path=None, field="f")
    assert got == ["Where is Tokyo"]
    (pair / "en.txt").write_text("Where is Tokyo\n", encoding="utf-8")
    with pytest.raises(XqgInputError, match=r"en\.txt:2.*line-aligned"):
        read_parallel_folder(tmp_path)


def test_batches_carry_translations_tokenised_like_queries() -> None:
    tok = _WhitespaceTokenizer()
    examples = [_example("q1", "a b"), _example("q2", "c")]
    ds = ContrastiveDataset(examples, train_n_passages=1, translations=["x y z", "w"])
    batch = ContrastiveCollator(tok, 8, 8)([ds[(0, 0)], ds[(1, 0)]])
    assert batch["translation_input_ids"].shape == (2, 3)
    assert batch["translation_attention_mask"].sum().item() == 4
    assert "translation_input_ids" not in ContrastiveCollator(tok, 8, 8)([("a", ["p"])])
    assert isinstance(TranslationTable("s").lookup(examples[0]), type(None))


class _WhitespaceTokenizer:
    def __call__(self, texts: list[str], **kwargs: object) -> dict[str, torch.Tensor]:
        split = [t.split() for t in texts]
        width = max(len(s) for s in split)
        ids = torch.tensor([[1 + len(w) for w in s] + [0] * (width - len(s)) for s in split])
        return {"input_ids": ids, "attention_mask": (ids > 0).long()}


# -- fingerprint -----------------------------------------------------------------------------------------------
_WORLD = ("data.world.n_entities=30", "backbone.tiny.vocab_size=400", "logger=none")


def test_alignment_enters_the_fingerprint_only_when_on(tmp_path: Path) -> None:
    from xqg.tasks.train_retriever import artifact_for

    none = artifact_for(settings("train", *_WORLD, cache=tmp_path))
    assert "alignment" not in none.spec["config"]
    contrastive = artifact_for(settings("train", *_WORLD, "train.alignment.kind=contrastive", cache=tmp_path))
    weighted = artifact_for(
        settings(
            "train", *_WORLD, "train.alignment.kind=contrastive", "train.alignment.weight=0.5", cache=tmp_path
        )
    )
    initial = artifact_for(
        settings(
            "train",
            *_WORLD,
            "train.alignment.kind=distill",
            "train.alignment.teacher=initial",
            cache=tmp_path,
        )
    )
    fps = {none.fingerprint, contrastive.fingerprint, weighted.fingerprint, initial.fingerprint}
    assert len(fps) == 4
    assert contrastive.spec["config"]["alignment"]["kind"] == "contrastive"
    assert initial.spec["config"]["alignment"]["teacher"] == "initial"
    with pytest.raises(XqgInputError, match=r"train\.alignment\.kind"):
        settings("train", *_WORLD, "train.alignment.kind=mse", cache=tmp_path)
