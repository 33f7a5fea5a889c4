"""The Discord adapter end to end: discord.py's own client against the loopback fake Discord (REST and gateway),
a real tutor on a fresh database, and the fake Ollama. Messages flow through discord.py's dispatch; slash commands
are found on the bot's synced command tree and invoked as real interactions."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from pydantic import SecretStr

from bots.discord_bot import (
    NEEDS_INTENT,
    NO_LESSON_HERE,
    NOT_ALLOWED,
    NOT_TEXT,
    ONLY_TEACHERS,
    UNREAD,
    Polyglott,
    build_bot,
)
from bots.discord_bot import serve as serve_discord
from core.settings import Settings
from core.tutor import Channel, Tutor
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
)
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script

SCALE = 0.05  # Discord's clock, shrunk for both sides: "5 per 5 s" lasts a quarter of a second
COMMAND_NAMES = {"learn", "level", "native", "reset", "stop", "status", "help", "classroom"}


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
    return bot.showing == 0 and bot.tutor.replies_in_progress == 0


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
    fake: FakeDiscord, name: str, options: dict[str, str], channel_id: int, user_id: int
) -> dict[str, Any]:
    """Run a slash command; what its response said (`content`, `flags`)."""
    interaction = await fake.invoke_command(name, options, channel_id, user_id)
    return (await interaction.wait_response())["data"]


def lesson_of(channel_id: int, *, group: bool = True) -> Channel:
    return Channel(f"discord:{channel_id}", group=group)


def last_user_turn(ollama: FakeOllama) -> str:
    return [m for m in ollama.chat_requests[-1]["messages"] if m["role"] == "user"][-1]["content"]


# --- slash commands ---------------------------------------------------------------------------------------------


async def test_commands_are_synced_globally_and_to_the_configured_server(fake: FakeDiscord, bot: Polyglott) -> None:
    for scope in (None, GUILD_ID):
        assert {c["name"] for c in fake.commands[scope]} == COMMAND_NAMES
    by_name = {c["name"]: c for c in fake.commands[None]}
    assert by_name["learn"]["contexts"] == [0, 1, 2]  # servers, DMs, private channels
    assert by_name["classroom"]["contexts"] == [0]
    options = {o["name"]: o for o in by_name["learn"]["options"]}
    assert options["language"]["autocomplete"] and options["native"]["autocomplete"]
    assert [c["value"] for c in options["level"]["choices"]] == ["A1", "A2", "B1", "B2", "C1", "C2"]
    assert not any(o.get("required") for o in options.values())


@pytest.mark.parametrize(
    ("typed", "first"),
    [("espa", ("Spanish — español", "es")), ("deu", ("German — Deutsch", "de")), ("fren", ("French — français", "fr"))],
)
async def test_learn_autocompletes_languages_by_english_name_native_name_or_code(
    fake: FakeDiscord, bot: Polyglott, typed: str, first: tuple[str, str]
) -> None:
    choices = await fake.autocomplete("learn", {"language": typed}, "language", GENERAL_CHANNEL_ID, STUDENT_ID)
    assert (choices[0]["name"], choices[0]["value"]) == first


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
    await fake.wait_until(lambda: bool(interaction.original and interaction.original["content"]) and settled(bot))
    original = interaction.original
    assert original is not None and original["content"] == opener
    edits = fake.edits_of(int(original["id"]))
    assert len(edits) >= 2 and edits[-1] == opener  # shown while written, not only at the end
    lesson = await tutor.lesson(lesson_of(dm, group=False))
    assert lesson is not None and (lesson.language.name, lesson.level) == ("Spanish", "B1")


async def test_an_unknown_language_is_refused_privately_and_nothing_changes(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    body = await command(fake, "learn", {"language": "klingonish"}, GENERAL_CHANNEL_ID, TEACHER_ID)
    assert body["flags"] == EPHEMERAL and "I don't know the language" in body["content"]
    assert await tutor.lesson(lesson_of(GENERAL_CHANNEL_ID)) is None


async def test_status_and_help_answer_privately(fake: FakeDiscord, bot: Polyglott) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="it", level="A1")
    status = await command(fake, "status", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
    assert status["flags"] == EPHEMERAL
    assert status["content"].startswith("Learning Italian at level A1, explanations in English.")
    help_ = await command(fake, "help", {}, fake.dm_channel(STUDENT_ID), STUDENT_ID)
    assert help_["flags"] == EPHEMERAL and "/learn" in help_["content"]


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


async def test_a_dm_before_any_lesson_points_to_learn(fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama) -> None:
    message = await fake.send_dm(STUDENT_ID, "Hola")
    assert "/learn" in await answered(fake, bot, message)
    assert ollama.chat_requests == []


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
    assert await answered(fake, bot, reply) == UNREAD
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
    assert await answered(fake, bot, message) == NO_LESSON_HERE


async def test_classroom_on_answers_every_message_when_the_bot_can_read_them(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, ollama: FakeOllama
) -> None:
    async with connected(fake, tutor, bot_settings, discord_message_content=True) as bot:
        await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
        on = await command(fake, "classroom", {"mode": "on"}, GENERAL_CHANNEL_ID, TEACHER_ID)
        assert on["content"] == "From now on I answer every message in this channel."
        message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hoy hace sol")
        await answered(fake, bot, message)
        assert last_user_turn(ollama).startswith("Sam: Hoy hace sol")

        await command(fake, "classroom", {"mode": "off"}, GENERAL_CHANNEL_ID, TEACHER_ID)
        await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Mañana lloverá")
        addressed = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "¿Y tú?", mentions_bot=True)
        await answered(fake, bot, addressed)
        assert "Mañana lloverá" not in str(ollama.chat_requests)


async def test_classroom_on_without_the_intent_tells_the_teacher_it_cannot_work_yet(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    on = await command(fake, "classroom", {"mode": "on"}, GENERAL_CHANNEL_ID, TEACHER_ID)
    assert on["content"] == NEEDS_INTENT
    unread = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hoy hace sol")
    addressed = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "¿Me oyes?", mentions_bot=True)
    await answered(fake, bot, addressed)
    assert replies_to(fake, unread) == [] and len(ollama.chat_requests) == 2


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
        assert (body["content"], body["flags"]) == (ONLY_TEACHERS, EPHEMERAL)
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
        assert body["content"] == "Level set to B2." and lesson.level == "B2"
    else:
        assert body["content"] == ONLY_TEACHERS and lesson.level == "A2"


async def test_in_a_dm_the_learner_runs_their_own_lesson(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    dm = fake.dm_channel(STUDENT2_ID)
    await learn(fake, bot, dm, STUDENT2_ID, language="japanese")
    body = await command(fake, "native", {"language": "deu"}, dm, STUDENT2_ID)
    assert body["content"] == "Explanations will be in German."
    lesson = await tutor.lesson(lesson_of(dm, group=False))
    assert lesson is not None and lesson.native.name == "German"


async def test_reset_forgets_the_conversation_but_keeps_the_lesson(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="portuguese")
    await answered(fake, bot, await fake.send_dm(STUDENT_ID, "Meu segredo é azul"))
    body = await command(fake, "reset", {}, dm, STUDENT_ID)
    assert body["content"] == "Conversation forgotten. Say something to start again."
    await answered(fake, bot, await fake.send_dm(STUDENT_ID, "Olá de novo"))
    assert "segredo" not in str(ollama.chat_requests[-1]["messages"])
    lesson = await tutor.lesson(lesson_of(dm, group=False))
    assert lesson is not None and lesson.language.name == "Portuguese"


async def test_stop_pauses_and_learn_without_a_language_resumes(fake: FakeDiscord, bot: Polyglott) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    await command(fake, "stop", {}, dm, STUDENT_ID)
    paused = await fake.send_dm(STUDENT_ID, "¿Hola?")
    assert "paused" in await answered(fake, bot, paused)
    await learn(fake, bot, dm, STUDENT_ID)
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
        asked = re.search(r"pregunta \d+-(\d+|dm)", messages[-1]["content"])
        return Script(f"Respuesta a la {asked[0] if asked else 'apertura'}: {words}.", delay=0.005)

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
                await fake.wait_until(lambda: all(replies_to(fake, m) for m in sent) and settled(bot), timeout=30)
                elapsed = time.monotonic() - started
        finally:
            await tutor.close()
        assert fake.errors == []

    assert fake.rate_limited == []
    edits = []
    for message in sent:
        (reply,) = replies_to(fake, message)  # one answer each, quoting the question, complete
        asked = re.search(r"pregunta \S+", message["content"])[0]  # type: ignore[index]
        assert reply["content"] == f"Respuesta a la {asked}: {words}."
        edits.append(len(fake.edits_of(int(reply["id"]))))
    assert len(ollama.chat_requests) == 5 + len(sent)
    updates = [c.time for c in fake.calls if c.path.startswith(f"/channels/{GENERAL_CHANNEL_ID}/messages")]
    busiest = max(sum(1 for t in updates if start <= t < start + 5 * SCALE) for start in updates)
    print(
        f"\nburst: {len(sent)} replies in {elapsed:.2f} s, 0 429s, edits per reply {min(edits)}–{max(edits)} "
        f"(mean {sum(edits) / len(edits):.1f}), busiest channel: {busiest} updates in one Discord window of 5 s"
    )


@pytest.mark.slow
async def test_a_burst_of_dms_stays_within_discords_global_limit(
    settings: Settings, bot_settings: Settings, ollama: FakeOllama
) -> None:
    """Sixty learners write at once, each in a DM (no shared channel budget): only the bot-wide budget keeps the
    bot under Discord's 50 requests a second, which discord.py would otherwise give up on after five 429s."""
    tutor = await Tutor.open(settings.model_copy(update={"max_parallel": 60}))
    ollama.responder = lambda messages: Script("Hola, ¿qué tal? " * 6, delay=0.002)
    scale = 0.5  # the global window is short already: shrink it less, or scheduling jitter alone would cross it
    async with FakeDiscord(time_scale=scale, ratelimit_headers=False, global_limit=(50, 1.0)) as fake:
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
    assert await answered(fake, bot, in_dm) == NOT_TEXT
    sticker = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "", mentions_bot=True, stickers=["wave"])
    assert await answered(fake, bot, sticker) == NOT_TEXT
    unaddressed = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "", attachments=["foto.png"])
    embed = await fake.send_dm(STUDENT2_ID, "", embeds=[{"title": "Vokabeln", "description": "Hund, Katze"}])
    assert await answered(fake, bot, embed) == NOT_TEXT
    assert replies_to(fake, unaddressed) == [] and ollama.chat_requests == []


