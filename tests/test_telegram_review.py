"""Reviews, progress and reminders on Telegram, end to end: the real python-telegram-bot Application over the
loopback fake Bot API, the real tutor on a fresh database, buttons pressed as real callback queries.

Cards are seeded in the store (as a correction in a reply would leave them); what the bot shows is core's
(`core.review.front`/`back`, its messages rendered), as Telegram shows it. Waits poll with generous bounds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pydantic import SecretStr
from telegram.error import BadRequest

from bots.telegram_bot import serve
from bots.telegram_html import to_html
from core.deck import Card, Kind
from core.i18n import Msg, Voice, _, _n, render
from core.review import ALREADY, NOT_YOURS, back, front
from core.settings import Settings
from core.tutor import Channel, Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_telegram import (
    CAPTION_TOO_LONG,
    IMAGE_FAILED,
    PHOTO_DIMENSIONS,
    BotMessage,
    FakeTelegram,
    image_size,
    parse_html,
)

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SCALE = 0.1
WITHIN = 10.0  # seconds: a bound for a slow machine, not a pace
POLL = 0.02  # seconds between looks at the database
USER, STUDENT = 4242, 11
GROUP = -1001234567890
DM = Channel(f"telegram:{USER}")
CLASS = Channel(f"telegram:{GROUP}", group=True)
SAY = Voice("en")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(time_scale=SCALE, require_start=True) as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, telegram: FakeTelegram) -> Settings:
    return settings.model_copy(update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url})


@contextlib.asynccontextmanager
async def running(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, *, remind_every: float = 600.0
) -> AsyncIterator[None]:
    """`serve` until the block ends (a process of the bot); it must have stopped cleanly by then."""
    stop = asyncio.Event()
    polls = len(telegram.calls_to("getUpdates"))
    task = asyncio.create_task(serve(tutor, settings, stop, time_scale=SCALE, remind_every=remind_every))
    await telegram.wait_for(lambda: task.done() or len(telegram.calls_to("getUpdates")) > polls, WITHIN)
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WITHIN)


@pytest.fixture
async def bot(tutor: Tutor, settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    async with running(tutor, settings, telegram):
        yield


def learner(user: int) -> str:
    return f"telegram:user:{user}"


async def lesson(tutor: Tutor, channel: Channel) -> None:
    async for _chunk in await tutor.start(channel, "spanish", "A2"):
        pass


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


SOY = ("soy", "estaba", "Un estado pasajero: estar.", "Ayer yo soy cansado.")
POR = ("por", "para", "Una finalidad: para.", "Estudio por aprender.")


def shown(markdown: str) -> str:
    """Markdown as Telegram shows it."""
    return parse_html(to_html(markdown))[0]


def said(message: Msg) -> str:
    return shown(render(message, "en"))


def data(message: BotMessage | None) -> list[str]:
    """The callback data of a message's buttons, row by row."""
    assert message is not None and message.reply_markup is not None
    return [b["callback_data"] for row in message.reply_markup["inline_keyboard"] for b in row if "callback_data" in b]


def labels(message: BotMessage) -> list[str]:
    assert message.reply_markup is not None
    return [b["text"] for row in message.reply_markup["inline_keyboard"] for b in row]


def showing(message: BotMessage | None, card: Card) -> bool:
    """The message shows `card`'s front with its Show answer button."""
    return (
        message is not None
        and message.reply_markup is not None
        and data(message)[:1] != []
        and data(message)[0].startswith(f"rv:a:{card.id}:{card.reps}:")
        and shown(front(card, SAY)) in message.plain
    )


def revealed(message: BotMessage, card: Card) -> bool:
    """The message shows `card`'s back with the four ratings."""
    ratings = [d.split(":")[:4] for d in data(message)] if message.reply_markup else []
    expected = [["rv", str(r), str(card.id), str(card.reps)] for r in (1, 2, 3, 4)]
    return ratings == expected and shown(back(card, SAY)) in message.plain


def rating(message: BotMessage, value: int) -> str:
    return next(d for d in data(message) if d.startswith(f"rv:{value}:"))


def press(telegram: FakeTelegram, user: int, chat: int, message: BotMessage, action: str) -> str:
    """A press of `action` under `message` by `user`; the query id."""
    return str(telegram.add_callback_query(user, chat, message.message_id, action)["callback_query"]["id"])


async def card_shown(telegram: FakeTelegram, chat: int, card: Card) -> BotMessage:
    await telegram.wait_for(lambda: showing(telegram.last_message(chat), card), WITHIN)
    message = telegram.last_message(chat)
    assert message is not None
    return message


