"""The tutor in a terminal: typed lines become calls on the shared conversation, its outcomes are drawn here.

Everything the learner reads comes from `core.conversation`; this module only parses lines (a command, the
number of a choice just shown, or a message: a card's typed answer is one too) and renders Markdown, live
replies, tables, numbered choices and files (written to disk, their path printed: a chart too).
"""

from __future__ import annotations

import asyncio
import codecs
import getpass
import io
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from markdown_it import MarkdownIt
from rich import box
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from core.commands import parse_command
from core.conversation import Conversation, Notice, Origin
from core.outcome import Attachment, Buttons, Note
from core.pacing import ChatPacer
from core.relay import Limits
from core.tutor import Channel, Learner, Tutor

log = logging.getLogger(__name__)

QUIT = {"quit", "exit", "q"}
PROMPT = "❯ "  # no words: what the learner reads is core's, in their language
LIMITS = Limits(max_length=100_000, edit_interval=0.05)  # a terminal has no message size and no flood limit


class Lines:
    """Lines from stdin, read ahead by a daemon thread so the event loop stays free while nobody types.

    Not `asyncio.to_thread(stdin.readline)`: `asyncio.run` waits at exit for its pool's threads, so one
    blocked on a key press would keep a stopped chat alive until Enter. A daemon thread blocked in
    `os.read` holds no lock and does not delay exit.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._thread: threading.Thread | None = None

    async def next(self) -> str | None:
        """The next line without its line break; None at the end of input (and ever after)."""
        if self._thread is None:
            loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._read, args=(loop,), name="stdin", daemon=True)
            self._thread.start()
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)
        return line

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            for line in self._lines():
                loop.call_soon_threadsafe(self._queue.put_nowait, line)
            loop.call_soon_threadsafe(self._queue.put_nowait, None)
        except RuntimeError:  # the loop closed while we waited for input: nobody is listening any more
            pass

    def _lines(self) -> Iterator[str]:
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):  # an in-memory stream
            for line in iter(self.stream.readline, ""):
                yield line.rstrip("\r\n")
            return
        decoder = codecs.getincrementaldecoder(getattr(self.stream, "encoding", None) or "utf-8")("replace")
        pending = ""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal went away
                chunk = b""
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            yield from (line.rstrip("\r") for line in lines)
            if not chunk:
                break
        if pending:
            yield pending.rstrip("\r")


def terminal_locale(environ: Mapping[str, str] = os.environ) -> str | None:
    """The language the terminal is set to, as POSIX looks it up for messages: `de_DE.UTF-8` → `de_DE`.

    None for the C/POSIX locale, which names no language.
    """
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            tag = value.split(".")[0].split("@")[0]
            return None if tag in ("C", "POSIX") else tag
    return None


class ChatMarkdown(Markdown):
    """Markdown as the chat apps show it: every line break kept, and `<language>` is text, not HTML."""

    PARSER = MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table")

    def __init__(self, markup: str) -> None:
        super().__init__(markup)
        self.parsed = self.PARSER.parse(markup)
        for token in self.parsed:
            for child in token.children or ():
                if child.type == "softbreak":
                    child.type = "hardbreak"


class Screen:
    """The terminal as a `Surface`: replies appear as they are written, choices are numbered.

    On a real terminal a reply is live Markdown, redrawn with each update; anywhere else (a pipe, a file)
    the text is printed as it grows, plain, so that the first words show at once there too.
    """

    limits = LIMITS
    pacer: ChatPacer | None = None
    private_here = True  # one person at the keyboard

    def __init__(self, stdout: TextIO, directory: Path | None = None) -> None:
        self.stdout = stdout
        self.console = Console(file=stdout, highlight=False)
        self.directory = directory
        self.choices: dict[str, str] = {}  # the number typed → the action of the button shown with it
        self._live: Live | None = None
        self._printed = ""  # plain output: the text of the message being streamed, as printed so far
        self._open = False  # plain output: the cursor is at the end of streamed text, not on a new line
        self._sent = 0  # the handle of the last message sent: 1, 2, 3…
        self._drawing: int | None = None  # the message being drawn (live, or the open line), if any
        self._texts: dict[int, str] = {}  # what each message of this session shows

    # The relay's target

    async def send(self, text: str, buttons: Buttons = ()) -> int:
        self.close()
        self._sent += 1
        self._drawing = self._sent
        self._texts[self._sent] = text
        if self.console.is_terminal:
            self._live = Live(
                ChatMarkdown(text),
                console=self.console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start(refresh=True)
        else:
            self._write(text)
            self._printed, self._open = text, True
        self._offer(buttons)
        return self._sent

    async def edit(self, handle: int, text: str, buttons: Buttons = ()) -> None:
        before = self._texts.get(handle, "")
        self._texts[handle] = text
        if handle != self._drawing:  # drawn and left behind (a cut mark after the stop notice, say)
            self._after(before, text)
        elif self._live is not None:
            self._live.update(ChatMarkdown(text), refresh=True)
        elif text.startswith(self._printed) and self._open:
            self._write(text[len(self._printed) :])
            self._printed = text
        else:  # not an extension of what is on screen: show the whole text again
            self.close()
            self._drawing = handle
            self._write(text)
            self._printed, self._open = text, True
        self._offer(buttons)

    def address(self, handle: int) -> str:
        """A message's number in this session: the terminal keeps no history to edit after a restart."""
        return str(handle)

    def recall(self, address: str) -> int:
        return int(address)

    async def typing(self) -> None:
        """The first words show as soon as they exist; there is nothing to show before."""

    async def note(self, note: Note) -> None:
        """Private notes are just shown: whoever sits at this terminal is the one person they are for. A note
        with a table (the same figures as its text) is drawn as that table."""
        self.close()
        if note.table:
            self.console.print(figures_table(note.table), soft_wrap=not self.console.is_terminal)
        else:
            self._markdown(note.text)
        self._offer(note.buttons)

    async def attach(self, attachment: Attachment) -> None:
        """Write the file next to where the tutor was started (a CSV, a chart), never over an existing one, and
        print its caption and path."""
        self.close()
        path = _save(self.directory or Path.cwd(), attachment.name, attachment.data)
        self._markdown(attachment.caption)
        self.console.print(Text(str(path)), soft_wrap=True)

    # Drawing

    def close(self) -> None:
        """End what is being drawn (a live reply, a line of streamed text) before anything else is shown."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._open:
            self._write("\n")
            self._open = False
        self._printed = ""
        self._drawing = None

    def _after(self, before: str, text: str) -> None:
        """A message no longer being drawn changed: what was added shows on a line of its own (the cut mark,
        once), anything else as the whole new text."""
        self.close()
        added = text[len(before) :] if before and text.startswith(before) else text
        if added.strip():
            self._markdown(added.strip())

    def _offer(self, buttons: Buttons) -> None:
        """Show buttons as numbered choices, one row per line; typing a number presses that button."""
        if not buttons:
            return
        self.close()
        self.choices = {}
        for row in buttons:
            line = Text()
            for button in row:
                number = str(len(self.choices) + 1)
                self.choices[number] = button.action or button.opens
                if line:
                    line.append("  ")
                line.append(f"[{number}]", style="bold cyan")
                line.append(f" {button.label}")
            self.console.print(line, soft_wrap=True)

    def _markdown(self, text: str) -> None:
        # A real terminal wraps at its width; elsewhere lines are left whole for whatever reads them.
        self.console.print(ChatMarkdown(text), soft_wrap=not self.console.is_terminal)

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()


def figures_table(rows: tuple[tuple[str, ...], ...], title: str | None = None) -> Table:
    """Rows of figures as a table: the first row is the heading, the first column names each figure."""
    heading, *body = rows
    table = Table(*heading, title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in table.columns[1:]:
        column.justify = "right"
    for row in body:
        table.add_row(*row)
    return table


def _save(directory: Path, name: str, data: bytes) -> Path:
    """`name` in `directory`, or `stem-1.ext`, `stem-2.ext`… if taken; created exclusively, so never overwritten."""
    base = Path(name).name
    stem, suffix = Path(base).stem, Path(base).suffix
    for attempt in range(10_000):
        path = directory / (base if attempt == 0 else f"{stem}-{attempt}{suffix}")
        try:
            with path.open("xb") as file:
                file.write(data)
        except FileExistsError:
            continue
        return path.resolve()
    raise FileExistsError(directory / base)


class Terminal:
    """One learner at a keyboard; the lesson and its history live in the database like any chat's."""

    def __init__(
        self,
        tutor: Tutor,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        *,
        locale: str | None = None,
    ) -> None:
        self.tutor = tutor
        self.conversation = Conversation(tutor)
        self.lines = Lines(stdin)
        self.stdout = stdout
        self.screen = Screen(stdout)
        user = getpass.getuser()
        self.origin = Origin(
            Channel(f"terminal:{user}"),
            Learner(f"terminal:{user}", user),
            platform="terminal",
            locale=locale if locale is not None else terminal_locale(),
        )
        self._stopping = asyncio.Event()
        self._now = asyncio.Event()
        self._grace = float("inf")

    def stop(self, grace: float | None = None) -> None:
        """Stop reading input; a reply being written gets `grace` more seconds to finish (default: the
        `shutdown_grace` setting; 0: cut it off now). A reply cut off ends with the cut mark on screen and is
        stored as cut, with the text shown so far and the mark."""
        self._stopping.set()
        self._grace = min(self._grace, self.tutor.settings.shutdown_grace if grace is None else grace)
        if self._grace <= 0:
            self._now.set()

    async def run(self, language: str | None = None, level: str | None = None, native: str | None = None) -> None:
        """Open the lesson asked for on the command line (the same commands a learner could type), then chat."""
        opening: list[tuple[str, list[str]]] = []
        if native:
            opening.append(("native", native.split()))  # first, so that a new lesson's opener explains in it
        if language or level:
            opening.append(("learn", [*(language or "").split(), *([level] if level else [])]))
        else:
            opening.append(("start", []))
        going = True
        for name, args in opening:
            going = await self._turn(self.conversation.command(self.origin, name, args, self.screen))
            if not going:
                break
        while going and (line := await self._next_line()) is not None:
            going = await self._turn(self.handle(line))
        await self.conversation.finish(0)  # nothing is left running by now: this only closes the door
        await self._notice(Notice.GOODBYE)

    async def handle(self, line: str) -> bool:
        """Act on one line; False ends the session."""
        typed = line.strip()
        if not typed:  # Enter alone: just the prompt again
            return True
        choices, self.screen.choices = self.screen.choices, {}  # a number picks from what the last line showed
        command = parse_command(typed)
        if command is not None and command.name in QUIT:
            return False
        if command is not None:
            await self.conversation.command(self.origin, command.name, command.args, self.screen)
        elif typed in choices:
            await self.conversation.press(self.origin, choices[typed], self.screen)
        else:
            await self.conversation.message(self.origin, line, self.screen)
        return True

    async def _next_line(self) -> str | None:
        """The next line typed, or None at the end of input or once stopping."""
        if self._stopping.is_set():
            return None
        self.stdout.write(PROMPT)
        self.stdout.flush()
        reading = asyncio.ensure_future(self.lines.next())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not reading.done():
                reading.cancel()
        if self._stopping.is_set() or reading.result() is None:
            self.stdout.write("\n")
            return None
        return reading.result()

    async def _turn(self, work: Awaitable[object]) -> bool:
        """Run one event to its end; once stopping, the conversation finishes it within the grace period (at
        once for Ctrl-C). False if the session should end."""
        task = asyncio.ensure_future(work)
        try:
            await _first(task, self._stopping.wait())
            if not task.done():
                finishing = asyncio.ensure_future(self.conversation.finish(self._grace))
                if not self._now.is_set():  # Ctrl-C now cuts off at once what SIGTERM gave its grace
                    await _first(finishing, self._now.wait())
                    if not finishing.done():
                        task.cancel()
                # Cancelled once only (`finish` does it at once for Ctrl-C): a second cancel would end the event
                # before its reply has its cut mark, which would then be drawn after the stop notice.
                await finishing
        finally:
            if not task.done():
                task.cancel()
            await asyncio.wait({task})
            self.screen.close()
        if task.cancelled():
            await self._notice(Notice.STOPPED)
            return False
        if task.exception() is not None:
            log.error("terminal event failed", exc_info=task.exception())
            self.screen.console.print(Text(self.conversation.apology(self.origin.locale)))
            return not self._stopping.is_set()
        return task.result() is not False and not self._stopping.is_set()

    async def _notice(self, notice: Notice) -> None:
        await self.conversation.notice(self.origin, notice, self.screen)
        self.screen.close()


async def _first(task: asyncio.Future[Any], other: Awaitable[object]) -> None:
    """Wait until `task` is done or `other` is, whichever comes first."""
    waiter = asyncio.ensure_future(other)
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
