"""Chat commands as every adapter parses them."""

from __future__ import annotations

import pytest

from core.commands import Command, learn_arguments, parse_command


def test_a_command_addressed_to_this_bot_is_parsed() -> None:
    assert parse_command("/learn@Polyglott_bot spanish b1", "polyglott_bot") == Command("learn", ("spanish", "b1"))


def test_a_command_addressed_to_another_bot_is_not_ours() -> None:
    assert parse_command("/learn@other_bot spanish", "polyglott_bot") is None


@pytest.mark.parametrize("text", ["", "hola", "/", "/ hola", "/\nhola"])
def test_text_that_is_not_a_command_is_none(text: str) -> None:
    assert parse_command(text, "polyglott_bot") is None


def test_learn_takes_a_trailing_level_and_a_language_of_several_words() -> None:
    assert learn_arguments(("brazilian", "portuguese", "b1")) == ("brazilian portuguese", "B1")
    assert learn_arguments(()) == (None, None)
