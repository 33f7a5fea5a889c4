"""`/forget`: a learner deletes everything kept about them, everywhere, after a confirmation press.

The check that matters reads the schema, not our list of tables: every table the database lists, every value in
it, counted for the learner's id and their private chat's id before and after. Before, every table
must mention them (so a table added later fails here until this test seeds it and forgetting deletes it);
after, none may. Then the same through Telegram's and Discord's fakes, with the real buttons pressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from bots.discord_bot import Polyglott, build_bot
from bots.telegram_bot import serve
from core.conversation import Conversation, Origin
from core.deck import Card, Kind, Rating, review
from core.i18n import _n, render
from core.settings import Settings
from core.store import FORGOTTEN, Store
from core.tutor import Channel, Learner, Tutor
from tests.fake_discord import BOT_TOKEN, EPHEMERAL, GENERAL_CHANNEL_ID, GUILD_ID, STUDENT2_ID, STUDENT_ID, FakeDiscord
from tests.fake_ollama import FakeOllama
from tests.fake_telegram import BotMessage, FakeTelegram
from tests.recording import Recorder

DM = Channel("test:dm:ana")
BENS_DM = Channel("test:dm:ben")
CLASS = Channel("test:class:1", group=True)
ANA = Learner("test:user:ana", "Ana")
BEN = Learner("test:user:ben", "Ben")
WITHIN = 10.0  # seconds: a bound for a slow machine, not a pace
BOTH = pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL (tests/conftest.py)


def origin(channel: Channel, learner: Learner) -> Origin:
    return Origin(channel, learner, "telegram")


async def mentions(store: Store, *needles: str) -> dict[str, int]:
    """Per table of the schema (as the database itself lists it), the rows with a value that contains any of
    `needles` (the needles hold no LIKE wildcards)."""
    counts = {}
    for table, columns in (await store._db.columns()).items():
        where = " OR ".join(f'CAST("{c}" AS TEXT) LIKE ?' for c in sorted(columns) for _ in needles)
        args = [f"%{needle}%" for _c in columns for needle in needles]
        row = await store._db.fetchone(f'SELECT COUNT(*) FROM "{table}" WHERE {where}', args)
        counts[table] = int(row[0]) if row else 0
    return counts


async def seed_everything(conversation: Conversation, ollama: FakeOllama) -> None:
    """Ana learns in her private chat and in a class with Ben, and leaves a row in every table there is: her
    messages and the answers, her private chat's lesson and levels, cards, a review, a mistake, practice, a card
    waiting for her typed answer, reminders, a flag, a fact remembered, a scene under way. Ben has his own private
    chat and cards."""
    store = conversation.store
    ollama.script(
        "¡Hola! ¿Qué comes hoy?",
        "¡Hola, clase!",
        "Muy bien, Ana.",
        "Bien, Ben.",
        "¡Hola!",
        "Perfecto.",
        "Vale. [remember: lives in Lima]",
        "¡Bienvenida al café!",
    )
    await conversation.command(origin(DM, ANA), "learn", ("spanish",), Recorder())
    await conversation.command(origin(CLASS, ANA), "learn", ("spanish",), Recorder())
    await conversation.message(origin(CLASS, ANA), "Yo soy cansada hoy", Recorder())
    await conversation.message(origin(CLASS, BEN), "Yo como pan", Recorder())
    await conversation.command(origin(BENS_DM, BEN), "learn", ("spanish",), Recorder())
    await conversation.message(origin(BENS_DM, BEN), "Hola, soy Ben", Recorder())
    await conversation.message(origin(DM, ANA), "Me llamo Ana y vivo en Lima", Recorder())
    await conversation.command(origin(DM, ANA), "remind", ("on",), Recorder())
    await conversation.command(origin(DM, ANA), "roleplay", ("cafe-order",), Recorder())  # a scene under way
    assert [fact.fact for fact in await store.facts(ANA.id)] == ["lives in Lima"]
    now = time.time()
    cards = {}
    for learner in (ANA, BEN):
        card = Card(0, learner.id, "es", Kind.CORRECTION, "estoy", "soy", "Un estado: estar.", "Yo soy cansada hoy")
        added = await store.add_card(card, now)
        stored = await store.card(added or 0)
        assert stored is not None
        cards[learner] = stored
        await store.rate(review(stored, Rating.GOOD, now), Rating.GOOD, now)
        await store.mistake(learner.id, "es", "ser/estar", CLASS.id, now)
    await store.await_answer(DM.id, ANA.id, cards[ANA].id, now, now)
    await store.add_flag(CLASS.id, ANA.id, "message", now)
    await store.add_flag(DM.id, None, "reply", now)


async def forget_in(conversation: Conversation, channel: Channel, learner: Learner) -> Recorder:
    shown = Recorder()
    await conversation.press(origin(channel, learner), "forget:yes", shown)
    return shown


@BOTH
async def test_forgetting_leaves_no_row_in_any_table_that_mentions_the_learner_or_their_private_chat(
    tutor: Tutor, ollama: FakeOllama
) -> None:
    conversation = Conversation(tutor)
    await seed_everything(conversation, ollama)
    before = await mentions(tutor.store, ANA.id, DM.id)
    unseeded = sorted(table for table, count in before.items() if count == 0)
    assert unseeded == [], f"tables nothing here puts Ana in: seed them, and make forgetting delete them: {unseeded}"
    bens = await mentions(tutor.store, BEN.id, BENS_DM.id)
    await forget_in(conversation, CLASS, ANA)
    assert await mentions(tutor.store, ANA.id, DM.id) == dict.fromkeys(before, 0)
    assert await mentions(tutor.store, BEN.id, BENS_DM.id) == bens


@BOTH
async def test_forget_says_how_many_messages_of_theirs_it_deleted(tutor: Tutor, ollama: FakeOllama) -> None:
    conversation = Conversation(tutor)
    await seed_everything(conversation, ollama)
    shown = await forget_in(conversation, DM, ANA)
    done = _n(
        "Done: I deleted {n} message and everything I knew about you.",
        "Done: I deleted {n} messages and everything I knew about you.",
        2,
    )
    assert [(note.text, note.private) for note in shown.notes] == [(render(done, "en"), True)]


@BOTH
async def test_the_class_keeps_the_answer_to_a_forgotten_student_without_her_name(
    tutor: Tutor, ollama: FakeOllama
) -> None:
    conversation = Conversation(tutor)
    await conversation.command(origin(CLASS, BEN), "learn", ("spanish",), Recorder())
    ollama.script("¡Hola, Ana! ANA, dime: ¿conoces a Anabel?")
    await conversation.message(origin(CLASS, ANA), "Hola, me llamo Ana", Recorder())
    await forget_in(conversation, CLASS, ANA)
    history = [(m.role, m.author_id, m.text) for m in await tutor.store.transcript(CLASS.id)]
    assert history[1:] == [("assistant", None, f"¡Hola, {FORGOTTEN}! {FORGOTTEN}, dime: ¿conoces a Anabel?")]


@BOTH
@pytest.mark.parametrize("ana_last", [False, True], ids=["ben-last", "ana-last"])
async def test_an_answer_to_several_students_stays_when_one_forgets_and_loses_only_her_name(
    tutor: Tutor, ollama: FakeOllama, ana_last: bool
) -> None:
    store = tutor.store
    await Conversation(tutor).command(origin(CLASS, BEN), "learn", ("spanish",), Recorder())
    people = [BEN, ANA] if ana_last else [ANA, BEN]
    asked = [
        await store.add_message(CLASS.id, "user", f"Soy {p.name}", author_id=p.id, author_name=p.name) for p in people
    ]
    answer = await store.add_message(CLASS.id, "assistant", "Ana: muy bien. Ben: casi.", reply_to=asked[-1])
    await store.answered_together(asked, answer)
    await forget_in(Conversation(tutor), CLASS, ANA)
    texts = [(m.author_id, m.text) for m in await store.transcript(CLASS.id)][1:]
    assert texts == [(BEN.id, "Soy Ben"), (None, f"{FORGOTTEN}: muy bien. Ben: casi.")]
    assert [k.text for k in await store.kept(BEN.id)] == ["Soy Ben", f"{FORGOTTEN}: muy bien. Ben: casi."]


@BOTH
async def test_their_private_chat_goes_whole_with_its_lesson_and_levels(tutor: Tutor, ollama: FakeOllama) -> None:
    conversation = Conversation(tutor)
    await seed_everything(conversation, ollama)
    await forget_in(conversation, CLASS, ANA)
    assert await tutor.store.transcript(DM.id) == []
    assert await tutor.store.lesson(DM.id) is None
    assert await tutor.store.private_channels(ANA.id) == []
    assert len(await tutor.store.transcript(BENS_DM.id)) == 3  # Ben's chat: his opener, message and answer
    assert await tutor.store.lesson(CLASS.id) is not None


@BOTH
async def test_a_private_chat_where_they_only_ran_commands_goes_when_they_forget_there(
    tutor: Tutor, ollama: FakeOllama
) -> None:
    conversation = Conversation(tutor)
    ollama.script("¡Hola! ¿Empezamos?")
    await conversation.command(origin(DM, ANA), "learn", ("spanish",), Recorder())
    before = await mentions(tutor.store, ANA.id, DM.id)
    assert before["lessons"] and before["levels"] and before["messages"]  # the opener: nobody's message
    await forget_in(conversation, DM, ANA)
    assert await mentions(tutor.store, ANA.id, DM.id) == dict.fromkeys(before, 0)


@BOTH
async def test_forget_asks_first_and_deletes_nothing_until_pressed(tutor: Tutor, ollama: FakeOllama) -> None:
    conversation = Conversation(tutor)
    await seed_everything(conversation, ollama)
    before = await mentions(tutor.store, ANA.id, DM.id)
    shown = Recorder()
    await conversation.command(origin(CLASS, ANA), "forget", (), shown)
    [question] = shown.notes
    assert question.private and [b.action for row in question.buttons for b in row] == ["forget:yes"]
    assert await mentions(tutor.store, ANA.id, DM.id) == before


async def test_a_reset_while_a_learner_is_being_forgotten_waits_for_the_transaction(
    tutor: Tutor, ollama: FakeOllama
) -> None:
    """Forgetting is one transaction on SQLite's shared connection; SQLite refuses a checkpoint inside one, so a
    /reset's checkpoint elsewhere waits for it to end instead of failing."""
    conversation = Conversation(tutor)
    await seed_everything(conversation, ollama)
    async with tutor.store._db.transaction():  # as forgetting holds it
        reset = asyncio.create_task(tutor.reset(BENS_DM))
        await asyncio.sleep(0.1)
        assert not reset.done()
    assert await asyncio.wait_for(reset, WITHIN) == 3