async def test_ollama_down_is_a_short_message_and_the_next_message_works_once_it_is_back(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    await ollama.stop()
    down = await fake.send_dm(STUDENT_ID, "¿Estás ahí?")
    text = await answered(fake, bot, down)
    assert "Is Ollama running?" in text and "Traceback" not in text
    await ollama.start()
    back = await fake.send_dm(STUDENT_ID, "¿Y ahora?")
    assert await answered(fake, bot, back) == "¡Muy bien! Esta es la respuesta número 2."


async def test_a_missing_model_names_the_fix(fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    ollama.remove_model(MODEL)
    message = await fake.send_dm(STUDENT_ID, "Hola")
    assert f"ollama pull {MODEL}" in await answered(fake, bot, message)


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
    assert "/learn" in await answered(fake, bot, message)


async def test_an_unexpected_command_failure_answers_privately_without_a_traceback(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await tutor.store.close()  # the database is gone: every command fails
    body = await command(fake, "status", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
    assert body["flags"] == EPHEMERAL
    assert body["content"] == "Sorry, something went wrong on my side. Please try again."


async def test_servers_off_the_allow_list_are_turned_away_but_dms_work(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings
) -> None:
    async with connected(fake, tutor, bot_settings, discord_allowed_guilds=[42]) as bot:
        status = await command(fake, "status", {}, GENERAL_CHANNEL_ID, TEACHER_ID)
        assert (status["content"], status["flags"]) == (NOT_ALLOWED, EPHEMERAL)
        mention = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hola", mentions_bot=True)
        assert await answered(fake, bot, mention) == NOT_ALLOWED
        in_dm = await fake.send_dm(STUDENT_ID, "Hola")
        assert "/learn" in await answered(fake, bot, in_dm)


async def test_log_lines_name_the_channel_and_never_the_message(
    fake: FakeDiscord, bot: Polyglott, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bots.discord_bot")
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish")
    message = await fake.send_dm(STUDENT_ID, "mi contraseña secreta")
    await answered(fake, bot, message)
    lines = [r for r in caplog.records if r.name == "bots.discord_bot"]
    assert [r.getMessage().split()[0] for r in lines] == ["command", "replied", "message", "replied"]
    for record in lines:
        assert (record.adapter, record.channel) == ("discord", f"discord:{dm}")  # type: ignore[attr-defined]
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
