"""The language table: codes, the English names used in generator prompts, and scripts.

The seven XOR-TyDi XOR-Retrieve languages come first; English and the XQuAD/XQuAD-R languages follow.
Scripts name Unicode blocks so tests can check that generated text is written in the right script.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # English name, as in the paper's prompt "Generate a {name} question ..."
    script: str  # dominant script
    ranges: tuple[tuple[int, int], ...]  # Unicode code-point ranges of that script (letters only)


_LATIN = ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F))
_CYRILLIC = ((0x0400, 0x04FF),)
_ARABIC = ((0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))
_BENGALI = ((0x0980, 0x09FF),)
_TELUGU = ((0x0C00, 0x0C7F),)
_DEVANAGARI = ((0x0900, 0x097F),)
_JAPANESE = ((0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF), (0xFF66, 0xFF9F))
_HANGUL = ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F))
_HAN = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF))
_GREEK = ((0x0370, 0x03FF),)
_THAI = ((0x0E00, 0x0E7F),)

LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("ar", "Arabic", "Arabic", _ARABIC),
        Language("bn", "Bengali", "Bengali", _BENGALI),
        Language("fi", "Finnish", "Latin", _LATIN),
        Language("ja", "Japanese", "Japanese", _JAPANESE),
        Language("ko", "Korean", "Hangul", _HANGUL),
        Language("ru", "Russian", "Cyrillic", _CYRILLIC),
        Language("te", "Telugu", "Telugu", _TELUGU),
        Language("en", "English", "Latin", _LATIN),
        Language("de", "German", "Latin", _LATIN),
        Language("el", "Greek", "Greek", _GREEK),
        Language("es", "Spanish", "Latin", _LATIN),
        Language("hi", "Hindi", "Devanagari", _DEVANAGARI),
        Language("ro", "Romanian", "Latin", _LATIN),
        Language("th", "Thai", "Thai", _THAI),
        Language("tr", "Turkish", "Latin", _LATIN),
        Language("vi", "Vietnamese", "Latin", _LATIN),
        Language("zh", "Chinese", "Han", _HAN),
    )
}

#: The XOR-TyDi XOR-Retrieve query languages, in the paper's column order.
XOR_LANGUAGES: tuple[str, ...] = ("ar", "bn", "fi", "ja", "ko", "ru", "te")


def get_language(code: str) -> Language:
    """Look up a language by code; accepts the released train file's ``" ar"`` (leading space)."""
    key = code.strip().lower()
    try:
        return LANGUAGES[key]
    except KeyError:
        known = ", ".join(sorted(LANGUAGES))
        raise KeyError(f"unknown language code {code!r}; known: {known}") from None


def normalize_lang(code: str) -> str:
    """Canonical language code (strips the stray whitespace of the released XOR-TyDi train file)."""
    return get_language(code).code


#: per language, each character seen: 0 not a letter, 1 a letter of another script, 2 a letter of this script
_CHAR_CLASS: dict[str, dict[str, int]] = {}


def script_share(text: str, code: str) -> float:
    """Share of the letters in ``text`` that belong to the script of language ``code`` (0 when no letters).
    Each character is classified once per language (generation quality measures every generated query)."""
    classes = _CHAR_CLASS.setdefault(code, {})
    letters = hits = 0
    for ch in text:
        k = classes.get(ch)
        if k is None:
            ranges = get_language(code).ranges
            k = 0 if not ch.isalpha() else 2 if any(lo <= ord(ch) <= hi for lo, hi in ranges) else 1
            classes[ch] = k
        if k:
            letters += 1
            hits += k == 2
    return hits / letters if letters else 0.0
