from __future__ import annotations

import json
from pathlib import Path

import pytest

from xqg.core.artifacts import ArtifactDir, atomic_path, atomic_write_json, file_fingerprint, fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.languages import XOR_LANGUAGES, get_language, normalize_lang, script_share


def test_fingerprint_is_order_independent_for_dict_keys_and_sensitive_to_values() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    dest = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_artifact_dir_fingerprint_follows_config_and_inputs(tmp_path: Path) -> None:
    a = ArtifactDir.for_spec(tmp_path, "embeddings", config={"dtype": "fp16"}, inputs={"corpus": "abc"})
    b = ArtifactDir.for_spec(tmp_path, "embeddings", config={"dtype": "fp16"}, inputs={"corpus": "abd"})
    c = ArtifactDir.for_spec(tmp_path, "embeddings", config={"dtype": "fp16"}, inputs={"corpus": "abc"})
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == c.fingerprint
    a.begin()
    assert not a.complete
    m = a.finalize(counts={"rows": 3})
    assert a.complete and c.complete
    assert json.loads(a.manifest_path.read_text())["counts"] == {"rows": 3}
    assert m.inputs == {"corpus": "abc"}


def test_file_fingerprint_changes_with_content(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("one")
    h1 = file_fingerprint(f)
    assert file_fingerprint(f) == h1  # cached
    f.write_text("two!")
    assert file_fingerprint(f) != h1
    atomic_write_json(tmp_path / "y.json", {"k": 1})
    assert json.loads((tmp_path / "y.json").read_text()) == {"k": 1}


def test_input_error_names_file_line_and_field() -> None:
    e = XqgInputError("must be a list", path="q.jsonl", line=3, field="answers")
    assert str(e) == "q.jsonl:3 field 'answers': must be a list"


def test_languages() -> None:
    assert XOR_LANGUAGES == ("ar", "bn", "fi", "ja", "ko", "ru", "te")
    assert normalize_lang(" ar") == "ar"
    assert get_language("bn").name == "Bengali"
    assert script_share("Москва", "ru") == 1.0
    assert script_share("Moscow", "ru") == 0.0
    with pytest.raises(KeyError):
        get_language("xx")
