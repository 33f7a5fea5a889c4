"""The placement: a ladder of tasks that climbs on a task managed and steps down on one missed, judged by the
model one answer at a time, and a level proposed by code. The ladder on its own, then whole placements through the
conversation with the fake Ollama playing both the judge and the examiner."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.conversation import Conversation
from core.i18n import Voice, _
from core.lesson import Level
from core.moderation import NEUTRAL_REPLY
from core.placement import MAX_TASKS, TASKS, Ladder
from core.tutor import Tutor
from tests.fake_ollama import FakeOllama
from tests.recording import Recorder
from tests.test_conversation import CLASS, DM, actions, command, person, press, write

pytestmark = pytest.mark.usefixtures("database")  # on SQLite and on PostgreSQL (tests/conftest.py)

EN = Voice("en")
JUDGE = "You assess one answer of a Spanish learner."
EXAMINER = "You are a friendly Spanish examiner"
NEXT_TASK = "¿Y qué haces en un día normal?"


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


def climbed(verdicts: list[bool]) -> tuple[Ladder, int]:
    """The ladder after tasks judged as `verdicts` say, up to its end; how many tasks it asked."""
    ladder, answers = Ladder(), iter(verdicts)
    asked = 0
    while not ladder.done:
        ladder.ask()
        ladder.judged(next(answers))
        asked += 1
    return ladder, asked


Y, N = True, False


@pytest.mark.parametrize(
    ("verdicts", "level", "tasks"),
    [
        ([Y] * 6, Level.C2, 6),
        ([N, N], Level.A1, 2),
        ([Y, Y, Y, N, Y, N], Level.B1, 6),
        ([Y, Y, N, Y, N, Y], Level.A2, 6),
        ([Y, Y, Y, Y, Y, N, N, N, N, N], Level.C1, 10),
        ([Y, N] * 5, Level.A1, 6),
    ],
    ids=["all-yes", "no-no", "b1", "a2", "ten-at-most", "a2-missed-twice"],
)
def test_the_ladder_proposes_a_level_after_its_tasks(verdicts: list[bool], level: Level, tasks: int) -> None:
    ladder, asked = climbed(verdicts)
    assert (ladder.result(), asked) == (level, tasks)


def test_the_ladder_never_asks_more_than_ten_tasks() -> None:
    _ladder, asked = climbed([Y, Y, Y, Y, Y, N, N, N, N, N, Y, Y])
    assert asked == MAX_TASKS


def test_the_ladder_asks_another_task_at_a_level_it_comes_back_to() -> None:
    ladder, _asked = climbed([Y, Y, Y, N, Y, N])
    b1 = [index for level, index, _managed in ladder.asked if level == "B1"]
    assert b1 == [0, 1]


def test_the_ladder_state_round_trips_through_json() -> None:
    ladder = Ladder()
    for verdict in (Y, Y, N):
        ladder.ask()
        ladder.judged(verdict)
    ladder.ask()
    again = Ladder.of(json.loads(json.dumps(ladder.state())))
    assert again == ladder
    assert again.task == ladder.task


def examiner(verdicts: list[str]) -> Callable[[list[dict[str, Any]]], str]:
    """The fake model as the judge (the verdicts, in turn) and as the examiner (a next task)."""
    answers: Iterator[str] = iter(verdicts)

    def respond(messages: list[dict[str, Any]]) -> str:
        if messages[0]["content"].startswith(JUDGE):
            return f"[managed: {next(answers)}]"
        return NEXT_TASK

    return respond


async def placement(conversation: Conversation, ollama: FakeOllama) -> Recorder:
    """A Spanish lesson at A2 in Ana's private chat, and a placement started there."""
    ollama.script("¡Hola! ¿De qué hablamos?")
    await command(conversation, person(), "/learn spanish")
    ollama.script("¡Hola! ¿Cómo te llamas y de dónde eres?")
    return await command(conversation, person(), "/placement")


async def placed(conversation: Conversation, ollama: FakeOllama, verdicts: list[str]) -> list[Recorder]:
    """A placement answered until it ends (at most twelve answers, so that one that does not end fails)."""
    await placement(conversation, ollama)
    ollama.responder = examiner(verdicts)
    shown = []
    for n in range(12):
        shown.append(await write(conversation, person(), f"Me llamo Ana y soy de Lima, respuesta {n + 1}."))
        if await conversation.store.stage(DM.id) is None:
            break
    return shown


def judges(ollama: FakeOllama) -> list[dict[str, Any]]:
    return [r for r in ollama.chat_requests if r["messages"][0]["content"].startswith(JUDGE)]


