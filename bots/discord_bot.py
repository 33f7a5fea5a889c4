"""Polyglott on Discord: events in, the conversation's outcomes out, within Discord's limits.

The adapter decides nothing about tutoring and writes no words of its own. It turns a message (DMs: always;
servers: an @mention, a reply to the bot, or any message in a channel a teacher put on /classroom), a slash
command or a button press into one call on `core.conversation.Conversation`, with a surface that renders
what comes back: replies quote the learner's message and are edited at most once a second within one budget
per channel; slash commands and buttons answer their interaction (ephemeral for what is private).

Every message a reply shows is remembered by its id (`address`); after a restart core edits it through its
channel (`recall`, `revive`), which works for interaction responses too; core's reminders go out on revived DM
channels, and Discord's 50007 there (the person closed their DMs or blocked the bot) is core's `Blocked`.
Files go as attachments (an image shows inline). Discord's passing failures at start (5xx, network errors)
are retried with backoff; a refused token stops the bot with a line that says so.

Time: Discord's windows and edit cadence are multiplied by `time_scale` (1.0 in production); tests shrink
the fake Discord's clock with `FakeDiscord(time_scale=s)` and pass the same `s` to `build_bot`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import replace
from io import BytesIO
from types import SimpleNamespace
from typing import Any, Literal, TypeVar

import aiohttp
import discord
from discord import app_commands
from discord.utils import MISSING
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential, wait_random

from core.commands import BY_NAME, COMMANDS, OPTIONS, parse_command
from core.conversation import MAX_DAILY_CAP, REMIND_EVERY, SAVE_CHARS, Conversation, Notice, Origin
from core.i18n import UI_LANGUAGES, Msg, language_name, render, ui_language
from core.languages import Language, suggest
from core.lesson import Level
from core.outcome import Attachment, Blocked, Buttons, Note, Unreachable
from core.pacing import ChatPacer, Pacers, scaled
from core.relay import Limits, RetryAfter
from core.scenes import suggest as suggest_scenes
from core.settings import Settings
from core.splitting import split_message
from core.tutor import Channel, Learner, Tutor

log = logging.getLogger(__name__)
T = TypeVar("T")

# Discord allows about 5 message creates and 5 edits per 5 s in a channel (undocumented), and discord.py
# sleeps through a 429 instead of failing, so the bot must never reach it: one budget of 4 per 5 s for
# sends and edits together leaves headroom for clock skew between us and Discord.
WINDOWS: tuple[tuple[int, float], ...] = ((4, 5.0),)
# Discord's global limit is 50 requests a second for the whole bot (interaction callbacks and webhooks
# aside). Every authorized request waits for this budget at the moment it leaves (an aiohttp trace hook
# inside discord.py's HTTP path), spaced 1/40 s apart: no burst, and 20 % headroom for the jitter between
# leaving here and arriving there.
BOT_WINDOWS: tuple[tuple[int, float], ...] = ((40, 1.0), (1, 1 / 40))  # 40 a second, one every 25 ms
LIMITS = Limits(max_length=2000, edit_interval=1.0)
RETRY_AFTER = 1.0  # seconds, when a 429 outlasted discord.py's own retries
ANSWER_WITHIN = 2.0  # wall-clock seconds: Discord drops an interaction not answered within 3 s
TEXT_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)
TELEGRAM_ONLY = frozenset({"start"})  # Discord opens a bot's DM without a /start
BUTTON_ROWS, BUTTONS_PER_ROW, LABEL_LENGTH = 5, 5, 80  # Discord's component limits
BUTTON_TEMPLATE = r"pg:(?P<action>.+)"  # a button's custom_id: "pg:" and the action (≤ 64 bytes of 100)
START_RETRY = (1.0, 60.0)  # seconds: the first wait after a failed start-up step, and the longest
CANNOT_MESSAGE_USER = 50007  # Discord's code for a DM the person does not accept (closed DMs, the bot blocked)
IDENTIFY_EVERY = 5.0  # seconds between two shards' IDENTIFYs (Discord's max_concurrency of 1, as discord.py waits)
_ADAPTER = {"adapter": "discord"}

Interaction = discord.Interaction["Polyglott"]
# Where the bot writes: every channel kind a message or an interaction can come from, or a revived one is fetched as.
Writable = (
    discord.TextChannel
    | discord.VoiceChannel
    | discord.StageChannel
    | discord.Thread
    | discord.DMChannel
    | discord.PartialMessageable
)
Sent = discord.InteractionMessage | discord.WebhookMessage | discord.PartialMessage  # what an interaction edits
Run = Callable[["InteractionSurface"], Awaitable[None]]

# Whether the request being made is urgent for the bot-wide budget (typing is not), read by the trace hook.
_urgent: ContextVar[bool] = ContextVar("polyglott_discord_urgent", default=True)


class Polyglott(discord.Client):
    """The Discord client: message events, the slash-command tree, buttons, and the update budgets."""

    def __init__(
        self,
        tutor: Tutor,
        settings: Settings,
        *,
        time_scale: float = 1.0,
        remind_every: float = REMIND_EVERY,
        shard_count: int | None = None,
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = settings.discord_message_content  # privileged: see POLYGLOTT_DISCORD_MESSAGE_CONTENT
        budget = ChatPacer(scaled(BOT_WINDOWS, time_scale))
        # Model output must never ping @everyone, a role or a user, nor the learner it replies to.
        super().__init__(
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            http_trace=_paced_by(budget),
            shard_count=shard_count,
        )
        self.budget = budget
        self.tutor = tutor
        self.settings = settings
        self.conversation = Conversation(tutor)
        self.time_scale = time_scale
        self.windows = scaled(WINDOWS, time_scale)
        self.limits = replace(LIMITS, edit_interval=LIMITS.edit_interval * time_scale)
        self.pacers = Pacers()
        self.tree: app_commands.CommandTree[Polyglott] = app_commands.CommandTree(self)
        for command in APP_COMMANDS:
            self.tree.add_command(command)
        self.tree.interaction_check = self.admit  # type: ignore[method-assign]
        self.tree.on_error = self.on_command_error  # type: ignore[method-assign]
        self._recovered = False  # recovery runs once a process, at the first connection
        self.remind_every = remind_every  # seconds between core's looks for learners to remind
        self._reminders: asyncio.Task[None] | None = None  # core's reminder pass, from the first connection on

    # Lifecycle

    async def setup_hook(self) -> None:
        """Buttons of any age find their handler; commands are published globally (Discord may take a while to
        show changes everywhere) and to each configured server, where they appear at once."""
        self.add_dynamic_items(Press)
        await self.tree.set_translator(Translator())
        await self._sync(None)
        for guild_id in self.settings.discord_guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self._sync(guild)

    async def _sync(self, guild: discord.Object | None) -> None:
        """Publish the commands; a failure (a listed server the bot is not in, Discord having a bad minute) leaves
        the bot serving with the commands it had, and a warning."""
        scope, extra = guild.id if guild else "all servers", {"adapter": "discord"}
        try:
            synced = await self.tree.sync(guild=guild)
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("could not sync commands to %s (%s)", scope, _described(error), extra=extra)
            return
        log.info("synced %d commands to %s", len(synced), scope, extra=extra)

    async def begin(self, token: str) -> None:
        """`start` that survives Discord's hiccups at start: a 5xx, a network error or a timeout while logging in
        or opening the gateway is tried again with backoff, for as long as it takes. A refused token is not.

        discord.py retries 500/502/504 a few times within a request and reconnects a gateway it lost, but not a
        503, a refused connection, or a failure of the very first gateway handshake (Rapptz/discord.py#10520).
        """
        await self._retrying("log in to Discord", lambda: self._log_in(token), _transient)
        await self._retrying("connect to Discord's gateway", self.connect, self._first_connection_failed)

    async def _log_in(self, token: str) -> None:
        try:
            await self.login(token)
        except Exception:
            # Each login opens an HTTP session of its own, closing its connector with it when closed.
            await self.http.close()
            self.http.connector = MISSING
            raise

    def _first_connection_failed(self, error: BaseException) -> bool:
        """The gateway's first handshake failed for a passing reason. discord.py then ends its reconnect loop with
        an AttributeError raised while handling the real error; later losses it handles itself."""
        if self.ws is not None:
            return False
        cause = _masked(error)
        return cause is not None and _transient(cause)

    async def _retrying(
        self, what: str, step: Callable[[], Awaitable[None]], transient: Callable[[BaseException], bool]
    ) -> None:
        def before_sleep(state: RetryCallState) -> None:
            error = _masked(state.outcome.exception()) if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning("could not %s (%s): trying again in %.1f s", what, _described(error), wait, extra=_ADAPTER)

        scale = self.time_scale
        retrying = AsyncRetrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential(multiplier=START_RETRY[0] * scale, max=START_RETRY[1] * scale)
            + wait_random(0, scale),
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await step()

    async def on_ready(self) -> None:
        """Connected (again): the first time in this process, finish what a crash or a stop left undone, then
        start sending reminders."""
        log.info("connected as %s to %d servers", self.user, len(self.guilds), extra=_ADAPTER)
        if not self._recovered:
            self._recovered = True
            await self.conversation.recover("discord", self.revive, self.owns)
            if not self.is_closed() and self.reminds:
                self._reminders = asyncio.create_task(
                    self.conversation.reminding("discord", self.revive, self.remind_every)
                )

    @property
    def reminds(self) -> bool:
        """Whether this process sends core's reminders: one process of the bot does, or each learner would get
        one per process."""
        return True

    async def close(self) -> None:
        """Stop sending reminders (one being sent finishes first, when `Conversation.finish` ran before), then
        close the connection."""
        if self._reminders is not None:
            self._reminders.cancel()
            await asyncio.gather(self._reminders, return_exceptions=True)
            self._reminders = None
        await super().close()

    def owns(self, channel_id: str, group: bool) -> bool:
        """Unsharded, one process serves every channel."""
        return True

    async def revive(self, channel_id: str, quoted: str | None) -> MessageSurface | None:
        """A surface on a stored channel (`discord:<id>`, a DM too) whose first message quotes the message
        `quoted`; None if the channel is gone or the bot may no longer see it."""
        number = channel_id.removeprefix("discord:")
        if not number.isdigit():
            return None
        channel: Any = self.get_channel(int(number))
        if channel is None:
            try:
                channel = await _request(self.fetch_channel(int(number)), self.time_scale)
            except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as error:
                log.info(
                    "not recovered: channel unavailable (%s)", _described(error), extra=_extra(Channel(channel_id))
                )
                return None
        if not isinstance(channel, Writable):  # a category or a forum: nothing was ever written there
            return None
        quote = None
        if quoted and quoted.isdigit():
            quote = discord.MessageReference(message_id=int(quoted), channel_id=channel.id, fail_if_not_exists=False)
        return MessageSurface(self, channel, quote=quote, in_guild=getattr(channel, "guild", None) is not None)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """A bug in an event handler: one line without the message, and the bot carries on."""
        error = sys.exc_info()[1]
        log.error(
            "%s failed",
            event_method,
            extra={"adapter": "discord", "error": type(error).__name__},
            exc_info=error if self.settings.log_content else None,  # a traceback may quote a message
        )

    # Messages

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.conversation.closing or message.type not in TEXT_MESSAGES:
            return  # other bots, our own echoes, joins, pins, thread starters…
        channel = channel_of(message.channel, in_guild=message.guild is not None)
        addressed = self._addressed(message)
        allowed = message.guild is None or self._allowed(message.guild.id)
        if not addressed and not (allowed and await self._answers_all(channel)):
            return
        origin = Origin(
            channel,
            learner_of(message.author),
            "discord",
            None,  # a message event does not say which language the author's app is in
            self._may_teach(lambda: _channel_permissions(message), lambda: getattr(message.author, "roles", ())),
            bool(self.intents.message_content),
            direct=addressed,  # heard only because the classroom answers all: not said to the tutor
        )
        surface = MessageSurface.of(self, message)
        try:
            await self._converse(message, origin, surface, addressed=addressed, allowed=allowed)
        except discord.HTTPException as error:  # e.g. a channel where the bot may read but not write
            log.warning("discord refused (code %s)", error.code, extra=_extra(channel, type(error).__name__))

    async def _converse(
        self, message: discord.Message, origin: Origin, surface: MessageSurface, *, addressed: bool, allowed: bool
    ) -> None:
        conversation = self.conversation
        if not allowed:
            log.info("server not allowed", extra=_extra(origin.channel))
            await conversation.notice(origin, Notice.NOT_ALLOWED, surface)
            return
        text = self._text(message)
        if not text:
            if addressed and (message.attachments or message.stickers or message.embeds):
                await conversation.notice(origin, Notice.NOT_TEXT, surface)
            elif addressed and origin.channel.group and not self.intents.message_content and not message.mentions:
                await conversation.notice(origin, Notice.UNREAD, surface)  # a reply with its ping off: no text
            return
        command = parse_command(text)
        if command is None:
            await conversation.message(origin, text, surface, source=str(message.id))
        elif command.name in BY_NAME:  # "@Polyglott /mydata" works like the slash command
            await conversation.command(origin, command.name, command.args, surface)
        else:
            await conversation.unknown_command(origin, command.name, surface)

    def _addressed(self, message: discord.Message) -> bool:
        """A DM, an @mention of the bot, or a reply to one of its messages."""
        me = self.user
        assert me is not None
        if message.guild is None or any(user.id == me.id for user in message.mentions):
            return True
        replied = message.reference.resolved if message.reference else None
        return isinstance(replied, discord.Message) and replied.author.id == me.id

    async def _answers_all(self, channel: Channel) -> bool:
        """A channel a teacher put on /classroom, if the bot can read what is said there at all."""
        if not channel.group or not self.intents.message_content:
            return False
        return await self.conversation.answers_all(channel)

    def _text(self, message: discord.Message) -> str:
        """The message as the tutor reads it: the bot's mention gone, anyone else's as @name."""
        me = self.user
        assert me is not None
        names = {user.id: user.display_name for user in message.mentions}

        def readable(match: re.Match[str]) -> str:
            user_id = int(match[1])
            return "" if user_id == me.id else f"@{names.get(user_id, 'someone')}{match[2]}"

        return re.sub(r"<@!?(\d+)>([,:]?)", readable, message.content).strip()

    def _allowed(self, guild_id: int) -> bool:
        allowed = self.settings.discord_allowed_guilds
        return not allowed or guild_id in allowed

    def _may_teach(
        self, permissions: Callable[[], discord.Permissions], roles: Callable[[], Iterable[discord.Role]]
    ) -> Callable[[], Awaitable[bool]]:
        """Manage Channels, or the configured teacher role (named in any case), as they are when core asks."""

        async def may_teach() -> bool:
            if permissions().manage_channels:
                return True
            role = (self.settings.discord_teacher_role or "").casefold()
            return bool(role) and any(r.name.casefold() == role for r in roles())

        return may_teach

    # Slash commands and buttons

    def origin_of(self, interaction: Interaction) -> Origin:
        return Origin(
            interaction_channel(interaction),
            learner_of(interaction.user),
            "discord",
            str(interaction.locale),
            self._may_teach(lambda: interaction.permissions, lambda: getattr(interaction.user, "roles", ())),
            bool(self.intents.message_content),
        )

    async def command(self, interaction: Interaction, name: str, args: Sequence[str]) -> None:
        origin = self.origin_of(interaction)
        await self.answer(interaction, lambda surface: self.conversation.command(origin, name, args, surface))

    async def press(self, interaction: Interaction, action: str) -> None:
        origin = self.origin_of(interaction)
        if interaction.guild_id is not None and not self._allowed(interaction.guild_id):
            log.info("server not allowed", extra=_extra(origin.channel))
            await self.answer(interaction, lambda s: self.conversation.notice(origin, Notice.NOT_ALLOWED, s))
            return
        await self.answer(interaction, lambda surface: self.conversation.press(origin, action, surface))

    async def answer(self, interaction: Interaction, run: Run) -> None:
        """Run `run` on an interaction's surface; whatever happens, the interaction is answered exactly once
        (in time, and with an apology if nothing else came of it)."""
        surface = InteractionSurface(self, interaction)
        keeper = asyncio.create_task(surface.acknowledge_after(ANSWER_WITHIN))
        failed = False
        try:
            await run(surface)
        except Exception as error:
            failed = True
            extra = _extra(interaction_channel(interaction), type(error).__name__)
            log.error("interaction failed", extra=extra, exc_info=error if self.settings.log_content else None)
        finally:
            surface.done.set()  # a deferral under way completes: cutting it off would leave Discord unsure
            await asyncio.gather(keeper, return_exceptions=True)
        if failed or not interaction.response.is_done() or surface.placeholder:
            await surface.apologize()

    async def admit(self, interaction: Interaction) -> bool:
        """Runs before every command and autocomplete: turns away servers off the allow-list."""
        if interaction.guild_id is None or self._allowed(interaction.guild_id):
            return True
        if interaction.type is discord.InteractionType.autocomplete:
            await interaction.response.autocomplete([])
            return False
        origin = self.origin_of(interaction)
        log.info("server not allowed", extra=_extra(origin.channel))
        await self.answer(interaction, lambda s: self.conversation.notice(origin, Notice.NOT_ALLOWED, s))
        return False

    async def on_command_error(self, interaction: Interaction, error: app_commands.AppCommandError) -> None:
        """A command that failed before reaching core (an option Discord sent malformed): a private apology."""
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        extra = _extra(interaction_channel(interaction), type(cause).__name__)
        log.error("command failed", extra=extra, exc_info=cause if self.settings.log_content else None)
        if not interaction.response.is_done():
            await InteractionSurface(self, interaction).apologize()


# The bot-wide budget, held where requests leave


def _paced_by(budget: ChatPacer) -> aiohttp.TraceConfig:
    """An aiohttp hook that makes every bot-authorized request wait for `budget` right before it is sent.

    Acquiring the budget around a discord.py call is not enough: the call then queues behind discord.py's
    own bucket locks and retries, and requests admitted evenly leave in bunches. Here the wait is the last
    step before aiohttp opens the connection, and discord.py's own retries wait again.
    """

    async def before(session: aiohttp.ClientSession, context: SimpleNamespace, params: Any) -> None:
        if "Authorization" in params.headers:  # interaction callbacks and webhooks are outside the global limit
            await budget.acquire(urgent=_urgent.get())

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(before)
    return trace


async def _request(call: Awaitable[T], scale: float, *, urgent: bool = True) -> T:
    """One Discord call. A 429 that outlasted discord.py's own retries goes back to the relay as a retry-after,
    so a final text is tried again rather than lost."""
    token = _urgent.set(urgent)
    try:
        return await call
    except discord.HTTPException as error:
        if error.status == 429:
            raise RetryAfter(RETRY_AFTER * scale) from error
        raise
    finally:
        _urgent.reset(token)


# Surfaces: where one event's outcomes are shown


class MessageSurface:
    """A channel as seen from one learner's message (or, after a restart, from a stored channel): the reply's
    first part and every note quote that message; what is private goes to the author's DMs (in a server).

    Built from a channel and an optional quote rather than a message, so that recovery can answer in a channel
    it knows only by id. Without an author, a private note in a server cannot be delivered (`Unreachable`).
    """

    def __init__(
        self,
        bot: Polyglott,
        channel: Writable,
        *,
        quote: discord.MessageReference | None = None,
        author: discord.User | discord.Member | None = None,
        in_guild: bool = False,
    ) -> None:
        self.bot = bot
        self.channel = channel
        self.author = author
        self.in_guild = in_guild
        self.private_here = not in_guild  # in a server, what is private goes to the author's DMs
        self.limits = bot.limits
        self.pacer: ChatPacer | None = bot.pacers.get(str(channel.id), bot.windows)
        self._quote = quote
        self._quoted = False

    @classmethod
    def of(cls, bot: Polyglott, message: discord.Message) -> MessageSurface:
        """The surface for a learner's message: quoting it (it may be deleted meanwhile: no failure then)."""
        channel = message.channel
        return cls(
            bot,
            channel if isinstance(channel, Writable) else bot.get_partial_messageable(channel.id),
            quote=message.to_reference(fail_if_not_exists=False),
            author=message.author,
            in_guild=message.guild is not None,
        )

    async def send(self, text: str, buttons: Buttons = ()) -> discord.Message:
        extra = self._extra(buttons, None)
        if not self._quoted and self._quote is not None:
            extra["reference"] = self._quote
        sent = await self._call(self.channel.send(text, **extra))
        self._quoted = True
        return sent

    async def edit(self, handle: discord.Message | discord.PartialMessage, text: str, buttons: Buttons = ()) -> None:
        """Raises when Discord refuses (the message was deleted, or cannot be edited by the bot): core then
        says it anew."""
        view = self._view(buttons)
        await self._call(handle.edit(content=text, view=view) if view else handle.edit(content=text))

    def address(self, handle: discord.Message | discord.PartialMessage) -> str:
        return str(handle.id)

    def recall(self, address: str) -> discord.PartialMessage:
        return self.channel.get_partial_message(int(address))

    async def typing(self) -> None:
        await _request(self.channel.typing(), self.bot.time_scale, urgent=False)

    async def note(self, note: Note) -> None:
        with self._refused():
            await self._post(note.text, note.buttons, private=note.private)

    async def attach(self, attachment: Attachment) -> None:
        with self._refused():
            await self._post(attachment.caption, (), private=attachment.private, attachment=attachment)

    @contextlib.contextmanager
    def _refused(self) -> Iterator[None]:
        """In a DM, 50007: the person closed their DMs or blocked the bot, so nothing unasked may be sent to
        them again (core switches their reminders off)."""
        try:
            yield
        except discord.HTTPException as error:
            if self.in_guild or error.code != CANNOT_MESSAGE_USER:
                raise
            raise Blocked() from error

    async def _post(self, text: str, buttons: Buttons, *, private: bool, attachment: Attachment | None = None) -> None:
        if private and self.in_guild:
            await self._to_author(text, buttons, attachment)
            return
        parts = _parts(text)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            assert self.pacer is not None
            await self.pacer.acquire(urgent=True)
            extra = self._extra(buttons, attachment) if last else {}
            if self._quote is not None:
                extra["reference"] = self._quote
            await self._call(self.channel.send(part, **extra))

    async def _to_author(self, text: str, buttons: Buttons, attachment: Attachment | None) -> None:
        """Into the author's DMs; `Unreachable` if Discord refuses (they take no DMs from this server's members)
        or there is no author to write to (a surface revived after a restart)."""
        author = self.author
        if author is None:
            raise Unreachable()
        try:
            parts = _parts(text)
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                await self._call(author.send(part, **(self._extra(buttons, attachment) if last else {})))
        except discord.HTTPException as error:
            if isinstance(error, discord.Forbidden) or error.code == 50007:
                raise Unreachable() from error
            raise

    def _view(self, buttons: Buttons) -> discord.ui.View | None:
        return _view(buttons, getattr(self.author, "dm_channel", None))

    def _extra(self, buttons: Buttons, attachment: Attachment | None) -> dict[str, Any]:
        """The buttons and the file, for the last part of a note."""
        extra: dict[str, Any] = {}
        if view := self._view(buttons):
            extra["view"] = view
        if attachment is not None:
            extra["file"] = _file(attachment)
        return extra

    async def _call(self, call: Awaitable[T]) -> T:
        return await _request(call, self.bot.time_scale)


class InteractionSurface:
    """A slash command's or a button press's answer: the interaction response first, then follow-ups.

    A streamed reply defers ("thinking…") and replaces that with its first words; later parts follow up.
    Webhook messages have their own rate limits (per interaction), hence a budget of their own.
    """

    def __init__(self, bot: Polyglott, interaction: Interaction) -> None:
        self.bot = bot
        self.interaction = interaction
        self.private_here = True  # ephemeral replies
        self.limits = bot.limits
        self.pacer: ChatPacer | None = ChatPacer(bot.windows)
        self.component = interaction.type is discord.InteractionType.component
        self.placeholder = False  # a "thinking…" response not yet replaced by any text
        self._on_pressed = False  # the response edited the pressed message: @original is that message
        self._lock = asyncio.Lock()  # responding is one step at a time: typing, notes and sends race otherwise
        self.done = asyncio.Event()  # the event was handled: no deferral needed any more

    async def send(self, text: str, buttons: Buttons = ()) -> discord.InteractionMessage | discord.WebhookMessage:
        view = _view(buttons)
        async with self._lock:
            if not self.interaction.response.is_done():
                await self._defer(thinking=True)
            if self.placeholder:
                self.placeholder = False
                return await self._call(self.interaction.edit_original_response(content=text, view=view))
            return await self._call(self.interaction.followup.send(text, view=view or MISSING, wait=True))

    async def edit(self, handle: Sent, text: str, buttons: Buttons = ()) -> None:
        view = _view(buttons)
        await self._call(handle.edit(content=text, view=view) if view else handle.edit(content=text))

    def address(self, handle: Sent) -> str:
        return str(handle.id)

    def recall(self, address: str) -> discord.PartialMessage:
        """The message through its channel (what a restart has: the interaction's token is gone by then)."""
        place = self.interaction.channel
        channel = (
            place if isinstance(place, Writable) else self.bot.get_partial_messageable(self.interaction.channel_id or 0)
        )
        return channel.get_partial_message(int(address))

    async def typing(self) -> None:
        """Defer with "Polyglott is thinking…", which the first words replace."""
        async with self._lock:
            if not self.interaction.response.is_done():
                await self._defer(thinking=True)

    async def note(self, note: Note) -> None:
        async with self._lock:
            if note.replaces and await self._replace(note):
                return
            await self._post(note.text, note.buttons, private=note.private)

    async def attach(self, attachment: Attachment) -> None:
        async with self._lock:
            await self._post(attachment.caption, (), private=attachment.private, attachment=attachment)

    async def acknowledge_after(self, seconds: float) -> None:
        """If nothing answered the interaction in time, defer it: Discord forgets it after 3 s."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), seconds)
        if self.done.is_set():
            return
        async with self._lock:
            if not self.interaction.response.is_done():
                await self._defer(thinking=not self.component)  # a press: the pressed message may change

    async def apologize(self) -> None:
        """The last resort, privately, in the person's app language."""
        apology = self.bot.conversation.apology(str(self.interaction.locale))
        try:
            await self.note(Note(apology, private=True))
        except discord.HTTPException as error:
            extra = _extra(interaction_channel(self.interaction), type(error).__name__)
            log.warning("could not answer an interaction (code %s)", error.code, extra=extra)

    async def _defer(self, *, thinking: bool) -> None:
        await self.interaction.response.defer(thinking=thinking)
        self.placeholder = thinking
        self._on_pressed = self.component and not thinking

    async def _replace(self, note: Note) -> bool:
        """Show `note` in place of the pressed message, if there is one and its readers may see it: an ephemeral
        one, or any in a DM (the /memory list a mention sent there), where the presser is its only reader."""
        pressed = self.interaction.message
        if not self.component or pressed is None:
            return False
        if note.private and not (pressed.flags.ephemeral or self._in_dm()):
            return False
        view = _view(note.buttons)
        response = self.interaction.response
        if not response.is_done():
            await response.edit_message(content=note.text, view=view)
            self._on_pressed = True
            return True
        if self._on_pressed:
            await self.interaction.edit_original_response(content=note.text, view=view)
            return True
        return False

    def _in_dm(self) -> bool:
        return getattr(self.interaction.channel, "type", None) is discord.ChannelType.private

    async def _post(self, text: str, buttons: Buttons, *, private: bool, attachment: Attachment | None = None) -> None:
        response = self.interaction.response
        parts = _parts(text)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            view = _view(buttons) if last else None
            file = _file(attachment) if last and attachment else None
            if not response.is_done():
                await response.send_message(part, ephemeral=private, view=view or MISSING, file=file or MISSING)
            elif self.placeholder and not private:
                self.placeholder = False
                await self.interaction.edit_original_response(
                    content=part, view=view, attachments=[file] if file else MISSING
                )
            else:
                if self.placeholder:  # "thinking…" is public: a private text must not become it
                    self.placeholder = False
                    await self.interaction.delete_original_response()
                await self._call(
                    self.interaction.followup.send(
                        part, ephemeral=private, view=view or MISSING, file=file or MISSING, wait=True
                    )
                )

    async def _call(self, call: Awaitable[T]) -> T:
        return await _request(call, self.bot.time_scale)


def _parts(text: str) -> list[str]:
    """A note as Discord takes it: 2000 characters a message."""
    return split_message(text, LIMITS.max_length) or [text]


def _file(attachment: Attachment) -> discord.File:
    return discord.File(BytesIO(attachment.data), filename=attachment.name)


# Buttons


class Press(discord.ui.DynamicItem[discord.ui.Button[Any]], template=BUTTON_TEMPLATE):
    """A button that carries its action in its custom_id, so that it works on messages of any age, after any
    number of restarts: no view is kept per message."""

    def __init__(self, action: str, label: str = "·", *, row: int | None = None) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label[:LABEL_LENGTH], custom_id=f"pg:{action}", style=discord.ButtonStyle.secondary
        )
        super().__init__(button, row=row)
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Press:
        return cls(match["action"], getattr(item, "label", None) or "·")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _bot(interaction).press(interaction, self.action)


