"""The Discord adapter end to end: discord.py's own client against the loopback fake Discord (REST and gateway),
a real tutor on a fresh database, and the fake Ollama. Messages flow through discord.py's dispatch; slash commands
are found on the bot's synced command tree and invoked as real interactions."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import discord
import pytest
from pydantic import SecretStr

from bots.discord_bot import Polyglott, build_bot
from bots.discord_bot import serve as serve_discord
from core.commands import BY_NAME, COMMANDS, OPTIONS
from core.conversation import CSV_COLUMNS, NO_LESSON_GROUP, PICK_LANGUAGE, RESTARTED, Conversation, Notice, Origin
from core.errors import LessonPaused, ModelMissing, NotTeacher, OllamaUnavailable
from core.i18n import render
from core.lesson import Level
from core.settings import Settings
from core.tutor import CUT_MARK, Channel, Learner, Tutor
from tests.conftest import MODEL
from tests.fake_discord import (
    BOT_TOKEN,
    EPHEMERAL,
    GENERAL_CHANNEL_ID,
    GUILD_ID,
    MODERATOR_ID,
    OTHER_BOT_ID,
    PRACTICE_CHANNEL_ID,
    READONLY_CHANNEL_ID,
    STUDENT2_ID,
    STUDENT_ID,
    TEACHER_ID,
    TEACHER_ROLE_ID,
    THREAD_ID,
    FakeDiscord,
    FakeInteraction,
)
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.recording import Recorder

SCALE = 0.05  # Discord's clock, shrunk for both sides: "5 per 5 s" lasts a quarter of a second
COMMAND_NAMES = {spec.name for spec in COMMANDS} - {"start"}  # /start is Telegram's
LOCALES = {"de": "de", "fr": "fr", "es-ES": "es", "it": "it", "pt-BR": "pt"}  # Discord locale → UI language
CoreCall = Callable[[Conversation, Origin, Recorder], Awaitable[None]]
_core_channels = itertools.count()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(time_scale=SCALE) as server:
        yield server
    assert server.errors == []


@pytest.fixture
def bot_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "discord_token": SecretStr(BOT_TOKEN),
            "discord_guild_ids": [GUILD_ID],
            "discord_teacher_role": "Teacher",
        }
    )


@contextlib.asynccontextmanager
async def connected(fake: FakeDiscord, tutor: Tutor, settings: Settings, **changes: Any) -> AsyncIterator[Polyglott]:
    client = build_bot(tutor, settings.model_copy(update=changes), time_scale=SCALE)
    async with fake.connected(client):
        yield client


@pytest.fixture
async def bot(fake: FakeDiscord, tutor: Tutor, bot_settings: Settings) -> AsyncIterator[Polyglott]:
    async with connected(fake, tutor, bot_settings) as client:
        yield client


def settled(bot: Polyglott) -> bool:
    return bot.conversation.busy == 0 and bot.tutor.replies_in_progress == 0


def replies_to(fake: FakeDiscord, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's messages quoting `message` (the first part of a reply, or a notice)."""
    return [
        m
        for m in fake.bot_messages(int(message["channel_id"]))
        if (m.get("message_reference") or {}).get("message_id") == message["id"]
    ]


async def answered(fake: FakeDiscord, bot: Polyglott, message: dict[str, Any], timeout: float = 5.0) -> str:  # noqa: ASYNC109
    """The text the bot answered `message` with, once the answer is complete."""
    await fake.wait_until(lambda: bool(replies_to(fake, message)) and settled(bot), timeout)
    return replies_to(fake, message)[0]["content"]


async def learn(
    fake: FakeDiscord, bot: Polyglott, channel_id: int, user_id: int = TEACHER_ID, **options: str
) -> dict[str, Any]:
    """Run /learn and wait until the opener is shown in full; the interaction's response message."""
    interaction = await fake.invoke_command("learn", options, channel_id, user_id)
    await fake.wait_until(lambda: bool(interaction.original and interaction.original["content"]) and settled(bot))
    assert interaction.original is not None
    return interaction.original


async def command(
    fake: FakeDiscord, name: str, options: dict[str, str], channel_id: int, user_id: int, *, locale: str = "en-US"
) -> dict[str, Any]:
    """Run a slash command; what its response said (`content`, `flags`, `components`)."""
    interaction = await fake.invoke_command(name, options, channel_id, user_id, locale=locale)
    return (await interaction.wait_response())["data"]


async def press(
    fake: FakeDiscord, bot: Polyglott, message: dict[str, Any], action: str, user_id: int
) -> FakeInteraction:
    """Press the button carrying `action` on `message`, and wait until everything it caused is shown."""
    assert action in actions_of(message), f"no button {action!r} on the message"
    interaction = await fake.click_button(int(message["id"]), f"pg:{action}", user_id)
    await interaction.wait_response()
    await fake.wait_until(lambda: settled(bot))
    return interaction


def actions_of(message: dict[str, Any]) -> list[str]:
    """The actions of a message's buttons, row after row."""
    ids = [button["custom_id"] for row in message.get("components", []) for button in row["components"]]
    assert all(i.startswith("pg:") for i in ids)
    return [i.removeprefix("pg:") for i in ids]


def callbacks(fake: FakeDiscord, interaction: FakeInteraction) -> int:
    """How often the bot tried to answer `interaction` (Discord accepts exactly one)."""
    return len(fake.calls_to("POST", rf"/interactions/{interaction.id}/[^/]+/callback"))


def lesson_of(channel_id: int, *, group: bool = True) -> Channel:
    return Channel(f"discord:{channel_id}", group=group)


def last_user_turn(ollama: FakeOllama) -> str:
    return [m for m in ollama.chat_requests[-1]["messages"] if m["role"] == "user"][-1]["content"]


def run(name: str, *args: str) -> CoreCall:
    return lambda conversation, origin, surface: conversation.command(origin, name, args, surface)


def pressing(action: str) -> CoreCall:
    return lambda conversation, origin, surface: conversation.press(origin, action, surface)


async def core_says(
    tutor: Tutor,
    call: CoreCall,
    *,
    group: bool = False,
    lesson: tuple[str, str] | None = None,
    locale: str | None = None,
    name: str = "Sam",
    hears_all: bool = False,
    reachable: bool = True,
    may_teach: bool = True,
) -> list[str]:
    """What core itself answers to `call`, on a channel and for a learner of their own: the wording the
    adapter must show, rendered by core (never an English copy in a test). `lesson` starts one first."""
    n = next(_core_channels)
    channel = Channel(f"core:{n}", group=group)
    if lesson is not None:
        async for _ in await tutor.start(channel, lesson[0], lesson[1]):
            pass

    async def teacher() -> bool:
        return may_teach

    origin = Origin(channel, Learner(f"core:learner:{n}", name), "discord", locale, teacher, hears_all)
    recorder = Recorder(reachable=reachable)
    await call(Conversation(tutor), origin, recorder)
    return recorder.texts


# --- slash commands ---------------------------------------------------------------------------------------------


