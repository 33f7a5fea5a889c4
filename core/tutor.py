"""The one API every adapter calls: lessons in, replies out as streams of text."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from . import chart, identify
from .cleaning import clean, flatten_name
from .context import estimate_tokens, fit
from .corrections import Findings, Said, checked, correction_line, parse_word
from .deck import Card, Kind
from .engine import open_models
from .errors import (
    AnsweredTogether,
    DailyCapReached,
    LessonPaused,
    MessageWithheld,
    ModelFailed,
    ModelMissing,
    NoLesson,
    OllamaUnavailable,
    ReplyDiscarded,
    ReplyInterrupted,
)
from .i18n import Msg, Voice, _
from .identify import written_in
from .languages import Language, find_language
from .lesson import Lesson, Level
from .llm import Model
from .markers import Marks, taken, without_lines
from .moderation import Moderator, screened
from .placement import Ladder, proposal
from .prompts import (
    CORRECTION_MARK,
    WORD_MARK,
    gloss_request,
    opening_request,
    placement_judge,
    placement_prompt,
    placement_task,
    reminder,
    scene_closer,
    scene_opening,
    scene_prompt,
    scene_reminder,
    self_correction,
    system_prompt,
    together,
)
from .queue import FairQueue, Ticket, Withdrawn
from .scenes import Scene
from .scenes import load as load_scenes
from .settings import Settings
from .store import Message, Question, Shown, Stage, Status, Store

log = logging.getLogger(__name__)

DEFAULT_LEVEL = Level.A2
LENGTH_MARK = " …"  # the model reached num_predict mid-thought
CUT_MARK = " … ✂️"  # the stream broke: what is shown is all there is
_PROMPT_MARGIN = 64
# The same category of error this often within this many seconds: the tutor asks the learner to correct
# themselves first (prompts that get learners to self-correct beat recasts: Lyster & Saito 2010).
RECURRING_TIMES = 3
RECURRING_WITHIN = 7 * 86_400.0
# Turn-taking in a busy group: students waiting for the tutor are answered together, as many in one reply as fit
# Telegram's 4,096 characters (about 350 each: a sentence or two and their correction lines), and the reply gets
# this many more tokens per extra student. Telegram lets a group have about 20 messages a minute: thirty mentions
# answered one by one left the last student waiting 161 s in the benchmark's classroom burst; 10 a reply, 49-50 s
# (6 a reply was slower than 10 in the same session's runs). A second reply written beside the first, for the next
# students, was slower still: two answers streaming at once share the group's messages a minute.
TOGETHER = 10
TOKENS_PER_STUDENT = 96
SERVER_RETRY_MAX = 60.0  # seconds a failed model server is left alone at most before it is tried again
TRANSCRIPT_CHARS = 6_000  # of a scene, for its closer: the end of a long scene is what the learner remembers
JUDGE_TOKENS = 12  # "[managed: yes]", with room for a model that says more


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
    """Someone who writes to the tutor. The name is flattened: it reaches prompts and chats."""

    id: str
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", flatten_name(self.name))


@dataclass(frozen=True)
class Asked:
    """A stored learner message a reply answers."""

    id: int
    learner: Learner
    text: str
    direct: bool = True  # said to the tutor (a private chat, a mention, a reply), not only heard in a classroom


@dataclass(frozen=True)
class Placed:
    """A placement's end: the level it proposes, and the tasks behind it."""

    level: Level
    managed: tuple[str, ...]
    missed: tuple[str, ...]


@dataclass
class Closing:
    """A scene's end: the closer to show, then what code adds (the goal's rating, the corrections that matter
    most, how many phrases became cards: known once the closer is written)."""

    reply: Reply
    scene: Scene
    reached: bool
    corrections: list[str]
    cards: int = 0


