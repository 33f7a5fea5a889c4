"""Polyglott on Discord: events in, the tutor's replies out, within Discord's limits.

The adapter is thin on purpose. It decides whether a message is for the tutor (DMs: always; servers: an
@mention, a reply to the bot, or any message in a channel a teacher put on /classroom), who may change a
channel's lesson (Manage Channels, or the configured teacher role), and how a reply is shown: the first
words as a reply to the learner, then edits at most once a second, within one budget per channel shared by
every reply there. Lessons, history and prompts are the core's.

Time: Discord's windows and edit cadence are multiplied by `time_scale` (1.0 in production); tests shrink
the fake Discord's clock with `FakeDiscord(time_scale=s)` and pass the same `s` to `build_bot`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, Literal, TypeVar

import discord
from discord import app_commands

from bots.cli import GRACE
from core.answer import answer
from core.commands import COMMANDS, HELP, describe
from core.errors import NoLesson, TutorError
from core.languages import Language, find_language, suggest
from core.lesson import Level
from core.logs import content
from core.pacing import ChatPacer, Pacers, scaled
from core.relay import Limits, RetryAfter
from core.settings import Settings
from core.tutor import Channel, Learner, Reply, Tutor

log = logging.getLogger(__name__)
T = TypeVar("T")

# Discord allows about 5 message creates and 5 edits per 5 s in a channel (undocumented), and discord.py
# sleeps through a 429 instead of failing, so the bot must never reach it: one budget of 4 per 5 s for
# sends and edits together leaves headroom for clock skew between us and Discord.
WINDOWS: tuple[tuple[int, float], ...] = ((4, 5.0),)
# Discord's global limit is 50 requests a second for the whole bot; a burst of DMs would cross it (and
# discord.py gives up after five 429s), so every send, edit and typing call also draws on one bot-wide budget.
BOT_WINDOWS: tuple[tuple[int, float], ...] = ((40, 1.0),)
LIMITS = Limits(max_length=2000, edit_interval=1.0)
TEXT_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)

LEVELS = [
    app_commands.Choice(name=f"{level} · {label}", value=level.value)
    for level, label in zip(
        Level, ("beginner", "elementary", "intermediate", "upper intermediate", "advanced", "proficient"), strict=True
    )
]

NO_LESSON_HERE = "There is no lesson in this channel yet. A teacher can start one with /learn."
PICK_LANGUAGE = "Which language? Start with /learn and pick one, e.g. /learn language:Spanish."
ONLY_TEACHERS = "Sorry, only teachers can change this channel's lesson. Ask your teacher!"
NOT_ALLOWED = "Sorry, this tutor is private and not available in this server."
NOT_TEXT = "I can only read text for now: images, files, stickers and embeds are beyond me. Write to me instead!"
UNREAD = "I couldn't read that: Discord only shows me messages that mention me. Keep the @ on when you reply to me."
SORRY = "Sorry, something went wrong on my side. Please try again."
SERVER_HINT = (
    "\n\nIn a server, mention me or reply to my messages; a teacher can make me answer every message in a "
    "channel with /classroom on."
)
NEEDS_INTENT = (
    "Saved, but it can't work yet: I can't read messages that don't mention me. The bot's operator must turn "
    "on the Message Content intent in the Discord developer portal and set "
    "POLYGLOTT_DISCORD_MESSAGE_CONTENT=true. Until then, mention me or reply to me."
)

Interaction = discord.Interaction["Polyglott"]


class Polyglott(discord.Client):
    """The Discord client: message events, the slash-command tree, and one update budget per channel."""

    def __init__(self, tutor: Tutor, settings: Settings, *, time_scale: float = 1.0) -> None:
        intents = discord.Intents.default()
        intents.message_content = settings.discord_message_content  # privileged: see POLYGLOTT_DISCORD_MESSAGE_CONTENT
        # Model output must never ping @everyone, a role or a user, nor the learner it replies to.
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none())
        self.tutor = tutor
        self.settings = settings
        self.windows = scaled(WINDOWS, time_scale)
        self.limits = replace(LIMITS, edit_interval=LIMITS.edit_interval * time_scale)
        self.pacers = Pacers()
        self.budget = ChatPacer(scaled(BOT_WINDOWS, time_scale))
        self.stopping = False
        self._busy: set[asyncio.Task[Any]] = set()
        self.tree: app_commands.CommandTree[Polyglott] = app_commands.CommandTree(self)
        for command in (learn, set_level, set_native, reset_history, pause, show_status, show_help, classroom):
            self.tree.add_command(command)
        self.tree.interaction_check = self.admit  # type: ignore[method-assign]
        self.tree.on_error = self.on_command_error  # type: ignore[method-assign]

    @property
    def showing(self) -> int:
        """Replies being shown right now (a stop waits for them)."""
        return len(self._busy)

    # Lifecycle

    async def setup_hook(self) -> None:
        """Publish the slash commands globally (Discord may take a while to show changes everywhere) and to
        each configured server, where they appear at once."""
        await self._sync(None)
        for guild_id in self.settings.discord_guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self._sync(guild)

    async def _sync(self, guild: discord.Object | None) -> None:
        scope, extra = guild.id if guild else "all servers", {"adapter": "discord"}
        try:
            synced = await self.tree.sync(guild=guild)
        except discord.HTTPException as error:  # e.g. a listed server the bot is not in: the others still work
            log.warning("could not sync commands to %s (code %s)", scope, error.code, extra=extra)
            return
        log.info("synced %d commands to %s", len(synced), scope, extra=extra)

    async def on_ready(self) -> None:
        log.info("connected as %s to %d servers", self.user, len(self.guilds), extra={"adapter": "discord"})

    async def finish(self, grace: float) -> None:
        """Take no more messages; give replies being written and shown `grace` seconds, then cut them off
        (the tutor stores a cut-off reply as interrupted)."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.tutor.drain(grace)
        if self._busy:
            _, late = await asyncio.wait(self._busy, timeout=max(0.0, deadline - loop.time()))
            for task in late:
                task.cancel()

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
        if message.author.bot or self.stopping or message.type not in TEXT_MESSAGES:
            return  # other bots, our own echoes, joins, pins, thread starters…
        channel = channel_of(message.channel, in_guild=message.guild is not None)
        addressed = self._addressed(message)
        allowed = message.guild is None or self._allowed(message.guild.id)
        if not addressed and not (allowed and await self._answers_all(channel)):
            return
        chat = MessageChat(message, self.pacers.get(channel.id, self.windows), self.budget)
        try:
            if allowed:
                await self._converse(message, channel, chat, addressed)
            else:
                log.info("server not allowed", extra=_extra(channel))
                await chat.notify(NOT_ALLOWED)
        except discord.HTTPException as error:  # e.g. a channel where the bot may read but not write
            log.warning("discord refused (code %s)", error.code, extra=_extra(channel, type(error).__name__))

    async def _converse(self, message: discord.Message, channel: Channel, chat: MessageChat, addressed: bool) -> None:
        text = self._text(message)
        log.info("message %s", content(text, self.settings.log_content), extra=_extra(channel))
        if not text:
            if addressed and (message.attachments or message.stickers or message.embeds):
                await chat.notify(NOT_TEXT)
            elif addressed and channel.group and not self.intents.message_content and not message.mentions:
                await chat.notify(UNREAD)  # a reply to us with its ping turned off: Discord withheld the text
            return
        try:
            reply = await self.tutor.reply(channel, learner_of(message.author), text)
        except NoLesson as error:
            await chat.notify(NO_LESSON_HERE if channel.group else str(error))
            return
        except TutorError as error:
            await chat.notify(str(error))
            return
        if reply is not None:
            await self.show(reply, chat, channel)

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
        lesson = await self.tutor.lesson(channel)
        return lesson is not None and lesson.active and lesson.answer_all

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

    async def show(self, reply: Reply, chat: MessageChat | InteractionChat, channel: Channel) -> None:
        """Stream `reply` into `chat`; a stop lets it finish within the grace period."""
        task = asyncio.current_task()
        assert task is not None
        self._busy.add(task)
        try:
            delivery = await answer(reply, chat, self.limits, chat.pacer)
        finally:
            self._busy.discard(task)
        shown = f"in {len(delivery.messages)} messages with {delivery.updates} updates" if delivery else "failed"
        log.info("replied %s", shown, extra={**_extra(channel), "status": reply.status})

    # Slash commands

    async def admit(self, interaction: Interaction) -> bool:
        """Runs before every command and autocomplete: logs it and turns away servers off the allow-list."""
        allowed = interaction.guild_id is None or self._allowed(interaction.guild_id)
        if interaction.type is discord.InteractionType.autocomplete:
            if not allowed:
                await interaction.response.autocomplete([])
            return allowed
        name = (interaction.data or {}).get("name", "?")
        log.info("command /%s", name, extra=_extra(interaction_channel(interaction)))
        if not allowed:
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
        return allowed

    async def on_command_error(self, interaction: Interaction, error: app_commands.AppCommandError) -> None:
        """Every failed command ends in a short private answer, never a traceback."""
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        extra = _extra(interaction_channel(interaction), type(cause).__name__)
        name = (interaction.data or {}).get("name", "?")
        if isinstance(cause, NotTeacher):
            log.info("/%s refused: not a teacher", name, extra=extra)
            text = ONLY_TEACHERS
        elif isinstance(cause, TutorError):
            log.info("/%s refused", name, extra=extra)
            text = str(cause)
        else:
            log.error("/%s failed", name, extra=extra, exc_info=cause if self.settings.log_content else None)
            text = SORRY
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as failure:
            log.warning("could not answer /%s (code %s)", name, failure.code, extra=extra)


