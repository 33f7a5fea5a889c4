"""Discord shards: POLYGLOTT_DISCORD_SHARD_COUNT and _SHARD_IDS run the adapter as discord.py's AutoShardedClient
on those shards, so several processes can split a large bot between them. discord.py's own client against the
loopback fake Discord, which opens one gateway connection per shard and sends a guild's events on its shard
((guild id >> 22) % count) and DMs on shard 0, as Discord does. The seeded guild is on shard 1 of 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from pydantic import SecretStr, ValidationError

from bots.discord_bot import Polyglott, build_bot
from bots.discord_bot import serve as serve_discord
from core.conversation import NO_LESSON_GROUP
from core.deck import Card, Kind
from core.i18n import _n, render
from core.languages import by_code
from core.lesson import Lesson, Level
from core.settings import Settings
from core.store import Status
from core.tutor import Tutor
from tests.fake_discord import BOT_TOKEN, GENERAL_CHANNEL_ID, GUILD_ID, STUDENT_ID, FakeDiscord, shard_of
from tests.fake_ollama import FakeOllama

SCALE = 0.05  # Discord's clock, shrunk for both sides (the 5 s between two shards' IDENTIFYs too)
WITHIN = 10.0  # seconds: a bound for a slow machine, not a pace


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(time_scale=SCALE) as server:
        yield server
    assert server.errors == []


@pytest.fixture
def bot_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"discord_token": SecretStr(BOT_TOKEN)})


@contextlib.asynccontextmanager
async def connected(
    fake: FakeDiscord, tutor: Tutor, settings: Settings, *, remind_every: float = 600.0, **changes: Any
) -> AsyncIterator[Polyglott]:
    client = build_bot(tutor, settings.model_copy(update=changes), time_scale=SCALE, remind_every=remind_every)
    async with fake.connected(client):
        yield client


def settled(bot: Polyglott) -> bool:
    return bot.conversation.busy == 0 and bot.tutor.replies_in_progress == 0


def replies_to(fake: FakeDiscord, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's messages quoting `message`."""
    return [
        m
        for m in fake.bot_messages(int(message["channel_id"]))
        if (m.get("message_reference") or {}).get("message_id") == message["id"]
    ]


def test_the_seeded_guild_is_on_shard_1_of_2() -> None:
    """The premise of the tests below."""
    assert shard_of(GUILD_ID, 2) == 1


# The client


