"""Error categories: one fixed list for every language plus a few per language, and whatever a model writes
mapped onto it."""

from __future__ import annotations

import gettext
from collections.abc import Iterator

import pytest

import core.i18n
from core import categories as module
from core.categories import GENERAL, categories, label, normalize
from core.i18n import UI_LANGUAGES, render
from core.languages import find_language
from core.lesson import Lesson, Level
from core.prompts import self_correction, system_prompt

LANGUAGES = ("es", "pt", "fr", "de", "it", "ja")


def test_the_general_list_fits_any_language() -> None:
    assert GENERAL == (
        "agreement",
        "verb tense",
        "verb form",
        "article",
        "preposition",
        "word order",
        "spelling",
        "accents",
        "vocabulary",
        "other",
    )


def test_spanish_adds_ser_estar_por_para_and_the_subjunctive() -> None:
    assert categories("es") == (*GENERAL, "ser/estar", "por/para", "subjunctive")


@pytest.mark.parametrize(
    ("language", "extra"), [("pt", "ser/estar"), ("fr", "elision"), ("de", "case"), ("it", "auxiliary")]
)
def test_each_big_language_adds_its_own_trouble_spots(language: str, extra: str) -> None:
    assert categories(language)[: len(GENERAL)] == GENERAL
    assert extra in categories(language)


def test_a_language_without_extras_has_the_general_list() -> None:
    assert categories("ja") == GENERAL


def test_a_regional_code_has_its_languages_categories() -> None:
    assert categories("pt-BR") == categories("pt")


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_category_is_listed_twice(language: str) -> None:
    assert len(set(categories(language))) == len(categories(language))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_key_has_a_label(language: str) -> None:
    for key in categories(language):
        assert render(label(key), "en")


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_key_is_its_own_name(language: str) -> None:
    assert [normalize(key, language) for key in categories(language)] == list(categories(language))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_label_in_every_interface_language_means_its_key(language: str) -> None:
    for ui in UI_LANGUAGES:
        for key in categories(language):
            assert normalize(render(label(key), ui), language) == key, (ui, key)


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("Verb Tense", "verb tense"),
        ("verb_tense", "verb tense"),
        ("VERB-FORM", "verb form"),
        ("  word   order ", "word order"),
        ("verb tenses", "verb tense"),
        ("articles", "article"),
        ("accent", "accents"),
        ("prepositions", "preposition"),
        ("ser / estar", "ser/estar"),
        ("Subjunctive Mood", "subjunctive"),
    ],
)
def test_case_spacing_separators_and_plurals_do_not_matter(written: str, key: str) -> None:
    assert normalize(written, "es") == key


@pytest.mark.parametrize(
    ("written", "key"),
    [("tense", "verb tense"), ("conjugation", "verb form"), ("gender", "agreement"), ("word choice", "vocabulary")],
)
def test_the_usual_synonyms_are_understood(written: str, key: str) -> None:
    assert normalize(written, "es") == key


def test_words_that_only_say_error_are_ignored() -> None:
    assert normalize("verb tense error", "es") == "verb tense"
    assert normalize("Spelling mistake", "es") == "spelling"


@pytest.mark.parametrize(
    ("written", "key"), [("speling", "spelling"), ("agreemnt", "agreement"), ("subjuntivo", "subjunctive")]
)
def test_a_near_miss_is_forgiven(written: str, key: str) -> None:
    assert normalize(written, "es") == key


@pytest.mark.parametrize("written", ["grammar", "style", "argument", "", "   ", "???"])
def test_an_unknown_category_is_other(written: str) -> None:
    assert normalize(written, "es") == "other"


def test_a_category_of_another_language_is_other() -> None:
    assert normalize("ser/estar", "de") == "other"
    assert normalize("case", "es") == "other"


def test_a_key_no_longer_listed_shows_as_other() -> None:
    assert label("retired category") == label("other")


@pytest.fixture
def german_labels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A German catalog that translates two labels, as the real one will."""

    class German(gettext.NullTranslations):
        def gettext(self, message: str) -> str:
            return {"verb tense": "Zeitform", "case": "Kasus"}.get(message, message)

    real = core.i18n.translations
    monkeypatch.setattr(core.i18n, "translations", lambda language: German() if language == "de" else real(language))
    module._names_of.cache_clear()
    yield
    module._names_of.cache_clear()


@pytest.mark.usefixtures("german_labels")
def test_a_label_in_the_learners_language_is_understood() -> None:
    assert normalize("Zeitform", "es") == "verb tense"
    assert normalize("kasus", "de") == "case"
    assert render(label("verb tense"), "de") == "Zeitform"


def test_the_tutor_is_told_the_categories_of_its_lesson() -> None:
    spanish = Lesson("test:dm:1", find_language("es").language, Level.A2, find_language("en").language)
    german = Lesson("test:dm:1", find_language("de").language, Level.A2, find_language("en").language)
    assert "verb tense" in system_prompt(spanish) and "ser/estar" in system_prompt(spanish)
    assert "adjective endings" in system_prompt(german) and "ser/estar" not in system_prompt(german)


def test_a_learner_who_keeps_making_an_error_is_asked_to_correct_it_themselves() -> None:
    told = self_correction(["ser/estar", "verb tense"])
    assert '"ser/estar" and "verb tense"' in told and "themselves" in told
