"""The Telegram adapter end to end: the real python-telegram-bot Application long-polls the loopback fake
Bot API (tests/fake_telegram.py), the real tutor runs on a fresh database, the fake Ollama writes replies.

Time: the fake applies Telegram's flood windows (3 updates per 3 s in a chat, 20 per 60 s in a group, 30
per second overall) at `SCALE` of real time, and the adapter is served with `time_scale=SCALE`, which scales
its pacing windows, edit and draft cadence and retry-after waits by the same factor. So the adapter is
held to Telegram's real limits, on a shrunken clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from bots.telegram_bot import NOT_ALLOWED, NOT_TEXT, ONLY_ADMINS, SORRY, MessageRateLimiter, serve
from core.lesson import Level
from core.settings import Settings
from core.tutor import Channel, Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.fake_telegram import BotMessage, FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SCALE = 0.1
USER = 4242
GROUP = -1001234567890  # a supergroup
CREATOR, ADMIN = 1, 2
DM = Channel(f"telegram:{USER}")
CLASS = Channel(f"telegram:{GROUP}", group=True)
HOLA = "¡Hola! Hoy hablamos de comida. ¿Qué te gusta comer por la mañana y por la noche?"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(time_scale=SCALE) as fake:
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
    assert message is not None and message.reply_markup is not None
    return [b["callback_data"] for row in message.reply_markup["inline_keyboard"] for b in row]


def last_prompt(ollama: FakeOllama) -> list[dict[str, str]]:
    return ollama.chat_requests[-1]["messages"]


# Commands


@pytest.mark.usefixtures("bot")
async def test_commands_are_registered_with_descriptions(telegram: FakeTelegram) -> None:
    names = [c["command"] for c in telegram.my_commands()]
    assert names == ["start", "learn", "level", "native", "status", "reset", "stop", "help"]
    assert all(c["description"] for c in telegram.my_commands())


@pytest.mark.usefixtures("bot")
async def test_start_says_what_the_tutor_is_and_offers_popular_languages(telegram: FakeTelegram) -> None:
    telegram.add_command(USER, USER, "start")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    welcome = telegram.last_message(USER)
    assert welcome is not None and "language tutor" in welcome.plain and "/learn" in welcome.plain
    assert buttons(welcome)[:3] == ["learn:es", "learn:fr", "learn:de"]


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
async def test_learn_without_a_level_offers_the_levels_as_buttons(telegram: FakeTelegram, tutor: Tutor) -> None:
    telegram.add_command(USER, USER, "learn", "french")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    assert buttons(telegram.last_message(USER)) == [f"level:fr:{level}" for level in Level]
    assert await tutor.lesson(DM) is None


@pytest.mark.usefixtures("bot")
async def test_learn_buttons_pick_a_language_then_a_level_and_start_the_lesson(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    telegram.add_command(USER, USER, "learn")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    menu = telegram.last_message(USER)
    assert menu is not None and "learn:de" in buttons(menu)
    first = telegram.add_callback_query(USER, USER, menu.message_id, "learn:de")
    await telegram.wait_for(lambda: buttons(telegram.messages[USER][menu.message_id])[0] == "level:de:A1")
    ollama.script("Hallo! Wie geht's?")
    second = telegram.add_callback_query(USER, USER, menu.message_id, "level:de:A2")
    await telegram.wait_for(lambda: telegram.chat_texts(USER)[-1] == "Hallo! Wie geht's?")
    started = await tutor.lesson(DM)
    assert started is not None and (started.language.code, started.level) == ("de", Level.A2)
    assert telegram.messages[USER][menu.message_id].reply_markup is None  # the menu became a confirmation
    assert {q["callback_query"]["id"] for q in (first, second)} <= set(telegram.callback_answers)


@pytest.mark.usefixtures("bot")
async def test_an_unknown_language_is_explained_and_nothing_changes(telegram: FakeTelegram, tutor: Tutor) -> None:
    telegram.add_command(USER, USER, "learn", "klingon")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    assert "don't know the language" in telegram.chat_texts(USER)[0]
    assert await tutor.lesson(DM) is None


@pytest.mark.usefixtures("bot")
async def test_level_and_native_change_the_lesson_and_status_reports_it(telegram: FakeTelegram, tutor: Tutor) -> None:
    await lesson(tutor, DM)
    telegram.add_command(USER, USER, "level", "C1")
    telegram.add_command(USER, USER, "native", "german")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    telegram.add_command(USER, USER, "status")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 3)
    assert telegram.chat_texts(USER)[-1] == "Learning Spanish at level C1, explanations in German."


@pytest.mark.usefixtures("bot")
async def test_stop_pauses_the_lesson_and_learn_resumes_it(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    telegram.add_command(USER, USER, "stop")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    assert "paused" in telegram.chat_texts(USER)[1]
    ollama.script(HOLA)
    telegram.add_command(USER, USER, "learn")
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
async def test_help_lists_the_commands(telegram: FakeTelegram) -> None:
    telegram.add_command(GROUP, 11, "help", at_bot=True)
    await telegram.wait_for(lambda: telegram.last_message(GROUP) is not None)
    shown = telegram.chat_texts(GROUP)[0]
    assert "/learn" in shown and "/level" in shown and "mention me" in shown


@pytest.mark.usefixtures("bot")
async def test_commands_for_another_bot_are_left_alone(telegram: FakeTelegram) -> None:
    telegram.add_message(GROUP, 11, "/help@other_bot")
    telegram.add_message(GROUP, 11, "/translate@polyglott_bot hola")
    await telegram.wait_for(lambda: telegram.last_message(GROUP) is not None)
    assert telegram.chat_texts(GROUP) == ["I don't know /translate. /help lists what I can do."]


# Private chats


@pytest.mark.usefixtures("bot")
async def test_before_a_lesson_a_learner_is_guided_to_learn_with_buttons(telegram: FakeTelegram) -> None:
    telegram.add_private_message(USER, "hola")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None)
    guide = telegram.last_message(USER)
    assert guide is not None and "/learn" in guide.plain and "learn:es" in buttons(guide)


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
async def test_non_text_messages_get_a_short_note_in_private(telegram: FakeTelegram) -> None:
    telegram.add_sticker(USER, USER)
    telegram.add_voice(USER, USER)
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    assert telegram.chat_texts(USER) == [NOT_TEXT, NOT_TEXT]


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
    telegram.add_mention(GROUP, 11, "hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1)
    tutor_message = telegram.last_message(GROUP)
    assert tutor_message is not None
    telegram.add_sticker(GROUP, 11, reply_to_message_id=tutor_message.message_id)
    await telegram.wait_for(lambda: telegram.chat_texts(GROUP)[-1:] == [NOT_TEXT])


@pytest.mark.usefixtures("bot")
async def test_only_admins_change_a_classrooms_lesson(telegram: FakeTelegram, tutor: Tutor) -> None:
    for command, args in [("learn", "french A1"), ("level", "C2"), ("native", "german"), ("reset", ""), ("stop", "")]:
        telegram.add_command(GROUP, 11, command, args, at_bot=True)
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 5)
    assert telegram.chat_texts(GROUP) == [ONLY_ADMINS] * 5
    assert await tutor.lesson(CLASS) is None
    telegram.add_command(GROUP, ADMIN, "learn", "french A1", at_bot=True)
    telegram.add_command(GROUP, CREATOR, "level", "B1")
    await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 7)
    changed = await tutor.lesson(CLASS)
    assert changed is not None and (changed.language.code, changed.level) == ("fr", Level.B1)


@pytest.mark.usefixtures("bot")
async def test_only_admins_press_lesson_buttons_in_a_group(telegram: FakeTelegram, tutor: Tutor) -> None:
    telegram.add_command(GROUP, ADMIN, "learn", "spanish", at_bot=True)
    await telegram.wait_for(lambda: telegram.last_message(GROUP) is not None)
    menu = telegram.last_message(GROUP)
    assert menu is not None
    pressed = telegram.add_callback_query(11, GROUP, menu.message_id, "level:es:B2")
    query = pressed["callback_query"]["id"]
    await telegram.wait_for(lambda: query in telegram.callback_answers)
    assert telegram.callback_answers[query]["text"] == ONLY_ADMINS
    assert await tutor.lesson(CLASS) is None and buttons(telegram.messages[GROUP][menu.message_id])


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


@pytest.mark.slow
@pytest.mark.usefixtures("bot")
async def test_a_burst_of_mentions_from_a_class_finishes_complete_without_flood_errors(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    students = {100 + n: f"Student{n}" for n in range(12)}

    def respond(messages: list[dict[str, str]]) -> Script:
        name = messages[-1]["content"].split(":")[0]
        return Script(f"¡Muy bien, {name}! " + "Hablamos un poco más de tu día. " * 4 + "¿Y mañana?", delay=0.01)

    await lesson(tutor, CLASS)
    ollama.responder = respond
    loop = asyncio.get_running_loop()
    began = loop.time()
    asked = {
        user: telegram.add_mention(GROUP, user, "¿qué hacemos hoy?", first_name=name) for user, name in students.items()
    }

    def complete() -> bool:
        return all(
            (m := answer_to(telegram, GROUP, update)) is not None and m.plain.endswith("¿Y mañana?")
            for update in asked.values()
        )

    await telegram.wait_for(complete, within=40)
    took = loop.time() - began
    answers = [answer_to(telegram, GROUP, update) for update in asked.values()]
    for user, answered in zip(students, answers, strict=True):
        assert answered is not None and answered.plain.startswith(f"¡Muy bien, {students[user]}!")
    edits = [len(m.history) for m in answers if m is not None]
    print(f"\nburst: {len(students)} students, {len(answers)} replies complete, "
          f"{len(telegram.flood_errors)} 429s, edits per reply {edits}, {took:.1f} s at scale {SCALE} "
          f"(= {took / SCALE:.0f} Telegram seconds)")  # fmt: skip
    assert telegram.flood_errors == []
    assert len(telegram.chat_texts(GROUP)) == len(students)  # one message each, no stray notices


@pytest.mark.slow
async def test_a_burst_of_private_chats_stays_within_telegrams_global_limit(
    settings: Settings, ollama: FakeOllama
) -> None:
    """Sixty learners write at once after a quiet spell, each in a private chat (no shared chat budget), with
    drafts refused so every update is a message or an edit: only the bot-wide budget keeps the bot under
    Telegram's 30 calls a second, even in the first second, when a bucket-style limiter would let 60 through."""
    scale = 2.0  # a slowed clock: the fake shares the bot's busy event loop, whose jitter must stay small beside 1 s
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


