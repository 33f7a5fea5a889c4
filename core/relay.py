"""Showing a reply while it is written, at the pace a chat platform allows.

The relay reads chunks as fast as the model writes them and, separately, updates the chat as often as
the platform tolerates: the first words go out at once, later updates carry whatever text has piled up
since the last one, and the final text always lands, split into as many messages as it needs.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .links import visible_links
from .pacing import ChatPacer
from .splitting import split_message

if TYPE_CHECKING:
    from .outcome import Buttons


class RetryAfter(Exception):
    """Raised by a target when the platform says to slow down."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = seconds


class DraftsUnavailable(Exception):
    """Raised by a target's `draft` when the platform refuses previews here."""


class Target(Protocol):
    """Where a reply is shown. `send` returns a handle that `edit` takes back; `buttons` come with the final
    text of a reply's last message only."""

    async def send(self, text: str, buttons: Buttons = ()) -> Any: ...

    async def edit(self, message: Any, text: str, buttons: Buttons = ()) -> None: ...


class DraftTarget(Target, Protocol):
    """A target that can also show a live preview that is not a message (Telegram's drafts)."""

    async def draft(self, text: str) -> None: ...


@dataclass(frozen=True)
class Limits:
    max_length: int  # characters in one message
    edit_interval: float  # seconds between two updates of one message
    draft_interval: float = 0.25  # seconds between two preview updates
    use_drafts: bool = False  # preview with `draft`, then send the final text as messages


@dataclass
class Shown:
    handle: Any
    text: str
    at: float


@dataclass
class Delivery:
    """What the chat ended up showing."""

    messages: list[Shown] = field(default_factory=list)
    updates: int = 0
    drafts: int = 0

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


class _Buffer:
    def __init__(self) -> None:
        self.text = ""
        self.done = False
        self.error: BaseException | None = None
        self.changed = asyncio.Event()

    async def fill(self, chunks: AsyncIterator[str]) -> None:
        try:
            async with aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    self.text += chunk
                    self.changed.set()
        except Exception as error:  # handed to the relay, raised after the partial text is shown
            self.error = error
        finally:
            self.done = True
            self.changed.set()


async def relay(
    chunks: AsyncIterator[str],
    target: Target,
    limits: Limits,
    pacer: ChatPacer | None = None,
    buttons: Buttons = (),
) -> Delivery:
    """Show `chunks` on `target`, with `buttons` under the final text; return once the complete text is shown.

    If the stream fails, the text so far is finalized and the error is re-raised for the adapter to
    report; a chat never keeps a half-updated reply silently.
    """
    buffer = _Buffer()
    reader = asyncio.create_task(buffer.fill(chunks))
    shower = _Shower(buffer, target, limits, pacer, buttons)
    try:
        await shower.follow()
    finally:
        if not reader.done():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    if buffer.error is not None:
        raise buffer.error
    return shower.delivery


class _Shower:
    def __init__(
        self, buffer: _Buffer, target: Target, limits: Limits, pacer: ChatPacer | None, buttons: Buttons
    ) -> None:
        self.buffer = buffer
        self.buttons = buttons  # still to show, with the last message's final text
        self.target = target
        self.limits = limits
        self.pacer = pacer
        self.drafting = limits.use_drafts and hasattr(target, "draft")
        self.draft_text = ""
        self.draft_at = -math.inf
        self.delivery = Delivery()
        self.loop = asyncio.get_running_loop()

    async def follow(self) -> None:
        buffer = self.buffer
        while True:
            await buffer.changed.wait()
            buffer.changed.clear()
            done = buffer.done
            parts = self._parts()
            if done and not any(parts) and not self.delivery.messages and buffer.error is None:
                parts = ["…"]  # the model said nothing: still close the turn visibly
            # Every part but the last is finished and shown in full, in order.
            for index, part in enumerate(parts[:-1]):
                await self._show(index, part, final=True)
            last = len(parts) - 1
            if parts[last]:
                wait = self._wait_before(last)
                if wait > 0 and not done:
                    await _sleep_unless(buffer, wait)
                    buffer.changed.set()  # look again with whatever arrived meanwhile
                    continue
                shown = self.delivery.messages
                already = last < len(shown) and shown[last].text == parts[last] and not self._with_buttons(last, done)
                if wait > 0 and not already:  # a final text already on screen need not wait for its turn
                    await asyncio.sleep(wait)
                await self._show(last, parts[last], final=done)
            if done:
                return

    def _wait_before(self, index: int) -> float:
        """Seconds until part `index` may be updated again; a new message may go out at once."""
        now = self.loop.time()
        if self.drafting:
            return self.draft_at + self.limits.draft_interval - now
        if index < len(self.delivery.messages):
            return self.delivery.messages[index].at + self.limits.edit_interval - now
        return 0.0

    async def _show(self, index: int, text: str, *, final: bool) -> None:
        messages = self.delivery.messages
        if index < len(messages) and messages[index].text == text and not self._with_buttons(index, final):
            return
        if self.drafting and not final:
            if text != self.draft_text:
                await self._draft(text)
            return
        while True:
            if self.pacer is not None:
                await self.pacer.acquire(urgent=final)
                # In a busy chat the wait can be long: spend the update on the newest text, which may be final
                # by now, rather than on the snapshot taken before waiting.
                text, final = self._latest(index, text, final)
                if index < len(messages) and messages[index].text == text and not self._with_buttons(index, final):
                    return
            buttons = self.buttons if self._with_buttons(index, final) else ()
            try:
                if index < len(messages):
                    await self.target.edit(messages[index].handle, text, buttons)
                    messages[index].text, messages[index].at = text, self.loop.time()
                else:
                    handle = await self.target.send(text, buttons)
                    messages.append(Shown(handle, text, self.loop.time()))
                if buttons:
                    self.buttons = ()
                self.delivery.updates += 1
                return
            except RetryAfter as error:
                await self._back_off(error.seconds)
                if not final:
                    return  # a newer text will be shown on the next round anyway

    def _with_buttons(self, index: int, final: bool) -> bool:
        """Whether this update is the one that must carry the buttons: the last message's final text."""
        return bool(self.buttons) and final and self.buffer.done and index >= len(self._parts()) - 1

    def _parts(self) -> list[str]:
        """The text so far as the platform's messages: every part but the last is finished."""
        # What is shown hides no link's address (what is stored is the model's own text).
        return [p.strip() for p in split_message(visible_links(self.buffer.text), self.limits.max_length)]

    def _latest(self, index: int, text: str, final: bool) -> tuple[str, bool]:
        parts = self._parts()
        if index >= len(parts) or not parts[index]:
            return text, final
        return parts[index], final or self.buffer.done or index < len(parts) - 1

    async def _draft(self, text: str) -> None:
        try:
            await self.target.draft(text)  # type: ignore[attr-defined]
            self.delivery.drafts += 1
        except DraftsUnavailable:
            self.drafting = False  # fall back to send-then-edit for the rest of this reply
        except RetryAfter as error:
            await self._back_off(error.seconds)
        self.draft_text, self.draft_at = text, self.loop.time()

    async def _back_off(self, seconds: float) -> None:
        if self.pacer is not None:
            self.pacer.pause(seconds)
        await asyncio.sleep(seconds)


async def _sleep_unless(buffer: _Buffer, seconds: float) -> None:
    """Sleep, but wake early when the reply ends so the final text is not held back by an interim wait."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not buffer.done:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        buffer.changed.clear()
        try:
            await asyncio.wait_for(buffer.changed.wait(), remaining)
        except TimeoutError:
            return
