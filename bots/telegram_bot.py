"""Polyglott on Telegram: updates in, the tutor's replies out, within Telegram's limits.

The adapter is thin on purpose. It decides whether a message is for the tutor (private chats: always;
groups: when the bot is mentioned, replied to or commanded), who may change a classroom's lesson (the
group's admins), and how a reply is shown: a live draft then the final message in private chats,
send-then-edit in groups, HTML with a plain-text fallback, and one flood budget per chat shared by every
reply and notice there. Lessons, history and prompts are the core's.

Time: every Telegram duration here (flood windows, edit cadence, retry-after waits) is multiplied by
`time_scale`. Production runs at 1.0; tests run the fake Bot API with `FakeTelegram(time_scale=s)` and
pass the same `s` to `serve`/`build_application`, so both sides agree on a shrunken clock.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import itertools
import logging
import re
import traceback
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatMemberStatus, ChatType, FloodLimit, MessageLimit, ParseMode
from telegram.error import (
    BadRequest,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from bots.cli import GRACE
from bots.telegram_html import to_html
from core import relay
from core.answer import answer
from core.commands import COMMANDS, HELP, describe, learn_arguments, parse_command
from core.errors import NoLesson, TutorError, UnknownLanguage
from core.languages import CATALOG, POPULAR, Language, by_code, find_language
from core.lesson import Level
from core.logs import content
from core.pacing import ChatPacer, Pacers, scaled
from core.relay import DraftsUnavailable, Limits
from core.settings import Settings
from core.tutor import Channel, Learner, Reply, Tutor

log = logging.getLogger(__name__)

T = TypeVar("T")
Window = tuple[int, float]

# Telegram's flood limits (telegram.constants.FloodLimit): about one update a second in any chat and 20 a
# minute in a group; edits count like messages. The windows are 20 % / 5 % wider than the limits so that
# network jitter between our clock and Telegram's never tips a burst over.
PRIVATE_WINDOWS: tuple[Window, ...] = ((1, 1.2),)
GROUP_WINDOWS: tuple[Window, ...] = ((1, 1.2), (FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP, 63.0))
# Private chats preview with drafts (not messages, so not flood-counted); groups edit one message every
# 3 s, the pace at which a single reply alone would use a group's whole budget.
PRIVATE_LIMITS = Limits(MessageLimit.MAX_TEXT_LENGTH, edit_interval=1.2, draft_interval=0.4, use_drafts=True)
GROUP_LIMITS = Limits(MessageLimit.MAX_TEXT_LENGTH, edit_interval=3.2)
ADMIN_CACHE_SECONDS = 60.0  # how long a getChatMember answer is trusted
NETWORK_RETRIES = 2  # extra tries for a send or edit that failed in transit (a 502, a timeout)
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]  # edited messages are never even delivered

LESSON_CHANGES = frozenset({"learn", "level", "native", "reset", "stop"})  # admins only, in groups
START = "What I am and how to begin"

WELCOME_PRIVATE = (
    "👋 Hi! I'm Polyglott, a language tutor. Write to me in the language you're learning and I'll answer at "
    "your level and point out mistakes as we go."
)
WELCOME_GROUP = (
    "👋 Hi! I'm Polyglott, this group's language tutor. Mention me (@{bot}) or reply to my messages to "
    "practise; I answer at the class's level and point out mistakes. A group admin picks the lesson with "
    "/learn <language> [level]."
)
PICK_LANGUAGE = (
    "Which language would you like to practise? Pick one, or send /learn <language> [level], e.g. /learn spanish A2."
)
NO_LESSON_GROUP = (
    "There is no lesson here yet. A group admin can start one with /learn <language>, e.g. /learn spanish."
)
ONLY_ADMINS = "Sorry, only this group's admins can change the lesson. Ask your teacher!"
NOT_ALLOWED = "Sorry, this tutor is private and not available in this chat."
NOT_TEXT = "I can only read text for now: stickers, photos and voice messages are beyond me. Write to me instead!"
EXPIRED = "This button has expired. Send /learn to start again."
SORRY = "Sorry, something went wrong on my side. Please try again."

_draft_ids = itertools.count(1)
ApiResult = bool | dict[str, Any] | list[dict[str, Any]]  # what a Bot API call returns, as PTB's limiter sees it


class MessageRateLimiter(AIORateLimiter):
    """Telegram's bot-wide 30 messages a second, sent evenly at 25 a second; typing and drafts are not messages.

    Evenly, because aiolimiter's bucket of 30 lets 60 through in a second after a quiet spell, and Telegram
    answers the 31st with a 429 (the throughput benchmark found it); 25, because calls spaced 1/30 s apart
    arrive bunched by jitter (a busy event loop, the network), and 5 to spare absorbs about 200 ms. Drafts and
    typing pass freely, paced per chat by the relay: queued behind messages they would delay the first words
    of every reply. Per-chat and per-group budgets are the pacers', which know which update is final.
    max_retries=0 hands every RetryAfter to the relay, which waits it out itself.
    """

    PREVIEWS = frozenset({"sendMessageDraft", "sendChatAction"})
    PER_SECOND = FloodLimit.MESSAGES_PER_SECOND - 5

    def __init__(self, time_scale: float = 1.0) -> None:
        super().__init__(overall_max_rate=1, overall_time_period=time_scale / self.PER_SECOND, group_max_rate=0)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, ApiResult]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> ApiResult:
        if endpoint in self.PREVIEWS:
            return await callback(*args, **kwargs)
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)


@dataclass(frozen=True)
class Place:
    """A Telegram chat, or one forum topic in it, and the core channel it is."""

    chat_id: int
    topic: int | None
    group: bool

    @classmethod
    def of(cls, message: Message) -> Place:
        # Replies in a non-forum supergroup carry a message_thread_id too; only real topics are channels.
        topic = message.message_thread_id if message.is_topic_message else None
        return cls(message.chat.id, topic, message.chat.type != ChatType.PRIVATE)

    @property
    def channel(self) -> Channel:
        base = f"telegram:{self.chat_id}"
        if self.topic is None:
            return Channel(base, group=self.group)
        return Channel(f"{base}:{self.topic}", group=True, parent=base)


class TelegramChat:
    """One reply's (or notice's) way into a chat: the `core.answer.Chat` the relay writes to.

    `send` and `edit` are paced by the relay with the chat's pacer; `post`, `rewrite` and `notify` pace
    themselves with it. Markdown goes out as HTML, or as plain text when Telegram cannot parse it.
    """

    def __init__(self, bot: Bot, place: Place, pacer: ChatPacer, scale: float, reply_to: int | None = None) -> None:
        self.bot = bot
        self.place = place
        self.pacer = pacer
        self.scale = scale
        self.reply_to = reply_to  # a group reply quotes the question it answers, in its first message
        self.draft_id = next(_draft_ids)
        self.drafts_refused = False

    async def send(self, text: str) -> int:
        quote = ReplyParameters(self.reply_to, allow_sending_without_reply=True) if self.reply_to else None
        message = await self._rendered(
            self.bot.send_message,
            text,
            chat_id=self.place.chat_id,
            message_thread_id=self.place.topic,
            reply_parameters=quote,
        )
        self.reply_to = None
        return message.message_id

    async def edit(self, handle: int, text: str) -> None:
        try:
            await self._rendered(self.bot.edit_message_text, text, chat_id=self.place.chat_id, message_id=handle)
        except BadRequest as error:
            if "not modified" not in str(error).lower():  # the same text rendered twice: already shown
                raise

    async def draft(self, text: str) -> None:
        try:
            await self._rendered(
                self.bot.send_message_draft,
                text,
                chat_id=self.place.chat_id,
                draft_id=self.draft_id,
                message_thread_id=self.place.topic,
            )
        except (BadRequest, InvalidToken, EndPointNotFound) as error:  # PTB reads a 404 as a bad token
            self.drafts_refused = True
            raise DraftsUnavailable() from error

    async def typing(self) -> None:
        await self.bot.send_chat_action(self.place.chat_id, ChatAction.TYPING, message_thread_id=self.place.topic)

    async def notify(self, text: str) -> None:
        await self.post(text)

    async def post(self, text: str, buttons: InlineKeyboardMarkup | None = None) -> Message:
        """A plain-text message outside any relay (a command's answer, a notice)."""
        quote = ReplyParameters(self.reply_to, allow_sending_without_reply=True) if self.reply_to else None
        return await self._paced(
            lambda: self.bot.send_message(
                self.place.chat_id,
                text,
                message_thread_id=self.place.topic,
                reply_parameters=quote,
                reply_markup=buttons,
            )
        )

    async def rewrite(self, message_id: int, text: str, buttons: InlineKeyboardMarkup | None = None) -> None:
        """Replace a message of ours with plain text (the buttons go unless new ones are given)."""
        await self._paced(
            lambda: self.bot.edit_message_text(
                text, chat_id=self.place.chat_id, message_id=message_id, reply_markup=buttons
            )
        )

    async def _paced(self, call: Callable[[], Awaitable[T]]) -> T:
        """Wait for the chat's budget like a final text does; a flood wait delays, never drops, the call."""
        while True:
            await self.pacer.acquire(urgent=True)
            try:
                return await self._call(call)
            except relay.RetryAfter as wait:
                self.pacer.pause(wait.seconds)
                await asyncio.sleep(wait.seconds)

    async def _rendered(self, method: Callable[..., Awaitable[T]], markdown: str, **kwargs: Any) -> T:
        try:
            return await self._call(lambda: method(text=to_html(markdown), parse_mode=ParseMode.HTML, **kwargs))
        except BadRequest as error:
            reason = str(error).lower()
            if "can't parse entities" not in reason and "text is empty" not in reason:
                raise
            log.warning("html refused, sent as plain text", extra={**_extra(self.place), "error": "BadRequest"})
            return await self._call(lambda: method(text=markdown, **kwargs))

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """Telegram's RetryAfter as the relay's; a failure in transit is tried again a couple of times."""
        for attempt in itertools.count():
            try:
                return await call()
            except RetryAfter as error:
                log.warning("flood wait of %g s", _seconds(error), extra={**_extra(self.place), "error": "RetryAfter"})
                raise relay.RetryAfter(_seconds(error) * self.scale) from error
            except NetworkError as error:
                if isinstance(error, BadRequest) or attempt >= NETWORK_RETRIES:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")


class TelegramBot:
    """The handlers, the per-chat flood budgets and the admin cache of one running bot."""

    def __init__(self, tutor: Tutor, settings: Settings, *, time_scale: float = 1.0) -> None:
        if settings.telegram_token is None:
            raise ValueError("POLYGLOTT_TELEGRAM_TOKEN is not set")
        self.tutor = tutor
        self.settings = settings
        self.scale = time_scale
        self.pacers = Pacers()
        self.drafts = True  # until Telegram refuses them once
        self._admins: dict[tuple[int, int], tuple[bool, float]] = {}
        self._busy: set[asyncio.Task[Any]] = set()
        self._commands: dict[str, Callable[[Message, Place, tuple[str, ...]], Awaitable[None]]] = {
            "start": self.start,
            "learn": self.learn,
            "level": self.level,
            "native": self.native,
            "status": self.status,
            "reset": self.reset,
            "stop": self.stop,
            "help": self.help,
        }
        api = settings.telegram_api_url.rstrip("/")
        self.application: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(settings.telegram_token.get_secret_value())
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .concurrent_updates(True)  # one slow chat must not hold up the others
            .rate_limiter(MessageRateLimiter(time_scale))
            .build()
        )
        # With max_retries=0 the limiter logs each RetryAfter as an error with a traceback; it is handled here.
        logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)
        new = filters.UpdateType.MESSAGE  # new messages only: edits of old ones are ignored
        self.application.add_handler(TypeHandler(Update, self.gate), group=-1)
        self.application.add_handler(CommandHandler(list(self._commands), self.on_command, filters=new))
        self.application.add_handler(MessageHandler(new & filters.COMMAND, self.on_unknown_command))
        self.application.add_handler(MessageHandler(new & filters.TEXT, self.on_text))
        self.application.add_handler(MessageHandler(new, self.on_other))
        self.application.add_handler(CallbackQueryHandler(self.on_button))
        self.application.add_error_handler(self.on_error)

    # Lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop`; then take no more updates, let replies in progress finish, and close."""
        application = self.application
        async with application:
            # Only what this adapter handles, with the descriptions every platform shares.
            await application.bot.set_my_commands(
                [BotCommand(name, COMMANDS.get(name, START)) for name in self._commands]
            )
            await application.start()
            try:
                await self._receive()
                log.info("serving", extra={"adapter": "telegram"})
                await stop.wait()
            finally:
                if application.updater and application.updater.running:
                    await application.updater.stop()
                await self._finish(GRACE)
                await application.stop()

    async def _receive(self) -> None:
        updater = self.application.updater
        assert updater is not None
        url = self.settings.telegram_webhook_url
        if not url:
            await updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            return
        host, _, port = self.settings.telegram_webhook_listen.rpartition(":")
        secret = self.settings.telegram_webhook_secret
        await updater.start_webhook(
            listen=host.strip("[]") or "127.0.0.1",
            port=int(port),
            url_path=urlsplit(url).path.strip("/"),
            webhook_url=url,
            secret_token=secret.get_secret_value() if secret else None,
            allowed_updates=ALLOWED_UPDATES,
        )

    async def _finish(self, grace: float) -> None:
        """Give replies being written and shown `grace` seconds in all, then cut them off (they are saved)."""
        deadline = asyncio.get_running_loop().time() + grace
        await self.tutor.drain(grace)
        if self._busy:
            _, late = await asyncio.wait(self._busy, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
            for task in late:
                task.cancel()

    # Every update

    async def gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Runs first: tracks the update for a graceful stop and turns away chats off the allow-list."""
        task = asyncio.current_task()
        if task is not None:
            self._busy.add(task)
            task.add_done_callback(self._busy.discard)
        chat, allowed = update.effective_chat, self.settings.telegram_allowed_chats
        if not allowed or chat is None or chat.id in allowed:
            return
        log.info("chat not allowed", extra={"adapter": "telegram", "channel": f"telegram:{chat.id}"})
        if update.callback_query:
            await update.callback_query.answer(NOT_ALLOWED)
        elif update.message and self._addressed(update.message, commands=True):
            await self._chat(Place.of(update.message), update.message).post(NOT_ALLOWED)
        raise ApplicationHandlerStop

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log what failed and where, never the text; the chat gets an apology, never a traceback."""
        error = context.error
        frames = traceback.extract_tb(error.__traceback__) if error else []
        where = f"{frames[-1].name}:{frames[-1].lineno}" if frames else "-"
        place = _place(update)
        log.error(
            "update failed in %s",
            where,
            extra={
                "adapter": "telegram",
                "channel": place.channel.id if place else "-",
                "error": type(error).__name__,
            },
            exc_info=error if self.settings.log_content else None,  # a traceback may quote a message
        )
        if not isinstance(update, Update) or place is None or isinstance(error, Forbidden):
            return
        try:
            if update.callback_query:
                await update.callback_query.answer(SORRY)
            else:
                await self._chat(place, update.message).post(SORRY)
        except TelegramError:
            pass  # Telegram itself is failing: the log line is all we can do

    # Messages

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        assert message is not None and message.text is not None
        place = Place.of(message)
        if place.group and not self._addressed(message):
            return
        text = re.sub(rf"@{re.escape(self._username)}\b[,:]?", "", message.text, flags=re.IGNORECASE).strip()
        log.info("message %s", content(text, self.settings.log_content), extra=_extra(place))
        try:
            reply = await self.tutor.reply(place.channel, _learner(message), text)
        except NoLesson:
            await self._no_lesson(message, place)
            return
        except TutorError as error:
            await self._chat(place, message).post(str(error))
            return
        if reply is not None:
            await self._answer(reply, place, message)

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, voice notes…: say what works today, in a group only when it was meant for us."""
        message = update.message
        assert message is not None
        place = Place.of(message)
        if place.group and not self._addressed(message):
            return
        log.info("not text", extra=_extra(place))
        await self._chat(place, message).post(NOT_TEXT)

    async def on_unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        assert message is not None and message.text is not None
        place = Place.of(message)
        command = parse_command(message.text, self._username)
        # In a group a bare /command may be meant for another bot; answer only what names us.
        if command is None or (place.group and "@" not in message.text.split()[0]):
            return
        await self._chat(place, message).post(f"I don't know /{command.name}. /help lists what I can do.")

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        assert message is not None and message.text is not None
        command = parse_command(message.text, self._username)
        assert command is not None  # CommandHandler already checked it is ours
        place = Place.of(message)
        log.info("command /%s", command.name, extra=_extra(place))
        if command.name in LESSON_CHANGES and not await self._may_teach(message):
            log.info("refused: not an admin", extra=_extra(place))
            await self._chat(place, message).post(ONLY_ADMINS)
            return
        try:
            await self._commands[command.name](message, place, command.args)
        except UnknownLanguage as error:
            await self._chat(place, message).post(str(error), _language_buttons(error.suggestions or None))
        except TutorError as error:
            await self._chat(place, message).post(str(error))

    # Commands

    async def start(self, message: Message, place: Place, args: tuple[str, ...]) -> None:
        welcome = WELCOME_GROUP.format(bot=self._username) if place.group else WELCOME_PRIVATE
        lesson = await self.tutor.lesson(place.channel)
        if lesson is None:
            await self._chat(place, message).post(f"{welcome}\n\n{PICK_LANGUAGE}", _language_buttons())
        else:
            now = describe(lesson.language.name, lesson.level, lesson.native.name, lesson.active)
            await self._chat(place, message).post(f"{welcome}\n\n{now}")

    async def learn(self, message: Message, place: Place, args: tuple[str, ...]) -> None:
        wanted, level = learn_arguments(args)
        if wanted is None:
            lesson = await self.tutor.lesson(place.channel)
            if lesson is not None and (level or not lesson.active):  # `/learn B1`, or resuming after /stop
                await self._begin(place, lesson.language, level, message)
            else:
                await self._chat(place, message).post(PICK_LANGUAGE, _language_buttons())
            return
        language = find_language(wanted).language
        if level is None:
            await self._chat(place, message).post(_which_level(language), _level_buttons(language))
        else:
            await self._begin(place, language, level, message)

    async def level(self, message: Message, place: Place, args: tuple[str, ...]) -> None:
        if not args:
            await self._chat(place, message).post("Which level? Send /level A1, A2, B1, B2, C1 or C2.")
            return
        lesson = await self.tutor.set_level(place.channel, args[0])
        await self._chat(place, message).post(f"Level set to {lesson.level}.")

    async def native(self, message: Message, place: Place, args: tuple[str, ...]) -> None:
        if not args:
            await self._chat(place, message).post("Which language should I explain in? e.g. /native english")
            return
        lesson = await self.tutor.set_native(place.channel, " ".join(args))
        await self._chat(place, message).post(f"Explanations will be in {lesson.native.name}.")

    async def status(self, message: Message, place: Place, args: tuple[str, ...]) -> None:
        lesson = await self.tutor.lesson(place.channel)
        if lesson is None:
            await self._no_lesson(message, place)
            return
        now = describe(lesson.language.name, lesson.level, lesson.native.name, lesson.active)
        await self._chat(place, message).post(now)

    async def reset(self, message: Message, place: Place, args: tuple[str, ...]) -> None:
        await self.tutor.reset(place.channel)
        await self._chat(place, message).post("Conversation forgotten. Say something to start again.")

    async def stop(self, message: Message, place: Place, args: tuple[str, ...]) -> None:
        await self.tutor.pause(place.channel)
        await self._chat(place, message).post("Lesson paused. /learn picks it up again.")

    async def help(self, message: Message, place: Place, args: tuple[str, ...]) -> None:
        group = f"\n\nIn a group, mention me (@{self._username}) or reply to my messages." if place.group else ""
        await self._chat(place, message).post(HELP + group)

    # Buttons

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """`learn:es` asks for the level; `level:es:B1` starts the lesson. Every query is answered."""
        query = update.callback_query
        assert query is not None
        message = query.message
        if not isinstance(message, Message):  # too old for Telegram to show us
            await query.answer(EXPIRED)
            return
        place = Place.of(message)
        log.info("button", extra=_extra(place))
        if place.group and not await self._is_admin(place.chat_id, query.from_user.id):
            await query.answer(ONLY_ADMINS, show_alert=True)
            return
        kind, _, rest = (query.data or "").partition(":")
        code, _, level = rest.partition(":")
        language = next((lang for lang in CATALOG if lang.code == code), None)
        chat = self._chat(place)
        if language is not None and kind == "learn":
            await query.answer()
            await chat.rewrite(message.message_id, _which_level(language), _level_buttons(language))
        elif language is not None and kind == "level" and level in Level.__members__:
            await query.answer(f"{language.name}, {level}")
            await chat.rewrite(message.message_id, f"{language}, level {level}.")
            await self._begin(place, language, level, None)
        else:
            await query.answer(EXPIRED)

    # Helpers

    @property
    def _username(self) -> str:
        return self.application.bot.username

    def _chat(self, place: Place, message: Message | None = None) -> TelegramChat:
        """A way into `place`; in a group, answers quote the `message` they answer."""
        windows = GROUP_WINDOWS if place.group else PRIVATE_WINDOWS
        pacer = self.pacers.get(str(place.chat_id), scaled(windows, self.scale))
        quote = message.message_id if message is not None and place.group else None
        return TelegramChat(self.application.bot, place, pacer, self.scale, quote)

    async def _begin(self, place: Place, language: Language, level: str | None, message: Message | None) -> None:
        await self._answer(await self.tutor.start(place.channel, language, level), place, message)

    async def _answer(self, reply: Reply, place: Place, message: Message | None) -> None:
        chat = self._chat(place, message)
        base = GROUP_LIMITS if place.group else replace(PRIVATE_LIMITS, use_drafts=self.drafts)
        limits = replace(
            base, edit_interval=base.edit_interval * self.scale, draft_interval=base.draft_interval * self.scale
        )
        delivery = await answer(reply, chat, limits, chat.pacer)
        if chat.drafts_refused and self.drafts:
            self.drafts = False
            log.info("drafts refused: sending then editing from now on", extra=_extra(place))
        updates = delivery.updates if delivery else 0
        log.info("replied with %d updates", updates, extra={**_extra(place), "status": reply.status})

    async def _no_lesson(self, message: Message, place: Place) -> None:
        if place.group:
            await self._chat(place, message).post(NO_LESSON_GROUP)
        else:
            await self._chat(place, message).post(PICK_LANGUAGE, _language_buttons())

    def _addressed(self, message: Message, *, commands: bool = False) -> bool:
        """In a group: a reply to one of our messages, an @mention of us, or (if asked) a command."""
        if message.chat.type == ChatType.PRIVATE:
            return True
        replied = message.reply_to_message
        bot_id = self.application.bot.id
        if replied and replied.from_user and replied.from_user.id == bot_id and not replied.forum_topic_created:
            return True
        if commands and parse_command(message.text or "", self._username):
            return True
        kinds: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        found = {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}
        return any(
            (entity.user is not None and entity.user.id == bot_id)
            or text.removeprefix("@").casefold() == self._username.casefold()
            for entity, text in found.items()
        )

    async def _may_teach(self, message: Message) -> bool:
        if message.chat.type == ChatType.PRIVATE:
            return True
        if message.sender_chat is not None and message.sender_chat.id == message.chat.id:
            return True  # an admin posting anonymously, as the group itself
        return message.from_user is not None and await self._is_admin(message.chat.id, message.from_user.id)

    async def _is_admin(self, chat_id: int, user_id: int) -> bool:
        """The group's creator or an administrator; answers are cached for a minute."""
        now = asyncio.get_running_loop().time()
        cached = self._admins.get((chat_id, user_id))
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            member = await self.application.bot.get_chat_member(chat_id, user_id)
        except TelegramError as error:
            log.warning("admin check failed", extra={"adapter": "telegram", "error": type(error).__name__})
            return False
        admin = member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
        if len(self._admins) > 4096:
            self._admins = {key: value for key, value in self._admins.items() if value[1] > now}
        self._admins[(chat_id, user_id)] = (admin, now + ADMIN_CACHE_SECONDS)
        return admin


def build_application(
    tutor: Tutor, settings: Settings, *, time_scale: float = 1.0
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The PTB Application with every handler registered, for a caller that runs it itself."""
    return TelegramBot(tutor, settings, time_scale=time_scale).application


async def serve(tutor: Tutor, settings: Settings, stop: asyncio.Event, *, time_scale: float = 1.0) -> None:
    """The `polyglott run` adapter contract (see bots/cli.py)."""
    await TelegramBot(tutor, settings, time_scale=time_scale).run(stop)


def _learner(message: Message) -> Learner:
    if message.sender_chat is not None:  # an anonymous admin or a linked channel speaks as a chat
        return Learner(f"telegram:chat:{message.sender_chat.id}", message.sender_chat.title or "Teacher")
    user = message.from_user
    assert user is not None
    return Learner(f"telegram:user:{user.id}", user.first_name)


def _place(update: object) -> Place | None:
    if not isinstance(update, Update):
        return None
    message = update.effective_message
    return Place.of(message) if isinstance(message, Message) else None


def _extra(place: Place) -> dict[str, str]:
    return {"adapter": "telegram", "channel": place.channel.id}


def _seconds(error: RetryAfter) -> float:
    """retry_after in seconds, whether PTB hands it over as int or timedelta (without its deprecation warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def _which_level(language: Language) -> str:
    return f"{language}: which level? A1 is a beginner, C2 near-native."


def _language_buttons(languages: Iterable[Language] | None = None) -> InlineKeyboardMarkup:
    chosen = list(languages) if languages is not None else [by_code(code) for code in POPULAR]
    buttons = [InlineKeyboardButton(str(lang), callback_data=f"learn:{lang.code}") for lang in chosen]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


def _level_buttons(language: Language) -> InlineKeyboardMarkup:
    buttons = [InlineKeyboardButton(level, callback_data=f"level:{language.code}:{level}") for level in Level]
    return InlineKeyboardMarkup([buttons[:3], buttons[3:]])
