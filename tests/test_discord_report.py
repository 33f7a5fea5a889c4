"""`/report` on Discord, end to end: discord.py's own client against the loopback fake Discord, the real
conversation on a fresh database seeded with a class's week. Everything of the report is ephemeral: only the
teacher who ran the command sees it, and the channel gets nothing.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from bots.discord_bot import Polyglott, build_bot
from core.errors import NotTeacher
from core.i18n import render
from core.languages import by_code
from core.lesson import Lesson, Level
from core.report import COLUMNS
from core.settings import Settings
from core.tutor import Tutor
from tests.fake_discord import (
    BOT_TOKEN,
    EPHEMERAL,
    GENERAL_CHANNEL_ID,
    GUILD_ID,
    MODERATOR_ID,
    STUDENT2_ID,
    STUDENT_ID,
    TEACHER_ID,
    FakeDiscord,
    FakeInteraction,
)

SCALE = 0.05
WITHIN = 10.0  # seconds: a bound for a slow machine, not a pace
CHANNEL = f"discord:{GENERAL_CHANNEL_ID}"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(time_scale=SCALE) as server:
        yield server
    assert server.errors == []


@pytest.fixture
async def bot(fake: FakeDiscord, tutor: Tutor, settings: Settings) -> AsyncIterator[Polyglott]:
    configured = settings.model_copy(
        update={
            "discord_token": SecretStr(BOT_TOKEN),
            "discord_guild_ids": [GUILD_ID],
            "discord_teacher_role": "Teacher",
        }
    )
    client = build_bot(tutor, configured, time_scale=SCALE)
    async with fake.connected(client):
        yield client


@pytest.fixture(autouse=True)
async def week(tutor: Tutor) -> None:
    """A Spanish class in #general whose two students wrote this week."""
    store, now = tutor.store, time.time()
    await store.save_lesson(Lesson(CHANNEL, by_code("es"), Level.A2, by_code("en"), group=True))
    for user, name in ((STUDENT_ID, "Mia"), (STUDENT2_ID, "Lea")):
        await store.set_learner_language(f"discord:user:{user}", name, "en")
        await store.practised(f"discord:user:{user}", "es", CHANNEL, now - 3600, True)
    await store.mistake(f"discord:user:{STUDENT_ID}", "es", "ser/estar", CHANNEL, now - 3600)


async def report(fake: FakeDiscord, bot: Polyglott, user: int) -> FakeInteraction:
    """`/report` in #general by `user`, once everything it caused is shown."""
    interaction = await fake.invoke_command("report", {}, GENERAL_CHANNEL_ID, user)
    await interaction.wait_response(WITHIN)
    await fake.wait_until(lambda: bot.conversation.busy == 0, WITHIN)
    return interaction


def attachment(message: dict[str, Any]) -> tuple[str, str, int]:
    (file,) = message["attachments"]
    return file["filename"], file["content_type"], int(file["id"])


@pytest.mark.parametrize("teacher", [MODERATOR_ID, TEACHER_ID], ids=["manage-channels", "teacher-role"])
async def test_the_report_is_ephemeral_with_its_csv_and_chart(fake: FakeDiscord, bot: Polyglott, teacher: int) -> None:
    interaction = await report(fake, bot, teacher)
    await fake.wait_until(lambda: len(interaction.followups) == 2, WITHIN)
    figures, table, chart = interaction.original, *interaction.followups
    assert figures is not None and figures["flags"] & EPHEMERAL
    assert "**Lea**" in figures["content"] and "**Mia**" in figures["content"]
    assert table["flags"] & EPHEMERAL and chart["flags"] & EPHEMERAL
    name, kind, csv_id = attachment(table)
    assert (name, kind) == ("polyglott-report.csv", "text/csv")
    rows = list(csv.reader(io.StringIO(fake.uploads[csv_id].decode())))
    assert rows[0] == list(COLUMNS) and len(rows) == 1 + 2 * 2
    name, kind, png_id = attachment(chart)
    assert (name, kind) == ("polyglott-report.png", "image/png") and fake.uploads[png_id].startswith(PNG)
    assert fake.bot_messages(GENERAL_CHANNEL_ID) == []  # nothing of it for the class to see


async def test_a_student_is_refused_privately(fake: FakeDiscord, bot: Polyglott) -> None:
    interaction = await report(fake, bot, STUDENT_ID)
    refusal = interaction.original
    assert refusal is not None and refusal["flags"] & EPHEMERAL
    assert refusal["content"] == render(NotTeacher().message, "en")
    assert interaction.followups == [] and fake.bot_messages(GENERAL_CHANNEL_ID) == []


async def test_report_is_a_server_command(fake: FakeDiscord, bot: Polyglott) -> None:
    (command,) = [c for c in fake.commands[None] if c["name"] == "report"]
    assert command["contexts"] == [0] and not command.get("options")
