"""Signals the model writes into its text for code to read: a scene's goal reached, a fact to remember, a
placement task managed. They are taken out of the stream before anyone sees them.

A marker is `[goal]`, `[remember: plays the guitar]` or `[managed: yes]`, anywhere in the text. Text from a `[`
on is held back until the bracket closes (or cannot be a marker any more), so a marker split across chunks is
never shown in part; whitespace before the end is held too, so a marker on a last line of its own leaves no
empty line behind.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from .filtering import filtered

MARKERS = ("goal", "remember", "managed")
_MARKER = re.compile(r"\[\s*(?P<kind>goal|remember|managed)\s*(?::\s*(?P<value>[^\[\]\n]*?))?\s*\]", re.IGNORECASE)
FACT_CHARS = 120  # a fact of a few words; a dozen of them go into an opener's prompt
_LONGEST = 240  # characters a marker may take: a fact of a few words, with room for a chatty model


@dataclass
class Marks:
    """What the markers of one reply said."""

    goal: bool = False
    facts: list[str] = field(default_factory=list)
    managed: bool | None = None


def _could_be_marker(held: str) -> bool:
    """Whether `held` (from a `[`, not closed yet) may still become a marker."""
    if len(held) > _LONGEST or "\n" in held:
        return False
    word = held[1:].lstrip().casefold()
    head = re.match(r"[a-z]*", word)
    name = head.group(0) if head else ""
    if len(name) == len(word):  # still typing the name
        return any(marker.startswith(name) for marker in MARKERS)
    return name in MARKERS and word[len(name) :].lstrip()[:1] in (":", "]", "")


def _record(match: re.Match[str], marks: Marks) -> None:
    kind, value = match["kind"].casefold(), " ".join((match["value"] or "").split())
    if kind == "goal":
        marks.goal = True
    elif kind == "remember" and value:
        marks.facts.append(value[:FACT_CHARS])
    elif kind == "managed" and value:
        marks.managed = value.casefold().startswith(("y", "s", "o", "j"))  # yes, sí/sim, oui, ja


class _Taker:
    def __init__(self, marks: Marks) -> None:
        self.marks = marks
        self.held = ""

    def feed(self, chunk: str) -> str:
        text, out = self.held + chunk, []
        while True:
            start = text.find("[")
            if start < 0:
                break
            out.append(text[:start])
            text = text[start:]
            match = _MARKER.match(text)
            if match:
                _record(match, self.marks)
                text = text[match.end() :]
                if out and (not text or text[:1].isspace()):
                    out[-1] = out[-1].rstrip()  # the marker leaves no space nor empty line behind
                continue
            if _could_be_marker(text):
                before = "".join(out)
                kept = before.rstrip()
                self.held = before[len(kept) :] + text  # with the whitespace before it, to go with it
                return kept
            out.append("[")
            text = text[1:]
        kept = text.rstrip()
        self.held = text[len(kept) :]  # trailing whitespace waits: a marker may come after it
        out.append(kept)
        return "".join(out)

    def close(self) -> str:
        if not self.held.strip():
            return ""
        return "" if _could_be_marker(self.held.lstrip()) else self.held.lstrip("\n")


def taken(chunks: AsyncGenerator[str, None], marks: Marks) -> AsyncGenerator[str, None]:
    """`chunks` without markers; what they said goes into `marks` as they pass."""
    return filtered(chunks, _Taker(marks))


class _LineDropper:
    def __init__(self, starts: tuple[str, ...]) -> None:
        self.starts = starts
        self.held = ""  # the start of a line not yet known to be kept or dropped
        self.breaks = ""  # line breaks after kept text: out only before more kept text
        self.within = False  # in the middle of a kept line
        self.dropping = False

    def feed(self, chunk: str) -> str:
        text, out = self.held + chunk, []
        self.held = ""
        while text:
            end = text.find("\n")
            line = text if end < 0 else text[: end + 1]
            if not self.within and not self.dropping:
                head = line.lstrip(" \t").rstrip("\n")
                if head.startswith(self.starts):
                    self.dropping = True
                elif end < 0 and (not head or any(s.startswith(head) for s in self.starts)):
                    self.held = text  # the line has not shown how it starts
                    break
            if self.dropping:
                self.dropping = end < 0
            elif line.strip() or self.within:
                out.append(self.breaks + line.rstrip("\n"))
                self.breaks = "\n" if line.endswith("\n") else ""
                self.within = end < 0
            else:
                self.breaks += "\n"
            text = text[len(line) :]
        return "".join(out)

    def close(self) -> str:
        held = self.held
        return self.breaks + held if held.strip() and not held.lstrip().startswith(self.starts) else ""


def without_lines(chunks: AsyncGenerator[str, None], starts: tuple[str, ...]) -> AsyncGenerator[str, None]:
    """`chunks` without the lines that start with one of `starts` (a scene hides its correction lines, which
    stay in the findings); the line breaks that led to them go too."""
    return filtered(chunks, _LineDropper(starts))
