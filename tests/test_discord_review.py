"""Reviews, progress and reminders on Discord, end to end: discord.py's own client against the loopback fake
Discord, a real tutor on a fresh database, slash commands invoked and buttons clicked as real interactions.

Cards are seeded in the store (as a correction in a reply would leave them); what the bot shows is core's
(`core.review.front`/`back`, its messages rendered). Discord shows Markdown as written, so texts compare as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from bots.discord_bot import Polyglott, build_bot
from core.conversation import SAVE_CHARS
from core.deck import Card, Kind
from core.i18n import Msg, Voice, _, _n, render
from core.review import NOT_YOURS, back, front
from core.settings import Settings
from core.tutor import Channel, Tutor
from tests.fake_discord import (
    BOT_TOKEN,
    EPHEMERAL,
    GENERAL_CHANNEL_ID,
    GUILD_ID,
    STUDENT2_ID,
    STUDENT_ID,
    FakeDiscord,
    FakeInteraction,
)

SCALE = 0.05
WITHIN = 10.0  # seconds: a bound for a slow machine, not a pace
POLL = 0.02  # seconds between looks at the database
SAY = Voice("en")
PNG = b"\x89PNG\r\n\x1a\n"
SOY = ("soy", "estaba", "Un estado pasajero: estar.", "Ayer yo soy cansado.")
POR = ("por", "para", "Una finalidad: para.", "Estudio por aprender.")


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(time_scale=SCALE) as server:
        yield server
    assert server.errors == []


@pytest.fixture
def bot_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"discord_token": SecretStr(BOT_TOKEN), "discord_guild_ids": [GUILD_ID]})


@contextlib.asynccontextmanager
async def connected(
    fake: FakeDiscord, tutor: Tutor, settings: Settings, *, remind_every: float = 600.0
) -> AsyncIterator[Polyglott]:
    client = build_bot(tutor, settings, time_scale=SCALE, remind_every=remind_every)
    async with fake.connected(client):
        yield client


@pytest.fixture
async def bot(fake: FakeDiscord, tutor: Tutor, bot_settings: Settings) -> AsyncIterator[Polyglott]:
    async with connected(fake, tutor, bot_settings) as client:
        yield client


def learner(user: int) -> str:
    return f"discord:user:{user}"


async def seed(tutor: Tutor, user: int, *cards: tuple[str, str, str, str]) -> list[Card]:
    """Correction cards (wrong, right, explanation, sentence) of a learner, due in the order given."""
    now = time.time()
    seeded = []
    for age, (wrong, right, meaning, context) in zip(range(len(cards), 0, -1), cards, strict=True):
        card = Card(0, learner(user), "es", Kind.CORRECTION, right=right, wrong=wrong, meaning=meaning, context=context)
        added = await tutor.store.add_card(card, now - age)
        assert added is not None
        stored = await tutor.store.card(added)
        assert stored is not None
        seeded.append(stored)
    return seeded


def said(message: Msg) -> str:
    return render(message, "en")


def actions(message: dict[str, Any]) -> list[str]:
    """The actions of a message's buttons, row after row."""
    ids = [button["custom_id"] for row in message.get("components", []) for button in row["components"]]
    return [i.removeprefix("pg:") for i in ids]


def labels(message: dict[str, Any]) -> list[str]:
    return [button["label"] for row in message.get("components", []) for button in row["components"]]


def showing(message: dict[str, Any] | None, card: Card) -> bool:
    """The message shows `card`'s front with its Show answer button."""
    return (
        message is not None
        and actions(message)[:1] != []
        and actions(message)[0].startswith(f"rv:a:{card.id}:{card.reps}:")
        and front(card, SAY) in message["content"]
    )


def revealed(message: dict[str, Any], card: Card) -> bool:
    """The message shows `card`'s back with the four ratings."""
    ratings = [a.split(":")[:4] for a in actions(message)]
    expected = [["rv", str(r), str(card.id), str(card.reps)] for r in (1, 2, 3, 4)]
    return ratings == expected and back(card, SAY) in message["content"]