def cans(*tasks: tuple[Level, int]) -> str:
    return ", ".join(EN(TASKS[level][index].can) for level, index in tasks)


async def test_placement_starts_with_an_intro_and_an_a1_task_from_the_examiner(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    shown = await placement(conversation, ollama)
    assert shown.notes[0].text.startswith("🧭")
    assert shown.last.text == "¡Hola! ¿Cómo te llamas y de dónde eres?"
    messages = ollama.chat_requests[-1]["messages"]
    assert messages[0]["content"].startswith(EXAMINER)
    assert f"at level A1: ask the learner to {TASKS[Level.A1][0].ask}" in messages[-1]["content"]


async def test_an_answer_is_judged_then_the_next_task_is_asked_one_level_up(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await placement(conversation, ollama)
    ollama.responder = examiner(["yes"])
    shown = await write(conversation, person(), "Me llamo Ana y soy de Lima.")
    judge, task = ollama.chat_requests[-2:]
    assert judge["messages"][0]["content"].startswith(f"{JUDGE} The task, at CEFR level A1, was to introduce")
    assert judge["messages"][1:] == [{"role": "user", "content": "Me llamo Ana y soy de Lima."}]
    assert task["messages"][0]["content"].startswith(EXAMINER)
    assert f"at level A2: ask the learner to {TASKS[Level.A2][0].ask}" in task["messages"][-1]["content"]
    assert shown.last.text == NEXT_TASK


async def test_a_missed_a1_task_is_followed_by_another_a1_task(conversation: Conversation, ollama: FakeOllama) -> None:
    await placement(conversation, ollama)
    ollama.responder = examiner(["no"])
    await write(conversation, person(), "hello")
    task = ollama.chat_requests[-1]["messages"][-1]["content"]
    assert f"at level A1: ask the learner to {TASKS[Level.A1][1].ask}" in task


async def test_the_examiner_sees_the_placement_so_far_and_not_the_lesson_before(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await placement(conversation, ollama)
    ollama.responder = examiner(["yes", "yes"])
    await write(conversation, person(), "Me llamo Ana.")
    await write(conversation, person(), "Trabajo y leo.")
    said = [m["content"] for m in ollama.chat_requests[-1]["messages"][1:]]
    assert said[0] == "¡Hola! ¿Cómo te llamas y de dónde eres?"
    assert said[1] == "Me llamo Ana." and said[2] == NEXT_TASK and said[3].startswith("Trabajo y leo.")
    assert all("¿De qué hablamos?" not in text for text in said)


async def test_a_placement_judged_yes_yes_yes_no_yes_no_proposes_b1_after_six_tasks(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    shown = await placed(conversation, ollama, ["yes", "yes", "yes", "no", "yes", "no"])
    assert len(shown) == len(judges(ollama)) == 6
    suggest = _("Placement done: I suggest level {level} ({name}).", level="B1", name=EN(Level.B1.label))
    managed = _("You managed: {tasks}.", tasks=cans((Level.A1, 0), (Level.A2, 0), (Level.B1, 0), (Level.B1, 1)))
    missed = _("Not yet: {tasks}.", tasks=cans((Level.B2, 0), (Level.B2, 1)))
    assert shown[-1].last.text == f"{EN(suggest)}\n✅ {EN(managed)}\n➖ {EN(missed)}"
    assert ollama.chat_requests[-1]["messages"][0]["content"].startswith(JUDGE)  # no examiner after the last judge


async def test_the_end_of_a_placement_offers_the_level_as_a_button(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    shown = await placed(conversation, ollama, ["yes", "yes", "yes", "no", "yes", "no"])
    [offer] = shown[-1].notes
    assert offer.text == EN(_("Shall I write at {level} from now on?", level="B1"))
    assert actions(offer.buttons) == ["level:es:B1"]
    assert [b.label for row in offer.buttons for b in row] == [EN(_("Set my level to {level}", level="B1"))]


async def test_pressing_the_proposed_level_sets_it(conversation: Conversation, ollama: FakeOllama) -> None:
    await placed(conversation, ollama, ["no", "no"])
    await press(conversation, person(), "level:es:A1")
    lesson = await conversation.tutor.lesson(DM)
    assert lesson is not None and lesson.level == Level.A1


async def test_a_placement_judged_all_yes_proposes_c2_after_six_tasks(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    shown = await placed(conversation, ollama, ["yes"] * 6)
    assert len(judges(ollama)) == 6
    suggest = _("Placement done: I suggest level {level} ({name}).", level="C2", name=EN(Level.C2.label))
    assert shown[-1].last.text.startswith(EN(suggest))


async def test_a_placement_judged_no_no_proposes_a1_after_two_tasks(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    shown = await placed(conversation, ollama, ["no", "no"])
    assert len(judges(ollama)) == 2
    suggest = _("Placement done: I suggest level {level} ({name}).", level="A1", name=EN(Level.A1.label))
    missed = _("Not yet: {tasks}.", tasks=cans((Level.A1, 0), (Level.A1, 1)))
    assert shown[-1].last.text == f"{EN(suggest)}\n➖ {EN(missed)}"


async def test_a_placement_ends_after_ten_tasks_at_most(conversation: Conversation, ollama: FakeOllama) -> None:
    shown = await placed(conversation, ollama, ["yes"] * 5 + ["no"] * 5 + ["yes"] * 2)
    assert len(shown) == len(judges(ollama)) == MAX_TASKS
    assert "C1" in shown[-1].last.text


async def test_a_placement_that_proposes_the_lessons_own_level_says_it_fits(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    shown = await placed(conversation, ollama, ["yes", "yes", "no", "yes", "no", "yes"])
    assert [note.text for note in shown[-1].notes] == [EN(_("Your lesson is at {level} already: it fits.", level="A2"))]


async def test_every_answer_in_a_placement_is_answered_exactly_once(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await placed(conversation, ollama, ["yes", "yes", "yes", "no", "yes", "no"])
    rows = await conversation.store._db.fetchall(
        """SELECT m.id, (SELECT COUNT(*) FROM messages AS a WHERE a.reply_to = m.id AND a.role = 'assistant')
           FROM messages AS m WHERE m.channel = ? AND m.role = 'user'""",
        (DM.id,),
    )
    answers = [row[1] for row in rows]
    assert answers == [1] * 6


async def test_endscene_stops_a_placement_and_the_next_message_is_a_lesson_turn(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await placement(conversation, ollama)
    ollama.responder = examiner(["yes"])
    await write(conversation, person(), "Me llamo Ana.")
    stopped = await command(conversation, person(), "/endscene")
    assert [note.text for note in stopped.notes] == [EN(_("Placement stopped. Your level stays as it was."))]
    asked = len(ollama.chat_requests)
    ollama.script("¡Qué bien!")
    await write(conversation, person(), "Me gusta el cine.")
    assert len(ollama.chat_requests) == asked + 1
    assert ollama.chat_requests[-1]["messages"][0]["content"].startswith("You are a warm, patient Spanish tutor")
    lesson = await conversation.tutor.lesson(DM)
    assert lesson is not None and lesson.level == Level.A2


async def test_placement_in_a_group_is_refused_privately(conversation: Conversation, ollama: FakeOllama) -> None:
    await command(conversation, person(CLASS), "/learn spanish")
    asked = len(ollama.chat_requests)
    shown = await command(conversation, person(CLASS), "/placement")
    assert [(n.text, n.private) for n in shown.notes] == [
        (EN(_("The placement is a chat for two: write /placement to me privately.")), True)
    ]
    assert len(ollama.chat_requests) == asked and await conversation.store.stage(CLASS.id) is None


async def test_the_first_private_lesson_offers_a_placement_once(conversation: Conversation, ollama: FakeOllama) -> None:
    first = await command(conversation, person(), "/learn spanish")
    again = await command(conversation, person(), "/learn french")
    assert actions(first.last.buttons)[-1] == "placement"
    assert "placement" not in actions(again.last.buttons)


async def test_a_marker_in_the_examiners_next_task_is_not_shown(conversation: Conversation, ollama: FakeOllama) -> None:
    await placement(conversation, ollama)
    ollama.script("[managed: yes]", f"{NEXT_TASK} [managed: yes]")
    shown = await write(conversation, person(), "Me llamo Ana y soy de Lima.")
    assert shown.last.text == NEXT_TASK


FLAGGED = "¿Tienes un cuchillo en casa?"


async def test_the_first_placement_task_is_screened_before_it_is_shown(
    guarded: Conversation, ollama: FakeOllama
) -> None:
    await command(guarded, person(), "/learn spanish")
    ollama.script(FLAGGED)
    shown = await command(guarded, person(), "/placement")
    assert shown.last.text == EN(NEUTRAL_REPLY)


async def test_a_next_placement_task_is_screened_before_it_is_shown(guarded: Conversation, ollama: FakeOllama) -> None:
    await placement(guarded, ollama)
    ollama.script("[managed: yes]", FLAGGED)
    shown = await write(guarded, person(), "Me llamo Ana y soy de Lima.")
    assert shown.last.text == EN(NEUTRAL_REPLY)
