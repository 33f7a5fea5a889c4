"""Learner text made safe to store and send to the model."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")


@dataclass(frozen=True)
class CleanText:
    text: str
    truncated: bool


def clean(text: str, max_chars: int) -> CleanText | None:
    """Strip control characters and cut to `max_chars`; `None` when nothing is left to answer."""
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\t", " ")).strip()
    if not text:
        return None
    if len(text) <= max_chars:
        return CleanText(text, truncated=False)
    cut = text[:max_chars]
    space = cut.rfind(" ", max_chars * 3 // 4)
    return CleanText((cut[:space] if space > 0 else cut).rstrip() + " …", truncated=True)