async def test_commands_are_synced_globally_and_to_the_configured_server(fake: FakeDiscord, bot: Polyglott) -> None:
    for scope in (None, GUILD_ID):
        assert {c["name"] for c in fake.commands[scope]} == COMMAND_NAMES
    by_name = {c["name"]: c for c in fake.commands[None]}
    assert by_name["learn"]["contexts"] == [0, 1, 2]  # servers, DMs, private channels
    assert by_name["classroom"]["contexts"] == [0]
    options = {o["name"]: o for o in by_name["learn"]["options"]}
    assert set(options) == {"language", "level"} and options["language"]["autocomplete"]
    assert [c["value"] for c in options["level"]["choices"]] == ["A1", "A2", "B1", "B2", "C1", "C2"]
    assert not any(o.get("required") for o in options.values())
    assert options["level"]["choices"][0]["name"] == f"A1 · {Level.A1.label}"


async def test_synced_commands_carry_descriptions_in_each_ui_language(fake: FakeDiscord, bot: Polyglott) -> None:
    by_name = {c["name"]: c for c in fake.commands[None]}
    for name, synced in by_name.items():
        localized = synced["description_localizations"]
        assert {locale: localized.get(locale) for locale in LOCALES} == {
            locale: render(BY_NAME[name].description, ui) for locale, ui in LOCALES.items()
        }
        for option in synced.get("options", []):
            expected = OPTIONS[name][option["name"]]
            assert option["description_localizations"]["de"] == render(expected, "de")
    level = next(o for o in by_name["level"]["options"] if o["name"] == "level")
    assert level["choices"][0]["name_localizations"]["fr"] == f"A1 · {render(Level.A1.label, 'fr')}"
    assert render(BY_NAME["help"].description, "fr") != str(BY_NAME["help"].description)  # French is there


@pytest.mark.parametrize(
    ("typed", "first"),
    [("espa", ("Spanish — español", "es")), ("deu", ("German — Deutsch", "de")), ("fren", ("French — français", "fr"))],
)
async def test_learn_autocompletes_languages_by_english_name_native_name_or_code(
    fake: FakeDiscord, bot: Polyglott, typed: str, first: tuple[str, str]
) -> None:
    choices = await fake.autocomplete("learn", {"language": typed}, "language", GENERAL_CHANNEL_ID, STUDENT_ID)
    assert (choices[0]["name"], choices[0]["value"]) == first


async def test_the_autocomplete_names_languages_in_the_users_language(fake: FakeDiscord, bot: Polyglott) -> None:
    choices = await fake.autocomplete(
        "learn", {"language": "deu"}, "language", GENERAL_CHANNEL_ID, STUDENT_ID, locale="fr"
    )
    assert (choices[0]["name"], choices[0]["value"]) == ("Allemand — Deutsch", "de")


async def test_an_empty_autocomplete_offers_popular_languages_within_discords_limit(
    fake: FakeDiscord, bot: Polyglott
) -> None:
    choices = await fake.autocomplete("learn", {"language": ""}, "language", GENERAL_CHANNEL_ID, STUDENT_ID)
    assert 0 < len(choices) <= 25 and choices[0]["value"] == "es"


async def test_learn_streams_the_opening_message_into_the_interaction_response(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    opener = "¡Hola! Soy tu profesor de español. Hoy vamos a hablar de la comida. ¿Qué te gusta comer?"
    ollama.script(Script(opener, delay=0.02))
    dm = fake.dm_channel(STUDENT_ID)
    interaction = await fake.invoke_command("learn", {"language": "es", "level": "B1"}, dm, STUDENT_ID)
    assert (await interaction.wait_response())["type"] == 5  # deferred at once, within Discord's 3 s
    await fake.wait_until(lambda: bool(interaction.original and interaction.original["components"]) and settled(bot))
    original = interaction.original
    assert original is not None and original["content"] == opener
    edits = fake.edits_of(int(original["id"]))
    assert len(edits) >= 2 and edits[-1] == opener  # shown while written, not only at the end
    assert callbacks(fake, interaction) == 1
    lesson = await tutor.lesson(lesson_of(dm, group=False))
    assert lesson is not None and (lesson.language.name, lesson.level) == ("Spanish", "B1")


async def test_the_opener_carries_the_six_levels_as_buttons(fake: FakeDiscord, bot: Polyglott) -> None:
    opener = await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    await fake.wait_until(lambda: bool(opener["components"]))
    assert actions_of(opener) == [f"level:es:{level}" for level in Level]


async def test_an_unknown_language_is_refused_and_nothing_changes(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    body = await command(fake, "learn", {"language": "klingonish"}, GENERAL_CHANNEL_ID, TEACHER_ID)
    (expected,) = await core_says(tutor, run("learn", "klingonish"), group=True)
    assert body["content"] == expected
    assert await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID)) is None


