"""Markers the model writes for code (`[goal]`, `[remember: …]`) never reach the chat, not even in part while a
reply streams; a scene's correction lines are hidden from it. Through the conversation with the fake Ollama,
whose scripted tokens are the chunks the model streams, and on the stream functions with every split point."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.conversation import Conversation
from core.markers import Marks, taken, without_lines
from core.outcome import Buttons
from core.prompts import CORRECTION_MARK, WORD_MARK
from core.tutor import Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.recording import Recorder
from tests.test_conversation import ANA, DM, command, person, write

CORRECTION = '✏️ "un tostada" → "una tostada" (agreement) — "tostada" is feminine.'


@dataclass
class Watching(Recorder):
    """A recording surface that also keeps every text a message showed on its way, not only the last."""

    versions: list[str] = field(default_factory=list)

    async def send(self, text: str, buttons: Buttons = ()) -> int:
        self.versions.append(text)
        return await super().send(text, buttons)

    async def edit(self, handle: Any, text: str, buttons: Buttons = ()) -> None:
        self.versions.append(text)
        await super().edit(handle, text, buttons)


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


def streamed(*tokens: str) -> Script:
    """The model's reply in exactly these chunks, slow enough for the chat to show each step."""
    return Script(tokens=list(tokens), delay=0.03)


async def in_a_lesson(conversation: Conversation, ollama: FakeOllama) -> None:
    ollama.script("¡Hola! ¿Qué te gusta hacer?")
    await command(conversation, person(), "/learn spanish")


async def in_a_scene(conversation: Conversation, ollama: FakeOllama) -> None:
    await in_a_lesson(conversation, ollama)
    ollama.script("Buenos días. ¿Qué le pongo?")
    await command(conversation, person(), "/roleplay cafe-order")


async def chunked(text: str, size: int) -> AsyncGenerator[str, None]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


async def joined(stream: AsyncGenerator[str, None]) -> list[str]:
    return [chunk async for chunk in stream]


async def test_a_goal_marker_split_across_chunks_is_never_shown_in_part(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama)
    ollama.script(streamed("Perfecto, ", "aquí tiene ", "la cuenta. [go", "al]"), "¡Muy bien!")
    shown = Watching()
    await write(conversation, person(), "La cuenta, por favor", shown)
    assert shown.messages[1].text == "Perfecto, aquí tiene la cuenta."
    assert len(shown.versions) > 1, "the reply should have been shown while it streamed"
    assert all("[" not in version for version in shown.versions)


async def test_a_remember_marker_is_recorded_and_taken_out_with_the_whitespace_before_it(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_lesson(conversation, ollama)
    ollama.script(streamed("¡Qué bien! ", "¿Qué música tocas?", "\n", "[remember: ", "plays the ", "guitar]"))
    shown = Watching()
    await write(conversation, person(), "Toco la guitarra", shown)
    assert shown.last.text == "¡Qué bien! ¿Qué música tocas?"
    assert all("[" not in version for version in shown.versions)
    assert [fact.fact for fact in await conversation.store.facts(ANA.id)] == ["plays the guitar"]


async def test_a_bracket_that_is_no_marker_passes_through(conversation: Conversation, ollama: FakeOllama) -> None:
    await in_a_lesson(conversation, ollama)
    ollama.script(streamed("Escribiste «yo sabo» [s", "ic]. ", "Se dice [re", "ad this] «yo sé»."))
    shown = await write(conversation, person(), "yo sabo nadar")
    assert shown.last.text == "Escribiste «yo sabo» [sic]. Se dice [read this] «yo sé»."


@pytest.mark.parametrize("before", ["\n", " "], ids=["on-its-own-line", "after-a-space"])
async def test_a_marker_cut_off_at_the_end_of_the_reply_is_dropped(
    conversation: Conversation, ollama: FakeOllama, before: str
) -> None:
    await in_a_lesson(conversation, ollama)
    ollama.script(streamed("¡Muy bien! ¿Y tú?", before, "[remember: ", "plays gu"))
    shown = await write(conversation, person(), "Toco la guitarra")
    assert shown.last.text == "¡Muy bien! ¿Y tú?"
    assert await conversation.store.facts(ANA.id) == []


async def test_a_scene_hides_a_correction_line_split_across_chunks_and_keeps_the_others(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await in_a_scene(conversation, ollama)
    head, tail = CORRECTION[:1], CORRECTION[1:]  # between the pencil and its variation selector
    ollama.script(streamed("¡Claro! Una tostada.", "\n", head, tail[:9], tail[9:], "\n", "¿Algo más?"))
    shown = Watching()
    await write(conversation, person(), "Quiero un tostada", shown)
    assert shown.last.text == "¡Claro! Una tostada.\n¿Algo más?"
    assert all(CORRECTION_MARK[0] not in version for version in shown.versions)
    stage = await conversation.store.stage(DM.id)
    assert stage is not None and len(stage.state["corrections"]) == 1  # type: ignore[arg-type]  # kept for the closer


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
async def test_taken_strips_markers_whatever_the_chunking(size: int) -> None:
    text = "¡Hola! [Remember : plays  the guitar]\nSí [sic]. Fin [goal]"
    marks = Marks()
    out = await joined(taken(chunked(text, size), marks))
    assert "".join(out) == "¡Hola!\nSí [sic]. Fin"
    assert all("[g" not in chunk and "[R" not in chunk for chunk in out)
    assert (marks.goal, marks.facts) == (True, ["plays the guitar"])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
async def test_without_lines_drops_marked_lines_whatever_the_chunking(size: int) -> None:
    text = f"Hola.\n{CORRECTION}\n¿Qué desea?\n  {WORD_MARK} la cuenta — the bill\nAdiós."
    out = await joined(without_lines(chunked(text, size), (CORRECTION_MARK, WORD_MARK)))
    assert "".join(out) == "Hola.\n¿Qué desea?\nAdiós."
