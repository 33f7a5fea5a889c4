"""The world the bot lives in, faked on loopback: Ollama, Telegram and Discord in this process, the bot in
another (bench/botproc.py), exactly as `polyglott run` talks to the real services.

Every question carries a tag (`Q17`) that the fake model puts at the start of its answer, so each text the
platforms receive (draft, message or edit) can be traced back to the question and to the model's stream.

When one reply answers several students of a group, the model's prompt ends in a run of their messages (user
turns); the fake answers each of them in order, each part starting with its tag, separated by a blank line, and
the benchmark reads each student's part out of the stream and out of the chat messages (`parts`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.languages import find_language
from core.lesson import Lesson, Level
from core.store import Store
from tests.fake_discord import BOT_TOKEN, GUILD_ID, FakeDiscord
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.fake_telegram import FakeTelegram

Kind = Literal["telegram-dm", "telegram-group", "discord-dm", "discord-channel"]
KINDS: tuple[Kind, ...] = ("telegram-dm", "telegram-group", "discord-dm", "discord-channel")
MODEL = "qwen2.5:7b"
ROOT = Path(__file__).resolve().parents[1]
TAG = re.compile(r"\bQ(\d+)\b")
# A student's part of a reply to several (core.prompts.together: "one or two sentences ... then that student's own
# correction lines"): two of SENTENCES, or one and a correction line, about 40 tokens.
TOGETHER_CHARS = 160
PART = re.compile(r"(?<!\S)Q(\d+):")  # where an answer starts: its tag and a colon, first or after a space or line

SENTENCES = (
    "¡Muy bien! Tu frase está casi perfecta.",
    "Una pequeña corrección: se dice «fui al mercado», no «fuí al mercado».",
    "El pretérito de ir no lleva tilde en ninguna persona.",
    "¿Qué compraste allí, fruta o verdura?",
    "Yo también voy los sábados, porque hay pan caliente y queso fresco.",
    "Para practicar, cuéntame qué vas a cocinar esta noche.",
    "Si quieres, podemos repasar los verbos irregulares mañana.",
    "Recuerda que «comprar» es regular: compré, compraste, compró.",
)


def answer_text(tag: int, chars: int) -> str:
    """A tutor's answer of about `chars` characters that starts with its question's tag."""
    text = f"Q{tag}:"
    for sentence in itertools.cycle(SENTENCES):
        if len(text) >= chars:
            return text
        text += " " + sentence
    raise AssertionError("unreachable")


def tokens_of(text: str) -> list[str]:
    """Model tokens of about four characters, as a BPE tokenizer cuts Spanish; the tag comes whole."""
    head = text.split(" ", 1)[0]
    rest = text[len(head) :]
    return [head, *(rest[i : i + 4] for i in range(0, len(rest), 4))]


@dataclass
class Question:
    """One learner's message and the answer the fake model will write to it."""

    tag: int
    kind: Kind
    chat: int  # the Telegram chat id, or the Discord channel id
    user: int
    answer: str
    asked_at: float = 0.0

    @property
    def platform(self) -> str:
        return self.kind.split("-")[0]


@dataclass
class Plan:
    """The chats a scenario needs, made before the bot starts (Discord's channels and members ride on its
    first GUILD_CREATE; every chat gets a Spanish lesson in the database)."""

    telegram_dms: list[int] = field(default_factory=list)
    telegram_groups: list[int] = field(default_factory=list)
    discord_dms: list[int] = field(default_factory=list)  # channel ids
    discord_channels: list[int] = field(default_factory=list)
    discord_students: list[int] = field(default_factory=list)  # guild members who write in the channels


