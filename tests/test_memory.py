"""Memory: a fact the learner shared, marked by the model (`[remember: …]`), is kept for them (a dozen at most),
shown and deletable in `/memory`, and brought back in the next opener; never in minors mode, never from a group
message the tutor only overheard, and gone with `/forget`. Through the conversation with the fake Ollama."""

from __future__ import annotations

import pytest

from core.conversation import Conversation, Origin
from core.i18n import Voice, _, _n
from core.settings import Settings
from core.store import MAX_FACTS, Store
from core.tutor import Tutor
from tests.fake_ollama import FakeOllama
from tests.test_conversation import ANA, BEN, CLASS, DM, actions, command, person, press, student, write

pytestmark = pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL (tests/conftest.py)

EN = Voice("en")
KNOWN = "What you know about the learner:"


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


async def remembered(store: Store, learner: str = ANA.id) -> list[str]:
    return [fact.fact for fact in await store.facts(learner)]


async def told(conversation: Conversation, ollama: FakeOllama, *facts: str) -> None:
    """A private Spanish lesson in which Ana shares `facts`, one a message, each marked by the model."""
    ollama.script("¡Hola! ¿Qué te gusta hacer?")
    await command(conversation, person(), "/learn spanish")
    for n, fact in enumerate(facts):
        ollama.script(f"¡Qué interesante! ¿Y qué más? ({n})\n[remember: {fact}]")
        await write(conversation, person(), f"Te cuento algo de mí ({n})")


def opener_turn(ollama: FakeOllama) -> str:
    return str(ollama.chat_requests[-1]["messages"][-1]["content"])


