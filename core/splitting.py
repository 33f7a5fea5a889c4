"""Cutting a long reply into messages a platform accepts, at places a reader would break it."""

from __future__ import annotations

FENCE = "```"
_CLOSE = "\n" + FENCE
# Inline Markdown delimiters, longest first so `**` is not read as two `*`.
_SPANS = ("**", "__", "~~", "||", "*", "_", "`")


def split_message(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` characters, cut at a paragraph, line or word boundary.

    A code block cut in two is closed at the end of one part and reopened, with its language, at the
    start of the next; so is an inline span (`**bold**`, `*italic*`, `` `code` ``, `~~strike~~`,
    `||spoiler||`), so each part renders on its own as the whole would have. The cut only looks at the
    first `limit` characters, so as a reply grows its earlier parts never change: a message already
    shown stays as it is.
    """
    parts: list[str] = []
    reopen = ""
    while len(reopen) + len(text) > limit:
        room = limit - len(reopen) - len(_CLOSE)
        while True:  # closing the spans open at the cut must still fit: cut earlier until it does
            head = text[: _cut(text[:room], room)]
            fence = _open_fence(reopen + head)
            spans = [] if fence is not None else _open_spans(reopen + head)
            closing = _CLOSE if fence is not None else "".join(reversed(spans))
            part = (reopen + head).rstrip() + closing
            if len(part) <= limit or room <= 1:
                break
            room -= len(part) - limit
        text = text[len(head) :].lstrip(" \n")
        parts.append(part)
        reopen = f"{fence}\n" if fence is not None else "".join(spans)
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


def _open_spans(text: str) -> list[str]:
    """The inline spans still open at the end of `text`, outermost first.

    A heuristic in the spirit of CommonMark's flanking rules: a delimiter opens a span when a
    non-space follows it and no letter or digit precedes it (so `snake_case` and `2*3` stay plain),
    and closes the innermost open span of its kind when a non-space precedes it. Spans end at a
    paragraph break; code blocks hold none.
    """
    stack: list[str] = []
    in_block = False
    for line in text.split("\n"):
        if line.lstrip().startswith(FENCE):
            in_block, stack = not in_block, []
            continue
        if in_block:
            continue
        if not line.strip():
            stack = []
            continue
        line += " "  # the line break after it is whitespace too
        i = 0
        while i < len(line) - 1:
            if line[i] == "\\":  # an escaped character is plain text
                i += 2
                continue
            if stack and stack[-1] == "`":  # inside inline code only a backtick means anything
                if line[i] == "`":
                    stack.pop()
                i += 1
                continue
            i += _delimiter(line, i, stack) or 1
    return stack


def _delimiter(line: str, i: int, stack: list[str]) -> int:
    """Open or close a span at `line[i]`, updating `stack`; the delimiter's length, or 0 if there is none."""
    before = line[i - 1] if i else " "
    for mark in _SPANS:
        if not line.startswith(mark, i):
            continue
        after = line[i + len(mark)]
        if stack and stack[-1] == mark and not before.isspace():
            stack.pop()
            return len(mark)
        if not after.isspace() and (mark == "`" or not before.isalnum()):
            stack.append(mark)
            return len(mark)
    return 0