async def test_status_shows_the_channels_lesson(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="it", level="A1")
    status = await command(fake, "status", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
    assert [status["content"]] == await core_says(tutor, run("status"), group=True, lesson=("italian", "A1"))


async def test_help_lists_the_commands(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    help_ = await command(fake, "help", {}, fake.dm_channel(STUDENT_ID), STUDENT_ID)
    assert [help_["content"]] == await core_says(tutor, run("help"))
    assert "/learn" in help_["content"]


async def test_an_interaction_in_french_gets_french_help(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    help_ = await command(fake, "help", {}, fake.dm_channel(STUDENT_ID), STUDENT_ID, locale="fr")
    assert [help_["content"]] == await core_says(tutor, run("help"), locale="fr")
    assert [help_["content"]] != await core_says(tutor, run("help"), locale="en-US")  # it really is translated


# --- buttons ----------------------------------------------------------------------------------------------------


async def test_learn_without_a_language_offers_languages_and_a_press_starts_that_lesson(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    asked = await fake.invoke_command("learn", {}, dm, STUDENT_ID)
    body = (await asked.wait_response())["data"]
    assert [body["content"]] == await core_says(tutor, run("learn"))
    assert asked.original is not None and "learn:de" in actions_of(asked.original)
    pressed = await press(fake, bot, asked.original, "learn:de", STUDENT_ID)
    assert pressed.response_type == 7  # the picker itself says which language it is, without its buttons
    assert asked.original["components"] == []
    await fake.wait_until(lambda: bool(pressed.followups and pressed.followups[0]["components"]))
    (opener,) = pressed.followups
    assert actions_of(opener) == [*(f"level:de:{level}" for level in Level), "placement"]  # a first lesson
    lesson = await tutor.lesson(lesson_of(dm, group=False))
    assert lesson is not None and lesson.language.name == "German"
    assert callbacks(fake, pressed) == 1


async def test_pressing_a_level_changes_the_lesson(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    opener = await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    pressed = await press(fake, bot, opener, "level:es:B2", TEACHER_ID)
    lesson = await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID))
    assert lesson is not None and lesson.level == Level.B2
    assert pressed.original is not None and not pressed.original["flags"] & EPHEMERAL  # the class sees it
    assert [pressed.original["content"]] == await core_says(
        tutor, pressing("level:es:B2"), group=True, lesson=("spanish", "A2")
    )


async def test_a_second_press_of_the_same_level_is_answered_privately(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    opener = await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    await press(fake, bot, opener, "level:es:B1", TEACHER_ID)
    again = await press(fake, bot, opener, "level:es:B1", TEACHER_ID)
    assert again.original is not None and again.original["flags"] & EPHEMERAL
    expected = await core_says(tutor, pressing("level:es:B1"), group=True, lesson=("spanish", "B1"))
    assert [again.original["content"]] == expected
    assert callbacks(fake, again) == 1


async def test_a_button_pressed_after_a_restart_still_works(
    fake: FakeDiscord, settings: Settings, bot_settings: Settings
) -> None:
    tutor = await Tutor.open(settings)
    async with connected(fake, tutor, bot_settings) as bot:
        opener = await learn(fake, bot, GENERAL_CHANNEL_ID, language="french")
    await tutor.close()
    tutor = await Tutor.open(settings)
    try:
        async with connected(fake, tutor, bot_settings) as bot:
            await press(fake, bot, opener, "level:fr:C1", TEACHER_ID)
            lesson = await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID))
    finally:
        await tutor.close()
    assert lesson is not None and lesson.level == Level.C1


async def test_a_student_pressing_a_level_in_a_server_channel_is_refused_privately(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    opener = await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish", level="A2")
    refused = await press(fake, bot, opener, "level:es:C2", STUDENT_ID)
    assert refused.original is not None and refused.original["flags"] & EPHEMERAL
    assert refused.original["content"] == render(NotTeacher().message, "en")
    lesson = await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID))
    assert lesson is not None and lesson.level == Level.A2


async def test_an_expired_button_is_answered_privately(fake: FakeDiscord, bot: Polyglott) -> None:
    opener = await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    await fake.wait_until(lambda: bool(opener["components"]))
    opener["components"][0]["components"][0]["custom_id"] = "pg:level:xx:B1"  # a version with other languages
    interaction = await fake.click_button(int(opener["id"]), "pg:level:xx:B1", TEACHER_ID)
    body = (await interaction.wait_response())["data"]
    assert (body["content"], body["flags"]) == (render(Notice.EXPIRED.value, "en"), EPHEMERAL)


# --- private answers and files -----------------------------------------------------------------------------------


async def test_mydata_in_a_server_channel_answers_with_a_private_csv_file(fake: FakeDiscord, bot: Polyglott) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    await answered(fake, bot, await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hola", mentions_bot=True))
    interaction = await fake.invoke_command("mydata", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
    await interaction.wait_response()
    await fake.wait_until(lambda: bool(interaction.followups) and settled(bot))
    shown = interaction.original
    assert shown is not None and shown["flags"] & EPHEMERAL
    (file,) = shown["attachments"]
    assert file["filename"].endswith(".csv")
    rows = list(csv.reader(io.StringIO(fake.uploads[int(file["id"])].decode())))
    assert tuple(rows[0]) == CSV_COLUMNS and any(row[3].startswith("Hola") for row in rows[1:])
    (delete,) = interaction.followups
    assert delete["flags"] & EPHEMERAL and actions_of(delete) == ["forget"]
    assert GENERAL_CHANNEL_ID not in {int(m["channel_id"]) for m in fake.bot_messages() if m["attachments"]}


async def test_a_private_refusal_to_a_message_goes_to_the_authors_dms(fake: FakeDiscord, bot: Polyglott) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "/level C2", mentions_bot=True)
    await fake.wait_until(lambda: bool(fake.bot_messages(fake.dm_channel(STUDENT_ID))) and settled(bot))
    assert fake.channel_texts(fake.dm_channel(STUDENT_ID)) == [render(NotTeacher().message, "en")]
    assert replies_to(fake, message) == []


async def test_a_refusal_for_a_student_whose_dms_are_closed_is_shown_in_the_channel(
    fake: FakeDiscord, bot: Polyglott
) -> None:
    fake.dms_closed.add(STUDENT_ID)
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "/level C2", mentions_bot=True)
    assert await answered(fake, bot, message) == render(NotTeacher().message, "en")  # nothing confidential


async def test_confidential_data_for_a_student_whose_dms_are_closed_stays_out_of_the_channel(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    fake.dms_closed.add(STUDENT_ID)
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "/mydata", mentions_bot=True)
    await answered(fake, bot, message)
    shown = [m["content"] for m in replies_to(fake, message)]
    assert shown == await core_says(tutor, run("mydata"), group=True, reachable=False)
    assert not set(shown) & set(await core_says(tutor, run("mydata"), group=True))  # the data itself: never
    assert all(not m["attachments"] for m in replies_to(fake, message))
    (link,) = replies_to(fake, message)[0]["components"][0]["components"]  # to our DM, once they open it
    assert link["url"] == f"https://discord.com/channels/@me/{fake.dm_channel(STUDENT_ID)}"


# --- DMs --------------------------------------------------------------------------------------------------------


async def test_a_dm_conversation_is_answered_with_its_history(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    first = await fake.send_dm(STUDENT_ID, "Me llamo Sam")
    await answered(fake, bot, first)
    second = await fake.send_dm(STUDENT_ID, "¿Cómo me llamo?")
    assert await answered(fake, bot, second) == "¡Muy bien! Esta es la respuesta número 3."
    sent = ollama.chat_requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "assistant", "user", "assistant", "user"]
    assert sent[2]["content"].startswith("Me llamo Sam") and sent[4]["content"].startswith("¿Cómo me llamo?")


async def test_a_dm_before_any_lesson_offers_the_languages(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    message = await fake.send_dm(STUDENT_ID, "Hola")
    assert await answered(fake, bot, message) == render(PICK_LANGUAGE, "en")
    assert "learn:es" in actions_of(replies_to(fake, message)[0])
    assert ollama.chat_requests == []


async def test_a_command_typed_as_text_in_a_dm_works_like_the_slash_command(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    message = await fake.send_dm(STUDENT_ID, "/learn italian B2")
    await answered(fake, bot, message)
    lesson = await tutor.lesson(lesson_of(fake.dm_channel(STUDENT_ID), group=False))
    assert lesson is not None and (lesson.language.name, lesson.level) == ("Italian", Level.B2)


# --- servers ----------------------------------------------------------------------------------------------------


async def test_a_mention_is_answered_as_a_reply_addressing_the_student_by_name(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "¡Hola! Soy nueva", mentions_bot=True)
    assert await answered(fake, bot, message) == "¡Muy bien! Esta es la respuesta número 2."
    turn = last_user_turn(ollama)
    assert turn.startswith("Lea (B1): ¡Hola! Soy nueva") and "<@" not in turn


async def test_a_reply_to_the_tutor_is_answered(fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama) -> None:
    opener = await learn(fake, bot, GENERAL_CHANNEL_ID, language="french")
    reply = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Bonjour !", reply_to=int(opener["id"]))
    await answered(fake, bot, reply)
    assert last_user_turn(ollama).startswith("Sam: Bonjour !")


async def test_a_reply_without_its_ping_is_unreadable_without_the_intent_and_the_student_is_told(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    opener = await learn(fake, bot, GENERAL_CHANNEL_ID, language="french")
    reply = await fake.send_message(
        GENERAL_CHANNEL_ID, STUDENT_ID, "Bonjour !", reply_to=int(opener["id"]), mention_replied_author=False
    )
    assert await answered(fake, bot, reply) == render(Notice.UNREAD.value, "en")
    assert len(ollama.chat_requests) == 1


async def test_messages_not_addressed_to_the_tutor_and_other_bots_are_ignored(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "solo entre nosotros")
    await fake.send_message(GENERAL_CHANNEL_ID, OTHER_BOT_ID, "soy un bot", mentions_bot=True)
    addressed = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "para el tutor", mentions_bot=True)
    await answered(fake, bot, addressed)
    assert len(ollama.chat_requests) == 2  # the opener and the one addressed message
    assert "soy un bot" not in str(ollama.chat_requests) and "entre nosotros" not in str(ollama.chat_requests)


async def test_a_mention_without_a_lesson_points_to_a_teacher(fake: FakeDiscord, bot: Polyglott) -> None:
    message = await fake.send_message(PRACTICE_CHANNEL_ID, STUDENT_ID, "Hallo?", mentions_bot=True)
    assert await answered(fake, bot, message) == render(NO_LESSON_GROUP, "en")


async def test_classroom_on_answers_every_message_when_the_bot_can_read_them(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, ollama: FakeOllama
) -> None:
    async with connected(fake, tutor, bot_settings, discord_message_content=True) as bot:
        await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
        on = await command(fake, "classroom", {"mode": "on"}, GENERAL_CHANNEL_ID, TEACHER_ID)
        message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hoy hace sol")
        await answered(fake, bot, message)
        assert last_user_turn(ollama).startswith("Sam: Hoy hace sol")

        await command(fake, "classroom", {"mode": "off"}, GENERAL_CHANNEL_ID, TEACHER_ID)
        await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Mañana lloverá")
        addressed = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "¿Y tú?", mentions_bot=True)
        await answered(fake, bot, addressed)
        assert "Mañana lloverá" not in str(ollama.chat_requests)
    expected = await core_says(tutor, run("classroom", "on"), group=True, lesson=("spanish", "A2"), hears_all=True)
    assert [on["content"]] == expected


async def test_classroom_on_without_the_intent_tells_the_teacher_it_cannot_work_yet(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    on = await command(fake, "classroom", {"mode": "on"}, GENERAL_CHANNEL_ID, TEACHER_ID)
    unread = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hoy hace sol")
    addressed = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "¿Me oyes?", mentions_bot=True)
    await answered(fake, bot, addressed)
    assert replies_to(fake, unread) == [] and len(ollama.chat_requests) == 2
    assert [on["content"]] == await core_says(tutor, run("classroom", "on"), group=True, lesson=("spanish", "A2"))


async def test_a_thread_starts_from_its_channels_lesson_and_keeps_its_own_history(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    await learn(fake, bot, PRACTICE_CHANNEL_ID, language="german", level="B2")
    in_channel = await fake.send_message(PRACTICE_CHANNEL_ID, STUDENT_ID, "Im Kanal gesagt", mentions_bot=True)
    await answered(fake, bot, in_channel)
    thread = await fake.create_thread(PRACTICE_CHANNEL_ID, "Fragen", owner_id=STUDENT2_ID)
    in_thread = await fake.send_message(thread, STUDENT2_ID, "Im Thread gefragt", mentions_bot=True)
    await answered(fake, bot, in_thread)
    sent = ollama.chat_requests[-1]["messages"]
    assert "German" in sent[0]["content"] and "B2" in sent[0]["content"]
    assert "Im Kanal gesagt" not in str(sent)
    lesson = await tutor.lesson(Channel(f"discord:{thread}", group=True))
    assert lesson is not None and (lesson.language.name, lesson.level) == ("German", "B2")


# --- who may change a lesson -------------------------------------------------------------------------------------


async def test_a_student_cannot_change_the_channels_lesson_and_is_told_privately(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish", level="A2")
    for name, options in [("learn", {"language": "french"}), ("level", {"level": "C2"}), ("classroom", {"mode": "on"})]:
        body = await command(fake, name, options, GENERAL_CHANNEL_ID, STUDENT_ID)
        assert (body["content"], body["flags"]) == (render(NotTeacher().message, "en"), EPHEMERAL)
    lesson = await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID))
    assert lesson is not None and (lesson.language.name, lesson.level, lesson.answer_all) == ("Spanish", "A2", False)


@pytest.mark.parametrize(
    ("user", "teacher_role", "allowed"),
    [
        (TEACHER_ID, "Teacher", True),  # the configured role
        (TEACHER_ID, "teacher", True),  # named in any case
        (TEACHER_ID, None, False),  # the same role, not configured
        (MODERATOR_ID, None, True),  # Manage Channels
    ],
    ids=["teacher-role", "role-any-case", "role-not-configured", "manage-channels"],
)
async def test_teachers_are_the_configured_role_or_members_who_manage_channels(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, user: int, teacher_role: str | None, allowed: bool
) -> None:
    async with connected(fake, tutor, bot_settings, discord_teacher_role=teacher_role) as bot:
        await learn(fake, bot, GENERAL_CHANNEL_ID, MODERATOR_ID, language="spanish")
        body = await command(fake, "level", {"level": "B2"}, GENERAL_CHANNEL_ID, user)
    lesson = await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID))
    assert lesson is not None
    if allowed:
        expected = await core_says(tutor, run("level", "B2"), group=True, lesson=("spanish", "A2"))
        assert [body["content"]] == expected and lesson.level == "B2"
    else:
        assert body["content"] == render(NotTeacher().message, "en") and lesson.level == "A2"