def _view(buttons: Buttons, dm: discord.DMChannel | None = None) -> discord.ui.View | None:
    """Rows of buttons as components; an `opens` button becomes a link to our DM channel where one exists."""
    view = discord.ui.View(timeout=None)
    for row, line in enumerate(buttons[:BUTTON_ROWS]):
        for button in line[:BUTTONS_PER_ROW]:
            if button.action:
                view.add_item(Press(button.action, button.label, row=row))
            elif button.opens and dm is not None:
                view.add_item(discord.ui.Button(label=button.label[:LABEL_LENGTH], url=dm.jump_url, row=row))
    return view if view.children else None


# Localization


def _words(*parts: Msg | str) -> app_commands.locale_str:
    """Text Discord shows in each user's language: the English default, rendered per locale by `Translator`."""
    return app_commands.locale_str("".join(str(part) for part in parts), parts=parts)


class Translator(app_commands.Translator):
    """Command and option descriptions and choice names from core's catalogs, for the UI languages."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        parts = string.extras.get("parts")
        tag = str(locale)
        if not parts or tag.split("-")[0].casefold() not in UI_LANGUAGES:
            return None
        return "".join(render(part, tag) for part in parts)[:100]  # Discord's limit for each of them


# Slash commands: one per core command, each only parsing its options


def _about(name: str) -> app_commands.locale_str:
    return _words(BY_NAME[name].description)


def _option(command: str, option: str) -> app_commands.locale_str:
    return _words(OPTIONS[command][option])


def _given(*values: str | None) -> list[str]:
    return [value for value in values if value]


def _bot(interaction: discord.Interaction[Any]) -> Polyglott:
    client = interaction.client
    assert isinstance(client, Polyglott)
    return client


def _label(language: Language, locale: str) -> str:
    """ "Spanish — español" for an English app, "Espagnol — español" for a French one."""
    name = language_name(language.code, locale)
    name = language.name if name == language.code else name[:1].upper() + name[1:]
    return name if name.casefold() == language.autonym.casefold() else f"{name} — {language.autonym}"


async def languages(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Suggestions as the user types, by English name, native name or code ("espa", "deu")."""
    locale = str(interaction.locale)
    return [app_commands.Choice(name=_label(lang, locale)[:100], value=lang.code) for lang in suggest(current)]


