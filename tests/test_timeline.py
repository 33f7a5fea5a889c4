"""How the benchmark reads answers out of the fakes' logs, one student per reply or several: over hand-made logs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.timeline import answers
from bench.world import Question, World, parts, tokens_of, waiting
from tests.fake_discord import Call
from tests.fake_ollama import Stream
from tests.fake_telegram import BotMessage, CallRecord

GROUP = -1_001_000_000_001
SYSTEM = {"role": "system", "content": "You are a tutor."}


@pytest.fixture
def world() -> Iterator[World]:
    made = World(scale=1.0, tokens_per_second=30.0, max_parallel=4)
    try:
        yield made
    finally:
        made._folder.cleanup()


def asked(world: World, *chars: int) -> list[Question]:
    return [world.question("telegram-group", GROUP, 2000 + n, size) for n, size in enumerate(chars)]


def said(question: Question) -> dict[str, str]:
    text = f"Student{question.user}: Q{question.tag} ayer fui al mercado (Reply in Spanish.)"
    return {"role": "user", "content": text}


def stream(world: World, messages: list[dict[str, Any]], start: float = 0.0) -> Stream:
    """What the fake model writes for `messages`, one token a second from `start`, logged as the server would."""
    tokens = world._respond(messages).tokens
    logged = Stream(messages, [(start + i, token) for i, token in enumerate(tokens)])
    world.ollama.streams.append(logged)
    return logged


def telegram(world: World, method: str, text: str, at: float) -> None:
    world.telegram.calls.append(CallRecord(method, {"chat_id": GROUP, "text": text}, at, status=200))


def test_the_fake_model_answers_a_lone_waiting_question_with_its_planned_answer(world: World) -> None:
    first, second = asked(world, 120, 150)
    messages = [SYSTEM, said(first), {"role": "assistant", "content": first.answer}, said(second)]
    assert "".join(world._respond(messages).tokens) == second.answer


def test_the_fake_model_answers_every_question_in_the_trailing_user_turns_in_order(world: World) -> None:
    first, second, third = asked(world, 120, 150, 90)
    messages = [SYSTEM, said(first), {"role": "assistant", "content": first.answer}, said(second), said(third)]
    assert waiting(messages) == [second.tag, third.tag]
    assert "".join(world._respond(messages).tokens) == f"{second.answer}\n\n{third.answer}"


def test_the_fake_model_greets_a_prompt_that_asks_no_question(world: World) -> None:
    messages = [SYSTEM, {"role": "user", "content": "Open the lesson."}]
    assert "".join(world._respond(messages).tokens) == "Q0: ¡Hola!"


def test_a_message_holding_several_answers_is_cut_into_parts_at_their_tags() -> None:
    text = "Q4: Muy bien.\n\nQ5: Una pequeña corrección. \n\nQ6: ¿Qué"
    assert parts(text) == [(4, "Q4: Muy bien."), (5, "Q5: Una pequeña corrección."), (6, "Q6: ¿Qué")]
    assert parts("(Your message was long.)") == []


def test_shown_gives_each_question_its_own_part_of_a_shared_message(world: World) -> None:
    first, second = asked(world, 120, 150)
    text = f"{first.answer}\n\n{second.answer[:40]}"
    world.telegram.messages[GROUP] = {1: BotMessage(GROUP, 1, text, None, text, [], None, 0)}
    assert world.shown([first, second]) == {first.tag: first.answer, second.tag: second.answer[:40]}


def test_shown_gives_a_message_of_one_answer_whole(world: World) -> None:
    (only,) = asked(world, 120)
    world.telegram.messages[GROUP] = {1: BotMessage(GROUP, 1, only.answer, None, only.answer, [], None, 0)}
    assert world.shown([only]) == {only.tag: only.answer}


def test_a_stream_of_one_answer_counts_all_its_characters(world: World) -> None:
    first, second = asked(world, 120, 150)
    stream(world, [SYSTEM, said(first), {"role": "assistant", "content": first.answer}, said(second)])
    (answer,) = answers(world).values()
    assert answer.tag == second.tag
    assert answer.produced[0] == (0.0, len(tokens_of(second.answer)[0]))
    assert answer.produced[-1][1] == len(second.answer)


def test_a_stream_answering_several_students_gives_each_their_own_part(world: World) -> None:
    first, second = asked(world, 120, 150)
    logged = stream(world, [SYSTEM, said(first), said(second)])
    found = answers(world)
    mine, theirs = found[first.tag], found[second.tag]
    assert mine.first_token == 0.0 and mine.produced[-1][1] == len(first.answer)
    assert max(chars for _, chars in mine.produced) == len(first.answer)  # clamped to the part
    begins = next(t for t, token in logged.tokens if token == f"Q{second.tag}:")
    assert theirs.first_token == begins and theirs.produced[0][1] == len(f"Q{second.tag}:")
    assert theirs.produced[-1][1] == len(second.answer)


def test_a_shared_message_counts_a_request_for_each_part_it_shows_or_changes(world: World) -> None:
    first, second = asked(world, 120, 150)
    telegram(world, "sendMessage", first.answer[:30], 1.0)
    telegram(world, "editMessageText", f"{first.answer}\n\n{second.answer[:10]}", 2.0)
    telegram(world, "editMessageText", f"{first.answer}\n\n{second.answer}", 3.0)
    found = answers(world)
    mine, theirs = found[first.tag], found[second.tag]
    assert (mine.sends, mine.edits) == (1, 1)  # the last edit left the first part as it was
    assert (theirs.sends, theirs.edits) == (1, 1)  # the first edit showed the second part: its send
    assert mine.complete_at(len(first.answer)) == 2.0
    assert theirs.complete_at(len(second.answer)) == 3.0
    assert theirs.shown == [(2.0, 10), (3.0, len(second.answer))]


def test_a_message_of_one_answer_counts_every_request_as_its_own(world: World) -> None:
    (only,) = asked(world, 120)
    telegram(world, "sendMessage", only.answer[:30], 1.0)
    world.discord.calls.append(Call("PATCH", "/channels/9/messages/1", {"content": only.answer[:30]}, 2.0, 200))
    world.discord.calls.append(Call("PATCH", "/channels/9/messages/1", {"content": only.answer}, 3.0, 200))
    answer = answers(world)[only.tag]
    assert (answer.sends, answer.edits) == (1, 2)
    assert answer.shown == [(1.0, 30), (2.0, 30), (3.0, len(only.answer))]


def test_an_answer_written_again_by_a_later_stream_keeps_its_first_timeline(world: World) -> None:
    first, second = asked(world, 120, 150)
    stream(world, [SYSTEM, said(first)])
    stream(world, [SYSTEM, said(first), said(second)], start=100.0)  # the first reply was not in this prompt
    found = answers(world)
    assert found[first.tag].streams == 2 and found[second.tag].streams == 1
    assert all(t < 100.0 for t, _ in found[first.tag].produced)


def test_shown_keeps_a_complete_answer_while_a_later_message_writes_it_again(world: World) -> None:
    (first,) = asked(world, 120)
    again = first.answer[:20]
    world.telegram.messages[GROUP] = {
        1: BotMessage(GROUP, 1, first.answer, None, first.answer, [], None, 0),
        2: BotMessage(GROUP, 2, again, None, again, [], None, 0),
    }
    assert world.shown([first]) == {first.tag: first.answer}
