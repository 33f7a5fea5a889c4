"""Log lines: one per event with its fields, and never a token, whatever code logged it."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from telegram.ext import _application as ptb_application

from core import logs

SECRET = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
TELEGRAM = "7012345678:AAHk3v_9xQ2LmN8pR4tY6uW1zB5cD7eF0gH"


@contextlib.contextmanager
def configured(content: bool = False) -> Iterator[io.StringIO]:
    """What the handler `configure` installs writes (to stderr in real life)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "telegram", "discord")}
    logs.configure("INFO", [SECRET], content=content)
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in libraries.items():
            logging.getLogger(name).setLevel(was)


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    with configured() as buffer:
        yield buffer


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


# An update as python-telegram-bot hands it to its logger when it cannot process it: names and words included.
UPDATE: dict[str, Any] = {
    "update_id": 7,
    "message": {
        "message_id": 3,
        "from": {"id": 4242, "first_name": "Zoe", "last_name": "Quintana", "username": "zoeq"},
        "chat": {"id": 4242, "type": "private", "first_name": "Zoe"},
        "text": "Mi secreto es que me gusta el flan",
    },
}
WORDS = ("Zoe", "Quintana", "zoeq", "secreto", "flan")


def log_as_ptb_does() -> None:
    """`Application.process_update`'s CRITICAL line when building a context fails, exception and all."""
    try:
        raise KeyError(f"no chat data for {UPDATE['message']['text']}")
    except KeyError as error:
        ptb_application._LOGGER.critical(
            "Error while building CallbackContext for update %s. Update will not be processed.",
            UPDATE,
            exc_info=error,
        )


def test_a_library_record_keeps_its_logger_level_and_template_but_no_content() -> None:
    with configured() as buffer:
        log_as_ptb_does()
    (line,) = buffer.getvalue().splitlines()
    assert " CRITICAL telegram.ext.Application: Error while building CallbackContext for update …. " in line
    assert line.endswith("Update will not be processed. [KeyError]")
    assert not [word for word in WORDS if word in buffer.getvalue()]


def test_a_library_record_keeps_its_content_when_the_operator_asked_for_it() -> None:
    with configured(content=True) as buffer:
        log_as_ptb_does()
    err = buffer.getvalue()
    assert all(word in err for word in WORDS) and "Traceback" in err


def test_a_library_record_without_arguments_is_kept_as_written(written: io.StringIO) -> None:
    logging.getLogger("discord.gateway").warning("Shard ID %%s has stopped responding.")
    assert written.getvalue().rstrip().endswith("discord.gateway: Shard ID %%s has stopped responding.")


def test_a_library_record_with_named_arguments_loses_them(written: io.StringIO) -> None:
    logging.getLogger("httpx").warning(
        "HTTP Request: %(method)s %(url)s %(rate)d%%", {"method": "POST", "url": "https://x/Zoe", "rate": 5}
    )
    assert written.getvalue().rstrip().endswith("httpx: HTTP Request: … … …%")


def test_our_own_records_keep_their_arguments(written: io.StringIO) -> None:
    logging.getLogger("core.tutor").info("lesson %s started", "spanish")
    assert "lesson spanish started" in written.getvalue()


def test_a_token_in_a_library_record_is_redacted_even_with_content_on() -> None:
    with configured(content=True) as buffer:
        logging.getLogger("httpx").warning("POST https://api.telegram.org/bot%s/sendMessage", TELEGRAM)
    assert TELEGRAM not in buffer.getvalue() and logs.REDACTED in buffer.getvalue()