LEVELS = [app_commands.Choice(name=_words(f"{level.value} · ", level.label), value=level.value) for level in Level]
everywhere = app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
servers_only = app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)


@app_commands.command(name="learn", description=_about("learn"))
@app_commands.describe(language=_option("learn", "language"), level=_option("learn", "level"))
@app_commands.choices(level=LEVELS)
@app_commands.autocomplete(language=languages)
@everywhere
async def learn(interaction: Interaction, language: str | None = None, level: str | None = None) -> None:
    await _bot(interaction).command(interaction, "learn", _given(language, level))


@app_commands.command(name="level", description=_about("level"))
@app_commands.describe(level=_option("level", "level"))
@app_commands.choices(level=LEVELS)
@everywhere
async def set_level(interaction: Interaction, level: str | None = None) -> None:
    await _bot(interaction).command(interaction, "level", _given(level))


@app_commands.command(name="native", description=_about("native"))
@app_commands.describe(language=_option("native", "language"))
@app_commands.autocomplete(language=languages)
@everywhere
async def set_native(interaction: Interaction, language: str | None = None) -> None:
    await _bot(interaction).command(interaction, "native", _given(language))


@app_commands.command(name="classroom", description=_about("classroom"))
@app_commands.describe(mode=_option("classroom", "mode"), messages=_option("classroom", "messages"))
@servers_only
async def classroom(
    interaction: Interaction,
    mode: Literal["on", "off", "cap"],
    messages: app_commands.Range[int, 0, MAX_DAILY_CAP] | None = None,
) -> None:
    await _bot(interaction).command(interaction, "classroom", _given(mode, None if messages is None else str(messages)))


