"""Holding the model to its correction rules while its reply streams.

Small models invent errors: they "correct" words the learner never wrote, or offer a fix identical to the
original. Correction lines are held back until complete and dropped when they do not survive a check;
every other line streams through untouched.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import aclosing

from .prompts import CORRECTION_MARK

MAX_CORRECTIONS = 3
_MARK = CORRECTION_MARK[0]  # models often drop the emoji variation selector
_QUOTES = "\"'“”„«»‘’`"
_LINE = re.compile(
    rf"^\s*{_MARK}\ufe0f?\s*[{_QUOTES}]?(?P<wrong>.+?)[{_QUOTES}]?\s*(?:→|->|=>)\s*"
    rf"[{_QUOTES}]?(?P<fix>.+?)[{_QUOTES}]?\s*(?:[—–:]|\s-\s|$)"
)


def _fold(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .,!?¡¿")


def is_genuine(line: str, learner_text: str) -> bool:
    """A correction must quote the learner and change something; lines in another shape pass."""
    match = _LINE.match(line)
    if not match:
        return True
    wrong, fix = _fold(match["wrong"]), _fold(match["fix"])
    return bool(wrong) and wrong in _fold(learner_text) and wrong != fix


def _could_be_correction(line: str) -> bool:
    start = line.lstrip()
    return start.startswith(_MARK) or not start


async def checked_corrections(chunks: AsyncGenerator[str, None], learner_text: str) -> AsyncGenerator[str, None]:
    """Stream `chunks`, holding back each correction line until it is whole and checked."""
    held = ""  # the current line, while it may still turn out to be a correction
    flowing = False  # the current line is already on its way out
    kept = 0
    async with aclosing(chunks):
        async for chunk in chunks:
            out: list[str] = []
            *complete, rest = chunk.split("\n")
            for part in complete:
                if flowing:
                    out.append(part + "\n")
                else:
                    line = held + part
                    if not line.lstrip().startswith(_MARK):
                        out.append(line + "\n")
                    elif kept < MAX_CORRECTIONS and is_genuine(line, learner_text):
                        kept += 1
                        out.append(line + "\n")
                held, flowing = "", False
            if flowing:
                out.append(rest)
            else:
                held += rest
                if not _could_be_correction(held):
                    out.append(held)
                    held, flowing = "", True
            if out:
                yield "".join(out)
    if held and (not held.lstrip().startswith(_MARK) or (kept < MAX_CORRECTIONS and is_genuine(held, learner_text))):
        yield held