def rating(message: dict[str, Any], value: int) -> str:
    return next(a for a in actions(message) if a.startswith(f"rv:{value}:"))


def settled(bot: Polyglott) -> bool:
    return bot.conversation.busy == 0


async def click(fake: FakeDiscord, bot: Polyglott, message: dict[str, Any], action: str, user: int) -> FakeInteraction:
    """`user` clicks the button carrying `action` on `message`; once everything it caused is shown."""
    interaction = await fake.click_button(int(message["id"]), f"pg:{action}", user)
    await interaction.wait_response(WITHIN)
    await fake.wait_until(lambda: settled(bot), WITHIN)
    return interaction


async def review(fake: FakeDiscord, bot: Polyglott, channel: int, user: int, card: Card) -> dict[str, Any]:
    """`/review`; the response message, once it shows `card`."""
    interaction = await fake.invoke_command("review", {}, channel, user)
    await fake.wait_until(lambda: showing(interaction.original, card) and settled(bot), WITHIN)
    assert interaction.original is not None
    return interaction.original


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll a check on the database until it holds, for up to `WITHIN` seconds."""
    for _attempt in range(int(WITHIN / POLL)):
        if await check():
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"not within {WITHIN} s")


# The commands


async def test_save_and_remind_are_slash_commands_with_their_options(fake: FakeDiscord, bot: Polyglott) -> None:
    by_name = {c["name"]: c for c in fake.commands[None]}
    assert {"review", "progress", "save", "remind"} <= set(by_name)
    (phrase,) = by_name["save"]["options"]
    assert (phrase["name"], phrase["type"], phrase.get("required")) == ("phrase", 3, True)
    assert phrase["max_length"] == SAVE_CHARS
    (mode,) = by_name["remind"]["options"]
    assert mode["name"] == "mode" and not mode.get("required")
    assert [c["value"] for c in mode["choices"]] == ["on", "off"]
    assert by_name["remind"]["contexts"] == [0, 1, 2]


async def test_save_adds_the_phrase_to_the_learners_cards(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    async for _chunk in await tutor.start(Channel(f"discord:{dm}"), "spanish", "A2"):
        pass
    interaction = await fake.invoke_command("save", {"phrase": "la cuenta"}, dm, STUDENT_ID)
    body = (await interaction.wait_response(WITHIN))["data"]
    assert body["content"] == said(_("Saved “{phrase}”: it comes up in /review.", phrase="la cuenta"))
    (card,) = await tutor.store.cards_of(learner(STUDENT_ID))
    assert (card.kind, card.right, card.language) == (Kind.WORD, "la cuenta", "es")
    await fake.wait_until(lambda: settled(bot), WITHIN)


# The review flow in a DM


async def test_a_review_in_a_dm_reveals_rates_and_ends_with_a_summary_in_one_message(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    first, second = await seed(tutor, STUDENT_ID, SOY, POR)
    card = await review(fake, bot, dm, STUDENT_ID, first)
    assert not card["flags"] & EPHEMERAL and "**soy**" in card["content"] and "estaba" not in card["content"]

    await click(fake, bot, card, actions(card)[0], STUDENT_ID)  # Show answer
    assert revealed(card, first)
    await click(fake, bot, card, rating(card, 3), STUDENT_ID)  # Good: the next card, in the same message
    assert showing(card, second)
    await click(fake, bot, card, actions(card)[0], STUDENT_ID)
    assert revealed(card, second)
    await click(fake, bot, card, rating(card, 1), STUDENT_ID)  # Again
    assert card["content"].startswith(f"🎉 {said(_n('You reviewed {n} card.', 'You reviewed {n} cards.', 2))}")
    assert card["components"] == []

    assert fake.channel_texts(dm) == [card["content"]]
    rated = [await tutor.store.card(c.id) for c in (first, second)]
    assert [c.reps if c else None for c in rated] == [1, 1]


async def test_a_typed_answer_in_a_dm_gets_a_suggested_rating_and_the_buttons_stay(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    (card,) = await seed(tutor, STUDENT_ID, SOY)
    await review(fake, bot, dm, STUDENT_ID, card)
    await fake.send_dm(STUDENT_ID, "Ayer yo estaba cansada.")  # one letter off
    await fake.wait_until(lambda: len(fake.bot_messages(dm)) == 2 and settled(bot), WITHIN)
    answer = fake.bot_messages(dm)[-1]
    assert revealed(answer, card) and answer["content"].startswith(said(_("Close! Look at the difference.")))
    hard = labels(answer)[1]
    assert hard.startswith("✓ ") and said(_("Hard")) in hard
    await click(fake, bot, answer, rating(answer, 3), STUDENT_ID)  # another rating than the suggested one
    rated = await tutor.store.card(card.id)
    assert rated is not None and rated.reps == 1 and answer["components"] == []


async def test_another_users_click_on_a_card_is_refused_privately_and_nothing_changes(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    (card,) = await seed(tutor, STUDENT_ID, SOY)
    message = await review(fake, bot, fake.dm_channel(STUDENT_ID), STUDENT_ID, card)
    before = message["content"]
    refused = await click(fake, bot, message, actions(message)[0], STUDENT2_ID)
    assert refused.original is not None and refused.original["flags"] & EPHEMERAL
    assert refused.original["content"] == said(NOT_YOURS)
    assert message["content"] == before and fake.edits_of(int(message["id"])) == []


async def test_the_same_rating_clicked_twice_counts_once(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    first, second = await seed(tutor, STUDENT_ID, SOY, POR)
    message = await review(fake, bot, fake.dm_channel(STUDENT_ID), STUDENT_ID, first)
    await click(fake, bot, message, actions(message)[0], STUDENT_ID)
    good, shown_before = rating(message, 3), copy.deepcopy(message["components"])
    await click(fake, bot, message, good, STUDENT_ID)
    assert showing(message, second)
    edits = len(fake.edits_of(int(message["id"])))
    # A double click: the second comes from the message as the client showed it before the first's edit arrived.
    message["components"] = shown_before
    again = await click(fake, bot, message, good, STUDENT_ID)
    assert again.original is not None and again.original["flags"] & EPHEMERAL
    assert len(fake.edits_of(int(message["id"]))) == edits
    assert await tutor.store.reviewed(learner(STUDENT_ID), 0) == 1


async def test_a_cards_buttons_still_work_after_a_restart(
    fake: FakeDiscord, settings: Settings, bot_settings: Settings
) -> None:
    tutor = await Tutor.open(settings)
    try:
        async with connected(fake, tutor, bot_settings) as bot:
            (card,) = await seed(tutor, STUDENT_ID, SOY)
            message = await review(fake, bot, fake.dm_channel(STUDENT_ID), STUDENT_ID, card)
    finally:
        await tutor.close()
    tutor = await Tutor.open(settings)  # a new process: a new client on the same database
    try:
        async with connected(fake, tutor, bot_settings) as bot:
            await click(fake, bot, message, actions(message)[0], STUDENT_ID)
            assert revealed(message, card)
            await click(fake, bot, message, rating(message, 3), STUDENT_ID)
        rated = await tutor.store.card(card.id)
    finally:
        await tutor.close()
    assert rated is not None and rated.reps == 1


# A server: the review happens in ephemeral messages


async def test_a_review_in_a_server_is_ephemeral_and_its_buttons_edit_the_ephemeral_message(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    first, second = await seed(tutor, STUDENT_ID, SOY, POR)
    card = await review(fake, bot, GENERAL_CHANNEL_ID, STUDENT_ID, first)
    assert card["flags"] & EPHEMERAL
    shown = await click(fake, bot, card, actions(card)[0], STUDENT_ID)
    assert shown.response_type == 7 and revealed(card, first) and card["flags"] & EPHEMERAL
    rated = await click(fake, bot, card, rating(card, 4), STUDENT_ID)
    assert rated.response_type == 7 and showing(card, second)
    assert fake.bot_messages(GENERAL_CHANNEL_ID) == []  # nothing of it for the class to see


async def test_a_classmates_click_on_an_ephemeral_card_is_refused(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    (card,) = await seed(tutor, STUDENT_ID, SOY)
    message = await review(fake, bot, GENERAL_CHANNEL_ID, STUDENT_ID, card)
    refused = await click(fake, bot, message, actions(message)[0], STUDENT2_ID)
    assert refused.original is not None and refused.original["flags"] & EPHEMERAL
    assert refused.original["content"] == said(NOT_YOURS) and showing(message, card)


# Progress


async def test_progress_answers_with_its_figures_and_the_chart_as_a_png_attachment(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await seed(tutor, STUDENT_ID, SOY)
    for _message in range(3):
        await tutor.store.practised(learner(STUDENT_ID), "es", f"discord:{GENERAL_CHANNEL_ID}", time.time() - 60, True)
    interaction = await fake.invoke_command("progress", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
    await fake.wait_until(lambda: bool(interaction.followups) and settled(bot), WITHIN)
    note, (chart,) = interaction.original, interaction.followups
    assert note is not None and note["flags"] & EPHEMERAL and note["content"] and not note["attachments"]
    (file,) = chart["attachments"]
    assert chart["flags"] & EPHEMERAL and chart["content"] == said(_("Your weeks in a chart"))
    assert (file["filename"], file["content_type"]) == ("polyglott-progress.png", "image/png")
    assert fake.uploads[int(file["id"])].startswith(PNG)


# Reminders


@pytest.fixture
async def reminding(fake: FakeDiscord, tutor: Tutor, bot_settings: Settings) -> AsyncIterator[Polyglott]:
    """The bot with core's reminder pass every 50 ms instead of every 10 minutes."""
    async with connected(fake, tutor, bot_settings, remind_every=0.05) as client:
        yield client


