"""The Telegram adapter end to end: the real python-telegram-bot Application long-polls the loopback fake
Bot API (tests/fake_telegram.py), the real tutor and conversation run on a fresh database, the fake Ollama
writes replies. What the bot says is core's: expected texts are core's messages, rendered, never copies.

Time: the fake applies Telegram's flood windows (3 updates per 3 s in a chat, 20 per 60 s in a group, 30
per second overall) at `SCALE` of real time, and the adapter is served with `time_scale=SCALE`, which scales
its pacing windows, edit and draft cadence and retry-after waits by the same factor. So the adapter is
held to Telegram's real limits, on a shrunken clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr
from telegram.error import InvalidToken

from bots.telegram_bot import MessageRateLimiter, serve
from bots.telegram_html import to_html
from core.commands import COMMANDS
from core.conversation import (
    CSV_COLUMNS,
    HELP_GROUP,
    HELP_INTRO,
    PICK_LANGUAGE,
    PRIVACY,
    RESTARTED,
    WELCOME_PRIVATE,
    Notice,
)
from core.errors import (
    LessonPaused,
    ModelMissing,
    NotTeacher,
    OllamaUnavailable,
    ReplyInterrupted,
    UnknownLanguage,
)
from core.i18n import UI_LANGUAGES, Msg, render
from core.languages import POPULAR, find_language
from core.lesson import Level
from core.settings import Settings
from core.store import Shown, Status
from core.tutor import CUT_MARK, Channel, Tutor
from tests.conftest import MODEL
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.fake_telegram import BotMessage, FakeTelegram, parse_html

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SCALE = 0.1
USER = 4242
GROUP = -1001234567890  # a supergroup
CREATOR, ADMIN = 1, 2
STUDENT = 11
DM = Channel(f"telegram:{USER}")
CLASS = Channel(f"telegram:{GROUP}", group=True)
HOLA = "¡Hola! Hoy hablamos de comida. ¿Qué te gusta comer por la mañana y por la noche?"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    # As Telegram: the bot may write to a private chat only once its user has written there.
    async with FakeTelegram(time_scale=SCALE, require_start=True) as fake:
        fake.set_admins(GROUP, creator=CREATOR, admins=[ADMIN, fake.bot_id])
        yield fake


@pytest.fixture
def settings(settings: Settings, telegram: FakeTelegram) -> Settings:
    return settings.model_copy(update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url})


@contextlib.asynccontextmanager
async def running(tutor: Tutor, settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    """`serve` as `polyglott run` calls it, until the block ends; it must have stopped cleanly by then."""
    stop = asyncio.Event()
    polls, hooks = len(telegram.calls_to("getUpdates")), len(telegram.calls_to("setWebhook"))
    task = asyncio.create_task(serve(tutor, settings, stop, time_scale=SCALE))
    await telegram.wait_for(
        lambda: (
            task.done()
            or len(telegram.calls_to("getUpdates")) > polls
            or len(telegram.calls_to("setWebhook", ok=True)) > hooks
        )
    )
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def bot(tutor: Tutor, settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    async with running(tutor, settings, telegram):
        yield


async def lesson(tutor: Tutor, channel: Channel, level: str = "A2") -> None:
    """Start a Spanish lesson through the core, as a /learn would (its opener is not shown anywhere)."""
    async for _ in await tutor.start(channel, "spanish", level):
        pass


def sent(telegram: FakeTelegram, chat_id: int) -> list[BotMessage]:
    """The bot's messages in a chat, oldest first (message ids are shared with the users' messages)."""
    return [m for _, m in sorted(telegram.messages.get(chat_id, {}).items())]


def answer_to(telegram: FakeTelegram, chat_id: int, update: dict[str, Any]) -> BotMessage | None:
    """The bot's message that quotes the user's message in `update`."""
    asked = update["message"]["message_id"]
    return next((m for m in telegram.messages.get(chat_id, {}).values() if m.reply_to_message_id == asked), None)


def buttons(message: BotMessage | None) -> list[str]:
    """The callback data of a message's buttons, row by row."""
    assert message is not None and message.reply_markup is not None
    return [b["callback_data"] for row in message.reply_markup["inline_keyboard"] for b in row if "callback_data" in b]


def link_payloads(message: BotMessage | None) -> list[str]:
    """The `start` payloads of a message's deep-link buttons."""
    assert message is not None and message.reply_markup is not None
    urls = [b["url"] for row in message.reply_markup["inline_keyboard"] for b in row if "url" in b]
    assert all(url.startswith("https://t.me/polyglott_bot?") for url in urls)
    return [parse_qs(urlsplit(url).query)["start"][0] for url in urls]


def last_prompt(ollama: FakeOllama) -> list[dict[str, str]]:
    return ollama.chat_requests[-1]["messages"]


def shown(message: Msg, language: str = "en") -> str:
    """What a learner sees of one of core's messages: rendered in `language`, its Markdown as Telegram shows it."""
    return parse_html(to_html(render(message, language)))[0]


def levels(code: str) -> list[str]:
    return [f"level:{code}:{level}" for level in Level]


def press(telegram: FakeTelegram, user: int, chat: int, message: BotMessage | None, data: str, **kwargs: Any) -> str:
    """Press a button under `message`; returns the query id (its answer lands in `callback_answers`)."""
    assert message is not None
    return str(telegram.add_callback_query(user, chat, message.message_id, data, **kwargs)["callback_query"]["id"])


def answered_once(telegram: FakeTelegram, *queries: str) -> bool:
    """Every query answered, and no answer tried twice (a second answer would be refused as too old)."""
    calls = telegram.calls_to("answerCallbackQuery")
    return set(queries) <= set(telegram.callback_answers) and len(calls) == len(queries) and all(c.ok for c in calls)


async def opener(telegram: FakeTelegram, ollama: FakeOllama, chat: int, user: int, args: str = "spanish") -> BotMessage:
    """`/learn <args>` from `user`; returns the opener, once it stands with its level buttons."""
    ollama.script(HOLA)
    telegram.add_command(chat, user, "learn", args, at_bot=chat < 0)
    await telegram.wait_for(lambda: (m := telegram.last_message(chat)) is not None and m.reply_markup is not None)
    message = telegram.last_message(chat)
    assert message is not None and message.plain == HOLA
    return message


# Commands


def registered(telegram: FakeTelegram, language: str = "") -> bool:
    """Whether the command menu in `language` ("": the default) is there, with its descriptions."""
    code = language or "en"
    expected = [{"command": spec.name, "description": render(spec.description, code)} for spec in COMMANDS]
    return telegram.my_commands(language_code=language) == expected