async def _within(budget: ChatPacer, call: Awaitable[T], *, urgent: bool = True) -> T:
    """One request within the bot-wide budget. A 429 that outlasted discord.py's own retries goes back to the
    relay as a retry-after, so a final text is tried again rather than lost."""
    await budget.acquire(urgent=urgent)
    try:
        return await call
    except discord.HTTPException as error:
        if error.status == 429:
            raise RetryAfter(1.0) from error
        raise


class MessageChat:
    """A channel as seen from one learner's message: the reply's first part and any notice quote it."""

    def __init__(self, message: discord.Message, pacer: ChatPacer, budget: ChatPacer) -> None:
        self.channel = message.channel
        self.pacer = pacer
        self.budget = budget
        self._quote = message.to_reference(fail_if_not_exists=False)  # the learner may delete theirs meanwhile
        self._quoted = False

    async def send(self, text: str) -> discord.Message:
        if self._quoted:
            return await _within(self.budget, self.channel.send(text))
        sent = await _within(self.budget, self.channel.send(text, reference=self._quote))
        self._quoted = True
        return sent

    async def edit(self, message: discord.Message, text: str) -> None:
        await _within(self.budget, message.edit(content=text))

    async def typing(self) -> None:
        await _within(self.budget, self.channel.typing(), urgent=False)

    async def notify(self, text: str) -> None:
        await self.pacer.acquire(urgent=True)
        await _within(self.budget, self.channel.send(text, reference=self._quote))


