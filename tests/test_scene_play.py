"""Role-play scenes through the conversation: `/roleplay` starts one with an opener in character, each turn keeps
the scene's own system prompt, corrections wait for the end, and `[goal]`, the turn limit or `/endscene` closes
it with a closer whose phrases become cards. The fake Ollama plays the model; expected words are core's own."""

from __future__ import annotations

from typing import Any

import pytest

from core.conversation import Conversation
from core.corrections import Correction, correction_line
from core.deck import Kind
from core.i18n import Voice, _, _n
from core.lesson import Level
from core.moderation import NEUTRAL_REPLY
from core.prompts import CORRECTION_MARK, scene_opening
from core.scenes import Scene, for_level
from core.tutor import Tutor
from tests.fake_ollama import FakeOllama
from tests.recording import Recorder
from tests.test_conversation import ANA, BEN, CLASS, DM, actions, command, person, press, student, write

pytestmark = pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL (tests/conftest.py)

EN = Voice("en")
OPENER = "Buenos días, bienvenida al café. ¿Qué le pongo?"
IN_A_SCENE = "You are playing a role in a Spanish role-play with "
CLOSER = "You are a warm Spanish tutor, out of character now."
PHRASES = (
    "¡Lo has hecho muy bien!\n📘 Quisiera un café — I would like a coffee\n📘 La cuenta, por favor — The bill, please"
)


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


@pytest.fixture
def cafe(tutor: Tutor) -> Scene:
    return tutor.scenes["cafe-order"]


async def in_a_scene(conversation: Conversation, ollama: FakeOllama, channel: Any = DM) -> Recorder:
    """A Spanish lesson at A2 and the café scene started in it by Ana."""
    ollama.script("¡Hola! ¿De qué hablamos hoy?")
    await command(conversation, person(channel), "/learn spanish")
    ollama.script(OPENER)
    return await command(conversation, person(channel), "/roleplay cafe-order")