# Telegram: the real python-telegram-bot Application against the fake Bot API, buttons pressed as callback queries

SCALE = 0.1
USER, STUDENT = 4242, 11
GROUP = -1001234567890


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(time_scale=SCALE, require_start=True) as fake:
        fake.set_admins(GROUP, creator=USER)
        yield fake


@contextlib.asynccontextmanager
async def telegram_bot(tutor: Tutor, settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    settings = settings.model_copy(
        update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(tutor, settings, stop, time_scale=SCALE))
    await telegram.wait_for(lambda: task.done() or bool(telegram.calls_to("getUpdates")), WITHIN)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WITHIN)


def with_button(telegram: FakeTelegram, chat: int, action: str) -> BotMessage | None:
    return next(
        (
            m
            for m in telegram.messages.get(chat, {}).values()
            if m.reply_markup
            and any(b.get("callback_data") == action for row in m.reply_markup["inline_keyboard"] for b in row)
        ),
        None,
    )


async def test_forget_on_telegram_deletes_everything_once_the_confirmation_is_pressed(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    learner, chat = f"telegram:user:{USER}", f"telegram:{USER}"
    async for _chunk in await tutor.start(Channel(chat), "spanish", "A2"):
        pass
    async for _chunk in await tutor.start(Channel(f"telegram:{GROUP}", group=True), "spanish", "A2"):
        pass
    ollama.script("Muy bien.", "¡Bien dicho, Ana!", "Hola.")
    async with telegram_bot(tutor, settings, telegram):
        telegram.add_private_message(USER, "Me llamo Ana", first_name="Ana")
        await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1, WITHIN)
        telegram.add_mention(GROUP, USER, "Hola a todos", first_name="Ana")
        await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 1, WITHIN)
        telegram.add_mention(GROUP, STUDENT, "Hola", first_name="Ben")
        await telegram.wait_for(lambda: len(telegram.chat_texts(GROUP)) == 2, WITHIN)
        before = await mentions(tutor.store, learner, chat)
        assert before["messages"] and before["learners"] and before["lessons"]
        telegram.add_command(USER, USER, "forget")
        await telegram.wait_for(lambda: with_button(telegram, USER, "forget:yes") is not None, WITHIN)
        question = with_button(telegram, USER, "forget:yes")
        assert question is not None
        await asyncio.sleep(0.2)
        assert await mentions(tutor.store, learner, chat) == before  # nothing yet: only asked
        telegram.add_callback_query(USER, USER, question.message_id, "forget:yes")
        done = _n(
            "Done: I deleted {n} message and everything I knew about you.",
            "Done: I deleted {n} messages and everything I knew about you.",
            2,
        )
        await telegram.wait_for(lambda: render(done, "en") in telegram.chat_texts(USER), WITHIN)
        assert await mentions(tutor.store, learner, chat) == dict.fromkeys(before, 0)
        group = await tutor.store.transcript(f"telegram:{GROUP}")
        assert f"¡Bien dicho, {FORGOTTEN}!" in [m.text for m in group]
        assert [m.text for m in group if m.role == "user"] == ["Hola"]  # Ben's stays


