"""A chat's budget of sends and edits, shared by every reply streaming into it.

Platforms count updates per chat (Telegram: about 20 a minute in a group; Discord: about 5 edits in
5 s per channel). Each reply pacing itself is not enough when a class asks ten questions at once, so
all replies in a chat draw on one budget, and final texts go first: an answer that is complete but not
yet shown is worse than a preview that lags.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence


def scaled(windows: Sequence[tuple[int, float]], factor: float) -> list[tuple[int, float]]:
    """The same windows on a clock running `factor` times as slow (tests and benchmarks shrink it)."""
    return [(count, period * factor) for count, period in windows]


class ChatPacer:
    """Grants updates so that at most `count` fall in any `period` seconds, for each window given."""

    def __init__(self, windows: Sequence[tuple[int, float]]) -> None:
        self.windows = tuple(windows)
        self._log: deque[float] = deque()  # grant times, oldest first
        self._longest = max((period for _, period in self.windows), default=0.0)
        self._urgent: deque[object] = deque()
        self._normal: deque[object] = deque()
        self._paused_until = 0.0
        self._changed = asyncio.Condition()

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._normal)

    def idle(self, now: float) -> bool:
        """Nobody waiting, no pause and nothing granted within any window: forgetting it loses nothing."""
        recent = self._log and self._log[-1] > now - self._longest
        return not self.waiting and not recent and self._paused_until <= now

    def pause(self, seconds: float) -> None:
        """The platform said "retry after": nobody in this chat sends until then."""
        self._paused_until = max(self._paused_until, asyncio.get_running_loop().time() + seconds)

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a place in the budget; urgent requests (final texts) overtake the rest."""
        me = object()
        line = self._urgent if urgent else self._normal
        line.append(me)
        loop = asyncio.get_running_loop()
        try:
            async with self._changed:
                while True:
                    now = loop.time()
                    ready_at = self._ready_at(now) if self._head() is me else None
                    if ready_at is not None and ready_at <= now:
                        self._log.append(now)
                        return
                    timeout = None if ready_at is None else ready_at - now
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout)
        finally:
            line.remove(me)
            async with self._changed:
                self._changed.notify_all()

    def _head(self) -> object | None:
        return (self._urgent or self._normal or [None])[0]

    def _ready_at(self, now: float) -> float:
        while self._log and self._log[0] <= now - self._longest:
            self._log.popleft()
        ready = max(now, self._paused_until)
        for count, period in self.windows:
            recent = [t for t in self._log if t > now - period]
            if len(recent) >= count:
                ready = max(ready, recent[-count] + period)
        return ready


class Pacers:
    """One pacer per chat, made on first use with the platform's windows for that kind of chat."""

    def __init__(self, keep: int = 10_000) -> None:
        self._pacers: dict[str, ChatPacer] = {}
        self._keep = keep  # past this many chats, idle pacers are dropped so memory stays flat

    def get(self, chat: str, windows: Sequence[tuple[int, float]]) -> ChatPacer:
        if chat not in self._pacers:
            if len(self._pacers) >= self._keep:
                self._forget_idle()
            self._pacers[chat] = ChatPacer(windows)
        return self._pacers[chat]

    def __len__(self) -> int:
        return len(self._pacers)

    def _forget_idle(self) -> None:
        now = asyncio.get_running_loop().time()
        self._pacers = {chat: pacer for chat, pacer in self._pacers.items() if not pacer.idle(now)}