@pytest.mark.usefixtures("bot")
async def test_ollama_down_is_reported_and_the_tutor_answers_once_it_is_back(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    await ollama.stop()
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1, within=5)
    down = sent(telegram, USER)[0]
    assert "Is Ollama running?" in down.plain and down.parse_mode is None and "Traceback" not in down.plain
    await ollama.start()
    ollama.script(HOLA)
    telegram.add_private_message(USER, "¿Estás?")
    await telegram.wait_for(lambda: telegram.chat_texts(USER)[-1] == HOLA)


@pytest.mark.usefixtures("bot")
async def test_a_missing_model_is_reported(telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama) -> None:
    await lesson(tutor, DM)
    ollama.remove_model("qwen2.5:7b")
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    assert "ollama pull qwen2.5:7b" in telegram.chat_texts(USER)[0]


@pytest.mark.usefixtures("bot")
async def test_a_cut_off_reply_stays_shown_marked_and_the_learner_is_told(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script(Script(HOLA, error_after=4, delay=0.01))
    telegram.add_private_message(USER, "Hola")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2)
    partial, notice = telegram.chat_texts(USER)
    assert partial.endswith("✂️") and "cut off" in notice


async def test_an_unexpected_failure_reaches_the_chat_as_an_apology_and_a_log_line(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.fail_next("sendMessage", description="Bad Request: chat not found")
    async with running(tutor, settings, telegram):
        telegram.add_command(USER, USER, "help")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1)
    assert telegram.chat_texts(USER) == [SORRY]
    failed = [r for r in caplog.records if r.getMessage().startswith("update failed")]
    assert len(failed) == 1 and failed[0].error == "BadRequest" and failed[0].channel == f"telegram:{USER}"  # type: ignore[attr-defined]


async def test_chats_off_the_allow_list_get_a_one_line_refusal(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    settings = settings.model_copy(update={"telegram_allowed_chats": [GROUP]})
    await lesson(tutor, DM)
    await lesson(tutor, CLASS)
    requests = len(ollama.chat_requests)
    async with running(tutor, settings, telegram):
        telegram.add_private_message(USER, "Hola")
        telegram.add_group_message(GROUP + 1, 11, "charla sin mención")
        telegram.add_mention(GROUP, 11, "hola")
        await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1 and len(telegram.chat_texts(USER)) == 1)
    assert telegram.chat_texts(USER) == [NOT_ALLOWED]
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
    assert {"message <18 chars>", "replied with 1 updates"} <= {r.getMessage() for r in ours}
    assert all(r.channel == f"telegram:{USER}" for r in ours)  # type: ignore[attr-defined]
    assert "secreto" not in caplog.text


# Lifecycle


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
    assert [d.status for d in telegram.webhook_deliveries] == [200]
    assert telegram.calls_to("getUpdates") == []
