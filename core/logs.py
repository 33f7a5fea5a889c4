"""One log line per event, with the adapter and channel; never a learner's words unless asked for."""

from __future__ import annotations

import logging

_FIELDS = ("adapter", "channel", "language", "level", "deleted", "through", "status", "error")


class _EventFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{key}={getattr(record, key)}" for key in _FIELDS if hasattr(record, key))
        return f"{line} {extras}" if extras else line


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_EventFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log request URLs, and a Telegram URL contains the bot token.
    for noisy in ("httpx", "httpcore", "telegram", "discord", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def content(text: str, enabled: bool) -> str:
    """What a log line may say about a message: its text only when the operator turned that on."""
    return repr(text) if enabled else f"<{len(text)} chars>"