# Discord: discord.py against the fake Discord, the slash command invoked and the button clicked


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(time_scale=0.05) as server:
        yield server
    assert server.errors == []


@contextlib.asynccontextmanager
async def discord_bot(fake: FakeDiscord, tutor: Tutor, settings: Settings) -> AsyncIterator[Polyglott]:
    settings = settings.model_copy(update={"discord_token": SecretStr(BOT_TOKEN), "discord_guild_ids": [GUILD_ID]})
    client = build_bot(tutor, settings, time_scale=0.05)
    async with fake.connected(client):
        yield client


def settled(bot: Polyglott) -> bool:
    return bot.conversation.busy == 0 and bot.tutor.replies_in_progress == 0


def button_actions(message: dict[str, Any] | None) -> list[str]:
    assert message is not None
    return [b["custom_id"].removeprefix("pg:") for row in message.get("components", []) for b in row["components"]]


async def test_forget_on_discord_deletes_everything_once_the_confirmation_is_clicked(
    tutor: Tutor, settings: Settings, discord_fake: FakeDiscord, ollama: FakeOllama
) -> None:
    fake = discord_fake
    learner = f"discord:user:{STUDENT_ID}"
    dm = f"discord:{fake.dm_channel(STUDENT_ID)}"
    async for _chunk in await tutor.start(Channel(dm), "spanish", "A2"):
        pass
    async for _chunk in await tutor.start(Channel(f"discord:{GENERAL_CHANNEL_ID}", group=True), "spanish", "A2"):
        pass
    async with discord_bot(fake, tutor, settings) as bot:
        ollama.script("Muy bien.")
        await fake.send_dm(STUDENT_ID, "Me llamo Sam")
        await fake.wait_until(lambda: len(fake.bot_messages(fake.dm_channel(STUDENT_ID))) == 1 and settled(bot))
        ollama.script("Hola, Sam y compañía.")
        await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hola", mentions_bot=True)
        await fake.wait_until(lambda: len(fake.bot_messages(GENERAL_CHANNEL_ID)) == 1 and settled(bot))
        ollama.script("Bien.")
        await fake.send_message(GENERAL_CHANNEL_ID, STUDENT2_ID, "Buenas", mentions_bot=True)
        await fake.wait_until(lambda: len(fake.bot_messages(GENERAL_CHANNEL_ID)) == 2 and settled(bot))
        before = await mentions(tutor.store, learner, dm)
        assert before["messages"] and before["learners"] and before["lessons"]
        interaction = await fake.invoke_command("forget", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        question = (await interaction.wait_response(WITHIN))["data"]
        assert question["flags"] & EPHEMERAL and button_actions(question) == ["forget:yes"]
        await fake.wait_until(lambda: interaction.original is not None and settled(bot))
        assert await mentions(tutor.store, learner, dm) == before
        assert interaction.original is not None
        click = await fake.click_button(int(interaction.original["id"]), "pg:forget:yes", STUDENT_ID)
        await click.wait_response(WITHIN)
        await fake.wait_until(lambda: settled(bot), WITHIN)
        assert await mentions(tutor.store, learner, dm) == dict.fromkeys(before, 0)
        channel = await tutor.store.transcript(f"discord:{GENERAL_CHANNEL_ID}")
        assert [m.text for m in channel if m.role == "user"] == ["Buenas"]
        assert f"Hola, {FORGOTTEN} y compañía." in [m.text for m in channel]