async def test_without_a_shard_count_the_bot_is_one_unsharded_connection(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    async with connected(fake, tutor, bot_settings) as bot:
        assert not isinstance(bot, discord.AutoShardedClient)
    assert fake.identified_shards == [None]
    assert fake.calls_to("GET", "/gateway/bot") == []


async def test_with_two_shards_the_bot_identifies_both_and_answers_a_server_message_on_shard_1(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    async with connected(fake, tutor, bot_settings, discord_shard_count=2, discord_shard_ids=[0, 1]) as bot:
        assert sorted(fake.identified_shards, key=repr) == [(0, 2), (1, 2)]
        message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hallo?", mentions_bot=True)
        await fake.wait_until(lambda: bool(replies_to(fake, message)) and settled(bot), WITHIN)
    assert fake.shards_of("MESSAGE_CREATE", message["id"]) == [(1, 2)]
    assert replies_to(fake, message)[0]["content"] == render(NO_LESSON_GROUP, "en")


async def test_a_process_given_shard_1_identifies_shard_1_only(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    async with connected(fake, tutor, bot_settings, discord_shard_count=2, discord_shard_ids=[1]) as bot:
        assert bot.get_guild(GUILD_ID) is not None
    assert fake.identified_shards == [(1, 2)]


async def test_a_process_given_shard_0_does_not_see_a_guild_on_shard_1(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    async with connected(fake, tutor, bot_settings, discord_shard_count=2, discord_shard_ids=[0]) as bot:
        assert bot.get_guild(GUILD_ID) is None
    assert fake.identified_shards == [(0, 2)]


async def test_a_shard_count_without_ids_serves_every_shard(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    async with connected(fake, tutor, bot_settings, discord_shard_count=3):
        pass
    assert sorted(fake.identified_shards, key=repr) == [(0, 3), (1, 3), (2, 3)]


async def test_only_the_process_serving_shard_0_sends_reminders(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    """Reminders go to DMs, which ride shard 0: one process sends them, not one per process."""
    dm = fake.dm_channel(STUDENT_ID)
    learner = f"discord:user:{STUDENT_ID}"
    await tutor.store.set_reminder(learner, "Sam", f"discord:{dm}")
    card = Card(0, learner, "es", Kind.CORRECTION, right="estaba", wrong="soy", meaning="estar", context="Yo soy.")
    assert await tutor.store.add_card(card, time.time() - 60) is not None
    waiting = render(_n("📚 {n} card is waiting for you.", "📚 {n} cards are waiting for you.", 1), "en")
    shards = {"discord_shard_count": 2, "remind_every": 0.05}
    async with connected(fake, tutor, bot_settings, discord_shard_ids=[1], **shards):
        await asyncio.sleep(0.5)  # ten reminder passes' worth
        assert fake.channel_texts(dm) == []
    async with connected(fake, tutor, bot_settings, discord_shard_ids=[0], **shards):
        await fake.wait_until(lambda: waiting in fake.channel_texts(dm), WITHIN)


# The settings


def from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(f"POLYGLOTT_{name}", value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def problem(error: pytest.ExceptionInfo[ValidationError]) -> tuple[str, str]:
    (only,) = error.value.errors(include_input=False, include_url=False)
    return str(only["loc"][0]), only["msg"]


def test_shard_ids_read_as_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, DISCORD_SHARD_COUNT="4", DISCORD_SHARD_IDS="2, 3")
    assert (settings.discord_shard_count, settings.discord_shard_ids) == (4, [2, 3])


def test_blank_shard_settings_mean_unsharded(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, DISCORD_SHARD_COUNT="", DISCORD_SHARD_IDS="")
    assert (settings.discord_shard_count, settings.discord_shard_ids) == (None, [])


def test_shard_ids_without_a_count_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as error:
        from_env(monkeypatch, DISCORD_SHARD_IDS="1")
    name, message = problem(error)
    assert name == "discord_shard_ids" and "POLYGLOTT_DISCORD_SHARD_COUNT" in message


def test_a_shard_id_outside_the_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as error:
        from_env(monkeypatch, DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS="0,2")
    name, message = problem(error)
    assert name == "discord_shard_ids" and "(1), not 2" in message


def test_a_shard_id_listed_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as error:
        from_env(monkeypatch, DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS="1,1")
    assert problem(error) == ("discord_shard_ids", "Value error, a shard id is listed twice")


def test_a_shard_count_below_one_is_refused_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ids are not blamed for the count's mistake."""
    with pytest.raises(ValidationError) as error:
        from_env(monkeypatch, DISCORD_SHARD_COUNT="0", DISCORD_SHARD_IDS="0")
    assert problem(error)[0] == "discord_shard_count"


# Serving: the `polyglott run` adapter contract


async def test_serve_on_shards_runs_until_stopped_then_closes_every_connection(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    stop = asyncio.Event()
    settings = bot_settings.model_copy(update={"discord_shard_count": 2, "discord_shard_ids": [0, 1]})
    served = asyncio.create_task(serve_discord(tutor, settings, stop, time_scale=SCALE))
    await fake.wait_until(lambda: len(fake.identified_shards) == 2, WITHIN)
    stop.set()
    await asyncio.wait_for(served, WITHIN)
    await fake.wait_until(lambda: not fake._connections, WITHIN)


async def test_serve_on_shards_explains_a_message_content_intent_the_portal_has_not_enabled(
    tutor: Tutor, bot_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    update = {"discord_message_content": True, "discord_shard_count": 2}
    async with FakeDiscord(privileged_intents=0, time_scale=SCALE):
        with pytest.raises(discord.PrivilegedIntentsRequired):
            settings = bot_settings.model_copy(update=update)
            await asyncio.wait_for(serve_discord(tutor, settings, asyncio.Event(), time_scale=SCALE), WITHIN)
    assert any("Privileged Gateway Intents" in r.getMessage() for r in caplog.records)


# Recovery: each process finishes only what was left on its own shards


async def left_writing(tutor: Tutor, channel: str, *, group: bool) -> int:
    """A reply another process is writing (or a crash left) in `channel`: stored pending, its question before it."""
    await tutor.store.save_lesson(Lesson(channel, by_code("es"), Level.A2, by_code("en"), group=group))
    question = await tutor.store.add_message(
        channel, "user", "¿Qué tal?", author_id="discord:user:7", author_name="Ana"
    )
    return await tutor.store.add_message(channel, "assistant", "", status=Status.PENDING, reply_to=question)


async def status_of(tutor: Tutor, message: int) -> str:
    row = await tutor.store._db.fetchone("SELECT status FROM messages WHERE id = ?", (message,))
    return str(row[0]) if row else "gone"


async def test_a_process_leaves_a_reply_on_another_process_shard_to_that_process(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    writing = await left_writing(tutor, f"discord:{GENERAL_CHANNEL_ID}", group=True)  # the guild is on shard 1
    async with connected(fake, tutor, bot_settings, discord_shard_count=2, discord_shard_ids=[0]) as bot:
        await fake.wait_until(lambda: settled(bot), WITHIN)
    assert await status_of(tutor, writing) == "pending"


async def test_the_process_serving_the_shard_finishes_a_reply_a_crash_left_there(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, ollama: FakeOllama
) -> None:
    writing = await left_writing(tutor, f"discord:{GENERAL_CHANNEL_ID}", group=True)
    ollama.script("Muy bien, ¿y tú?")
    async with connected(fake, tutor, bot_settings, discord_shard_count=2, discord_shard_ids=[1]) as bot:
        await fake.wait_until(lambda: bot._recovered and settled(bot), WITHIN)
        await fake.wait_until(lambda: len(fake.bot_messages(GENERAL_CHANNEL_ID)) >= 1 and settled(bot), WITHIN)
    assert await status_of(tutor, writing) in ("cut", "gone")  # a cut that showed nothing leaves no row


async def test_only_the_process_serving_shard_0_finishes_what_was_left_in_a_dm(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    writing = await left_writing(tutor, f"discord:{fake.dm_channel(STUDENT_ID)}", group=False)
    async with connected(fake, tutor, bot_settings, discord_shard_count=2, discord_shard_ids=[1]) as bot:
        await fake.wait_until(lambda: settled(bot), WITHIN)
    assert await status_of(tutor, writing) == "pending"