@app_commands.command(name="save", description=_about("save"))
@app_commands.describe(phrase=_option("save", "phrase"))
@everywhere
async def save(interaction: Interaction, phrase: app_commands.Range[str, 1, SAVE_CHARS]) -> None:
    await _bot(interaction).command(interaction, "save", [phrase])


@app_commands.command(name="remind", description=_about("remind"))
@app_commands.describe(mode=_option("remind", "mode"))
@everywhere  # core says in a server that reminders come in DMs
async def remind(interaction: Interaction, mode: Literal["on", "off"] | None = None) -> None:
    await _bot(interaction).command(interaction, "remind", _given(mode))


async def scenes(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Scene suggestions as the user types, titled in their app's language ("café", "entre")."""
    language = ui_language(str(interaction.locale))
    found = suggest_scenes(_bot(interaction).conversation.tutor.scenes, current, language)
    return [app_commands.Choice(name=f"{s.level.value} · {s.title(language)}"[:100], value=s.id) for s in found]


@app_commands.command(name="roleplay", description=_about("roleplay"))
@app_commands.describe(scene=_option("roleplay", "scene"))
@app_commands.autocomplete(scene=scenes)
@everywhere
async def roleplay(interaction: Interaction, scene: app_commands.Range[str, 1, 100] | None = None) -> None:
    """Without a scene core offers the level's scenes as buttons; a name is matched by core, typos and all."""
    await _bot(interaction).command(interaction, "roleplay", _given(scene))


def _plain(name: str) -> app_commands.Command[Any, ..., None]:
    """A command without options: `/status`, `/reset`, `/stop`, `/review`, `/progress`, `/mydata`, `/help`, and
    any core adds."""

    async def run(interaction: Interaction) -> None:
        await _bot(interaction).command(interaction, name, [])

    contexts = servers_only if BY_NAME[name].groups_only else everywhere
    return app_commands.Command(name=name, description=_about(name), callback=contexts(run))


_WITH_OPTIONS: dict[str, app_commands.Command[Any, ..., None]] = {
    "learn": learn,
    "level": set_level,
    "native": set_native,
    "classroom": classroom,
    "save": save,
    "roleplay": roleplay,
    "remind": remind,
}
APP_COMMANDS = tuple(_WITH_OPTIONS.get(s.name) or _plain(s.name) for s in COMMANDS if s.name not in TELEGRAM_ONLY)


# Where an event happened, as core names it


def channel_of(place: Any, *, in_guild: bool) -> Channel:
    """The core's channel for a Discord channel: a thread is its own, starting from its parent's lesson."""
    if isinstance(place, discord.Thread):
        return Channel(f"discord:{place.id}", group=True, parent=f"discord:{place.parent_id}")
    return Channel(f"discord:{place.id}", group=in_guild)


def interaction_channel(interaction: discord.Interaction[Any]) -> Channel:
    place = interaction.channel or discord.Object(interaction.channel_id or 0)
    return channel_of(place, in_guild=interaction.guild_id is not None)


def learner_of(user: discord.User | discord.Member) -> Learner:
    return Learner(f"discord:user:{user.id}", user.display_name)


def _channel_permissions(message: discord.Message) -> discord.Permissions:
    author = message.author
    if isinstance(author, discord.Member) and hasattr(message.channel, "permissions_for"):
        return message.channel.permissions_for(author)
    return discord.Permissions.none()


def _transient(error: BaseException) -> bool:
    """Worth trying again: Discord's 5xx, a network error, a timeout; not a refused token or a bad request."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500
    return isinstance(error, aiohttp.ClientError | OSError | TimeoutError | discord.GatewayNotFound)


def _masked(error: BaseException | None) -> BaseException | None:
    """The error behind discord.py's AttributeError after a failed first handshake (see `begin`)."""
    return error.__context__ if isinstance(error, AttributeError) and error.__context__ else error


def _described(error: BaseException | None) -> str:
    """An error for the log: its kind and Discord's status and code, never a response text."""
    if isinstance(error, discord.HTTPException):
        return f"{type(error).__name__}, status {error.status}, code {error.code}"
    return type(error).__name__


def _extra(channel: Channel, error: str | None = None) -> dict[str, str]:
    extra = {"adapter": "discord", "channel": channel.id}
    return extra | {"error": error} if error else extra


class ShardedPolyglott(Polyglott, discord.AutoShardedClient):
    """Polyglott on some of the bot's shards (POLYGLOTT_DISCORD_SHARD_COUNT and _SHARD_IDS; Discord requires
    sharding from 2,500 servers): one gateway connection per shard, each carrying the events of its servers
    ((guild id >> 22) % count) and shard 0 the DMs too, so several processes can split the shards between them."""

    def __init__(
        self, tutor: Tutor, settings: Settings, *, time_scale: float = 1.0, remind_every: float = REMIND_EVERY
    ) -> None:
        super().__init__(
            tutor, settings, time_scale=time_scale, remind_every=remind_every, shard_count=settings.discord_shard_count
        )
        self.shard_ids = settings.discord_shard_ids or None  # None: every shard, 0 to count - 1

    @property
    def reminds(self) -> bool:
        """Reminders go to DMs, whose events come on shard 0: its process sends them."""
        return self.shard_ids is None or 0 in self.shard_ids

    def owns(self, channel_id: str, group: bool) -> bool:
        """Whether a stored channel is on this process's shards: a DM's events come on shard 0; a server channel
        is in the cache once every shard of ours is ready, if its server is on one of them (a thread as its
        parent channel's)."""
        if not group:
            return self.reminds
        number = channel_id.removeprefix("discord:").split(":")[0]
        channel = self.get_channel(int(number)) if number.isdigit() else None
        guild = getattr(channel, "guild", None)
        return guild is not None and (self.shard_ids is None or guild.shard_id in self.shard_ids)

    async def on_shard_ready(self, shard_id: int) -> None:
        """One line per shard, so an operator sees which process serves which."""
        log.info("shard %d of %s ready", shard_id, self.shard_count, extra=_ADAPTER)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Discord starts one session per 5 s for most bots: discord.py spaces its shards' IDENTIFYs so, here on
        the adapter's clock."""
        if not initial:
            await asyncio.sleep(IDENTIFY_EVERY * self.time_scale)


def build_bot(
    tutor: Tutor, settings: Settings, *, time_scale: float = 1.0, remind_every: float = REMIND_EVERY
) -> Polyglott:
    """The client with every handler and command registered, for a caller that runs it itself; sharded when
    POLYGLOTT_DISCORD_SHARD_COUNT is set, otherwise one gateway connection, as Discord wants below 2,500 servers."""
    if settings.discord_shard_count is not None:
        return ShardedPolyglott(tutor, settings, time_scale=time_scale, remind_every=remind_every)
    return Polyglott(tutor, settings, time_scale=time_scale, remind_every=remind_every)


async def serve(tutor: Tutor, settings: Settings, stop: asyncio.Event, *, time_scale: float = 1.0) -> None:
    """The `polyglott run` adapter contract (see bots/cli.py): serve until `stop`, then finish and close."""
    if settings.discord_token is None:
        raise ValueError("POLYGLOTT_DISCORD_TOKEN is not set")
    bot = build_bot(tutor, settings, time_scale=time_scale)
    async with bot:
        running = asyncio.create_task(bot.begin(settings.discord_token.get_secret_value()))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                running.result()  # a bad token, or an intent the portal has not enabled: `polyglott run` reports it
                return
            log.info("stopping", extra=_ADAPTER)
            await bot.conversation.finish(settings.shutdown_grace)
        except discord.LoginFailure:
            log.error(
                "Discord refused POLYGLOTT_DISCORD_TOKEN (401 Unauthorized): set it to the token shown on the Bot page "
                "of the developer portal (Reset Token makes a new one)",
                extra=_ADAPTER,
            )
            raise
        except discord.PrivilegedIntentsRequired:
            log.error(
                "POLYGLOTT_DISCORD_MESSAGE_CONTENT is on, but the Message Content intent is not enabled for this "
                "bot: turn it on in the developer portal (Bot → Privileged Gateway Intents) or set it to false",
                extra=_ADAPTER,
            )
            raise
        finally:
            stopped.cancel()
            await bot.close()
            running.cancel()  # still waiting to retry a start-up step: the stop ends that
            await asyncio.wait({running})