async def test_in_a_dm_the_learner_runs_their_own_lesson(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    dm = fake.dm_channel(STUDENT2_ID)
    await learn(fake, bot, dm, STUDENT2_ID, language="japanese")
    body = await command(fake, "native", {"language": "deu"}, dm, STUDENT2_ID)
    assert [body["content"]] == await core_says(tutor, run("native", "deu"), lesson=("japanese", "A2"))
    lesson = await tutor.lesson(lesson_of(dm, group=False))
    assert lesson is not None and lesson.native.name == "German"


async def test_reset_forgets_the_conversation_but_keeps_the_lesson(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="portuguese")
    await answered(fake, bot, await fake.send_dm(STUDENT_ID, "Meu segredo é azul"))
    body = await command(fake, "reset", {}, dm, STUDENT_ID)
    await answered(fake, bot, await fake.send_dm(STUDENT_ID, "Olá de novo"))
    assert "segredo" not in str(ollama.chat_requests[-1]["messages"])
    lesson = await tutor.lesson(lesson_of(dm, group=False))
    assert lesson is not None and lesson.language.name == "Portuguese"
    assert [body["content"]] == await core_says(tutor, run("reset"), lesson=("portuguese", "A2"))


async def test_stop_pauses_and_the_language_picker_resumes(fake: FakeDiscord, bot: Polyglott) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    await command(fake, "stop", {}, dm, STUDENT_ID)
    paused = await fake.send_dm(STUDENT_ID, "¿Hola?")
    assert await answered(fake, bot, paused) == render(LessonPaused().message, "en")
    picker = await fake.invoke_command("learn", {}, dm, STUDENT_ID)
    await picker.wait_response()
    assert picker.original is not None and actions_of(picker.original)[0] == "learn:es"  # this lesson first
    await press(fake, bot, picker.original, "learn:es", STUDENT_ID)
    resumed = await fake.send_dm(STUDENT_ID, "¿Hola?")
    assert await answered(fake, bot, resumed) == "¡Muy bien! Esta es la respuesta número 3."


# --- streaming within Discord's limits ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_burst_from_a_whole_class_is_answered_completely_without_a_single_429(
    settings: Settings, bot_settings: Settings, ollama: FakeOllama
) -> None:
    """15 students mention the tutor at once in one channel while others write elsewhere. Discord's rate-limit
    headers are withheld, so discord.py cannot pace itself: only the bot's own budget stands between it and 429s."""
    tutor = await Tutor.open(settings.model_copy(update={"max_parallel": 3}))
    words = " ".join(f"palabra{i}" for i in range(40))

    def respond(messages: list[dict[str, Any]]) -> Script:
        """Each student waiting (the user turns since the tutor's last answer) gets their own answer."""
        waiting = list(itertools.takewhile(lambda m: m["role"] == "user", reversed(messages)))[::-1]
        asked = [found[0] for m in waiting if (found := re.search(r"pregunta \d+-(\d+|dm)", m["content"]))]
        return Script("\n\n".join(f"Respuesta a la {a}: {words}." for a in asked) or "¡Hola!", delay=0.005)

    def answer(message: dict[str, Any]) -> dict[str, Any] | None:
        """The bot's message in the question's channel that holds the complete answer to it."""
        asked = re.search(r"pregunta \S+", message["content"])[0]  # type: ignore[index]
        full = f"Respuesta a la {asked}: {words}."
        bots = fake.bot_messages(int(message["channel_id"]))
        return next((m for m in bots if full in m["content"].split("\n\n")), None)

    ollama.responder = respond
    async with FakeDiscord(time_scale=SCALE, ratelimit_headers=False) as fake:
        students = [fake.add_user(f"student{i}", global_name=f"Student {i}") for i in range(15)]
        for student in students:
            fake.add_member(GUILD_ID, student)
        dms = [fake.dm_channel(STUDENT_ID), fake.dm_channel(STUDENT2_ID)]
        try:
            async with connected(fake, tutor, bot_settings) as bot:
                for channel_id in (GENERAL_CHANNEL_ID, PRACTICE_CHANNEL_ID, THREAD_ID):
                    await learn(fake, bot, channel_id, language="spanish")
                for channel_id, user in zip(dms, (STUDENT_ID, STUDENT2_ID), strict=True):
                    await learn(fake, bot, channel_id, user, language="spanish")

                started = time.monotonic()
                plan = [(GENERAL_CHANNEL_ID, s) for s in students]
                plan += [(PRACTICE_CHANNEL_ID, STUDENT_ID), (PRACTICE_CHANNEL_ID, STUDENT2_ID), (THREAD_ID, STUDENT_ID)]
                sent = []
                for n, (channel_id, user) in enumerate(plan):
                    question = f"pregunta {channel_id}-{n}"
                    sent.append(await fake.send_message(channel_id, user, question, mentions_bot=True))
                for channel_id, user in zip(dms, (STUDENT_ID, STUDENT2_ID), strict=True):
                    sent.append(await fake.send_dm(user, f"pregunta {channel_id}-dm"))
                await fake.wait_until(lambda: all(answer(m) for m in sent) and settled(bot), timeout=30)
                elapsed = time.monotonic() - started
        finally:
            await tutor.close()
        assert fake.errors == []

    assert fake.rate_limited == []
    answers = {int(a["id"]): a for m in sent if (a := answer(m))}
    edits = [len(fake.edits_of(message_id)) for message_id in answers]
    in_class = [m for m in fake.bot_messages(GENERAL_CHANNEL_ID) if "Respuesta" in m["content"]]
    assert len(in_class) < len(students)  # the class was answered together, not one message each
    assert len(ollama.chat_requests) < 5 + len(sent)
    updates = [c.time for c in fake.calls if c.path.startswith(f"/channels/{GENERAL_CHANNEL_ID}/messages")]
    busiest = max(sum(1 for t in updates if start <= t < start + 5 * SCALE) for start in updates)
    print(
        f"\nburst: {len(sent)} questions answered in {len(answers)} messages in {elapsed:.2f} s, 0 429s, edits per "
        f"message {min(edits)}–{max(edits)}, busiest channel: {busiest} updates in one Discord window of 5 s"
    )


