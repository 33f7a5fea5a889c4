"""The tutor API every adapter calls, against the real ollama client and a fake Ollama server."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path

import pytest

from core.errors import (
    LessonPaused,
    ModelFailed,
    ModelMissing,
    NoLesson,
    OllamaUnavailable,
    ReplyInterrupted,
    UnknownLanguage,
)
from core.lesson import Level
from core.settings import Settings
from core.store import Status
from core.tutor import CUT_MARK, LENGTH_MARK, TOGETHER, Channel, Learner, Reply, Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script

DM = Channel("test:dm:1")
CLASS = Channel("test:group:9", group=True)
ANA = Learner("test:user:1", "Ana")
BEN = Learner("test:user:2", "Ben")


async def collect(reply: Reply | None) -> str:
    assert reply is not None
    return "".join([chunk async for chunk in reply])


async def test_starting_a_lesson_streams_an_opening_message_in_the_target_language(
    tutor: Tutor, ollama: FakeOllama
) -> None:
    ollama.script(Script("¡Hola! Soy tu tutor. ¿Cómo te llamas?"))
    reply = await tutor.start(DM, "spanish", "A1")
    assert await collect(reply) == "¡Hola! Soy tu tutor. ¿Cómo te llamas?"
    system = ollama.chat_requests[0]["messages"][0]
    assert system["role"] == "system"
    assert "Spanish" in system["content"] and "A1" in system["content"]
    history = await tutor.store.history(DM.id)
    assert [(m.role, m.text) for m in history] == [("assistant", "¡Hola! Soy tu tutor. ¿Cómo te llamas?")]


async def test_the_level_defaults_to_a2_and_explanations_to_the_configured_language(tutor: Tutor) -> None:
    await collect(await tutor.start(DM, "français"))
    lesson = await tutor.lesson(DM)
    assert lesson is not None
    assert (lesson.language.name, lesson.level, lesson.native.name) == ("French", Level.A2, "English")


async def test_every_request_carries_the_tutoring_options(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    request = ollama.chat_requests[0]
    assert request["options"] == {
        "num_ctx": 8192,
        "num_predict": 256,
        "temperature": 0.7,
        "top_p": 0.9,
        "repeat_penalty": 1.1,
    }
    assert request["think"] is False
    assert request["keep_alive"] == "30m"


async def test_a_learner_message_is_stored_before_the_model_is_called(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    ollama.pause()  # the model will not answer yet
    reply = await tutor.reply(DM, ANA, "Hola, me llamo Ana")
    assert reply is not None
    assert [m.text for m in await tutor.store.history(DM.id)][-1] == "Hola, me llamo Ana"
    ollama.resume()
    await collect(reply)


async def test_the_reply_is_stored_complete_and_the_history_goes_to_the_model(tutor: Tutor, ollama: FakeOllama) -> None:
    ollama.script(Script("¡Hola!"), Script("¡Qué bonito nombre!"), Script("Muy bien."))
    await collect(await tutor.start(DM, "spanish"))
    await collect(await tutor.reply(DM, ANA, "Me llamo Ana"))
    await collect(await tutor.reply(DM, ANA, "Tengo un perro"))
    sent = ollama.chat_requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "assistant", "user", "assistant", "user"]
    assert sent[2]["content"].startswith("Me llamo Ana")
    assert sent[4]["content"].startswith("Tengo un perro")
    stored = await tutor.store.transcript(DM.id)
    assert [(m.role, m.status) for m in stored][-1] == ("assistant", Status.COMPLETE)


async def test_the_target_language_is_restated_at_the_end_of_the_prompt(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "german", "B1"))
    await collect(await tutor.reply(DM, ANA, "Ich habe ein Hund"))
    last = ollama.chat_requests[-1]["messages"][-1]
    assert last["role"] == "user"
    assert "Reply in German at level B1" in last["content"]


async def test_in_a_group_the_history_names_each_student(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(CLASS, "spanish"))
    await collect(await tutor.reply(CLASS, ANA, "Hola"))
    await collect(await tutor.reply(CLASS, BEN, "Buenos días"))
    sent = ollama.chat_requests[-1]["messages"]
    users = [m["content"] for m in sent if m["role"] == "user"]
    assert users[0].startswith("Ana: Hola") and users[1].startswith("Ben: Buenos días")
    assert "address them by name" in sent[0]["content"]


async def test_each_prompt_starts_with_the_previous_prompt(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    for text in ("uno", "dos", "tres"):
        await collect(await tutor.reply(DM, ANA, text))
    prompts = [r["messages"] for r in ollama.chat_requests[1:]]
    for previous, current in itertools.pairwise(prompts):
        assert current[: len(previous)] == previous


async def test_a_long_conversation_is_trimmed_in_blocks_and_keeps_the_system_prompt(
    settings: Settings, ollama: FakeOllama
) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"num_ctx": 2048, "num_predict": 128}))
    await collect(await tutor.start(DM, "spanish"))
    ollama.responder = lambda messages: "Respuesta bastante larga del tutor para llenar el contexto. " * 3
    for n in range(40):
        await collect(await tutor.reply(DM, ANA, f"Mensaje número {n} del alumno, con algo de texto."))
    prompts = [r["messages"] for r in ollama.chat_requests[1:]]
    assert all(p[0]["role"] == "system" and "Spanish" in p[0]["content"] for p in prompts)
    assert ollama.chat_requests[-1]["messages"][-1]["content"].startswith("Mensaje número 39")
    assert all(sum(len(m["content"].encode()) for m in p) / 3 < 2048 - 128 for p in prompts)
    continued = sum(current[: len(previous)] == previous for previous, current in itertools.pairwise(prompts))
    assert len(prompts) - 1 - continued <= 6, "the prompt's start changed on too many turns"
    assert continued < len(prompts) - 1, "the history was never trimmed"
    await tutor.close()


async def test_switching_language_starts_a_fresh_conversation(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    await collect(await tutor.reply(DM, ANA, "Hola"))
    await collect(await tutor.start(DM, "french"))
    sent = ollama.chat_requests[-1]["messages"]
    assert "French" in sent[0]["content"]
    assert not any("Hola" in m["content"] for m in sent[1:])


async def test_changing_level_and_native_language_keeps_the_lesson(tutor: Tutor) -> None:
    await collect(await tutor.start(DM, "spanish"))
    await tutor.set_level(DM, "c1")
    lesson = await tutor.set_native(DM, "deutsch")
    assert (lesson.language.name, lesson.level, lesson.native.name) == ("Spanish", Level.C1, "German")


async def test_an_unknown_language_is_refused_with_suggestions(tutor: Tutor) -> None:
    with pytest.raises(UnknownLanguage, match="Did you mean"):
        await tutor.start(DM, "spnsh xx")
    assert await tutor.lesson(DM) is None


async def test_a_message_without_a_lesson_is_answered_with_how_to_start(tutor: Tutor) -> None:
    with pytest.raises(NoLesson, match="/learn"):
        await tutor.reply(DM, ANA, "hola")


async def test_a_paused_lesson_does_not_reply(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    await tutor.pause(DM)
    with pytest.raises(LessonPaused):
        await tutor.reply(DM, ANA, "hola")
    assert len(ollama.chat_requests) == 1


async def test_empty_messages_are_ignored(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    assert await tutor.reply(DM, ANA, "  \n ") is None
    assert len(ollama.chat_requests) == 1


async def test_a_huge_message_is_truncated_and_the_learner_told(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    reply = await tutor.reply(DM, ANA, "palabra " * 1000)
    assert reply is not None and reply.notice is not None and "2000" in str(reply.notice)
    await collect(reply)
    assert len(ollama.chat_requests[-1]["messages"][-1]["content"]) < 2200


async def test_reset_forgets_the_conversation_but_keeps_the_lesson(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    await collect(await tutor.reply(DM, ANA, "Hola"))
    assert await tutor.reset(DM) == 3
    await collect(await tutor.reply(DM, ANA, "Otra vez"))
    assert len(ollama.chat_requests[-1]["messages"]) == 2


async def test_a_thread_starts_from_its_parent_channels_lesson(tutor: Tutor) -> None:
    await collect(await tutor.start(CLASS, "italian", "B2"))
    thread = Channel("test:thread:5", group=True, parent=CLASS.id)
    await collect(await tutor.reply(thread, ANA, "Ciao"))
    lesson = await tutor.lesson(thread)
    assert lesson is not None and (lesson.language.name, lesson.level) == ("Italian", Level.B2)
    assert len(await tutor.store.history(CLASS.id)) == 1  # only the parent's opener


async def test_a_reply_cut_by_num_predict_is_marked(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    ollama.script(Script(" ".join(["palabra"] * 400)))
    text = await collect(await tutor.reply(DM, ANA, "Cuéntame una historia"))
    assert text.endswith(LENGTH_MARK)


async def test_ollama_down_gives_a_message_naming_the_host_and_the_fix(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    await ollama.stop()
    with pytest.raises(OllamaUnavailable) as raised:
        await collect(await tutor.reply(DM, ANA, "Hola"))
    assert ollama.url in str(raised.value) and "ollama serve" in str(raised.value)
    assert [m.text for m in await tutor.store.history(DM.id)][-1] == "Hola"  # the learner's turn is kept


async def test_the_next_message_works_once_ollama_is_back(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    await ollama.stop()
    with pytest.raises(OllamaUnavailable):
        await collect(await tutor.reply(DM, ANA, "Hola"))
    await ollama.start()
    ollama.script(Script("¡Ya estoy aquí!"))
    assert await collect(await tutor.reply(DM, ANA, "¿Hola?")) == "¡Ya estoy aquí!"


async def test_a_missing_model_names_ollama_pull(settings: Settings, ollama: FakeOllama) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"model": "llama3.1:8b"}))
    with pytest.raises(ModelMissing, match=re.escape("ollama pull llama3.1:8b")):
        await collect(await tutor.start(DM, "spanish"))
    assert await tutor.lesson(DM) is not None  # the lesson is set; the opener can come later
    await tutor.close()


@pytest.mark.parametrize(
    "failure", [Script("Hola amigo, ¿qué tal?", error_after=3), Script("Hola amigo, ¿qué tal?", disconnect_after=3)]
)
async def test_a_stream_that_breaks_keeps_the_partial_reply_marked(
    tutor: Tutor, ollama: FakeOllama, failure: Script
) -> None:
    await collect(await tutor.start(DM, "spanish"))
    ollama.script(failure)
    reply = await tutor.reply(DM, ANA, "Hola")
    assert reply is not None
    shown = []
    with pytest.raises(ReplyInterrupted):
        async for chunk in reply:
            shown.append(chunk)
    assert "".join(shown).endswith(CUT_MARK) and len(shown) > 1
    last = (await tutor.store.transcript(DM.id))[-1]
    assert (last.role, last.status, last.text) == ("assistant", Status.INTERRUPTED, "".join(shown))


async def test_a_cancelled_reply_is_stored_as_cut(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    ollama.script(Script("uno dos tres cuatro cinco seis siete", delay=0.05))
    reply = await tutor.reply(DM, ANA, "Hola")
    assert reply is not None

    async def read() -> None:
        async for _ in reply:
            pass

    task = asyncio.create_task(read())
    await asyncio.sleep(0.12)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.05)
    last = (await tutor.store.transcript(DM.id))[-1]
    assert (last.role, last.status) == ("assistant", Status.CUT)  # its question is answered after a restart
    assert last.text and "siete" not in last.text


async def test_replies_in_one_channel_never_interleave(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    ollama.responder = lambda messages: "respuesta a " + messages[-1]["content"].split("\n")[0]
    replies = [await tutor.reply(DM, ANA, f"hola {i}") for i in range(4)]
    await asyncio.gather(*(collect(r) for r in replies))
    assert ollama.max_active == 1
    texts = [m.text for m in await tutor.store.transcript(DM.id) if m.role == "assistant"][1:]
    assert texts == [f"respuesta a hola {i}" for i in range(4)]


async def _waiting_class(tutor: Tutor, ollama: FakeOllama, students: int) -> list[asyncio.Task[str]]:
    """S0 is being answered while S1… write: they wait behind it."""
    await collect(await tutor.start(CLASS, "spanish"))
    ollama.pause()
    first = await tutor.reply(CLASS, Learner("u0", "S0"), "hola 0")
    assert first is not None
    tasks = [asyncio.create_task(collect(first))]
    await ollama.wait_for(lambda fake: fake.active == 1, timeout=5)
    for i in range(1, students):
        tasks.append(asyncio.create_task(collect(await tutor.reply(CLASS, Learner(f"u{i}", f"S{i}"), f"hola {i}"))))
    await asyncio.sleep(0.05)  # each is in line
    return tasks


async def test_students_waiting_in_a_group_are_answered_together(tutor: Tutor, ollama: FakeOllama) -> None:
    tasks = await _waiting_class(tutor, ollama, 4)
    ollama.responder = lambda messages: "S1, S2, S3: ¡muy bien!"
    ollama.resume()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["str", "str", "AnsweredTogether", "AnsweredTogether"]
    assert len(ollama.chat_requests) == 3  # the opener, S0 alone, then S1–S3 at once
    last = ollama.chat_requests[-1]["messages"]
    assert [m["content"].split(":")[0] for m in last[-3:]] == ["S1", "S2", "S3"]
    assert "S1, S2 and S3 are all waiting" in last[-1]["content"]


async def test_a_reply_to_several_students_answers_each_of_their_messages(
    tutor: Tutor, ollama: FakeOllama, settings: Settings
) -> None:
    tasks = await _waiting_class(tutor, ollama, 4)
    ollama.responder = lambda messages: "S1, S2, S3: ¡muy bien!"
    ollama.resume()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await tutor.store.unanswered("test:") == []
    history = await tutor.store.history(CLASS.id)
    assert [(m.role, m.author_name) for m in history[1:]] == [
        ("user", "S0"),
        ("assistant", None),
        ("user", "S1"),
        ("user", "S2"),
        ("user", "S3"),
        ("assistant", None),
    ]


async def test_a_reply_to_several_students_has_room_for_each(
    tutor: Tutor, ollama: FakeOllama, settings: Settings
) -> None:
    tasks = await _waiting_class(tutor, ollama, 3)
    ollama.resume()
    await asyncio.gather(*tasks, return_exceptions=True)
    lengths = [r["options"]["num_predict"] for r in ollama.chat_requests]
    assert lengths[:2] == [settings.num_predict] * 2 and lengths[2] > settings.num_predict


async def test_at_most_a_few_students_are_answered_in_one_reply(tutor: Tutor, ollama: FakeOllama) -> None:
    tasks = await _waiting_class(tutor, ollama, TOGETHER + 3)
    ollama.resume()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    answered = sum(isinstance(r, str) for r in results)
    assert answered == 3  # S0; S1–S6 together; S7 and S8 together
    assert await tutor.store.unanswered("test:") == []


async def test_at_most_max_parallel_requests_reach_ollama(settings: Settings, ollama: FakeOllama) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"max_parallel": 2}))
    channels = [Channel(f"test:dm:{i}") for i in range(6)]
    for channel in channels:
        await collect(await tutor.start(channel, "spanish"))
    ollama.responder = lambda messages: Script("una respuesta corta", delay=0.03)
    replies = [await tutor.reply(c, ANA, "hola") for c in channels]
    await asyncio.gather(*(collect(r) for r in replies))
    assert ollama.max_active == 2
    await tutor.close()


async def test_a_waiting_reply_knows_its_place_in_line(tutor: Tutor, ollama: FakeOllama) -> None:
    channels = [Channel(f"test:dm:{i}") for i in range(3)]
    for channel in channels:
        await collect(await tutor.start(channel, "spanish"))
    ollama.pause()
    replies = [await tutor.reply(c, ANA, "hola") for c in channels]
    tasks = [asyncio.create_task(collect(r)) for r in replies]
    await ollama.wait_for(lambda fake: fake.active == 1, timeout=5)
    assert [r.position for r in replies] == [0, 1, 2]
    ollama.resume()
    await asyncio.gather(*tasks)


async def test_history_survives_a_restart(settings: Settings, ollama: FakeOllama, tmp_path: Path) -> None:
    tutor = await Tutor.open(settings)
    await collect(await tutor.start(DM, "spanish"))
    await collect(await tutor.reply(DM, ANA, "Me llamo Ana"))
    await tutor.close()
    tutor = await Tutor.open(settings)
    await collect(await tutor.reply(DM, ANA, "¿Te acuerdas de mi nombre?"))
    assert any("Me llamo Ana" in m["content"] for m in ollama.chat_requests[-1]["messages"])
    await tutor.close()


async def test_invented_corrections_never_reach_the_learner(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    ollama.script(Script('¡Genial!\n✏️ "yo tiene" → "yo tengo" — irregular\n✏️ "el gato" → "la gata" — invented'))
    text = await collect(await tutor.reply(DM, ANA, "yo tiene un perro"))
    assert '"yo tiene"' in text and "el gato" not in text


async def test_answering_every_message_is_a_channel_setting_that_survives_a_new_language(tutor: Tutor) -> None:
    with pytest.raises(NoLesson):
        await tutor.set_answer_all(CLASS, True)
    await collect(await tutor.start(CLASS, "spanish"))
    assert (await tutor.lesson(CLASS)).answer_all is False  # type: ignore[union-attr]
    assert (await tutor.set_answer_all(CLASS, True)).answer_all is True
    await collect(await tutor.start(CLASS, "french", "B1"))
    lesson = await tutor.lesson(CLASS)
    assert lesson is not None and lesson.language.name == "French" and lesson.answer_all is True


async def test_a_thread_inherits_its_channels_answer_every_message_setting(tutor: Tutor) -> None:
    await collect(await tutor.start(CLASS, "italian"))
    await tutor.set_answer_all(CLASS, True)
    thread = Channel("test:thread:6", group=True, parent=CLASS.id)
    lesson = await tutor.lesson(thread)
    assert lesson is not None and lesson.answer_all is True


async def test_lesson_changes_at_the_same_moment_are_all_kept(tutor: Tutor) -> None:
    await tutor.start(CLASS, "spanish")
    await asyncio.gather(tutor.set_level(CLASS, "C1"), tutor.set_native(CLASS, "german"), tutor.pause(CLASS))
    lesson = await tutor.lesson(CLASS)
    assert lesson is not None and (lesson.level, lesson.native.code, lesson.active) == (Level.C1, "de", False)


# Several model servers


async def _two_servers(settings: Settings, ollama: FakeOllama, other: FakeOllama) -> Tutor:
    return await Tutor.open(settings.model_copy(update={"ollama_host": f"{ollama.url},{other.url}"}))


async def test_a_channel_keeps_to_the_server_that_answered_it(settings: Settings, ollama: FakeOllama) -> None:
    async with FakeOllama(models=("qwen2.5:7b",)) as other:
        tutor = await _two_servers(settings, ollama, other)
        channels = [Channel(f"test:dm:{i}") for i in range(4)]
        await asyncio.gather(*[collect(await tutor.start(c, "spanish")) for c in channels])
        for turn in range(3):
            replies = [await tutor.reply(c, ANA, f"canal {i} turno {turn}") for i, c in enumerate(channels)]
            await asyncio.gather(*[collect(r) for r in replies])

        def turns(server: FakeOllama) -> list[str]:
            return [r["messages"][-1]["content"].split()[1] for r in server.chat_requests if "canal" in str(r)]

        ours, theirs = turns(ollama), turns(other)
        assert len(ours) + len(theirs) == 12
        assert not set(ours) & set(theirs)  # no channel's turns were split between the servers
        assert ours and theirs  # both servers worked
        await tutor.close()


async def test_a_server_that_is_down_is_passed_over_for_another(settings: Settings, ollama: FakeOllama) -> None:
    async with FakeOllama(models=("qwen2.5:7b",)) as other:
        tutor = await _two_servers(settings, ollama, other)
        await collect(await tutor.start(DM, "spanish"))
        home, away = (ollama, other) if ollama.chat_requests else (other, ollama)
        home.script(Script(status=503))
        away.script("¡Hola desde el otro!")
        assert await collect(await tutor.reply(DM, ANA, "hola")) == "¡Hola desde el otro!"
        away.script("¡Sigo aquí!")
        assert await collect(await tutor.reply(DM, ANA, "¿y ahora?")) == "¡Sigo aquí!"  # it stays there
        await tutor.close()


async def test_with_one_server_a_failure_reaches_the_learner(tutor: Tutor, ollama: FakeOllama) -> None:
    await collect(await tutor.start(DM, "spanish"))
    ollama.script(Script(status=503))
    with pytest.raises(ModelFailed):
        await collect(await tutor.reply(DM, ANA, "hola"))
