"""Who talks to the model next: one reply at a time per channel, round robin across channels."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass(eq=False)
class Ticket:
    """A place in line. `async with ticket:` waits for the turn and gives it back on leaving."""

    channel: str
    queue: FairQueue
    granted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def position(self) -> int:
        """0 once running; otherwise how many requests start first."""
        return self.queue.position(self)

    async def __aenter__(self) -> Ticket:
        try:
            await self.granted
        except BaseException:
            self.queue._leave(self)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.queue._leave(self)


class FairQueue:
    """At most `parallel` requests reach the model; the rest wait, each channel taking its turn.

    Only the oldest waiting request of each channel stands in the shared line. When a channel's request
    finishes, its next one joins the back of that line, so a class sending fifty messages cannot starve
    a learner in a DM; and a channel's replies never overlap, so its history never interleaves.
    """

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self._running = 0
        self._line: deque[Ticket] = deque()  # heads of their channels, waiting for a model slot
        self._channels: dict[str, deque[Ticket]] = {}  # per channel: the active ticket, then its backlog

    def join(self, channel: str) -> Ticket:
        """Stand in line now, so the position is known before the turn comes."""
        ticket = Ticket(channel, self)
        backlog = self._channels.setdefault(channel, deque())
        backlog.append(ticket)
        if len(backlog) == 1:
            self._line.append(ticket)
            self._dispatch()
        return ticket

    def position(self, ticket: Ticket) -> int:
        """How many requests start before this one (0 when it is running): a lower bound, for a status line."""
        if ticket.granted.done():
            return 0
        if ticket in self._line:
            return self._line.index(ticket) + 1
        backlog = self._channels.get(ticket.channel, deque())
        ahead = backlog.index(ticket) if ticket in backlog else 0
        return len(self._line) + ahead

    @property
    def waiting(self) -> int:
        return sum(len(backlog) for backlog in self._channels.values()) - self._running

    def _leave(self, ticket: Ticket) -> None:
        backlog = self._channels[ticket.channel]
        was_head = backlog[0] is ticket
        backlog.remove(ticket)
        if ticket in self._line:
            self._line.remove(ticket)
        elif ticket.granted.done() and not ticket.granted.cancelled():
            self._running -= 1
        if was_head and backlog:
            self._line.append(backlog[0])
        if not backlog:
            del self._channels[ticket.channel]
        self._dispatch()

    def _dispatch(self) -> None:
        while self._running < self.parallel and self._line:
            ticket = self._line.popleft()
            self._running += 1
            ticket.granted.set_result(None)
