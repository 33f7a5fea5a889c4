"""Polyglott on Telegram: updates in as calls on the conversation, its outcomes out within Telegram's limits.

The adapter decides nothing about tutoring and writes no words of its own: `core.conversation` does. It
parses each update into an `Origin` (the chat or forum topic, who wrote, their app's language, whether they
are one of the group's admins, whether the message was said to the bot or only overheard by a classroom that
answers all) and one call on the conversation, and renders what comes back: Markdown as
HTML with a plain-text fallback, buttons as inline keyboards (or deep links into the private chat), notes
meant for one person as alerts or private messages, images as photos and other files as documents, and a
streamed reply as a live draft in private chats and send-then-edit in groups, with one flood budget per chat
shared by all of it. A 403 in a private chat means the person blocked the bot: core hears it as `Blocked`.

Crashes and hiccups: a learner message carries its message id to core, so an update Telegram delivers again
after a crash is answered once; at start, before the first update, core finishes what a crash left half-shown
and answers what it left unanswered, on surfaces `revive` makes from stored channel ids; then core's reminder
pass starts, on the same kind of surfaces. Start-up calls that fail in transit are tried again with backoff
until they succeed or the bot is stopped.

Time: every Telegram duration here (flood windows, edit cadence, retry-after waits) is multiplied by
`time_scale`. Production runs at 1.0; tests run the fake Bot API with `FakeTelegram(time_scale=s)` and
pass the same `s` to `serve`/`build_application`, so both sides agree on a shrunken clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dtm
import functools
import html
import itertools
import logging
import re
import traceback
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from telegram import (
    Bot,
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
    User,
)
from telegram.constants import (
    BotCommandLimit,
    CallbackQueryLimit,
    ChatAction,
    ChatMemberStatus,
    ChatType,
    FloodLimit,
    MessageLimit,
    ParseMode,
)
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
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from bots.telegram_html import to_html
from core import relay
from core.commands import COMMANDS, parse_command
from core.conversation import REMIND_EVERY, Conversation, Notice, Origin
from core.i18n import UI_LANGUAGES, render
from core.outcome import Attachment, Blocked, Button, Buttons, Note, Unreachable
from core.pacing import ChatPacer, Pacers, scaled
from core.relay import DraftsUnavailable, Limits
from core.settings import Settings
from core.splitting import split_message
from core.tutor import Channel, Learner, Tutor

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
ALERT_LENGTH = CallbackQueryLimit.ANSWER_CALLBACK_QUERY_TEXT_LENGTH  # 200 characters in a button's alert
CAPTION_LENGTH = MessageLimit.CAPTION_LENGTH  # 1024 characters under a file
NETWORK_RETRIES = 2  # extra tries for a send or edit that failed in transit (a 5xx, a timeout)
# Start-up calls that fail in transit are tried again after 1, 2, 4 … s, at most this long apart.
STARTUP_BACKOFF_MAX = 30.0
COMMAND_TRIES = 4  # tries for each command menu before the bot serves without it
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]  # edited messages are never even delivered
# A deep link's `start` payload: 1–64 characters of A-Z a-z 0-9 _ - (base64url of the action, no padding).
_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")

_draft_ids = itertools.count(1)
ApiResult = bool | dict[str, Any] | list[dict[str, Any]]  # what a Bot API call returns, as PTB's limiter sees it


class MessageRateLimiter(AIORateLimiter):
    """Telegram's bot-wide 30 messages a second, sent evenly at 25 a second; what is not a message passes.

    Evenly, because aiolimiter's bucket of 30 lets 60 through in a second after a quiet spell, and Telegram
    answers the 31st with a 429 (the throughput benchmark found it); 25, because calls spaced 1/30 s apart
    arrive bunched by jitter (a busy event loop, the network), and 5 to spare absorbs about 200 ms. Drafts,
    typing and answers to button presses pass freely (drafts and typing paced per chat by the relay): queued
    behind messages they would delay the first words of every reply, or leave a button spinning.
    Per-chat and per-group budgets are the pacers', which know which update is final.
    max_retries=0 hands every RetryAfter to the relay, which waits it out itself.
    """

    NOT_MESSAGES = frozenset({"sendMessageDraft", "sendChatAction", "answerCallbackQuery"})
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
        if endpoint in self.NOT_MESSAGES:
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

    @classmethod
    def parse(cls, channel_id: str) -> Place | None:
        """The place a stored channel id names (`telegram:<chat>` or `telegram:<chat>:<topic>`, as `channel`
        makes them); None for another platform's or a malformed one. Private chats have the user's id, which is
        positive; groups, supergroups and their topics have negative ids."""
        platform, _, rest = channel_id.partition(":")
        chat, _, topic = rest.partition(":")
        if platform != "telegram":
            return None
        try:
            chat_id, topic_id = int(chat), int(topic) if topic else None
        except ValueError:
            return None
        return cls(chat_id, topic_id, chat_id < 0 or topic_id is not None)

    @property
    def channel(self) -> Channel:
        base = f"telegram:{self.chat_id}"
        if self.topic is None:
            return Channel(base, group=self.group)
        return Channel(f"{base}:{self.topic}", group=True, parent=base)


class TelegramChat:
    """One event's way back into its chat: the `core.outcome.Surface` the conversation renders on.

    `send`, `edit` and `draft` are paced by the relay with the chat's pacer; notes and files pace themselves
    with it. For a button press (`query`) the press is answered exactly once, at the first outcome: with an
    alert if that is a private note that fits one, else empty (`settle` answers if nothing was shown).
    `user_id` is the person who caused the event, whose private chat takes what is for them alone.
    """

    def __init__(
        self,
        adapter: TelegramBot,
        place: Place,
        *,
        user_id: int | None,
        question: int | None = None,
        query: CallbackQuery | None = None,
    ) -> None:
        self.adapter = adapter
        self.bot: Bot = adapter.application.bot
        self.place = place
        self.user_id = user_id
        self.budget = adapter.pacer(place)
        self.pacer: ChatPacer | None = self.budget
        self.limits: Limits = adapter.limits(place)
        self.private_here = not place.group  # a group has no private replies: they go to the private chat
        self.question = question  # a group answer quotes the message it answers
        self.reply_to = question  # … in the first message of a reply
        self.query = query
        pressed = query.message if query is not None else None
        self.pressed = pressed.message_id if isinstance(pressed, Message) and _accessible(pressed) else None
        self.answered = query is None
        self.draft_id = next(_draft_ids)

    # The relay's target

    async def send(self, text: str, buttons: Buttons = ()) -> int:
        await self.settle()
        quote = _quote(self.reply_to)
        message = await self._rendered(
            self.bot.send_message,
            text,
            chat_id=self.place.chat_id,
            message_thread_id=self.place.topic,
            reply_parameters=quote,
            reply_markup=self.keyboard(buttons),
        )
        self.reply_to = None
        return message.message_id

    async def edit(self, handle: int, text: str, buttons: Buttons = ()) -> None:
        await self.settle()
        try:
            await self._rendered(
                self.bot.edit_message_text,
                text,
                chat_id=self.place.chat_id,
                message_id=handle,
                reply_markup=self.keyboard(buttons),
            )
        except BadRequest as error:
            if "not modified" not in str(error).lower():  # the same text rendered twice: already shown
                raise

    async def draft(self, text: str) -> None:
        """A live preview; any failure turns this reply into send-then-edit, a refusal this chat for good."""
        await self.settle()
        if self.place.chat_id in self.adapter.no_drafts:
            raise DraftsUnavailable()
        try:
            await self._rendered(
                self.bot.send_message_draft,
                text,
                retries=0,
                chat_id=self.place.chat_id,
                draft_id=self.draft_id,
                message_thread_id=self.place.topic,
            )
        except (BadRequest, InvalidToken, EndPointNotFound) as error:  # PTB reads a 404 as a bad token
            self.adapter.refuse_drafts(self.place)
            raise DraftsUnavailable() from error
        except NetworkError as error:  # a 5xx or a timeout: this reply goes on without drafts
            raise DraftsUnavailable() from error

    async def typing(self) -> None:
        await self.settle()
        await self.bot.send_chat_action(self.place.chat_id, ChatAction.TYPING, message_thread_id=self.place.topic)

    def address(self, handle: int) -> str:
        """A message's id in its chat: what a restart edits (the chat itself is in the stored channel)."""
        return str(handle)

    def recall(self, address: str) -> int:
        return int(address)

    # Notes and files

    async def note(self, note: Note) -> None:
        with self._refused():
            await self._note(note)

    async def attach(self, attachment: Attachment) -> None:
        with self._refused():
            await self.settle()
            if attachment.private and self.place.group and attachment.again:
                await self._privately(lambda chat: chat.file(attachment))
                return
            await self.file(attachment)

    async def _note(self, note: Note) -> None:
        confidential = note.private and self.place.group  # must not be shown to the group
        if note.replaces and self.pressed is not None and not confidential:
            await self.settle()
            await self._replace(self.pressed, note.text, note.buttons)
            return
        if note.private and await self._alert(note):
            return
        await self.settle()
        if confidential and note.again:
            await self._privately(lambda chat: chat.post(note.text, note.buttons))
            return
        await self.post(note.text, note.buttons)  # in a group without `again`: a reply to the person

    @contextlib.contextmanager
    def _refused(self) -> Iterator[None]:
        """A 403 in a private chat: the person blocked the bot (or deleted their account), so nothing unasked
        may be sent there again (core switches their reminders off). In a group it stays Telegram's error."""
        try:
            yield
        except Forbidden as error:
            if self.place.group:
                raise
            raise Blocked() from error

    async def post(self, text: str, buttons: Buttons = ()) -> None:
        """A note as messages of their own (more than one only past 4096 characters; buttons under the last)."""
        parts = split_message(text, MessageLimit.MAX_TEXT_LENGTH) or [text]
        for index, part in enumerate(parts):
            markup = self.keyboard(buttons) if index == len(parts) - 1 else None
            await self._paced(functools.partial(self._send_part, part, markup))

    async def _send_part(self, text: str, markup: InlineKeyboardMarkup | None) -> Message:
        return await self._rendered(
            self.bot.send_message,
            text,
            chat_id=self.place.chat_id,
            message_thread_id=self.place.topic,
            reply_parameters=_quote(self.question),
            reply_markup=markup,
        )

    async def file(self, attachment: Attachment) -> None:
        """An image as a photo, shown in the chat with its caption; any other file as a document. An image
        Telegram will not take as a photo (too large, odd proportions) still arrives, as a document."""
        if attachment.media_type.startswith("image/"):
            try:
                await self.photo(attachment)
                return
            except BadRequest as error:
                if not _unphotogenic(error):
                    raise
                log.warning("photo refused, sent as a document", extra={**_extra(self.place), "error": "BadRequest"})
        await self.document(attachment)

    async def photo(self, attachment: Attachment) -> None:
        await self._upload(self.bot.send_photo, "photo", attachment)

    async def document(self, attachment: Attachment) -> None:
        await self._upload(self.bot.send_document, "document", attachment)

    async def _upload(self, method: Callable[..., Awaitable[Message]], field: str, attachment: Attachment) -> None:
        upload: dict[str, Any] = {field: InputFile(attachment.data, filename=attachment.name)}
        await self._paced(
            lambda: self._rendered(
                method,
                attachment.caption[:CAPTION_LENGTH],  # HTML never shows more than its Markdown source
                field="caption",
                chat_id=self.place.chat_id,
                message_thread_id=self.place.topic,
                reply_parameters=_quote(self.question),
                **upload,
            )
        )

    async def settle(self, text: str = "") -> None:
        """Answer the button press, if it has not been answered yet (Telegram shows a spinner until then)."""
        if self.answered:
            return
        self.answered = True
        await self._answer(text, alert=False)

    def keyboard(self, buttons: Buttons) -> InlineKeyboardMarkup | None:
        if not buttons:
            return None  # on an edit, no markup takes the old keyboard away
        return InlineKeyboardMarkup([[self._button(button) for button in row] for row in buttons])

    # Helpers

    def _button(self, button: Button) -> InlineKeyboardButton:
        if button.opens:
            return InlineKeyboardButton(button.label, url=deep_link(self.bot.username, button.opens))
        return InlineKeyboardButton(button.label, callback_data=button.action)

    async def _alert(self, note: Note) -> bool:
        """A private note as the answer to the press that caused it, if it is the first outcome and fits."""
        text = _plain(note.text)
        if self.answered or note.buttons or not text or len(text) > ALERT_LENGTH:
            return False
        self.answered = True
        await self._answer(text, alert=True)
        return True

    async def _answer(self, text: str, *, alert: bool) -> None:
        assert self.query is not None
        try:
            await self.query.answer(text or None, show_alert=alert or None)
        except TelegramError as error:  # too late (the query expired): nothing to show it on any more
            log.warning("could not answer a button press", extra={**_extra(self.place), "error": type(error).__name__})

    async def _replace(self, message_id: int, text: str, buttons: Buttons) -> None:
        """The pressed message shows `text` instead, with `buttons` or none."""
        first, *rest = split_message(text, MessageLimit.MAX_TEXT_LENGTH) or [text]
        try:
            await self._paced(
                lambda: self._rendered(
                    self.bot.edit_message_text,
                    first,
                    chat_id=self.place.chat_id,
                    message_id=message_id,
                    reply_markup=None if rest else self.keyboard(buttons),
                )
            )
        except BadRequest as error:
            if "not modified" not in str(error).lower():
                raise
        if rest:
            await self.post("\n\n".join(rest), buttons)

    async def _privately(self, show: Callable[[TelegramChat], Awaitable[None]]) -> None:
        """Show something in the person's private chat; `Unreachable` if Telegram will not let us write there."""
        if self.user_id is None:  # an anonymous admin, speaking as the group: no private chat to write to
            raise Unreachable()
        private = TelegramChat(self.adapter, Place(self.user_id, None, group=False), user_id=self.user_id)
        try:
            await show(private)
        except Forbidden as error:  # never started the bot, or blocked it
            raise Unreachable() from error
        except BadRequest as error:
            if "chat not found" not in str(error).lower():
                raise
            raise Unreachable() from error

    async def _paced(self, call: Callable[[], Awaitable[T]]) -> T:
        """Wait for the chat's budget like a final text does; a flood wait delays, never drops, the call."""
        while True:
            await self.budget.acquire(urgent=True)
            try:
                return await call()
            except relay.RetryAfter as wait:
                self.budget.pause(wait.seconds)
                await asyncio.sleep(wait.seconds)

    async def _rendered(
        self,
        method: Callable[..., Awaitable[T]],
        markdown: str,
        *,
        field: str = "text",
        retries: int = NETWORK_RETRIES,
        **kwargs: Any,
    ) -> T:
        try:
            html_kwargs = {field: to_html(markdown), "parse_mode": ParseMode.HTML}
            return await self._call(lambda: method(**html_kwargs, **kwargs), retries)
        except BadRequest as error:
            reason = str(error).lower()
            if "can't parse entities" not in reason and "text is empty" not in reason:
                raise
            log.warning("html refused, sent as plain text", extra={**_extra(self.place), "error": "BadRequest"})
            return await self._call(lambda: method(**{field: markdown}, **kwargs), retries)

    async def _call(self, call: Callable[[], Awaitable[T]], retries: int = NETWORK_RETRIES) -> T:
        """Telegram's RetryAfter as the relay's; a failure in transit is tried again a couple of times."""
        for attempt in itertools.count():
            try:
                return await call()
            except RetryAfter as error:
                log.warning("flood wait of %g s", _seconds(error), extra={**_extra(self.place), "error": "RetryAfter"})
                raise relay.RetryAfter(_seconds(error) * self.adapter.scale) from error
            except NetworkError as error:
                if isinstance(error, BadRequest) or attempt >= retries:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")


