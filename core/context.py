"""Fitting a conversation into the model's context window without disturbing its cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .store import Message

KEEP_AFTER_TRIM = 0.5  # after a trim the history fills about this share of its budget, leaving room to grow


def estimate_tokens(text: str) -> int:
    """A deliberately high estimate: a UTF-8 byte count / 3 covers Latin scripts and CJK alike."""
    return len(text.encode()) // 3 + 4  # + per-message overhead of the chat template


@dataclass(frozen=True)
class Fitted:
    messages: list[Message]
    dropped_through: int | None  # position of the last message dropped, to remember as the new start


def fit(history: Sequence[Message], budget: int) -> Fitted:
    """Keep the newest turns under `budget` tokens.

    Trimming one turn per message would change the start of the prompt every turn and make Ollama
    re-read the whole prompt. Instead, when the history overflows, a large block of old turns goes at
    once, so the prompt's start then stays identical for many turns.
    """
    sizes = [estimate_tokens(m.text) for m in history]
    total = sum(sizes)
    if total <= budget or not history:
        return Fitted(list(history), None)
    target = int(budget * KEEP_AFTER_TRIM)
    cut = 0
    while cut < len(history) - 1 and (total > target or history[cut].role != "user"):
        total -= sizes[cut]
        cut += 1
    while cut and history[cut - 1].position == history[cut].position:
        cut -= 1  # the store hides whole positions: a reply is never kept without the question it answers
    return Fitted(list(history[cut:]), history[cut - 1].position if cut else None)