@pytest.mark.slow
async def test_a_burst_of_dms_stays_within_discords_global_limit(
    settings: Settings, bot_settings: Settings, ollama: FakeOllama
) -> None:
    """Sixty learners write at once, each in a DM (no shared channel budget): only the bot-wide budget keeps the
    bot under Discord's 50 requests a second, which discord.py would otherwise give up on after five 429s.

    The budget is taken where each request leaves (inside discord.py's HTTP path), 1/40 s apart, so what arrives
    at the fake is as evenly spaced as what left, give or take the few milliseconds between the two. The test
    runs on Discord's own clock: ten requests of headroom in a second are 250 ms of that jitter, not 12 ms, and
    it is counted at the fake, by the fake's clock, in every window the fake could have started."""
    tutor = await Tutor.open(settings.model_copy(update={"max_parallel": 60}))
    ollama.responder = lambda messages: Script("Hola, ¿qué tal? " * 6, delay=0.002)
    scale, (limit, period) = 1.0, (50, 1.0)
    async with FakeDiscord(time_scale=scale, ratelimit_headers=False, global_limit=(limit, period)) as fake:
        learners = [fake.add_user(f"learner{i}", global_name=f"Learner {i}") for i in range(60)]
        dms = [fake.dm_channel(user) for user in learners]
        for dm in dms:
            async for _ in await tutor.start(Channel(f"discord:{dm}"), "spanish"):
                pass
        try:
            bot = build_bot(tutor, bot_settings, time_scale=scale)
            async with fake.connected(bot):
                sent = [await fake.send_dm(user, "Hola") for user in learners]
                await fake.wait_until(lambda: all(replies_to(fake, m) for m in sent) and settled(bot), timeout=60)
        finally:
            await tutor.close()
    assert fake.rate_limited == []
    assert all(replies_to(fake, m)[0]["content"] == ("Hola, ¿qué tal? " * 6).strip() for m in sent)
    counted = [c.time for c in fake.calls if not re.match(r"/(interactions|webhooks|gateway)\b", c.path)]
    busiest = max(sum(1 for t in counted if start <= t < start + period * scale) for start in counted)
    assert busiest <= limit
    print(f"\nDM burst: {len(counted)} requests, at most {busiest} in any {period * scale:g} s (limit {limit})")


