"""The tutor in a terminal: the same core and commands, tokens printed as they stream."""

from __future__ import annotations

import asyncio
import codecs
import getpass
import io
import os
import sys
import threading
from collections.abc import Awaitable, Iterator
from typing import TextIO

from core.commands import HELP, describe, learn_arguments, parse_command
from core.errors import TutorError
from core.lesson import Lesson
from core.tutor import Channel, Learner, Reply, Tutor

QUIT = {"quit", "exit", "q"}


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


class Terminal:
    """One learner at a keyboard; the lesson and its history live in the database like any chat's."""

    def __init__(self, tutor: Tutor, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
        self.tutor = tutor
        self.lines = Lines(stdin)
        self.stdout = stdout
        user = getpass.getuser()
        self.channel = Channel(f"terminal:{user}")
        self.learner = Learner(f"terminal:{user}", user)
        self._stopping = asyncio.Event()
        self._now = asyncio.Event()
        self._grace = float("inf")

    def stop(self, grace: float) -> None:
        """Stop reading input; a reply being written gets `grace` more seconds to finish (0: cut it off now).

        A reply cut off is stored as interrupted, with the text shown so far.
        """
        self._stopping.set()
        self._grace = min(self._grace, grace)
        if self._grace <= 0:
            self._now.set()

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    async def read(self) -> str | None:
        self.stdout.write("you> ")
        self.stdout.flush()
        return await self._next_line()

    async def _next_line(self) -> str | None:
        """The next line typed, or None at the end of input or once stopping."""
        if self._stopping.is_set():
            return None
        reading = asyncio.ensure_future(self.lines.next())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not reading.done():
                reading.cancel()
        if self._stopping.is_set():
            self.say("")
            return None
        return reading.result()

    async def _turn(self, work: Awaitable[bool]) -> bool:
        """Run one turn to its end; once stopping, it has the grace period left, then it is cancelled."""
        task = asyncio.ensure_future(work)
        try:
            await _first(task, self._stopping.wait())
            if not task.done():
                await _first(task, self._now.wait(), seconds=self._grace)
        finally:
            if not task.done():
                task.cancel()
            await asyncio.wait({task})
        if task.cancelled():
            self.say("")
            self.say("⚠ Stopped in the middle of the reply; what was written is saved.")
            return False
        return task.result()

    async def stream(self, reply: Reply | None) -> None:
        if reply is None:
            return
        if reply.notice:
            self.say(reply.notice)
        self.stdout.write("tutor> ")
        try:
            async for chunk in reply:
                self.stdout.write(chunk)
                self.stdout.flush()
        except TutorError as error:
            self.say("")
            self.say(f"⚠ {error}")
            return
        self.say("")

    async def run(self, language: str | None, level: str | None, native: str | None) -> None:
        lesson = await self.tutor.lesson(self.channel)
        while language is None and lesson is None:
            answer = await self.read_answer("Which language would you like to learn? ")
            if answer is None:
                return
            language = answer or None
        if await self._turn(self.open(lesson, language, level, native)):
            while (line := await self.read()) is not None:
                if not await self._turn(self.handle(line)):
                    break
        self.say("¡Hasta luego! Your conversation is saved.")

    async def open(self, lesson: Lesson | None, language: str | None, level: str | None, native: str | None) -> bool:
        """Start the lesson asked for on the command line, or recall the one already going."""
        try:
            if language or level or native:
                wanted = language or (lesson.language.name if lesson else None)
                await self.stream(await self.tutor.start(self.channel, wanted or "", level, native))
            elif lesson is not None:
                self.say(describe(lesson.language.name, lesson.level, lesson.native.name, lesson.active))
                self.say("Type /help for commands, /quit to leave.")
        except TutorError as error:
            self.say(f"⚠ {error}")
        return True

    async def read_answer(self, question: str) -> str | None:
        self.stdout.write(question)
        self.stdout.flush()
        line = await self._next_line()
        return None if line is None else line.strip()

    async def handle(self, line: str) -> bool:
        """Act on one line; False ends the session."""
        command = parse_command(line.strip())
        try:
            if command is None:
                await self.stream(await self.tutor.reply(self.channel, self.learner, line))
            elif command.name in QUIT:
                return False
            elif command.name == "learn":
                language, level = learn_arguments(command.args)
                lesson = await self.tutor.lesson(self.channel)
                if language is None and lesson is None:
                    self.say("Which language? For example: /learn spanish A2")
                else:
                    await self.stream(
                        await self.tutor.start(self.channel, language or lesson.language, level)  # type: ignore[union-attr]
                    )
            elif command.name == "level" and command.args:
                lesson = await self.tutor.set_level(self.channel, command.args[0])
                self.say(f"Level set to {lesson.level}.")
            elif command.name == "native" and command.args:
                lesson = await self.tutor.set_native(self.channel, " ".join(command.args))
                self.say(f"Explanations will be in {lesson.native.name}.")
            elif command.name == "reset":
                await self.tutor.reset(self.channel)
                self.say("Conversation forgotten. Say something to start again.")
            elif command.name == "stop":
                await self.tutor.pause(self.channel)
                self.say("Lesson paused. /learn picks it up again.")
            elif command.name == "status":
                lesson = await self.tutor.lesson(self.channel)
                self.say(
                    describe(lesson.language.name, lesson.level, lesson.native.name, lesson.active)
                    if lesson
                    else "No lesson yet: /learn spanish"
                )
            else:
                self.say(HELP.replace("/stop", "/quit — Leave\n/stop"))
        except TutorError as error:
            self.say(f"⚠ {error}")
        return True


async def _first(task: asyncio.Future[bool], other: Awaitable[object], seconds: float | None = None) -> None:
    """Wait until `task` is done, `other` is, or `seconds` pass, whichever comes first."""
    waiter = asyncio.ensure_future(other)
    try:
        await asyncio.wait({task, waiter}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
