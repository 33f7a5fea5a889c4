"""The learning loop in core: a correction in a reply becomes a card, `/review` shows it, buttons or a typed
answer rate it on FSRS's schedule, the deck outlives restarts and resets. Outcomes are recorded by
`tests.recording.Recorder`; time is a controllable clock."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from core.conversation import Conversation, Origin
from core.deck import Card, Kind, Rating, review
from core.i18n import Voice, render
from core.outcome import Blocked, Note
from core.review import ALREADY, NOT_YOURS
from core.settings import Settings
from core.tutor import Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama
from tests.recording import Recorder

DM = Channel("test:dm:ana")
CLASS = Channel("test:class:1", group=True)
ANA = Learner("test:user:ana", "Ana")
BEN = Learner("test:user:ben", "Ben")
EN = Voice("en")
MISTAKE = "Ayer yo soy muy cansado."
CORRECTED = '¡Qué pena! ¿Dormiste poco?\n✏️ "soy" → "estaba" (ser/estar) — For a temporary state, use estar.'
DAY = 86_400.0


@dataclass
class Clock:
    """Real time (the tutor stores cards at `time.time()`), moved ahead by the test."""

    ahead: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def conversation(tutor: Tutor, clock: Clock) -> Conversation:
    return Conversation(tutor, clock)


def person(channel: Channel = DM, learner: Learner = ANA, *, teacher: bool = True) -> Origin:
    async def may_teach() -> bool:
        return teacher

    return Origin(channel, learner, "test", None, may_teach)


async def run(conversation: Conversation, origin: Origin, line: str, surface: Recorder | None = None) -> Recorder:
    surface = surface or Recorder()
    name, *args = line.removeprefix("/").split()
    await conversation.command(origin, name, args, surface)
    return surface


async def press(conversation: Conversation, origin: Origin, action: str, surface: Recorder | None = None) -> Note:
    surface = surface or Recorder()
    await conversation.press(origin, action, surface)
    return surface.notes[-1]


async def write(conversation: Conversation, origin: Origin, text: str) -> Recorder:
    surface = Recorder()
    await conversation.message(origin, text, surface)
    return surface


def actions(note: Note) -> list[str]:
    return [button.action for row in note.buttons for button in row]


def labels(note: Note) -> list[str]:
    return [button.label for row in note.buttons for button in row]


async def a_mistake_corrected(conversation: Conversation, ollama: FakeOllama, channel: Channel = DM) -> None:
    """Ana learns Spanish and makes one genuine mistake, which the tutor corrects."""
    ollama.script("¡Hola!", CORRECTED)
    await run(conversation, person(channel), "/learn spanish")
    await write(conversation, person(channel), MISTAKE)


async def first_card(conversation: Conversation, origin: Origin | None = None) -> Note:
    shown = await run(conversation, origin or person(), "/review")
    return shown.notes[-1]


# From a correction to a card


async def test_a_corrected_mistake_is_a_card_in_review_that_day(conversation: Conversation, ollama: FakeOllama) -> None:
    await a_mistake_corrected(conversation, ollama)
    card = await first_card(conversation)
    assert "Ayer yo **soy** muy cansado." in card.text
    assert len(actions(card)) == 1 and actions(card)[0].startswith("rv:a:")


async def test_an_invented_correction_never_reaches_the_deck(conversation: Conversation, ollama: FakeOllama) -> None:
    ollama.script("¡Hola!", '¡Bien!\n✏️ "tengo" → "tuve" (verb tense) — Past.')
    await run(conversation, person(), "/learn spanish")
    shown = await write(conversation, person(), MISTAKE)
    assert "tengo" not in shown.last.text
    card = await first_card(conversation)
    assert card.buttons == ()
    assert "no cards yet" in card.text


async def test_show_answer_reveals_the_fix_and_four_ratings(conversation: Conversation, ollama: FakeOllama) -> None:
    await a_mistake_corrected(conversation, ollama)
    card = await first_card(conversation)
    back = await press(conversation, person(), actions(card)[0])
    assert "Ayer yo **estaba** muy cansado." in back.text
    assert "For a temporary state, use estar." in back.text
    assert [label.split(" · ")[0] for label in labels(back)] == ["Again", "Hard", "Good", "Easy"]
    assert back.replaces


async def test_a_rating_brings_the_next_card_or_the_summary(conversation: Conversation, ollama: FakeOllama) -> None:
    await a_mistake_corrected(conversation, ollama)
    card = await first_card(conversation)
    back = await press(conversation, person(), actions(card)[0])
    summary = await press(conversation, person(), actions(back)[2])  # Good
    assert "You reviewed 1 card." in summary.text
    assert "Nothing else is due; the next card comes back in 10 min" in summary.text
    assert summary.buttons == ()


async def test_a_second_press_of_the_same_rating_changes_nothing(
    conversation: Conversation, ollama: FakeOllama, tutor: Tutor, clock: Clock
) -> None:
    await a_mistake_corrected(conversation, ollama)
    back = await press(conversation, person(), actions(await first_card(conversation))[0])
    await press(conversation, person(), actions(back)[0])  # Again
    again = await press(conversation, person(), actions(back)[0])
    assert again.text == render(ALREADY, "en")
    assert await tutor.store.reviewed(ANA.id, 0) == 1


async def test_another_student_cannot_press_a_card(conversation: Conversation, ollama: FakeOllama) -> None:
    await a_mistake_corrected(conversation, ollama)
    card = await first_card(conversation)
    refused = await press(conversation, person(learner=BEN), actions(card)[0])
    assert refused.text == render(NOT_YOURS, "en")
    assert refused.private


async def test_again_brings_a_card_back_sooner_than_good() -> None:
    now = time.time()
    card = Card(1, ANA.id, "es", Kind.CORRECTION, "estaba", "soy", due=now)
    assert review(card, Rating.AGAIN, now).due < review(card, Rating.GOOD, now).due < review(card, Rating.EASY, now).due


async def test_a_card_comes_back_on_its_schedule(conversation: Conversation, ollama: FakeOllama, clock: Clock) -> None:
    await a_mistake_corrected(conversation, ollama)
    back = await press(conversation, person(), actions(await first_card(conversation))[0])
    await press(conversation, person(), actions(back)[3])  # Easy: days away
    assert "Nothing to review right now" in (await first_card(conversation)).text
    clock.ahead += 30 * DAY
    assert (await first_card(conversation)).buttons != ()


# Typed answers


async def test_a_typed_right_answer_suggests_good_and_keeps_the_buttons(
    conversation: Conversation, ollama: FakeOllama, tutor: Tutor
) -> None:
    await a_mistake_corrected(conversation, ollama)
    await first_card(conversation)
    asked = len(ollama.chat_requests)
    shown = await write(conversation, person(), "ayer yo estaba muy cansado")
    verdict = shown.notes[-1]
    assert verdict.text.startswith("✅ Right!")
    assert next(label for label in labels(verdict) if label.startswith("✓ ")).startswith("✓ Good")
    assert len(ollama.chat_requests) == asked  # an answer, not a turn of the conversation
    assert all(MISTAKE not in m.text or m.role == "user" for m in await tutor.store.history(DM.id))


async def test_a_typed_wrong_answer_suggests_again(conversation: Conversation, ollama: FakeOllama) -> None:
    await a_mistake_corrected(conversation, ollama)
    await first_card(conversation)
    verdict = (await write(conversation, person(), "fui")).notes[-1]
    assert verdict.text.startswith("Not quite.")
    assert next(label for label in labels(verdict) if label.startswith("✓ ")).startswith("✓ Again")


async def test_accents_alone_make_an_answer_hard_unless_the_operator_ignores_them(
    settings: Settings, tmp_path: object
) -> None:
    from core.review import judge

    card = Card(1, ANA.id, "es", Kind.CORRECTION, "está", "es", context="Mi casa es lejos.")
    assert judge("mi casa esta lejos", card)[0] is Rating.HARD
    assert judge("mi casa esta lejos", card, ignore_accents=True)[0] is Rating.GOOD
    assert judge("Mi casa está lejos", card)[0] is Rating.GOOD


async def test_after_the_answer_the_chat_is_a_conversation_again(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await a_mistake_corrected(conversation, ollama)
    await first_card(conversation)
    await write(conversation, person(), "estaba")
    ollama.script("¡Muy bien!")
    assert (await write(conversation, person(), "Hoy estoy bien.")).last.text == "¡Muy bien!"


# Groups


async def test_in_a_group_without_private_replies_the_review_is_a_link_to_the_private_chat(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await a_mistake_corrected(conversation, ollama, CLASS)
    shown = await run(conversation, person(CLASS), "/review", Recorder(private_here=False))
    link = shown.notes[-1]
    assert [b.opens for row in link.buttons for b in row] == ["review:es"]
    assert "**soy**" not in link.text
    opened = Recorder()
    await conversation.follow(person(), "review:es", opened)
    assert "Ayer yo **soy** muy cansado." in opened.notes[-1].text


async def test_in_a_group_with_ephemeral_replies_the_review_happens_in_place(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await a_mistake_corrected(conversation, ollama, CLASS)
    card = (await run(conversation, person(CLASS), "/review")).notes[-1]
    assert card.private and "**soy**" in card.text
    back = await press(conversation, person(CLASS), actions(card)[0])
    assert back.private and back.replaces


# The deck is the learner's


async def test_the_deck_survives_a_restart(settings: Settings, ollama: FakeOllama, clock: Clock) -> None:
    tutor = await Tutor.open(settings)
    await a_mistake_corrected(Conversation(tutor, clock), ollama)
    card = await first_card(Conversation(tutor, clock))
    await tutor.close()
    again = await Tutor.open(settings)
    try:
        back = await press(Conversation(again, clock), person(), actions(card)[0])
        assert "**estaba**" in back.text
    finally:
        await again.close()


async def test_reset_forgets_the_conversation_but_keeps_the_deck_and_says_so(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await a_mistake_corrected(conversation, ollama)
    said = await run(conversation, person(), "/reset")
    assert "cards and progress stay" in said.notes[-1].text
    assert (await first_card(conversation)).buttons != ()


async def test_status_says_how_many_cards_are_due(conversation: Conversation, ollama: FakeOllama) -> None:
    await a_mistake_corrected(conversation, ollama)
    assert "1 card is due for /review." in (await run(conversation, person(), "/status")).notes[-1].text


# Recurring errors


async def test_a_third_error_of_a_kind_in_a_week_asks_the_learner_to_correct_themselves(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    ollama.script("¡Hola!")
    await run(conversation, person(), "/learn spanish")
    for sentence in ("Yo soy cansado.", "Ella es enferma.", "Tú eres triste."):
        wrong = sentence.split()[1]
        ollama.script(f'Vale.\n✏️ "{wrong}" → "está" (ser/estar) — State: estar.')
        await write(conversation, person(), sentence)
    ollama.script("¿Y hoy?")
    await write(conversation, person(), "Hoy soy bien.")
    last_turn = ollama.chat_requests[-1]["messages"][-1]["content"]
    earlier_turn = ollama.chat_requests[-1]["messages"][-3]["content"]
    assert "ser/estar" in last_turn and "themselves" in last_turn
    assert "ser/estar" not in earlier_turn


# /save


async def test_a_saved_word_gets_its_meaning_from_the_tutor_and_comes_up_in_review(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    ollama.script("¡Hola!", "the bill\nLa cuenta, por favor.")
    await run(conversation, person(), "/learn spanish")
    saved = await run(conversation, person(), "/save la cuenta")
    assert "Saved “la cuenta”" in saved.notes[-1].text
    await conversation.finish(5)  # the meaning is asked for in the background
    conversation.closing = False
    card = await first_card(conversation)
    assert card.text.startswith("📘 the bill")
    again = await run(conversation, person(), "/save La cuenta")
    assert "already" in again.notes[-1].text


# Reminders


async def test_reminders_are_for_private_chats_only(conversation: Conversation) -> None:
    said = await run(conversation, person(CLASS), "/remind on")
    assert "private chat" in said.notes[-1].text
    assert await conversation.store.reminder(ANA.id) is None


@pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL: the usual hour is worked out in SQL
async def test_a_reminder_comes_once_a_day_at_the_usual_hour_when_cards_are_due(
    conversation: Conversation, ollama: FakeOllama, clock: Clock
) -> None:
    await a_mistake_corrected(conversation, ollama)
    await run(conversation, person(), "/remind on")
    chats: dict[str, Recorder] = {}

    async def revive(channel: str, quoted: str | None) -> Recorder:
        return chats.setdefault(channel, Recorder())

    clock.ahead += 3600  # another hour than the one Ana practises in
    assert await conversation.remind("test", revive) == 0
    clock.ahead += DAY - 3600  # the next day, her usual hour
    assert await conversation.remind("test", revive) == 1
    assert await conversation.remind("test", revive) == 0  # not twice a day
    assert "1 card is waiting for you." in chats[DM.id].notes[-1].text
    assert [b.action for row in chats[DM.id].notes[-1].buttons for b in row] == ["review"]


async def test_a_learner_who_blocked_the_bot_is_not_reminded_again(
    conversation: Conversation, ollama: FakeOllama, clock: Clock
) -> None:
    await a_mistake_corrected(conversation, ollama)
    await run(conversation, person(), "/remind on")

    class BlockedChat(Recorder):
        async def note(self, note: Note) -> None:
            raise Blocked()

    async def revive(channel: str, quoted: str | None) -> Recorder:
        return BlockedChat()

    clock.ahead += DAY
    assert await conversation.remind("test", revive) == 0
    assert await conversation.store.reminder(ANA.id) is None