class TelegramBot:
    """The handlers, the per-chat flood budgets and the chats that refused drafts, of one running bot."""

    def __init__(
        self, tutor: Tutor, settings: Settings, *, time_scale: float = 1.0, remind_every: float = REMIND_EVERY
    ) -> None:
        if settings.telegram_token is None:
            raise ValueError("POLYGLOTT_TELEGRAM_TOKEN is not set")
        self.tutor = tutor
        self.settings = settings
        self.scale = time_scale
        self.remind_every = remind_every  # seconds between core's looks for learners to remind (not Telegram's)
        self.conversation = Conversation(tutor)
        self.pacers = Pacers()
        self.no_drafts: set[int] = set()  # private chats where Telegram refused a draft
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
        commands = [spec.name for spec in COMMANDS]
        self.application.add_handler(TypeHandler(Update, self.gate), group=-1)
        self.application.add_handler(CommandHandler(commands, self.on_command, filters=new))
        self.application.add_handler(MessageHandler(new & filters.COMMAND, self.on_unknown_command))
        self.application.add_handler(MessageHandler(new & filters.TEXT, self.on_text))
        self.application.add_handler(MessageHandler(new, self.on_other))
        self.application.add_handler(CallbackQueryHandler(self.on_button))
        self.application.add_error_handler(self.on_error)

    # Lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop`; then take no more updates, let replies in progress finish, and close.

        At start, what a crash left half-shown is finished and unanswered questions are answered (`recover`)
        before the first update is fetched; an update Telegram delivers again (its offset was never confirmed)
        is stored once by its message id and not answered twice. Then reminders go out in the background until
        the stop. Telegram failing in transit at start (a 5xx, a timeout) is waited out with backoff; a refused
        token is fatal.
        """
        application = self.application
        menu: asyncio.Task[None] | None = None
        reminders: asyncio.Task[None] | None = None
        try:
            try:
                if not await self._patiently(application.initialize, "getMe", stop):
                    return
            except InvalidToken:
                log.error(
                    "Telegram refused the bot token: check POLYGLOTT_TELEGRAM_TOKEN (from @BotFather)",
                    extra={"adapter": "telegram", "error": "InvalidToken"},
                )
                raise
            await application.start()
            try:
                menu = asyncio.create_task(self.register_commands())
                await self.conversation.recover("telegram", self.revive)
                reminders = asyncio.create_task(self.conversation.reminding("telegram", self.revive, self.remind_every))
                if await self._receive(stop):
                    log.info("serving", extra={"adapter": "telegram"})
                    await stop.wait()
            finally:
                if menu is not None:
                    menu.cancel()
                    await asyncio.gather(menu, return_exceptions=True)
                if application.updater and application.updater.running:
                    await application.updater.stop()
                await self.conversation.finish(self.settings.shutdown_grace)  # a reminder being sent finishes too
                if reminders is not None:
                    reminders.cancel()
                    await asyncio.gather(reminders, return_exceptions=True)
                await application.stop()
        finally:
            await application.shutdown()
            await application.bot.shutdown()  # a start that failed half-way leaves the bot's HTTP clients open

    async def revive(self, channel_id: str, quoted: str | None) -> TelegramChat | None:
        """A surface on a stored channel, for `Conversation.recover`; in a group its first message quotes the
        learner's message `quoted` (a message id), as a live answer does."""
        place = Place.parse(channel_id)
        if place is None:
            return None
        question = int(quoted) if place.group and quoted and quoted.isdigit() else None
        return TelegramChat(self, place, user_id=None, question=question)

    async def register_commands(self) -> None:
        """The command menu in every UI language, and by default in the bot's default language. In the
        background: a failure costs the menu only (Telegram keeps the one an earlier start set), so a list
        is tried a few times; if it still fails, Telegram is down and the rest is left too, with a warning."""
        lists: list[tuple[str | None, str]] = [(code, code) for code in UI_LANGUAGES]
        lists.append((None, self.tutor.default_native.code))
        for language_code, language in lists:
            commands = [
                BotCommand(spec.name, render(spec.description, language)[: BotCommandLimit.MAX_DESCRIPTION])
                for spec in COMMANDS
            ]
            try:
                async for attempt in self._retrying("setMyCommands", tries=COMMAND_TRIES):
                    with attempt:
                        await self.application.bot.set_my_commands(commands, language_code=language_code)
            except TelegramError as error:
                log.warning(
                    "could not register the commands for %s; the menu stays as it was",
                    language_code or "everyone",
                    extra={"adapter": "telegram", "error": type(error).__name__},
                )
                return

    async def _patiently(self, call: Callable[[], Awaitable[object]], method: str, stop: asyncio.Event) -> bool:
        """`call` until it succeeds (True) or `stop` is set (False). A failure in transit is tried again with
        backoff; any other (a refused token, a webhook URL Telegram rejects) is raised."""
        try:
            async for attempt in self._retrying(method, stop=stop):
                with attempt:
                    await call()
        except TelegramError:
            if stop.is_set():
                return False
            raise
        return not stop.is_set()

    def _retrying(self, method: str, *, stop: asyncio.Event | None = None, tries: int = 0) -> AsyncRetrying:
        """tenacity's loop for a start-up call: transient failures only, waits of 1, 2, 4 … up to 30 s (scaled;
        a flood wait as long as Telegram asks), until `tries` are spent (0: no limit) or `stop` is set."""
        scale = self.scale

        def wait(state: RetryCallState) -> float:
            backoff = min(STARTUP_BACKOFF_MAX, 2.0 ** (state.attempt_number - 1)) * scale
            error = state.outcome.exception() if state.outcome else None
            return max(backoff, _seconds(error) * scale) if isinstance(error, RetryAfter) else backoff

        def enough(state: RetryCallState) -> bool:
            return (stop is not None and stop.is_set()) or (tries > 0 and state.attempt_number >= tries)

        async def pause(seconds: float) -> None:  # a stop during the wait ends it at once
            if stop is None:
                await asyncio.sleep(seconds)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)

        def warn(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "Telegram failed on %s, trying again in %.1f s",
                method,
                state.next_action.sleep if state.next_action else 0.0,
                extra={"adapter": "telegram", "error": type(error).__name__},
            )

        return AsyncRetrying(
            retry=retry_if_exception(_transient), stop=enough, wait=wait, sleep=pause, before_sleep=warn, reraise=True
        )

    async def _receive(self, stop: asyncio.Event) -> bool:
        """Start fetching updates (False: `stop` came first), patiently. Polling: any webhook is deleted by our
        own call first (PTB's bootstrap repeats it, trying again for as long as it takes, and its polling loop
        tries again after any failure). Webhook: PTB's start sets the webhook as it starts its server, so the
        whole start is tried again when that fails in transit (PTB logs each failed try too)."""
        updater = self.application.updater
        assert updater is not None
        url = self.settings.telegram_webhook_url
        if not url:
            if not await self._patiently(self.application.bot.delete_webhook, "deleteWebhook", stop):
                return False
            await updater.start_polling(
                allowed_updates=ALLOWED_UPDATES, bootstrap_retries=-1, error_callback=_polling_failed
            )
            return True
        host, _, port = self.settings.telegram_webhook_listen.rpartition(":")
        secret = self.settings.telegram_webhook_secret
        start_webhook = functools.partial(
            updater.start_webhook,
            listen=host.strip("[]") or "127.0.0.1",
            port=int(port),
            url_path=urlsplit(url).path.strip("/"),
            webhook_url=url,
            secret_token=secret.get_secret_value() if secret else None,
            allowed_updates=ALLOWED_UPDATES,
        )
        return await self._patiently(start_webhook, "setWebhook", stop)

    # Every update

    async def gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Runs first: turns away chats off the allow-list (only what was meant for us gets an answer)."""
        chat, allowed = update.effective_chat, self.settings.telegram_allowed_chats
        if not allowed or chat is None or chat.id in allowed:
            return
        log.info("chat not allowed", extra={"adapter": "telegram", "channel": f"telegram:{chat.id}"})
        if update.callback_query:
            pressed = self._pressed(update.callback_query)
            if pressed is not None:
                origin, surface = pressed
                try:
                    await self.conversation.notice(origin, Notice.NOT_ALLOWED, surface)
                finally:
                    await surface.settle()
        elif update.message and self._addressed(update.message, commands=True):
            origin, surface = self._event(update.message)
            await self.conversation.notice(origin, Notice.NOT_ALLOWED, surface)
        raise ApplicationHandlerStop

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log what failed and where, never the text; the chat gets an apology, never a traceback. Never raises:
        Telegram may be what is failing."""
        try:
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
            # on_button apologised for a press already; a chat that refused us will refuse an apology too.
            refused = isinstance(error, Forbidden | Blocked)
            if not isinstance(update, Update) or place is None or update.callback_query or refused:
                return
            user = update.effective_user
            message = update.effective_message
            surface = TelegramChat(
                self,
                place,
                user_id=user.id if user else None,
                question=message.message_id if message is not None and place.group else None,
            )
            await surface.post(self.conversation.apology(user.language_code if user else None))
        except Exception:  # the log line (if it was written) is all that is left
            pass

    # Messages

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        assert message is not None and message.text is not None
        place = Place.of(message)
        addressed = self._addressed(message)
        if place.group and not addressed and not await self._answers_all(place):
            return
        text = re.sub(rf"@{re.escape(self._username)}\b[,:]?", "", message.text, flags=re.IGNORECASE).strip()
        origin, surface = self._event(message)
        # Only heard because the classroom answers every message: answered, but nothing in it is remembered.
        origin = replace(origin, direct=addressed)
        # The message id: an update Telegram delivers again after a crash is not answered twice.
        await self.conversation.message(origin, text, surface, source=str(message.message_id))

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, voice notes…: core says what works today; in a group only when meant for us."""
        message = update.message
        assert message is not None
        if Place.of(message).group and not self._addressed(message):
            return
        origin, surface = self._event(message)
        await self.conversation.notice(origin, Notice.NOT_TEXT, surface)

    async def on_unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        assert message is not None and message.text is not None
        command = parse_command(message.text, self._username)
        # In a group a bare /command may be meant for another bot; answer only what names us.
        if command is None or (Place.of(message).group and "@" not in message.text.split()[0]):
            return
        origin, surface = self._event(message)
        await self.conversation.unknown_command(origin, command.name, surface)

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command; `/start <payload>` in a private chat is a deep link's way in and presses its action."""
        message = update.message
        assert message is not None and message.text is not None
        command = parse_command(message.text, self._username)
        assert command is not None  # CommandHandler already checked it is ours
        origin, surface = self._event(message)
        if command.name == "start" and command.args and not origin.channel.group:
            action = opened(command.args[0])
            if action is not None:
                await self.conversation.follow(origin, action, surface)
                return
        await self.conversation.command(origin, command.name, command.args, surface)

    # Buttons

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button's `callback_data` is a core action, however old the message; every press is answered once."""
        query = update.callback_query
        assert query is not None
        pressed = self._pressed(query)
        if pressed is None:  # a button under an inline message: we send none, so it cannot be ours
            await query.answer()
            return
        origin, surface = pressed
        try:
            if not _accessible(query.message) or not query.data:  # too old for Telegram to show us
                await self.conversation.notice(origin, Notice.EXPIRED, surface)
            else:
                await self.conversation.press(origin, query.data, surface)
        except Exception:
            await self._apologise(surface, origin)
            raise  # for on_error's log line
        finally:
            await surface.settle()

    async def _apologise(self, surface: TelegramChat, origin: Origin) -> None:
        """A press that failed: the apology as its answer, or in the chat if the press was answered already."""
        apology = self.conversation.apology(origin.locale)
        try:
            if surface.answered:
                await surface.post(apology)
            else:
                await surface.settle(apology)
        except Exception as error:  # Telegram itself is failing: on_error's log line is all that is left
            log.warning("could not apologise", extra={**_extra(surface.place), "error": type(error).__name__})

    # Parsing

    @property
    def _username(self) -> str:
        return str(self.application.bot.username)

    def pacer(self, place: Place) -> ChatPacer:
        windows = GROUP_WINDOWS if place.group else PRIVATE_WINDOWS
        return self.pacers.get(str(place.chat_id), scaled(windows, self.scale))

    def limits(self, place: Place) -> Limits:
        base = GROUP_LIMITS if place.group else replace(PRIVATE_LIMITS, use_drafts=place.chat_id not in self.no_drafts)
        return replace(
            base, edit_interval=base.edit_interval * self.scale, draft_interval=base.draft_interval * self.scale
        )

    def refuse_drafts(self, place: Place) -> None:
        if place.chat_id not in self.no_drafts:
            self.no_drafts.add(place.chat_id)
            log.info("drafts refused: sending then editing in this chat from now on", extra=_extra(place))

    def _event(self, message: Message) -> tuple[Origin, TelegramChat]:
        """A message's origin, and the surface that answers it (quoting it, in a group)."""
        place = Place.of(message)
        user = message.from_user
        speaker = None if message.sender_chat is not None or user is None else user.id
        surface = TelegramChat(self, place, user_id=speaker, question=message.message_id if place.group else None)
        sender_chat = message.sender_chat.id if message.sender_chat is not None else None
        return self._origin(place, _learner(message), user, sender_chat), surface

    def _pressed(self, query: CallbackQuery) -> tuple[Origin, TelegramChat] | None:
        """A button press's origin (the presser, not the message's author) and its surface."""
        message = query.message
        if message is None:
            return None
        if isinstance(message, Message) and _accessible(message):
            place = Place.of(message)
        else:  # an inaccessible message still names its chat
            place = Place(message.chat.id, None, message.chat.type != ChatType.PRIVATE)
        user = query.from_user
        surface = TelegramChat(self, place, user_id=user.id, query=query)
        return self._origin(place, _user_learner(user), user, None), surface

    def _origin(self, place: Place, learner: Learner, user: User | None, sender_chat: int | None) -> Origin:
        async def may_teach() -> bool:
            return await self._may_teach(place, user.id if user else None, sender_chat)

        async def teaches(channel: str) -> bool:
            return await self._teaches(channel, user.id if user else None)

        return Origin(
            place.channel,
            learner,
            "telegram",
            locale=user.language_code if user else None,
            may_teach=may_teach,
            hears_all=bool(self.application.bot.can_read_all_group_messages),
            teaches=teaches,
        )

    async def _answers_all(self, place: Place) -> bool:
        """A classroom on `/classroom on`, where the bot can see every message (Group Privacy off)."""
        return bool(self.application.bot.can_read_all_group_messages) and await self.conversation.answers_all(
            place.channel
        )

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

    async def _may_teach(self, place: Place, user_id: int | None, sender_chat: int | None) -> bool:
        """The group's creator or an administrator, asked of Telegram each time: a demoted admin loses it at once."""
        if not place.group or sender_chat == place.chat_id:  # a private chat, or an anonymous admin as the group
            return True
        if user_id is None:
            return False
        try:
            member = await self.application.bot.get_chat_member(place.chat_id, user_id)
        except TelegramError as error:
            log.warning("admin check failed", extra={**_extra(place), "error": type(error).__name__})
            return False
        return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)

    async def _teaches(self, channel_id: str, user_id: int | None) -> bool:
        """Whether a user is an admin of another chat, a group (a report's link is followed in the private chat):
        asked of Telegram, which answers for any group the bot is in, whichever chat the question comes from."""
        place = Place.parse(channel_id)
        if place is None or not place.group or user_id is None:
            return False
        return await self._may_teach(place, user_id, None)