async def reminders_on(fake: FakeDiscord, tutor: Tutor, dm: int) -> None:
    interaction = await fake.invoke_command("remind", {"mode": "on"}, dm, STUDENT_ID)
    body = (await interaction.wait_response(WITHIN))["data"]
    assert body["content"] == said(_("I'll write once a day when cards are due, at the hour you usually practise."))
    assert await tutor.store.reminder(learner(STUDENT_ID)) == f"discord:{dm}"


async def test_a_learner_with_reminders_on_gets_one_in_their_dms_and_its_button_starts_the_review(
    fake: FakeDiscord, reminding: Polyglott, tutor: Tutor
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await reminders_on(fake, tutor, dm)
    (card,) = await seed(tutor, STUDENT_ID, SOY)
    waiting = said(_n("📚 {n} card is waiting for you.", "📚 {n} cards are waiting for you.", 1))
    await fake.wait_until(lambda: waiting in fake.channel_texts(dm), WITHIN)
    reminder = fake.bot_messages(dm)[-1]
    assert actions(reminder) == ["review"]
    shown = await click(fake, reminding, reminder, "review", STUDENT_ID)
    assert showing(shown.original, card)


async def test_a_learner_whose_dms_are_closed_is_switched_off_reminders(
    fake: FakeDiscord, reminding: Polyglott, tutor: Tutor
) -> None:
    dm = fake.dm_channel(STUDENT_ID)
    await reminders_on(fake, tutor, dm)
    fake.dms_closed.add(STUDENT_ID)
    await seed(tutor, STUDENT_ID, SOY)

    async def off() -> bool:
        return await tutor.store.reminder(learner(STUDENT_ID)) is None

    await eventually(off)
    refused = [c for c in fake.calls_to("POST", rf"/channels/{dm}/messages") if c.status == 403]
    assert refused and all(c.response and c.response["code"] == 50007 for c in refused)
    assert len(fake.bot_messages(dm)) == 1  # the answer to /remind on only
