"""Every command, button and message of the conversation layer, once, in core, without a platform.

Outcomes are recorded by `tests.recording.Recorder`; expected words are core's own messages rendered in
the reader's language (`render(msg, lang)`), so these tests pin what is said and in which language, not a
copy of the English.
"""

from __future__ import annotations

import asyncio
import csv
import io

import pytest

from core.commands import COMMANDS
from core.conversation import (
    CSV_COLUMNS,
    HELP_GROUP,
    HELP_INTRO,
    HELP_QUIT,
    NO_LESSON_GROUP,
    PICK_LANGUAGE,
    PRIVACY,
    WELCOME_PRIVATE,
    Conversation,
    Notice,
    Origin,
    describe,
    level_guide,
)
from core.errors import LessonPaused, NotTeacher, OllamaUnavailable, UnknownLanguage
from core.i18n import Msg, Voice, _, _n, language_name, render
from core.languages import CATALOG, POPULAR, by_code, find_language
from core.lesson import Lesson, Level
from core.outcome import ACTION_BYTES, OPENS_BYTES, Button, Buttons, Note
from core.settings import Settings
from core.store import Status
from core.tutor import Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.recording import Recorder

DM = Channel("test:dm:ana")
OTHER_DM = Channel("test:dm:eva")
CLASS = Channel("test:class:1", group=True)
THREAD = Channel("test:class:1:7", group=True, parent=CLASS.id)
ANA = Learner("test:user:ana", "Ana")
BEN = Learner("test:user:ben", "Ben")
EN = Voice("en")
SPANISH, FRENCH, GERMAN = by_code("es"), by_code("fr"), by_code("de")


def person(
    channel: Channel = DM,
    learner: Learner = ANA,
    *,
    locale: str | None = None,
    teacher: bool = True,
    platform: str = "telegram",
    hears_all: bool = False,
) -> Origin:
    async def may_teach() -> bool:
        return teacher

    return Origin(channel, learner, platform, locale, may_teach, hears_all)


def student(channel: Channel = CLASS, learner: Learner = BEN, *, locale: str | None = None) -> Origin:
    return person(channel, learner, locale=locale, teacher=False)


@pytest.fixture
def conversation(tutor: Tutor) -> Conversation:
    return Conversation(tutor)


async def command(conversation: Conversation, origin: Origin, line: str, surface: Recorder | None = None) -> Recorder:
    """Send `/name args` as an adapter would, and return what the person saw."""
    name, *args = line.removeprefix("/").split()
    surface = surface or Recorder()
    await conversation.command(origin, name, args, surface)
    return surface


async def press(conversation: Conversation, origin: Origin, action: str, surface: Recorder | None = None) -> Recorder:
    surface = surface or Recorder()
    await conversation.press(origin, action, surface)
    return surface


async def write(conversation: Conversation, origin: Origin, text: str, surface: Recorder | None = None) -> Recorder:
    surface = surface or Recorder()
    await conversation.message(origin, text, surface)
    return surface


def flat(buttons: Buttons) -> list[Button]:
    return [button for row in buttons for button in row]


def actions(buttons: Buttons) -> list[str]:
    return [button.action for button in flat(buttons)]


def german(message: Msg) -> str:
    """`message` in German, proven to be German: it must differ from the English."""
    text = render(message, "de")
    assert text != render(message, "en"), f"no German translation yet for {message.id!r}"
    return text


async def lesson_of(conversation: Conversation, channel: Channel) -> Lesson:
    lesson = await conversation.tutor.lesson(channel)
    assert lesson is not None
    return lesson


def level_set(level: Level) -> Msg:
    return _(
        "Level set to {level} ({name}). I'll write at that level from now on.", level=level.value, name=level.label
    )


async def class_with_a_lesson(conversation: Conversation, *, locale: str | None = None) -> None:
    """A classroom learning Spanish at A2, started by its teacher Ana."""
    await command(conversation, person(CLASS, ANA, locale=locale), "/learn spanish")


# /learn


