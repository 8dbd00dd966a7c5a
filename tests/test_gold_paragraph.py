"""The XOR-TyDi gold-paragraph reader (the reference generator's data) and its place as the default source of
generator pairs for data=xor_tydi and data=nq; the Tevatron-derived pairs stay an option."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from fixtures.make_real_formats import RealFormats, write_real_formats
from helpers.config import settings
from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.data.bundle import gold_paragraph_pairs
from xqg.data.formats.gold_paragraph import gold_title, iter_gold_paragraph_pairs, passage_docid
from xqg.data.formats.pairs import read_generator_pairs


def _article(title: str, context: str, qas: list[dict[str, Any]]) -> dict[str, Any]:
    return {"title": title, "paragraphs": [{"context": context, "qas": qas}]}


def _qa(qid: str, question: str, lang: str) -> dict[str, Any]:
    return {"id": qid, "question": question, "lang": lang, "answers": [{"text": "x", "answer_start": 0}]}


def _zip(path: Path, members: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, doc in members.items():
            zf.writestr(name, json.dumps(doc, ensure_ascii=False))
    return path


def test_gold_title_is_the_part_before_parent_section() -> None:
    assert gold_title(" Heian period_parentSection_2 ") == "Heian period"
    assert gold_title("Heian period") == "Heian period"
    assert gold_title("123456Heian period_parentSection_2", skip=6) == "Heian period"  # DSI-QG's fixed cut


def test_pairs_from_a_zip_member_in_a_folder(tmp_path: Path) -> None:
    train = {
        "data": [
            _article(
                "Tokar_parentSection_0",
                "Tokar is a town.\nIt was founded in 1801.",
                [_qa("1", " q1 ", " ar")],
            ),
            _article(
                "Ulm_parentSection_3", "Ulm lies on a river.", [_qa("2", "q2", "ja"), _qa("3", "q3", "de")]
            ),
            _article(
                "Tokar_parentSection_0", "Tokar is a town.\nIt was founded in 1801.", [_qa("1", "q1", "ar")]
            ),
        ]
    }
    dev = {
        "data": [
            _article("Vel_parentSection_1", "Vel is small.", [_qa("1", "again", "ar"), _qa("9", "q9", "te")])
        ]
    }
    zp = _zip(
        tmp_path / "gp.zip",
        {"tydi_xor_gp/gp_squad_train_data.json": train, "tydi_xor_gp/gp_squad_dev_data.json": dev},
    )
    seen: set[str] = set()
    pairs = list(iter_gold_paragraph_pairs(zp, languages=["ar", "ja", "te"], seen=seen))
    # the repeated id "1" is skipped; "de" is outside the languages but its id still counts as seen
    assert [(p.lang, p.title, p.question) for p in pairs] == [("ar", "Tokar", "q1"), ("ja", "Ulm", "q2")]
    assert pairs[0].passage == "Tokar is a town. It was founded in 1801."
    assert pairs[0].docid == passage_docid("Tokar", pairs[0].passage) != pairs[1].docid
    assert seen == {"1", "2", "3"}
    dev_pairs = list(iter_gold_paragraph_pairs(zp, "gp_squad_dev_data.json", seen=seen))
    assert [(p.lang, p.question) for p in dev_pairs] == [("te", "q9")]  # "1" was in train: skipped, as DSI-QG


def test_extracted_json_file_reads_the_same(tmp_path: Path) -> None:
    doc = {"data": [_article("A_parentSection_0", "Alpha.", [_qa("7", "q", "fi")])]}
    plain = tmp_path / "gp_squad_train_data.json"
    plain.write_text(json.dumps(doc), "utf-8")
    zp = _zip(tmp_path / "gp.zip", {"gp_squad_train_data.json": doc})
    assert list(iter_gold_paragraph_pairs(plain)) == list(iter_gold_paragraph_pairs(zp))


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"data": [_article("A", "c", [{"id": "1", "question": "q"}])]}, "data[0].paragraphs[0].qas[0].lang"),
        ({"data": [_article("A", "c", [_qa("1", "q", "xx")])]}, "data[0].paragraphs[0].qas[0].lang"),
        ({"data": [_article("A", "", [_qa("1", "q", "ar")])]}, "data[0].paragraphs[0].context"),
        ({"data": [{"title": "A"}]}, "data[0].paragraphs"),
        ({"version": "1"}, "data"),
    ],
)
def test_bad_records_name_the_member_and_field(tmp_path: Path, doc: dict[str, Any], field: str) -> None:
    zp = _zip(tmp_path / "gp.zip", {"tydi_xor_gp/gp_squad_train_data.json": doc})
    with pytest.raises(XqgInputError) as e:
        list(iter_gold_paragraph_pairs(zp))
    assert e.value.field == field and e.value.path == f"{zp}!tydi_xor_gp/gp_squad_train_data.json"


def test_missing_member_and_bad_files_are_clear(tmp_path: Path) -> None:
    zp = _zip(tmp_path / "gp.zip", {"tydi_xor_gp/other.json": {"data": []}})
    with pytest.raises(XqgInputError, match=r"no member named 'gp_squad_train_data\.json'.*other\.json"):
        list(iter_gold_paragraph_pairs(zp))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", "utf-8")
    with pytest.raises(XqgInputError, match="not a JSON document"):
        list(iter_gold_paragraph_pairs(bad))


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> RealFormats:
    return write_real_formats(tmp_path_factory.mktemp("real"))


def test_xor_tydi_and_nq_train_the_generator_on_gold_paragraphs(real: RealFormats, tmp_path: Path) -> None:
    shared = f"paths.shared_data_dir={real.root}"
    pairs = (
        settings("train", "data=xor_tydi", shared, cache=tmp_path).data.bundle(str(tmp_path)).generator_pairs
    )
    assert set(pairs) == {"train", "dev"}
    train, dev = read_generator_pairs(pairs["train"]), read_generator_pairs(pairs["dev"])
    assert len(train) == 18 and len(dev) == 6  # the fixture's dev file repeats one train id: skipped
    assert all(p.docid.startswith("gp-") and "_parentSection" not in p.title for p in train + dev)
    assert {p.lang for p in train} == {"ar", "bn", "fi", "ja", "ko", "ru", "te"}
    assert train[0].title == "Kestmark" and train[0].question.endswith("Kestmark؟")  # " ar" -> ar
    nq = settings("train", "data=nq", shared, cache=tmp_path).data.bundle(str(tmp_path)).generator_pairs
    assert nq == pairs  # the same cached artifact: one generator for both settings
    assert (
        gold_paragraph_pairs(
            real.paths["gold_paragraph"], tmp_path, ["ar", "bn", "fi", "ja", "ko", "ru", "te"]
        )
        == pairs
    )


def test_tevatron_derived_pairs_stay_an_option(real: RealFormats, tmp_path: Path) -> None:
    s = settings(
        "train", "data=xor_tydi", f"paths.shared_data_dir={real.root}", "data.generator_pairs.from=train"
    )
    pairs = read_generator_pairs(s.data.bundle(str(tmp_path)).generator_pairs)
    assert len(pairs) == 20 and all(not p.docid.startswith("gp-") for p in pairs)


def test_offline_missing_gold_paragraph_names_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = settings("train", "data=xor_tydi", f"paths.shared_data_dir={tmp_path / 'none'}")
    with pytest.raises(
        MissingResourceError,
        match=re.escape("https://nlp.cs.washington.edu/xorqa/XORQA_site/data/tydi_xor_gp.zip"),
    ):
        _ = s.data.bundle(str(tmp_path)).generator_pairs
