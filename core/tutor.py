"""The one API every adapter calls: lessons in, replies out as streams of text."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace

from .cleaning import clean
from .context import estimate_tokens, fit
from .corrections import checked_corrections
from .errors import LessonPaused, NoLesson, ReplyInterrupted
from .i18n import Msg, _
from .languages import Language, find_language
from .lesson import Lesson, Level
from .llm import Model
from .prompts import opening_request, reminder, system_prompt
from .queue import FairQueue, Ticket
from .settings import Settings
from .store import Message, Status, Store

log = logging.getLogger(__name__)

DEFAULT_LEVEL = Level.A2
LENGTH_MARK = " …"  # the model reached num_predict mid-thought
CUT_MARK = " … ✂️"  # the stream broke: what is shown is all there is
_PROMPT_MARGIN = 64


@dataclass(frozen=True)
class Channel:
    """Where a conversation happens: a DM, a group, a thread or forum topic, the terminal.

    `id` must be unique across platforms (`"telegram:-1001:7"`); `parent` is the channel a thread
    belongs to, whose lesson the thread starts from.
    """

    id: str
    group: bool = False
    parent: str | None = None


@dataclass(frozen=True)
class Learner:
    id: str
    name: str


class Reply:
    """A reply on its way: `async for chunk in reply` yields text as the model writes it.

    Iterating raises a `TutorError` when the model fails; a reply cut off midway first yields a
    visible mark, so whatever was shown ends marked.
    """

    def __init__(self, lesson: Lesson, notice: Msg | None = None) -> None:
        self.lesson = lesson
        self.notice = notice  # something the learner should know before the reply, e.g. a truncation
        self.text = ""
        self.status: Status | None = None
        self._ticket: Ticket | None = None
        self._chunks: AsyncGenerator[str, None] | None = None

    @property
    def position(self) -> int | None:
        """Place in the model's queue: None before iteration starts, 0 once the model is on it."""
        return self._ticket.position if self._ticket else None

    def __aiter__(self) -> AsyncGenerator[str, None]:
        assert self._chunks is not None
        return self._chunks


def _language(value: str | Language) -> Language:
    return value if isinstance(value, Language) else find_language(value).language


def _level(value: str | Level) -> Level:
    return value if isinstance(value, Level) else Level.parse(value)


