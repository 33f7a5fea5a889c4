"""`/report` on Telegram, end to end: the real python-telegram-bot Application over the loopback fake Bot API,
the real conversation on a fresh database seeded with a class's week. The report must reach the teacher alone:
in their private chat, or behind a deep link that the group can see but that reveals nothing and checks again,
when followed, that the person is still an admin of that group.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bots.telegram_bot import serve
from bots.telegram_html import to_html
from core.errors import NotTeacher
from core.i18n import Msg, render
from core.languages import by_code
from core.lesson import Lesson, Level
from core.report import COLUMNS
from core.settings import Settings
from core.tutor import Tutor
from tests.fake_telegram import BotMessage, FakeTelegram, parse_html

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SCALE = 0.1
WITHIN = 10.0  # seconds: a bound for a slow machine, not a pace
GROUP = -1001234567890
TEACHER, ANA, BEN = 4242, 11, 12
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(time_scale=SCALE, require_start=True) as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, telegram: FakeTelegram) -> Settings:
    return settings.model_copy(update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url})


@pytest.fixture
async def bot(tutor: Tutor, settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    """`serve` until the test ends; it must have stopped cleanly by then."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(tutor, settings, stop, time_scale=SCALE))
    await telegram.wait_for(lambda: task.done() or bool(telegram.calls_to("getUpdates")), WITHIN)
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WITHIN)


@pytest.fixture(autouse=True)
async def week(tutor: Tutor, telegram: FakeTelegram) -> None:
    """A Spanish class whose students wrote this week; the teacher is the group's admin."""
    store, now, channel = tutor.store, time.time(), f"telegram:{GROUP}"
    await store.save_lesson(Lesson(channel, by_code("es"), Level.A2, by_code("en"), group=True))
    for user, name, messages in ((ANA, "Ana", 3), (BEN, "Ben", 1)):
        await store.set_learner_language(f"telegram:user:{user}", name, "en")
        for n in range(messages):
            await store.practised(f"telegram:user:{user}", "es", channel, now - 3600 * (n + 1), True)
    await store.mistake(f"telegram:user:{ANA}", "es", "ser/estar", channel, now - 3600)
    telegram.set_admins(GROUP, admins=[TEACHER])


def said(message: Msg) -> str:
    """A message of core's as Telegram shows it, in English."""
    return parse_html(to_html(render(message, "en")))[0]


def sent(telegram: FakeTelegram, chat: int) -> list[BotMessage]:
    return sorted(telegram.messages.get(chat, {}).values(), key=lambda message: message.message_id)


def files(telegram: FakeTelegram, chat: int) -> list[BotMessage]:
    return [m for m in sent(telegram, chat) if m.document is not None or m.photo is not None]


def link_payload(telegram: FakeTelegram, message: BotMessage) -> str:
    """The deep link's `start` payload of the one button under `message`."""
    assert message.reply_markup is not None
    (button,) = [b for row in message.reply_markup["inline_keyboard"] for b in row]
    assert button["url"].startswith(f"https://t.me/{telegram.bot_username}?start=")
    return str(button["url"].partition("?start=")[2])


def opened(payload: str) -> str:
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()


async def reported(telegram: FakeTelegram, chat: int) -> tuple[BotMessage, BotMessage, BotMessage]:
    """The report in `chat`, once its chart has come: the figures, the CSV and the chart."""
    await telegram.wait_for(lambda: any(m.photo for m in sent(telegram, chat)), WITHIN)
    figures, table, chart = sent(telegram, chat)[-3:]
    return figures, table, chart


def assert_is_the_report(figures: BotMessage, table: BotMessage, chart: BotMessage) -> None:
    assert "Ana" in figures.plain and "Ben" in figures.plain and figures.document is None
    assert table.document is not None and table.document["file_name"] == "polyglott-report.csv"
    assert table.content is not None
    rows = list(csv.reader(io.StringIO(table.content.decode())))
    assert rows[0] == list(COLUMNS) and [row[COLUMNS.index("student")] for row in rows[1:]] == [
        "Ana",
        "Ana",
        "Ben",
        "Ben",
    ]
    assert chart.photo is not None and chart.content is not None and chart.content.startswith(PNG)


