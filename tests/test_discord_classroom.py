"""`/classroom` on Discord with its daily cap: discord.py's own client against the loopback fake Discord, the slash
command found on the synced tree and invoked as a real interaction; what it says is core's, asked of core."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bots.discord_bot import Polyglott
from core.conversation import MAX_DAILY_CAP
from core.errors import NotTeacher
from core.i18n import _n, render
from core.settings import Settings
from core.tutor import Tutor
from tests.fake_discord import BOT_TOKEN, EPHEMERAL, GENERAL_CHANNEL_ID, GUILD_ID, STUDENT_ID, TEACHER_ID, FakeDiscord
from tests.test_discord_bot import SCALE, command, connected, learn, lesson_of

INTEGER = 4  # Discord's application command option type


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(time_scale=SCALE) as server:
        yield server
    assert server.errors == []


@pytest.fixture
async def bot(fake: FakeDiscord, tutor: Tutor, settings: Settings) -> AsyncIterator[Polyglott]:
    changes = {
        "discord_token": SecretStr(BOT_TOKEN),
        "discord_guild_ids": [GUILD_ID],
        "discord_teacher_role": "Teacher",
    }
    async with connected(fake, tutor, settings, **changes) as client:
        yield client


def here(n: int) -> str:
    return render(
        _n("Each student can write {n} message a day here.", "Each student can write {n} messages a day here.", n),
        "en",
    )


async def test_classroom_takes_on_off_or_cap_and_an_optional_number_of_messages(
    fake: FakeDiscord, bot: Polyglott
) -> None:
    classroom = next(c for c in fake.commands[None] if c["name"] == "classroom")
    options = {o["name"]: o for o in classroom["options"]}
    assert [c["value"] for c in options["mode"]["choices"]] == ["on", "off", "cap"] and options["mode"]["required"]
    messages = options["messages"]
    assert (messages["type"], messages.get("required", False)) == (INTEGER, False)
    assert (messages["min_value"], messages["max_value"]) == (0, MAX_DAILY_CAP)


async def test_a_teacher_sets_and_lifts_a_channels_daily_cap_with_the_slash_command(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    body = await command(fake, "classroom", {"mode": "cap", "messages": 12}, GENERAL_CHANNEL_ID, TEACHER_ID)
    assert body["content"] == here(12)
    lesson = await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID))
    assert lesson is not None and lesson.daily_cap == 12
    await command(fake, "classroom", {"mode": "cap", "messages": 0}, GENERAL_CHANNEL_ID, TEACHER_ID)
    lifted = await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID))
    assert lifted is not None and lifted.daily_cap is None


async def test_a_student_cannot_set_a_channels_daily_cap(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    body = await command(fake, "classroom", {"mode": "cap", "messages": 1}, GENERAL_CHANNEL_ID, STUDENT_ID)
    assert (body["content"], body["flags"]) == (render(NotTeacher().message, "en"), EPHEMERAL)
    lesson = await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID))
    assert lesson is not None and lesson.daily_cap is None
