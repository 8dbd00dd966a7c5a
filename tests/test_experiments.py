"""Every ``conf/experiment/*.yaml`` end to end, offline: ``train.py`` (the retriever, then the generator) and
``evaluate.py`` (generation or released queries, encoding, fusion, search, scoring), a few steps each.

The paper's experiments run over the format-faithful fixture files (``tests/fixtures/make_real_formats.py``)
with tiny randomly initialised models of the experiment's own families and tokenizer kinds (BERT + cased
WordPiece for mbert, XLM-R + Unigram for xlmr, mT5 + Unigram for the generator; ``tests/helpers/tiny_hf.py``),
passed as ``backbone.name_or_path`` / ``generator.model.name_or_path`` folders, so the real hub loading path runs.
Only what a CPU test must change is overridden (steps, batch sizes, lengths, trainer, logger); everything else is
what the experiment says, so each paper config is known to compose and run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertTokenizerFast,
    T5TokenizerFast,
    XLMRobertaTokenizerFast,
)

from fixtures.make_real_formats import RealFormats, write_real_formats
from helpers.config import SMALL_DEV, compose_config, few_steps, settings
from helpers.paths import REPO
from helpers.tiny_hf import write_tiny_mbert, write_tiny_mt5, write_tiny_xlmr
from xqg.core.languages import LANGUAGES
from xqg.data.corpus import open_corpus
from xqg.data.formats.gold_paragraph import iter_gold_paragraph_pairs
from xqg.data.formats.released import iter_released_records
from xqg.data.formats.tevatron import iter_tevatron
from xqg.data.formats.xor import read_xor_questions
from xqg.tasks import entrypoints, train_retriever

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
# The paper's released artifacts in place of training: the 19 released query shards (with the Wikipedia TSV or
# with the shards themselves as the corpus) and a released retriever checkpoint (a plain HF folder).
RELEASED = {
    "paper_mbert_xqg+released_queries": ["generator=released_xqg"],
    "paper_mbert_xqg+released_all": [
        "data=xor_tydi_released",
        "generator=released_xqg",
        "retrieval.checkpoint={mbert}",
    ],
}
CASES = [*EXPERIMENTS, *RELEASED]
LANGS = ["ar", "bn", "fi", "ja", "ko", "ru", "te"]
# What a CPU test must change, and nothing else.
CPU = [
    "trainer=cpu",
    "logger=csv",
    *few_steps(),
    *SMALL_DEV,
    "generator.train.val_every_steps=1",
    "generator.train.num_workers=0",
    "generator.max_source_length=64",
    "generator.decoding.max_new_tokens=8",
]
FAMILY = {"mbert": "bert", "xlmr": "xlm-roberta"}  # backbone -> model_type of its checkpoint
EVALUATE = ["retrieval.passage_batch_size=64", "metrics.workers=1"]  # evaluate.py's own groups
SYNTHETIC = ["data.world.n_entities=40", "data.world.passages_per_entity=2"]


@pytest.fixture(scope="session")
def real(tmp_path_factory: pytest.TempPathFactory) -> RealFormats:
    return write_real_formats(tmp_path_factory.mktemp("shared_data"))


@pytest.fixture(scope="session")
def models(real: RealFormats, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny checkpoints by family, their tokenizers trained on the fixture text (and the generator's prompts)."""
    root = tmp_path_factory.mktemp("tiny_hf")
    prompts = [f"Generate a {LANGUAGES[x].name} question for this passage:" for x in LANGS]
    return {
        "mbert": write_tiny_mbert(root / "mbert", real.texts),
        "xlmr": write_tiny_xlmr(root / "xlmr", real.texts),
        "mt5": write_tiny_mt5(root / "mt5", [*real.texts, *prompts]),
    }


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for every experiment: what they share (corpus store, generator, tokens) is built once."""
    return tmp_path_factory.mktemp("cache")


def test_tiny_models_are_the_paper_families(models: dict[str, Path]) -> None:
    """What the experiments load: the paper's architectures with their tokenizer kinds, from local folders."""
    expected = {
        "mbert": ("bert", "WordPiece", BertTokenizerFast),
        "xlmr": ("xlm-roberta", "Unigram", XLMRobertaTokenizerFast),
        "mt5": ("mt5", "Unigram", T5TokenizerFast),
    }
    for name, (model_type, kind, cls) in expected.items():
        assert AutoConfig.from_pretrained(models[name]).model_type == model_type
        tok = AutoTokenizer.from_pretrained(models[name])
        assert isinstance(tok, cls) and json.loads(tok.backend_tokenizer.to_str())["model"]["type"] == kind
        ids = tok("Kestmark は 1703 年")["input_ids"]
        assert tok.unk_token_id not in ids  # the fixture's scripts are all in the vocabulary
    assert AutoTokenizer.from_pretrained(models["mbert"]).tokenize("Kestmark")[0][0] == "K"  # cased