@pytest.mark.usefixtures("bot")
async def test_a_teacher_gets_the_report_in_their_private_chat_and_the_group_nothing(telegram: FakeTelegram) -> None:
    telegram.started.add(TEACHER)  # the teacher has opened the private chat with the bot
    telegram.add_command(GROUP, TEACHER, "report", at_bot=True)
    assert_is_the_report(*await reported(telegram, TEACHER))
    await asyncio.sleep(0.2)  # anything meant for the group would have come with it
    assert sent(telegram, GROUP) == []


@pytest.mark.usefixtures("bot")
async def test_a_teacher_who_never_started_the_bot_gets_a_link_in_the_group_that_reveals_nothing(
    telegram: FakeTelegram,
) -> None:
    telegram.add_command(GROUP, TEACHER, "report", at_bot=True)
    await telegram.wait_for(lambda: bool(sent(telegram, GROUP)), WITHIN)
    await asyncio.sleep(0.2)  # the CSV and the chart would follow the link now, if they were to
    (link,) = sent(telegram, GROUP)
    assert opened(link_payload(telegram, link)) == f"report:telegram:{GROUP}"
    assert "Ana" not in link.plain and "Ben" not in link.plain and "ser/estar" not in link.plain
    assert files(telegram, GROUP) == [] and sent(telegram, TEACHER) == []
    refused = [c for c in telegram.calls_to("sendMessage") if c.status == 403]
    assert refused  # Telegram would not let the bot write to the teacher first

    telegram.add_command(TEACHER, TEACHER, "start", link_payload(telegram, link))  # the link opens the private chat
    assert_is_the_report(*await reported(telegram, TEACHER))
    assert sent(telegram, GROUP) == [link]


@pytest.mark.usefixtures("bot")
async def test_a_link_followed_by_someone_no_longer_an_admin_is_refused(telegram: FakeTelegram) -> None:
    telegram.add_command(GROUP, TEACHER, "report", at_bot=True)
    await telegram.wait_for(lambda: bool(sent(telegram, GROUP)), WITHIN)
    (link,) = sent(telegram, GROUP)
    telegram.set_member(GROUP, TEACHER, "member")  # demoted since
    telegram.add_command(TEACHER, TEACHER, "start", link_payload(telegram, link))
    await telegram.wait_for(lambda: bool(sent(telegram, TEACHER)), WITHIN)
    await asyncio.sleep(0.2)
    assert [m.plain for m in sent(telegram, TEACHER)] == [said(NotTeacher().message)]
    members = [c for c in telegram.calls_to("getChatMember") if c.params.get("user_id") in (TEACHER, str(TEACHER))]
    assert len(members) == 2  # asked in the group, and asked again when the link was followed


@pytest.mark.usefixtures("bot")
async def test_a_student_who_follows_a_teachers_link_is_refused(telegram: FakeTelegram) -> None:
    telegram.add_command(GROUP, TEACHER, "report", at_bot=True)
    await telegram.wait_for(lambda: bool(sent(telegram, GROUP)), WITHIN)
    (link,) = sent(telegram, GROUP)
    telegram.add_command(ANA, ANA, "start", link_payload(telegram, link))  # anyone in the group can press it
    await telegram.wait_for(lambda: bool(sent(telegram, ANA)), WITHIN)
    await asyncio.sleep(0.2)
    assert [m.plain for m in sent(telegram, ANA)] == [said(NotTeacher().message)]


@pytest.mark.usefixtures("bot")
async def test_a_student_asking_for_the_report_is_refused(telegram: FakeTelegram) -> None:
    telegram.started.add(BEN)
    telegram.add_command(GROUP, BEN, "report", at_bot=True)
    await telegram.wait_for(lambda: bool(sent(telegram, GROUP)), WITHIN)
    await asyncio.sleep(0.2)
    assert [m.plain for m in sent(telegram, GROUP)] == [said(NotTeacher().message)]
    assert files(telegram, GROUP) == [] and files(telegram, BEN) == []