async def test_learn_spanish_starts_at_once_at_a2_with_the_six_levels_on_the_opener(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    ollama.script("¡Hola! Empezamos.")
    shown = await command(conversation, person(), "/learn spanish")
    assert shown.notes == []
    assert shown.last.text == "¡Hola! Empezamos."
    assert [b.label for b in flat(shown.last.buttons)][:6] == ["A1", "✓ A2", "B1", "B2", "C1", "C2"]
    assert actions(shown.last.buttons) == [*(f"level:es:{level.value}" for level in Level), "placement"]
    assert (await lesson_of(conversation, DM)).level == Level.A2


async def test_learn_again_starts_at_the_level_the_channel_last_used_for_that_language(
    conversation: Conversation,
) -> None:
    await command(conversation, person(), "/learn spanish B1")
    await command(conversation, person(), "/learn french")
    shown = await command(conversation, person(), "/learn spanish")
    assert (await lesson_of(conversation, DM)).level == Level.B1
    assert "✓ B1" in [b.label for b in flat(shown.last.buttons)]


async def test_another_language_starts_at_a2_whatever_the_level_used_before(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn spanish C1")
    await command(conversation, person(), "/learn french")
    lesson = await lesson_of(conversation, DM)
    assert (lesson.language, lesson.level) == (FRENCH, Level.A2)


async def test_the_remembered_level_belongs_to_the_channel(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn spanish C1")
    await command(conversation, person(OTHER_DM), "/learn spanish")
    assert (await lesson_of(conversation, OTHER_DM)).level == Level.A2


async def test_learn_with_a_level_starts_at_that_level(conversation: Conversation) -> None:
    shown = await command(conversation, person(), "/learn spanish B1")
    assert (await lesson_of(conversation, DM)).level == Level.B1
    assert "✓ B1" in [b.label for b in flat(shown.last.buttons)]


async def test_learn_alone_offers_the_popular_languages(conversation: Conversation) -> None:
    shown = await command(conversation, person(), "/learn")
    assert [note.text for note in shown.notes] == [EN(PICK_LANGUAGE)]
    assert actions(shown.notes[0].buttons) == [f"learn:{code}" for code in POPULAR]
    assert await conversation.tutor.lesson(DM) is None


async def test_learn_alone_offers_the_current_language_first(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn japanese")
    shown = await command(conversation, person(), "/learn")
    offered = actions(shown.notes[0].buttons)
    assert offered[0] == "learn:ja"
    assert offered.count("learn:ja") == 1
    assert set(offered) == {f"learn:{code}" for code in POPULAR}


async def test_learn_alone_says_when_the_lesson_is_paused(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn spanish")
    await command(conversation, person(), "/stop")
    shown = await command(conversation, person(), "/learn")
    assert [note.text for note in shown.notes] == [EN(_("The lesson is paused.")) + " " + EN(PICK_LANGUAGE)]
    assert actions(shown.notes[0].buttons)[0] == "learn:es"


async def test_learn_with_only_a_level_switches_the_current_lesson(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn german")
    shown = await command(conversation, person(), "/learn B1")
    lesson = await lesson_of(conversation, DM)
    assert (lesson.language, lesson.level) == (GERMAN, Level.B1)
    assert "✓ B1" in [b.label for b in flat(shown.last.buttons)]


async def test_an_unknown_language_is_answered_with_suggestion_buttons(conversation: Conversation) -> None:
    with pytest.raises(UnknownLanguage) as expected:
        find_language("chin")
    shown = await command(conversation, person(), "/learn chin")
    assert [note.text for note in shown.notes] == [EN(expected.value.message)]
    assert actions(shown.notes[0].buttons) == [f"learn:{lang.code}" for lang in expected.value.suggestions]
    assert "learn:zh" in actions(shown.notes[0].buttons)
    assert await conversation.tutor.lesson(DM) is None


async def test_a_thread_without_a_lesson_starts_from_its_parents(conversation: Conversation) -> None:
    await command(conversation, person(CLASS), "/learn spanish B2")
    shown = await command(conversation, student(THREAD), "/status")
    lesson = await lesson_of(conversation, THREAD)
    assert (lesson.channel, lesson.language, lesson.level) == (THREAD.id, SPANISH, Level.B2)
    assert shown.notes[0].text.startswith(describe(lesson, EN))


# Buttons


async def test_pressing_a_language_button_starts_that_language(conversation: Conversation) -> None:
    shown = await press(conversation, person(), "learn:it")
    chosen = _("{language} it is.", language=EN.name("it").capitalize())
    assert shown.notes == [Note(EN(chosen), replaces=True)]
    assert actions(shown.last.buttons) == [*(f"level:it:{level.value}" for level in Level), "placement"]
    assert (await lesson_of(conversation, DM)).language == by_code("it")


async def test_pressing_a_level_button_switches_the_level_and_says_so(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn spanish")
    shown = await press(conversation, person(), "level:es:B1")
    assert shown.notes == [Note(EN(level_set(Level.B1)))]
    assert (await lesson_of(conversation, DM)).level == Level.B1


async def test_a_second_press_of_the_same_level_answers_privately_that_it_is_already_there(
    conversation: Conversation,
) -> None:
    await command(conversation, person(), "/learn spanish")
    await press(conversation, person(), "level:es:B1")
    shown = await press(conversation, person(), "level:es:B1")
    assert shown.notes == [Note(EN(_("This lesson is already at {level}.", level="B1")), private=True)]
    assert shown.messages == {}


async def test_a_level_button_of_an_older_lesson_starts_that_language_at_that_level(
    conversation: Conversation,
) -> None:
    await command(conversation, person(), "/learn french")
    shown = await press(conversation, person(), "level:es:C1")
    lesson = await lesson_of(conversation, DM)
    assert (lesson.language, lesson.level) == (SPANISH, Level.C1)
    assert "✓ C1" in [b.label for b in flat(shown.last.buttons)]


@pytest.mark.parametrize(
    "action",
    ["", "level", "level:es", "level:xx:B1", "level:es:Z9", "learn:tlh", "learn", "native:xx", "forget:no", "mystery"],
)
async def test_a_malformed_or_unknown_action_gets_the_private_expired_note(
    conversation: Conversation, action: str
) -> None:
    shown = await press(conversation, person(), action)
    assert shown.notes == [Note(EN(Notice.EXPIRED.value), private=True)]
    assert shown.messages == {}


# Teachers and students


@pytest.mark.parametrize(
    ("kind", "line"),
    [
        ("command", "/learn french"),
        ("command", "/learn B1"),
        ("command", "/level B1"),
        ("command", "/reset"),
        ("command", "/stop"),
        ("command", "/classroom on"),
        ("press", "level:es:B1"),
        ("press", "learn:fr"),
    ],
)
async def test_a_student_in_a_group_is_refused_privately_and_nothing_changes(
    conversation: Conversation, ollama: FakeOllama, kind: str, line: str
) -> None:
    await class_with_a_lesson(conversation)
    await write(conversation, student(), "Hola a todos")
    before = await lesson_of(conversation, CLASS)
    history = await conversation.store.history(CLASS.id)
    requests = len(ollama.chat_requests)
    if kind == "command":
        shown = await command(conversation, student(), line)
    else:
        shown = await press(conversation, student(), line)
    assert shown.notes == [Note(EN(NotTeacher().message), private=True)]
    assert shown.messages == {}
    assert await lesson_of(conversation, CLASS) == before
    assert await conversation.store.history(CLASS.id) == history
    assert len(ollama.chat_requests) == requests


async def test_may_teach_is_asked_afresh_for_every_change(conversation: Conversation) -> None:
    await class_with_a_lesson(conversation)
    answers = [True, False]  # a teacher demoted between two changes
    asked: list[bool] = []

    async def may_teach() -> bool:
        asked.append(answers[len(asked)])
        return asked[-1]

    demoted = Origin(CLASS, ANA, "telegram", None, may_teach)
    first = await command(conversation, demoted, "/level B1")
    second = await command(conversation, demoted, "/level B2")
    assert first.notes == [Note(EN(level_set(Level.B1)))]
    assert second.notes == [Note(EN(NotTeacher().message), private=True)]
    assert asked == [True, False]
    assert (await lesson_of(conversation, CLASS)).level == Level.B1


# /native and the language the tutor speaks


async def test_native_in_a_private_chat_changes_the_learners_and_the_lessons_language(
    conversation: Conversation,
) -> None:
    await command(conversation, person(), "/learn spanish")
    shown = await command(conversation, person(), "/native german")
    said = german(_("From now on I explain in {language}.", language=language_name("de", "de")))
    assert shown.notes == [Note(said)]
    assert (await lesson_of(conversation, DM)).native == GERMAN
    assert await conversation.store.learner_language(ANA.id) == "de"


async def test_native_by_a_student_in_a_group_changes_only_their_own_language(conversation: Conversation) -> None:
    await class_with_a_lesson(conversation)
    shown = await command(conversation, student(), "/native german")
    only_mine = _(
        "Only teachers change the class's language; what I send to you alone will be in {language}.",
        language=language_name("de", "de"),
    )
    assert shown.notes == [Note(german(only_mine), private=True)]
    assert (await lesson_of(conversation, CLASS)).native == by_code("en")
    assert await conversation.store.learner_language(BEN.id) == "de"


async def test_native_by_a_teacher_in_a_group_changes_the_classs_language(conversation: Conversation) -> None:
    await class_with_a_lesson(conversation)
    shown = await command(conversation, person(CLASS), "/native german")
    said = german(_("From now on I explain in {language}.", language=language_name("de", "de")))
    assert shown.notes == [Note(said)]
    assert (await lesson_of(conversation, CLASS)).native == GERMAN


async def test_the_ui_language_comes_from_the_apps_locale_on_first_contact(conversation: Conversation) -> None:
    shown = await command(conversation, person(locale="de"), "/help")
    assert shown.notes[0].text.startswith(german(HELP_INTRO))


async def test_the_first_locale_is_remembered(conversation: Conversation) -> None:
    await command(conversation, person(locale="de-AT"), "/help")
    shown = await command(conversation, person(locale="fr"), "/help")
    assert shown.notes[0].text.startswith(german(HELP_INTRO))
    assert await conversation.store.learner_language(ANA.id) == "de"


async def test_without_a_locale_the_default_native_language_is_used(settings: Settings) -> None:
    tutor = await Tutor.open(settings.model_copy(update={"default_native_language": "german"}))
    try:
        shown = await command(Conversation(tutor), person(locale=None), "/help")
        assert shown.notes[0].text.startswith(german(HELP_INTRO))
    finally:
        await tutor.close()


async def test_a_new_lesson_explains_in_its_starters_language(conversation: Conversation) -> None:
    await command(conversation, person(locale="de"), "/learn spanish")
    assert (await lesson_of(conversation, DM)).native == GERMAN


async def test_group_messages_use_the_lessons_language_and_private_notes_the_persons_own(
    conversation: Conversation,
) -> None:
    await class_with_a_lesson(conversation, locale="de")  # the teacher's app is in German
    french = student(locale="fr")
    status = await command(conversation, french, "/status")
    refusal = await command(conversation, french, "/reset")
    lesson = await lesson_of(conversation, CLASS)
    assert status.notes[0].text.startswith(describe(lesson, Voice("de")))
    assert describe(lesson, Voice("de")) != describe(lesson, EN)
    assert refusal.notes == [Note(render(NotTeacher().message, "fr"), private=True)]
    assert render(NotTeacher().message, "fr") != render(NotTeacher().message, "en")


# /status, /reset, /stop, /start, /help, /classroom


async def test_status_describes_the_lesson(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn spanish B1")
    shown = await command(conversation, person(), "/status")
    assert shown.notes == [Note(describe(await lesson_of(conversation, DM), EN))]


async def test_status_in_a_group_says_how_to_reach_the_tutor(conversation: Conversation) -> None:
    await class_with_a_lesson(conversation)
    shown = await command(conversation, student(), "/status")
    lesson = await lesson_of(conversation, CLASS)
    assert shown.notes == [Note(describe(lesson, EN) + " " + EN(_("Mention me or reply to me to practise.")))]


async def test_status_without_a_lesson_offers_the_languages(conversation: Conversation) -> None:
    shown = await command(conversation, person(), "/status")
    assert [note.text for note in shown.notes] == [EN(PICK_LANGUAGE)]
    assert actions(shown.notes[0].buttons) == [f"learn:{code}" for code in POPULAR]


async def test_reset_forgets_the_conversation_and_keeps_the_lesson(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn spanish")
    await write(conversation, person(), "Hola")
    shown = await command(conversation, person(), "/reset")
    said = _("Conversation forgotten; your cards and progress stay. Say something to start again.")
    assert shown.notes == [Note(EN(said))]
    assert await conversation.store.history(DM.id) == []
    assert (await lesson_of(conversation, DM)).language == SPANISH


async def test_stop_pauses_the_lesson(conversation: Conversation, ollama: FakeOllama) -> None:
    await command(conversation, person(), "/learn spanish")
    shown = await command(conversation, person(), "/stop")
    assert shown.notes == [Note(EN(_("Lesson paused. /learn picks it up again.")))]
    assert not (await lesson_of(conversation, DM)).active
    requests = len(ollama.chat_requests)
    answered = await write(conversation, person(), "Hola")
    assert answered.notes == [Note(EN(LessonPaused().message))]
    assert len(ollama.chat_requests) == requests


async def test_start_without_a_lesson_welcomes_and_offers_the_languages(conversation: Conversation) -> None:
    shown = await command(conversation, person(), "/start")
    assert [note.text for note in shown.notes] == [f"{EN(WELCOME_PRIVATE)}\n\n{EN(PICK_LANGUAGE)}"]
    assert actions(shown.notes[0].buttons) == [f"learn:{code}" for code in POPULAR]


async def test_level_alone_shows_the_levels_with_the_current_one_marked(conversation: Conversation) -> None:
    await command(conversation, person(), "/learn spanish B2")
    shown = await command(conversation, person(), "/level")
    assert [note.text for note in shown.notes] == [level_guide(EN)]
    assert "✓ B2" in [b.label for b in flat(shown.notes[0].buttons)]


def help_line(name: str, say: Voice) -> str:
    spec = next(spec for spec in COMMANDS if spec.name == name)
    return f"/{spec.name} {spec.usage}".rstrip() + f" — {say(spec.description)}"


async def test_help_in_a_private_chat_lists_the_commands_without_group_ones(conversation: Conversation) -> None:
    text = (await command(conversation, person(), "/help")).notes[0].text
    assert text.startswith(EN(HELP_INTRO)) and text.endswith(EN(PRIVACY))
    for spec in COMMANDS:
        assert (help_line(spec.name, EN) in text) is not spec.groups_only
    assert "/classroom" not in text
    assert EN(HELP_GROUP) not in text
    assert "/quit" not in text


async def test_help_in_a_group_lists_classroom_and_how_to_reach_the_tutor(conversation: Conversation) -> None:
    text = (await command(conversation, student(), "/help")).notes[0].text
    assert help_line("classroom", EN) in text
    assert EN(HELP_GROUP) in text
    assert "/quit" not in text


async def test_help_on_the_terminal_lists_quit(conversation: Conversation) -> None:
    text = (await command(conversation, person(Channel("terminal"), platform="terminal"), "/help")).notes[0].text
    assert f"/quit — {EN(HELP_QUIT)}" in text


async def test_classroom_on_when_the_bot_hears_every_message(conversation: Conversation) -> None:
    await class_with_a_lesson(conversation)
    shown = await command(conversation, person(CLASS, hears_all=True, platform="discord"), "/classroom on")
    assert shown.notes == [Note(EN(_("From now on I answer every message here.")))]
    assert await conversation.answers_all(CLASS)


async def test_classroom_on_on_telegram_without_every_message_explains_group_privacy(
    conversation: Conversation,
) -> None:
    await class_with_a_lesson(conversation)
    shown = await command(conversation, person(CLASS, platform="telegram"), "/classroom on")
    cannot = _(
        "Saved, but it can't work yet: Telegram shows me only messages that mention me. The bot's operator "
        "must turn off Group Privacy in @BotFather (Bot Settings), then remove and re-add me here."
    )
    assert shown.notes == [Note(EN(cannot))]
    assert await conversation.answers_all(CLASS)  # saved for when the operator fixes it


async def test_classroom_on_on_discord_without_every_message_explains_the_intent(conversation: Conversation) -> None:
    await class_with_a_lesson(conversation)
    shown = await command(conversation, person(CLASS, platform="discord"), "/classroom on")
    cannot = _(
        "Saved, but it can't work yet: I can't read messages that don't mention me. The bot's operator must "
        "turn on the Message Content intent in the Discord developer portal and set "
        "POLYGLOTT_DISCORD_MESSAGE_CONTENT=true. Until then, mention me or reply to me."
    )
    assert shown.notes == [Note(EN(cannot))]
    assert await conversation.answers_all(CLASS)


async def test_classroom_off_answers_only_mentions_again(conversation: Conversation) -> None:
    await class_with_a_lesson(conversation)
    await command(conversation, person(CLASS, hears_all=True), "/classroom on")
    shown = await command(conversation, person(CLASS), "/classroom off")
    assert shown.notes == [Note(EN(_("From now on I answer here only when mentioned or replied to.")))]
    assert not await conversation.answers_all(CLASS)


async def test_classroom_in_a_private_chat_works_in_groups_only(conversation: Conversation) -> None:
    shown = await command(conversation, person(), "/classroom on")
    assert shown.notes == [Note(EN(_("/{name} works in groups only.", name="classroom")))]


async def test_an_unknown_command_points_to_help(conversation: Conversation) -> None:
    shown = Recorder()
    await conversation.unknown_command(person(), "frobnicate", shown)
    assert shown.notes == [Note(EN(_("I don't know /{name}. /help lists what I can do.", name="frobnicate")))]


# /mydata and forgetting


async def class_where_ana_and_ben_talk(conversation: Conversation, ollama: FakeOllama) -> None:
    await class_with_a_lesson(conversation)
    await command(conversation, person(), "/learn spanish")
    ollama.script("Respuesta para Ana", "Respuesta para Ben", "Otra para Ana")
    await write(conversation, person(CLASS), "Soy Ana")
    await write(conversation, student(), "Soy Ben")
    await write(conversation, person(), "Hola desde mi chat")


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))


async def test_mydata_gives_a_private_csv_of_the_learners_messages_and_the_answers_to_them(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await class_where_ana_and_ben_talk(conversation, ollama)
    shown = await command(conversation, person(CLASS), "/mydata")
    [export] = shown.files
    assert export.private and export.again == "mydata" and export.media_type == "text/csv"
    rows = csv_rows(export.data)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(channel, role, text) for channel, _at, role, text in rows[1:]] == [
        (CLASS.id, "user", "Soy Ana"),
        (CLASS.id, "assistant", "Respuesta para Ana"),
        (DM.id, "user", "Hola desde mi chat"),
        (DM.id, "assistant", "Otra para Ana"),
    ]
    caption = _n(
        "Everything I keep about you: {n} message, with the tutor's answers to it.",
        "Everything I keep about you: {n} messages, with the tutor's answers to them.",
        2,
    )
    assert export.caption == EN(caption)
    [delete] = shown.notes
    assert delete.private and actions(delete.buttons) == ["forget"]


async def test_mydata_with_nothing_kept_says_so(conversation: Conversation) -> None:
    shown = await command(conversation, person(), "/mydata")
    assert shown.files == []
    assert [(note.text, note.private) for note in shown.notes] == [(EN(_("I keep no messages of yours.")), True)]
    assert actions(shown.notes[0].buttons) == ["forget"]


async def test_forget_asks_to_confirm_before_deleting(conversation: Conversation, ollama: FakeOllama) -> None:
    await class_where_ana_and_ben_talk(conversation, ollama)
    shown = await press(conversation, person(CLASS), "forget")
    [question] = shown.notes
    assert question.private and question.replaces
    assert actions(question.buttons) == ["forget:yes"]
    assert len(await conversation.store.kept(ANA.id)) == 4


async def test_forget_yes_deletes_their_messages_and_profile_and_the_class_keeps_its_answers_without_their_name(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await class_where_ana_and_ben_talk(conversation, ollama)
    await command(conversation, person(locale="de"), "/help")  # a profile with a language
    shown = await press(conversation, person(CLASS), "forget:yes")
    done = _n(
        "Done: I deleted {n} message and everything I knew about you.",
        "Done: I deleted {n} messages and everything I knew about you.",
        2,  # the messages she wrote
    )
    assert [(note.text, note.private) for note in shown.notes] == [(EN(done), True)]
    assert await conversation.store.kept(ANA.id) == []
    assert await conversation.store.learner_language(ANA.id) is None
    assert "Respuesta para …" in [m.text for m in await conversation.store.transcript(CLASS.id)]
    assert [(k.role, k.text) for k in await conversation.store.kept(BEN.id)] == [
        ("user", "Soy Ben"),
        ("assistant", "Respuesta para Ben"),
    ]


# Private notes where the platform cannot reach the person


async def test_a_confidential_note_on_an_unreachable_surface_becomes_a_link_to_the_private_chat(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await class_where_ana_and_ben_talk(conversation, ollama)
    shown = await command(conversation, person(CLASS), "/mydata", Recorder(reachable=False))
    assert shown.files == []
    link = _("{name}, this is for you alone: open our private chat to see it.", name="Ana")
    [note] = shown.notes  # one link for the file and the note that both belong to `mydata`
    assert (note.text, note.private) == (EN(link), False)
    opens = _("Open our private chat")
    assert [(b.label, b.action, b.opens) for b in flat(note.buttons)] == [(EN(opens), "", "mydata")]


async def test_the_link_to_the_private_chat_shows_the_note_there(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    """The link presses its `opens` action in the private chat (Telegram's /start payload)."""
    await class_where_ana_and_ben_talk(conversation, ollama)
    shown = await press(conversation, person(), "mydata")
    [export] = shown.files
    assert [row[3] for row in csv_rows(export.data)[1:]][:2] == ["Soy Ana", "Respuesta para Ana"]


async def test_a_private_note_without_again_is_shown_publicly_on_an_unreachable_surface(
    conversation: Conversation,
) -> None:
    await class_with_a_lesson(conversation)
    shown = await command(conversation, student(), "/reset", Recorder(reachable=False))
    assert shown.notes == [Note(EN(NotTeacher().message))]


# Messages


async def test_a_message_is_answered_as_it_is_written(conversation: Conversation, ollama: FakeOllama) -> None:
    await command(conversation, person(), "/learn spanish")
    ollama.script("¡Muy bien, Ana!")
    shown = await write(conversation, person(), "Hola, me llamo Ana")
    assert [m.text for m in shown.messages.values()] == ["¡Muy bien, Ana!"]
    assert shown.notes == []


async def test_a_message_without_a_lesson_in_a_private_chat_offers_the_languages(conversation: Conversation) -> None:
    shown = await write(conversation, person(), "Hola")
    assert [note.text for note in shown.notes] == [EN(PICK_LANGUAGE)]
    assert actions(shown.notes[0].buttons) == [f"learn:{code}" for code in POPULAR]


async def test_a_message_without_a_lesson_in_a_group_says_how_a_teacher_starts_one(
    conversation: Conversation,
) -> None:
    shown = await write(conversation, student(), "Hola")
    assert shown.notes == [Note(EN(NO_LESSON_GROUP))]


@pytest.mark.parametrize("text", ["", "   \n ", "\u200b\ufeff"])
async def test_an_empty_or_invisible_message_gets_the_empty_notice(conversation: Conversation, text: str) -> None:
    await command(conversation, person(), "/learn spanish")
    shown = await write(conversation, person(), text)
    assert shown.notes == [Note(EN(Notice.EMPTY.value))]
    assert shown.messages == {}


async def test_a_model_failure_is_shown_in_the_channels_language(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    await command(conversation, person(locale="de"), "/learn spanish")
    await ollama.stop()
    shown = await write(conversation, person(), "Hola")
    assert [note.text for note in shown.notes] == [german(OllamaUnavailable(conversation.tutor.model.host).message)]


async def test_a_notice_is_worded_by_core_and_expired_is_private(conversation: Conversation) -> None:
    sticker, expired = Recorder(), Recorder()
    await conversation.notice(person(locale="de"), Notice.NOT_TEXT, sticker)
    await conversation.notice(person(), Notice.EXPIRED, expired)
    assert sticker.notes == [Note(german(Notice.NOT_TEXT.value))]
    assert expired.notes == [Note(german(Notice.EXPIRED.value), private=True)]


# Buttons as the platforms carry them


async def offered_buttons(conversation: Conversation, ollama: FakeOllama) -> list[Button]:
    """Every button core offers along the way of a learner's first lesson and data request."""
    shown: list[Recorder] = []
    for line in ("/start", "/learn", "/learn chin", "/learn portuguese", "/level", "/native", "/mydata"):
        shown.append(await command(conversation, person(), line))
    shown.append(await press(conversation, person(), "forget"))
    await class_with_a_lesson(conversation)
    shown.append(await command(conversation, person(CLASS), "/mydata", Recorder(reachable=False)))
    buttons: list[Button] = []
    for surface in shown:
        for buttons_of in [*(m.buttons for m in surface.messages.values()), *(n.buttons for n in surface.notes)]:
            buttons.extend(flat(buttons_of))
    return buttons


async def test_every_button_fits_the_platforms_limits(conversation: Conversation, ollama: FakeOllama) -> None:
    buttons = await offered_buttons(conversation, ollama)
    kinds = {(b.action or b.opens).split(":")[0] for b in buttons}
    assert {"learn", "level", "native", "forget", "mydata"} <= kinds
    for button in buttons:
        assert len(button.action.encode()) <= ACTION_BYTES == 64
        assert len(button.opens.encode()) <= OPENS_BYTES
    for language in CATALOG:  # the longest level action any lesson can offer
        assert len(f"level:{language.code}:{Level.C2.value}".encode()) <= ACTION_BYTES


# Stopping


class Watched(Recorder):
    """A recorder that says when the first words of a reply are on screen."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = asyncio.Event()

    async def send(self, text: str, buttons: Buttons = ()) -> int:
        handle = await super().send(text, buttons)
        self.shown.set()
        return handle


async def started_reply(
    conversation: Conversation, ollama: FakeOllama, script: Script
) -> tuple[Recorder, asyncio.Task[None]]:
    """A reply being written and already partly shown."""
    await command(conversation, person(), "/learn spanish")
    ollama.script(script)
    shown = Watched()
    task = asyncio.create_task(conversation.message(person(), "Hola", shown))
    async with asyncio.timeout(5):
        await shown.shown.wait()
    return shown, task


async def assistant_statuses(conversation: Conversation) -> list[Status]:
    return [m.status for m in await conversation.store.transcript(DM.id) if m.role == "assistant"]


async def test_finish_waits_for_a_reply_in_progress(conversation: Conversation, ollama: FakeOllama) -> None:
    shown, task = await started_reply(conversation, ollama, Script("uno dos tres cuatro cinco", delay=0.05))
    await conversation.finish(grace=10)
    assert task.done()
    assert shown.last.text == "uno dos tres cuatro cinco"
    assert (await assistant_statuses(conversation))[-1] == Status.COMPLETE


async def test_finish_cuts_off_a_late_reply_and_stores_it_as_cut(
    conversation: Conversation, ollama: FakeOllama
) -> None:
    _shown, task = await started_reply(conversation, ollama, Script(" ".join(["palabra"] * 200), delay=0.05))
    loop = asyncio.get_running_loop()
    began = loop.time()
    await conversation.finish(grace=0.3)
    assert loop.time() - began < 5  # far less than the 10 s the reply would take
    assert task.done()
    assert (await assistant_statuses(conversation))[-1] == Status.CUT  # answered again after the restart


async def test_after_finish_no_event_is_handled(conversation: Conversation, ollama: FakeOllama) -> None:
    await command(conversation, person(), "/learn spanish")
    await conversation.finish(grace=1)
    requests = len(ollama.chat_requests)
    shown = await write(conversation, person(), "Hola")
    await command(conversation, person(), "/status", shown)
    await press(conversation, person(), "level:es:B1", shown)
    assert (shown.messages, shown.notes) == ({}, [])
    assert len(ollama.chat_requests) == requests


async def test_a_note_that_echoes_what_someone_typed_hides_no_link(conversation: Conversation) -> None:
    shown = await command(conversation, person(), "/learn [klingon](https://evil.example)")
    assert "](" not in shown.notes[-1].text
    assert "https://evil.example" in shown.notes[-1].text  # the address, if shown at all, is visible