def test_fixture_files_read_as_the_real_ones(real: RealFormats, tmp_path: Path) -> None:
    """The fixtures pass the project's own readers, and each dev question's answer is in its gold passage only,
    in a corpus longer than the 2,000 words R@2kt reads (so R@kt measures the ranking)."""
    corpus = list(open_corpus(real.paths["corpus"], tmp_path))
    assert len(corpus) == 48 and sum(len(p.text.split()) for p in corpus) > 4000
    for q in read_xor_questions(real.paths["dev_questions"]):
        assert sum(q.answers[0] in p.text for p in corpus) == 1
    train = list(iter_tevatron(real.paths["train"]))
    langs = {q.qid: q.lang for q in read_xor_questions(real.paths["train_questions"])}
    assert set(langs) == {ex.qid for ex in train} and set(langs.values()) == set(LANGS)
    assert all(ex.answers[0] in ex.positives[0].text and ex.negatives for ex in train)
    assert all(ex.positives[0].docid in {p.docid for p in corpus} for ex in train)
    assert len(list(iter_tevatron(real.paths["nq_train"]))) == 16 and list(
        iter_tevatron(real.paths["nq_dev"])
    )
    shards = [real.paths[f"released_{k}"] for k in range(19)]
    released = [rec for path in shards for rec in iter_released_records(path)]
    assert sorted(p.docid for p, _ in released) == sorted(p.docid for p in corpus)
    assert all(set(qs) == set(LANGS) and all(len(v) == 5 for v in qs.values()) for _, qs in released)
    assert len(list(iter_gold_paragraph_pairs(real.paths["gold_paragraph"]))) == 18


def overrides(case: str, real: RealFormats, models: dict[str, Path]) -> list[str]:
    """The experiment plus the CPU overrides; its backbone and generator replaced by tiny ones of their family
    (and a released checkpoint by the tiny model's folder)."""
    experiment = case.split("+")[0]
    extra = [x.format(**models) for x in RELEASED.get(case, [])]
    cfg = compose_config("train", f"experiment={experiment}", *[x for x in extra if "retrieval." not in x])
    out = [f"experiment={experiment}", *extra, *CPU]
    if cfg.data.kind == "synthetic":
        return [*out, *SYNTHETIC]
    out.append(f"paths.shared_data_dir={real.root}")
    if cfg.backbone.name_or_path:
        family = str(cfg.backbone.name)
        assert family in models, f"experiment {experiment}: no tiny model of the {family!r} family"
        out.append(f"backbone.name_or_path={models[family]}")
    if cfg.generator.model.name_or_path:
        assert "mt5" in str(cfg.generator.model.name_or_path), "the paper's generators are mT5"
        out.append(f"generator.model.name_or_path={models['mt5']}")
    return out


def _run(name: str, args: list[str], cache: Path, out: Path) -> float | None:
    cfg = compose_config(name, *args, cache=cache, out=out)
    return (entrypoints.train if name == "train" else entrypoints.evaluate)(cfg)


def _retriever_family(cache: Path, train_args: list[str]) -> str:
    """The ``model_type`` of the retriever checkpoint ``train.py`` wrote for these arguments."""
    art = train_retriever.artifact_for(settings("train", *train_args, cache=cache))
    return str(json.loads((art.path / "config.json").read_text())["model_type"])


@pytest.mark.parametrize("case", CASES)
def test_experiment_runs_end_to_end(
    case: str, real: RealFormats, models: dict[str, Path], cache: Path, tmp_path: Path
) -> None:
    args = overrides(case, real, models)
    experiment = case.split("+")[0]
    train_args = [x for x in args if not x.startswith("retrieval.")]
    if not any(x.startswith("retrieval.checkpoint=") for x in args):  # a released checkpoint is not trained
        # train.py: the retriever, then the xQG generator (cached: evaluate.py reuses both)
        recall = _run("train", train_args, cache, tmp_path / "train")
        assert recall is None or 0.0 <= recall <= 1.0
        backbone = str(compose_config("train", *train_args).backbone.name)
        if backbone in FAMILY:
            assert _retriever_family(cache, train_args) == FAMILY[backbone]
    generator = _run("train", [*train_args, "task=generator"], cache, tmp_path / "train_generator")
    assert generator is None or generator > 0.0  # the validation loss of a trained generator
    if generator is not None and not experiment.startswith("demo"):  # mt5_base: gold-paragraph pairs
        counts = [json.loads(m.read_text())["counts"] for m in (cache / "generator").glob("*/manifest.json")]
        assert {"train_pairs": 18, "val_pairs": 6, "steps": 2} in counts
    # evaluate.py: encode, (generate or import + fuse,) search, score
    out = tmp_path / "evaluate"
    objective = _run("evaluate", [*args, *EVALUATE], cache, out)
    results = json.loads((out / "results.json").read_text())
    languages = set(results["metrics"]["R@2kt"]["count"])
    if experiment.startswith("demo"):  # the small synthetic world has questions in some languages only
        assert languages <= set(LANGS) and len(languages) >= 3
    else:  # the fixture has two dev questions per language
        assert languages == set(LANGS) and results["questions"] == 14
    for metric in ("R@2kt", "R@5kt"):
        block = results["metrics"][metric]
        assert all(0.0 <= block[x] <= 100.0 for x in languages) and 0.0 <= block["macro"] <= 100.0
    assert objective == pytest.approx(results["metrics"]["R@2kt"]["macro"])
    run_qids = {line.split("\t")[0] for line in (out / "run.tsv").read_text().splitlines()}
    assert len(run_qids) == results["questions"]
    # +xQG: fused with the generated (or released) queries, and compared with the baseline
    assert ("artifacts_xqg" in results) == compose_config("evaluate", *args).augmentation.enabled
