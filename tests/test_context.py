"""Fitting history into the context window in blocks, so the prompt's start stays put."""

from __future__ import annotations

from core.context import estimate_tokens, fit
from core.store import Message


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


def test_cjk_text_is_not_underestimated() -> None:
    assert estimate_tokens("日本語" * 100) >= 300
