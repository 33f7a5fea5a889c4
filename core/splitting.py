"""Cutting a long reply into messages a platform accepts, at places a reader would break it."""

from __future__ import annotations

FENCE = "```"
_CLOSE = "\n" + FENCE


def split_message(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` characters, cut at a paragraph, line or word boundary.

    A code block cut in two is closed at the end of one part and reopened, with its language, at the
    start of the next. The cut only looks at the first `limit` characters, so as a reply grows its
    earlier parts never change: a message already shown stays as it is.
    """
    parts: list[str] = []
    reopen = ""
    while len(reopen) + len(text) > limit:
        room = limit - len(reopen) - len(_CLOSE)
        head = text[: _cut(text[:room], room)]
        text = text[len(head) :].lstrip(" \n")
        fence = _open_fence(reopen + head)
        part = (reopen + head).rstrip()
        if fence is not None:
            part += _CLOSE
        parts.append(part)
        reopen = f"{fence}\n" if fence is not None else ""
    parts.append(reopen + text)
    return parts


def _cut(window: str, room: int) -> int:
    """Where to cut: the last paragraph break, else line break, else space in the window's second half."""
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator, room // 2)
        if at > 0:
            return at + len(separator)
    return room


def _open_fence(text: str) -> str | None:
    """The opening line (```python) of a code block left open at the end of `text`, if any."""
    opening = None
    for line in text.split("\n"):
        if line.lstrip().startswith(FENCE):
            opening = None if opening is not None else line.strip()
    return opening
