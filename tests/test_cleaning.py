"""What happens to a learner's raw text before it is stored."""

from __future__ import annotations

from core.cleaning import clean


def test_empty_and_whitespace_only_messages_are_ignored() -> None:
    assert clean("", 100) is None
    assert clean("  \n\t \u200b ", 100) is None


def test_control_characters_are_stripped() -> None:
    cleaned = clean("ho\x00la\x07 mun\x1bdo\r\n¿qué\u2028tal?", 100)
    assert cleaned is not None
    assert cleaned.text == "hola mundo\n¿quétal?"


def test_long_messages_are_cut_at_a_word_and_flagged() -> None:
    cleaned = clean("palabra " * 100, 50)
    assert cleaned is not None and cleaned.truncated
    assert len(cleaned.text) <= 52
    assert cleaned.text.endswith("palabra …")


def test_short_messages_are_kept_as_written() -> None:
    cleaned = clean("  Hola, ¿cómo estás?  ", 100)
    assert cleaned is not None
    assert (cleaned.text, cleaned.truncated) == ("Hola, ¿cómo estás?", False)
