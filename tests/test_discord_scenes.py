"""Role-play scenes, the placement and memory on Discord, end to end: discord.py's own client against the loopback
fake Discord, a real tutor on a fresh database, the fake Ollama scripted request by request. Slash commands are
found on the synced tree and buttons clicked as real interactions; what the bot says is core's, asked of core."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from bots.discord_bot import Polyglott
from core.commands import OPTIONS
from core.errors import NotTeacher
from core.i18n import Voice, _, _n, render
from core.lesson import Level
from core.placement import Ladder, proposal
from core.scenes import for_level
from core.settings import Settings
from core.tutor import Tutor
from tests.conftest import MODEL
from tests.fake_discord import BOT_TOKEN, EPHEMERAL, GENERAL_CHANNEL_ID, GUILD_ID, STUDENT_ID, TEACHER_ID, FakeDiscord
from tests.fake_ollama import FakeOllama
from tests.test_discord_bot import (
    SCALE,
    actions_of,
    answered,
    command,
    connected,
    core_says,
    learn,
    lesson_of,
    press,
    replies_to,
    run,
    settled,
)

STRING = 3  # Discord's application command option type
SAY = Voice("en")
CAFE = "cafe-order"  # an A1 scene: a waiter, 8 turns
OPENER = "¡Buenos días! Bienvenido al café. ¿Qué desea tomar?"
GOAL_REACHED = "¡Aquí tiene su café y la cuenta! Son tres euros. ¡Gracias! [goal]"
CLOSER = "¡Muy bien hecho! Pediste con cortesía.\n📘 La cuenta, por favor — The bill, please"
JUDGE = "You assess one answer of a "
EXAMINER = "You are a friendly Spanish examiner"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(time_scale=SCALE) as server:
        yield server
    assert server.errors == []


@pytest.fixture
def bot_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "discord_token": SecretStr(BOT_TOKEN),
            "discord_guild_ids": [GUILD_ID],
            "discord_teacher_role": "Teacher",
        }
    )


@pytest.fixture
async def bot(fake: FakeDiscord, tutor: Tutor, bot_settings: Settings) -> AsyncIterator[Polyglott]:
    async with connected(fake, tutor, bot_settings) as client:
        yield client


def learner(user: int) -> str:
    return f"discord:user:{user}"


def system_of(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


async def dm_lesson(fake: FakeDiscord, bot: Polyglott, level: str = "A1") -> int:
    """A Spanish lesson in the student's DM; the DM channel."""
    dm = fake.dm_channel(STUDENT_ID)
    await learn(fake, bot, dm, STUDENT_ID, language="spanish", level=level)
    return dm


async def started(fake: FakeDiscord, bot: Polyglott, channel: int, user: int, scene: str) -> dict[str, Any]:
    """`/roleplay scene:<scene>`, once its card and opener are shown; the card."""
    interaction = await fake.invoke_command("roleplay", {"scene": scene}, channel, user)
    await interaction.wait_response()
    await fake.wait_until(lambda: bool(interaction.followups) and settled(bot))
    assert interaction.original is not None
    return interaction.original


def card_of(tutor: Tutor, scene: str) -> str:
    """How a scene's card begins: its title and its goal, in English."""
    played = tutor.scenes[scene]
    return f"🎭 *{played.title('en')}*\n🎯 {played.goal_for('en')}\n"


def judged(verdicts: Iterable[bool]) -> Callable[[list[dict[str, Any]]], str]:
    """A model whose placement judge gives `verdicts` in turn; any other request gets a task question."""
    left: Iterator[bool] = iter(verdicts)
    questions = itertools.count(1)

    def respond(messages: list[dict[str, Any]]) -> str:
        if str(messages[0]["content"]).startswith(JUDGE):
            return "[managed: yes]" if next(left) else "[managed: no]"
        return f"¡Gracias! Pregunta número {next(questions)}: ¿qué haces hoy?"

    return respond


# The commands


async def test_roleplay_takes_an_optional_scene_described_by_core(fake: FakeDiscord, bot: Polyglott) -> None:
    roleplay = next(c for c in fake.commands[None] if c["name"] == "roleplay")
    (scene,) = roleplay["options"]
    assert (scene["name"], scene["type"], scene.get("required", False)) == ("scene", STRING, False)
    assert scene["description"] == render(OPTIONS["roleplay"]["scene"], "en")
    assert roleplay["contexts"] == [0, 1, 2]


