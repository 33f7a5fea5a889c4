"""`/classroom` on Telegram, end to end: the real python-telegram-bot Application against the loopback fake Bot
API (tests/fake_telegram.py), whose getMe says whether Group Privacy is off (`can_read_all_group_messages`).
What the bot says is core's, rendered; expected texts are asked of core itself, never copied."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bots.telegram_html import to_html
from core.conversation import Conversation, Origin
from core.errors import DailyCapReached
from core.settings import Settings
from core.tutor import Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_telegram import FakeTelegram, parse_html
from tests.recording import Recorder
from tests.test_telegram_bot import (
    ADMIN,
    CLASS,
    CREATOR,
    GROUP,
    HOLA,
    SCALE,
    STUDENT,
    answer_to,
    lesson,
    running,
    shown,
)

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(time_scale=SCALE) as fake:  # Group Privacy on, as BotFather leaves a new bot
        fake.set_admins(GROUP, creator=CREATOR, admins=[ADMIN, fake.bot_id])
        yield fake


@pytest.fixture
def settings(settings: Settings, telegram: FakeTelegram) -> Settings:
    return settings.model_copy(update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url})


@pytest.fixture
async def bot(tutor: Tutor, settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    async with running(tutor, settings, telegram):
        yield


async def core_says(tutor: Tutor, args: list[str], *, hears_all: bool) -> str:
    """What core answers a Telegram teacher's `/classroom …` in a class of its own, as Telegram shows it."""
    channel = Channel("telegram:-42", group=True)
    await lesson(tutor, channel)
    recorder = Recorder()
    origin = Origin(channel, Learner("telegram:user:1", "Teacher"), "telegram", hears_all=hears_all)
    await Conversation(tutor).command(origin, "classroom", args, recorder)
    return parse_html(to_html(recorder.notes[0].text))[0]


@pytest.mark.usefixtures("bot")
async def test_classroom_on_with_group_privacy_on_explains_that_privacy_must_be_turned_off(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    telegram.add_command(GROUP, ADMIN, "classroom", "on", at_bot=True)
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    explained = telegram.chat_texts(GROUP)[0]
    assert explained == await core_says(tutor, ["on"], hears_all=False)
    assert "Group Privacy" in explained and "@BotFather" in explained
    assert explained != await core_says(tutor, ["on"], hears_all=True)


@pytest.mark.usefixtures("bot")
async def test_with_group_privacy_on_a_classroom_still_answers_only_mentions(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    telegram.add_command(GROUP, ADMIN, "classroom", "on", at_bot=True)
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    asked = len(ollama.chat_requests)
    unaddressed = telegram.add_group_message(GROUP, STUDENT, "hace sol hoy")
    ollama.script(HOLA)
    mention = telegram.add_mention(GROUP, STUDENT, "¿qué hacemos?")
    await telegram.wait_for(lambda: answer_to(telegram, GROUP, mention) is not None)
    assert answer_to(telegram, GROUP, unaddressed) is None
    assert len(ollama.chat_requests) == asked + 1 and "hace sol" not in str(ollama.chat_requests)


@pytest.mark.usefixtures("bot")
async def test_classroom_cap_on_telegram_limits_each_students_messages_a_day(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    telegram.add_command(GROUP, ADMIN, "classroom", "cap 1", at_bot=True)
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    changed = await tutor.lesson(CLASS)
    assert changed is not None and changed.daily_cap == 1
    ollama.script(HOLA)
    first = telegram.add_mention(GROUP, STUDENT, "hola")
    await telegram.wait_for(lambda: answer_to(telegram, GROUP, first) is not None)
    second = telegram.add_mention(GROUP, STUDENT, "otra vez")
    await telegram.wait_for(lambda: answer_to(telegram, GROUP, second) is not None)
    note = answer_to(telegram, GROUP, second)
    assert note is not None and note.plain == shown(DailyCapReached(1).message)
    asked = len(ollama.chat_requests)
    third = telegram.add_mention(GROUP, STUDENT, "y otra")
    fourth = telegram.add_mention(GROUP, ADMIN, "yo también")  # the cap is each student's own
    await telegram.wait_for(lambda: answer_to(telegram, GROUP, fourth) is not None)
    assert answer_to(telegram, GROUP, third) is None and len(ollama.chat_requests) == asked + 1