class World:
    """Fakes of Ollama, Telegram and Discord here, the bot in a child process, and the questions asked."""

    def __init__(
        self,
        *,
        scale: float,
        tokens_per_second: float,
        max_parallel: int,
        num_predict: int = 1024,
    ) -> None:
        self.scale = scale
        self.ollama = FakeOllama(models=(MODEL,), tokens_per_second=tokens_per_second, responder=self._respond)
        self.telegram = FakeTelegram(time_scale=scale)
        self.discord = FakeDiscord(time_scale=scale)
        self.max_parallel = max_parallel
        self.num_predict = num_predict
        self.questions: dict[int, Question] = {}
        self.plan = Plan()
        self._tags = itertools.count(1)
        self._ids = itertools.count(1)
        self._folder = tempfile.TemporaryDirectory(prefix="polyglott-bench-")
        self.log = Path(self._folder.name) / "bot.log"
        self._bot: asyncio.subprocess.Process | None = None
        self._taught: set[str] = set()
        self._waiting: dict[int, tuple[Question, asyncio.Future[float]]] = {}
        self._poller: asyncio.Task[None] | None = None

    # Setup

    async def __aenter__(self) -> World:
        await self.ollama.start()
        await self.telegram.start()
        await self.discord.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.stop_bot(kill=True)
        finally:
            await self.discord.stop()
            await self.telegram.stop()
            await self.ollama.stop()
            self._folder.cleanup()

    def add_chats(self, kind: Kind, count: int) -> list[int]:
        """`count` new chats of a kind, each with its own learner (a group gets its students when asked)."""
        made = []
        for _ in range(count):
            n = next(self._ids)
            if kind == "telegram-dm":
                chat = 10_000_000 + n
                self.plan.telegram_dms.append(chat)
            elif kind == "telegram-group":
                chat = -1_001_000_000_000 - n
                self.plan.telegram_groups.append(chat)
            elif kind == "discord-dm":
                chat = self.discord.dm_channel(self.discord.add_user(f"learner{n}", global_name=f"Learner {n}"))
                self.plan.discord_dms.append(chat)
            else:
                chat = self.discord.add_channel(GUILD_ID, f"class-{n}")
                self.plan.discord_channels.append(chat)
            made.append(chat)
        return made

    def add_discord_students(self, count: int) -> list[int]:
        for n in range(count):
            user = self.discord.add_user(f"student{n}", global_name=f"Student {n}")
            self.discord.add_member(GUILD_ID, user)
            self.plan.discord_students.append(user)
        return self.plan.discord_students

    async def _lessons(self, db: Path) -> None:
        """A Spanish lesson in every planned chat that has none yet."""
        spanish, english = find_language("spanish").language, find_language("english").language
        chats = [
            *((f"telegram:{c}", False) for c in self.plan.telegram_dms),
            *((f"discord:{c}", False) for c in self.plan.discord_dms),
            *((f"telegram:{c}", True) for c in self.plan.telegram_groups),
            *((f"discord:{c}", True) for c in self.plan.discord_channels),
        ]
        store = await Store.open(db)
        try:
            for channel, group in chats:
                if channel not in self._taught:
                    await store.save_lesson(Lesson(channel, spanish, Level.A2, english, group=group))
                    self._taught.add(channel)
        finally:
            await store.close()

    async def start_bot(self, relay: str = "ours") -> None:
        """Start a bot process showing answers with `relay`, once every chat it will serve is planned;
        return when both adapters are connected."""
        db = Path(self._folder.name) / "bench.db"
        await self._lessons(db)
        polls = len(self.telegram.calls_to("getUpdates"))
        self._log_file = self.log.open("a")
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLYGLOTT_")}
        env |= {
            "POLYGLOTT_OLLAMA_HOST": self.ollama.url,
            "POLYGLOTT_MODEL": MODEL,
            "POLYGLOTT_DB_PATH": str(db),
            "POLYGLOTT_MAX_PARALLEL": str(self.max_parallel),
            "POLYGLOTT_NUM_PREDICT": str(self.num_predict),
            "POLYGLOTT_REQUEST_TIMEOUT": "600",
            "POLYGLOTT_TELEGRAM_TOKEN": self.telegram.token,
            "POLYGLOTT_TELEGRAM_API_URL": self.telegram.url,
            "POLYGLOTT_DISCORD_TOKEN": BOT_TOKEN,
        }
        self._bot = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.botproc",
            f"--scale={self.scale}",
            f"--relay={relay}",
            f"--discord-api={self.discord.api_url}",
            f"--discord-gateway={self.discord.gateway_url}",
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log_file,
            limit=1 << 24,
        )
        try:
            async with asyncio.timeout(60):
                ready = await self._read()
                assert ready.get("ready"), ready
                await self.telegram.wait_for(lambda: len(self.telegram.calls_to("getUpdates")) > polls, within=30)
        except Exception:
            raise RuntimeError(f"the bot did not start; its log:\n{self.log.read_text()[-3000:]}") from None

    async def stop_bot(self, *, kill: bool = False) -> dict[str, Any]:
        """Stop the bot like SIGTERM does, or at once with `kill` (answers still being shown are cut off);
        its CPU seconds and peak RSS at the end."""
        bot, self._bot = self._bot, None
        if bot is None or bot.returncode is not None:
            return {}
        try:
            return await self._stop(bot, kill)
        finally:
            self._log_file.close()

    async def _stop(self, bot: asyncio.subprocess.Process, kill: bool) -> dict[str, Any]:
        if kill:
            try:
                async with asyncio.timeout(5):
                    final = await self.tell({"cmd": "usage"}, bot)
            finally:
                bot.kill()
                await bot.wait()
            return final
        await self.tell({"cmd": "stop"}, bot)
        final = {}
        async with asyncio.timeout(30):
            while line := await bot.stdout.readline():  # type: ignore[union-attr]
                final = json.loads(line)
            await bot.wait()
        return final

    async def tell(self, command: dict[str, Any], bot: asyncio.subprocess.Process | None = None) -> dict[str, Any]:
        """Send the bot process a command (see bench/botproc.py) and return its answer."""
        bot = bot or self._bot
        assert bot is not None and bot.stdin is not None
        bot.stdin.write(json.dumps(command).encode() + b"\n")
        await bot.stdin.drain()
        return await self._read(bot)

    async def _read(self, bot: asyncio.subprocess.Process | None = None) -> dict[str, Any]:
        bot = bot or self._bot
        assert bot is not None and bot.stdout is not None
        line = await bot.stdout.readline()
        if not line:
            raise RuntimeError(f"the bot process ended; its log:\n{self.log.read_text()[-3000:]}")
        return dict(json.loads(line))

    # Questions and answers

    def _respond(self, messages: list[dict[str, Any]]) -> Script:
        """The fake model's answer: the planned answer to each tagged question waiting in the prompt (its trailing
        run of user turns), in their order, a blank line between two; cut into tokens."""
        asked = [self.questions[tag] for tag in waiting(messages) if tag in self.questions]
        if len(asked) > 1:  # told to give each student one or two sentences and their corrections
            for question in asked:
                question.answer = answer_text(question.tag, min(TOGETHER_CHARS, len(question.answer)))
        planned = [question.answer for question in asked]
        tokens = tokens_of(planned[0] if planned else "Q0: ¡Hola!")
        for answer in planned[1:]:
            tokens += ["\n\n", *tokens_of(answer)]
        return Script(tokens=tokens)

    def question(self, kind: Kind, chat: int, user: int, chars: int) -> Question:
        tag = next(self._tags)
        question = Question(tag, kind, chat, user, answer_text(tag, chars))
        self.questions[tag] = question
        return question

    async def ask(self, question: Question) -> None:
        """The learner writes; `asked_at` is when the platform has the message."""
        question.asked_at = asyncio.get_running_loop().time()
        text = f"Q{question.tag} ayer fui al mercado y compré manzanas"
        match question.kind:
            case "telegram-dm":
                self.telegram.add_private_message(question.chat, text, first_name=f"Ana{question.tag}")
            case "telegram-group":
                self.telegram.add_mention(question.chat, question.user, text, first_name=f"Student{question.user}")
            case "discord-dm":
                user = int(self.discord.channels[question.chat]["_recipient"])
                await self.discord.send_dm(user, text)
            case "discord-channel":
                await self.discord.send_message(question.chat, question.user, text, mentions_bot=True)

    def shown(self, questions: list[Question]) -> dict[int, str]:
        """The text each question's answer shows now: its part of the message that holds it (the whole message,
        when a message answers one question); complete, if any message shows it complete."""
        planned = {q.tag: q.answer for q in questions}
        found: dict[int, str] = {}
        texts: list[str] = []
        for chat in {q.chat for q in questions if q.platform == "telegram"}:
            texts += (message.plain for message in self.telegram.messages.get(chat, {}).values())
        if any(q.platform == "discord" for q in questions):
            texts += (message.get("content") or "" for message in self.discord.messages.values())
        for text in texts:  # the latest message that holds an answer, unless an earlier one holds it complete
            for tag, part in parts(text):
                if tag in planned and found.get(tag) != planned[tag]:
                    found[tag] = part
        return found

    async def wait_answered(self, questions: list[Question], within: float) -> float:
        """Wait until every answer shows its complete text; the seconds that took, from the first question."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            shown = self.shown(questions)
            if all(shown.get(q.tag) == q.answer for q in questions):
                return loop.time() - min(q.asked_at for q in questions)
            if loop.time() > deadline:
                done = sum(shown.get(q.tag) == q.answer for q in questions)
                raise TimeoutError(f"{done}/{len(questions)} answers complete after {within} s; log: {self.log}")
            await asyncio.sleep(0.05)

    async def answered(self, question: Question) -> float:
        """Wait until this answer shows its complete text; when it did (one poller serves every waiter)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[question.tag] = (question, future)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            return await future
        finally:
            self._waiting.pop(question.tag, None)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            await asyncio.sleep(0.05)
            shown = self.shown([q for q, _ in self._waiting.values()])
            for tag, (question, future) in list(self._waiting.items()):
                if shown.get(tag) == question.answer:
                    del self._waiting[tag]
                    if not future.done():
                        future.set_result(loop.time())

    async def wait_first_shown(self, questions: list[Question], within: float) -> None:
        """Wait until every answer shows at least its first words."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.shown(questions)) < len(questions):
            if loop.time() > deadline:
                raise TimeoutError(f"answers not started after {within} s; log: {self.log}")
            await asyncio.sleep(0.05)

    async def settle(self) -> None:
        """Let every request in flight finish and the platforms' windows empty before the next run."""
        await self.ollama.wait_for(lambda f: f.active == 0, timeout=60)
        await asyncio.sleep(max(0.2, 2.0 * self.scale))


def waiting(messages: list[dict[str, Any]]) -> list[int]:
    """The tags of the questions a prompt leaves waiting for the model, in order: those in its trailing run of
    user turns (every user turn after the last other one)."""
    run: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "user":
            break
        run.insert(0, str(message.get("content", "")))
    tags: list[int] = []
    for tag in (int(found) for content in run for found in TAG.findall(content)):
        if tag not in tags:
            tags.append(tag)
    return tags


def spans(text: str) -> list[tuple[int, int, int]]:
    """(tag, start, end) of each answer in a text, in order: a part starts at its tag (`Q17:`, first or after
    whitespace) and ends where the next one starts, without the whitespace between, or at the end of the text.
    Text before the first part (a notice; the end of a part a split carried over) belongs to none."""
    starts = [(int(found[1]), found.start()) for found in PART.finditer(text)]
    found = []
    for i, (tag, start) in enumerate(starts):
        end = len(text[: starts[i + 1][1]].rstrip()) if i + 1 < len(starts) else len(text)
        found.append((tag, start, end))
    return found


def parts(text: str) -> list[tuple[int, str]]:
    """(tag, text) of each answer in a chat message's text (see `spans`)."""
    return [(tag, text[start:end]) for tag, start, end in spans(text)]