async def test_a_fact_marked_in_a_private_reply_is_kept_for_the_learner(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await told(conversation, ollama, "plays the guitar")
    assert await remembered(conversation.store) == ["plays the guitar"]


async def test_memory_lists_the_facts_with_a_delete_button_each(conversation: Conversation, ollama: FakeOllama) -> None:
    await told(conversation, ollama, "plays the guitar", "lives in Lima")
    [note] = (await command(conversation, person(), "/memory")).notes
    assert "1. plays the guitar\n2. lives in Lima" in note.text
    assert note.text.startswith(EN(_("What I remember about you:"))) and note.private
    facts = await conversation.store.facts(ANA.id)
    assert actions(note.buttons) == [f"memory:{fact.id}" for fact in facts]
    assert [b.label for row in note.buttons for b in row] == ["🗑 1", "🗑 2"]


async def test_memory_with_nothing_remembered_says_so(conversation: Conversation) -> None:
    [note] = (await command(conversation, person(), "/memory")).notes
    nothing = _(
        "I remember nothing about you. If you tell me about yourself (your interests, why you are learning), "
        "I keep a few facts for our next chats, and you can delete them here."
    )
    assert (note.text, note.buttons, note.private) == (EN(nothing), (), True)


async def test_the_next_lesson_opener_is_told_the_learners_facts(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await told(conversation, ollama, "plays the guitar", "lives in Lima")
    await command(conversation, person(), "/learn spanish")
    assert f"{KNOWN} plays the guitar; lives in Lima." in opener_turn(ollama)


async def test_a_private_scene_opener_is_told_the_learners_facts(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await told(conversation, ollama, "plays the guitar")
    await command(conversation, person(), "/roleplay cafe-order")
    assert f"{KNOWN} plays the guitar." in opener_turn(ollama)


async def test_a_fact_deleted_with_its_button_is_gone_from_the_next_opener(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await told(conversation, ollama, "plays the guitar", "lives in Lima")
    [note] = (await command(conversation, person(), "/memory")).notes
    shown = await press(conversation, person(), actions(note.buttons)[0])
    assert shown.notes[0].replaces and "1. lives in Lima" in shown.notes[0].text
    await command(conversation, person(), "/learn spanish")
    assert "guitar" not in opener_turn(ollama) and f"{KNOWN} lives in Lima." in opener_turn(ollama)


async def test_another_learners_delete_button_deletes_nothing(conversation: Conversation, ollama: FakeOllama) -> None:
    await told(conversation, ollama, "plays the guitar")
    [fact] = await conversation.store.facts(ANA.id)
    await press(conversation, person(learner=BEN), f"memory:{fact.id}")
    assert await remembered(conversation.store) == ["plays the guitar"]


async def test_at_most_twelve_facts_are_kept_the_newest(conversation: Conversation, ollama: FakeOllama) -> None:
    facts = [f"likes topic number {n}" for n in range(MAX_FACTS + 1)]
    await told(conversation, ollama, *facts)
    assert MAX_FACTS == 12
    assert await remembered(conversation.store) == facts[1:]


async def test_a_fact_told_again_is_kept_once_in_its_newest_words(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await told(conversation, ollama, "plays the guitar", "Plays the guitar")
    assert await remembered(conversation.store) == ["Plays the guitar"]


async def test_minors_mode_keeps_no_fact(settings: Settings, ollama: FakeOllama) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"minors": True}))
    try:
        conversation = Conversation(tutor)
        await told(conversation, ollama, "plays the guitar")
        assert await remembered(tutor.store) == []
        [note] = (await command(conversation, person(), "/memory")).notes
        assert note.text == EN(_("Here I remember nothing about anyone: this tutor is set up for minors."))
    finally:
        await tutor.close()


async def test_a_group_students_fact_said_to_the_tutor_is_kept_as_theirs(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    ollama.script("¡Hola, clase!")
    await command(conversation, person(CLASS), "/learn spanish")
    ollama.script("¡Genial, Ben!\n[remember: Ben: plays football]")
    await write(conversation, student(), "Juego al fútbol")
    assert await remembered(conversation.store, BEN.id) == ["plays football"]


async def test_a_group_message_the_tutor_only_overheard_leaves_no_fact(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    ollama.script("¡Hola, clase!")
    await command(conversation, person(CLASS), "/learn spanish")
    await command(conversation, person(CLASS), "/classroom on")
    ollama.script("¡Genial, Ben!\n[remember: Ben: plays football]")
    overheard = Origin(CLASS, BEN, "telegram", direct=False)
    shown = await write(conversation, overheard, "Juego al fútbol")
    assert shown.last.text == "¡Genial, Ben!"
    assert await remembered(conversation.store, BEN.id) == []


async def test_a_group_lesson_opener_is_told_no_facts(conversation: Conversation, ollama: FakeOllama) -> None:
    await told(conversation, ollama, "plays the guitar")
    await command(conversation, person(CLASS), "/learn spanish")
    assert KNOWN not in opener_turn(ollama)


async def test_forget_deletes_the_learners_facts_and_their_private_stage(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await told(conversation, ollama, "plays the guitar")
    await command(conversation, person(), "/roleplay cafe-order")
    db = conversation.store._db
    count = "SELECT (SELECT COUNT(*) FROM facts WHERE learner = ?), (SELECT COUNT(*) FROM stages WHERE channel = ?)"
    assert tuple(await db.fetchone(count, (ANA.id, DM.id)) or ()) == (1, 1)
    await press(conversation, person(), "forget:yes")
    assert tuple(await db.fetchone(count, (ANA.id, DM.id)) or ()) == (0, 0)


async def test_a_fact_told_again_is_among_the_newest_kept(conversation: Conversation, ollama: FakeOllama) -> None:
    facts = [f"likes topic number {n}" for n in range(MAX_FACTS)]
    await told(conversation, ollama, *facts, facts[0], "plays the guitar")
    assert facts[0] in await remembered(conversation.store)  # refreshed: the oldest now is topic number 1


async def test_a_group_fact_named_for_another_student_is_kept_for_nobody(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    ollama.script("¡Hola, clase!")
    await command(conversation, person(CLASS), "/learn spanish")
    ollama.script("¡Qué bien, Ben!\n[remember: Ana: plays football]")
    await write(conversation, student(), "Ana juega al fútbol conmigo")
    assert (await remembered(conversation.store, BEN.id), await remembered(conversation.store, ANA.id)) == ([], [])


async def test_mydata_says_how_many_facts_are_remembered_and_where_to_see_them(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await told(conversation, ollama, "plays the guitar", "lives in Lyon")
    shown = await command(conversation, person(), "/mydata")
    said = _n(
        "I also remember {n} fact you told me: /memory shows it.",
        "I also remember {n} facts you told me: /memory shows them.",
        2,
    )
    assert EN(said) in shown.notes[-1].text
