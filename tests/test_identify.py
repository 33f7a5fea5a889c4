"""Language identification: the target language rather than the learner's own or English, or "can't tell"."""

from __future__ import annotations

import threading

import pytest

from core import identify
from core.identify import written_in, written_in_async


def test_a_spanish_sentence_is_in_spanish() -> None:
    assert written_in("Ayer fui al mercado con mi hermana.", "es", ["en"]) is True


def test_a_spanish_sentence_with_a_mistake_is_still_in_spanish() -> None:
    assert written_in("Yo soy cansado hoy", "es", ["de", "en"]) is True


def test_an_english_sentence_is_not_in_spanish() -> None:
    assert written_in("Sorry, I don't know how to say that.", "es", ["en"]) is False


def test_the_learners_own_language_is_not_the_target() -> None:
    assert written_in("Ich weiß nicht, wie man das sagt.", "es", ["de", "en"]) is False


def test_a_german_sentence_is_in_german() -> None:
    assert written_in("Ich habe heute keine Zeit.", "de", ["en"]) is True


def test_a_french_sentence_is_in_french_rather_than_english_or_german() -> None:
    assert written_in("Je suis fatigué aujourd'hui.", "fr", ["de", "en"]) is True


def test_an_english_sentence_is_not_in_french() -> None:
    assert written_in("I am tired today.", "fr", ["en"]) is False


def test_a_close_neighbour_is_told_apart_when_it_is_the_learners_language() -> None:
    assert written_in("Eu gosto muito de futebol.", "es", ["pt", "en"]) is False
    assert written_in("Me gusta mucho el fútbol.", "es", ["pt", "en"]) is True


def test_a_language_written_without_spaces_can_be_identified() -> None:
    assert written_in("我今天很累，想休息一下", "zh", ["en"]) is True


def test_links_and_mentions_are_not_words() -> None:
    assert written_in("@tutor https://example.com/some/long/path", "es", ["en"]) is None
    assert written_in("Mira esto, es muy bonito: https://example.com/the/page", "es", ["en"]) is True


TOO_SHORT = ["", "   ", "ok", "gracias", "jaja sí", "sí sí", "😀😀😀 👍", "12345 67890", "!!! ???"]


@pytest.mark.parametrize("text", TOO_SHORT)
def test_a_text_too_short_to_tell_is_unknown(text: str) -> None:
    assert written_in(text, "es", ["en"]) is None


def test_a_target_the_model_lacks_is_unknown() -> None:
    assert written_in("Hola, me llamo Ana y vivo en Madrid.", "tlh", ["en"]) is None


def test_an_other_language_the_model_lacks_is_left_out() -> None:
    assert written_in("Hola, me llamo Ana y vivo en Madrid.", "es", ["tlh", "en"]) is True


def test_codes_are_case_insensitive() -> None:
    assert written_in("Hola, me llamo Ana y vivo en Madrid.", "ES", ["EN"]) is True


def test_without_other_languages_the_rival_is_the_likeliest_other_one() -> None:
    assert written_in("The weather is lovely today, isn't it?", "es", []) is False


async def test_the_async_form_gives_the_same_answer() -> None:
    assert await written_in_async("Ayer fui al mercado con mi hermana.", "es", ["en"]) is True
    assert await written_in_async("ok", "es", ["en"]) is None


def test_threads_loading_at_once_share_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identify, "_model", None)
    start = threading.Barrier(4)
    seen: list[object] = []

    def load() -> None:
        start.wait()
        seen.append(identify._identifier())

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4
    assert len({id(model) for model in seen}) == 1
