"""Role-play scenes, the placement and the tutor's memory on Telegram, end to end: the real python-telegram-bot
Application against the loopback fake Bot API, the real tutor on a fresh database, the fake Ollama scripted
with what a model would write (markers included). What the bot says is core's, rendered; expected texts are
asked of core itself, never copied.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from bots.telegram_html import to_html
from core.commands import COMMANDS
from core.deck import Kind
from core.errors import NotTeacher
from core.i18n import Msg, Voice, _, _n, render
from core.lesson import Level
from core.placement import Ladder, proposal
from core.review import front
from core.scenes import Scene, find, for_level
from core.settings import Settings
from core.tutor import Tutor
from tests.conftest import MODEL
from tests.fake_ollama import FakeOllama
from tests.fake_telegram import BotMessage, FakeTelegram, parse_html
from tests.test_telegram_bot import (
    ADMIN,
    CLASS,
    CREATOR,
    DM,
    GROUP,
    SCALE,
    STUDENT,
    USER,
    answer_to,
    buttons,
    lesson,
    press,
    running,
    sent,
    shown,
)

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

WITHIN = 10.0  # seconds: a bound for a slow machine, not a pace
POLL = 0.02  # seconds between looks at the database
CAFE = "cafe-order"
OPENER = "Buenos días. ¿Qué le pongo?"
ORDER = "Un café con leche y una tostada, por favor. La cuenta, por favor."
SERVED = "Aquí tiene. Son tres euros. ¡Gracias!"
CLOSER = (
    "¡Muy bien pedido! Has hablado con mucha seguridad.\n📘 la cuenta — the bill\n📘 un café con leche — a white coffee"
)
SAY = Voice("en")


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    # Group Privacy off: the bot hears every group message, as a classroom that answers all needs.
    async with FakeTelegram(time_scale=SCALE, require_start=True, reads_all_group_messages=True) as fake:
        fake.set_admins(GROUP, creator=CREATOR, admins=[ADMIN, fake.bot_id])
        yield fake


@pytest.fixture
def settings(settings: Settings, telegram: FakeTelegram) -> Settings:
    return settings.model_copy(update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url})


@pytest.fixture
async def bot(tutor: Tutor, settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    async with running(tutor, settings, telegram):
        yield


def learner(user: int) -> str:
    return f"telegram:user:{user}"


def said(message: Msg) -> str:
    """One of core's messages as an English-speaking learner sees it."""
    return shown(message, "en")


def markdown(text: str) -> str:
    """Markdown as Telegram shows it."""
    return parse_html(to_html(text))[0]


def labels(message: BotMessage | None) -> list[str]:
    assert message is not None and message.reply_markup is not None
    return [b["text"] for row in message.reply_markup["inline_keyboard"] for b in row]


def everything_shown(telegram: FakeTelegram, chat: int) -> list[str]:
    """Every text the bot showed in a chat: messages now and before each edit, and every draft."""
    texts = []
    for message in sent(telegram, chat):
        texts += [message.plain, message.text, *(text for text, _mode in message.history)]
    return texts + telegram.draft_texts(chat)


