"""One log line per event, with the adapter and channel; never a learner's words unless asked for, never a token."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_FIELDS = ("adapter", "channel", "language", "level", "deleted", "through", "status", "error")

# A Telegram bot token wherever it appears (it is part of every Bot API URL), configured or not.
_TELEGRAM_TOKEN = re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}")
REDACTED = "<redacted>"


class _EventFormatter(logging.Formatter):
    """Appends the event's fields, then blanks out secrets from the whole line, traceback included.

    Redaction sits here rather than in a filter because only the formatted line holds everything that
    could carry a token: the message, its arguments, extras and exception text (a rejected token
    appears in some libraries' exception messages).
    """

    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{key}={getattr(record, key)}" for key in _FIELDS if hasattr(record, key))
        return redact(f"{line} {extras}" if extras else line, self._secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secrets or anything shaped like a Telegram bot token."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _TELEGRAM_TOKEN.sub(REDACTED, text)


def configure(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Log to stderr (journald and `docker logs` collect it), redacting `secrets` from every line."""
    handler = logging.StreamHandler()
    handler.setFormatter(_EventFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log request URLs, and a Telegram URL contains the bot token.
    for noisy in ("httpx", "httpcore", "telegram", "discord", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def content(text: str, enabled: bool) -> str:
    """What a log line may say about a message: its text only when the operator turned that on."""
    return repr(text) if enabled else f"<{len(text)} chars>"
