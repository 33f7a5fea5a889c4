"""Log lines: one per event with its fields, and never a token, whatever code logged it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from core import logs

SECRET = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
TELEGRAM = "7012345678:AAHk3v_9xQ2LmN8pR4tY6uW1zB5cD7eF0gH"


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What the handler `configure` installs writes (to stderr in real life)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("INFO", [SECRET])
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


log = logging.getLogger("polyglott.test")


def test_an_event_is_one_line_with_its_adapter_and_channel(written: io.StringIO) -> None:
    log.info("reply sent", extra={"adapter": "telegram", "channel": "telegram:42"})
    (line,) = written.getvalue().splitlines()
    assert " INFO " in line and line.endswith("reply sent adapter=telegram channel=telegram:42")


def test_a_configured_secret_is_redacted_from_messages_and_tracebacks(written: io.StringIO) -> None:
    log.warning("login with %s failed", SECRET)
    try:
        raise RuntimeError(f"The token `{SECRET}` was rejected by the server.")
    except RuntimeError:
        log.exception("adapter failed", extra={"adapter": "discord"})
    err = written.getvalue()
    assert SECRET not in err
    assert err.count(logs.REDACTED) == 2


def test_a_telegram_token_is_redacted_even_when_not_configured(written: io.StringIO) -> None:
    log.error("GET https://api.telegram.org/bot%s/getUpdates failed", TELEGRAM)
    err = written.getvalue()
    assert TELEGRAM not in err and f"/bot{logs.REDACTED}/getUpdates" in err


def test_message_text_is_left_out_unless_the_operator_asked_for_it() -> None:
    assert logs.content("Me llamo Ana", enabled=False) == "<12 chars>"
    assert logs.content("Me llamo Ana", enabled=True) == "'Me llamo Ana'"
