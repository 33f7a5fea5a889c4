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
from typing import Any

from .errors import ReplyDiscarded, TutorError
from .i18n import Msg, Voice, _n
from .outcome import Buttons, Note, Surface
from .relay import Delivery, DraftsUnavailable, relay
from .store import Shown, Status
from .tutor import CUT_MARK, Reply

log = logging.getLogger(__name__)

TYPING_EVERY = 4.0  # Telegram shows "typing…" for 5 s, Discord for 10 s
QUEUE_NOTICE_AFTER = 8.0  # seconds of waiting before the learner is told their place in line
CUT_WITHIN = 3.0  # seconds a stop gives the chat to take a cut reply's mark (systemd and Docker wait 10 s or more)

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
    `say`'s language).

    The reply's stored state follows its delivery: in progress with the addresses of the messages that show
    it, complete once the platform took its final text, cut (and marked in the chat) when a stop cancels it.
    """
    if reply.notice:
        await quietly(surface.note(Note(say(reply.notice))))
    reply.deliver_later()
    watched = Watched(surface, reply)
    first_text = asyncio.Event()
    keeper = asyncio.create_task(_keep_typing(reply, surface, say, first_text, queue_notice_after, typing_every))
    try:
        chunks = _marking_first(reply, first_text)
        if buttons:
            delivery = await _relay(chunks, watched, surface.limits, surface.pacer, buttons)
        else:
            delivery = await _relay(chunks, watched, surface.limits, surface.pacer)
    except ReplyDiscarded:
        return None  # reset or switched: the chat already says so
    except TutorError as error:
        log.info("reply failed", extra={"error": type(error).__name__})
        await reply.finish(watched.text, Status.INTERRUPTED if watched.text else Status.FAILED)
        await quietly(surface.note(Note(say(error.message))))
        return None
    except Exception:  # the platform refused (a read-only channel, a blocked bot): what it shows is all there is
        await reply.finish(watched.text, Status.INTERRUPTED if watched.text else Status.FAILED)
        raise
    except asyncio.CancelledError:
        ending = asyncio.ensure_future(watched.cut_off())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(ending)  # a second cancel leaves it running: the chat still gets its mark
        raise
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    await reply.finish(reply.text, reply.status or Status.COMPLETE)
    return delivery


class Watched:
    """The surface as the relay sees it, remembering (in the store, through the reply) what it shows where."""

    def __init__(self, surface: Surface, reply: Reply) -> None:
        self.surface = surface
        self.reply = reply
        self.limits = surface.limits
        self.pacer = surface.pacer
        self.handles: list[Any] = []
        self.texts: list[str] = []
        self.draft_text = ""

    @property
    def text(self) -> str:
        """What the chat shows of the reply now (a draft counts: it is sent as a message when cut)."""
        return "\n".join(self.texts) or self.draft_text

    async def send(self, text: str, buttons: Buttons = ()) -> Any:
        handle = await self.surface.send(text, buttons)
        self.handles.append(handle)
        self.texts.append(text)
        await self._remember()
        return handle

    async def edit(self, handle: Any, text: str, buttons: Buttons = ()) -> None:
        await self.surface.edit(handle, text, buttons)
        self.texts[self.handles.index(handle)] = text
        await self._remember()

    async def draft(self, text: str) -> None:
        draft = getattr(self.surface, "draft", None)
        if draft is None:
            raise DraftsUnavailable()
        await draft(text)
        self.draft_text = text
        if not self.texts:
            await self._remember()

    async def cut_off(self) -> None:
        """A stop cut the reply: its last message ends with the cut mark (a draft becomes a real message), and
        the store says so. Bounded: a platform that does not answer keeps the reply in progress, finished at the
        next start."""
        shown = self.text
        if not shown:
            await self.reply.finish("", Status.CUT)
            return
        marked = (self.texts[-1] if self.texts else self.draft_text) + CUT_MARK
        try:
            async with asyncio.timeout(CUT_WITHIN):
                if self.pacer is not None:
                    await self.pacer.acquire(urgent=True)
                if self.handles:
                    await self.surface.edit(self.handles[-1], marked)
                else:
                    await self.surface.send(marked)
        except Exception as error:
            log.warning("could not mark a cut reply", extra={"error": type(error).__name__})
            return
        await self.reply.finish(shown + CUT_MARK, Status.CUT)

    async def _remember(self) -> None:
        addresses = tuple(self.surface.address(handle) for handle in self.handles)
        await self.reply.show(Shown(addresses, tuple(self.texts), self.draft_text))


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
        await quietly(surface.typing())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_text.wait(), every)
        waited += every
        position = reply.position or 0
        if not told and waited >= notice_after and position > 0:
            told = True
            await quietly(surface.note(Note(say(queue_notice(position)))))


def queue_notice(ahead: int) -> Msg:
    """What a learner waiting in line is told once."""
    return _n(
        "⏳ The tutor is busy: {n} person is ahead of you. Your answer is coming.",
        "⏳ The tutor is busy: {n} people are ahead of you. Your answer is coming.",
        ahead,
    )


async def quietly(call: Awaitable[object]) -> None:
    """A typing indicator or notice that fails must not take down what it accompanies (a reply, a recovery)."""
    try:
        await call
    except Exception as error:
        log.warning("chat side-call failed", extra={"error": type(error).__name__})
