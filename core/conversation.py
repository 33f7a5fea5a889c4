"""What every command, button and message does and says, once for every platform.

Adapters parse an event into an `Origin` (who, where, in which language their app is) and call `message`,
`command` or `press` with a `Surface` that renders outcomes; they decide nothing about tutoring and write no
words of their own. Shared messages are in the channel's language (the lesson's explanation language); what
is meant for one person is in theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum

from . import report
from .answer import answer, quietly
from .chart import render_class_png_async, render_png_async
from .cleaning import clean
from .commands import BY_NAME, learn_arguments
from .deck import Card, Kind, Rating
from .errors import DailyCapReached, InvalidLevel, NoLesson, NotTeacher, TutorError, UnknownLanguage
from .i18n import UI_LANGUAGES, Msg, Voice, _, _n, render
from .languages import POPULAR, Language, by_code, find_language
from .lesson import Lesson, Level
from .links import visible_links
from .logs import content
from .outcome import Attachment, Blocked, Button, Buttons, Note, Outcome, Streamed, Surface, Then, Unreachable, rows
from .progress import WEEK, chart_data, chart_text, progress, table, table_heading
from .progress import describe as describe_progress
from .relay import RetryAfter
from .review import Place, Reviews
from .scenes import Scene, find, for_level, surprise
from .store import Duplicate, Question, Status, Unfinished
from .tutor import CUT_MARK, Channel, Closing, Learner, Reply, Tutor

log = logging.getLogger(__name__)


async def _yes() -> bool:
    return True


async def _not_there(channel: str) -> bool:
    return False


@dataclass(frozen=True)
class Origin:
    """Who caused an event, and where.

    `may_teach` is asked, fresh, each time the event would change a lesson (a cached admin status could be
    stale: a demoted teacher must not keep the keys). `locale` is the language the person's app is set to,
    if the platform says (`de`, `pt-BR`). `hears_all`: whether the bot can read every message in this group,
    which a classroom that answers everyone needs. `teaches(channel)` asks the platform, as freshly, whether
    the person is a teacher of another chat, a group named by its channel id: a link into the private chat
    that opens a group's report is checked there (no, where the platform cannot tell). `direct`: the message was
    said to the tutor (a private chat, a mention, a reply), not only heard in a classroom that answers all.
    """

    channel: Channel
    learner: Learner
    platform: str
    locale: str | None = None
    may_teach: Callable[[], Awaitable[bool]] = _yes
    hears_all: bool = False
    teaches: Callable[[str], Awaitable[bool]] = _not_there
    direct: bool = True


class Notice(Enum):
    """Things an adapter notices and core words."""

    NOT_TEXT = _("I can only read text for now: stickers, photos, voice messages and files are beyond me. Write to me!")
    UNREAD = _("I couldn't read that: Discord shows me only messages that mention me. Keep the @ on when you reply.")
    NOT_ALLOWED = _("Sorry, this tutor is private and not available here.")
    EXPIRED = _("This button has expired. Send /learn to start again.")
    SORRY = _("Sorry, something went wrong on my side. Please try again.")
    EMPTY = _("I didn't find anything to read there. Write me a message!")
    STOPPED = _("Stopped in the middle of the reply; what was written is saved.")  # the terminal, on a signal
    GOODBYE = _("Goodbye! Your conversation is saved.")  # the terminal, on leaving


WELCOME_PRIVATE = _(
    "👋 Hi! I'm Polyglott, a language tutor. Write to me in the language you're learning and I'll answer at "
    "your level and point out mistakes as we go."
)
WELCOME_GROUP = _(
    "👋 Hi! I'm Polyglott, this group's language tutor. Mention me or reply to my messages to practise; I "
    "answer at the class's level and point out mistakes. A teacher picks the lesson with /learn <language>."
)
PICK_LANGUAGE = _("Which language would you like to practise? Pick one, or send /learn <language> [level].")
NO_LESSON_GROUP = _("There is no lesson here yet. A teacher can start one with /learn <language>, e.g. /learn spanish.")
PRIVACY = _("Everything stays on this server: your messages go to a local model, not to a third party.")
HELP_INTRO = _(
    "I'm Polyglott, a language tutor. Chat with me in the language you're learning and I'll answer at your "
    "level and point out mistakes as we go."
)
HELP_GROUP = _("In a group, mention me or reply to my messages; teachers change the lesson.")
TEACHER_SEES = _(
    "Your teachers can see the class's progress (/report): for each student, messages, mistakes by kind and "
    "cards, never what you wrote. /progress shows you your own."
)
REPORT_WEEKS = report.REPORT_WEEKS  # /report: this week beside the week before
_REPORTED = re.compile(r"report:[a-z]+:-?[0-9]+(?::[0-9]+)?")  # a report's `again`: a platform's channel id
HELP_QUIT = _("Leave")
CSV_COLUMNS = ("channel", "time_utc", "role", "text")  # the columns of /mydata's export
CARD_COLUMNS = ("language", "kind", "wrong", "right", "meaning", "context", "category", "due_utc", "reviews")
REOPENABLE = frozenset({"mydata", "forget", "review", "progress", "memory"})  # `again` actions: they only show, or ask
REMIND_EVERY = 600.0  # seconds between looks for learners to remind: within the hour they usually practise
REMIND_QUIET = 20 * 3600.0  # at most one reminder a day, give or take the hour it is sent in
RESTARTED = _("I was restarted in the middle of this reply.")
RESTARTED_LATE = _(
    "Sorry, I was restarted and could not answer here in time. If a question of yours is still open, send it again."
)
PROGRESS_WEEKS = 8  # the chart's weeks of activity
SAVE_CHARS = 100  # a word or phrase to save, not a paragraph
CAP_USAGE = _("/classroom cap <n> limits each student to n messages a day here; /classroom cap off lifts it.")
MAX_DAILY_CAP = 10_000
SCENE_BUTTONS = 9  # a level's scenes offered as buttons: with the surprise, five rows of two (Discord's most rows)
LATE_NOTE_WITHIN = 86_400.0  # seconds: older unanswered messages (from before an upgrade, say) get no note at all

# For recovery: a surface on a stored channel, quoting a stored platform message id where it can.
Revive = Callable[[str, str | None], Awaitable[Surface | None]]
# For recovery, where several processes serve one platform (Discord's shards): whether this one serves a stored
# channel (its id, and whether it is a group's); another process finishes what it left there.
Owns = Callable[[str, bool], bool]


def _everything(channel: str, group: bool) -> bool:
    return True


class Conversation:
    """The one conversation every adapter renders. Entry points deliver on the surface and never raise for a
    learner's mistake or a model's failure; they are tracked so that a stop can let them finish."""

    def __init__(self, tutor: Tutor, clock: Callable[[], float] = time.time) -> None:
        self.tutor = tutor
        self.store = tutor.store
        self.clock = clock
        self.reviews = Reviews(tutor.store, tutor.settings, clock)
        self.closing = False
        self._busy: set[asyncio.Task[object]] = set()

    # Entry points

    async def message(self, origin: Origin, text: str, surface: Surface, *, source: str | None = None) -> None:
        """A learner wrote something to the tutor: store it, ask the model, show the reply as it is written.

        `source` is the message's id on its platform: a message delivered a second time (an update replayed
        after a crash) is not answered again; the restart answers it if it has no answer yet.
        """
        if self.closing:
            return
        log.info("message %s", content(text, self.tutor.settings.log_content), extra=_extra(origin))
        async with self._tracked():
            if await self._answered_card(origin, text, surface):
                return
            say = Voice(await self._shared_language(origin))
            try:
                reply = await self.tutor.reply(
                    origin.channel, origin.learner, text, source=source, direct=origin.direct
                )
            except Duplicate:
                log.info("message delivered twice: ignored", extra=_extra(origin))
                return
            except NoLesson:
                await self._deliver(origin, surface, say, [await self._no_lesson(origin, say)])
                return
            except DailyCapReached as capped:  # one note a day, theirs alone; after it, silence until tomorrow
                if not capped.told:
                    own = Voice(await self._own_language(origin))
                    await self._deliver(origin, surface, own, [Note(own(capped.message), private=origin.channel.group)])
                return
            except TutorError as error:
                await self._deliver(origin, surface, say, [Note(say(error.message))])
                return
            if reply is None:
                await self._deliver(origin, surface, say, [Note(say(Notice.EMPTY.value))])
                return
            await self._deliver(origin, surface, say, [Streamed(reply), Then(lambda: self._after(origin, reply, say))])

    async def command(self, origin: Origin, name: str, args: Iterable[str], surface: Surface) -> None:
        """A command, as `/name args` or a platform's slash command with options."""
        if self.closing:
            return
        log.info("command /%s", name, extra=_extra(origin))
        async with self._tracked():
            say = Voice(await self._shared_language(origin))
            try:
                outcomes = await self._command(origin, name, tuple(args), say)
            except TutorError as error:
                outcomes = [await self._refusal(origin, error, say)]
            await self._deliver(origin, surface, say, outcomes)

    async def press(self, origin: Origin, action: str, surface: Surface) -> None:
        """A button was pressed: `action` is what the button carried, however old the message."""
        if self.closing:
            return
        log.info("button %s", action.partition(":")[0], extra=_extra(origin))
        async with self._tracked():
            say = Voice(await self._shared_language(origin))
            try:
                outcomes = await self._press(origin, action, say)
            except TutorError as error:
                outcomes = [await self._refusal(origin, error, say)]
            await self._deliver(origin, surface, say, outcomes)

    async def follow(self, origin: Origin, action: str, surface: Surface) -> None:
        """A link into the private chat was followed (Telegram's `/start <payload>`). Anyone can craft such a
        link and send it to a learner, so only what core offers as a private note's `again` is honoured (never
        "yes, delete"); anything else is a plain start."""
        if _reopenable(action):
            await self.press(origin, action, surface)
        else:
            await self.command(origin, "start", (), surface)

    async def _answered_card(self, origin: Origin, text: str, surface: Surface) -> bool:
        """In a private chat that shows a card, the learner's message is their answer to it."""
        if origin.channel.group:
            return False
        awaited = await self.store.awaited(origin.channel.id)
        if awaited is None or awaited.learner != origin.learner.id:
            return False
        cleaned = clean(text, self.tutor.settings.max_input_chars)
        say = Voice(await self._own_language(origin))
        note = await self.reviews.typed(awaited, cleaned.text if cleaned else "", _place(origin), say)
        if note is None:
            return False
        await self._deliver(origin, surface, say, [note])
        return True

    async def notice(self, origin: Origin, notice: Notice, surface: Surface) -> None:
        """Tell the person something the adapter noticed (a sticker, a chat off the allow-list…); never raises."""
        try:
            async with self._tracked():
                say = Voice(await self._shared_language(origin))
                await self._deliver(origin, surface, say, [Note(say(notice.value), private=notice is Notice.EXPIRED)])
        except Exception as error:  # the platform is failing too: the log line is all that is left
            log.warning("could not post a notice", extra={**_extra(origin), "error": type(error).__name__})

    async def unknown_command(self, origin: Origin, name: str, surface: Surface) -> None:
        if self.closing:
            return
        async with self._tracked():
            say = Voice(await self._shared_language(origin))
            await self._deliver(origin, surface, say, [Note(say(_unknown(name)))])

    def apology(self, locale: str | None) -> str:
        """The last-resort apology, for an error handler that may not even know who it is talking to."""
        return render(Notice.SORRY.value, locale)

    async def answers_all(self, channel: Channel) -> bool:
        """Whether a teacher put this group on answering every message (`/classroom on`)."""
        lesson = await self.tutor.lesson(channel)
        return lesson is not None and lesson.group and lesson.active and lesson.answer_all

    async def recover(self, platform: str, revive: Revive, owns: Owns = _everything) -> None:
        """At start: finish in the chat what a crash left in progress on `platform`, and answer what it left
        unanswered (once, if it is recent; otherwise a short note). `revive(channel, quoted)` gives a surface
        for a stored channel, quoting the platform message `quoted` where the platform can (or None if the chat
        is gone). The answers are written in the background; a stop waits for them like any other. `owns`: which
        channels are this process's, where several share the platform and the database: a reply another process
        is writing, or a question in its queue, is its own to finish."""
        if self.closing:
            return
        async with self._tracked():
            for left in await self.store.unfinished(f"{platform}:"):
                if await self._owned(left.channel, owns):
                    await self._finish_cut(left, await _revived(revive, left.channel, left.source))
            now = time.time()
            late: set[str] = set()
            for question in await self.store.unanswered(f"{platform}:"):
                if not await self._owned(question.channel, owns):
                    continue
                if now - question.at <= self.tutor.settings.recovery_window:
                    self._spawn(self._answer_again(platform, question, revive))
                    continue
                # Once: the question counts as answered by the note, however often we restart.
                await self.store.add_message(
                    question.channel, "assistant", "", status=Status.FAILED, reply_to=question.id
                )
                if now - question.at <= LATE_NOTE_WITHIN:
                    late.add(question.channel)
            for channel in sorted(late):
                surface = await _revived(revive, channel, None)
                if surface is not None:
                    say = Voice(await self._channel_language(channel))
                    await quietly(surface.note(Note(say(RESTARTED_LATE))))
        log.info("recovered", extra={"adapter": platform})

    async def _owned(self, channel: str, owns: Owns) -> bool:
        lesson = await self.store.lesson(channel)
        return owns(channel, lesson.group if lesson else False)

    async def _finish_cut(self, left: Unfinished, surface: Surface | None) -> None:
        """A reply a crash left half-written: its last message ends with the cut mark and a short note (a draft,
        which vanished, is sent as a message), and the store agrees."""
        shown = left.shown
        text = "\n".join(shown.texts) or shown.draft
        if surface is not None and text:
            say = Voice(await self._channel_language(left.channel))
            marked = f"{(shown.texts or (shown.draft,))[-1]}{CUT_MARK}\n\n_{say(RESTARTED)}_"
            try:
                if not shown.at or not await _edited(surface, shown.at[-1], marked):
                    await _paced(surface, lambda: surface.send(marked))
            except Exception as error:
                log.warning(
                    "could not mark a cut reply", extra={"channel": left.channel, "error": type(error).__name__}
                )
        await self.store.finish(left.id, text + CUT_MARK if text else "", Status.CUT)

    async def _answer_again(self, platform: str, question: Question, revive: Revive) -> None:
        channel = await self._channel(question.channel)
        surface = await _revived(revive, question.channel, question.source) if channel else None
        reply = await self.tutor.answer_again(channel, question) if channel and surface else None
        if channel is None or surface is None or reply is None:
            return
        say = Voice(await self._channel_language(question.channel))
        origin = Origin(channel, Learner(question.author_id or "", question.author_name or ""), platform)
        await self._deliver(origin, surface, say, [Streamed(reply)])

    async def _channel(self, channel_id: str) -> Channel | None:
        lesson = await self.store.lesson(channel_id)
        return Channel(channel_id, group=lesson.group) if lesson else None

    async def _channel_language(self, channel_id: str) -> str:
        lesson = await self.store.lesson(channel_id)
        return lesson.native.code if lesson else self.tutor.default_native.code

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            async with self._tracked():
                try:
                    await work
                except Exception as error:
                    log.warning("background work failed", extra={"error": type(error).__name__})

        task = asyncio.ensure_future(run())
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

    async def finish(self, grace: float) -> None:
        """Take no more events; give replies being written and shown `grace` seconds, then cut them off (the
        reply is marked in the chat and stored as cut, to be answered again after the restart)."""
        self.closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.tutor.drain(grace)
        busy = {task for task in self._busy if task is not asyncio.current_task()}
        if busy:
            _done, late = await asyncio.wait(busy, timeout=max(0.0, deadline - loop.time()))
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    @property
    def busy(self) -> int:
        """Events being handled right now."""
        return len(self._busy)

    # Commands

    async def _command(self, origin: Origin, name: str, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        spec = BY_NAME.get(name)
        if spec is None:
            return [Note(say(_unknown(name)))]
        if spec.groups_only and not origin.channel.group:
            return [Note(say(_("/{name} works in groups only.", name=name)))]
        handler = getattr(self, f"_cmd_{name}")
        outcomes: list[Outcome] = await handler(origin, args, say)
        return outcomes

    async def _cmd_start(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        welcome = say(WELCOME_GROUP if origin.channel.group else WELCOME_PRIVATE)
        if origin.channel.group:
            welcome += " " + say(TEACHER_SEES)
        lesson = await self.tutor.lesson(origin.channel)
        if lesson is None:
            return [Note(f"{welcome}\n\n{say(PICK_LANGUAGE)}", language_buttons())]
        return [Note(f"{welcome}\n\n{describe(lesson, say)}")]

    async def _cmd_help(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        lines = [
            f"/{spec.name} {spec.usage}".rstrip() + f" — {say(spec.description)}"
            for spec in BY_NAME.values()
            if origin.channel.group or not spec.groups_only
        ]
        if origin.platform == "terminal":
            lines.append(f"/quit — {say(HELP_QUIT)}")
        parts = [say(HELP_INTRO), "\n".join(lines)]
        if origin.channel.group:
            parts.append(say(HELP_GROUP) + " " + say(TEACHER_SEES))
        parts.append(say(PRIVACY))
        return [Note("\n\n".join(parts))]

    async def _cmd_learn(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        wanted, level = learn_arguments(args)
        current = await self.tutor.lesson(origin.channel)
        if wanted is None:
            if current is not None and level is not None:  # `/learn B1`: this lesson, at another level
                await self._teacher(origin)
                return await self._begin(origin, current.language, Level(level))
            text = say(PICK_LANGUAGE)
            if current is not None and not current.active:
                text = say(_("The lesson is paused.")) + " " + text
            return [Note(text, language_buttons(current.language if current else None))]
        try:
            language = find_language(wanted).language
        except UnknownLanguage as error:
            return [Note(say(error.message), language_buttons(None, error.suggestions))]
        await self._teacher(origin)
        return await self._begin(origin, language, Level(level) if level else None)

    async def _cmd_level(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        lesson = await self._lesson(origin)
        if not args:
            return [Note(level_guide(say), level_buttons(lesson.language, lesson.level))]
        await self._teacher(origin)
        return await self._set_level(origin, lesson, Level.parse(args[0]), say)

    async def _cmd_native(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        if not args:
            return [
                Note(
                    say(_("Which language should I explain in? Pick one, or send /native <language>.")),
                    native_buttons(),
                )
            ]
        return await self._set_native(origin, find_language(" ".join(args)).language)

    async def _cmd_status(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        lesson = await self.tutor.lesson(origin.channel)
        if lesson is None:
            return [await self._no_lesson(origin, say)]
        text = describe(lesson, say)
        if lesson.group:
            text += " " + say(
                _("I answer every message here.") if lesson.answer_all else _("Mention me or reply to me to practise.")
            )
        due, _next = await self.store.due(origin.learner.id, lesson.language.code, self.clock())
        if due:
            text += "\n" + say(_n("{n} card is due for /review.", "{n} cards are due for /review.", due))
        return [Note(text)]

    async def _cmd_reset(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        await self._teacher(origin)
        await self.tutor.reset(origin.channel)
        if origin.channel.group:
            return [Note(say(_("Conversation forgotten; everyone's cards and progress stay. Say something to start.")))]
        return [Note(say(_("Conversation forgotten; your cards and progress stay. Say something to start again.")))]

    async def _cmd_stop(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        await self._teacher(origin)
        await self.tutor.pause(origin.channel)
        return [Note(say(_("Lesson paused. /learn picks it up again.")))]

    async def _cmd_classroom(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        mode = args[0].casefold() if args else ""
        if mode == "cap":
            return await self._classroom_cap(origin, args[1:], say)
        if mode not in ("on", "off"):
            usage = say(_("Send /classroom on to answer every message here, or /classroom off."))
            return [Note(f"{usage} {say(CAP_USAGE)}")]
        await self._teacher(origin)
        lesson = await self.tutor.set_answer_all(origin.channel, mode == "on")
        if not lesson.answer_all:
            return [Note(say(_("From now on I answer here only when mentioned or replied to.")))]
        if origin.hears_all:
            return [Note(say(_("From now on I answer every message here.")))]
        if origin.platform == "telegram":
            cannot = _(
                "Saved, but it can't work yet: Telegram shows me only messages that mention me. The bot's operator "
                "must turn off Group Privacy in @BotFather (Bot Settings), then remove and re-add me here."
            )
        else:
            cannot = _(
                "Saved, but it can't work yet: I can't read messages that don't mention me. The bot's operator must "
                "turn on the Message Content intent in the Discord developer portal and set "
                "POLYGLOTT_DISCORD_MESSAGE_CONTENT=true. Until then, mention me or reply to me."
            )
        return [Note(say(cannot))]

    async def _classroom_cap(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        """`/classroom cap <n>`: each student's messages a day in this group; `off` (or 0) lifts it, and the bot's
        POLYGLOTT_DAILY_MESSAGES applies again; alone, what applies now."""
        value = args[0].casefold() if args else ""
        if not value:
            return [Note(f"{say(self._cap_state(await self._lesson(origin)))} {say(CAP_USAGE)}")]
        if value in ("off", "0"):
            cap = None
        elif value.isascii() and value.isdigit() and int(value) <= MAX_DAILY_CAP:
            cap = int(value)
        else:
            return [Note(say(CAP_USAGE))]
        await self._teacher(origin)
        return [Note(say(self._cap_state(await self.tutor.set_daily_cap(origin.channel, cap))))]

    def _cap_state(self, lesson: Lesson) -> Msg:
        if lesson.daily_cap:
            return _n(
                "Each student can write {n} message a day here.",
                "Each student can write {n} messages a day here.",
                lesson.daily_cap,
            )
        if self.tutor.settings.daily_messages is not None:
            return _n(
                "Each student can write {n} message a day (the bot's limit).",
                "Each student can write {n} messages a day (the bot's limit).",
                self.tutor.settings.daily_messages,
            )
        return _("There is no daily limit here.")

    async def _cmd_mydata(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        return await self._my_data(origin)

    async def _cmd_forget(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        return await self._forget_asked(origin)

    async def _cmd_review(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        lesson = await self.tutor.lesson(origin.channel)
        return await self._review(origin, lesson.language.code if lesson else None)

    async def _cmd_save(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        own = Voice(await self._own_language(origin))
        phrase = clean(" ".join(args), SAVE_CHARS)
        if phrase is None:
            return [Note(own(_("Send /save and a word or phrase, e.g. /save la cuenta.")), private=True)]
        lesson = await self._lesson(origin)
        word = Card(0, origin.learner.id, lesson.language.code, Kind.WORD, right=phrase.text)
        added = await self.store.add_card(word, self.clock())
        if added is None:
            text = _("“{phrase}” is in your cards already.", phrase=phrase.text)
        else:
            self._spawn(self.tutor.gloss(replace(word, id=added), lesson))  # its meaning and an example
            text = _("Saved “{phrase}”: it comes up in /review.", phrase=phrase.text)
        return [Note(own(text), private=origin.channel.group)]

    async def _cmd_progress(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        lesson = await self.tutor.lesson(origin.channel)
        return await self._progress(origin, lesson.language.code if lesson else None)

    async def _cmd_roleplay(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        lesson = await self._lesson(origin)
        if args:
            scene = find(self.tutor.scenes, " ".join(args))
            if scene is not None:
                await self._teacher(origin)
                return await self._scene(origin, scene, say)
            text = say(_("I don't know the scene “{name}”. Pick one:", name=" ".join(args)[:40]))
        else:
            text = say(_("Which scene shall we play? Scenes for level {level}:", level=lesson.level.value))
        return [Note(text, self._scene_buttons(lesson, say))]

    async def _cmd_endscene(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        await self._teacher(origin)
        if await self.tutor.end_placement(origin.channel):
            return [Note(say(_("Placement stopped. Your level stays as it was.")))]
        closing = await self.tutor.close_scene(origin.channel, reached=False)
        if closing is None:
            return [Note(say(_("No scene is being played here. /roleplay starts one.")))]
        return self._closed(closing, say)

    async def _cmd_placement(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        return await self._placement(origin, say)

    async def _cmd_memory(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        return await self._memory(origin)

    async def _cmd_report(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        await self._teacher(origin)
        return await self._report(origin, origin.channel.id)

    async def _cmd_remind(self, origin: Origin, args: tuple[str, ...], say: Voice) -> list[Outcome]:
        own = Voice(await self._own_language(origin))
        if origin.platform == "terminal":
            return [Note(own(_("Reminders come on Telegram and Discord: here I cannot write while you are away.")))]
        if origin.channel.group:
            return [Note(own(_("Reminders come only in our private chat: send /remind on there.")), private=True)]
        mode = args[0].casefold() if args else ""
        learner = origin.learner
        if mode not in ("on", "off"):
            on = await self.store.reminder(learner.id) is not None
            state = _("Reminders are on.") if on else _("Reminders are off.")
            usage = _("Send /remind on for one message a day when cards are due, or /remind off.")
            return [Note(f"{own(state)} {own(usage)}")]
        await self.store.set_reminder(learner.id, learner.name, origin.channel.id if mode == "on" else None)
        if mode == "off":
            return [Note(own(_("No more reminders.")))]
        return [Note(own(_("I'll write once a day when cards are due, at the hour you usually practise.")))]

    # Buttons

    async def _press(self, origin: Origin, action: str, say: Voice) -> list[Outcome]:
        kind, *parts = action.split(":")
        try:
            match kind, parts:
                case "learn", [code]:
                    language = by_code(code)
                    await self._teacher(origin)
                    chosen = Note(
                        say(_("{language} it is.", language=say.name(language.code).capitalize())), replaces=True
                    )
                    return [chosen, *await self._begin(origin, language, None)]
                case "level", [code, level]:
                    return await self._level_pressed(origin, by_code(code), Level.parse(level), say)
                case "native", [code]:
                    return await self._set_native(origin, by_code(code))
                case "mydata", []:
                    return await self._my_data(origin)
                case "scene", [name]:
                    return await self._scene_pressed(origin, name, say)
                case "placement", []:
                    return await self._placement(origin, say)
                case "memory", []:
                    return await self._memory(origin)
                case "memory", [fact] if fact.isdigit():
                    await self.store.drop_fact(origin.learner.id, int(fact))
                    return await self._memory(origin, replaces=True)
                case "review", [*language] if len(language) <= 1:
                    return await self._review(origin, language[0] if language else None)
                case "progress", [*language] if len(language) <= 1:
                    return await self._progress(origin, language[0] if language else None)
                case "report", [_platform, _chat, *_topic] as channel if len(_topic) <= 1:
                    return await self._report_opened(origin, ":".join(channel))
                case "rv", ["a", card, reps, session]:
                    own = Voice(await self._own_language(origin))
                    reveal = self.reviews.reveal(
                        origin.learner.id, int(card), int(reps), int(session), _place(origin), own
                    )
                    return [await reveal]
                case "rv", [rating, card, reps, session] if rating in ("1", "2", "3", "4"):
                    own = Voice(await self._own_language(origin))
                    rate = self.reviews.rate(
                        origin.learner.id, int(card), int(reps), Rating(int(rating)), int(session), _place(origin), own
                    )
                    return [await rate]
                case "forget", []:
                    return await self._forget_asked(origin)
                case "forget", ["yes"]:
                    own = Voice(await self._own_language(origin))
                    private = () if origin.channel.group else (origin.channel.id,)  # pressed in their private chat
                    deleted = await self.tutor.forget_learner(origin.learner.id, private)
                    done = _n(
                        "Done: I deleted {n} message and everything I knew about you.",
                        "Done: I deleted {n} messages and everything I knew about you.",
                        deleted,
                    )
                    return [Note(own(done), private=True, replaces=True)]
        except (UnknownLanguage, InvalidLevel, ValueError):  # a button from a version that offered other choices
            pass
        return [Note(say(Notice.EXPIRED.value), private=True)]

    async def _level_pressed(self, origin: Origin, language: Language, level: Level, say: Voice) -> list[Outcome]:
        await self._teacher(origin)
        lesson = await self.tutor.lesson(origin.channel)
        if lesson is None or lesson.language != language:  # an older lesson's buttons: start that language there
            return await self._begin(origin, language, level)
        if lesson.level == level and lesson.active:
            own = Voice(await self._own_language(origin))
            return [Note(own(_("This lesson is already at {level}.", level=level.value)), private=True)]
        return await self._set_level(origin, lesson, level, say)

    # Changes: the callers have checked that the person may make them (once per change: `may_teach` may ask
    # the platform).

    async def _begin(self, origin: Origin, language: Language, level: Level | None) -> list[Outcome]:
        """Start (or switch to, or resume) a lesson; the opener carries the levels to adjust it in one tap."""
        native = None
        if await self.tutor.lesson(origin.channel) is None:
            native = await self._own_language(origin)  # a new lesson explains in its starter's language
        private = not origin.channel.group
        facts = [f.fact for f in await self.store.facts(origin.learner.id)] if private else []
        reply = await self.tutor.start(origin.channel, language, level, native, facts)
        buttons = level_buttons(language, reply.lesson.level)
        if private and await self.store.offer_placement(origin.learner.id, origin.learner.name):
            say = Voice(reply.lesson.native.code)  # offered once, the first time: a button beside the levels
            buttons += ((Button(say(_("🧭 Not sure? Find my level")), "placement"),),)
        return [Streamed(reply, buttons)]

    async def _set_level(self, origin: Origin, lesson: Lesson, level: Level, say: Voice) -> list[Outcome]:
        if not lesson.active:
            return await self._begin(origin, lesson.language, level)
        changed = await self.tutor.set_level(origin.channel, level)
        text = _(
            "Level set to {level} ({name}). I'll write at that level from now on.",
            level=changed.level.value,
            name=changed.level.label,
        )
        return [Note(say(text))]

    async def _set_native(self, origin: Origin, language: Language) -> list[Outcome]:
        """In a private chat the learner's own language; in a group a teacher's change is the class's, a
        student's only their own (for what is said to them alone)."""
        channel = origin.channel
        lesson = await self.tutor.lesson(channel)
        say = Voice(language.code)
        name = say.name(language.code)
        if channel.group and not await origin.may_teach():
            await self.store.set_learner_language(origin.learner.id, origin.learner.name, language.code)
            text = _(
                "Only teachers change the class's language; what I send to you alone will be in {language}.",
                language=name,
            )
            return [Note(say(text), private=True)]
        if not channel.group:
            await self.store.set_learner_language(origin.learner.id, origin.learner.name, language.code)
        elif lesson is None:
            raise NoLesson()
        if lesson is not None:
            await self.tutor.set_native(channel, language)
        return [Note(say(_("From now on I explain in {language}.", language=name)))]

    async def _teacher(self, origin: Origin) -> None:
        if origin.channel.group and not await origin.may_teach():
            log.info("refused: not a teacher", extra=_extra(origin))
            raise NotTeacher()

    async def _lesson(self, origin: Origin) -> Lesson:
        lesson = await self.tutor.lesson(origin.channel)
        if lesson is None:
            raise NoLesson()
        return lesson

    # Scenes, placement, memory

    def _scene_buttons(self, lesson: Lesson, say: Voice) -> Buttons:
        """The level's scenes, two a row: at most SCENE_BUTTONS and the surprise, within Discord's five rows (the
        rest are a surprise away, or `/roleplay <name>`)."""
        scenes = for_level(self.tutor.scenes, lesson.level)[:SCENE_BUTTONS]
        buttons = [Button(scene.title(say.language), f"scene:{scene.id}") for scene in scenes]
        return rows([*buttons, Button(say(_("🎲 Surprise me")), "scene:*")], 2)

    async def _scene_pressed(self, origin: Origin, name: str, say: Voice) -> list[Outcome]:
        await self._teacher(origin)
        lesson = await self._lesson(origin)
        if name == "*":
            interests = [] if origin.channel.group else [f.fact for f in await self.store.facts(origin.learner.id)]
            return await self._scene(origin, surprise(self.tutor.scenes, lesson.level, interests, random.Random()), say)
        scene = self.tutor.scenes.get(name)
        if scene is None:  # a scene the operator removed since
            return [Note(say(Notice.EXPIRED.value), private=True)]
        return await self._scene(origin, scene, say)

    async def _scene(self, origin: Origin, scene: Scene, say: Voice) -> list[Outcome]:
        """Begin a scene: what it is and its goal for the learner, then the tutor's first line in character."""
        private = not origin.channel.group
        facts = [f.fact for f in await self.store.facts(origin.learner.id)] if private else []
        reply = await self.tutor.begin_scene(origin.channel, scene, origin.learner if private else None, facts)
        how = _(
            "The scene ends when the goal is reached, or with /endscene. I keep the corrections for the end, so "
            "as not to break the scene."
        )
        card = f"🎭 *{scene.title(say.language)}*\n🎯 {scene.goal_for(say.language)}\n{say(how)}"
        return [Note(card), Streamed(reply)]

    def _closed(self, closing: Closing, say: Voice) -> list[Outcome]:
        """A scene's closer, then what code adds: the goal reached or not, the corrections that matter most, the
        phrases now in the deck."""

        async def summary() -> list[Outcome]:
            goal = closing.scene.goal_for(say.language)
            if closing.reached:
                lines = ["🎯 " + say(_("Goal reached: {goal}", goal=goal))]
            else:
                again = f"/roleplay {closing.scene.id}"
                lines = [
                    "🎯 "
                    + say(_("Goal not reached this time: {goal} Try again with {command}.", goal=goal, command=again))
                ]
            if closing.corrections:
                lines += ["", say(_("The corrections that matter most:")), *closing.corrections]
            if closing.cards:
                lines += [
                    "",
                    say(
                        _n(
                            "{n} phrase is now a card for /review.",
                            "{n} phrases are now cards for /review.",
                            closing.cards,
                        )
                    ),
                ]
            return [Note("\n".join(lines))]

        return [Streamed(closing.reply), Then(summary)]

    async def _after(self, origin: Origin, reply: Reply, say: Voice) -> list[Outcome]:
        """What follows a reply that ended a scene (its closer) or a placement (its level, to accept)."""
        if reply.ending is not None:
            closing = await self.tutor.close_scene(origin.channel, reached=reply.ending == "goal")
            return self._closed(closing, say) if closing is not None else []
        if reply.placed is not None:
            level, code = reply.placed.level, reply.lesson.language.code
            lesson = await self.tutor.lesson(origin.channel)
            if lesson is not None and lesson.level == level:
                return [Note(say(_("Your lesson is at {level} already: it fits.", level=level.value)))]
            accept = Button(say(_("Set my level to {level}", level=level.value)), f"level:{code}:{level.value}")
            return [Note(say(_("Shall I write at {level} from now on?", level=level.value)), ((accept,),))]
        return []

    async def _placement(self, origin: Origin, say: Voice) -> list[Outcome]:
        own = Voice(await self._own_language(origin))
        if origin.channel.group:
            return [Note(own(_("The placement is a chat for two: write /placement to me privately.")), private=True)]
        await self._lesson(origin)
        intro = _(
            "🧭 A short placement: up to ten questions, from easy to harder. Answer as well as you can, in the "
            "language you are learning; at the end I suggest a level. /endscene stops it."
        )
        return [Note(say(intro)), Streamed(await self.tutor.begin_placement(origin.channel))]

    async def _memory(self, origin: Origin, *, replaces: bool = False) -> list[Outcome]:
        """What the tutor remembers about the learner, each with a button that deletes it; theirs alone."""
        own = Voice(await self._own_language(origin))
        if self.tutor.settings.minors:
            return [
                Note(own(_("Here I remember nothing about anyone: this tutor is set up for minors.")), private=True)
            ]
        facts = await self.store.facts(origin.learner.id)
        if not facts:
            nothing = _(
                "I remember nothing about you. If you tell me about yourself (your interests, why you are learning), "
                "I keep a few facts for our next chats, and you can delete them here."
            )
            return [Note(own(nothing), private=True, again="memory", replaces=replaces)]
        listed = "\n".join(f"{i}. {fact.fact}" for i, fact in enumerate(facts, start=1))
        heading, how = own(_("What I remember about you:")), own(_("Press a number to delete that fact."))
        text = f"{heading}\n{listed}\n\n{how}"
        buttons = [Button(f"🗑 {i}", f"memory:{fact.id}") for i, fact in enumerate(facts, start=1)]
        return [Note(text, rows(buttons, 4), private=True, again="memory", replaces=replaces)]

    # Reviews and reminders

    async def _review(self, origin: Origin, language: str | None) -> list[Outcome]:
        """A review session for the learner; in a group it is theirs alone: in place where the platform can
        show it privately, else behind a link into the private chat (whose deck it opens)."""
        own = Voice(await self._own_language(origin))
        notes = await self.reviews.start(origin.learner.id, language, _place(origin), own)
        again = f"review:{language}" if language else "review"
        return [replace(note, again=again, here=True) for note in notes]

    async def _progress(self, origin: Origin, language: str | None) -> list[Outcome]:
        """The learner's last seven days beside the seven before, with a chart; theirs alone in a group."""
        own = Voice(await self._own_language(origin))
        learner = origin.learner.id
        language = language or await self.store.deck_language(learner)
        again = f"progress:{language}" if language else "progress"
        private = origin.channel.group
        if language is None:
            return [Note(own(_("Nothing to show yet: start a lesson with /learn and write to me.")), private=private)]
        now = self.clock()
        practice, mistakes, deck = await self.store.progress_rows(learner, language, now - PROGRESS_WEEKS * WEEK, now)
        figures = progress(practice, mistakes, deck, now, PROGRESS_WEEKS)
        png = await render_png_async(chart_data(figures, own), chart_text(own, language))
        rows = (table_heading(own), *table(figures, own, language))
        text = describe_progress(figures, own, language)
        caption = own(_("Your weeks in a chart"))
        return [
            Note(text, private=private, again=again, table=rows),
            Attachment("polyglott-progress.png", png, caption, "image/png", private=private, again=again),
        ]

    # Reports for teachers

    async def _report(self, origin: Origin, channel: str) -> list[Outcome]:
        """A class's report, for its teacher alone and in their language: the figures, a CSV and a chart. It
        is confidential (`again`): where the platform cannot write to the teacher privately, a link into the
        private chat opens it there, once the platform has said again that they teach this class."""
        own = Voice(await self._own_language(origin))
        figures = await report.gather(self.store, channel, self.clock(), REPORT_WEEKS)
        png = await render_class_png_async(report.chart_data(figures, own), report.chart_text(figures, own))
        again = f"report:{channel}"
        rows = own(_("The class's weeks as a spreadsheet (CSV): one row per student and week."))
        chart = own(_("The class's weeks in a chart"))
        text = report.describe(figures, own)
        return [
            Note(text, private=True, again=again, table=report.table(figures, own)),
            Attachment("polyglott-report.csv", report.to_csv(figures), rows, private=True, again=again),
            Attachment("polyglott-report.png", png, chart, "image/png", private=True, again=again),
        ]

    async def _report_opened(self, origin: Origin, channel: str) -> list[Outcome]:
        """A report's link followed in the private chat (or its action pressed): the person must still teach
        that group, which only the platform can say (`Origin.teaches`); in the group itself, `may_teach`."""
        if channel == origin.channel.id and origin.channel.group:
            await self._teacher(origin)
        elif not await origin.teaches(channel):
            log.info("refused: not a teacher", extra=_extra(origin))
            raise NotTeacher()
        return await self._report(origin, channel)

    async def remind(self, platform: str, revive: Revive) -> int:
        """Remind the learners of `platform` who asked for it and have cards due, in the hour they usually
        practise; returns how many were reminded. One who blocked the bot is never written to again."""
        now = self.clock()
        hour = datetime.fromtimestamp(now, UTC).hour
        sent = 0
        for due in await self.store.to_remind(f"{platform}:", now, hour, REMIND_QUIET):
            surface = await _revived(revive, due.channel, None)
            if surface is None:
                continue
            say = Voice(await self.store.learner_language(due.learner) or self.tutor.default_native.code)
            text = _n("📚 {n} card is waiting for you.", "📚 {n} cards are waiting for you.", due.due)
            note = Note(say(text), ((Button(say(_("Review now")), "review"),),))
            try:
                await surface.note(note)
            except Blocked:
                log.info("reminders off: the learner blocked the bot", extra={"adapter": platform})
                await self.store.set_reminder(due.learner, "", None)
                continue
            except Exception as error:
                log.warning("could not remind", extra={"adapter": platform, "error": type(error).__name__})
                continue
            await self.store.reminded(due.learner, now)
            sent += 1
        return sent

    async def reminding(self, platform: str, revive: Revive, every: float = REMIND_EVERY) -> None:
        """Look for learners to remind every `every` seconds until the conversation closes (run it as a task)."""
        while not self.closing:
            try:
                async with self._tracked():
                    await self.remind(platform, revive)
            except Exception as error:
                log.warning("reminders failed", extra={"adapter": platform, "error": type(error).__name__})
            await asyncio.sleep(every)

    # Data a learner can see and delete

    async def _my_data(self, origin: Origin) -> list[Outcome]:
        say = Voice(await self._own_language(origin))
        kept = await self.store.kept(origin.learner.id)
        cards = await self.store.cards_of(origin.learner.id)
        facts = await self.store.facts(origin.learner.id)
        delete = ((Button(say(_("Delete all of it")), "forget"),),)
        remembered = (
            " "
            + say(
                _n(
                    "I also remember {n} fact you told me: /memory shows it.",
                    "I also remember {n} facts you told me: /memory shows them.",
                    len(facts),
                )
            )
            if facts
            else ""
        )
        if not kept and not cards:
            return [Note(say(_("I keep no messages of yours.")) + remembered, delete, private=True, again="mydata")]
        files: list[Outcome] = []
        if kept:
            rows = [(k.channel, _utc(k.at), k.role, k.text) for k in kept]
            caption = _n(
                "Everything I keep about you: {n} message, with the tutor's answers to it.",
                "Everything I keep about you: {n} messages, with the tutor's answers to them.",
                sum(1 for item in kept if item.role == "user"),
            )
            files.append(_csv("polyglott-my-data.csv", CSV_COLUMNS, rows, say(caption)))
        if cards:
            deck = [
                (
                    c.language,
                    c.kind.value,
                    c.wrong,
                    c.right,
                    c.meaning,
                    c.context,
                    c.category or "",
                    _utc(c.due),
                    c.reps,
                )
                for c in cards
            ]
            caption = _n(
                "Your {n} card for review, with its schedule.",
                "Your {n} cards for review, with their schedule.",
                len(cards),
            )
            files.append(_csv("polyglott-my-cards.csv", CARD_COLUMNS, deck, say(caption)))
        last = say(_("You can delete all of it at any time.")) + remembered
        return [*files, Note(last, delete, private=True, again="mydata")]

    async def _forget_asked(self, origin: Origin) -> list[Outcome]:
        """Deleting everything takes a second press: on this button (`forget:yes`)."""
        own = Voice(await self._own_language(origin))
        confirm = Button(own(_("Yes, delete everything")), "forget:yes")
        question = own(_("Delete every message of yours and everything I know about you? This cannot be undone."))
        return [Note(question, ((confirm,),), private=True, again="forget", replaces=True)]

    # Delivery

    async def _deliver(self, origin: Origin, surface: Surface, say: Voice, outcomes: list[Outcome]) -> None:
        linked: set[str] = set()  # private outcomes already replaced by a link to the private chat
        for outcome in outcomes:
            match outcome:
                case Then(make=make):
                    await self._deliver(origin, surface, say, await make())
                case Streamed(reply=reply, buttons=buttons):
                    delivery = await answer(reply, surface, say, buttons)
                    shown = f"{len(delivery.messages)} messages, {delivery.updates} updates" if delivery else "failed"
                    log.info("replied in %s", shown, extra={**_extra(origin), "status": reply.status or "-"})
                case Note() | Attachment() if not (outcome.again and outcome.again in linked):
                    if isinstance(outcome, Note):  # a note can echo what someone typed: no masked link in it
                        outcome = replace(outcome, text=visible_links(outcome.text))
                    if isinstance(outcome, Note) and outcome.here and outcome.private and not surface.private_here:
                        await surface.note(await self._unreachable(origin, outcome))
                        linked.add(outcome.again)
                        continue
                    try:
                        await (surface.note(outcome) if isinstance(outcome, Note) else surface.attach(outcome))
                    except Unreachable:
                        await surface.note(await self._unreachable(origin, outcome))
                        linked.add(outcome.again)

    async def _unreachable(self, origin: Origin, outcome: Note | Attachment) -> Note:
        """A private note the platform could not deliver: what may be said in public says so, the rest waits
        behind a link to the private chat."""
        if not outcome.again:
            text = outcome.text if isinstance(outcome, Note) else outcome.caption
            return replace(outcome, private=False, replaces=False) if isinstance(outcome, Note) else Note(text)
        say = Voice(await self._own_language(origin))
        link = Button(say(_("Open our private chat")), opens=outcome.again)
        text = say(_("{name}, this is for you alone: open our private chat to see it.", name=origin.learner.name[:64]))
        return Note(text, ((link,),))

    async def _refusal(self, origin: Origin, error: TutorError, say: Voice) -> Note:
        if isinstance(error, NotTeacher):
            return Note(Voice(await self._own_language(origin))(error.message), private=True)
        if isinstance(error, NoLesson):
            return await self._no_lesson(origin, say)
        return Note(say(error.message))

    async def _no_lesson(self, origin: Origin, say: Voice) -> Note:
        if origin.channel.group:
            return Note(say(NO_LESSON_GROUP))
        return Note(say(PICK_LANGUAGE), language_buttons())

    # Languages

    async def _own_language(self, origin: Origin) -> str:
        """The person's own language: stored, else their app's (remembered from now on), else the default."""
        learner = origin.learner
        code = await self.store.learner_language(learner.id)
        if code is not None:
            return code
        from_app = language_of_locale(origin.locale)
        if from_app is None:
            return self.tutor.default_native.code
        await self.store.set_learner_language(learner.id, learner.name, from_app.code)
        return from_app.code

    async def _shared_language(self, origin: Origin) -> str:
        lesson = await self.tutor.lesson(origin.channel)
        if lesson is not None:
            return lesson.native.code
        return await self._own_language(origin)

    @contextlib.asynccontextmanager
    async def _tracked(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None:
            self._busy.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._busy.discard(task)


# What core shows, as functions of the reader's voice


def describe(lesson: Lesson, say: Voice) -> str:
    """A one-line summary of a lesson for /status and /start."""
    text = _(
        "Learning {language} at level {level} ({name}), explanations in {native}.",
        language=say.name(lesson.language.code),
        level=lesson.level.value,
        name=lesson.level.label,
        native=say.name(lesson.native.code),
    )
    paused = " " + say(_("The lesson is paused.")) if not lesson.active else ""
    return say(text) + paused


def level_guide(say: Voice) -> str:
    levels = "\n".join(f"{level.value} · {say(level.label)}" for level in Level)
    question = say(_("Which level? A1 is a beginner, C2 near-native."))
    return f"{question}\n{levels}"


def language_label(language: Language) -> str:
    """A language as its speakers write it, for a button: "Español", "Deutsch", "日本語"."""
    return language.autonym[:1].upper() + language.autonym[1:]


def language_buttons(first: Language | None = None, languages: Iterable[Language] = ()) -> Buttons:
    chosen = list(languages) or [by_code(code) for code in POPULAR]
    if first is not None:
        chosen = [first, *(lang for lang in chosen if lang != first)]
    return rows([Button(language_label(lang), f"learn:{lang.code}") for lang in chosen], 2)


def level_buttons(language: Language, current: Level | None = None) -> Buttons:
    labels = [f"✓ {level.value}" if level == current else level.value for level in Level]
    buttons = [
        Button(label, f"level:{language.code}:{level.value}") for label, level in zip(labels, Level, strict=True)
    ]
    return rows(buttons, 3)


def native_buttons() -> Buttons:
    languages = [by_code(code) for code in UI_LANGUAGES]
    return rows([Button(language_label(lang), f"native:{lang.code}") for lang in languages], 3)


def language_of_locale(locale: str | None) -> Language | None:
    """The catalog language of a platform's language tag (`pt-BR` → Portuguese), if any."""
    primary = (locale or "").replace("_", "-").split("-")[0].strip()
    if not primary:
        return None
    try:
        return by_code(primary.casefold())
    except UnknownLanguage:
        return None


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _csv(name: str, columns: tuple[str, ...], rows: Iterable[Iterable[object]], caption: str) -> Attachment:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    return Attachment(name, out.getvalue().encode(), caption, private=True, again="mydata")


def _place(origin: Origin) -> Place:
    return Place(origin.channel.id, origin.channel.group)


def _reopenable(action: str) -> bool:
    """What a link into the private chat may press: what only shows something, for any language code; and a
    group's report (`report:<channel>`), which asks the platform whether the person teaches there."""
    kind, _sep, language = action.partition(":")
    if kind == "report":
        return _REPORTED.fullmatch(action) is not None
    return action in REOPENABLE or (kind in ("review", "progress") and language.isalpha() and len(language) <= 3)


def _extra(origin: Origin) -> dict[str, str]:
    return {"adapter": origin.platform, "channel": origin.channel.id}


async def _revived(revive: Revive, channel: str, quoted: str | None) -> Surface | None:
    """A surface for a stored channel, or None: one chat that cannot be reached must not stop the others'."""
    try:
        return await revive(channel, quoted)
    except Exception as error:
        log.warning("could not reach a chat to recover", extra={"channel": channel, "error": type(error).__name__})
        return None


async def _edited(surface: Surface, address: str, text: str) -> bool:
    """Edit a stored message; False if it is gone or can no longer be edited (a flood wait is waited out once)."""
    try:
        await _paced(surface, lambda: surface.edit(surface.recall(address), text))
    except Exception:
        return False
    return True


async def _paced(surface: Surface, call: Callable[[], Awaitable[object]]) -> None:
    """One call within the chat's budget, like a final text (several cut replies in one group at a restart
    must not flood it); a flood wait is waited out and the call tried again."""
    for _attempt in range(3):
        if surface.pacer is not None:
            await surface.pacer.acquire(urgent=True)
        try:
            await call()
            return
        except RetryAfter as wait:
            if surface.pacer is not None:
                surface.pacer.pause(wait.seconds)
            await asyncio.sleep(wait.seconds)
    raise RetryAfter(0)


def _unknown(name: str) -> Msg:
    return _("I don't know /{name}. /help lists what I can do.", name=name[:32])
