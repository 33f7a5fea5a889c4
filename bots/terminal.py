"""The tutor in a terminal: the same core and commands, tokens printed as they stream."""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TextIO

from core.commands import HELP, describe, learn_arguments, parse_command
from core.errors import TutorError
from core.tutor import Channel, Learner, Reply, Tutor

QUIT = {"quit", "exit", "q"}


class Terminal:
    """One learner at a keyboard; the lesson and its history live in the database like any chat's."""

    def __init__(self, tutor: Tutor, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
        self.tutor = tutor
        self.stdin = stdin
        self.stdout = stdout
        user = getpass.getuser()
        self.channel = Channel(f"terminal:{user}")
        self.learner = Learner(f"terminal:{user}", user)

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    async def read(self) -> str | None:
        self.stdout.write("you> ")
        self.stdout.flush()
        line = await asyncio.to_thread(self.stdin.readline)  # keeps the loop free while waiting for a key
        return None if line == "" else line.rstrip("\n")

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
        try:
            if language or level or native:
                wanted = language or (lesson.language.name if lesson else None)
                await self.stream(await self.tutor.start(self.channel, wanted or "", level, native))
            elif lesson is not None:
                self.say(describe(lesson.language.name, lesson.level, lesson.native.name, lesson.active))
                self.say("Type /help for commands, /quit to leave.")
        except TutorError as error:
            self.say(f"⚠ {error}")
        while (line := await self.read()) is not None:
            if not await self.handle(line):
                break
        self.say("¡Hasta luego! Your conversation is saved.")

    async def read_answer(self, question: str) -> str | None:
        self.stdout.write(question)
        self.stdout.flush()
        line = await asyncio.to_thread(self.stdin.readline)
        return None if line == "" else line.strip()

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


async def chat(tutor: Tutor, language: str | None, level: str | None, native: str | None) -> None:
    await Terminal(tutor).run(language, level, native)