async def review(telegram: FakeTelegram, user: int, card: Card) -> BotMessage:
    """`/review` in the user's private chat; the message showing `card`."""
    telegram.add_command(user, user, "review")
    return await card_shown(telegram, user, card)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll a check on the database until it holds, for up to `WITHIN` seconds."""
    for _attempt in range(int(WITHIN / POLL)):
        if await check():
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"not within {WITHIN} s")


# From a mistake to a card


@pytest.mark.usefixtures("bot")
async def test_a_mistake_the_tutor_corrects_comes_up_in_review_the_same_day(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    ollama.script('¡Vaya! ¿Dormiste bien?\n✏️ "soy" → "estaba" (ser/estar) — Un estado pasajero: estar.')
    telegram.add_private_message(USER, "Ayer yo soy cansado.")
    await telegram.wait_for(lambda: any("¿Dormiste bien?" in text for text in telegram.chat_texts(USER)), WITHIN)

    async def carded() -> bool:
        return bool(await tutor.store.cards_of(learner(USER)))

    await eventually(carded)
    (card,) = await tutor.store.cards_of(learner(USER))
    assert (card.kind, card.wrong, card.right, card.context) == (Kind.CORRECTION, "soy", "estaba", SOY[3])
    message = await review(telegram, USER, card)
    press(telegram, USER, USER, message, data(message)[0])
    await telegram.wait_for(lambda: revealed(message, card), WITHIN)


@pytest.mark.usefixtures("bot")
async def test_save_adds_a_word_to_review(telegram: FakeTelegram, tutor: Tutor) -> None:
    await lesson(tutor, DM)
    telegram.add_command(USER, USER, "save", "la cuenta")
    saved = said(_("Saved “{phrase}”: it comes up in /review.", phrase="la cuenta"))
    await telegram.wait_for(lambda: saved in telegram.chat_texts(USER), WITHIN)
    (card,) = await tutor.store.cards_of(learner(USER))
    assert (card.kind, card.right, card.language) == (Kind.WORD, "la cuenta", "es")


# The review flow in the private chat


@pytest.mark.usefixtures("bot")
async def test_a_review_shows_the_card_reveals_it_rates_it_and_ends_with_a_summary(
    telegram: FakeTelegram, tutor: Tutor
) -> None:
    await lesson(tutor, DM)
    first, second = await seed(tutor, USER, SOY, POR)
    card = await review(telegram, USER, first)
    assert "soy" in card.plain and "estaba" not in card.plain  # the mistake marked, the answer not given away

    press(telegram, USER, USER, card, data(card)[0])  # Show answer
    await telegram.wait_for(lambda: revealed(card, first), WITHIN)
    press(telegram, USER, USER, card, rating(card, 3))  # Good: the same message shows the next card
    await telegram.wait_for(lambda: showing(card, second), WITHIN)

    press(telegram, USER, USER, card, data(card)[0])
    await telegram.wait_for(lambda: revealed(card, second), WITHIN)
    press(telegram, USER, USER, card, rating(card, 1))  # Again
    summary = said(_n("You reviewed {n} card.", "You reviewed {n} cards.", 2))
    await telegram.wait_for(lambda: summary in card.plain and card.reply_markup is None, WITHIN)

    assert telegram.chat_texts(USER) == [card.plain]  # one message, edited in place
    rated = [await tutor.store.card(c.id) for c in (first, second)]
    assert [c.reps if c else None for c in rated] == [1, 1]
    assert rated[0] is not None and rated[1] is not None and rated[1].due < rated[0].due  # Again comes back sooner


@pytest.mark.usefixtures("bot")
async def test_a_typed_answer_gets_a_suggested_rating_and_the_buttons_stay(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    (card,) = await seed(tutor, USER, SOY)
    await review(telegram, USER, card)
    asked = len(ollama.chat_requests)
    telegram.add_private_message(USER, "Ayer yo estaba cansado.")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2, WITHIN)
    answer = telegram.last_message(USER)
    assert answer is not None and revealed(answer, card)
    assert answer.plain.startswith(said(_("✅ Right!")))
    good = labels(answer)[2]
    assert good.startswith("✓ ") and render(_("Good"), "en") in good  # the suggestion, marked
    assert not any(label.startswith("✓") for label in labels(answer)[:2] + labels(answer)[3:])
    assert len(ollama.chat_requests) == asked  # an answer to the card, not a message for the tutor

    press(telegram, USER, USER, answer, rating(answer, 4))  # the learner overrides the suggestion
    await telegram.wait_for(lambda: answer.reply_markup is None, WITHIN)
    rated = await tutor.store.card(card.id)
    assert rated is not None and rated.reps == 1


@pytest.mark.usefixtures("bot")
async def test_another_student_pressing_a_cards_button_is_refused_and_nothing_changes(
    telegram: FakeTelegram, tutor: Tutor
) -> None:
    (card,) = await seed(tutor, USER, SOY)
    message = await review(telegram, USER, card)
    before = message.plain
    query = press(telegram, STUDENT, USER, message, data(message)[0])
    await telegram.wait_for(lambda: query in telegram.callback_answers, WITHIN)
    answer = telegram.callback_answers[query]
    assert answer.get("show_alert") is True and answer["text"] == said(NOT_YOURS)
    assert message.plain == before and message.history == [] and data(message)[0].startswith("rv:a:")


@pytest.mark.usefixtures("bot")
async def test_a_rating_pressed_twice_counts_once(telegram: FakeTelegram, tutor: Tutor) -> None:
    first, second = await seed(tutor, USER, SOY, POR)
    message = await review(telegram, USER, first)
    press(telegram, USER, USER, message, data(message)[0])
    await telegram.wait_for(lambda: revealed(message, first), WITHIN)
    good = rating(message, 3)
    press(telegram, USER, USER, message, good)
    await telegram.wait_for(lambda: showing(message, second), WITHIN)
    shown_now, edits = message.plain, len(message.history)

    again = press(telegram, USER, USER, message, good)  # the old button, pressed again (a double tap)
    await telegram.wait_for(lambda: again in telegram.callback_answers, WITHIN)
    assert telegram.callback_answers[again]["text"] == said(ALREADY)
    assert (message.plain, len(message.history)) == (shown_now, edits)
    assert await tutor.store.reviewed(learner(USER), 0) == 1
    rated = await tutor.store.card(first.id)
    assert rated is not None and rated.reps == 1


async def test_a_cards_buttons_still_work_after_a_restart(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram
) -> None:
    async with running(tutor, settings, telegram):
        (card,) = await seed(tutor, USER, SOY)
        message = await review(telegram, USER, card)
    await tutor.close()
    again = await Tutor.open(settings)  # a new process: a new Application on the same database
    try:
        async with running(again, settings, telegram):
            press(telegram, USER, USER, message, data(message)[0])
            await telegram.wait_for(lambda: revealed(message, card), WITHIN)
            press(telegram, USER, USER, message, rating(message, 3))
            await telegram.wait_for(lambda: message.reply_markup is None, WITHIN)
        rated = await again.store.card(card.id)
    finally:
        await again.close()
    assert rated is not None and rated.reps == 1


# A group: the review happens in the private chat


@pytest.mark.usefixtures("bot")
async def test_review_in_a_group_links_the_private_chat_which_shows_the_card(
    telegram: FakeTelegram, tutor: Tutor
) -> None:
    await lesson(tutor, CLASS)
    (card,) = await seed(tutor, STUDENT, SOY)
    telegram.add_command(GROUP, STUDENT, "review", at_bot=True)
    await telegram.wait_for(lambda: telegram.last_message(GROUP) is not None, WITHIN)
    link = telegram.last_message(GROUP)
    assert link is not None and link.reply_markup is not None
    (button,) = [b for row in link.reply_markup["inline_keyboard"] for b in row]
    assert button["url"].startswith(f"https://t.me/{telegram.bot_username}?start=")
    payload = button["url"].partition("?start=")[2]
    assert base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode() == "review:es"
    assert "soy" not in link.plain and "cansado" not in link.plain  # the card stays out of the group

    telegram.add_command(STUDENT, STUDENT, "start", payload)  # the link opens the private chat
    message = await card_shown(telegram, STUDENT, card)
    press(telegram, STUDENT, STUDENT, message, data(message)[0])
    await telegram.wait_for(lambda: revealed(message, card), WITHIN)
    assert len(telegram.chat_texts(GROUP)) == 1


# Progress


async def progress_seeded(tutor: Tutor, user: int, channel: Channel) -> None:
    await lesson(tutor, channel)
    await seed(tutor, user, SOY)
    for _message in range(3):
        await tutor.store.practised(learner(user), "es", channel.id, time.time() - 3600, True)


def photos(telegram: FakeTelegram, chat: int) -> list[BotMessage]:
    return [m for m in telegram.messages.get(chat, {}).values() if m.photo is not None]


@pytest.mark.usefixtures("bot")
async def test_progress_sends_its_figures_then_the_chart_as_a_photo(telegram: FakeTelegram, tutor: Tutor) -> None:
    await progress_seeded(tutor, USER, DM)
    telegram.add_command(USER, USER, "progress")
    await telegram.wait_for(lambda: bool(photos(telegram, USER)), WITHIN)
    note, chart = sorted(telegram.messages[USER].values(), key=lambda m: m.message_id)
    assert note.photo is None and note.plain  # the figures, as text
    assert chart.content is not None and chart.content.startswith(PNG)
    assert chart.plain == said(_("Your weeks in a chart"))
    assert chart.photo is not None and (chart.photo[-1]["width"], chart.photo[-1]["height"]) == image_size(
        chart.content
    )
    assert telegram.calls_to("sendDocument") == []


@pytest.mark.usefixtures("bot")
async def test_progress_in_a_group_goes_to_the_private_chat(telegram: FakeTelegram, tutor: Tutor) -> None:
    await progress_seeded(tutor, USER, CLASS)
    telegram.add_command(USER, USER, "start")  # the learner has opened the private chat
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 1, WITHIN)
    telegram.add_command(GROUP, USER, "progress", at_bot=True)
    await telegram.wait_for(lambda: bool(photos(telegram, USER)), WITHIN)
    assert len(telegram.chat_texts(USER)) == 3  # the welcome, the figures, the chart
    assert telegram.messages.get(GROUP, {}) == {}


@pytest.mark.usefixtures("bot")
async def test_a_chart_telegram_refuses_as_a_photo_arrives_as_a_document(telegram: FakeTelegram, tutor: Tutor) -> None:
    await progress_seeded(tutor, USER, DM)
    telegram.fail_next("sendPhoto", description=PHOTO_DIMENSIONS)
    telegram.add_command(USER, USER, "progress")
    await telegram.wait_for(lambda: any(m.document for m in telegram.messages.get(USER, {}).values()), WITHIN)
    document = next(m for m in telegram.messages[USER].values() if m.document)
    assert document.document is not None and document.document["file_name"] == "polyglott-progress.png"
    assert document.content is not None and document.content.startswith(PNG)


# Reminders


REMINDERS_ON = _("I'll write once a day when cards are due, at the hour you usually practise.")


@pytest.fixture
async def reminding(tutor: Tutor, settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    """The bot with core's reminder pass every 50 ms instead of every 10 minutes."""
    async with running(tutor, settings, telegram, remind_every=0.05):
        yield


