"""Finding a language from whatever a learner types."""

from __future__ import annotations

import pytest

from core.errors import UnknownLanguage
from core.languages import CATALOG, by_code, find_language, suggest


@pytest.mark.parametrize("typed", ["spanish", "Spanish", "español", "ESPAÑOL", "espanol", "castellano", "es"])
def test_names_autonyms_aliases_and_codes_find_spanish(typed: str) -> None:
    match = find_language(typed)
    assert match.language.code == "es"
    assert match.exact


@pytest.mark.parametrize(("typed", "code"), [("spansih", "es"), ("germn", "de"), ("japanse", "ja"), ("frensh", "fr")])
def test_a_clear_typo_is_forgiven_and_flagged_as_a_guess(typed: str, code: str) -> None:
    match = find_language(typed)
    assert match.language.code == code
    assert not match.exact


def test_an_unsure_match_asks_did_you_mean() -> None:
    with pytest.raises(UnknownLanguage) as raised:
        find_language("chin")
    assert "Did you mean" in str(raised.value)
    assert raised.value.suggestions[0].name == "Chinese"


def test_an_unknown_language_gets_a_helpful_error() -> None:
    with pytest.raises(UnknownLanguage) as raised:
        find_language("klingon")
    assert "klingon" in str(raised.value)
    assert "/learn" not in str(raised.value) or "Spanish" in str(raised.value)


def test_the_catalog_has_at_least_25_languages_with_unique_codes() -> None:
    assert len(CATALOG) >= 25
    assert len({lang.code for lang in CATALOG}) == len(CATALOG)


def test_every_language_is_found_by_its_code_name_and_autonym() -> None:
    for lang in CATALOG:
        for typed in (lang.code, lang.name, lang.autonym):
            assert find_language(typed).language == lang


def test_autocomplete_matches_prefixes_of_native_names() -> None:
    assert suggest("deu")[0].code == "de"
    assert suggest("日本")[0].code == "ja"


def test_autocomplete_offers_popular_languages_when_empty() -> None:
    first = [lang.code for lang in suggest("")[:3]]
    assert first == ["es", "fr", "de"]
    assert len(suggest("", limit=25)) == 25


def test_a_stored_code_is_found_by_code() -> None:
    assert by_code("de").name == "German"


def test_a_code_that_left_the_catalog_raises_unknown_language() -> None:
    with pytest.raises(UnknownLanguage) as raised:
        by_code("tlh")
    assert raised.value.query == "tlh"