@pytest.mark.usefixtures("bot")
async def test_commands_are_registered_with_descriptions_in_the_default_language(telegram: FakeTelegram) -> None:
    await telegram.wait_for(lambda: registered(telegram))


@pytest.mark.usefixtures("bot")
async def test_commands_are_registered_in_every_ui_language(telegram: FakeTelegram) -> None:
    await telegram.wait_for(lambda: all(registered(telegram, language) for language in UI_LANGUAGES))
    assert {"de", "es", "fr", "it", "pt"} <= {c.params.get("language_code") for c in telegram.calls_to("setMyCommands")}


async def test_a_server_error_on_set_my_commands_is_tried_again(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram
) -> None:
    telegram.fail_next("setMyCommands", status=500, description="Internal Server Error")
    async with running(tutor, settings, telegram):
        await telegram.wait_for(lambda: all(registered(telegram, language) for language in ("", *UI_LANGUAGES)))
    assert [c.status for c in telegram.calls_to("setMyCommands")][:2] == [500, 200]


async def test_set_my_commands_failing_for_good_leaves_the_bot_serving_with_a_warning(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.fail_next("setMyCommands", status=500, description="Internal Server Error", times=1000)
    async with running(tutor, settings, telegram):
        telegram.add_command(USER, USER, "help")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
        async with asyncio.timeout(10):  # logged after the last answer: no call of the fake's to wake a wait_for
            while not any("could not register" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    assert telegram.my_commands() == []
    assert [r.levelname for r in caplog.records if "could not register" in r.getMessage()] == ["WARNING"]


@pytest.mark.usefixtures("bot")
async def test_start_says_what_the_tutor_is_and_offers_popular_languages(telegram: FakeTelegram) -> None:
    telegram.add_command(USER, USER, "start")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    welcome = telegram.last_message(USER)
    assert welcome is not None
    assert welcome.plain == f"{shown(WELCOME_PRIVATE)}\n\n{shown(PICK_LANGUAGE)}"
    assert buttons(welcome)[:3] == [f"learn:{code}" for code in POPULAR[:3]]


@pytest.mark.usefixtures("bot")
async def test_learn_with_language_and_level_starts_the_lesson_with_an_opener(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    ollama.script(HOLA)
    telegram.add_command(USER, USER, "learn", "spanish B1")
    await telegram.wait_for(lambda: telegram.chat_texts(USER) == [HOLA])
    started = await tutor.lesson(DM)
    assert started is not None and (started.language.code, started.level) == ("es", Level.B1)
    assert "starts now" in last_prompt(ollama)[-1]["content"]


@pytest.mark.usefixtures("bot")
async def test_learn_without_a_level_starts_at_once_and_the_opener_carries_the_six_levels(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    started = await opener(telegram, ollama, USER, USER, "french")
    assert buttons(started) == [*levels("fr"), "placement"]  # a first lesson in private offers a placement
    lesson = await tutor.lesson(DM)
    assert lesson is not None and (lesson.language.code, lesson.level) == ("fr", Level.A2)


@pytest.mark.usefixtures("bot")
async def test_the_language_pickers_buttons_start_a_lesson_whose_opener_carries_six_level_buttons(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    telegram.add_command(USER, USER, "learn")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    picker = telegram.last_message(USER)
    assert picker is not None and picker.plain == shown(PICK_LANGUAGE) and "learn:de" in buttons(picker)
    ollama.script("Hallo! Wie geht's?")
    query = press(telegram, USER, USER, picker, "learn:de")
    await telegram.wait_for(lambda: telegram.chat_texts(USER)[-1:] == ["Hallo! Wie geht's?"])
    started = await tutor.lesson(DM)
    assert started is not None and (started.language.code, started.level) == ("de", Level.A2)
    assert telegram.messages[USER][picker.message_id].reply_markup is None  # the picker became a confirmation
    assert buttons(telegram.last_message(USER)) == [*levels("de"), "placement"]
    assert answered_once(telegram, query)


@pytest.mark.usefixtures("bot")
async def test_pressing_a_level_changes_the_lesson_and_says_so(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    started = await opener(telegram, ollama, USER, USER)
    query = press(telegram, USER, USER, started, "level:es:B1")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    changed = await tutor.lesson(DM)
    assert changed is not None and changed.level == Level.B1
    said = telegram.chat_texts(USER)[-1]
    assert "B1" in said and render(Level.B1.label, "en") in said
    assert answered_once(telegram, query) and not telegram.callback_answers[query].get("text")


@pytest.mark.usefixtures("bot")
async def test_a_second_press_of_the_same_level_answers_already_privately_in_an_alert(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    started = await opener(telegram, ollama, USER, USER)
    first = press(telegram, USER, USER, started, "level:es:B1")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    second = press(telegram, USER, USER, started, "level:es:B1")
    await telegram.wait_for(lambda: second in telegram.callback_answers)
    alert = telegram.callback_answers[second]
    assert alert.get("show_alert") is True and "B1" in alert["text"]
    await asyncio.sleep(0.1)
    assert len(telegram.chat_texts(USER)) == 2  # nothing new in the chat
    assert answered_once(telegram, first, second)


async def test_a_button_pressed_after_the_bot_restarted_still_works(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    async with running(tutor, settings, telegram):
        started = await opener(telegram, ollama, USER, USER)
    await tutor.close()
    again = await Tutor.open(settings)  # a new process: a new Application, the same database and chat
    try:
        async with running(again, settings, telegram):
            query = press(telegram, USER, USER, started, "level:es:C1")
            await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
        changed = await again.lesson(DM)
    finally:
        await again.close()
    assert changed is not None and changed.level == Level.C1
    assert answered_once(telegram, query)


@pytest.mark.usefixtures("bot")
async def test_a_press_on_a_message_too_old_to_show_is_answered_that_it_expired(telegram: FakeTelegram) -> None:
    query = str(telegram.add_callback_query(USER, USER, 999, "level:es:B1")["callback_query"]["id"])
    await telegram.wait_for(lambda: query in telegram.callback_answers)
    assert telegram.callback_answers[query]["text"] == shown(Notice.EXPIRED.value)
    assert telegram.callback_answers[query].get("show_alert") is True
    assert answered_once(telegram, query) and telegram.chat_texts(USER) == []


@pytest.mark.usefixtures("bot")
async def test_an_unknown_language_is_explained_and_nothing_changes(telegram: FakeTelegram, tutor: Tutor) -> None:
    telegram.add_command(USER, USER, "learn", "klingon")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    with pytest.raises(UnknownLanguage) as unknown:
        find_language("klingon")
    assert telegram.chat_texts(USER) == [shown(unknown.value.message)]
    assert await tutor.lesson(DM) is None


@pytest.mark.usefixtures("bot")
async def test_level_and_native_change_the_lesson_and_status_reports_it(telegram: FakeTelegram, tutor: Tutor) -> None:
    await lesson(tutor, DM)
    telegram.add_command(USER, USER, "level", "C1")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    telegram.add_command(USER, USER, "native", "german")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    telegram.add_command(USER, USER, "status")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 3)
    changed = await tutor.lesson(DM)
    assert changed is not None and (changed.level, changed.native.code) == (Level.C1, "de")
    assert "C1" in telegram.chat_texts(USER)[-1]


@pytest.mark.usefixtures("bot")
async def test_stop_pauses_the_lesson_and_learn_resumes_it(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    telegram.add_command(USER, USER, "stop")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    assert telegram.chat_texts(USER)[1] == shown(LessonPaused().message)
    ollama.script(HOLA)
    telegram.add_command(USER, USER, "learn", "spanish")
    await telegram.wait_for(lambda: telegram.chat_texts(USER)[-1] == HOLA)
    resumed = await tutor.lesson(DM)
    assert resumed is not None and resumed.active


@pytest.mark.usefixtures("bot")
async def test_reset_forgets_the_conversation(telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama) -> None:
    await lesson(tutor, DM)
    telegram.add_private_message(USER, "Me llamo Ana")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    telegram.add_command(USER, USER, "reset")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 3)
    assert not any("Me llamo Ana" in m["content"] for m in last_prompt(ollama))


@pytest.mark.usefixtures("bot")
async def test_help_in_a_group_lists_the_commands_and_how_to_talk_to_the_tutor(telegram: FakeTelegram) -> None:
    telegram.add_command(GROUP, STUDENT, "help", at_bot=True)
    await telegram.wait_for(lambda: telegram.last_message(GROUP) is not None)
    help_text = telegram.chat_texts(GROUP)[0]
    assert all(f"/{spec.name}" in help_text for spec in COMMANDS)
    assert shown(HELP_INTRO) in help_text and shown(HELP_GROUP) in help_text


@pytest.mark.usefixtures("bot")
async def test_a_german_app_gets_german_help(telegram: FakeTelegram) -> None:
    telegram.add_command(USER, USER, "help", language_code="de")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    help_text = telegram.chat_texts(USER)[0]
    assert shown(HELP_INTRO, "de") in help_text and shown(PRIVACY, "de") in help_text
    for spec in COMMANDS:
        assert (render(spec.description, "de") in help_text) is not spec.groups_only  # /classroom: groups only
    assert render(HELP_INTRO, "de") != render(HELP_INTRO, "en"), "core/locales/de has no translation of the help yet"


@pytest.mark.usefixtures("bot")
async def test_commands_for_another_bot_are_left_alone(telegram: FakeTelegram) -> None:
    telegram.add_message(GROUP, STUDENT, "/help@other_bot")
    telegram.add_message(GROUP, STUDENT, "/translate@polyglott_bot hola")
    await telegram.wait_for(lambda: telegram.last_message(GROUP) is not None)
    await asyncio.sleep(0.1)
    (unknown,) = telegram.chat_texts(GROUP)  # one answer, to the command that named us
    assert "/translate" in unknown and "/help" in unknown


# Private chats


@pytest.mark.usefixtures("bot")
async def test_before_a_lesson_a_learner_is_guided_to_learn_with_buttons(telegram: FakeTelegram) -> None:
    telegram.add_private_message(USER, "hola")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    guide = telegram.last_message(USER)
    assert guide is not None and guide.plain == shown(PICK_LANGUAGE) and "learn:es" in buttons(guide)


@pytest.mark.usefixtures("bot")
async def test_a_private_reply_streams_as_drafts_then_lands_as_one_message(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script(Script(HOLA, delay=0.02))
    telegram.add_private_message(USER, "Hola, ¿qué tal?")
    await telegram.wait_for(lambda: telegram.chat_texts(USER) == [HOLA])
    drafts = telegram.drafts[USER]
    assert len(drafts) >= 3 and len({d.draft_id for d in drafts}) == 1
    assert all(HOLA.startswith(d.plain) for d in drafts)
    assert telegram.calls_to("editMessageText") == [] and len(telegram.calls_to("sendMessage")) == 1
    assert drafts[-1].time < telegram.calls_to("sendMessage")[0].time
    typing = telegram.calls_to("sendChatAction")
    assert typing and typing[0].params["action"] == "typing" and typing[0].time < drafts[0].time


@pytest.mark.usefixtures("bot")
async def test_a_private_conversation_sends_the_history_to_the_model(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script(HOLA)
    telegram.add_private_message(USER, "Hola, soy Ana", first_name="Ana")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    telegram.add_private_message(USER, "Me gusta el pan")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    said = [(m["role"], m["content"].split("\n\n(")[0]) for m in last_prompt(ollama)[-3:]]
    assert said == [("user", "Hola, soy Ana"), ("assistant", HOLA), ("user", "Me gusta el pan")]
    assert "Ana" in last_prompt(ollama)[0]["content"]  # the system prompt names the learner


@pytest.mark.parametrize("mode", ["unavailable", "not_found"])
async def test_refused_drafts_fall_back_to_send_then_edit(
    mode: str, tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    telegram.drafts_mode = mode  # type: ignore[assignment]
    await lesson(tutor, DM)
    ollama.script(Script(HOLA, delay=0.03), "¡Bien!")
    async with running(tutor, settings, telegram):
        telegram.add_private_message(USER, "Hola")
        await telegram.wait_for(lambda: telegram.chat_texts(USER) == [HOLA])
        telegram.add_private_message(USER, "Otra vez")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    reply = sent(telegram, USER)[0]
    assert reply.history and all(HOLA.startswith(text) for text, _ in reply.history)  # sent early, then edited
    assert len(telegram.calls_to("sendMessageDraft")) == 1  # refused once, not asked again
    assert telegram.flood_errors == []


@pytest.mark.usefixtures("bot")
async def test_a_draft_refusal_turns_drafts_off_in_that_chat_only(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    other = USER + 1
    await lesson(tutor, DM)
    await lesson(tutor, Channel(f"telegram:{other}"))
    ollama.script(Script(HOLA, delay=0.02), Script(HOLA, delay=0.02))
    telegram.fail_next("sendMessageDraft", description="Bad Request: TEXTDRAFT_PEER_INVALID")
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: telegram.chat_texts(USER) == [HOLA])
    telegram.add_private_message(other, "Hola")
    await telegram.wait_for(lambda: telegram.chat_texts(other) == [HOLA])
    assert sent(telegram, USER)[0].history  # sent early, then edited
    assert telegram.drafts.get(other) and not sent(telegram, other)[0].history  # drafts, then one message


@pytest.mark.usefixtures("bot")
async def test_a_server_error_on_a_draft_falls_back_for_that_reply_only(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script(Script(HOLA, delay=0.02), Script("¡Muy bien! " * 8, delay=0.02))
    telegram.fail_next("sendMessageDraft", status=500, description="Internal Server Error")
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: telegram.chat_texts(USER) == [HOLA])
    assert sent(telegram, USER)[0].history  # this reply: send-then-edit
    drafts = len(telegram.drafts.get(USER, []))
    telegram.add_private_message(USER, "Otra vez")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    assert len(telegram.drafts[USER]) > drafts and not sent(telegram, USER)[1].history  # the next: drafts again


@pytest.mark.parametrize("rest", ["", " \u200b\u2060"], ids=["bare", "invisible"])
@pytest.mark.usefixtures("bot")
async def test_a_mention_with_nothing_to_read_gets_a_one_line_prompt_to_write(
    rest: str, telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    requests = len(ollama.chat_requests)
    asked = telegram.add_message(GROUP, STUDENT, f"@{telegram.bot_username}{rest}")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    assert telegram.chat_texts(GROUP) == [shown(Notice.EMPTY.value)]
    assert answer_to(telegram, GROUP, asked) is not None and len(ollama.chat_requests) == requests


@pytest.mark.usefixtures("bot")
async def test_non_text_messages_get_a_short_note_in_private(telegram: FakeTelegram) -> None:
    telegram.add_sticker(USER, USER)
    telegram.add_voice(USER, USER)
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    assert telegram.chat_texts(USER) == [shown(Notice.NOT_TEXT.value)] * 2


@pytest.mark.usefixtures("bot")
async def test_edited_messages_are_ignored(telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama) -> None:
    await lesson(tutor, DM)
    first = telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    telegram.add_edited_message(USER, first["message"]["message_id"], "Hola, ¿qué tal?")
    telegram.add_private_message(USER, "Adiós")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    await asyncio.sleep(0.1)
    assert len(telegram.chat_texts(USER)) == 2
    assert not any("qué tal" in m["content"] for m in last_prompt(ollama))


@pytest.mark.usefixtures("bot")
async def test_a_deep_link_cannot_press_an_action_with_arguments(telegram: FakeTelegram, tutor: Tutor) -> None:
    """`forget:yes` deletes a learner's data: a link someone sends them must not be able to press it."""
    await lesson(tutor, DM)
    telegram.add_private_message(USER, "Me llamo Ana")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    payload = base64.urlsafe_b64encode(b"forget:yes").decode().rstrip("=")
    telegram.add_command(USER, USER, "start", payload)
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    assert shown(WELCOME_PRIVATE) in telegram.chat_texts(USER)[1]  # a plain /start
    assert await tutor.store.kept(f"telegram:user:{USER}")


# Groups


@pytest.mark.usefixtures("bot")
async def test_a_mention_in_a_group_is_answered_and_the_student_is_named(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    ollama.script(HOLA)
    asked = telegram.add_mention(GROUP, 11, "hola, me gusta el café", first_name="Ana")
    await telegram.wait_for(lambda: telegram.chat_texts(GROUP) == [HOLA])
    assert answer_to(telegram, GROUP, asked) is not None
    assert last_prompt(ollama)[-1]["content"].startswith("Ana: hola, me gusta el café\n")


@pytest.mark.usefixtures("bot")
async def test_a_reply_to_the_tutor_in_a_group_is_answered(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    telegram.add_mention(GROUP, 11, "hola", first_name="Ana")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    ollama.script(HOLA)
    asked = telegram.add_reply_to_bot(GROUP, 12, "yo también", first_name="Ben")
    await telegram.wait_for(lambda: telegram.chat_texts(GROUP)[-1:] == [HOLA])
    assert answer_to(telegram, GROUP, asked) is not None
    assert last_prompt(ollama)[-1]["content"].startswith("Ben: yo también")


@pytest.mark.usefixtures("bot")
async def test_group_messages_not_for_the_tutor_are_left_alone(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    requests = len(ollama.chat_requests)
    telegram.add_group_message(GROUP, 11, "¿alguien tiene los deberes?")
    telegram.add_sticker(GROUP, 12)
    telegram.add_mention(GROUP, 13, "y tú?", first_name="Chloé")  # this one is for the tutor
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    await asyncio.sleep(0.1)
    assert len(telegram.chat_texts(GROUP)) == 1 and len(ollama.chat_requests) == requests + 1
    assert "deberes" not in str(ollama.chat_requests)


@pytest.mark.usefixtures("bot")
async def test_a_sticker_in_reply_to_the_tutor_gets_the_note(telegram: FakeTelegram, tutor: Tutor) -> None:
    await lesson(tutor, CLASS)
    telegram.add_mention(GROUP, STUDENT, "hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    tutor_message = telegram.last_message(GROUP)
    assert tutor_message is not None
    telegram.add_sticker(GROUP, STUDENT, reply_to_message_id=tutor_message.message_id)
    await telegram.wait_for(lambda: telegram.chat_texts(GROUP)[-1:] == [shown(Notice.NOT_TEXT.value)])


@pytest.mark.usefixtures("bot")
async def test_only_admins_change_a_classrooms_lesson(telegram: FakeTelegram, tutor: Tutor) -> None:
    asked = [telegram.add_command(GROUP, STUDENT, command, args, at_bot=True) for command, args in
             [("learn", "french A1"), ("reset", ""), ("stop", "")]]  # fmt: skip
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 3)
    assert telegram.chat_texts(GROUP) == [shown(NotTeacher().message)] * 3
    assert all(answer_to(telegram, GROUP, update) is not None for update in asked)  # each a reply to the student
    assert await tutor.lesson(CLASS) is None
    telegram.add_command(GROUP, ADMIN, "learn", "french A1", at_bot=True)
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 4)
    telegram.add_command(GROUP, CREATOR, "level", "B1")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 5)
    changed = await tutor.lesson(CLASS)
    assert changed is not None and (changed.language.code, changed.level) == ("fr", Level.B1)


@pytest.mark.usefixtures("bot")
async def test_an_anonymous_admin_posting_as_the_group_may_change_the_lesson(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    ollama.script(HOLA)
    anonymous = 1087968824  # Telegram's GroupAnonymousBot, the sender of an anonymous admin's messages
    as_group = {"sender_chat": {"id": GROUP, "type": "supergroup", "title": "Clase de español"}}
    telegram.add_command(GROUP, anonymous, "learn", "french A1", at_bot=True, extra=as_group)
    await telegram.wait_for(lambda: telegram.chat_texts(GROUP) == [HOLA])
    started = await tutor.lesson(CLASS)
    assert started is not None and (started.language.code, started.level) == ("fr", Level.A1)


@pytest.mark.usefixtures("bot")
async def test_a_student_pressing_a_level_button_in_a_group_is_refused_privately(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    started = await opener(telegram, ollama, GROUP, ADMIN)
    query = press(telegram, STUDENT, GROUP, started, "level:es:B2")
    await telegram.wait_for(lambda: query in telegram.callback_answers)
    refusal = telegram.callback_answers[query]
    assert refusal["text"] == shown(NotTeacher().message) and refusal.get("show_alert") is True
    await asyncio.sleep(0.1)
    unchanged = await tutor.lesson(CLASS)
    assert unchanged is not None and unchanged.level == Level.A2
    assert telegram.chat_texts(GROUP) == [HOLA] and buttons(telegram.messages[GROUP][started.message_id])
    assert answered_once(telegram, query)


@pytest.mark.usefixtures("bot")
async def test_an_admin_demoted_after_a_change_is_refused_the_next_one(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    started = await opener(telegram, ollama, GROUP, ADMIN)
    press(telegram, ADMIN, GROUP, started, "level:es:B1")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 2)
    telegram.set_member(GROUP, ADMIN, "member")
    query = press(telegram, ADMIN, GROUP, started, "level:es:C1")
    await telegram.wait_for(lambda: query in telegram.callback_answers)
    assert telegram.callback_answers[query]["text"] == shown(NotTeacher().message)
    changed = await tutor.lesson(CLASS)
    assert changed is not None and changed.level == Level.B1


@pytest.mark.usefixtures("bot")
async def test_mydata_in_a_group_sends_the_csv_to_the_private_chat(telegram: FakeTelegram, tutor: Tutor) -> None:
    await lesson(tutor, CLASS)
    telegram.add_command(USER, USER, "start")  # the learner has opened the bot's private chat
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    telegram.add_mention(GROUP, USER, "me gusta el café")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    telegram.add_command(GROUP, USER, "mydata", at_bot=True)
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 3)
    document, note = sent(telegram, USER)[1:]
    assert document.document is not None and document.document["file_name"].endswith(".csv")
    assert document.content is not None and 0 < len(document.plain) <= 1024
    rows = list(csv.reader(io.StringIO(document.content.decode())))
    assert tuple(rows[0]) == CSV_COLUMNS and any("me gusta el café" in row for row in rows[1:])
    assert buttons(note)  # the way to delete it
    await asyncio.sleep(0.1)
    assert len(telegram.chat_texts(GROUP)) == 1  # nothing of it in the group


@pytest.mark.usefixtures("bot")
async def test_mydata_for_a_user_who_never_started_the_bot_links_the_private_chat_which_delivers_it(
    telegram: FakeTelegram, tutor: Tutor
) -> None:
    await lesson(tutor, CLASS)
    telegram.add_mention(GROUP, STUDENT, "me gusta el té")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    telegram.add_command(GROUP, STUDENT, "mydata", at_bot=True)

    def refused(method: str) -> list[str]:
        return [str(c.description) for c in telegram.calls_to(method) if c.status == 403]

    # The file was refused, and core linked the private chat instead, once for the file and the note with it.
    await telegram.wait_for(lambda: bool(refused("sendDocument")))
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) >= 2)
    assert all("initiate" in description for description in refused("sendDocument"))
    links = sent(telegram, GROUP)[1:]
    payloads = {payload for link in links for payload in link_payloads(link)}
    assert len(links) == 1 and len(payloads) == 1 and all(len(payload) <= 64 for payload in payloads)
    assert all("té" not in link.plain for link in links)  # the data stays out of the group
    telegram.add_command(STUDENT, STUDENT, "start", payloads.pop())  # the link opens the private chat
    await telegram.wait_for(lambda: any(m.document for m in sent(telegram, STUDENT)))
    document = next(m for m in sent(telegram, STUDENT) if m.document)
    assert document.content is not None and "me gusta el té" in document.content.decode()


async def test_classroom_on_answers_every_message_when_the_bot_can_read_them(
    tutor: Tutor, settings: Settings, ollama: FakeOllama
) -> None:
    async with FakeTelegram(time_scale=SCALE, reads_all_group_messages=True) as telegram:
        telegram.set_admins(GROUP, creator=CREATOR, admins=[ADMIN])
        settings = settings.model_copy(
            update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url}
        )
        await lesson(tutor, CLASS)
        async with running(tutor, settings, telegram):
            telegram.add_command(GROUP, ADMIN, "classroom", "on", at_bot=True)
            await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
            ollama.script(HOLA)
            asked = telegram.add_group_message(GROUP, STUDENT, "¿qué hacemos hoy?")
            await telegram.wait_for(lambda: answer_to(telegram, GROUP, asked) is not None)
    answered = answer_to(telegram, GROUP, asked)
    assert answered is not None and answered.plain == HOLA


@pytest.mark.usefixtures("bot")
async def test_forum_topics_have_their_own_lesson_and_replies_stay_in_the_topic(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS, "B2")  # the group's lesson, which a new topic starts from
    telegram.add_chat(GROUP, is_forum=True)
    ollama.script(HOLA)
    asked = telegram.add_mention(GROUP, 11, "hola", message_thread_id=7, is_topic_message=True)
    await telegram.wait_for(lambda: telegram.chat_texts(GROUP) == [HOLA])
    answered = answer_to(telegram, GROUP, asked)
    assert answered is not None and answered.message_thread_id == 7
    topic = await tutor.lesson(Channel(f"telegram:{GROUP}:7", group=True))
    assert topic is not None and topic.level == Level.B2
    telegram.add_command(GROUP, ADMIN, "level", "A1", message_thread_id=7, is_topic_message=True)
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 2)
    group = await tutor.lesson(CLASS)
    assert group is not None and group.level == Level.B2  # the topic changed alone


def _class_answers(messages: list[dict[str, str]]) -> Script:
    """A tutor answering every student waiting (the user turns since its last answer), each by name, each with a
    correction of their own words."""
    waiting = list(itertools.takewhile(lambda m: m["role"] == "user", reversed(messages)))[::-1]
    parts = []
    for turn in waiting:
        name, _, said = turn["content"].partition(": ")
        number = said.split("tiene ")[1].split()[0]
        parts.append(
            f"¡Muy bien, {name}! Hablamos un poco más de tu día.\n"
            f'✏️ "tiene {number}" → "tengo {number}" (verb form) — con «yo»: tengo'
        )
    return Script("\n\n".join(parts) + "\n\n¿Y mañana?", delay=0.01)


@pytest.mark.slow
@pytest.mark.usefixtures("bot")
async def test_a_burst_of_mentions_from_a_class_is_answered_in_fewer_messages_than_students(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    students = {100 + n: f"Student{n}" for n in range(12)}
    await lesson(tutor, CLASS)
    ollama.responder = _class_answers
    loop = asyncio.get_running_loop()
    began = loop.time()
    for user, name in students.items():
        telegram.add_mention(GROUP, user, f"yo tiene {user} gatos", first_name=name)

    def complete() -> bool:
        texts = "\n".join(telegram.chat_texts(GROUP))
        return all(f"¡Muy bien, {name}!" in texts for name in students.values()) and texts.endswith("¿Y mañana?")

    await telegram.wait_for(complete, within=40)
    await tutor.drain(10)
    took = loop.time() - began
    texts = telegram.chat_texts(GROUP)
    print(f"\nburst: {len(students)} students, {len(texts)} messages, {len(telegram.flood_errors)} 429s, "
          f"{took:.1f} s at scale {SCALE} (= {took / SCALE:.0f} Telegram seconds)")  # fmt: skip
    assert telegram.flood_errors == []
    assert 1 < len(texts) < len(students)
    assert all(text.endswith("¿Y mañana?") for text in texts)  # every answer complete


@pytest.mark.usefixtures("bot")
async def test_each_student_answered_together_gets_the_correction_of_their_own_words(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    students = {100 + n: f"Student{n}" for n in range(6)}
    await lesson(tutor, CLASS)
    ollama.responder = _class_answers
    for user, name in students.items():
        telegram.add_mention(GROUP, user, f"yo tiene {user} gatos", first_name=name)
    await telegram.wait_for(lambda: "\n".join(telegram.chat_texts(GROUP)).count("¡Muy bien") == 6, within=40)
    await tutor.drain(10)
    for user in students:
        cards = await tutor.store.cards_of(f"telegram:user:{user}")
        assert [(c.wrong, c.right) for c in cards] == [(f"tiene {user}", f"tengo {user}")]


@pytest.mark.slow
async def test_a_burst_of_private_chats_stays_within_telegrams_global_limit(
    settings: Settings, ollama: FakeOllama
) -> None:
    """Sixty learners write at once after a quiet spell, each in a private chat (no shared chat budget), with
    drafts refused so every update is a message or an edit: only the bot-wide budget keeps the bot under
    Telegram's 30 calls a second, even in the first second, when a bucket-style limiter would let 60 through."""
    # A slowed clock: the fake shares the bot's busy event loop, whose jitter must stay small beside 1 s (2.0 let one
    # flood error through on a loaded CI run, and 3.0 one in a full-suite CI run: requests held up by a stalled
    # loop arrive together; at 6.0 a stall must last over a second to bunch five).
    scale = 6.0
    tutor = await Tutor.open(settings.model_copy(update={"max_parallel": 60}))
    ollama.responder = lambda messages: Script("Hola, ¿qué tal? " * 6, delay=0.002)
    learners = range(500, 560)
    async with FakeTelegram(time_scale=scale, drafts_mode="unavailable") as telegram:
        settings = settings.model_copy(
            update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url}
        )
        for user in learners:
            async for _ in await tutor.start(Channel(f"telegram:{user}"), "spanish"):
                pass
        stop = asyncio.Event()
        task = asyncio.create_task(serve(tutor, settings, stop, time_scale=scale))
        try:
            await telegram.wait_for(lambda: bool(telegram.calls_to("getUpdates")), within=10)
            for user in learners:
                telegram.add_private_message(user, "Hola")
            expected = ("Hola, ¿qué tal? " * 6).strip()
            await telegram.wait_for(lambda: all(telegram.chat_texts(u) == [expected] for u in learners), within=60)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await tutor.close()
    assert telegram.flood_errors == []


async def test_drafts_and_typing_are_not_held_behind_messages_waiting_for_the_global_budget() -> None:
    limiter = MessageRateLimiter()
    finished: list[str] = []

    async def call(endpoint: str) -> bool:
        async def api() -> bool:
            finished.append(endpoint)
            return True

        return bool(await limiter.process_request(api, (), {}, endpoint, {"chat_id": 1}, None))

    messages = [asyncio.create_task(call("sendMessage")) for _ in range(5)]  # 1/25 s apart: 160 ms for the last
    await asyncio.sleep(0)
    await asyncio.gather(call("sendMessageDraft"), call("sendChatAction"))
    assert finished.count("sendMessage") < 5
    await asyncio.gather(*messages)
    assert finished.count("sendMessage") == 5


# Rendering and limits


async def test_a_reply_over_4096_characters_continues_in_a_new_message(
    settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    paragraph = "Esta es una frase bastante larga para practicar la lectura en español. " * 12
    long_reply = "\n\n".join(f"Parte {n}: {paragraph.strip()}" for n in range(8))
    assert len(long_reply) > 6000
    tutor = await Tutor.open(settings.model_copy(update={"num_predict": 4096}))  # room for a long answer
    try:
        await lesson(tutor, CLASS)
        ollama.script(long_reply)
        async with running(tutor, settings, telegram):
            telegram.add_mention(GROUP, 11, "cuéntame una historia")
            await telegram.wait_for(lambda: "\n\n".join(telegram.chat_texts(GROUP)) == long_reply)
    finally:
        await tutor.close()
    assert len(telegram.chat_texts(GROUP)) == 2 and all(len(p) <= 4096 for p in telegram.chat_texts(GROUP))
    assert telegram.errors() == []


@pytest.mark.usefixtures("bot")
async def test_html_hostile_model_output_is_shown_literally(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script(Script("**Bien** <b>x</i> & <script>alert(1)</script> y **sin cerrar", delay=0.01))
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    shown = sent(telegram, USER)[0]
    assert shown.parse_mode == "HTML" and shown.entities[0]["type"] == "bold"
    assert shown.plain == "Bien <b>x</i> & <script>alert(1)</script> y **sin cerrar"
    assert telegram.errors() == []


@pytest.mark.usefixtures("bot")
async def test_html_that_telegram_cannot_parse_is_resent_as_plain_text(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script("**Hola** amigo")
    telegram.fail_next("sendMessage", description="Bad Request: can't parse entities: unsupported start tag")
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    shown = sent(telegram, USER)[0]
    assert (shown.plain, shown.parse_mode) == ("**Hola** amigo", None)


# Flood control and failures


@pytest.mark.usefixtures("bot")
async def test_a_flood_wait_is_honoured_and_the_final_text_still_lands(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    ollama.script(Script(HOLA, delay=0.02))
    telegram.flood_next("editMessageText", retry_after=3, times=2)
    telegram.add_mention(GROUP, 11, "hola")
    await telegram.wait_for(lambda: telegram.chat_texts(GROUP) == [HOLA], within=5)
    floods = [c for c in telegram.calls_to("editMessageText") if c.status == 429]
    after = telegram.calls_to("editMessageText", ok=True)[0]
    assert len(floods) == 2 and after.time - floods[0].time >= 2 * 3 * SCALE
    assert telegram.flood_errors and {e.scope for e in telegram.flood_errors} == {"injected"}


@pytest.mark.usefixtures("bot")
async def test_a_bad_gateway_from_telegram_is_retried(telegram: FakeTelegram, tutor: Tutor) -> None:
    await lesson(tutor, DM)
    telegram.fail_next("sendMessage", status=502, description="Bad Gateway")
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1, within=5)


async def test_a_server_error_on_send_message_once_costs_no_reply(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    """PTB raises a plain NetworkError for a 500; the adapter's sends try it again."""
    await lesson(tutor, DM)
    ollama.script(Script(HOLA, delay=0.01))
    telegram.fail_next("sendMessage", status=500, description="Internal Server Error")
    async with running(tutor, settings, telegram):
        telegram.add_private_message(USER, "Hola")
        await telegram.wait_for(lambda: telegram.chat_texts(USER) == [HOLA], within=5)
    assert [c.status for c in telegram.calls_to("sendMessage")] == [500, 200]
    reply = (await tutor.store.transcript(DM.id))[-1]
    assert (reply.role, reply.text, reply.status) == ("assistant", HOLA, Status.COMPLETE)


# Starting up


@pytest.mark.parametrize("method", ["getMe", "deleteWebhook", "getUpdates"])
async def test_server_errors_on_a_start_up_call_are_waited_out(
    method: str, tutor: Tutor, settings: Settings, telegram: FakeTelegram
) -> None:
    telegram.fail_next(method, status=500, description="Internal Server Error", times=2)
    async with running(tutor, settings, telegram):
        telegram.add_command(USER, USER, "help")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1, within=10)
    assert [c.status for c in telegram.calls_to(method)][:3] == [500, 500, 200]


async def test_telegram_unreachable_at_start_is_waited_out(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram
) -> None:
    telegram.down = True  # every call answered 502 Bad Gateway, as a proxy in front of a dead server
    stop = asyncio.Event()
    task = asyncio.create_task(serve(tutor, settings, stop, time_scale=SCALE))
    await telegram.wait_for(lambda: len(telegram.calls_to("getMe")) >= 3, within=5)
    assert not task.done()
    telegram.down = False
    telegram.add_command(USER, USER, "help")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1, within=10)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_stop_while_telegram_is_unreachable_at_start_ends_at_once(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram
) -> None:
    telegram.down = True
    stop = asyncio.Event()
    task = asyncio.create_task(serve(tutor, settings, stop))  # unscaled: waits of 1, 2, 4 … s between tries
    await telegram.wait_for(lambda: len(telegram.calls_to("getMe")) >= 2, within=5)
    stop.set()
    await asyncio.wait_for(task, 1)


async def test_a_server_error_on_set_webhook_is_waited_out(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, unused_tcp_port: int
) -> None:
    settings = settings.model_copy(
        update={
            "telegram_webhook_url": f"http://127.0.0.1:{unused_tcp_port}/telegram",
            "telegram_webhook_listen": f"127.0.0.1:{unused_tcp_port}",
        }
    )
    telegram.fail_next("setWebhook", status=500, description="Internal Server Error")
    async with running(tutor, settings, telegram):
        telegram.add_command(USER, USER, "help")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1, within=10)
    assert [c.status for c in telegram.calls_to("setWebhook")] == [500, 200]


async def test_a_token_telegram_refuses_stops_the_bot_with_a_log_line_naming_the_setting(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(update={"telegram_token": SecretStr("999:refused")})
    with pytest.raises(InvalidToken):
        await asyncio.wait_for(serve(tutor, settings, asyncio.Event(), time_scale=SCALE), 5)
    assert len(telegram.calls_to("getMe")) == 1  # not tried again: it will not get better
    refused = [r for r in caplog.records if "POLYGLOTT_TELEGRAM_TOKEN" in r.getMessage()]
    assert [r.levelname for r in refused] == ["ERROR"]


@pytest.mark.usefixtures("bot")
async def test_ollama_down_is_reported_and_the_tutor_answers_once_it_is_back(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama, settings: Settings
) -> None:
    await lesson(tutor, DM)
    await ollama.stop()
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1, within=5)
    down = sent(telegram, USER)[0]
    assert down.plain == shown(OllamaUnavailable(settings.ollama_host).message) and "Traceback" not in down.plain
    await ollama.start()
    ollama.script(HOLA)
    telegram.add_private_message(USER, "¿Estás?")
    await telegram.wait_for(lambda: telegram.chat_texts(USER)[-1] == HOLA)


@pytest.mark.usefixtures("bot")
async def test_a_missing_model_is_reported(telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama) -> None:
    await lesson(tutor, DM)
    ollama.remove_model(MODEL)
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    assert telegram.chat_texts(USER) == [shown(ModelMissing(MODEL).message)]


@pytest.mark.usefixtures("bot")
async def test_a_cut_off_reply_stays_shown_marked_and_the_learner_is_told(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script(Script(HOLA, error_after=4, delay=0.01))
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    partial, notice = telegram.chat_texts(USER)
    assert partial.endswith("✂️") and notice == shown(ReplyInterrupted().message)


async def test_an_unexpected_failure_reaches_the_chat_as_an_apology_and_a_log_line(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.fail_next("sendMessage", description="Bad Request: chat not found")
    async with running(tutor, settings, telegram):
        telegram.add_command(USER, USER, "help")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    assert telegram.chat_texts(USER) == [shown(Notice.SORRY.value)]
    failed = [r for r in caplog.records if r.getMessage().startswith("update failed")]
    assert len(failed) == 1 and failed[0].error == "BadRequest" and failed[0].channel == f"telegram:{USER}"  # type: ignore[attr-defined]


async def test_a_button_press_that_fails_is_answered_once_and_apologised_for(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    async with running(tutor, settings, telegram):
        started = await opener(telegram, ollama, USER, USER)
        telegram.fail_next("sendMessage", description="Bad Request: chat not found")
        query = press(telegram, USER, USER, started, "level:es:B1")
        await telegram.wait_for(lambda: telegram.chat_texts(USER)[-1] == shown(Notice.SORRY.value))
    assert answered_once(telegram, query)


async def test_chats_off_the_allow_list_get_a_one_line_refusal(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    settings = settings.model_copy(update={"telegram_allowed_chats": [GROUP]})
    await lesson(tutor, DM)
    await lesson(tutor, CLASS)
    requests = len(ollama.chat_requests)
    async with running(tutor, settings, telegram):
        telegram.add_private_message(USER, "Hola")
        telegram.add_group_message(GROUP + 1, STUDENT, "charla sin mención")
        telegram.add_mention(GROUP, STUDENT, "hola")
        await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1 and len(telegram.chat_texts(USER)) == 1)
    assert telegram.chat_texts(USER) == [shown(Notice.NOT_ALLOWED.value)]
    assert GROUP + 1 not in telegram.messages  # not addressed: not even a refusal
    assert len(ollama.chat_requests) == requests + 1


async def test_log_lines_name_the_adapter_and_channel_but_never_the_text(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await lesson(tutor, DM)
    async with running(tutor, settings, telegram):
        telegram.add_private_message(USER, "mi secreto es azul")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    ours = [r for r in caplog.records if getattr(r, "adapter", None) == "telegram" and hasattr(r, "channel")]
    said = [r.getMessage() for r in ours]
    assert "message <18 chars>" in said and any(line.startswith("replied in 1 messages") for line in said)
    assert all(r.channel == f"telegram:{USER}" for r in ours)  # type: ignore[attr-defined]
    assert "secreto" not in caplog.text


# Lifecycle and recovery


async def test_an_update_delivered_again_after_a_restart_is_not_answered_twice(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await lesson(tutor, DM)
    async with running(tutor, settings, telegram):
        asked = telegram.add_private_message(USER, "Hola")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    requests = len(ollama.chat_requests)
    telegram.add_update(dict(asked))  # the same update_id again: its offset never reached Telegram
    async with running(tutor, settings, telegram):
        await telegram.wait_for(lambda: telegram.pending_updates == [])
        async with asyncio.timeout(5):  # logged once handled; no call of the fake's to wake a wait_for
            while not any("delivered twice" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    assert len(telegram.chat_texts(USER)) == 1 and len(ollama.chat_requests) == requests


async def test_a_private_reply_cut_at_shutdown_is_sent_as_a_message_with_the_mark(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    """Only drafts showed it, and a draft vanishes: the cut reply becomes a real message, marked."""
    await lesson(tutor, DM)
    ollama.script(Script(HOLA * 3, delay=0.05))
    async with running(tutor, settings.model_copy(update={"shutdown_grace": 0.3}), telegram):
        telegram.add_private_message(USER, "Hola")
        await telegram.wait_for(lambda: len(telegram.drafts.get(USER, [])) >= 2)
    [message] = sent(telegram, USER)
    assert message.plain.endswith(CUT_MARK) and message.plain.removesuffix(CUT_MARK) in telegram.draft_texts(USER)
    reply = (await tutor.store.transcript(DM.id))[-1]
    assert (reply.text, reply.status) == (message.plain, Status.CUT)


async def test_a_reply_a_crash_left_in_a_forum_topic_is_marked_and_its_question_answered_there(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    """The store as a crash leaves it: a question, and a reply shown in part whose delivery never ended."""
    topic = Channel(f"telegram:{GROUP}:7", group=True, parent=CLASS.id)
    await lesson(tutor, topic)
    telegram.add_chat(GROUP, is_forum=True)
    asked = telegram.add_mention(GROUP, STUDENT, "hola", message_thread_id=7, is_topic_message=True)
    question = asked["message"]["message_id"]
    async with telegram.make_bot() as bot:
        partial = await bot.send_message(GROUP, "¡Hola! Hoy", message_thread_id=7)
    store = tutor.store
    asked_id = await store.add_message(topic.id, "user", "hola", author_id="telegram:user:11", source=str(question))
    left = await store.add_message(topic.id, "assistant", "", status=Status.PENDING, reply_to=asked_id)
    await store.show(left, Shown((str(partial.message_id),), ("¡Hola! Hoy",)))
    ollama.script(HOLA)
    async with running(tutor, settings, telegram):
        await telegram.wait_for(lambda: answer_to(telegram, GROUP, asked) is not None)
    marked, answered = sent(telegram, GROUP)
    assert marked.plain == f"¡Hola! Hoy{CUT_MARK}\n\n{shown(RESTARTED)}"
    assert (answered.plain, answered.message_thread_id, answered.reply_to_message_id) == (HOLA, 7, question)
    rows = [(m.role, m.status) for m in await store.transcript(topic.id) if m.id >= asked_id]
    assert rows == [("user", Status.COMPLETE), ("assistant", Status.CUT), ("assistant", Status.COMPLETE)]
    assert len(ollama.chat_requests) == 2  # the opener, the answer: the replayed update is not answered again


async def test_a_restart_keeps_the_conversation(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    async with running(tutor, settings, telegram):
        telegram.add_private_message(USER, "Me llamo Ana")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    await tutor.close()
    again = await Tutor.open(settings)
    try:
        async with running(again, settings, telegram):
            telegram.add_private_message(USER, "¿Cómo me llamo?")
            await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    finally:
        await again.close()
    said = [m["content"].split("\n\n(")[0] for m in last_prompt(ollama) if m["role"] == "user"]
    assert said == ["Me llamo Ana", "¿Cómo me llamo?"]
    assert telegram.pending_updates == []


async def test_stopping_lets_a_reply_being_written_land_first(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script(Script(HOLA, delay=0.05))
    async with running(tutor, settings, telegram):
        telegram.add_private_message(USER, "Hola")
        await telegram.wait_for(lambda: bool(telegram.drafts.get(USER)))
    assert telegram.chat_texts(USER) == [HOLA]  # `serve` returned only once the final text was shown


async def test_webhook_mode_receives_updates_that_carry_the_secret(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, unused_tcp_port: int
) -> None:
    settings = settings.model_copy(
        update={
            "telegram_webhook_url": f"http://127.0.0.1:{unused_tcp_port}/telegram",
            "telegram_webhook_secret": SecretStr("s3cret"),
            "telegram_webhook_listen": f"127.0.0.1:{unused_tcp_port}",
        }
    )
    await lesson(tutor, DM)
    async with running(tutor, settings, telegram):
        assert telegram.webhook_secret == "s3cret"
        telegram.add_private_message(USER, "Hola")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    # Telegram may try before PTB's server listens (it sets the webhook first): a refused connection, tried again.
    *before, delivered = [d.status for d in telegram.webhook_deliveries]
    assert delivered == 200 and set(before) <= {None}
    assert telegram.calls_to("getUpdates") == []