class InteractionChat:
    """A slash command's answer: the deferred response becomes the reply's first part, later parts follow up.

    Webhook messages have their own rate limits (per interaction), hence a budget of their own.
    """

    def __init__(self, interaction: Interaction, pacer: ChatPacer) -> None:
        self.interaction = interaction
        self.pacer = pacer
        self._responded = False

    async def send(self, text: str) -> discord.InteractionMessage | discord.WebhookMessage:
        if self._responded:
            return await self.interaction.followup.send(text, wait=True)
        sent = await self.interaction.edit_original_response(content=text)
        self._responded = True
        return sent

    async def edit(self, message: discord.InteractionMessage | discord.WebhookMessage, text: str) -> None:
        await message.edit(content=text)

    async def typing(self) -> None:
        """Nothing to do: Discord shows "Polyglott is thinking…" until the first words replace it."""

    async def notify(self, text: str) -> None:
        await self.pacer.acquire(urgent=True)
        if self._responded:
            await self.interaction.followup.send(text)
        else:  # replaces "thinking…"; the reply's first words replace this in turn
            await self.interaction.edit_original_response(content=text)


def channel_of(place: Any, *, in_guild: bool) -> Channel:
    """The core's channel for a Discord channel: a thread is its own, starting from its parent's lesson."""
    if isinstance(place, discord.Thread):
        return Channel(f"discord:{place.id}", group=True, parent=f"discord:{place.parent_id}")
    return Channel(f"discord:{place.id}", group=in_guild)