async def test_endscene_placement_and_memory_are_slash_commands_without_options(
    fake: FakeDiscord, bot: Polyglott
) -> None:
    by_name = {c["name"]: c for c in fake.commands[None]}
    for name in ("endscene", "placement", "memory"):
        assert by_name[name].get("options", []) == [] and by_name[name]["contexts"] == [0, 1, 2]


# Scenes


async def test_roleplay_without_a_scene_offers_the_levels_scenes_and_a_surprise_as_buttons(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    dm = await dm_lesson(fake, bot)
    body = await command(fake, "roleplay", {}, dm, STUDENT_ID)
    assert [body["content"]] == await core_says(tutor, run("roleplay"), lesson=("spanish", "A1"))
    scenes = [f"scene:{scene.id}" for scene in for_level(tutor.scenes, Level.A1)]
    assert actions_of(body) == [*scenes, "scene:*"]


async def test_pressing_a_scene_posts_its_card_then_an_opener_in_character(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    dm = await dm_lesson(fake, bot)
    picker = await fake.invoke_command("roleplay", {}, dm, STUDENT_ID)
    await picker.wait_response()
    assert picker.original is not None
    ollama.script(OPENER)
    pressed = await press(fake, bot, picker.original, f"scene:{CAFE}", STUDENT_ID)
    await fake.wait_until(lambda: bool(pressed.followups) and settled(bot))
    assert pressed.original is not None and pressed.original["content"].startswith(card_of(tutor, CAFE))
    assert [m["content"] for m in pressed.followups] == [OPENER]
    system = system_of(ollama.chat_requests[-1])
    assert system.startswith("You are playing a role in a Spanish role-play") and tutor.scenes[CAFE].role in system


async def test_surprise_me_starts_a_scene_of_the_lessons_level(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    dm = await dm_lesson(fake, bot)
    picker = await fake.invoke_command("roleplay", {}, dm, STUDENT_ID)
    await picker.wait_response()
    assert picker.original is not None
    await press(fake, bot, picker.original, "scene:*", STUDENT_ID)
    playing = await tutor.scene(lesson_of(dm, group=False))
    assert playing is not None and playing.level is Level.A1


async def test_a_scene_button_pressed_after_a_restart_still_starts_the_scene(
    fake: FakeDiscord, settings: Settings, bot_settings: Settings
) -> None:
    tutor = await Tutor.open(settings)
    async with connected(fake, tutor, bot_settings) as bot:
        dm = await dm_lesson(fake, bot)
        picker = await fake.invoke_command("roleplay", {}, dm, STUDENT_ID)
        await picker.wait_response()
    await tutor.close()
    assert picker.original is not None
    tutor = await Tutor.open(settings)
    try:
        async with connected(fake, tutor, bot_settings) as bot:
            await press(fake, bot, picker.original, f"scene:{CAFE}", STUDENT_ID)
            playing = await tutor.scene(lesson_of(dm, group=False))
    finally:
        await tutor.close()
    assert playing is not None and playing.id == CAFE


async def test_a_reply_that_reaches_the_goal_hides_the_marker_and_is_followed_by_the_closer_and_the_summary(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    dm = await dm_lesson(fake, bot)
    await started(fake, bot, dm, STUDENT_ID, CAFE)
    ollama.script(GOAL_REACHED, CLOSER)
    before = len(fake.bot_messages(dm))
    await fake.send_dm(STUDENT_ID, "Un café y la cuenta, por favor.")
    await fake.wait_until(lambda: len(fake.bot_messages(dm)) == before + 3 and settled(bot))
    reply, closer, summary = fake.channel_texts(dm)[before:]
    assert reply == GOAL_REACHED.removesuffix(" [goal]")
    assert closer == CLOSER
    goal = SAY(_("Goal reached: {goal}", goal=tutor.scenes[CAFE].goal_for("en")))
    cards = SAY(_n("{n} phrase is now a card for /review.", "{n} phrases are now cards for /review.", 1))
    assert summary == f"🎯 {goal}\n\n{cards}"
    assert await tutor.scene(lesson_of(dm, group=False)) is None


async def test_the_closer_is_asked_out_of_character(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    dm = await dm_lesson(fake, bot)
    await started(fake, bot, dm, STUDENT_ID, CAFE)
    ollama.script(GOAL_REACHED, CLOSER)
    await answered(fake, bot, await fake.send_dm(STUDENT_ID, "Un café y la cuenta, por favor."))
    await fake.wait_until(lambda: fake.channel_texts(dm)[-2:-1] == [CLOSER] and settled(bot))
    assert system_of(ollama.chat_requests[-1]).startswith("You are a warm Spanish tutor, out of character now.")


async def test_a_correction_in_a_scene_stays_out_of_the_chat_until_the_summary(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    dm = await dm_lesson(fake, bot)
    await started(fake, bot, dm, STUDENT_ID, CAFE)
    in_character = "Muy bien, un café con leche. ¿Algo más?"
    correction = '✏️ "una café" → "un café" (agreement) — Café is masculine.'
    ollama.script(f"{in_character}\n{correction}")
    assert await answered(fake, bot, await fake.send_dm(STUDENT_ID, "Quiero una café con leche.")) == in_character
    ended = await fake.invoke_command("endscene", {}, dm, STUDENT_ID)
    await fake.wait_until(lambda: bool(ended.followups) and settled(bot))
    summary = ended.followups[-1]["content"]
    assert f"{SAY(_('The corrections that matter most:'))}\n{correction}" in summary


async def test_a_student_cannot_start_a_scene_in_a_server_channel_and_is_told_privately(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    body = await command(fake, "roleplay", {"scene": "hotel"}, GENERAL_CHANNEL_ID, STUDENT_ID)
    assert (body["content"], body["flags"]) == (render(NotTeacher().message, "en"), EPHEMERAL)
    assert await tutor.scene(lesson_of(GENERAL_CHANNEL_ID)) is None


async def test_a_teacher_starts_a_scene_for_the_class_by_its_name(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    card = await started(fake, bot, GENERAL_CHANNEL_ID, TEACHER_ID, "hotel")
    assert card["content"].startswith(card_of(tutor, "hotel-check-in")) and not card["flags"] & EPHEMERAL
    playing = await tutor.scene(lesson_of(GENERAL_CHANNEL_ID))
    assert playing is not None and playing.id == "hotel-check-in"


async def test_endscene_without_a_scene_says_so(fake: FakeDiscord, bot: Polyglott, tutor: Tutor) -> None:
    dm = await dm_lesson(fake, bot)
    body = await command(fake, "endscene", {}, dm, STUDENT_ID)
    assert [body["content"]] == await core_says(tutor, run("endscene"), lesson=("spanish", "A1"))


# The placement


async def test_the_first_dm_lesson_offers_a_placement_whose_button_starts_it(
    fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama
) -> None:
    opener = await learn(fake, bot, fake.dm_channel(STUDENT_ID), STUDENT_ID, language="spanish")
    await fake.wait_until(lambda: bool(opener["components"]))
    assert actions_of(opener)[-1] == "placement"
    pressed = await press(fake, bot, opener, "placement", STUDENT_ID)
    await fake.wait_until(lambda: bool(pressed.followups) and settled(bot))
    assert system_of(ollama.chat_requests[-1]).startswith(EXAMINER)


async def test_placement_in_a_dm_proposes_the_level_the_judged_answers_reach_and_its_button_sets_it(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor, ollama: FakeOllama
) -> None:
    verdicts = [True, True, True, False, True, False]  # A1✓ A2✓ B1✓ B2✗ B1✓ B2✗: six tasks, B1
    dm = await dm_lesson(fake, bot, level="A2")
    ollama.respond_as(MODEL, judged(verdicts))
    interaction = await fake.invoke_command("placement", {}, dm, STUDENT_ID)
    await interaction.wait_response()
    await fake.wait_until(lambda: bool(interaction.followups) and settled(bot))
    for n in range(len(verdicts)):
        last = await fake.send_dm(STUDENT_ID, f"Respuesta {n}: me llamo Sam y vivo en Madrid.")
        await answered(fake, bot, last)
    ladder = Ladder()
    for verdict in verdicts:
        ladder.ask()
        ladder.judged(verdict)
    expected = proposal(
        Level.B1, tuple(SAY(t.can) for t in ladder.managed()), tuple(SAY(t.can) for t in ladder.missed()), SAY
    )
    await fake.wait_until(lambda: len(replies_to(fake, last)) == 2 and settled(bot))
    shown, offer = replies_to(fake, last)
    assert shown["content"] == expected
    assert offer["content"] == SAY(_("Shall I write at {level} from now on?", level="B1"))
    await press(fake, bot, offer, "level:es:B1", STUDENT_ID)
    lesson = await tutor.lesson(lesson_of(dm, group=False))
    assert lesson is not None and lesson.level == Level.B1


async def test_placement_in_a_server_channel_is_refused_privately(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    body = await command(fake, "placement", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
    assert [body["content"]] == await core_says(tutor, run("placement"), group=True, lesson=("spanish", "A2"))
    assert body["flags"] & EPHEMERAL


# Memory


async def test_memory_in_a_server_channel_is_ephemeral_and_its_bin_button_deletes_the_fact(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await tutor.store.remember(learner(STUDENT_ID), "Sam", "plays the guitar")
    (fact,) = await tutor.store.facts(learner(STUDENT_ID))
    interaction = await fake.invoke_command("memory", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
    body = (await interaction.wait_response())["data"]
    assert body["flags"] & EPHEMERAL and "1. plays the guitar" in body["content"]
    assert interaction.original is not None and actions_of(interaction.original) == [f"memory:{fact.id}"]
    pressed = await press(fake, bot, interaction.original, f"memory:{fact.id}", STUDENT_ID)
    assert pressed.response_type == 7 and interaction.original["flags"] & EPHEMERAL  # the list, shown anew
    assert await tutor.store.facts(learner(STUDENT_ID)) == []
    assert [interaction.original["content"]] == await core_says(tutor, run("memory"), group=True)


async def test_the_bin_button_on_a_memory_list_sent_to_the_dms_replaces_that_list(
    fake: FakeDiscord, bot: Polyglott, tutor: Tutor
) -> None:
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    await tutor.store.remember(learner(STUDENT_ID), "Sam", "plays the guitar")
    (fact,) = await tutor.store.facts(learner(STUDENT_ID))
    dm = fake.dm_channel(STUDENT_ID)
    await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "/memory", mentions_bot=True)
    await fake.wait_until(lambda: bool(fake.bot_messages(dm)) and settled(bot))
    (listed,) = fake.bot_messages(dm)
    pressed = await press(fake, bot, listed, f"memory:{fact.id}", STUDENT_ID)
    assert pressed.response_type == 7 and len(fake.bot_messages(dm, include_ephemeral=True)) == 1
    assert [listed["content"]] == await core_says(tutor, run("memory"))


async def test_a_fact_told_in_a_mention_is_remembered(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, ollama: FakeOllama
) -> None:
    async with connected(fake, tutor, bot_settings, discord_message_content=True) as bot:
        await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
        ollama.script("¡Qué bien! ¿Qué música tocas?\n[remember: Sam: plays the guitar]")
        message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Toco la guitarra.", mentions_bot=True)
        assert await answered(fake, bot, message) == "¡Qué bien! ¿Qué música tocas?"
    assert [f.fact for f in await tutor.store.facts(learner(STUDENT_ID))] == ["plays the guitar"]


async def test_a_fact_only_heard_in_a_classroom_that_answers_all_is_not_remembered(
    fake: FakeDiscord, tutor: Tutor, bot_settings: Settings, ollama: FakeOllama
) -> None:
    async with connected(fake, tutor, bot_settings, discord_message_content=True) as bot:
        await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
        await command(fake, "classroom", {"mode": "on"}, GENERAL_CHANNEL_ID, TEACHER_ID)
        ollama.script("¡Qué bien! ¿Qué música tocas?\n[remember: Sam: plays the guitar]")
        message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Toco la guitarra.")
        assert await answered(fake, bot, message) == "¡Qué bien! ¿Qué música tocas?"
    assert await tutor.store.facts(learner(STUDENT_ID)) == []


async def test_roleplay_autocompletes_scenes_by_title_in_the_users_language(fake: FakeDiscord, bot: Polyglott) -> None:
    choices = await fake.autocomplete(
        "roleplay", {"scene": "cafet"}, "scene", GENERAL_CHANNEL_ID, STUDENT_ID, locale="es"
    )
    assert (choices[0]["name"], choices[0]["value"]) == ("A1 · En la cafetería", "cafe-order")


async def test_an_empty_scene_autocomplete_offers_the_easiest_first_within_discords_limit(
    fake: FakeDiscord, bot: Polyglott
) -> None:
    choices = await fake.autocomplete("roleplay", {"scene": ""}, "scene", GENERAL_CHANNEL_ID, STUDENT_ID)
    assert len(choices) == 25 and all(choice["name"].startswith("A1 · ") for choice in choices[:5])
