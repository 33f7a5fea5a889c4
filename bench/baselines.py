"""The pacing rules well-known chat bots use, as drop-in relays, so ours is measured against them.

Each has the signature of `core.relay.relay` and is swapped in with `core.answer.using_relay`, inside the
same adapters on the same fakes. They ignore our pacer and edit cadence, as their rules do, but still split
at the platform's maximum length and always deliver the final text.

A reply the tutor withdraws (`ReplyDiscarded`: in a busy group its student is answered in another student's
reply) shows what it wrote, if anything, as ours does: no placeholder.

On a 429 every baseline waits the `retry_after` it was given, as python-telegram-bot's AIORateLimiter and
discord.py do: an interim update is then dropped (newer text follows), a final one is sent again until it
lands. On Discord, discord.py itself sleeps through 429s and retries, so the relay never sees one there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

from core.answer import RelayStrategy
from core.errors import ReplyDiscarded
from core.pacing import ChatPacer
from core.relay import Delivery, Limits, RetryAfter, Shown, Target, relay
from core.splitting import split_message

log = logging.getLogger(__name__)

EVERY_CHARS = 100  # "edit every 100 new characters"
TICK = 1.0  # "one edit a second, one timer for the whole bot"


class _Screen:
    """What one reply shows: its messages, cut at the platform's maximum length, sent or edited in order."""

    def __init__(self, target: Target, limits: Limits) -> None:
        self.target = target
        self.limits = limits
        self.delivery = Delivery()
        self.loop = asyncio.get_running_loop()

    async def show(self, text: str, *, final: bool, placeholder: bool = True) -> None:
        parts = [p.strip() for p in split_message(text, self.limits.max_length)]
        if final and placeholder and not any(parts) and not self.delivery.messages:
            parts = ["…"]
        for index, part in enumerate(parts):
            if part:
                await self._put(index, part, final=final or index < len(parts) - 1)

    async def _put(self, index: int, text: str, *, final: bool) -> None:
        messages = self.delivery.messages
        if index < len(messages) and messages[index].text == text:
            return
        while True:
            try:
                if index < len(messages):
                    await self.target.edit(messages[index].handle, text)
                    messages[index].text, messages[index].at = text, self.loop.time()
                else:
                    messages.append(Shown(await self.target.send(text), text, self.loop.time()))
                self.delivery.updates += 1
                return
            except RetryAfter as error:
                await asyncio.sleep(error.seconds)
                if not final:
                    return


async def every_chunk(
    chunks: AsyncIterator[str], target: Target, limits: Limits, pacer: ChatPacer | None = None
) -> Delivery:
    """Edit on every chunk the model streams (the simplest streaming bot)."""
    return await _on_growth(chunks, target, limits, 1)


async def every_100_chars(
    chunks: AsyncIterator[str], target: Target, limits: Limits, pacer: ChatPacer | None = None
) -> Delivery:
    """Edit whenever 100 new characters have arrived, with no other pacing."""
    return await _on_growth(chunks, target, limits, EVERY_CHARS)


async def _on_growth(chunks: AsyncIterator[str], target: Target, limits: Limits, step: int) -> Delivery:
    """Show the text each time it has grown by `step` characters; reading waits while a call is on its way."""
    screen = _Screen(target, limits)
    text, shown_at = "", 0
    try:
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                text += chunk
                if len(text) - shown_at >= step:
                    await screen.show(text, final=False)
                    shown_at = len(text)
    except Exception as error:
        # a broken stream still ends with what was written
        await screen.show(text, final=True, placeholder=not isinstance(error, ReplyDiscarded))
        raise
    await screen.show(text, final=True)
    return screen.delivery


class _Open:
    """A reply the global timer is showing: its newest text and whether a flush is on its way."""

    def __init__(self, screen: _Screen) -> None:
        self.screen = screen
        self.text = ""
        self.flushed = ""
        self.idle = asyncio.Event()
        self.idle.set()

    async def flush(self) -> None:
        text = self.text
        try:
            await self.screen.show(text, final=False)
            self.flushed = text
        except Exception as error:  # a tick's update that failed is simply not shown; the final one will be
            log.warning("tick update failed", extra={"error": type(error).__name__})
        finally:
            self.idle.set()


class GlobalTimer:
    """One timer for the whole bot: every `interval` seconds it shows the newest text of every open reply.

    The ticks keep their phase from the first reply on, so a reply's first words wait for the next tick;
    the final text goes out as soon as the reply ends.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.open: set[_Open] = set()
        self._task: asyncio.Task[None] | None = None

    async def relay(
        self, chunks: AsyncIterator[str], target: Target, limits: Limits, pacer: ChatPacer | None = None
    ) -> Delivery:
        reply = _Open(_Screen(target, limits))
        self.open.add(reply)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._tick())
        try:
            async with aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    reply.text += chunk
        except Exception as error:
            await self._close(reply, placeholder=not isinstance(error, ReplyDiscarded))
            raise
        await self._close(reply)
        return reply.screen.delivery

    async def _close(self, reply: _Open, *, placeholder: bool = True) -> None:
        """The reply ended: no more ticks for it; its final text goes out once a flush on its way is done."""
        self.open.discard(reply)
        await reply.idle.wait()
        await reply.screen.show(reply.text, final=True, placeholder=placeholder)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        beat = 0
        while True:
            beat += 1
            await asyncio.sleep(max(0.0, start + beat * self.interval - loop.time()))
            for reply in list(self.open):
                if reply.idle.is_set() and reply.text != reply.flushed:
                    reply.idle.clear()
                    asyncio.create_task(reply.flush())  # noqa: RUF006 - `idle` tracks it


def strategies(scale: float = 1.0) -> dict[str, RelayStrategy]:
    """Ours and the three baselines, on a platform clock shrunk by `scale` (the timer ticks `scale` s)."""
    return {
        "ours": relay,
        "fixed-1s-global": GlobalTimer(TICK * scale).relay,
        "every-100-chars": every_100_chars,
        "every-chunk": every_chunk,
    }


STRATEGIES: tuple[str, ...] = ("ours", "fixed-1s-global", "every-100-chars", "every-chunk")