async def test_a_long_reply_is_split_at_2000_characters_keeping_its_code_block(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    lines = [f"    resultado_{i} = calcular({i})  # paso {i}\n" for i in range(110)]
    ollama.script(Script(tokens=["Mira este **código largo**:\n\n```python\n", *lines, "```\n", "¡Y listo!"]))
    message = await fake.send_dm(STUDENT_ID, "Enséñame un programa largo")
    await answered(fake, bot, message)
    first, *later = fake.bot_messages(dm)[1:]  # after the opener
    assert first["message_reference"]["message_id"] == message["id"]
    assert all("message_reference" not in m for m in later)  # the rest follow in the channel
    texts = [first["content"], *(m["content"] for m in later)]
    assert len(texts) >= 3
    assert all(len(text) <= 2000 for text in texts)
    assert all(text.count("```") % 2 == 0 for text in texts)
    assert all(text.startswith("```python\n") for text in texts[1:])
    assert texts[-1].endswith("¡Y listo!")


async def test_the_learner_sees_typing_until_the_first_words(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    ollama.script(Script("Déjame pensar…", first_token_delay=0.3))
    message = await fake.send_dm(STUDENT_ID, "Una pregunta difícil")
    await answered(fake, bot, message)
    typing = fake.calls_to("POST", rf"/channels/{dm}/typing")
    reply = fake.calls_to("POST", rf"/channels/{dm}/messages")[-1]
    assert typing and typing[0].time < reply.time - 0.25


async def test_a_reply_is_shown_as_it_is_written_and_each_message_edited_at_most_once_a_second(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    text = " ".join(f"palabra{i}" for i in range(40))
    ollama.script(Script(text, delay=0.01))
    message = await fake.send_dm(STUDENT_ID, "Cuéntame algo")
    assert await answered(fake, bot, message) == text
    reply = replies_to(fake, message)[0]
    edits = [c.time for c in fake.calls_to("PATCH", rf"/channels/{dm}/messages/{reply['id']}")]
    assert len(edits) >= 3
    assert all(b - a >= 0.8 * SCALE for a, b in itertools.pairwise(edits))  # 1 s on Discord's clock, less jitter


async def test_nothing_the_model_writes_pings_anyone(fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    ollama.script(Script(f"@everyone @here <@&{TEACHER_ROLE_ID}> <@{STUDENT2_ID}> ¡Hola a todos!"))
    message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Saluda a la clase", mentions_bot=True)
    await answered(fake, bot, message)
    (reply,) = replies_to(fake, message)
    assert (reply["mention_everyone"], reply["mention_roles"], reply["mentions"]) == (False, [], [])
    bodies = [c.json for c in fake.calls if c.method in ("POST", "PATCH") and isinstance(c.json, dict)]
    assert all(b["allowed_mentions"] == {"parse": []} for b in bodies if "content" in b)


# --- everything else that can go wrong ---------------------------------------------------------------------------


async def test_attachments_and_stickers_without_text_get_a_note(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    in_dm = await fake.send_dm(STUDENT_ID, "", attachments=["hausaufgabe.pdf"])
    assert await answered(fake, bot, in_dm) == render(Notice.NOT_TEXT.value, "en")
    sticker = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "", mentions_bot=True, stickers=["wave"])
    assert await answered(fake, bot, sticker) == render(Notice.NOT_TEXT.value, "en")
    unaddressed = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "", attachments=["foto.png"])
    embed = await fake.send_dm(STUDENT2_ID, "", embeds=[{"title": "Vokabeln", "description": "Hund, Katze"}])
    assert await answered(fake, bot, embed) == render(Notice.NOT_TEXT.value, "en")
    assert replies_to(fake, unaddressed) == [] and ollama.chat_requests == []


async def test_ollama_down_is_a_short_message_and_the_next_message_works_once_it_is_back(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    await ollama.stop()
    down = await fake.send_dm(STUDENT_ID, "¿Estás ahí?")
    text = await answered(fake, bot, down)
    assert text == render(OllamaUnavailable(bot.tutor.settings.ollama_host).message, "en")
    await ollama.start()
    back = await fake.send_dm(STUDENT_ID, "¿Y ahora?")
    assert await answered(fake, bot, back) == "¡Muy bien! Esta es la respuesta número 2."


async def test_a_missing_model_names_the_fix(fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    ollama.remove_model(MODEL)
    message = await fake.send_dm(STUDENT_ID, "Hola")
    assert await answered(fake, bot, message) == render(ModelMissing(MODEL).message, "en")


async def test_a_channel_the_bot_cannot_write_in_is_logged_and_the_bot_carries_on(
    fake: FakeDiscord, bot: Polyglott, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bots.discord_bot")
    await learn(fake, bot, READONLY_CHANNEL_ID, MODERATOR_ID, language="spanish")
    await fake.send_message(READONLY_CHANNEL_ID, MODERATOR_ID, "¿Me lees?", mentions_bot=True)
    await fake.wait_until(lambda: any(r.levelno == logging.WARNING for r in caplog.records) and settled(bot))
    refused = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert (refused.channel, refused.error) == (f"discord:{READONLY_CHANNEL_ID}", "Forbidden")  # type: ignore[attr-defined]
    message = await fake.send_dm(STUDENT_ID, "Hola")
    assert await answered(fake, bot, message) == render(PICK_LANGUAGE, "en")


async def test_an_unexpected_command_failure_answers_privately_without_a_traceback(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await tutor.store.close()  # the database is gone: every command fails
    body = await command(fake, "status", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
    assert body["flags"] == EPHEMERAL
    assert body["content"] == bot.conversation.apology("en-US") == render(Notice.SORRY.value, "en")


async def test_servers_off_the_allow_list_are_turned_away_but_dms_work(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    async with connected(fake, tutor, bot_settings, discord_allowed_guilds=[42]) as bot:
        status = await command(fake, "status", {}, GENERAL_CHANNEL_ID, TEACHER_ID)
        assert status["content"] == render(Notice.NOT_ALLOWED.value, "en")
        mention = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hola", mentions_bot=True)
        assert await answered(fake, bot, mention) == render(Notice.NOT_ALLOWED.value, "en")
        in_dm = await fake.send_dm(STUDENT_ID, "Hola")
        assert await answered(fake, bot, in_dm) == render(PICK_LANGUAGE, "en")


async def test_log_lines_name_the_channel_and_never_the_message(
    fake: FakeDiscord, bot: Polyglott, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    message = await fake.send_dm(STUDENT_ID, "mi contraseña secreta")
    await answered(fake, bot, message)
    ours = [r for r in caplog.records if r.name in ("bots.discord_bot", "core.conversation")]
    lines = [r for r in ours if getattr(r, "channel", None) == f"discord:{dm}"]
    assert [r.getMessage().split()[0] for r in lines] == ["command", "replied", "message", "replied"]
    assert all(r.adapter == "discord" for r in lines)  # type: ignore[attr-defined]
    for record in caplog.records:
        assert "secreta" not in record.getMessage() and "secreta" not in str(vars(record))


async def test_history_survives_a_restart_of_the_bot_and_the_tutor(
    fake: FakeDiscord, settings: Settings, bot_settings: Settings, ollama: FakeOllama
) -> None:
    tutor = await Tutor.open(settings)
    async with connected(fake, tutor, bot_settings) as bot:
        await learn(fake, bot, fake.dm_channel(STUDENT_ID), STUDENT_ID, language="spanish")
        await answered(fake, bot, await fake.send_dm(STUDENT_ID, "Me llamo Sam"))
    await tutor.close()
    tutor = await Tutor.open(settings)
    try:
        async with connected(fake, tutor, bot_settings) as bot:
            await answered(fake, bot, await fake.send_dm(STUDENT_ID, "¿Te acuerdas de mí?"))
    finally:
        await tutor.close()
    assert "Me llamo Sam" in str(ollama.chat_requests[-1]["messages"])


# --- replies that survive crashes and stops ------------------------------------------------------------------------

LONG = "Me gusta mucho la paella valenciana, sobre todo la que hace mi abuela los domingos en verano."
SHORT = "¡Qué bien! ¿Y qué más te gusta?"


def stored_replies(settings: Settings) -> list[sqlite3.Row]:
    """The tutor's replies as any SQLite reader sees them (the bot writes on its own connection)."""
    with contextlib.closing(sqlite3.connect(settings.db_path)) as db:
        db.row_factory = sqlite3.Row
        return db.execute(
            "SELECT id, text, status, shown, reply_to FROM messages WHERE role = 'assistant' ORDER BY id"
        ).fetchall()


def showing(settings: Settings) -> list[str]:
    """The addresses the reply in progress is shown at, once the store has them."""
    pending = [r for r in stored_replies(settings) if r["status"] == "pending" and r["shown"]]
    return json.loads(pending[-1]["shown"])["at"] if pending else []


def cut_note(shown: str) -> str:
    """What a message a restart finds half-written ends as: the mark, then core's note."""
    return f"{shown}{CUT_MARK}\n\n_{render(RESTARTED, 'en')}_"


async def crash(fake: FakeDiscord, bot: Polyglott) -> None:
    """Stop `bot` the way a crash leaves things: its replies stop where they are, unmarked (Discord takes no
    more requests from it), and the database still has them in progress with the messages that show them."""
    fake.inject_error(status=503, count=10**6)
    await bot.conversation.finish(0)
    fake.stop_injecting()


@contextlib.asynccontextmanager
async def restarted(fake: FakeDiscord, settings: Settings, bot_settings: Settings) -> AsyncIterator[Polyglott]:
    """A new process: a tutor and a client of their own on the same database."""
    tutor = await Tutor.open(settings)
    try:
        async with connected(fake, tutor, bot_settings) as bot:
            yield bot
    finally:
        await tutor.close()


async def test_a_reply_is_stored_in_progress_at_its_message_until_discord_has_its_final_text(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama, settings: Settings
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    ollama.script(Script(LONG, delay=0.1))
    question = await fake.send_dm(STUDENT_ID, "¿Qué te gusta comer?")
    await fake.wait_until(lambda: bool(showing(settings)))
    (reply,) = replies_to(fake, question)
    assert showing(settings) == [reply["id"]]
    assert await answered(fake, bot, question) == LONG
    last = stored_replies(settings)[-1]
    assert (last["status"], last["text"], last["shown"]) == ("complete", LONG, None)


async def test_a_message_the_gateway_delivers_twice_is_answered_once(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama, settings: Settings
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    question = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "¿Qué tal?", mentions_bot=True)
    await fake.dispatch("MESSAGE_CREATE", question)
    await answered(fake, bot, question)
    await fake.wait_until(lambda: settled(bot))
    assert len(replies_to(fake, question)) == 1
    assert len(ollama.chat_requests) == 2  # the opener and this answer
    assert [r["status"] for r in stored_replies(settings)] == ["complete", "complete"]


async def test_a_reply_a_crash_left_half_shown_is_marked_and_its_question_answered_once_after_the_restart(
    fake: FakeDiscord, settings: Settings, bot_settings: Settings, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    async with restarted(fake, settings, bot_settings) as first:
        await learn(fake, first, dm, STUDENT_ID, language="spanish")
        ollama.script(Script(LONG, stall_after=4), Script(SHORT))
        question = await fake.send_dm(STUDENT_ID, "¿Qué te gusta comer?")
        await fake.wait_until(lambda: bool(showing(settings)))
        (cut,) = replies_to(fake, question)
        await fake.wait_until(lambda: cut["content"] == "".join(Script(LONG).tokens[:4]))
        shown = cut["content"]
        await crash(fake, first)
    assert [r["status"] for r in stored_replies(settings)] == ["complete", "pending"]

    async with restarted(fake, settings, bot_settings) as second:
        await fake.wait_until(lambda: len(replies_to(fake, question)) == 2 and settled(second))
    assert cut["content"] == cut_note(shown)
    again = replies_to(fake, question)[1]
    assert again["content"] == SHORT
    rows = stored_replies(settings)[1:]
    assert [(r["status"], r["text"]) for r in rows] == [("cut", shown + CUT_MARK), ("complete", SHORT)]
    assert rows[0]["reply_to"] == rows[1]["reply_to"] is not None
    assert len(ollama.chat_requests) == 3  # the opener, the reply the crash cut, the answer after the restart


async def test_a_cut_reply_deleted_before_the_restart_is_said_again_with_its_mark(
    fake: FakeDiscord, settings: Settings, bot_settings: Settings, ollama: FakeOllama
) -> None:
    async with restarted(fake, settings, bot_settings) as first:
        await learn(fake, first, GENERAL_CHANNEL_ID, language="spanish")
        ollama.script(Script(LONG, stall_after=4), Script(SHORT))
        question = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "¿Qué comes?", mentions_bot=True)
        await fake.wait_until(lambda: bool(showing(settings)))
        (cut,) = replies_to(fake, question)
        await fake.wait_until(lambda: cut["content"] == "".join(Script(LONG).tokens[:4]))
        shown = cut["content"]
        await crash(fake, first)
    await fake.delete_message(int(cut["id"]))  # a moderator tidied up meanwhile

    async with restarted(fake, settings, bot_settings) as second:
        await fake.wait_until(lambda: len(replies_to(fake, question)) == 2 and settled(second))
    refused = fake.calls_to("PATCH", f"/channels/{GENERAL_CHANNEL_ID}/messages/{cut['id']}")[-1]
    assert refused.status == 404 and refused.response["code"] == 10008
    assert [m["content"] for m in replies_to(fake, question)] == [cut_note(shown), SHORT]


async def test_an_opener_a_crash_cut_in_an_interaction_response_is_marked_through_its_channel_after_the_restart(
    fake: FakeDiscord, settings: Settings, bot_settings: Settings, ollama: FakeOllama
) -> None:
    """The interaction's token dies with the process; the response is still the bot's message in the channel."""
    async with restarted(fake, settings, bot_settings) as first:
        ollama.script(Script(LONG, stall_after=4))
        interaction = await fake.invoke_command("learn", {"language": "spanish"}, GENERAL_CHANNEL_ID, TEACHER_ID)
        await fake.wait_until(lambda: bool(showing(settings)))
        original = interaction.original
        assert original is not None and showing(settings) == [original["id"]]
        await fake.wait_until(lambda: original["content"] == "".join(Script(LONG).tokens[:4]))
        shown = original["content"]
        await crash(fake, first)

    async with restarted(fake, settings, bot_settings) as second:
        await fake.wait_until(lambda: original["content"] != shown and settled(second))
    assert original["content"] == cut_note(shown)
    (marked,) = fake.calls_to("PATCH", f"/channels/{GENERAL_CHANNEL_ID}/messages/{original['id']}")
    assert marked.status == 200 and marked.json["content"] == cut_note(shown)
    assert [r["status"] for r in stored_replies(settings)] == ["cut"]
    assert len(ollama.chat_requests) == 1  # an opener answers no one's question: nothing to answer again


async def test_a_reply_cut_by_a_stop_ends_marked_and_its_question_is_answered_after_the_restart(
    fake: FakeDiscord, settings: Settings, bot_settings: Settings, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    async with restarted(fake, settings, bot_settings) as first:
        await learn(fake, first, dm, STUDENT_ID, language="spanish")
        ollama.script(Script(LONG, stall_after=4), Script(SHORT))
        question = await fake.send_dm(STUDENT_ID, "¿Qué te gusta comer?")
        await fake.wait_until(lambda: bool(showing(settings)))
        (cut,) = replies_to(fake, question)
        await fake.wait_until(lambda: cut["content"] == "".join(Script(LONG).tokens[:4]))
        shown = cut["content"]
        await first.conversation.finish(0)
    assert cut["content"] == shown + CUT_MARK
    assert [(r["status"], r["text"]) for r in stored_replies(settings)][1:] == [("cut", shown + CUT_MARK)]

    async with restarted(fake, settings, bot_settings) as second:
        await fake.wait_until(lambda: len(replies_to(fake, question)) == 2 and settled(second))
    assert cut["content"] == shown + CUT_MARK  # marked once: a stop's mark needs no restart note
    assert replies_to(fake, question)[1]["content"] == SHORT


# --- Discord's hiccups at start ------------------------------------------------------------------------------------


async def serving(tutor: Tutor, settings: Settings, fake: FakeDiscord) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """`serve` in the background, once it answers slash commands; set the event to stop it."""
    stop = asyncio.Event()
    served = asyncio.create_task(serve_discord(tutor, settings, stop, time_scale=SCALE))
    await fake.wait_until(lambda: GUILD_ID in fake.commands or served.done(), timeout=15)
    await fake.wait_connected(timeout=15)
    return stop, served


async def test_discord_failing_at_login_is_tried_again_until_the_bot_serves(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject_error("GET", "/users/@me", status=500)  # discord.py tries this one again itself, a second later
    fake.inject_error("GET", "/users/@me", status=503, count=2)  # this one it gives up on at once
    stop, served = await serving(tutor, bot_settings, fake)
    body = await command(fake, "help", {}, fake.dm_channel(STUDENT_ID), STUDENT_ID)
    assert "/learn" in body["content"]
    assert [c.status for c in fake.calls_to("GET", "/users/@me")] == [500, 503, 503, 200]
    retried = [r for r in caplog.records if r.getMessage().startswith("could not log in to Discord")]
    assert len(retried) == 2 and all(r.levelno == logging.WARNING for r in retried)
    stop.set()
    await asyncio.wait_for(served, 10)


async def test_a_gateway_refusing_the_first_connection_does_not_stop_the_bot(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    fake.refuse_gateway(1, status=502)
    stop, served = await serving(tutor, bot_settings, fake)
    body = await command(fake, "help", {}, fake.dm_channel(STUDENT_ID), STUDENT_ID)
    assert "/learn" in body["content"]
    assert len(fake.gateway_queries) == 2
    (retried,) = [r for r in caplog.records if r.getMessage().startswith("could not connect to Discord's gateway")]
    assert "WSServerHandshakeError" in retried.getMessage()  # the real cause, not discord.py's AttributeError
    stop.set()
    await asyncio.wait_for(served, 10)


async def test_a_stop_while_discord_is_still_failing_at_start_ends_serve_at_once(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    fake.inject_error("GET", "/users/@me", status=503, count=10**6)
    stop = asyncio.Event()
    served = asyncio.create_task(serve_discord(tutor, bot_settings, stop, time_scale=SCALE))
    await fake.wait_until(lambda: len(fake.calls_to("GET", "/users/@me")) >= 2)
    stop.set()
    await asyncio.wait_for(served, 5)
    assert fake.identifies == []


async def test_a_refused_token_stops_serve_at_once_with_a_line_naming_the_setting(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = bot_settings.model_copy(update={"discord_token": SecretStr("MTAw.wrong.token")})
    with pytest.raises(discord.LoginFailure):
        await asyncio.wait_for(serve_discord(tutor, wrong, asyncio.Event(), time_scale=SCALE), 10)
    assert len(fake.calls_to("GET", "/users/@me")) == 1
    (line,) = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "bots.discord_bot"]
    assert "POLYGLOTT_DISCORD_TOKEN" in line.getMessage()


async def test_commands_failing_to_sync_leave_the_bot_serving_with_a_warning(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject_error("PUT", r"/applications/\d+(/guilds/\d+)?/commands", status=503, count=2)
    async with connected(fake, tutor, bot_settings) as bot:
        warnings = [r for r in caplog.records if r.getMessage().startswith("could not sync commands")]
        assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
        message = await fake.send_dm(STUDENT_ID, "Hola")
        assert await answered(fake, bot, message) == render(PICK_LANGUAGE, "en")
    assert fake.commands == {}


# --- serve: the `polyglott run` contract --------------------------------------------------------------------------


async def test_serve_answers_until_stopped_then_closes(fake: FakeDiscord, tutor: Tutor, bot_settings: Settings) -> None:
    stop = asyncio.Event()
    served = asyncio.create_task(serve_discord(tutor, bot_settings, stop, time_scale=SCALE))
    await fake.wait_until(lambda: GUILD_ID in fake.commands)
    await fake.wait_connected()
    body = await command(fake, "help", {}, fake.dm_channel(STUDENT_ID), STUDENT_ID)
    assert "/learn" in body["content"]
    stop.set()
    await asyncio.wait_for(served, 10)
    await fake.wait_until(lambda: not fake._connections)


async def test_serve_explains_a_message_content_intent_the_portal_has_not_enabled(
    tutor: Tutor, bot_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord(privileged_intents=0, time_scale=SCALE):
        settings = bot_settings.model_copy(update={"discord_message_content": True})
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(serve_discord(tutor, settings, asyncio.Event(), time_scale=SCALE), 10)
    assert any("Privileged Gateway Intents" in r.getMessage() for r in caplog.records)