def interaction_channel(interaction: Interaction) -> Channel:
    place = interaction.channel or discord.Object(interaction.channel_id or 0)
    return channel_of(place, in_guild=interaction.guild_id is not None)


def learner_of(user: discord.User | discord.Member) -> Learner:
    return Learner(f"discord:user:{user.id}", user.display_name)


def _extra(channel: Channel, error: str | None = None) -> dict[str, str]:
    extra = {"adapter": "discord", "channel": channel.id}
    return extra | {"error": error} if error else extra


def _about(name: str) -> str:
    """A command's description from the shared list, without the usage example: Discord shows the options."""
    return COMMANDS[name].partition(": /")[0]


def _label(language: Language) -> str:
    return language.name if language.autonym == language.name else f"{language.name} — {language.autonym}"


async def languages(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Suggestions as the user types, by English name, native name or code ("espa", "deu")."""
    return [app_commands.Choice(name=_label(lang), value=lang.code) for lang in suggest(current)]


class NotTeacher(app_commands.CheckFailure):
    """A student tried to change a classroom's lesson."""


async def _may_teach(interaction: Interaction) -> bool:
    """In a DM a learner runs their own lesson; in a server it takes Manage Channels or the teacher role."""
    if interaction.guild_id is None or interaction.permissions.manage_channels:
        return True
    role = (interaction.client.settings.discord_teacher_role or "").casefold()
    if role and any(r.name.casefold() == role for r in getattr(interaction.user, "roles", ())):
        return True
    raise NotTeacher()


teachers_only = app_commands.check(_may_teach)
everywhere = app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)


@app_commands.command(description=_about("learn"))
@app_commands.describe(
    language="The language to learn (leave out to resume this channel's lesson)",
    level="How well you know it already",
    native="The language for explanations",
)
@app_commands.choices(level=LEVELS)
@app_commands.autocomplete(language=languages, native=languages)
@everywhere
@teachers_only
async def learn(
    interaction: Interaction, language: str | None = None, level: str | None = None, native: str | None = None
) -> None:
    bot, channel = interaction.client, interaction_channel(interaction)
    if language is None:
        current = await bot.tutor.lesson(channel)
        if current is None:
            await interaction.response.send_message(PICK_LANGUAGE, ephemeral=True)
            return
        target = current.language
    else:
        target = find_language(language).language  # an unknown name fails here, before anything changes
    explain = find_language(native).language if native else None
    chosen = Level.parse(level) if level else None
    await interaction.response.defer(thinking=True)  # within Discord's 3 s, however long the model takes
    reply = await bot.tutor.start(channel, target, chosen, explain)
    await bot.show(reply, InteractionChat(interaction, ChatPacer(bot.windows)), channel)


@app_commands.command(name="level", description=_about("level"))
@app_commands.describe(level="A1 is a beginner, C2 near-native")
@app_commands.choices(level=LEVELS)
@everywhere
@teachers_only
async def set_level(interaction: Interaction, level: str) -> None:
    lesson = await interaction.client.tutor.set_level(interaction_channel(interaction), level)
    await interaction.response.send_message(f"Level set to {lesson.level}.")


