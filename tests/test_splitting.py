"""Cutting long replies into messages: where the cuts fall, and that every part renders on its own."""

from __future__ import annotations

import re

import pytest

from core.splitting import split_message

PROSE = " ".join(f"palabra{i}" for i in range(400))
CODE = "Mira:\n```python\n" + "".join(f"x_{i} = {i} * 2  # **no** es negrita\n" for i in range(60)) + "```\n¡Listo!"
MARKDOWN = " ".join(
    f"La **frase número {i}** tiene *cursiva larga aquí*, `código {i}`, ~~tachado~~ y ||un secreto {i}||."
    for i in range(40)
)
NO_SPACES = "x" * 1000


def words(text: str) -> list[str]:
    return re.sub(r"[*_~|`]", "", text).split()


def test_a_short_text_is_one_part_unchanged() -> None:
    assert split_message("Hola **amigo**", 2000) == ["Hola **amigo**"]


def test_no_part_is_longer_than_the_limit_and_no_word_is_lost_or_cut() -> None:
    parts = split_message(PROSE, 200)
    assert len(parts) > 1
    assert all(len(part) <= 200 for part in parts)
    assert " ".join(parts).split() == PROSE.split()


def test_a_paragraph_break_is_preferred_over_a_line_break_and_a_line_break_over_a_space() -> None:
    text = "a" * 60 + "\n\n" + "b" * 20 + "\n" + "c " * 10
    assert split_message(text, 100)[0] == "a" * 60
    text = "a" * 60 + "\n" + "b " * 30
    assert split_message(text, 100)[0] == "a" * 60


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    parts = split_message(NO_SPACES, 300)
    assert all(len(part) <= 300 for part in parts)
    assert "".join(parts) == NO_SPACES


def test_a_code_block_cut_in_two_is_closed_and_reopened_with_its_language() -> None:
    parts = split_message(CODE, 500)
    assert len(parts) > 2
    for part in parts[:-1]:
        assert part.endswith("\n```")
    for part in parts[1:]:
        assert part.startswith("```python\n")
    assert all(part.count("```") % 2 == 0 for part in parts)


def test_code_lines_are_kept_whole_and_never_taken_for_spans() -> None:
    lines = set(CODE.split("\n"))
    for part in split_message(CODE, 500):
        assert all(line in lines or line == "```" for line in part.split("\n"))


@pytest.mark.parametrize("mark", ["**", "*", "`", "~~", "||", "__"])
def test_a_span_cut_in_two_is_closed_and_reopened(mark: str) -> None:
    text = "Hola " * 10 + mark + "uno dos tres cuatro cinco seis siete ocho" + mark + " fin"
    parts = split_message(text, 70)
    cut = next(i for i, part in enumerate(parts) if mark in part)
    assert parts[cut].endswith(mark) and parts[cut + 1].startswith(mark)
    assert all(part.count(mark) % 2 == 0 for part in parts)
    assert words(" ".join(parts)) == words(text)


def test_nested_spans_are_closed_innermost_first_and_reopened_outermost_first() -> None:
    text = "Hola " * 10 + "**negrita *y cursiva juntas durante muchas palabras* aquí**"
    first, second = split_message(text, 70)[:2]
    assert first.endswith("***") and first.count("**") == 2 and "*y" in first
    assert second.startswith("***")


def test_plain_asterisks_and_underscores_are_not_taken_for_spans() -> None:
    text = "* una lista\n" + "mi_variable_larga 2*3 = 6 y 5 * 4 = 20 " * 6
    parts = split_message(text, 80)
    assert " ".join(parts).split() == text.split()  # nothing added, nothing lost


def test_a_paragraph_break_ends_an_unclosed_span() -> None:
    text = "**Nota sin cerrar\n\n" + "palabra " * 30
    first, second = split_message(text, 100)[:2]
    assert first.startswith("**Nota sin cerrar\n\npalabra") and not first.endswith("**")
    assert not second.startswith("**")


@pytest.mark.parametrize("text", [PROSE, CODE, MARKDOWN, NO_SPACES], ids=["prose", "code", "markdown", "no-spaces"])
def test_as_a_reply_grows_its_finished_parts_never_change(text: str) -> None:
    """The relay shows every part but the last as final: a longer text must never rewrite them."""
    limit = 300
    final = split_message(text, limit)
    for end in range(1, len(text) + 1, 7):
        parts = split_message(text[:end], limit)
        assert parts[:-1] == final[: len(parts) - 1], f"a finished part changed at length {end}"
        assert all(len(part) <= limit for part in parts)


def test_markdown_parts_each_balance_their_markers() -> None:
    parts = split_message(MARKDOWN, 300)
    assert len(parts) > 5
    for part in parts:
        assert part.count("**") % 2 == 0 and part.count("||") % 2 == 0 and part.count("~~") % 2 == 0
        assert part.count("`") % 2 == 0
