"""Retriever and generator DataModules: batch layout, padding, epoch-dependent reproducible sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from xqg.core.errors import XqgInputError
from xqg.data.corpus import open_corpus
from xqg.data.datamodules import ContrastiveCollator, ContrastiveDataModule, ContrastiveDataset
from xqg.data.generator_data import GeneratorCollator, GeneratorDataModule, format_prompt
from xqg.data.records import GeneratorPair, Passage, TrainExample, passage_text
from xqg.data.synthetic import WorldConfig, build_world
from xqg.models.tiny_t5 import train_tokenizer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(WorldConfig(seed=3, n_entities=120), tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def tokenizer(world) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained here on the world's text (no hub access)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    texts = world.corpus.read_text(encoding="utf-8").splitlines()
    texts += world.questions["train"].read_text(encoding="utf-8").splitlines()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def _ex(i: int, n_neg: int, n_pos: int = 1) -> TrainExample:
    pos = tuple(Passage(f"p{i}-{j}", f"T{i}", f"positive {j} of {i}") for j in range(n_pos))
    neg = tuple(Passage(f"n{i}-{j}", f"T{i}", f"negative {j} of {i}") for j in range(n_neg))
    return TrainExample(f"q{i}", f"query {i}", (), pos, neg)


def test_contrastive_batch_layout_and_padding(world, tokenizer) -> None:
    dm = ContrastiveDataModule(
        world.tevatron["train"],
        tokenizer,
        batch_size=4,
        train_n_passages=3,
        q_max_len=32,
        p_max_len=64,
        seed=1,
        val_path=world.tevatron["dev"],
    )
    loader = dm.train_dataloader()
    batch = next(iter(loader))
    assert set(batch) == {
        "query_input_ids",
        "query_attention_mask",
        "passage_input_ids",
        "passage_attention_mask",
    }
    assert batch["query_input_ids"].shape[0] == 4 and batch["passage_input_ids"].shape[0] == 12
    # padded to the longest in the batch, not to max_length
    q_len = batch["query_attention_mask"].sum(1)
    assert batch["query_input_ids"].shape[1] == int(q_len.max()) < 32
    assert batch["passage_input_ids"].shape[1] <= 64
    # query-major: the positive of query i is row i * n
    ds = dm.train_dataset
    loader.sampler.set_epoch(0)
    keys = list(loader.sampler)[:4]
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    for i, (idx, epoch) in enumerate(keys):
        ex, passages = ds.group(idx, epoch)
        enc = tokenizer(passage_text(passages[0].title, passages[0].text), truncation=True, max_length=64)
        row = batch["passage_input_ids"][i * 3]
        assert row[: len(enc["input_ids"])].tolist() == enc["input_ids"]
        assert passages[0] in ex.positives
    val = next(iter(dm.val_dataloader()))
    assert val["passage_input_ids"].shape[0] == 12


def test_sampling_changes_with_epoch_and_is_reproducible() -> None:
    examples = [_ex(i, 10, n_pos=2) for i in range(6)]
    a = ContrastiveDataset(examples, train_n_passages=4, seed=5)
    b = ContrastiveDataset(examples, train_n_passages=4, seed=5)
    assert [a.group(i, e) for i in range(6) for e in range(3)] == [
        b.group(i, e) for i in range(6) for e in range(3)
    ]
    g0, g1 = a.group(2, 0)[1], a.group(2, 1)[1]
    assert g0[0] != g1[0]  # positives alternate with the epoch
    assert {p.docid for p in g0[1:]} != {p.docid for p in g1[1:]}
    # windows walk a fixed shuffle: over enough epochs every negative is used, none repeats inside a group
    seen = set()
    for e in range(4):
        negs = [p.docid for p in a.group(2, e)[1][1:]]
        assert len(set(negs)) == 3
        seen.update(negs)
    assert seen == {f"n2-{j}" for j in range(10)}
    c = ContrastiveDataset(examples, train_n_passages=4, seed=6)
    assert any(c.group(i, 0) != a.group(i, 0) for i in range(6))


def test_too_few_negatives_are_filled(world, tmp_path: Path) -> None:
    examples = [_ex(i, 1) for i in range(5)]
    corpus = open_corpus(world.corpus, cache_dir=tmp_path)
    from_corpus = ContrastiveDataset(examples, train_n_passages=5, seed=0, corpus=corpus).group(0, 0)[1]
    assert (
        len(from_corpus) == 5 and from_corpus[1].docid == "n0-0"
    )  # own negative first, then the corpus fill
    assert sum(corpus.has(p.docid) for p in from_corpus) == 3
    repeated = ContrastiveDataset(examples, train_n_passages=5, seed=0).group(0, 0)[1]
    assert [p.docid for p in repeated[1:]] == ["n0-0"] * 4  # own negatives, with replacement
    bare = [_ex(i, 0) for i in range(5)]
    from_others = ContrastiveDataset(bare, train_n_passages=3, seed=0).group(0, 2)[1]
    assert len(from_others) == 3 and all(
        p.docid.startswith("p") and p.docid != "p0-0" for p in from_others[1:]
    )
    alone = ContrastiveDataset([_ex(0, 2)], train_n_passages=6, seed=0).group(0, 3)[1]
    assert len(alone) == 6 and {p.docid for p in alone[1:]} == {"n0-0", "n0-1"}
    with pytest.raises(XqgInputError, match="no negatives and no other passages"):
        ContrastiveDataset([_ex(0, 0)], train_n_passages=2).group(0, 0)


def test_generator_datamodule(world, tokenizer) -> None:
    assert format_prompt(
        "Generate a {language} question for this passage: {title} {passage}", "te", "T", "P"
    ) == ("Generate a Telugu question for this passage: T P")
    with pytest.raises(XqgInputError, match="unknown placeholder"):
        format_prompt("{lnguage}", "te", "T", "P")
    dm = GeneratorDataModule(
        world.generator_pairs["train"],
        tokenizer,
        batch_size=5,
        max_source_len=40,
        max_target_len=12,
        seed=0,
        val_pairs=world.generator_pairs["dev"],
        languages=["ja", "ru"],
    )
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert (
        batch["input_ids"].shape[0] == 5
        and batch["input_ids"].shape[1] <= 40
        and batch["labels"].shape[1] <= 12
    )
    assert {p.lang for p in dm.train_dataset.pairs} == {"ja", "ru"}
    prompt, question = dm.train_dataset[0]
    assert prompt.startswith(("Generate a Japanese question", "Generate a Russian question"))
    assert question == dm.train_dataset.pairs[0].question
    pairs = [
        GeneratorPair("1", "fi", "t", "a b c d e f", "kuka"),
        GeneratorPair("2", "fi", "t", "x", "mikä on tämä pitkä kysymys"),
    ]
    small = GeneratorDataModule(pairs, tokenizer, batch_size=2, seed=0)
    b = next(iter(small.train_dataloader()))
    labels, mask = b["labels"], b["attention_mask"]
    assert (labels == -100).any() and not (labels[labels != -100] == tokenizer.pad_token_id).any()
    assert mask.shape == b["input_ids"].shape and mask.dtype == torch.long
    assert next(iter(dm.val_dataloader()))["labels"].shape[0] == 5


def _reference_generator_batch(tok, items, max_source_len: int, max_target_len: int) -> dict:
    """The hand-written collation the library collator replaced: the tokenizer pads, label padding -> -100."""
    enc = tok(
        [s for s, _ in items],
        padding="longest",
        truncation=True,
        max_length=max_source_len,
        return_tensors="pt",
    )
    tgt = tok(
        text_target=[t for _, t in items],
        padding="longest",
        truncation=True,
        max_length=max_target_len,
        return_tensors="pt",
    )
    labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def _assert_same_tensors(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def test_collators_match_the_reference_padding(world, tokenizer) -> None:
    dm = GeneratorDataModule(world.generator_pairs["train"], tokenizer)
    dm.setup()
    items = [dm.train_dataset[i] for i in range(12)]
    t5 = train_tokenizer([t for item in items for t in item] * 3, 300)  # T5-style: </s> appended, pad id 0
    for tok in (tokenizer, t5):
        for max_source, max_target in ((40, 12), (512, 64)):
            got = GeneratorCollator(tok, max_source, max_target)(items)
            _assert_same_tensors(got, _reference_generator_batch(tok, items, max_source, max_target))
    ds = ContrastiveDataset([_ex(i, 3) for i in range(6)], train_n_passages=3)
    groups = [ds[i] for i in range(6)]
    got = ContrastiveCollator(tokenizer, 4, 6)(groups)
    q = tokenizer(
        [q for q, _ in groups], padding="longest", truncation=True, max_length=4, return_tensors="pt"
    )
    p = tokenizer(
        [p for _, ps in groups for p in ps],
        padding="longest",
        truncation=True,
        max_length=6,
        return_tensors="pt",
    )
    want = {
        "query_input_ids": q["input_ids"],
        "query_attention_mask": q["attention_mask"],
        "passage_input_ids": p["input_ids"],
        "passage_attention_mask": p["attention_mask"],
    }
    _assert_same_tensors(got, want)


class _Recorder(pl.LightningModule):
    """Records the passages each training step sees (a 1-parameter model, so fitting costs nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, list[list[int]]]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, batch["passage_input_ids"].tolist()))
        return (self.w * batch["passage_attention_mask"].float().mean()).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_epochs_resample_reproducibly(tokenizer, tmp_path: Path) -> None:
    examples = [_ex(i, 12, n_pos=2) for i in range(8)]

    def fit() -> list[tuple[int, list[list[int]]]]:
        dm = ContrastiveDataModule(examples, tokenizer, batch_size=4, train_n_passages=4, seed=9)
        model = _Recorder()
        trainer = pl.Trainer(
            max_epochs=3,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        )
        trainer.fit(model, datamodule=dm)
        return model.seen

    first, second = fit(), fit()
    assert first == second  # same seed -> same batches in every epoch
    by_epoch = [sorted(map(tuple, (row for e, rows in first if e == k for row in rows))) for k in range(3)]
    assert by_epoch[0] != by_epoch[1] != by_epoch[2]  # positives and negatives change with the epoch