@app_commands.command(name="native", description=_about("native"))
@app_commands.describe(language="The language I explain mistakes in")
@app_commands.autocomplete(language=languages)
@everywhere
@teachers_only
async def set_native(interaction: Interaction, language: str) -> None:
    lesson = await interaction.client.tutor.set_native(interaction_channel(interaction), language)
    await interaction.response.send_message(f"Explanations will be in {lesson.native.name}.")


@app_commands.command(name="reset", description=_about("reset"))
@everywhere
@teachers_only
async def reset_history(interaction: Interaction) -> None:
    await interaction.client.tutor.reset(interaction_channel(interaction))
    await interaction.response.send_message("Conversation forgotten. Say something to start again.")


@app_commands.command(name="stop", description=_about("stop"))
@everywhere
@teachers_only
async def pause(interaction: Interaction) -> None:
    await interaction.client.tutor.pause(interaction_channel(interaction))
    await interaction.response.send_message("Lesson paused. /learn picks it up again.")


@app_commands.command(name="status", description=_about("status"))
@everywhere
async def show_status(interaction: Interaction) -> None:
    channel = interaction_channel(interaction)
    lesson = await interaction.client.tutor.lesson(channel)
    if lesson is None:
        text = NO_LESSON_HERE if channel.group else str(NoLesson())
    else:
        text = describe(lesson.language.name, lesson.level, lesson.native.name, lesson.active)
        if channel.group:
            text += " I answer every message here." if lesson.answer_all else " Mention me or reply to me to practise."
    await interaction.response.send_message(text, ephemeral=True)


@app_commands.command(name="help", description=_about("help"))
@everywhere
async def show_help(interaction: Interaction) -> None:
    await interaction.response.send_message(HELP + SERVER_HINT, ephemeral=True)


@app_commands.command(description="Answer every message in this channel (on), or only mentions and replies (off)")
@app_commands.describe(mode="on: answer every message; off: only when mentioned or replied to")
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@teachers_only
async def classroom(interaction: Interaction, mode: Literal["on", "off"]) -> None:
    bot = interaction.client
    lesson = await bot.tutor.set_answer_all(interaction_channel(interaction), mode == "on")
    if not lesson.answer_all:
        text = "From now on I answer here only when mentioned or replied to."
    elif bot.intents.message_content:
        text = "From now on I answer every message in this channel."
    else:
        text = NEEDS_INTENT
    await interaction.response.send_message(text)


def build_bot(tutor: Tutor, settings: Settings, *, time_scale: float = 1.0) -> Polyglott:
    """The client with every handler and command registered, for a caller that runs it itself."""
    return Polyglott(tutor, settings, time_scale=time_scale)


async def serve(tutor: Tutor, settings: Settings, stop: asyncio.Event, *, time_scale: float = 1.0) -> None:
    """The `polyglott run` adapter contract (see bots/cli.py): serve until `stop`, then finish and close."""
    if settings.discord_token is None:
        raise ValueError("POLYGLOTT_DISCORD_TOKEN is not set")
    bot = build_bot(tutor, settings, time_scale=time_scale)
    async with bot:
        running = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                running.result()  # a bad token, or an intent the portal has not enabled: `polyglott run` reports it
                return
            log.info("stopping", extra={"adapter": "discord"})
            await bot.finish(GRACE)
        except discord.PrivilegedIntentsRequired:
            log.error(
                "POLYGLOTT_DISCORD_MESSAGE_CONTENT is on, but the Message Content intent is not enabled for this "
                "bot: turn it on in the developer portal (Bot → Privileged Gateway Intents) or set it to false",
                extra={"adapter": "discord"},
            )
            raise
        finally:
            stopped.cancel()
            await bot.close()
            await asyncio.wait({running})