def system(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def correction(wrong: str, fix: str, category: str, context: str) -> Correction:
    return Correction(wrong, fix, category, "así se dice.", ANA.id, context)


def line(c: Correction) -> str:
    """A correction as the model writes it."""
    return f'{CORRECTION_MARK} "{c.wrong}" → "{c.fix}" ({c.category}) — {c.explanation}'


async def test_roleplay_shows_the_scene_and_its_goal_then_the_opener_in_character(
    conversation: Conversation, ollama: FakeOllama, cafe: Scene
) -> None:
    shown = await in_a_scene(conversation, ollama)
    assert shown.notes[0].text.startswith(f"🎭 *{cafe.title('en')}*\n🎯 {cafe.goal_for('en')}\n")
    assert shown.last.text == OPENER


async def test_the_opener_is_asked_with_the_scenes_own_system_prompt(
    conversation: Conversation, ollama: FakeOllama, cafe: Scene
) -> None:
    await in_a_scene(conversation, ollama)
    prompt = system(ollama.chat_requests[-1])
    assert prompt.startswith(f"{IN_A_SCENE}a learner called Ana.")
    assert cafe.role in prompt and cafe.setting in prompt and cafe.goal in prompt


async def test_the_opener_is_asked_with_the_scenes_opening_turn(
    conversation: Conversation, ollama: FakeOllama, cafe: Scene
) -> None:
    await in_a_scene(conversation, ollama)
    lesson = await conversation.tutor.lesson(DM)
    assert lesson is not None
    assert ollama.chat_requests[-1]["messages"][1:] == [{"role": "user", "content": scene_opening(cafe, lesson)}]


async def test_the_opener_is_stored_as_the_first_message_of_the_scene(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama)
    last = (await conversation.store.history(DM.id))[-1]
    stage = await conversation.store.stage(DM.id)
    assert (last.role, last.text) == ("assistant", OPENER)
    assert stage is not None and (stage.kind, stage.scene, stage.since) == ("scene", "cafe-order", last.id)


async def test_a_scene_turn_keeps_the_openers_system_prompt_and_sees_the_opener(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama)
    opener = ollama.chat_requests[-1]
    ollama.script("Muy bien. ¿Con leche?")
    await write(conversation, person(), "Un café, por favor")
    turn = ollama.chat_requests[-1]["messages"]
    assert turn[0] == opener["messages"][0]
    assert turn[1] == {"role": "assistant", "content": OPENER}
    assert turn[2]["role"] == "user" and turn[2]["content"].startswith("Un café, por favor\n\n(Stay in character")


async def test_each_scene_turn_begins_with_the_previous_turns_prompt(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama)
    ollama.script("Muy bien. ¿Con leche?", "Aquí tiene.")
    await write(conversation, person(), "Un café, por favor")
    await write(conversation, person(), "Sí, con leche")
    first, second = (request["messages"] for request in ollama.chat_requests[-2:])
    assert second[: len(first)] == first  # Ollama re-reads only the new turn


async def test_a_scene_turn_leaves_out_the_lesson_before_the_scene(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama)
    ollama.script("Muy bien.")
    await write(conversation, person(), "Un café, por favor")
    assert all("¿De qué hablamos hoy?" not in m["content"] for m in ollama.chat_requests[-1]["messages"])


async def test_the_goal_marker_ends_the_scene_with_the_closer_and_goal_reached(
    conversation: Conversation, ollama: FakeOllama, cafe: Scene
) -> None:
    await in_a_scene(conversation, ollama)
    ollama.script("Son tres euros. ¡Gracias y hasta pronto! [goal]", PHRASES)
    shown = await write(conversation, person(), "La cuenta, por favor. Pago con tarjeta.")
    assert shown.messages[1].text == "Son tres euros. ¡Gracias y hasta pronto!"
    assert system(ollama.chat_requests[-1]).startswith(CLOSER)
    assert shown.last.text == PHRASES
    assert shown.notes[-1].text.startswith("🎯 " + EN(_("Goal reached: {goal}", goal=cafe.goal_for("en"))))
    assert await conversation.store.stage(DM.id) is None


async def test_the_closer_reads_the_scene(conversation: Conversation, ollama: FakeOllama) -> None:
    await in_a_scene(conversation, ollama)
    ollama.script("¡Gracias! [goal]", PHRASES)
    await write(conversation, person(), "La cuenta, por favor")
    transcript = ollama.chat_requests[-1]["messages"][-1]["content"]
    assert transcript == f"The scene:\nTutor: {OPENER}\nAna: La cuenta, por favor\nTutor: ¡Gracias!"


async def test_the_closers_phrase_lines_become_cards_and_the_summary_counts_them(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama)
    ollama.script("¡Gracias! [goal]", PHRASES)
    shown = await write(conversation, person(), "La cuenta, por favor")
    cards = [(c.kind, c.right, c.meaning, c.context) for c in await conversation.store.cards_of(ANA.id)]
    assert cards == [
        (Kind.WORD, "Quisiera un café", "I would like a coffee", "cafe-order"),
        (Kind.WORD, "La cuenta, por favor", "The bill, please", "cafe-order"),
    ]
    counted = _n("{n} phrase is now a card for /review.", "{n} phrases are now cards for /review.", 2)
    assert shown.notes[-1].text.endswith("\n\n" + EN(counted))


async def test_a_group_scenes_phrases_become_cards_of_every_player(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama, CLASS)
    ollama.script("¿Y usted, Ben?", "¡Gracias a los dos! [goal]", PHRASES)
    await write(conversation, student(CLASS, ANA), "Un café, por favor")
    await write(conversation, student(), "Un té y la cuenta")
    for learner in (ANA, BEN):
        assert [c.right for c in await conversation.store.cards_of(learner.id) if c.context == "cafe-order"] == [
            "Quisiera un café",
            "La cuenta, por favor",
        ]


async def test_the_turn_limit_ends_the_scene_with_goal_not_reached(
    conversation: Conversation, ollama: FakeOllama, cafe: Scene
) -> None:
    await in_a_scene(conversation, ollama)
    for turn in range(1, cafe.turns):
        ollama.script(f"Vale, ¿algo más? ({turn})")
        assert (await write(conversation, person(), f"No sé ({turn})")).notes == []
    ollama.script("Bueno, ya cerramos.", PHRASES)
    shown = await write(conversation, person(), "Adiós")
    assert system(ollama.chat_requests[-1]).startswith(CLOSER)
    again = f"/roleplay {cafe.id}"
    missed = _("Goal not reached this time: {goal} Try again with {command}.", goal=cafe.goal_for("en"), command=again)
    assert shown.notes[-1].text.startswith("🎯 " + EN(missed))
    assert await conversation.store.stage(DM.id) is None


async def test_corrections_in_a_scene_are_not_shown_in_it(conversation: Conversation, ollama: FakeOllama) -> None:
    await in_a_scene(conversation, ollama)
    said = "Quiero un tostada"
    ollama.script(f"¡Una tostada, claro!\n{line(correction('un tostada', 'una tostada', 'agreement', said))}")
    shown = await write(conversation, person(), said)
    assert shown.last.text == "¡Una tostada, claro!"


async def test_the_closer_summary_lists_the_three_corrections_that_matter_most(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama)
    first, second, third = "Quiero un tostada y una café", "Pago en tarjeta, la mesa está limpa", "Yo tiene prisa"
    tostada = correction("un tostada", "una tostada", "agreement", first)
    cafe = correction("una café", "un café", "agreement", first)
    tarjeta = correction("en tarjeta", "con tarjeta", "preposition", second)
    limpia = correction("limpa", "limpia", "spelling", second)
    tengo = correction("Yo tiene", "Yo tengo", "verb form", third)
    ollama.script(
        f"¡Claro!\n{line(tostada)}\n{line(cafe)}",
        f"Muy bien.\n{line(tarjeta)}\n{line(limpia)}",
        f"Enseguida.\n{line(tengo)}",
        PHRASES,
    )
    for said in (first, second, third):
        await write(conversation, person(), said)
    shown = await command(conversation, person(), "/endscene")
    summary = shown.notes[-1].text.split("\n")
    heading = summary.index(EN(_("The corrections that matter most:")))
    listed = [text for text in summary[heading + 1 :] if text.startswith(CORRECTION_MARK)]
    assert listed == [correction_line(c, "en") for c in (tostada, tarjeta, limpia)]


async def test_endscene_closes_the_scene_with_the_closer_and_goal_not_reached(
    conversation: Conversation, ollama: FakeOllama, cafe: Scene
) -> None:
    await in_a_scene(conversation, ollama)
    ollama.script(PHRASES)
    shown = await command(conversation, person(), "/endscene")
    again = f"/roleplay {cafe.id}"
    assert shown.last.text == PHRASES and system(ollama.chat_requests[-1]).startswith(CLOSER)
    missed = _("Goal not reached this time: {goal} Try again with {command}.", goal=cafe.goal_for("en"), command=again)
    assert shown.notes[-1].text.startswith("🎯 " + EN(missed))


async def test_endscene_with_no_scene_says_so(conversation: Conversation, ollama: FakeOllama) -> None:
    await command(conversation, person(), "/learn spanish")
    asked = len(ollama.chat_requests)
    shown = await command(conversation, person(), "/endscene")
    assert [note.text for note in shown.notes] == [EN(_("No scene is being played here. /roleplay starts one."))]
    assert len(ollama.chat_requests) == asked


async def test_after_a_scene_the_next_message_is_a_lesson_turn(conversation: Conversation, ollama: FakeOllama) -> None:
    await in_a_scene(conversation, ollama)
    ollama.script(PHRASES)
    await command(conversation, person(), "/endscene")
    ollama.script("¡Qué bien!")
    await write(conversation, person(), "Me gusta el cine")
    assert system(ollama.chat_requests[-1]).startswith("You are a warm, patient Spanish tutor")


async def test_a_group_scenes_prompt_plays_with_the_class_and_names_each_student(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama, CLASS)
    assert system(ollama.chat_requests[-1]).startswith(f"{IN_A_SCENE}a class of students in a group chat")
    ollama.script("¡Marchando, Ben!")
    await write(conversation, student(), "Un café, por favor")
    messages = ollama.chat_requests[-1]["messages"]
    assert messages[0]["content"].startswith(f"{IN_A_SCENE}a class of students in a group chat")
    assert messages[-1]["content"].startswith("Ben: Un café, por favor")


async def test_a_student_cannot_start_a_scene_in_a_group(conversation: Conversation, ollama: FakeOllama) -> None:
    await command(conversation, person(CLASS), "/learn spanish")
    asked = len(ollama.chat_requests)
    shown = await command(conversation, student(), "/roleplay cafe-order")
    assert [note.private for note in shown.notes] == [True]
    assert len(ollama.chat_requests) == asked and await conversation.store.stage(CLASS.id) is None


async def test_roleplay_finds_a_scene_by_a_fuzzy_name(
    conversation: Conversation, ollama: FakeOllama, cafe: Scene
) -> None:
    await command(conversation, person(), "/learn spanish")
    ollama.script(OPENER)
    shown = await command(conversation, person(), "/roleplay Cafetería")
    assert shown.notes[0].text.startswith(f"🎭 *{cafe.title('en')}*")
    assert cafe.role in system(ollama.chat_requests[-1])


async def test_roleplay_with_an_unknown_name_shows_the_levels_scenes_as_buttons(
    conversation: Conversation, ollama: FakeOllama, tutor: Tutor
) -> None:
    await command(conversation, person(), "/learn spanish")
    asked = len(ollama.chat_requests)
    shown = await command(conversation, person(), "/roleplay xyzzy")
    [note] = shown.notes
    assert note.text == EN(_("I don't know the scene “{name}”. Pick one:", name="xyzzy"))
    ids = [scene.id for scene in for_level(tutor.scenes, Level.A2)]  # the lesson's level
    assert actions(note.buttons) == [f"scene:{i}" for i in ids] + ["scene:*"]
    assert len(ollama.chat_requests) == asked


async def test_roleplay_alone_offers_the_scenes_of_the_lessons_level(
    conversation: Conversation, ollama: FakeOllama, tutor: Tutor
) -> None:
    await command(conversation, person(), "/learn spanish A1")
    [note] = (await command(conversation, person(), "/roleplay")).notes
    assert note.text == EN(_("Which scene shall we play? Scenes for level {level}:", level="A1"))
    assert "scene:cafe-order" in actions(note.buttons) and "scene:hotel-check-in" not in actions(note.buttons)


async def test_pressing_a_scene_button_starts_that_scene(conversation: Conversation, ollama: FakeOllama) -> None:
    await command(conversation, person(), "/learn spanish")
    ollama.script(OPENER)
    shown = await press(conversation, person(), "scene:hotel-check-in")
    assert shown.last.text == OPENER
    stage = await conversation.store.stage(DM.id)
    assert stage is not None and stage.scene == "hotel-check-in"


async def test_a_new_lesson_ends_the_scene(conversation: Conversation, ollama: FakeOllama) -> None:
    await in_a_scene(conversation, ollama)
    await command(conversation, person(), "/learn french")
    assert await conversation.tutor.scene(DM) is None


async def test_a_marker_in_the_scene_opener_is_not_shown(conversation: Conversation, ollama: FakeOllama) -> None:
    await command(conversation, person(), "/learn spanish")
    ollama.script("Buenos días. ¿Qué le pongo? [goal]")
    shown = await command(conversation, person(), "/roleplay cafe-order")
    assert shown.last.text == "Buenos días. ¿Qué le pongo?"


async def test_a_correction_line_in_the_scene_opener_is_not_shown(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await command(conversation, person(), "/learn spanish")
    ollama.script('Buenos días. ¿Qué le pongo?\n✏️ "le pongo" → "te pongo" (other) — informal')
    shown = await command(conversation, person(), "/roleplay cafe-order")
    assert shown.last.text == "Buenos días. ¿Qué le pongo?"


async def test_surprise_me_starts_a_scene_of_the_lessons_level(
    conversation: Conversation, ollama: FakeOllama, tutor: Tutor
) -> None:
    await command(conversation, person(), "/learn spanish A1")
    ollama.script(OPENER)
    await press(conversation, person(), "scene:*")
    scene = await tutor.scene(DM)
    assert scene is not None and scene.level == Level.A1


async def test_a_forgotten_students_name_is_not_in_the_scenes_summary(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama, CLASS)
    said = "Quiero un tostada"
    tostada = Correction("un tostada", "una tostada", "agreement", "así se dice.", BEN.id, said)
    ollama.script(f"¡Una tostada, Ben!\n{line(tostada)}", PHRASES)
    await write(conversation, student(), said)
    await press(conversation, student(), "forget:yes")
    shown = await command(conversation, person(CLASS), "/endscene")
    assert correction_line(tostada, "en") in shown.notes[-1].text  # the class's corrections stay, unnamed
    assert BEN.name not in shown.notes[-1].text


FLAGGED = "¿Quiere un cuchillo?"


async def test_a_scene_opener_is_screened_before_it_is_shown(guarded: Conversation, ollama: FakeOllama) -> None:
    await command(guarded, person(), "/learn spanish")
    ollama.script(FLAGGED)
    shown = await command(guarded, person(), "/roleplay cafe-order")
    assert shown.last.text == EN(NEUTRAL_REPLY)


async def test_a_scene_closer_is_screened_before_it_is_shown(guarded: Conversation, ollama: FakeOllama) -> None:
    await in_a_scene(guarded, ollama)
    ollama.script(FLAGGED)
    shown = await command(guarded, person(), "/endscene")
    assert shown.last.text == EN(NEUTRAL_REPLY)
