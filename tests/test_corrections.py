"""Correction lines are checked as they stream; everything else flows through."""

from __future__ import annotations

from collections.abc import AsyncIterator

from core.corrections import checked_corrections, is_genuine


async def chunked(text: str, size: int = 3) -> AsyncIterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


async def run(text: str, learner: str) -> str:
    return "".join([c async for c in checked_corrections(chunked(text), learner)])


async def test_a_genuine_correction_is_kept() -> None:
    reply = '¡Muy bien! ¿Y tú?\n✏️ "yo tiene" → "yo tengo" — "tener" is irregular: yo tengo.'
    assert await run(reply, "yo tiene un perro") == reply


async def test_a_correction_of_words_the_learner_never_wrote_is_dropped() -> None:
    reply = '¡Muy bien!\n✏️ "el gato" → "la gata" — invented\n¿Y tú?'
    assert await run(reply, "yo tengo un perro") == "¡Muy bien!\n¿Y tú?"


async def test_a_correction_that_changes_nothing_is_dropped() -> None:
    reply = 'Bien.\n✏️ "un perro" → "un perro" — fine'
    assert await run(reply, "tengo un perro") == "Bien.\n"


async def test_at_most_three_corrections_are_kept() -> None:
    learner = "a b c d"
    lines = [f'✏️ "{w}" → "{w}x" — fix' for w in "abcd"]
    out = await run("Hola\n" + "\n".join(lines), learner)
    assert out.count("✏️") == 3


async def test_text_before_a_correction_streams_without_waiting() -> None:
    stream = checked_corrections(chunked('¡Hola! ¿Qué tal?\n✏️ "x" → "y" — z', size=4), "x")
    assert await anext(stream) == "¡Hol"


def test_lines_in_another_shape_are_not_judged() -> None:
    assert is_genuine("✏️ Remember: adjectives agree with nouns.", "anything")
