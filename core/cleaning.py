"""Learner text and names made safe to store, to put in a prompt and to show in a chat.

Text from a chat can carry characters nobody sees: format and bidi controls (category Cf) that reorder or
hide what follows, line separators that start a new line in a prompt. `clean` drops what is invisible before
deciding a message says anything (an invisible message is not worth a model call); `flatten_name` makes a
display name one short, plain line, so `"Zoe\\nSYSTEM: …"` cannot write its own line into a prompt.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# Joiners shape the characters on both sides (👩‍💻, Persian words): kept only between two visible characters.
_JOINERS = frozenset("\u200c\u200d")
# Emoji tag characters spell a subdivision flag after a black flag (🏴 + tags + cancel tag); elsewhere they hide text.
_BLACK_FLAG = "\U0001f3f4"
_TAGS = range(0xE0020, 0xE0080)
# Letters that draw nothing, used for "empty" names and messages: Hangul fillers, the braille blank (read as
# spaces), and marks that draw nothing (the combining grapheme joiner, Khmer inherent vowels: dropped).
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_BLANK = _FILLERS | frozenset("\u034f\u17b4\u17b5")
# Line breaks in all their forms, for names (where every one becomes a space).
_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


@dataclass(frozen=True)
class CleanText:
    text: str
    truncated: bool


def clean(text: str, max_chars: int) -> CleanText | None:
    """Strip control and invisible characters and cut to `max_chars`; `None` when nothing is left to answer."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\t", " ")
    text = _visible(_CONTROL.sub("", text)).strip()
    if not text:
        return None
    if len(text) <= max_chars:
        return CleanText(text, truncated=False)
    cut = text[:max_chars]
    space = cut.rfind(" ", max_chars * 3 // 4)
    return CleanText((cut[:space] if space > 0 else cut).rstrip() + " …", truncated=True)


def flatten_name(name: str, limit: int = 64, placeholder: str = "?") -> str:
    """`name` as one plain line of at most `limit` characters, or `placeholder` when nothing visible is left.

    NFKC first, so look-alike letters (𝐀𝐝𝐦𝐢𝐧, full width) become the plain ones; no control, format or bidi
    character survives, not even a joiner (a name is a label, not a word to shape); every line break is a space.
    """
    text = "".join(" " if char in _BREAKS else char for char in unicodedata.normalize("NFKC", name))
    text = "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cf") and char not in _BLANK)
    text = " ".join(_drop_loose_selectors(text).split())
    if not text:
        return placeholder
    if len(text) <= limit:
        return text
    if limit < 2:
        return "…"
    cut = limit - 1
    # Never cut a character from its marks or selector: back off to the start of the last whole character.
    while cut > 1 and _attaches(text[cut]):
        cut -= 1
    return text[:cut].rstrip() + "…"


def _visible(text: str) -> str:
    """`text` without format characters (category Cf) and blank fillers, but with the joiners, variation
    selectors and emoji tags that belong to the visible character next to them."""
    kept: list[str] = []
    for char in text:
        if char in _FILLERS:
            kept.append(" ")
        elif char in _BLANK:
            continue
        elif char in _JOINERS:
            kept.append(char)  # judged below, once its neighbours are known
        elif unicodedata.category(char) == "Cf":
            if ord(char) in _TAGS and kept and (kept[-1] == _BLACK_FLAG or ord(kept[-1]) in _TAGS):
                kept.append(char)
            elif ord(char) == 0xE007F and kept and ord(kept[-1]) in _TAGS:
                kept.append(char)  # the cancel tag that ends a flag's tag sequence
        else:
            kept.append(char)
    joined = [
        char
        for index, char in enumerate(kept)
        if char not in _JOINERS or (0 < index < len(kept) - 1 and _ends(kept[index - 1]) and _shows(kept[index + 1]))
    ]
    return _drop_loose_selectors("".join(joined))


def _drop_loose_selectors(text: str) -> str:
    """Variation selectors only where they follow a character they can select (❤️), never on their own."""
    out: list[str] = []
    for char in text:
        if _is_selector(char) and not (out and (_shows(out[-1]) or _is_selector(out[-1]))):
            continue
        out.append(char)
    return "".join(out)


def _is_selector(char: str) -> bool:
    code = ord(char)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def _shows(char: str) -> bool:
    """A character something can join or attach to: not space, not a joiner, not a selector."""
    return not char.isspace() and char not in _JOINERS and not _is_selector(char)


def _ends(char: str) -> bool:
    """A character a joiner may follow: anything visible, a selector (❤️‍🔥) or a mark included."""
    return not char.isspace() and char not in _JOINERS


def _attaches(char: str) -> bool:
    """Whether `char` belongs to the character before it (a combining mark, a selector, a skin tone)."""
    return unicodedata.category(char).startswith("M") or _is_selector(char) or 0x1F3FB <= ord(char) <= 0x1F3FF