class Reply:
    """A reply on its way: `async for chunk in reply` yields text as the model writes it.

    Iterating raises a `TutorError` when the model fails; a reply cut off midway first yields a
    visible mark, so whatever was shown ends marked. Whoever shows the reply may take over recording its
    delivery (`deliver_later`): then it is complete only once `finish` says the platform has its final text.
    """

    def __init__(self, tutor: Tutor, lesson: Lesson, notice: Msg | None = None, *, author: str | None = None) -> None:
        self.lesson = lesson
        self.notice = notice  # something the learner should know before the reply, e.g. a truncation
        self.author = author  # the learner whose message it answers (None for an opener)
        self.text = ""
        self.status: Status | None = None  # how the model's part ended
        self.id: int | None = None  # the stored row, once the model is on it
        self.discarded = False
        self.delivered_by_caller = False
        self.asked: list[Asked] = []  # what it answers: one message, or in a busy group several students'
        self.facts: tuple[str, ...] = ()  # an opener's: what the learner shared before
        self.script: list[dict[str, str]] | None = None  # a turn with a prompt of its own (a scene's opener)
        self.hidden: tuple[str, ...] = ()  # the starts of lines such a turn must not show
        self.began: Callable[[int], Awaitable[None]] | None = None  # told the stored row of a scene's opener
        self.after: Callable[[], Awaitable[None]] | None = None  # once the model is done (a closer's cards)
        self.ending: str | None = None  # "goal" or "turns": this turn ends the channel's scene
        self.placed: Placed | None = None  # this turn ends a placement
        self._tutor = tutor
        self._interrupt: asyncio.Timeout | None = None
        self._ticket: Ticket | None = None
        self._chunks: AsyncGenerator[str, None] | None = None

    def deliver_later(self) -> None:
        """The caller records where the reply is shown and how its delivery ended (`show`, `finish`)."""
        self.delivered_by_caller = True

    def discard(self) -> None:
        """Stop this reply for good (its conversation was reset or switched): nothing more of it is shown and
        nothing of it is stored. The model stream is interrupted where it waits."""
        self.discarded = True
        if self._interrupt is not None and self._interrupt.expired() is False:
            self._interrupt.reschedule(asyncio.get_running_loop().time())

    async def show(self, shown: Shown) -> None:
        if self.id is not None and not self.discarded:
            await _stored(self._tutor.store.show(self.id, shown))

    async def finish(self, text: str, status: Status) -> None:
        """The delivery's end: what the chat shows now, and how the reply ended."""
        self.status = status
        if self.id is None:
            return
        # A discarded reply leaves nothing behind; a cut one that showed nothing leaves its question unanswered.
        if self.discarded or (status is Status.CUT and not text):
            await _stored(self._tutor.store.delete(self.id))
        else:
            await _stored(self._tutor.store.finish(self.id, text, status))

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

    def __init__(self, settings: Settings, store: Store, model: Model | Sequence[Model]) -> None:
        self.settings = settings
        self.store = store
        # One client per model server: each has MAX_PARALLEL slots, and a channel keeps to one (its prompt cache).
        self.models = [model] if isinstance(model, Model) else list(model)
        self.model = self.models[0]  # operations (doctor, pull) and the safety classifier use the first
        self._failures = [0] * len(self.models)
        self.queue = FairQueue(settings.max_parallel, servers=len(self.models))
        self._in_progress = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._default_native = find_language(settings.default_native_language).language
        # A lesson change reads, modifies and writes: two commands at once in one channel must not lose one.
        self._changing: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._streaming: dict[str, set[Reply]] = {}  # per channel: replies being generated or waiting to be
        # The safety classifier, when one is set: it screens every learner message and every reply.
        self.moderator = Moderator(settings.moderation_model, self.model, store) if settings.moderation_model else None
        self.scenes = load_scenes(settings.scenes_dir)

    @classmethod
    async def open(cls, settings: Settings) -> Tutor:
        # Loaded once per process, before the first learner waits for them: the language identifier's model
        # (~0.7 s) and matplotlib with a first chart (~0.6 s), for /progress.
        await asyncio.gather(asyncio.to_thread(identify.warm), asyncio.to_thread(chart.warm))
        _freeze_start_up()
        return cls(settings, await Store.open(settings), open_models(settings))

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
        """Close the model client and the database, once replies cut off have been stored so."""
        await self.drain(self.settings.shutdown_grace if grace is None else grace)
        for model in self.models:
            await model.close()
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
        facts: Sequence[str] = (),
    ) -> Reply:
        """Start, switch or resume a lesson; the reply is the tutor's opening message (`facts`: what the learner
        shared before, for a private chat's opener)."""
        target = _language(language)
        async with self._changes(channel):
            current = await self.lesson(channel)
            explain = _language(native) if native else current.native if current else self._default_native
            chosen = _level(level) if level else await self.store.last_level(channel.id, target) or DEFAULT_LEVEL
            answer_all = current.answer_all if current else False  # a channel setting: a new language keeps it
            cap = current.daily_cap if current else None  # so is a teacher's daily cap
            lesson = Lesson(
                channel.id, target, chosen, explain, group=channel.group, answer_all=answer_all, daily_cap=cap
            )
            new_conversation = current is not None and current.language != target
            self.discard(channel.id)  # a reply of the lesson being replaced must not land after the new opener
            await self.store.save_lesson(lesson, new_conversation=new_conversation)
        log.info("lesson started", extra={"channel": channel.id, "language": target.code, "level": chosen.value})
        await self.store.end_stage(channel.id)  # a scene or placement of the lesson before ends with it
        reply = Reply(self, lesson)
        reply.facts = tuple(facts)
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

    async def set_daily_cap(self, channel: Channel, cap: int | None) -> Lesson:
        """In a group: each student's messages a day here (None: POLYGLOTT_DAILY_MESSAGES applies)."""
        return await self._change(channel, lambda lesson: replace(lesson, daily_cap=cap))

    async def set_answer_all(self, channel: Channel, on: bool) -> Lesson:
        """In a group: answer every message (a classroom practising together), or only those addressed to the
        tutor. The adapter decides what "addressed" means and whether it can see the other messages at all."""
        return await self._change(channel, lambda lesson: replace(lesson, answer_all=on))

    async def reset(self, channel: Channel) -> int:
        """Forget this channel's conversation; the lesson settings stay. Returns the messages deleted.

        A reply being written here is discarded first: nothing of it is shown or stored afterwards."""
        self.discard(channel.id)
        await self.store.end_stage(channel.id)  # a scene's or placement's history is gone with it
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

    async def forget_learner(self, learner: str, private: Sequence[str] = ()) -> int:
        """Delete everything about a learner (`private`: a private chat of theirs the caller knows of); replies
        to them alone, and any in their private chats, still being written are discarded first."""
        chats = {*await self.store.private_channels(learner), *private}
        for channel, replies in self._streaming.items():
            for reply in list(replies):
                if channel in chats or (reply.author == learner and all(a.learner.id == learner for a in reply.asked)):
                    reply.discard()
        deleted = await self.store.forget_learner(learner, private)
        log.info("learner forgotten", extra={"deleted": deleted})
        return deleted

    def discard(self, channel: str) -> None:
        """Discard every reply being generated or waiting in `channel`."""
        for reply in list(self._streaming.get(channel, ())):
            reply.discard()

    def _changes(self, channel: Channel) -> asyncio.Lock:
        lock = self._changing.get(channel.id)
        if lock is None:
            lock = self._changing[channel.id] = asyncio.Lock()
        return lock

    # Conversation

    async def reply(
        self, channel: Channel, learner: Learner, text: str, *, source: str | None = None, direct: bool = True
    ) -> Reply | None:
        """Store the learner's message, then return the tutor's answer to stream.

        `None` means there was nothing to answer (an empty message). Raises `NoLesson` or
        `LessonPaused` when the channel is not learning right now, and `store.Duplicate` when the message with
        this platform `source` id was stored before (the platform delivered it twice). `direct`: said to the
        tutor, not only heard in a classroom that answers every message (only then is a fact remembered).
        """
        cleaned = clean(text, self.settings.max_input_chars)
        if cleaned is None:
            return None
        lesson = await self.lesson(channel)
        if lesson is None:
            raise NoLesson()
        if not lesson.active:
            raise LessonPaused()
        await self._within_cap(channel, learner, lesson)
        if self.moderator is not None and not await self.moderator.allows(channel.id, learner.id, cleaned.text):
            # Counted for the cap (one practice row a message), its text kept nowhere, the model never sees it.
            await self.store.practised(learner.id, lesson.language.code, channel.id, time.time(), None)
            raise MessageWithheld()
        message_id = await self.store.add_message(
            channel.id, "user", cleaned.text, author_id=learner.id, author_name=learner.name, source=source
        )
        # In line, not in a thread (~0.1 ms once warm, see core.identify): a thread could let a later message of
        # the group overtake this one on its way into the model's queue.
        language = lesson.language.code
        in_target = written_in(cleaned.text, language, (lesson.native.code, "en"))
        await self.store.practised(learner.id, language, channel.id, time.time(), in_target)
        notice = (
            _(
                "(Your message was long, so I read only the first {limit} characters.)",
                limit=self.settings.max_input_chars,
            )
            if cleaned.truncated
            else None
        )
        reply = Reply(self, lesson, notice, author=learner.id)
        reply.asked = [Asked(message_id, learner, cleaned.text, direct)]
        reply._chunks = self._generate(channel, lesson, reply)
        return reply

    async def _within_cap(self, channel: Channel, learner: Learner, lesson: Lesson) -> None:
        """`DailyCapReached` once the learner wrote today's messages: a group's own cap counts its messages,
        POLYGLOTT_DAILY_MESSAGES (everywhere else) all of theirs. The day is UTC's: no platform tells us a
        learner's time zone, and a day that starts at the same moment for everyone is one a note can name."""
        own = lesson.daily_cap if lesson.group else None
        cap = own or self.settings.daily_messages
        if cap is None:
            return
        now = time.time()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        written = await self.store.written_since(learner.id, now - now % 86_400, channel.id if own else None)
        if written >= cap:
            raise DailyCapReached(cap, told=not await self.store.tell_capped(learner.id, day))

    async def answer_again(self, channel: Channel, question: Question) -> Reply | None:
        """A reply to a stored learner message whose answer was cut off by a crash or a stop."""
        lesson = await self.lesson(channel)
        if lesson is None or not lesson.active:
            return None
        learner = Learner(question.author_id or "", question.author_name or "")
        reply = Reply(self, lesson, author=question.author_id)
        reply.asked = [Asked(question.id, learner, question.text)]
        reply._chunks = self._generate(channel, lesson, reply)
        return reply

    def prompt(
        self,
        lesson: Lesson,
        history: list[Message],
        learner: Learner | None,
        notes: Sequence[str] = (),
        *,
        scene: Scene | None = None,
        facts: Sequence[str] = (),
    ) -> list[dict[str, str]]:
        """The messages for the model. Every part is derived from stored data in the same way each turn,
        so each turn's prompt begins with the previous one and Ollama re-reads only what is new. `notes` (errors
        that keep coming back, several students waiting) are said in the latest turn only: the next turn
        re-reads that one message, not the whole prompt. In a `scene`, its own system prompt (and `history` is the
        scene's); `facts` go into an opener's turn."""
        minors = self.settings.minors
        name = None if lesson.group or learner is None else learner.name
        if scene is not None:
            system = scene_prompt(scene, lesson, name, minors=minors)
            suffix = f"\n\n({scene_reminder(lesson)})"
        else:
            system = system_prompt(lesson, name, minors=minors)
            suffix = f"\n\n({reminder(lesson)})"
        messages = [{"role": "system", "content": system}]
        for m in history:
            if m.role == "assistant":
                messages.append({"role": "assistant", "content": m.text})
            else:
                said = f"{m.author_name}: {m.text}" if lesson.group and m.author_name else m.text
                messages.append({"role": "user", "content": said + suffix})
        if learner is None:  # the lesson's opening
            messages.append({"role": "user", "content": opening_request(lesson, facts)})
        elif notes and messages[-1]["role"] == "user":
            messages[-1]["content"] = messages[-1]["content"][:-1] + "".join(f" {note}" for note in notes) + ")"
        return messages

    def budget(self, lesson: Lesson, scene: Scene | None = None, facts: Sequence[str] = ()) -> int:
        """Tokens left for the history once the system prompt (a scene's, in a scene), an opener's request (with
        the facts it carries) and the reply have their room."""
        name, minors = "x" * 32, self.settings.minors
        system = (
            scene_prompt(scene, lesson, name, minors=minors) if scene else system_prompt(lesson, name, minors=minors)
        )
        fixed = estimate_tokens(system) + estimate_tokens(opening_request(lesson, facts))
        per_turn = estimate_tokens(scene_reminder(lesson) if scene else reminder(lesson))
        reply = self._reply_tokens(TOGETHER if lesson.group else 1)
        return self.settings.num_ctx - reply - fixed - _PROMPT_MARGIN - per_turn * 8

    def _reply_tokens(self, students: int) -> int:
        return self.settings.num_predict + TOKENS_PER_STUDENT * (students - 1)

    async def _history(
        self,
        channel: Channel,
        lesson: Lesson,
        up_to: int | None,
        scene: Scene | None = None,
        facts: Sequence[str] = (),
    ) -> list[Message]:
        fitted = fit(await self.store.history(channel.id, up_to=up_to), self.budget(lesson, scene, facts))
        if fitted.dropped_through is not None:
            await self.store.trim(channel.id, fitted.dropped_through)
            log.info("context trimmed", extra={"channel": channel.id, "through": fitted.dropped_through})
        return fitted.messages

    async def _generate(self, channel: Channel, lesson: Lesson, reply: Reply) -> AsyncGenerator[str, None]:
        self._in_progress += 1
        self._idle.clear()
        streaming = self._streaming.setdefault(channel.id, set())
        streaming.add(reply)
        try:
            async with aclosing(self._generate_in_turn(channel, lesson, reply)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            streaming.discard(reply)
            if not streaming and self._streaming.get(channel.id) is streaming:
                del self._streaming[channel.id]
            self._in_progress -= 1
            if not self._in_progress:
                self._idle.set()

    async def _generate_in_turn(self, channel: Channel, lesson: Lesson, reply: Reply) -> AsyncGenerator[str, None]:
        together = lesson.group and bool(reply.asked)  # a group's students, not its opener
        reply._ticket = self.queue.join(channel.id, TOGETHER if together else 1)
        reply._ticket.holder = reply
        try:
            # The queue holds the channel's turn in this process; the store holds it across processes that
            # share a PostgreSQL database (an advisory lock), so that their replies never interleave either.
            async with reply._ticket, self.store.channel_turn(channel.id):
                if reply.discarded:
                    raise ReplyDiscarded()
                async with aclosing(self._answering(channel, lesson, reply)) as chunks:
                    async for chunk in chunks:
                        yield chunk
        except Withdrawn:
            raise AnsweredTogether() from None

    def _joined(self, channel: Channel, reply: Reply) -> list[Reply]:
        """In a busy group, the replies the queue joined to this one's turn (`FairQueue`, `TOGETHER` in all):
        their students are answered now, in this reply, instead of one message each later."""
        assert reply._ticket is not None
        joined = [ticket.holder for ticket in reply._ticket.joined]
        return [r for r in joined if isinstance(r, Reply) and r.asked and not r.discarded]

    async def _answering(self, channel: Channel, lesson: Lesson, reply: Reply) -> AsyncGenerator[str, None]:
        """The reply, once its turn has come, with the students joined to it: prompt, model, checks, and what it
        taught. A turn with a prompt of its own (an opener of a scene, a closer), a placement's and a scene's
        take their own way."""
        for other in self._joined(channel, reply):
            reply.asked += other.asked
        asked = reply.asked
        if reply.script is not None:
            stream = self._scripted(channel, lesson, reply, reply.script, reply.hidden)
            async with aclosing(self._streamed(channel, lesson, reply, stream, None)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        stage = await self.store.stage(channel.id) if asked else None
        if stage is not None and stage.kind == "placement":
            async with aclosing(self._placing(channel, lesson, reply, stage)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        scene = self.scenes.get(stage.scene) if stage is not None else None
        ended: list[str] = []
        up_to = max((a.id for a in asked), default=None)
        history = await self._history(channel, lesson, up_to, scene, reply.facts)
        if stage is not None and scene is not None:
            history = [m for m in history if m.position >= stage.since]
        notes: list[str] = []
        if len(asked) > 1:
            notes.append(together([a.learner.name for a in asked]))
        since = time.time() - RECURRING_WITHIN
        for a in asked:
            recurring = await self.store.recurring(a.learner.id, lesson.language.code, since, RECURRING_TIMES)
            if recurring:
                notes.append(self_correction(recurring, a.learner.name if len(asked) > 1 else None))
        # Every line the learner sees is checked, an opener's too (it quotes nobody: no correction survives).
        findings = Findings([], [])
        marks = Marks()
        said = [Said(a.learner.id, a.text, a.learner.name) for a in asked]
        before = next((m.text for m in reversed(history) if m.role == "assistant"), "")
        learner = asked[-1].learner if asked else None
        messages = self.prompt(lesson, history, learner, notes, scene=scene, facts=reply.facts)
        tokens = self._reply_tokens(len(asked)) if len(asked) > 1 else None
        stream = checked(
            taken(self._model_text(reply._ticket, messages, ended, tokens), marks),
            said,
            language=lesson.language.code,
            native=lesson.native.code,
            tutor_before=before,
            findings=findings,
        )
        if scene is not None:  # the scene's corrections are kept for its closer: in the scene, the character recasts
            stream = without_lines(stream, (CORRECTION_MARK, WORD_MARK))
        stream = _marking_length(stream, ended)
        stream = self._screened(channel, lesson, stream, said, findings)

        async def taught() -> None:
            await self._learn(channel, lesson, [a.learner for a in asked], findings)
            if reply.status is not Status.COMPLETE:
                return
            if stage is not None and scene is not None:
                await self._scene_turn(channel, stage, scene, reply, marks, findings)
            elif stage is None:
                await self._remember(lesson, asked, marks)

        async with aclosing(self._streamed(channel, lesson, reply, stream, up_to, taught if asked else None)) as out:
            async for chunk in out:
                yield chunk

    async def _streamed(
        self,
        channel: Channel,
        lesson: Lesson,
        reply: Reply,
        stream: AsyncGenerator[str, None],
        up_to: int | None,
        taught: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[str, None]:
        """A turn's text, stored as it goes: the row before the model is called, the end however it comes.
        `taught`, once the text is over (and the reply is not discarded): what the turn taught."""
        asked = reply.asked
        # Stored before the model is called, as in progress: a crash from here on is finished at the restart.
        reply.id = await self.store.add_message(channel.id, "assistant", "", status=Status.PENDING, reply_to=up_to)
        if len(asked) > 1:
            await self.store.answered_together([a.id for a in asked], reply.id)
        if reply.began is not None:
            await reply.began(reply.id)
        status = Status.FAILED
        try:
            async with asyncio.timeout(None) as reply._interrupt, aclosing(stream):
                async for chunk in stream:
                    reply.text += chunk
                    yield chunk
            status = Status.COMPLETE
        except ReplyInterrupted:
            status = Status.INTERRUPTED
            reply.text += CUT_MARK
            yield CUT_MARK
            raise
        except TimeoutError:
            if not reply.discarded:
                raise
            if reply.text:
                yield CUT_MARK  # what was shown ends marked, and nothing more comes
            raise ReplyDiscarded() from None
        except (asyncio.CancelledError, GeneratorExit):
            status = Status.CUT if reply.text else Status.FAILED
            raise
        finally:
            reply.status = status
            await asyncio.shield(self._save(reply))
            if not reply.discarded:
                for then in (taught, reply.after):
                    if then is not None:
                        await asyncio.shield(_logged(then()))

    def _scripted(
        self,
        channel: Channel,
        lesson: Lesson,
        reply: Reply,
        messages: list[dict[str, str]],
        hidden: tuple[str, ...] = (),
    ) -> AsyncGenerator[str, None]:
        """A turn with a prompt of its own (an opener, a closer, a placement task): no marker is meant there, nor
        the lines that start with `hidden` (a scene's opener: correction lines); screened like every reply."""
        ended: list[str] = []
        stream = taken(self._model_text(reply._ticket, messages, ended), Marks())
        if hidden:
            stream = without_lines(stream, hidden)
        return self._screened(channel, lesson, _marking_length(stream, ended))

    def _screened(
        self,
        channel: Channel,
        lesson: Lesson,
        stream: AsyncGenerator[str, None],
        said: Sequence[Said] = (),
        findings: Findings | None = None,
    ) -> AsyncGenerator[str, None]:
        """Every text the model writes for a chat goes past the safety classifier, when one is set: a turn's, an
        opener's, a closer's, a placement task's. Without one, chunks go out as the model writes them."""
        if self.moderator is None:
            return stream
        return screened(stream, self.moderator, channel.id, said, lesson.native.code, findings)

    async def _unless_shown(self, reply: Reply, channel: Channel) -> None:
        """An opener that showed nothing (the model failed) leaves no scene or placement half begun."""
        if reply.status is not Status.COMPLETE and not reply.text:
            await self.store.end_stage(channel.id)

    # Scenes

    async def begin_scene(
        self, channel: Channel, scene: Scene, learner: Learner | None = None, facts: Sequence[str] = ()
    ) -> Reply:
        """Start a role-play scene in this channel (one a teacher starts in a group, the class plays together);
        the reply is the tutor's opening line, in character. `learner`, `facts`: a private chat's learner."""
        lesson = await self._active(channel)
        await self.store.set_stage(Stage(channel.id, "scene", scene.id))
        name = None if lesson.group or learner is None else learner.name
        reply = Reply(self, lesson)
        opening = scene_opening(scene, lesson, () if lesson.group else facts)
        reply.script = [
            {"role": "system", "content": scene_prompt(scene, lesson, name, minors=self.settings.minors)},
            {"role": "user", "content": opening},
        ]
        reply.hidden = (CORRECTION_MARK, WORD_MARK)
        reply.began = lambda since: self.store.set_stage(Stage(channel.id, "scene", scene.id, since))
        reply.after = lambda: self._unless_shown(reply, channel)
        reply._chunks = self._generate(channel, lesson, reply)
        log.info("scene started", extra={"channel": channel.id, "scene": scene.id})
        return reply

    async def scene(self, channel: Channel) -> Scene | None:
        """The scene being played in this channel, if any."""
        stage = await self.store.stage(channel.id)
        return self.scenes.get(stage.scene) if stage is not None and stage.kind == "scene" else None

    async def _scene_turn(
        self, channel: Channel, stage: Stage, scene: Scene, reply: Reply, marks: Marks, findings: Findings
    ) -> None:
        """A scene's turn is over: count it, keep its corrections for the closer, and see whether the scene ends
        (the goal's marker, or its last turn)."""
        names = {a.learner.id: a.learner.name for a in reply.asked}
        async with self._changes(channel):
            current = await self.store.stage(channel.id)
            if current is None or current.kind != "scene" or current.since != stage.since:
                return  # ended meanwhile (/endscene), or another one began
            kept = list(current.state.get("corrections", []))  # type: ignore[call-overload]
            for c in findings.corrections:
                line = correction_line(c, reply.lesson.native.code)
                who = {"learner": c.author or "", "who": names.get(c.author or "", "")}
                kept.append({**who, "line": line, "category": c.category})
            turns = current.turns + 1
            await self.store.set_stage(replace(current, turns=turns, state={**current.state, "corrections": kept}))
        if marks.goal or turns >= scene.turns:
            reply.ending = "goal" if marks.goal else "turns"

    async def close_scene(self, channel: Channel, reached: bool) -> Closing | None:
        """End the channel's scene: the closer (what went well, the useful phrases, which become cards of every
        player), and the corrections that matter most. None if no scene is being played (it ended already)."""
        lesson = await self.lesson(channel)
        if lesson is None:
            raise NoLesson()
        async with self._changes(channel):
            stage = await self.store.stage(channel.id)
            if stage is None or stage.kind != "scene":
                return None
            await self.store.end_stage(channel.id)
        scene = self.scenes.get(stage.scene)
        if scene is None:  # its file was removed since: nothing to close with
            return None
        history = [m for m in await self.store.history(channel.id) if m.position >= stage.since]
        transcript = "\n".join(
            f"{'Tutor' if m.role == 'assistant' else m.author_name or 'Learner'}: {m.text}" for m in history
        )[-TRANSCRIPT_CHARS:]
        reply = Reply(self, lesson)
        reply.script = scene_closer(scene, lesson, transcript, reached)
        closing = Closing(reply, scene, reached, _most_telling(stage.state.get("corrections"), lesson.group))
        players = await self.store.players(channel.id, stage.since)

        async def cards() -> None:
            closing.cards = await self._phrase_cards(lesson, scene, reply.text, [p for p, _name in players])

        reply.after = cards
        reply._chunks = self._generate(channel, lesson, reply)
        log.info("scene closed", extra={"channel": channel.id, "scene": scene.id, "reached": reached})
        return closing

    async def _phrase_cards(self, lesson: Lesson, scene: Scene, text: str, players: Sequence[str]) -> int:
        """The closer's 📘 lines become cards of every player; how many phrases there were."""
        phrases = [found for line in text.splitlines() if (found := parse_word(line))]
        now = time.time()
        for learner in players:
            for word, meaning in phrases:
                card = Card(0, learner, lesson.language.code, Kind.WORD, word[:100], "", meaning[:200], scene.id)
                await self.store.add_card(card, now)
        return len(phrases)

    # Placement

    async def begin_placement(self, channel: Channel) -> Reply:
        """Start a placement in a private chat: tasks of rising level, one a turn; the reply gives the first."""
        lesson = await self._active(channel)
        ladder = Ladder()
        task = ladder.ask()
        await self.store.set_stage(Stage(channel.id, "placement", state=ladder.state()))
        reply = Reply(self, lesson)
        reply.script = [
            {"role": "system", "content": placement_prompt(lesson)},
            {"role": "user", "content": placement_task(task.ask, task.level.value, lesson, first=True)},
        ]
        state = ladder.state()
        reply.began = lambda since: self.store.set_stage(Stage(channel.id, "placement", since=since, state=state))
        reply.after = lambda: self._unless_shown(reply, channel)
        reply._chunks = self._generate(channel, lesson, reply)
        log.info("placement started", extra={"channel": channel.id})
        return reply

    async def end_placement(self, channel: Channel) -> bool:
        """Stop a placement under way; False if there was none."""
        async with self._changes(channel):
            stage = await self.store.stage(channel.id)
            if stage is None or stage.kind != "placement":
                return False
            await self.store.end_stage(channel.id)
        return True

    async def _placing(self, channel: Channel, lesson: Lesson, reply: Reply, stage: Stage) -> AsyncGenerator[str, None]:
        """A placement's turn: the model judges the answer to the last task (a prompt of its own), the ladder
        climbs or steps down, and the reply gives the next task, or the level the placement proposes."""
        ladder = Ladder.of(stage.state)
        answer = reply.asked[-1]
        task = ladder.task
        verdict = Marks()
        judging = self._model_text(
            reply._ticket, placement_judge(task.ask, task.level.value, answer.text, lesson), [], JUDGE_TOKENS
        )
        async with aclosing(taken(judging, verdict)) as text:
            async for _ignored in text:
                pass
        ladder.judged(verdict.managed is True)
        if ladder.done:
            await self.store.end_stage(channel.id)
            level = ladder.result()
            say = Voice(lesson.native.code)
            reply.placed = Placed(
                level, tuple(say(t.can) for t in ladder.managed()), tuple(say(t.can) for t in ladder.missed())
            )
            stream = _said(proposal(reply.placed.level, reply.placed.managed, reply.placed.missed, say))
        else:
            following = ladder.ask()
            await self.store.set_stage(replace(stage, turns=stage.turns + 1, state=ladder.state()))
            history = [m for m in await self._history(channel, lesson, answer.id) if m.position >= stage.since]
            messages = [{"role": "system", "content": placement_prompt(lesson)}]
            messages += [{"role": m.role, "content": m.text} for m in history]
            ask = placement_task(following.ask, following.level.value, lesson, first=False)
            if messages[-1]["role"] == "user":
                messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\n{ask}"}
            else:
                messages.append({"role": "user", "content": ask})
            stream = self._scripted(channel, lesson, reply, messages)
        async with aclosing(self._streamed(channel, lesson, reply, stream, answer.id)) as chunks:
            async for chunk in chunks:
                yield chunk

    # Memory

    async def _remember(self, lesson: Lesson, asked: list[Asked], marks: Marks) -> None:
        """Facts the model marked, for the learner who shared them: never in minors mode; in a group only what a
        student said to the tutor directly, named as theirs (or theirs alone, in a turn that answered one)."""
        if self.settings.minors or not marks.facts:
            return
        for fact in marks.facts:
            whose, _sep, rest = fact.partition(":")
            named = [a for a in asked if a.learner.name.casefold() == whose.strip().casefold()] if rest else []
            if named:
                fact = rest.strip()
            elif lesson.group and (rest or len(asked) > 1):  # another student's, or whose is unclear: nobody's
                continue
            for a in named[-1:] or asked[-1:]:
                if a.direct and fact:
                    await self.store.remember(a.learner.id, a.learner.name, fact)

    async def _active(self, channel: Channel) -> Lesson:
        lesson = await self.lesson(channel)
        if lesson is None:
            raise NoLesson()
        if not lesson.active:
            raise LessonPaused()
        return lesson

    async def _model_text(
        self, ticket: Ticket | None, messages: list[dict[str, str]], ended: list[str], num_predict: int | None = None
    ) -> AsyncGenerator[str, None]:
        """The model's text, from the server `ticket` is on; why it stopped goes into `ended`. A server that fails
        before any text is left alone for a while, and the turn moves to another one that is up."""
        while True:
            server = ticket.server if ticket is not None else 0
            try:
                async with aclosing(self.models[server].stream(messages, num_predict=num_predict)) as deltas:
                    async for delta in deltas:
                        if delta.text:
                            yield delta.text
                        if delta.done_reason:
                            ended.append(delta.done_reason)
                self._failures[server] = 0
                return
            except (OllamaUnavailable, ModelMissing, ModelFailed):  # raised before any text: after, it is cut
                if ticket is None or not self._failed(server):
                    raise
                log.warning("model server failed: moving the turn", extra={"server": server})
                await self.queue.move(ticket)

    def _failed(self, server: int) -> bool:
        """`server` failed: mark it down for a while (1 s, doubling to a minute); whether another is up."""
        self._failures[server] += 1
        if len(self.models) == 1:
            return False
        self.queue.down(server, min(SERVER_RETRY_MAX, 2.0 ** (self._failures[server] - 1)))
        return any(self.queue.up(s) for s in range(len(self.models)) if s != server)

    async def _learn(self, channel: Channel, lesson: Lesson, learners: list[Learner], findings: Findings) -> None:
        """What a reply taught, once shown: each correction is a mistake of the learner it quotes, and a card
        unless they have it already; each new word a card of each learner it answers."""
        now = time.time()
        language = lesson.language.code
        try:
            for c in findings.corrections:
                if c.author is None:
                    continue
                await self.store.mistake(c.author, language, c.category, channel.id, now)
                card = Card(
                    0, c.author, language, Kind.CORRECTION, c.fix, c.wrong, c.explanation, c.context, c.category
                )
                await self.store.add_card(card, now)
            for w in findings.words:
                for learner in {learner.id: learner for learner in learners}.values():
                    await self.store.add_card(
                        Card(0, learner.id, language, Kind.WORD, w.word, "", w.translation, w.example), now
                    )
        except Exception:
            log.exception("could not store what a reply taught")

    async def gloss(self, card: Card, lesson: Lesson) -> None:
        """A saved word's meaning and an example, asked of the model once, in line with the lessons."""
        if not card.id:
            return
        messages = gloss_request(card.right, lesson)
        async with self.queue.join(f"gloss:{card.learner}") as ticket:
            text = "".join([delta.text async for delta in self.models[ticket.server].stream(messages)])
        lines = [line.strip(" -*•\t") for line in text.splitlines() if line.strip(" -*•\t")]
        if lines:
            await self.store.set_meaning(card.id, lines[0][:200], lines[1][:300] if len(lines) > 1 else "")

    async def _save(self, reply: Reply) -> None:
        """The model's part is over. A discarded reply leaves nothing; one whose delivery the caller records is
        finished by it, and its text is the channel's history already: the next turn, which may start before the
        chat shows all of it, must know what was answered; any other is stored as the model ended it (a cut one
        without text: not at all)."""
        if reply.id is None:
            return
        if reply.discarded:
            await _stored(self.store.delete(reply.id))
        elif reply.delivered_by_caller:
            if reply.status is Status.COMPLETE:
                await _stored(self.store.written(reply.id, reply.text))
        else:
            assert reply.status is not None
            await reply.finish(reply.text + (CUT_MARK if reply.status is Status.CUT else ""), reply.status)


async def _marking_length(chunks: AsyncGenerator[str, None], ended: list[str]) -> AsyncGenerator[str, None]:
    """The length mark goes after the checked text: a line cut off by `num_predict` is held back and dropped,
    its mark must not go with it."""
    async with aclosing(chunks):
        async for chunk in chunks:
            yield chunk
    if "length" in ended:
        yield LENGTH_MARK


_frozen = False


def _freeze_start_up() -> None:
    """What start-up loaded stays for the process's life: out of the collector's sight, a full collection no
    longer walks matplotlib's and the identifier's objects in the middle of a learner's /progress (p99 of /progress
    in the benchmark, 10 learners with a year of history each: 238 ms without, 165-192 ms with). Once per process:
    a later freeze would also keep whatever garbage is around by then."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def _most_telling(kept: object, group: bool) -> list[str]:
    """A scene's corrections that matter most, at most three: those of the kinds of error made most often in it,
    the first of each kind (focused feedback on a few error types beats correcting everything: Deng et al. 2022)."""
    items = [k for k in kept if isinstance(k, dict)] if isinstance(kept, list) else []
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item.get("category"))] = counts.get(str(item.get("category")), 0) + 1
    chosen: list[dict[str, object]] = []
    for category in sorted(counts, key=lambda c: -counts[c]):
        chosen += [item for item in items if str(item.get("category")) == category][:1]
    lines = [f"{item['who']}: {item['line']}" if group and item.get("who") else str(item["line"]) for item in chosen]
    return lines[:3]


async def _said(text: str) -> AsyncGenerator[str, None]:
    """A turn whose words are code's (a placement's proposal), through the same storing as the model's."""
    yield text


async def _logged(call: Awaitable[None]) -> None:
    """What a turn taught, stored once it is shown: a failure there must not lose the reply."""
    try:
        await call
    except Exception:
        log.exception("could not store what a turn taught")


async def _stored(call: Awaitable[None]) -> None:
    """A reply's state written to the store; if the store is closing, the learner's turn is kept and only this
    update is lost."""
    try:
        await call
    except Exception:
        log.exception("could not store a reply")
