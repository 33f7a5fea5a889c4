"""Everything around a streamed reply that every chat platform needs: typing, queue notices, errors.

The conversation hands over a `Reply` and the adapter's `Surface`; this keeps the typing indicator alive
while the learner waits, tells them their place when the model is busy, relays the text at the platform's
pace, and turns any failure into a short message in the chat instead of silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing

from .errors import TutorError
from .i18n import Msg, Voice, _n
from .outcome import Buttons, Note, Surface
from .relay import Delivery, relay
from .tutor import Reply

log = logging.getLogger(__name__)

TYPING_EVERY = 4.0  # Telegram shows "typing…" for 5 s, Discord for 10 s
QUEUE_NOTICE_AFTER = 8.0  # seconds of waiting before the learner is told their place in line

# How a reply's chunks reach the chat: `core.relay.relay`, unless a benchmark swaps in another pacing rule
# (which then shows no buttons: the benchmarks' replies have none).
RelayStrategy = Callable[..., Awaitable[Delivery]]
_relay: RelayStrategy = relay


@contextlib.contextmanager
def using_relay(strategy: RelayStrategy) -> Iterator[None]:
    """Show every reply with `strategy` while the block runs, in every adapter of this process.

    The benchmarks compare other bots' pacing rules with ours inside the same adapters; production never
    calls this.
    """
    global _relay
    previous, _relay = _relay, strategy
    try:
        yield
    finally:
        _relay = previous


async def answer(
    reply: Reply,
    surface: Surface,
    say: Voice,
    buttons: Buttons = (),
    *,
    queue_notice_after: float = QUEUE_NOTICE_AFTER,
    typing_every: float = TYPING_EVERY,
) -> Delivery | None:
    """Show `reply` on `surface`; return what was shown, or None when it failed (the learner was told, in
    `say`'s language)."""
    if reply.notice:
        await _quietly(surface.note(Note(say(reply.notice))))
    first_text = asyncio.Event()
    keeper = asyncio.create_task(_keep_typing(reply, surface, say, first_text, queue_notice_after, typing_every))
    try:
        chunks = _marking_first(reply, first_text)
        if buttons:
            return await _relay(chunks, surface, surface.limits, surface.pacer, buttons)
        return await _relay(chunks, surface, surface.limits, surface.pacer)
    except TutorError as error:
        log.info("reply failed", extra={"error": type(error).__name__})
        await _quietly(surface.note(Note(say(error.message))))
        return None
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


async def _marking_first(reply: Reply, first_text: asyncio.Event) -> AsyncGenerator[str, None]:
    async with aclosing(aiter(reply)) as chunks:
        async for chunk in chunks:
            first_text.set()
            yield chunk


async def _keep_typing(
    reply: Reply, surface: Surface, say: Voice, first_text: asyncio.Event, notice_after: float, every: float
) -> None:
    """Typing until the first words show; one notice if the wait in line is long."""
    waited = 0.0
    told = False
    while not first_text.is_set():
        await _quietly(surface.typing())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_text.wait(), every)
        waited += every
        position = reply.position or 0
        if not told and waited >= notice_after and position > 0:
            told = True
            await _quietly(surface.note(Note(say(queue_notice(position)))))


def queue_notice(ahead: int) -> Msg:
    """What a learner waiting in line is told once."""
    return _n(
        "⏳ The tutor is busy: {n} person is ahead of you. Your answer is coming.",
        "⏳ The tutor is busy: {n} people are ahead of you. Your answer is coming.",
        ahead,
    )


async def _quietly(call: Awaitable[object]) -> None:
    """A typing indicator or notice that fails must not take the reply down with it."""
    try:
        await call
    except Exception as error:
        log.warning("chat side-call failed", extra={"error": type(error).__name__})
