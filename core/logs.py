"""One log line per event, with the adapter and channel; never a learner's words unless asked for, never a token.

Our own code decides what it logs (`content` below). Libraries do not: python-telegram-bot logs an update it
cannot parse at CRITICAL with the whole update, discord.py and httpx log request details. So unless content
logging is on, a record from any logger outside our packages keeps its logger, level and message template
but not its arguments (each shown as `…`) nor its traceback (only the exception's type name).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable

_FIELDS = ("adapter", "channel", "language", "level", "deleted", "through", "status", "error")

# A Telegram bot token wherever it appears (it is part of every Bot API URL), configured or not.
_TELEGRAM_TOKEN = re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}")
REDACTED = "<redacted>"
HIDDEN = "…"

# Loggers whose records are ours: they already leave content out unless asked to.
OWN_LOGGERS = ("core", "bots", "bench", "polyglott")
# A %-style placeholder, as `logging` fills it from a record's arguments.
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")


class _EventFormatter(logging.Formatter):
    """Appends the event's fields, then blanks out secrets from the whole line, traceback included.

    Redaction sits here rather than in a filter because only the formatted line holds everything that
    could carry a token: the message, its arguments, extras and exception text (a rejected token
    appears in some libraries' exception messages).
    """

    def __init__(self, fmt: str, secrets: Iterable[str] = (), content: bool = False) -> None:
        super().__init__(fmt)
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._content = content

    def format(self, record: logging.LogRecord) -> str:
        if not self._content and not is_own(record.name):
            record = without_content(record)
        line = super().format(record)
        extras = " ".join(f"{key}={getattr(record, key)}" for key in _FIELDS if hasattr(record, key))
        return redact(f"{line} {extras}" if extras else line, self._secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secrets or anything shaped like a Telegram bot token."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _TELEGRAM_TOKEN.sub(REDACTED, text)


def is_own(logger: str) -> bool:
    """Whether a logger is one of ours (`core.tutor`, `bots`, …) rather than a library's."""
    return any(logger == own or logger.startswith(f"{own}.") for own in OWN_LOGGERS)


def without_content(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of a library's `record` that says what happened but nothing it was about.

    The arguments are where a library puts the update, the message or the URL; a traceback's text can quote
    any of them. The template and the exception's type name are the library's own words: they stay.
    """
    hidden = copy.copy(record)
    template = record.msg if isinstance(record.msg, str) else f"<{type(record.msg).__name__}>"
    if record.args:
        template = _PLACEHOLDER.sub(lambda m: "%" if m[0] == "%%" else HIDDEN, template)
    hidden.msg, hidden.args = template, None
    if record.exc_info and record.exc_info[0] is not None:
        hidden.msg = f"{template} [{record.exc_info[0].__name__}]"
    hidden.exc_info, hidden.exc_text, hidden.stack_info = None, None, None
    return hidden


def configure(level: str = "INFO", secrets: Iterable[str] = (), content: bool = False) -> None:
    """Log to stderr (journald and `docker logs` collect it), redacting `secrets` from every line; libraries'
    records lose their arguments and tracebacks unless `content` (the operator's `POLYGLOTT_LOG_CONTENT`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_EventFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets, content=content))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log request URLs, and a Telegram URL contains the bot token.
    # openai's debug lines hold whole requests, messages included; httpx2 and httpcore2 are its HTTP stack.
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "telegram", "discord", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def content(text: str, enabled: bool) -> str:
    """What a log line may say about a message: its text only when the operator turned that on."""
    return repr(text) if enabled else f"<{len(text)} chars>"
