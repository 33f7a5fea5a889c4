"""Who talks to the model next, and on which server: round robin across channels, one reply at a time per channel
(a busy group's students answered together), each channel on the server that holds its prompt cache."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field


class Withdrawn(Exception):
    """A ticket taken out of line before its turn came: its request is answered along with another's."""


@dataclass(eq=False)
class Ticket:
    """A place in line. `async with ticket:` waits for the turn and gives it back on leaving."""

    channel: str
    queue: FairQueue
    granted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    server: int = 0  # which model server the turn is on, once granted
    together: int = 1  # how many waiting requests of its channel one turn answers (a busy group's students)
    joined: list[Ticket] = field(default_factory=list)  # the channel's waiting tickets this turn answers too
    holder: object = None  # whose request it is, for whoever takes over a joined ticket's request

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
    """At most `parallel` requests reach each of `servers` model servers; the rest wait, each channel taking its
    turn.

    Only the oldest waiting request of each channel stands in the shared line. When a channel's turn ends, its
    next request joins the back of that line, so a class sending fifty messages cannot starve a learner in a DM;
    and a channel's replies never overlap, so its history never interleaves. A group's turn answers up to
    `together` of its waiting students at once (they are `joined` to it when it starts), so it comes back
    sooner, after a `together`-th of the line: the line is fair to each person waiting, not to each channel.

    With several servers a channel goes back to the server it used last, whose prompt cache holds its
    conversation (re-reading a long history costs seconds on a GPU): a free slot goes to the first channel in
    line that used that server, or that has none of its own free. A channel moves only when its server is
    down, or busy while another has nothing to do; then it sticks to the new one.
    """

    def __init__(self, parallel: int, servers: int = 1) -> None:
        self.parallel = parallel
        self.servers = servers
        self._busy = [0] * servers  # turns running per server
        self._down_until = [0.0] * servers  # event-loop time a failed server is tried again
        self._home: dict[str, int] = {}  # per channel: the server it used last
        self._line: deque[Ticket] = deque()  # heads of their channels, waiting for a model slot
        self._channels: dict[str, deque[Ticket]] = {}  # per channel: the running ticket, then the waiting ones

    @property
    def _running(self) -> int:
        return sum(self._busy)

    def join(self, channel: str, together: int = 1) -> Ticket:
        """Stand in line now, so the position is known before the turn comes. `together`: how many of the
        channel's waiting requests one turn answers."""
        ticket = Ticket(channel, self, together=together)
        self._channels.setdefault(channel, deque()).append(ticket)
        self._refresh(channel)
        self._dispatch()
        return ticket

    def position(self, ticket: Ticket) -> int:
        """How many requests start before this one (0 when it is running): a lower bound, for a status line."""
        if ticket.granted.done():
            return 0
        if ticket in self._line:
            return self._line.index(ticket) + 1
        waiting = self._waiting(ticket.channel)
        ahead = waiting.index(ticket) if ticket in waiting else 0
        return len(self._line) + ahead

    @property
    def waiting(self) -> int:
        return sum(len(self._waiting(channel)) for channel in self._channels)

    def _waiting(self, channel: str) -> list[Ticket]:
        return [t for t in self._channels.get(channel, ()) if not t.granted.done()]

    def _leave(self, ticket: Ticket) -> None:
        backlog = self._channels.get(ticket.channel)
        if backlog is None or ticket not in backlog:
            return  # joined to another turn already
        backlog.remove(ticket)
        if ticket in self._line:
            self._line.remove(ticket)
        elif ticket.granted.done() and not ticket.granted.cancelled() and ticket.granted.exception() is None:
            self._busy[ticket.server] -= 1
        if not backlog:
            del self._channels[ticket.channel]
        else:
            self._refresh(ticket.channel)
        self._dispatch()

    def _refresh(self, channel: str) -> None:
        """Put the channel's oldest waiting ticket in line when the channel has nothing running or in line."""
        backlog = self._channels.get(channel, ())
        if not backlog or any(t in self._line or t.granted.done() for t in backlog):
            return
        k = max(1, min(len(backlog), backlog[0].together))
        self._line.insert(len(self._line) // k, backlog[0])

    def down(self, server: int, seconds: float) -> None:
        """`server` failed: no turn goes there for `seconds` while another is up."""
        loop = asyncio.get_running_loop()
        self._down_until[server] = loop.time() + seconds
        loop.call_later(seconds, self._dispatch)

    def up(self, server: int) -> bool:
        return self._down_until[server] <= asyncio.get_running_loop().time()

    async def move(self, ticket: Ticket) -> None:
        """A running turn whose server failed before it answered: wait for a slot on another server, first in
        line. Call `down` for the failed server before."""
        self._busy[ticket.server] -= 1
        ticket.granted = asyncio.get_running_loop().create_future()
        self._line.appendleft(ticket)
        self._dispatch()
        try:
            await ticket.granted
        except BaseException:
            if ticket in self._line:
                self._line.remove(ticket)
            raise

    def _dispatch(self) -> None:
        while self._line:
            chosen = self._next()
            if chosen is None:
                return
            ticket, server = chosen
            self._line.remove(ticket)
            self._busy[server] += 1
            ticket.server = self._home[ticket.channel] = server
            if not ticket.joined:  # not a moved turn: it has its students already
                ticket.joined = self._join_waiting(ticket)
            ticket.granted.set_result(None)

    def _join_waiting(self, ticket: Ticket) -> list[Ticket]:
        """The channel's next waiting tickets, to answer in this turn (`together` in all), out of line."""
        others = (t for t in self._waiting(ticket.channel) if t is not ticket)
        joinable = itertools.takewhile(lambda t: t.together > 1, others)
        joined = list(itertools.islice(joinable, ticket.together - 1)) if ticket.together > 1 else []
        for other in joined:
            other.granted.set_exception(Withdrawn())
            other.granted.exception()  # retrieved: a holder that never awaits it again is no error
            self._channels[ticket.channel].remove(other)
            if other in self._line:
                self._line.remove(other)
        return joined

    def _next(self) -> tuple[Ticket, int] | None:
        """The next turn to start and its server; None while every usable server is full."""
        alive = [s for s in range(self.servers) if self.up(s)] or list(range(self.servers))  # all down: try anyway
        free = [s for s in alive if self._busy[s] < self.parallel]
        if not free:
            return None
        idle = [s for s in free if self._busy[s] == 0]
        for ticket in self._line:
            home = self._home.get(ticket.channel)
            if home in free:
                return ticket, home
            if home is None or home not in alive or idle:
                return ticket, min(free, key=lambda s: self._busy[s])
        return None  # everyone waits for their own server
