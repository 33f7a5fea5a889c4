"""Fitting history into the context window in blocks, so the prompt's start stays put."""

from __future__ import annotations

from pathlib import Path

from core.context import estimate_tokens, fit
from core.languages import by_code
from core.lesson import Lesson, Level
from core.store import Message, Store


def conversation(turns: int, size: int = 200) -> list[Message]:
    return [Message(i + 1, "user" if i % 2 == 0 else "assistant", "x" * size) for i in range(turns)]


def test_history_that_fits_is_kept_whole() -> None:
    history = conversation(10)
    assert fit(history, budget=10_000).messages == history


def test_overflow_drops_a_large_block_of_the_oldest_turns() -> None:
    history = conversation(40)
    budget = sum(estimate_tokens(m.text) for m in history) - 10
    fitted = fit(history, budget)
    kept = sum(estimate_tokens(m.text) for m in fitted.messages)
    assert kept <= budget // 2 + estimate_tokens("x" * 200)
    assert len(fitted.messages) < 25
    assert fitted.messages[-1] == history[-1]
    assert fitted.dropped_through == fitted.messages[0].id - 1


def test_the_kept_history_starts_with_a_learner_turn() -> None:
    history = conversation(41)
    fitted = fit(history, budget=3000)
    assert fitted.messages[0].role == "user"


def test_the_newest_message_is_kept_even_when_it_alone_is_too_big() -> None:
    history = [*conversation(4), Message(5, "user", "y" * 10_000)]
    fitted = fit(history, budget=100)
    assert fitted.messages == [history[-1]]


def test_a_reply_is_never_kept_without_the_question_it_answers() -> None:
    """A trim point must be one the store can express: everything at or before a position goes."""
    history = [Message(1, "user", "x" * 300), Message(2, "assistant", "y" * 3000, reply_to=1)]
    fitted = fit(history, budget=100)
    assert fitted.messages == history
    assert fitted.dropped_through is None


def test_cjk_text_is_not_underestimated() -> None:
    assert estimate_tokens("日本語" * 100) >= 300


async def test_trimming_overlapping_group_questions_keeps_the_later_question_and_its_answer(tmp_path: Path) -> None:
    """u1, a1, u3, u4, a3, a4 as stored when two questions overlap; a trim after a3 must keep u4 and a4."""
    store = await Store.open(tmp_path / "db.sqlite")
    await store.save_lesson(Lesson("class", by_code("es"), Level.A2, by_code("en"), group=True))
    long, short = "x" * 300, "y" * 30

    async def ask(text: str, author: str) -> int:
        return await store.add_message("class", "user", text, author_id=author, author_name=author)

    u1 = await ask(long, "ana")
    await store.add_message("class", "assistant", long, reply_to=u1)
    u3 = await ask(long, "ben")
    u4 = await ask(short, "eva")
    await store.add_message("class", "assistant", long, reply_to=u3)
    await store.add_message("class", "assistant", short, reply_to=u4)

    history = await store.history("class")
    assert [m.reply_to or m.id for m in history] == [u1, u1, u3, u3, u4, u4]  # each answer after its question
    fitted = fit(history, budget=sum(estimate_tokens(m.text) for m in history) - 10)
    assert [m.text for m in fitted.messages] == [short, short]
    assert fitted.dropped_through is not None
    await store.trim("class", fitted.dropped_through)
    assert await store.history("class") == fitted.messages  # the next prompt starts where this one did
    await store.close()
