"""The typed config: every experiment composes into typed settings; misspelt keys and wrong types fail at compose
time naming the key; one key per fact; config hygiene (inheritance instead of copies); Lightning objects come from
``_target_`` nodes under narrow whitelists."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from pytorch_lightning.callbacks import ModelCheckpoint

from helpers.config import compose_config, settings
from xqg.core.errors import XqgInputError
from xqg.retrieval.fusion import Fusion
from xqg.retrieval.query_sums import QuerySumsConfig
from xqg.tasks.builders import build_callbacks, build_trainer
from xqg.tasks.schema import EvaluateSettings, TrainSettings

EXPERIMENTS = ["demo", "paper_mbert", "paper_mbert_xqg", "paper_xlmr", "paper_zeroshot_mbert"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_into_typed_settings(experiment: str) -> None:
    train = settings("train", f"experiment={experiment}")
    evaluate = settings("evaluate", f"experiment={experiment}")
    assert isinstance(train, TrainSettings) and isinstance(evaluate, EvaluateSettings)
    # evaluate.py composes the same groups as train.py, so it finds the same retriever checkpoint
    assert (train.backbone, train.train, train.trainer) == (
        evaluate.backbone,
        evaluate.train,
        evaluate.trainer,
    )


def test_paper_experiments_pin_the_paper_recipe_and_generator() -> None:
    for experiment, data, model in [
        ("paper_mbert", "xor_tydi", "bert-base-multilingual-cased"),
        ("paper_xlmr", "xor_tydi", "xlm-roberta-base"),
        ("paper_zeroshot_mbert", "nq", "bert-base-multilingual-cased"),
    ]:
        s = settings("train", f"experiment={experiment}")
        b, t = s.backbone, s.train
        assert (s.data.name, b.name_or_path) == (data, model), experiment
        assert (b.pooling, b.shared, b.normalize, b.temperature, b.q_max_len, b.p_max_len) == (
            "cls", True, False, 1.0, 32, 128,
        )  # fmt: skip
        assert (t.batch_size, t.train_n_passages, t.lr, t.epochs, t.warmup_ratio) == (128, 8, 1e-5, 40, 0.1)
        assert (s.trainer["accelerator"], s.trainer["precision"]) == ("gpu", "16-mixed")
        assert s.generator.model.name_or_path == "google/mt5-base"  # never the tiny T5 by accident
    xqg = settings("evaluate", "experiment=paper_mbert_xqg")
    assert xqg.augmentation.fusion == Fusion(0.01, 5, "sum", ("ar", "bn", "fi", "ja", "ko", "ru", "te"))
    assert settings("evaluate", "experiment=paper_mbert").augmentation.fusion is None


def test_misspelt_keys_and_wrong_types_fail_at_compose_time_naming_the_key() -> None:
    with pytest.raises(ConfigCompositionException, match=r"augmentation\.alhpa"):
        compose_config("evaluate", "augmentation.alhpa=0.1")
    with pytest.raises(ConfigCompositionException, match=r"augmentation\.alpha=abc"):
        compose_config("evaluate", "augmentation.alpha=abc")
    with pytest.raises(ConfigCompositionException, match=r"data\.world\.n_entity"):
        compose_config("train", "data.world.n_entity=5")


def test_a_misspelt_key_in_a_yaml_file_fails_too(tmp_path: Path) -> None:
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\ntrain:\n  lr_rate: 0.1\n")
    with pytest.raises(ConfigCompositionException) as e:
        compose_config("train", f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo")
    assert "lr_rate" in str(e.value.__cause__ or e.value)


def test_stage_settings_are_validated_before_anything_runs() -> None:
    with pytest.raises(XqgInputError, match=r"field 'augmentation\.alpha'"):
        settings("evaluate", "augmentation=xqg", "augmentation.alpha=1.5")
    with pytest.raises(XqgInputError, match=r"data\.world\.languages"):
        settings("train", "data.world.languages=[xx]")
    with pytest.raises(XqgInputError, match=r"generator\.decoding\.num_beams"):
        settings("train", "generator.decoding.do_sample=false")


def test_one_key_per_fact() -> None:
    s = settings(
        "evaluate",
        "augmentation=xqg",
        "augmentation.n=3",
        "generator.num_queries=3",
        "generator.languages=[ja,ko]",
    )
    assert s.augmentation.query_sums == QuerySumsConfig(languages=("ja", "ko"), n_max=3)
    assert s.augmentation.languages == ["ja", "ko"]
    # set explicitly, the stored sums may differ from what was generated
    s = settings("evaluate", "augmentation=xqg", "augmentation.n=2", "augmentation.sums.n_max=2")
    assert s.augmentation.query_sums.n_max == 2 and s.generator.num_queries == 5


def test_config_groups_inherit_instead_of_copying() -> None:
    none, xqg = settings("evaluate", "augmentation=none"), settings("evaluate", "augmentation=xqg")
    assert (none.augmentation.enabled, xqg.augmentation.enabled) == (False, True)
    assert none.augmentation.sums == xqg.augmentation.sums and none.augmentation.mode == xqg.augmentation.mode
    mbert, xlmr = settings("train", "experiment=paper_mbert"), settings("train", "experiment=paper_xlmr")
    assert mbert.train == xlmr.train and mbert.trainer == xlmr.trainer
    assert (mbert.backbone.name, xlmr.backbone.name) == ("mbert", "xlmr")
    assert settings("train", "backbone=xlmr").backbone.pooling == "cls"


def test_trainer_and_callbacks_are_instantiated_from_their_nodes(tmp_path: Path) -> None:
    s = settings("train", "trainer.max_steps=3", "train.checkpoint_every_n_steps=2")
    (checkpoint,) = build_callbacks(s.callbacks, checkpoint_dir=tmp_path / "lightning")
    assert isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath == str(tmp_path / "lightning")
    assert checkpoint._every_n_train_steps == 2 and checkpoint.save_last
    trainer = build_trainer(s.trainer, max_epochs=1, logger=False, default_root_dir=str(tmp_path))
    assert trainer.max_steps == 3 and trainer.max_epochs == 1


def test_config_targets_outside_the_whitelists_are_refused(tmp_path: Path) -> None:
    s = settings("train", "trainer._target_=xqg.core.artifacts.atomic_write_text")
    with pytest.raises(XqgInputError, match="field 'trainer'"):
        build_trainer(s.trainer, dest=str(tmp_path / "f"), text="x")
    bad = {
        "x": {"_target_": "xqg.core.artifacts.atomic_write_text", "dest": str(tmp_path / "g"), "text": "x"}
    }
    with pytest.raises(XqgInputError, match=r"field 'callbacks\.x'"):
        build_callbacks(bad)
    assert not (tmp_path / "f").exists() and not (tmp_path / "g").exists()