def build_application(
    tutor: Tutor, settings: Settings, *, time_scale: float = 1.0
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The PTB Application with every handler registered, for a caller that runs it itself."""
    return TelegramBot(tutor, settings, time_scale=time_scale).application


async def serve(
    tutor: Tutor,
    settings: Settings,
    stop: asyncio.Event,
    *,
    time_scale: float = 1.0,
    remind_every: float = REMIND_EVERY,
) -> None:
    """The `polyglott run` adapter contract (see bots/cli.py)."""
    await TelegramBot(tutor, settings, time_scale=time_scale, remind_every=remind_every).run(stop)


def deep_link(bot_username: str, action: str) -> str:
    """A link that opens the private chat with the bot and sends `/start <payload>`, which presses `action`."""
    payload = base64.urlsafe_b64encode(action.encode()).decode().rstrip("=")
    return f"https://t.me/{bot_username}?start={payload}"


def opened(payload: str) -> str | None:
    """The action a deep link's payload carries (base64url, as `opens` buttons encode it); None for a payload
    that is not one of ours. Which actions a link may press is core's call (`Conversation.follow`)."""
    if not _PAYLOAD.fullmatch(payload):
        return None
    try:
        action = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    return action


def _learner(message: Message) -> Learner:
    if message.sender_chat is not None:  # an anonymous admin or a linked channel speaks as a chat
        chat = message.sender_chat
        return Learner(f"telegram:chat:{chat.id}", chat.title or chat.username or str(chat.id))
    user = message.from_user
    assert user is not None
    return _user_learner(user)


def _user_learner(user: User) -> Learner:
    return Learner(f"telegram:user:{user.id}", user.first_name)


def _accessible(message: object) -> bool:
    """A message Telegram still shows us (one too old comes as an `InaccessibleMessage`, or with date 0)."""
    return isinstance(message, Message) and message.is_accessible


def _quote(message_id: int | None) -> ReplyParameters | None:
    return ReplyParameters(message_id, allow_sending_without_reply=True) if message_id else None


def _plain(markdown: str) -> str:
    """What Markdown looks like without formatting: an alert shows text as it is."""
    return html.unescape(re.sub(r"<[^>]+>", "", to_html(markdown))).strip()


def _place(update: object) -> Place | None:
    if not isinstance(update, Update):
        return None
    message = update.effective_message
    return Place.of(message) if isinstance(message, Message) else None


def _extra(place: Place) -> dict[str, str]:
    return {"adapter": "telegram", "channel": place.channel.id}


def _unphotogenic(error: BadRequest) -> bool:
    """Telegram refused an image as a photo (over 10 MB, width and height over 10,000 together, a ratio over
    20, or not an image it can read: PHOTO_SAVE_FILE_INVALID, PHOTO_INVALID_DIMENSIONS, IMAGE_PROCESS_FAILED);
    as a document it takes it."""
    reason = str(error).lower()
    return "photo" in reason or "image" in reason


def _transient(error: BaseException) -> bool:
    """A failure in transit (a 5xx, a timeout, a dropped connection) or a flood wait: worth another try. PTB
    raises `NetworkError` for every 5xx; `BadRequest` is one too, but trying it again changes nothing."""
    return isinstance(error, RetryAfter) or (isinstance(error, NetworkError) and not isinstance(error, BadRequest))


def _polling_failed(error: TelegramError) -> None:
    """PTB's polling loop tries again by itself (with backoff); one line instead of its traceback. Never raises."""
    log.warning("polling failed, trying again", extra={"adapter": "telegram", "error": type(error).__name__})


def _seconds(error: RetryAfter) -> float:
    """retry_after in seconds, whether PTB hands it over as int or timedelta (without its deprecation warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)