def with_text(telegram: FakeTelegram, chat: int, part: str) -> BotMessage | None:
    """The bot's newest message in a chat that shows `part`."""
    return next((m for m in reversed(sent(telegram, chat)) if part in m.plain), None)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll a check on the database until it holds, for up to `WITHIN` seconds."""
    for _attempt in range(int(WITHIN / POLL)):
        if await check():
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"not within {WITHIN} s")


async def at_least(telegram: FakeTelegram, chat: int, count: int) -> None:
    """Until the bot has sent `count` messages in a chat."""
    await telegram.wait_for(lambda: len(telegram.chat_texts(chat)) >= count, WITHIN)


def system_prompt(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def scene_card(scene: Scene) -> str:
    """The start of the card a scene opens with, as Telegram shows it: its title, then its goal."""
    return f"🎭 {scene.title('en')}\n🎯 {scene.goal_for('en')}"


async def scene_begun(telegram: FakeTelegram, ollama: FakeOllama, chat: int, user: int, scene: str = CAFE) -> None:
    """`/roleplay <scene>` from `user`; once its opener stands."""
    ollama.script(OPENER)
    telegram.add_command(chat, user, "roleplay", scene, at_bot=chat < 0)
    await telegram.wait_for(lambda: OPENER in telegram.chat_texts(chat), WITHIN)


# The command menu


@pytest.mark.usefixtures("bot")
async def test_the_scene_placement_and_memory_commands_are_in_the_command_menu(telegram: FakeTelegram) -> None:
    await telegram.wait_for(lambda: bool(telegram.my_commands()), WITHIN)
    menu = {command["command"]: command["description"] for command in telegram.my_commands()}
    specs = {spec.name: spec for spec in COMMANDS}
    for name in ("roleplay", "endscene", "placement", "memory"):
        assert menu[name] == render(specs[name].description, "en")


# Picking and starting a scene


@pytest.mark.usefixtures("bot")
async def test_roleplay_in_a_private_chat_shows_the_levels_scenes_and_a_surprise_button(
    telegram: FakeTelegram, tutor: Tutor
) -> None:
    await lesson(tutor, DM, "A1")
    telegram.add_command(USER, USER, "roleplay")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None, WITHIN)
    picker = telegram.last_message(USER)
    scenes = for_level(tutor.scenes, Level.A1)
    assert buttons(picker) == [f"scene:{scene.id}" for scene in scenes] + ["scene:*"]
    assert labels(picker) == [scene.title("en") for scene in scenes] + [render(_("🎲 Surprise me"), "en")]
    assert picker is not None and picker.plain == said(
        _("Which scene shall we play? Scenes for level {level}:", level="A1")
    )


@pytest.mark.usefixtures("bot")
async def test_pressing_a_scene_posts_its_card_then_the_opener_asked_in_character(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM, "A1")
    telegram.add_command(USER, USER, "roleplay")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None, WITHIN)
    picker = telegram.last_message(USER)
    ollama.script(OPENER)
    press(telegram, USER, USER, picker, f"scene:{CAFE}")
    await telegram.wait_for(lambda: OPENER in telegram.chat_texts(USER), WITHIN)
    scene = tutor.scenes[CAFE]
    _picker, card, opener = telegram.chat_texts(USER)
    assert card.startswith(scene_card(scene)) and opener == OPENER
    asked = system_prompt(ollama.chat_requests[-1])
    assert asked.startswith("You are playing a role in a Spanish role-play")
    assert f"Your role: {scene.role}." in asked and scene.goal in asked


@pytest.mark.usefixtures("bot")
async def test_roleplay_with_a_name_starts_the_scene_it_matches(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM, "A1")
    await scene_begun(telegram, ollama, USER, USER, "café")
    scene = find(tutor.scenes, "café")
    assert scene is not None and scene.id == CAFE
    card, opener = telegram.chat_texts(USER)
    assert card.startswith(scene_card(scene)) and opener == OPENER
    playing = await tutor.scene(DM)
    assert playing is not None and playing.id == CAFE


@pytest.mark.usefixtures("bot")
async def test_the_surprise_button_starts_a_scene_of_the_lessons_level(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM, "A1")
    telegram.add_command(USER, USER, "roleplay")
    await telegram.wait_for(lambda: telegram.last_message(USER) is not None, WITHIN)
    ollama.script(OPENER)
    press(telegram, USER, USER, telegram.last_message(USER), "scene:*")
    await telegram.wait_for(lambda: OPENER in telegram.chat_texts(USER), WITHIN)
    playing = await tutor.scene(DM)
    assert playing is not None and playing.level == Level.A1
    assert telegram.chat_texts(USER)[1].startswith(scene_card(playing))


# Playing a scene to its end


@pytest.mark.usefixtures("bot")
async def test_a_reply_that_reaches_the_goal_hides_the_marker_and_is_followed_by_the_closer_and_goal_reached(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM, "A1")
    await scene_begun(telegram, ollama, USER, USER)
    scene = tutor.scenes[CAFE]
    ollama.script(f"{SERVED}\n[goal]", CLOSER)
    telegram.add_private_message(USER, ORDER)
    reached = said(_("Goal reached: {goal}", goal=scene.goal_for("en")))
    await telegram.wait_for(lambda: with_text(telegram, USER, reached) is not None, WITHIN)
    _card, _opener, served, closer, summary = telegram.chat_texts(USER)
    assert (served, closer) == (SERVED, CLOSER)
    assert summary.startswith(f"🎯 {reached}")
    assert said(_n("{n} phrase is now a card for /review.", "{n} phrases are now cards for /review.", 2)) in summary
    assert not any("[goal" in text for text in everything_shown(telegram, USER))
    assert system_prompt(ollama.chat_requests[-1]).startswith("You are a warm Spanish tutor, out of character now.")
    assert await tutor.scene(DM) is None


@pytest.mark.usefixtures("bot")
async def test_the_closers_phrases_become_the_learners_cards(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM, "A1")
    await scene_begun(telegram, ollama, USER, USER)
    ollama.script(f"{SERVED}\n[goal]", CLOSER)
    telegram.add_private_message(USER, ORDER)

    async def carded() -> bool:
        return len(await tutor.store.cards_of(learner(USER))) == 2

    await eventually(carded)
    cards = await tutor.store.cards_of(learner(USER))
    assert [(c.kind, c.right, c.meaning, c.context) for c in cards] == [
        (Kind.WORD, "la cuenta", "the bill", CAFE),
        (Kind.WORD, "un café con leche", "a white coffee", CAFE),
    ]
    telegram.add_command(USER, USER, "review")  # and they come up in /review
    asked = markdown(front(cards[0], SAY))
    await telegram.wait_for(lambda: with_text(telegram, USER, asked) is not None, WITHIN)
    shown_card = with_text(telegram, USER, asked)
    assert buttons(shown_card)[0].startswith(f"rv:a:{cards[0].id}:")


@pytest.mark.usefixtures("bot")
async def test_a_correction_in_a_scene_is_hidden_in_the_scene_and_shown_in_the_summary(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM, "A1")
    await scene_begun(telegram, ollama, USER, USER)
    in_character = "¡Vaya, qué cansado está! Un café bien fuerte, entonces. ¿Algo más?"
    ollama.script(f'{in_character}\n✏️ "soy" → "estoy" (ser/estar) — Un estado pasajero: estar.')
    telegram.add_private_message(USER, "Hola, yo soy cansado. Un café, por favor.")
    await telegram.wait_for(lambda: in_character in telegram.chat_texts(USER), WITHIN)
    assert telegram.chat_texts(USER)[-1] == in_character
    assert not any("estoy" in text for text in everything_shown(telegram, USER))
    ollama.script(CLOSER)
    telegram.add_command(USER, USER, "endscene")
    heading = said(_("The corrections that matter most:"))
    await telegram.wait_for(lambda: with_text(telegram, USER, heading) is not None, WITHIN)
    summary = with_text(telegram, USER, heading)
    assert summary is not None and '✏️ "soy" → "estoy"' in summary.plain.partition(heading)[2]


@pytest.mark.usefixtures("bot")
async def test_endscene_closes_the_scene_with_goal_not_reached(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM, "A1")
    await scene_begun(telegram, ollama, USER, USER)
    scene = tutor.scenes[CAFE]
    ollama.script(CLOSER)
    telegram.add_command(USER, USER, "endscene")
    missed = said(
        _(
            "Goal not reached this time: {goal} Try again with {command}.",
            goal=scene.goal_for("en"),
            command=f"/roleplay {CAFE}",
        )
    )
    await telegram.wait_for(lambda: with_text(telegram, USER, missed) is not None, WITHIN)
    assert telegram.chat_texts(USER)[2] == CLOSER
    assert "did not reach the goal this time" in system_prompt(ollama.chat_requests[-1])
    assert await tutor.scene(DM) is None


@pytest.mark.usefixtures("bot")
async def test_endscene_without_a_scene_says_none_is_being_played(telegram: FakeTelegram, tutor: Tutor) -> None:
    await lesson(tutor, DM, "A1")
    telegram.add_command(USER, USER, "endscene")
    none = said(_("No scene is being played here. /roleplay starts one."))
    await telegram.wait_for(lambda: telegram.chat_texts(USER) == [none], WITHIN)


# A scene in a group


@pytest.mark.usefixtures("bot")
async def test_a_students_roleplay_in_a_group_is_refused_and_no_scene_starts(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS, "A1")
    asked = len(ollama.chat_requests)
    refused = telegram.add_command(GROUP, STUDENT, "roleplay", CAFE, at_bot=True)
    await telegram.wait_for(lambda: answer_to(telegram, GROUP, refused) is not None, WITHIN)
    answer = answer_to(telegram, GROUP, refused)
    assert answer is not None and answer.plain == said(NotTeacher().message)
    assert await tutor.scene(CLASS) is None and len(ollama.chat_requests) == asked


@pytest.mark.usefixtures("bot")
async def test_a_scene_an_admin_starts_in_a_group_answers_the_students_by_name(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS, "A1")
    await scene_begun(telegram, ollama, GROUP, ADMIN)
    scene = tutor.scenes[CAFE]
    assert telegram.chat_texts(GROUP)[0].startswith(scene_card(scene))
    ollama.script(SERVED)
    order = telegram.add_mention(GROUP, STUDENT, ORDER, first_name="Ana")
    await telegram.wait_for(lambda: (m := answer_to(telegram, GROUP, order)) is not None and m.plain == SERVED, WITHIN)
    messages = ollama.chat_requests[-1]["messages"]
    assert messages[0]["content"].startswith("You are playing a role in a Spanish role-play with a class of students")
    assert messages[-1]["role"] == "user" and messages[-1]["content"].startswith(f"Ana: {ORDER}")


# The placement


@pytest.mark.usefixtures("bot")
async def test_a_placement_proposes_the_level_the_judged_answers_reach_and_its_button_sets_it(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)  # at A2
    verdicts = ["yes", "yes", "yes", "no", "yes", "no"]
    judged = iter(verdicts)

    def model(messages: list[dict[str, Any]]) -> str:
        if str(messages[0]["content"]).startswith("You assess one answer"):
            return f"[managed: {next(judged)}]"
        return "¡Gracias! Ahora cuéntame otra cosa, por favor."

    ollama.respond_as(MODEL, model)
    telegram.add_command(USER, USER, "placement")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2, WITHIN)
    for turn in range(len(verdicts)):
        telegram.add_private_message(USER, f"Respuesta número {turn + 1}: me llamo Ana y vivo en Lyon.")
        await at_least(telegram, USER, 3 + turn)  # the intro, the first task, then one message per answer
    await at_least(telegram, USER, 9)  # the last answer: the proposal and the offer
    assert len(telegram.chat_texts(USER)) == 9

    ladder = Ladder()  # the same answers, judged the same, up core's own ladder
    for verdict in verdicts:
        ladder.ask()
        ladder.judged(verdict == "yes")
    assert ladder.done and ladder.result() == Level.B1
    expected = proposal(
        ladder.result(), tuple(SAY(t.can) for t in ladder.managed()), tuple(SAY(t.can) for t in ladder.missed()), SAY
    )
    placed, offer = telegram.chat_texts(USER)[-2:]
    assert placed == markdown(expected)
    assert offer == said(_("Shall I write at {level} from now on?", level="B1"))
    judges = [r for r in ollama.chat_requests if system_prompt(r).startswith("You assess one answer")]
    assert len(judges) == len(verdicts)

    offered = telegram.last_message(USER)
    assert buttons(offered) == ["level:es:B1"] and labels(offered) == [
        render(_("Set my level to {level}", level="B1"), "en")
    ]
    press(telegram, USER, USER, offered, "level:es:B1")

    async def set_to_b1() -> bool:
        now = await tutor.lesson(DM)
        return now is not None and now.level == Level.B1

    await eventually(set_to_b1)


@pytest.mark.usefixtures("bot")
async def test_placement_in_a_group_is_refused_with_a_note_to_write_privately(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    asked = len(ollama.chat_requests)
    update = telegram.add_command(GROUP, STUDENT, "placement", at_bot=True)
    refusal = said(_("The placement is a chat for two: write /placement to me privately."))
    await telegram.wait_for(
        lambda: (m := answer_to(telegram, GROUP, update)) is not None and m.plain == refusal, WITHIN
    )
    assert len(ollama.chat_requests) == asked and await tutor.store.stage(CLASS.id) is None


@pytest.mark.usefixtures("bot")
async def test_the_first_learn_in_a_private_chat_offers_find_my_level_and_the_second_does_not(
    telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    ollama.script("¡Hola! ¿Qué tal?", "¡Hola otra vez! ¿Seguimos?")
    telegram.add_command(USER, USER, "learn", "spanish")
    await telegram.wait_for(lambda: (m := telegram.last_message(USER)) is not None and m.reply_markup is not None)
    first = telegram.last_message(USER)
    assert buttons(first)[-1] == "placement" and labels(first)[-1] == render(_("🧭 Not sure? Find my level"), "en")
    telegram.add_command(USER, USER, "learn", "spanish B1")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2 and bool(sent(telegram, USER)[1].reply_markup))
    assert "placement" not in buttons(sent(telegram, USER)[1])


# Memory


@pytest.mark.usefixtures("bot")
async def test_a_remembered_fact_is_not_shown_and_memory_lists_it_and_deletes_it_with_its_button(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, DM)
    answer = "¡Qué bien! ¿Qué música tocas?"
    ollama.script(f"{answer}\n[remember: plays the guitar]\n[remember: lives in Lyon]")
    telegram.add_private_message(USER, "Toco la guitarra y vivo en Lyon.")

    async def remembered() -> bool:
        return len(await tutor.store.facts(learner(USER))) == 2

    await telegram.wait_for(lambda: telegram.chat_texts(USER) == [answer], WITHIN)
    await eventually(remembered)
    assert not any("remember" in text for text in everything_shown(telegram, USER))
    guitar, lyon = await tutor.store.facts(learner(USER))

    telegram.add_command(USER, USER, "memory")
    await telegram.wait_for(lambda: len(telegram.chat_texts(USER)) == 2, WITHIN)
    listed = telegram.last_message(USER)
    assert listed is not None and "1. plays the guitar\n2. lives in Lyon" in listed.plain
    assert buttons(listed) == [f"memory:{guitar.id}", f"memory:{lyon.id}"] and labels(listed) == ["🗑 1", "🗑 2"]

    press(telegram, USER, USER, listed, f"memory:{guitar.id}")
    await telegram.wait_for(lambda: "guitar" not in listed.plain, WITHIN)
    assert "1. lives in Lyon" in listed.plain and buttons(listed) == [f"memory:{lyon.id}"]
    assert [f.fact for f in await tutor.store.facts(learner(USER))] == ["lives in Lyon"]
    assert len(telegram.chat_texts(USER)) == 2  # the list changed in place


@pytest.mark.usefixtures("bot")
async def test_in_a_classroom_that_answers_all_only_a_fact_said_to_the_bot_is_remembered(
    telegram: FakeTelegram, tutor: Tutor, ollama: FakeOllama
) -> None:
    await lesson(tutor, CLASS)
    await tutor.set_answer_all(CLASS, True)
    heard = "¡Genial, Ana!"
    ollama.script(f"{heard}\n[remember: Ana: plays the guitar]")
    overheard = telegram.add_group_message(GROUP, STUDENT, "Toco la guitarra.", first_name="Ana")
    await telegram.wait_for(
        lambda: (m := answer_to(telegram, GROUP, overheard)) is not None and m.plain == heard, WITHIN
    )
    told = "¡Qué bonito, Ana!"
    ollama.script(f"{told}\n[remember: Ana: lives in Lyon]")
    mention = telegram.add_mention(GROUP, STUDENT, "Vivo en Lyon.", first_name="Ana")
    await telegram.wait_for(lambda: (m := answer_to(telegram, GROUP, mention)) is not None and m.plain == told, WITHIN)

    async def remembered() -> bool:
        return bool(await tutor.store.facts(learner(STUDENT)))

    await eventually(remembered)
    assert [f.fact for f in await tutor.store.facts(learner(STUDENT))] == ["lives in Lyon"]