class Tutor:
    """Lessons and conversations for every channel, whichever platform it is on."""

    def __init__(self, settings: Settings, store: Store, model: Model) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        self.queue = FairQueue(settings.max_parallel)
        self._in_progress = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._default_native = find_language(settings.default_native_language).language
        # A lesson change reads, modifies and writes: two commands at once in one channel must not lose one.
        self._changing: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @classmethod
    async def open(cls, settings: Settings) -> Tutor:
        return cls(settings, await Store.open(settings.db_path), Model(settings))

    @property
    def default_native(self) -> Language:
        return self._default_native

    @property
    def replies_in_progress(self) -> int:
        return self._in_progress

    async def drain(self, seconds: float) -> bool:
        """Wait up to `seconds` for replies being written to finish; False if some still run."""
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, grace: float | None = None) -> None:
        """Close the model client and the database, once interrupted replies have been saved as such."""
        await self.drain(self.settings.shutdown_grace if grace is None else grace)
        await self.model.close()
        await self.store.close()

    # Lessons

    async def lesson(self, channel: Channel) -> Lesson | None:
        """This channel's lesson; a thread without one starts from its parent's."""
        lesson = await self.store.lesson(channel.id)
        if lesson is None and channel.parent:
            parent = await self.store.lesson(channel.parent)
            if parent is not None:
                lesson = replace(parent, channel=channel.id, group=channel.group, active=True)
                await self.store.save_lesson(lesson)
        return lesson

    async def start(
        self,
        channel: Channel,
        language: str | Language,
        level: str | Level | None = None,
        native: str | Language | None = None,
    ) -> Reply:
        """Start, switch or resume a lesson; the reply is the tutor's opening message."""
        target = _language(language)
        async with self._changes(channel):
            current = await self.lesson(channel)
            explain = _language(native) if native else current.native if current else self._default_native
            chosen = _level(level) if level else await self.store.last_level(channel.id, target) or DEFAULT_LEVEL
            answer_all = current.answer_all if current else False  # a channel setting: a new language keeps it
            lesson = Lesson(channel.id, target, chosen, explain, group=channel.group, answer_all=answer_all)
            new_conversation = current is not None and current.language != target
            await self.store.save_lesson(lesson, new_conversation=new_conversation)
        log.info("lesson started", extra={"channel": channel.id, "language": target.code, "level": chosen.value})
        reply = Reply(lesson)
        reply._chunks = self._generate(channel, lesson, reply)
        return reply

    async def set_level(self, channel: Channel, level: str | Level) -> Lesson:
        chosen = _level(level)
        return await self._change(channel, lambda lesson: replace(lesson, level=chosen))

    async def set_native(self, channel: Channel, language: str | Language) -> Lesson:
        native = _language(language)
        return await self._change(channel, lambda lesson: replace(lesson, native=native))

    async def pause(self, channel: Channel) -> Lesson:
        return await self._change(channel, lambda lesson: replace(lesson, active=False))

    async def set_answer_all(self, channel: Channel, on: bool) -> Lesson:
        """In a group: answer every message (a classroom practising together), or only those addressed to the
        tutor. The adapter decides what "addressed" means and whether it can see the other messages at all."""
        return await self._change(channel, lambda lesson: replace(lesson, answer_all=on))

    async def reset(self, channel: Channel) -> int:
        """Forget this channel's conversation; the lesson settings stay. Returns the messages deleted."""
        deleted = await self.store.forget(channel.id)
        log.info("history reset", extra={"channel": channel.id, "deleted": deleted})
        return deleted

    async def _change(self, channel: Channel, change: Callable[[Lesson], Lesson]) -> Lesson:
        """Read, change and save a lesson under the channel's lock, so two changes at once both count."""
        async with self._changes(channel):
            lesson = await self.lesson(channel)
            if lesson is None:
                raise NoLesson()
            lesson = change(lesson)
            await self.store.save_lesson(lesson)
        return lesson

    def _changes(self, channel: Channel) -> asyncio.Lock:
        lock = self._changing.get(channel.id)
        if lock is None:
            lock = self._changing[channel.id] = asyncio.Lock()
        return lock

    # Conversation

    async def reply(self, channel: Channel, learner: Learner, text: str) -> Reply | None:
        """Store the learner's message, then return the tutor's answer to stream.

        `None` means there was nothing to answer (an empty message). Raises `NoLesson` or
        `LessonPaused` when the channel is not learning right now.
        """
        cleaned = clean(text, self.settings.max_input_chars)
        if cleaned is None:
            return None
        lesson = await self.lesson(channel)
        if lesson is None:
            raise NoLesson()
        if not lesson.active:
            raise LessonPaused()
        message_id = await self.store.add_message(
            channel.id, "user", cleaned.text, author_id=learner.id, author_name=learner.name
        )
        notice = (
            _(
                "(Your message was long, so I read only the first {limit} characters.)",
                limit=self.settings.max_input_chars,
            )
            if cleaned.truncated
            else None
        )
        reply = Reply(lesson, notice)
        reply._chunks = self._generate(channel, lesson, reply, message_id, learner, cleaned.text)
        return reply

    def prompt(self, lesson: Lesson, history: list[Message], learner: Learner | None) -> list[dict[str, str]]:
        """The messages for the model. Every part is derived from stored data in the same way each turn,
        so each turn's prompt begins with the previous one and Ollama re-reads only what is new."""
        system = system_prompt(lesson, None if lesson.group or learner is None else learner.name)
        suffix = f"\n\n({reminder(lesson)})"
        messages = [{"role": "system", "content": system}]
        for m in history:
            if m.role == "assistant":
                messages.append({"role": "assistant", "content": m.text})
            else:
                said = f"{m.author_name}: {m.text}" if lesson.group and m.author_name else m.text
                messages.append({"role": "user", "content": said + suffix})
        if learner is None:  # the lesson's opening
            messages.append({"role": "user", "content": opening_request(lesson)})
        return messages

    def budget(self, lesson: Lesson) -> int:
        """Tokens left for the history once the system prompt and the reply have their room."""
        fixed = estimate_tokens(system_prompt(lesson, "x" * 32)) + estimate_tokens(opening_request(lesson))
        per_turn = estimate_tokens(reminder(lesson))
        return self.settings.num_ctx - self.settings.num_predict - fixed - _PROMPT_MARGIN - per_turn * 8

    async def _history(self, channel: Channel, lesson: Lesson, up_to: int | None) -> list[Message]:
        fitted = fit(await self.store.history(channel.id, up_to=up_to), self.budget(lesson))
        if fitted.dropped_through is not None:
            await self.store.trim(channel.id, fitted.dropped_through)
            log.info("context trimmed", extra={"channel": channel.id, "through": fitted.dropped_through})
        return fitted.messages

    async def _generate(
        self,
        channel: Channel,
        lesson: Lesson,
        reply: Reply,
        up_to: int | None = None,
        learner: Learner | None = None,
        learner_text: str = "",
    ) -> AsyncGenerator[str, None]:
        self._in_progress += 1
        self._idle.clear()
        try:
            async with aclosing(self._generate_in_turn(channel, lesson, reply, up_to, learner, learner_text)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self._in_progress -= 1
            if not self._in_progress:
                self._idle.set()

    async def _generate_in_turn(
        self,
        channel: Channel,
        lesson: Lesson,
        reply: Reply,
        up_to: int | None,
        learner: Learner | None,
        learner_text: str,
    ) -> AsyncGenerator[str, None]:
        reply._ticket = self.queue.join(channel.id)
        async with reply._ticket:
            messages = self.prompt(lesson, await self._history(channel, lesson, up_to), learner)
            stream = self._model_text(messages)
            if learner is not None:
                stream = checked_corrections(stream, learner_text)
            status = Status.FAILED
            try:
                async with aclosing(stream):
                    async for chunk in stream:
                        reply.text += chunk
                        yield chunk
                status = Status.COMPLETE
            except ReplyInterrupted:
                status = Status.INTERRUPTED
                reply.text += CUT_MARK
                yield CUT_MARK
                raise
            except (asyncio.CancelledError, GeneratorExit):
                status = Status.INTERRUPTED if reply.text else Status.FAILED
                raise
            finally:
                reply.status = status
                await asyncio.shield(self._save(channel, reply.text, status, up_to))

    async def _model_text(self, messages: list[dict[str, str]]) -> AsyncGenerator[str, None]:
        async with aclosing(self.model.stream(messages)) as deltas:
            async for delta in deltas:
                if delta.text:
                    yield delta.text
                if delta.done_reason == "length":
                    yield LENGTH_MARK

    async def _save(self, channel: Channel, text: str, status: Status, reply_to: int | None) -> None:
        try:
            await self.store.add_message(channel.id, "assistant", text, status=status, reply_to=reply_to)
        except Exception:  # the store is closing: the learner's turn is kept, the reply is lost
            log.exception("could not store a reply", extra={"channel": channel.id})