async def reminders_on(telegram: FakeTelegram, tutor: Tutor) -> None:
    telegram.add_command(USER, USER, "remind", "on")
    await telegram.wait_for(lambda: said(REMINDERS_ON) in telegram.chat_texts(USER), WITHIN)
    assert await tutor.store.reminder(learner(USER)) == DM.id


@pytest.mark.usefixtures("reminding")
async def test_a_learner_with_reminders_on_is_reminded_of_due_cards_and_the_button_starts_the_review(
    telegram: FakeTelegram, tutor: Tutor
) -> None:
    await reminders_on(telegram, tutor)
    (card,) = await seed(tutor, USER, SOY)
    waiting = said(_n("📚 {n} card is waiting for you.", "📚 {n} cards are waiting for you.", 1))
    await telegram.wait_for(lambda: waiting in telegram.chat_texts(USER), WITHIN)
    reminder = telegram.last_message(USER)
    assert reminder is not None and data(reminder) == ["review"]
    press(telegram, USER, USER, reminder, "review")
    await card_shown(telegram, USER, card)


@pytest.mark.usefixtures("reminding")
async def test_a_learner_who_blocked_the_bot_is_switched_off_reminders(telegram: FakeTelegram, tutor: Tutor) -> None:
    await reminders_on(telegram, tutor)
    telegram.blocked_chats.add(USER)
    await seed(tutor, USER, SOY)

    async def off() -> bool:
        return await tutor.store.reminder(learner(USER)) is None

    await eventually(off)
    refused = [c for c in telegram.calls_to("sendMessage") if c.status == 403]
    assert refused and all("blocked" in str(c.description) for c in refused)
    assert len(telegram.chat_texts(USER)) == 1  # the confirmation only


# The fake's sendPhoto, as the Bot API answers it


async def test_the_fake_takes_a_png_as_a_photo_in_sizes_and_refuses_what_is_no_image(telegram: FakeTelegram) -> None:
    png = PNG + (13).to_bytes(4, "big") + b"IHDR" + (1200).to_bytes(4, "big") + (600).to_bytes(4, "big") + b"\0" * 20
    telegram.started.add(USER)
    async with telegram.make_bot() as bot:
        sent = await bot.send_photo(USER, png, caption="chart")
        assert [(p.width, p.height) for p in sent.photo] == [(90, 45), (320, 160), (800, 400), (1200, 600)]
        assert sent.caption == "chart"
        with pytest.raises(BadRequest):
            await bot.send_photo(USER, b"not an image")
        with pytest.raises(BadRequest):
            await bot.send_photo(USER, png, caption="x" * 1025)
    refused = [c.description for c in telegram.calls_to("sendPhoto") if not c.ok]
    assert refused == [IMAGE_FAILED, CAPTION_TOO_LONG]
