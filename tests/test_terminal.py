"""`polyglott chat` end to end: a real subprocess talking to the fake Ollama over HTTP, showing core's words.

Expected texts are core's own messages rendered in English (or German) and drawn by the terminal's surface,
never copies of the wording: the terminal has none of its own.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import getpass
import io
import os
import pty
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bots.terminal import PROMPT, Screen, terminal_locale
from core.commands import COMMANDS
from core.conversation import HELP_INTRO, HELP_QUIT, PICK_LANGUAGE, WELCOME_PRIVATE, Notice
from core.deck import Card, Kind, Rating
from core.errors import ModelMissing, OllamaUnavailable, UnknownLanguage
from core.i18n import Msg, Voice, _, _n, language_name, render
from core.languages import find_language
from core.lesson import Level
from core.outcome import Attachment, Note
from core.review import back, front
from core.store import Store
from core.tutor import CUT_MARK
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script

pytestmark = pytest.mark.slow

ROOT = str(Path(__file__).resolve().parents[1])
# What decides how the terminal draws and which language it speaks: the test sets each one itself.
TERMINAL_ENV = ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "COLUMNS")


async def shown(message: Msg | str, language: str = "en") -> str:
    """A core message as the terminal prints it to a pipe: rendered in `language`, Markdown drawn as text."""
    out = io.StringIO()
    await Screen(out).note(Note(render(message, language)))
    return out.getvalue().strip()


def level_set(level: Level) -> Msg:
    return _(
        "Level set to {level} ({name}). I'll write at that level from now on.", level=level.value, name=level.label
    )


class Session:
    """A running `polyglott chat`, read up to each prompt."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    async def read_until(self, marker: str, seconds: float = 15) -> str:
        assert self.process.stdout is not None
        start = len(self.output)
        async with asyncio.timeout(seconds):
            while marker not in self.output[start:]:
                chunk = await self.process.stdout.read(1)
                if not chunk:
                    raise AssertionError(f"process ended; output so far:\n{self.output}")
                self.output += self._decoder.decode(chunk)
        return self.output[start:]

    async def send(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        return await self.read_until(PROMPT)

    async def rest(self) -> str:
        """Everything the process writes until it ends."""
        assert self.process.stdout is not None
        rest = self._decoder.decode(await self.process.stdout.read(), final=True)
        self.output += rest
        return rest

    async def quit(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(b"/quit\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(self.process.wait(), 15)


def chat_env(ollama: FakeOllama, home: Path, lang: str, **settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in TERMINAL_ENV}
    return {
        **env,
        "POLYGLOTT_OLLAMA_HOST": ollama.url,
        "POLYGLOTT_DB_PATH": str(home / "polyglott.db"),
        "POLYGLOTT_MODEL": "qwen2.5:7b",
        **{f"POLYGLOTT_{name.upper()}": value for name, value in settings.items()},
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONPATH": ROOT,
        "LANG": lang,
    }


async def start_chat(ollama: FakeOllama, home: Path, *args: str, lang: str = "en_US.UTF-8", **settings: str) -> Session:
    """`polyglott chat args` in `home`, its stdout a pipe, in the locale `lang`; `settings` as POLYGLOTT_*."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "chat", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=home, env=chat_env(ollama, home, lang, **settings),
    )  # fmt: skip
    return Session(process)


@pytest.fixture
async def session(ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[Session]:
    ollama.script(Script("¡Hola! Vamos a hablar de comida. ¿Qué te gusta comer?"))
    chat = await start_chat(ollama, tmp_path, "--language", "spanish", "--level", "A1")
    await chat.read_until(PROMPT)
    yield chat
    if chat.process.returncode is None:
        chat.process.kill()
        await chat.process.wait()


@pytest.fixture
async def fresh(ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[Session]:
    """`polyglott chat` with no lesson yet and no --language."""
    chat = await start_chat(ollama, tmp_path)
    await chat.read_until(PROMPT)
    yield chat
    if chat.process.returncode is None:
        chat.process.kill()
        await chat.process.wait()


async def test_the_lesson_opens_in_the_target_language(session: Session, ollama: FakeOllama) -> None:
    assert "¡Hola! Vamos a hablar de comida." in session.output
    assert "Spanish" in ollama.chat_requests[0]["messages"][0]["content"]
    assert await session.quit() == 0


async def test_tokens_appear_while_the_model_is_still_writing(session: Session, ollama: FakeOllama) -> None:
    ollama.script(Script("Me gusta mucho la paella con verduras y arroz.", delay=0.3))
    assert session.process.stdin is not None
    session.process.stdin.write(b"Me gusta la pizza\n")
    await session.read_until("Me gusta")
    assert ollama.active == 1, "the first words should show before the model has finished"
    await session.read_until(PROMPT)
    assert "arroz." in session.output


async def test_output_to_a_pipe_is_plain_text_without_ansi_codes(session: Session, ollama: FakeOllama) -> None:
    ollama.script(Script("Muy **bien**. ¿Y tú?"))
    await session.send("Hola")
    await session.send("/level")
    await session.send("/help")
    assert await session.quit() == 0
    assert "Muy **bien**. ¿Y tú?" in session.output
    assert "\x1b" not in session.output


async def test_level_and_status_typed_show_cores_texts(session: Session) -> None:
    assert await shown(level_set(Level.B1)) in await session.send("/level b1")
    status = _(
        "Learning {language} at level {level} ({name}), explanations in {native}.",
        language=language_name("es", "en"),
        level="B1",
        name=Level.B1.label,
        native=language_name("en", "en"),
    )
    assert await shown(status) in await session.send("/status")
    assert await session.quit() == 0


async def test_help_lists_every_command_and_quit(session: Session) -> None:
    help_text = await session.send("/help")
    assert await shown(HELP_INTRO) in help_text
    for spec in COMMANDS:
        if not spec.groups_only:
            assert f"/{spec.name} {spec.usage}".rstrip() + f" — {render(spec.description, 'en')}" in help_text
    assert f"/quit — {render(HELP_QUIT, 'en')}" in help_text
    assert await session.quit() == 0


async def test_an_unknown_language_shows_cores_suggestions_as_choices(session: Session) -> None:
    with pytest.raises(UnknownLanguage) as unknown:
        find_language("spnsh xx")
    answer = await session.send("/learn spnsh xx")
    assert await shown(unknown.value.message) in answer
    assert "[1] " in answer
    assert await session.quit() == 0


async def test_without_a_lesson_or_language_the_welcome_offers_numbered_languages(fresh: Session) -> None:
    assert await shown(WELCOME_PRIVATE) in fresh.output
    assert await shown(PICK_LANGUAGE) in fresh.output
    assert "[1] Español  [2] Français" in fresh.output
    assert await fresh.quit() == 0


async def test_learn_alone_then_typing_1_starts_a_spanish_lesson(fresh: Session, ollama: FakeOllama) -> None:
    assert "[1] Español" in await fresh.send("/learn")
    ollama.script(Script("¡Hola! Empezamos."))
    answer = await fresh.send("1")
    assert "¡Hola! Empezamos." in answer
    assert "Spanish" in ollama.chat_requests[-1]["messages"][0]["content"]
    assert await fresh.quit() == 0


async def test_the_number_of_b1_among_the_openers_choices_changes_the_level(session: Session) -> None:
    opener = session.output
    assert "[1] ✓ A1  [2] A2  [3] B1" in opener
    assert await shown(level_set(Level.B1)) in await session.send("3")
    assert await session.quit() == 0


async def test_a_number_is_a_message_once_the_choices_are_a_line_old(session: Session, ollama: FakeOllama) -> None:
    ollama.script(Script("Tengo tres hermanos."), Script("¡Tres! Muy bien."))
    assert "Tengo tres hermanos." in await session.send("¿Cuántos hermanos tienes?")
    assert "¡Tres! Muy bien." in await session.send("3")
    assert ollama.chat_requests[-1]["messages"][-1]["content"].startswith("3")
    assert await session.quit() == 0


async def test_mydata_writes_a_csv_into_the_current_directory_and_prints_its_path(
    session: Session, ollama: FakeOllama, tmp_path: Path
) -> None:
    await session.send("Me llamo Ana")
    answer = await session.send("/mydata")
    path = tmp_path / "polyglott-my-data.csv"
    assert str(path) in answer
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["channel", "time_utc", "role", "text"]
    assert ["user", "Me llamo Ana"] in [row[2:] for row in rows]
    assert await session.quit() == 0


async def test_a_second_export_does_not_overwrite_the_first(tmp_path: Path) -> None:
    screen = Screen(io.StringIO(), tmp_path)
    await screen.attach(Attachment("export.csv", b"first", "First"))
    await screen.attach(Attachment("export.csv", b"second", "Second"))
    assert (tmp_path / "export.csv").read_bytes() == b"first"
    assert (tmp_path / "export-1.csv").read_bytes() == b"second"


async def test_pressing_delete_then_yes_forgets_the_learner(session: Session, tmp_path: Path) -> None:
    await session.send("Me llamo Ana")
    assert "[1] " in await session.send("/mydata")
    assert "[1] " in await session.send("1")
    done = _n(  # the learner's message (the whole conversation goes, the opener and the answer too)
        "Done: I deleted {n} message and everything I knew about you.",
        "Done: I deleted {n} messages and everything I knew about you.",
        1,
    )
    assert await shown(done) in await session.send("1")
    assert await shown(_("I keep no messages of yours.")) in await session.send("/mydata")
    assert await session.quit() == 0


async def test_a_terminal_with_a_german_locale_gets_german_help(ollama: FakeOllama, tmp_path: Path) -> None:
    chat = await start_chat(ollama, tmp_path, lang="de_DE.UTF-8")
    await chat.read_until(PROMPT)
    help_text = await chat.send("/help")
    assert await chat.quit() == 0
    german = await shown(HELP_INTRO, "de")
    assert german != await shown(HELP_INTRO, "en"), "the German catalog translates the help"
    assert german in help_text


async def test_native_on_the_command_line_explains_the_opener_in_it(ollama: FakeOllama, tmp_path: Path) -> None:
    chat = await start_chat(ollama, tmp_path, "--language", "spanish", "--native", "german")
    await chat.read_until(PROMPT)
    assert await chat.quit() == 0
    assert "Their own language is German" in ollama.chat_requests[0]["messages"][0]["content"]


async def test_history_persists_across_runs(ollama: FakeOllama, tmp_path: Path, session: Session) -> None:
    await session.send("Me llamo Ana")
    assert await session.quit() == 0

    again = await start_chat(ollama, tmp_path)
    intro = await again.read_until(PROMPT)
    status = _(
        "Learning {language} at level {level} ({name}), explanations in {native}.",
        language=language_name("es", "en"),
        level="A1",
        name=Level.A1.label,
        native=language_name("en", "en"),
    )
    assert await shown(status) in intro
    await again.send("¿Cómo me llamo?")
    assert any("Me llamo Ana" in m["content"] for m in ollama.chat_requests[-1]["messages"])
    assert await again.quit() == 0


async def test_ollama_down_is_one_clear_line_and_the_chat_goes_on(session: Session, ollama: FakeOllama) -> None:
    await ollama.stop()
    answer = await session.send("Hola")
    assert await shown(OllamaUnavailable(ollama.url).message) in answer and "Traceback" not in answer
    await ollama.start()
    ollama.script(Script("¡Aquí estoy!"))
    assert "¡Aquí estoy!" in await session.send("¿Hola?")
    assert await session.quit() == 0


async def test_a_missing_model_names_the_pull_command(session: Session, ollama: FakeOllama) -> None:
    ollama.remove_model("qwen2.5:7b")
    answer = await session.send("Hola")
    assert await shown(ModelMissing("qwen2.5:7b").message) in answer
    assert "ollama pull qwen2.5:7b" in answer
    assert await session.quit() == 0


async def test_end_of_input_leaves_cleanly(session: Session) -> None:
    assert session.process.stdin is not None
    session.process.stdin.close()
    assert await shown(Notice.GOODBYE.value) in await asyncio.wait_for(session.rest(), 15)
    assert await asyncio.wait_for(session.process.wait(), 15) == 0
    assert "Traceback" not in session.output


async def test_on_a_real_terminal_the_reply_is_live_markdown(ollama: FakeOllama, tmp_path: Path) -> None:
    ollama.script(Script("¡Hola! Me gusta **mucho** la paella con verduras y arroz.", delay=0.3))
    env = {**chat_env(ollama, tmp_path, "en_US.UTF-8"), "TERM": "xterm-256color", "COLUMNS": "100"}
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "chat", "--language", "spanish",
        stdin=asyncio.subprocess.PIPE, stdout=terminal, stderr=terminal, cwd=tmp_path, env=env,
    )  # fmt: skip
    os.close(terminal)
    loop = asyncio.get_running_loop()
    screen = b""
    first_words_while_writing: bool | None = None
    try:
        async with asyncio.timeout(20):
            while not screen.endswith(PROMPT.encode()):
                screen += await loop.run_in_executor(None, os.read, controller, 4096)
                if first_words_while_writing is None and "¡Hola!".encode() in screen:
                    first_words_while_writing = ollama.active == 1
        assert process.stdin is not None
        process.stdin.write(b"/quit\n")
        await process.stdin.drain()
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(controller)
    assert first_words_while_writing, "the first words should show before the model has finished"
    text = screen.decode()
    assert "\x1b[1mmucho\x1b[0m" in text, "Markdown bold is drawn bold, without its asterisks"
    assert "**" not in text


def test_the_locale_is_lc_all_then_lc_messages_then_lang() -> None:
    assert terminal_locale({"LANG": "de_DE.UTF-8"}) == "de_DE"
    assert terminal_locale({"LANG": "de_DE.UTF-8", "LC_MESSAGES": "fr_FR.UTF-8"}) == "fr_FR"
    assert terminal_locale({"LANG": "de_DE", "LC_MESSAGES": "fr_FR", "LC_ALL": "pt_BR.UTF-8"}) == "pt_BR"
    assert terminal_locale({"LANG": "C.UTF-8"}) is None
    assert terminal_locale({}) is None


async def test_an_edit_that_is_not_an_extension_is_printed_whole_on_a_new_line() -> None:
    out = io.StringIO()
    screen = Screen(out)
    handle = await screen.send("Hola")
    await screen.edit(handle, "Hola, ¿qué tal?")
    await screen.edit(handle, "Adiós")
    screen.close()
    assert out.getvalue() == "Hola, ¿qué tal?\nAdiós\n"


async def test_each_message_on_the_screen_has_an_address_that_recalls_it() -> None:
    screen = Screen(io.StringIO())
    first, second = await screen.send("Hola"), await screen.send("¿Qué tal?")
    assert first != second
    assert [screen.recall(screen.address(h)) for h in (first, second)] == [first, second]


async def test_a_cut_mark_on_a_message_still_being_drawn_extends_its_line() -> None:
    out = io.StringIO()
    screen = Screen(out)
    handle = await screen.send("Me gusta la")
    await screen.edit(handle, f"Me gusta la{CUT_MARK}")
    screen.close()
    assert out.getvalue() == f"Me gusta la{CUT_MARK}\n"


async def test_a_cut_mark_on_a_message_left_behind_shows_once_on_a_line_of_its_own() -> None:
    out = io.StringIO()
    screen = Screen(out)
    handle = await screen.send("Me gusta la")
    await screen.note(Note("Nota"))
    await screen.edit(handle, f"Me gusta la{CUT_MARK}")
    screen.close()
    assert out.getvalue() == f"Me gusta la\nNota\n{CUT_MARK.strip()}\n"


# Reviews and progress


SOY = Card(
    0,
    "",
    "es",
    Kind.CORRECTION,
    right="estaba",
    wrong="soy",
    meaning="Un estado: estar.",
    context="Ayer yo soy cansado.",
)
POR = Card(
    0,
    "",
    "es",
    Kind.CORRECTION,
    right="para",
    wrong="por",
    meaning="Una finalidad: para.",
    context="Estudio por aprender.",
)
SAY = Voice("en")


async def seeded(home: Path, *cards: Card) -> list[Card]:
    """The terminal learner's cards in the database `polyglott chat` in `home` opens, due in the order given."""
    store = await Store.open(home / "polyglott.db")
    try:
        now, stored = time.time(), []
        for age, card in zip(range(len(cards), 0, -1), cards, strict=True):
            added = await store.add_card(replace(card, learner=f"terminal:{getpass.getuser()}"), now - age)
            assert added is not None
            stored.append(await store.card(added))
    finally:
        await store.close()
    return [card for card in stored if card is not None]


@pytest.fixture
async def deck(ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[tuple[Session, list[Card]]]:
    """`polyglott chat` in a Spanish lesson, with two cards due."""
    cards = await seeded(tmp_path, SOY, POR)
    ollama.script(Script("¡Hola! Vamos a hablar de comida. ¿Qué te gusta comer?"))
    chat = await start_chat(ollama, tmp_path, "--language", "spanish", "--level", "A1")
    await chat.read_until(PROMPT)
    yield chat, cards
    if chat.process.returncode is None:
        chat.process.kill()
        await chat.process.wait()


def choices(output: str) -> dict[str, str]:
    """The numbered choices in `output`: number → label."""
    return {n: label.strip() for n, label in re.findall(r"\[(\d+)\] ([^\[\n]+)", output)}


async def test_a_review_reveals_rates_by_number_and_ends_with_a_summary(deck: tuple[Session, list[Card]]) -> None:
    session, (first, second) = deck
    card = await session.send("/review")
    assert await shown(front(first, SAY)) in card and choices(card) == {"1": render(_("Show answer"), "en")}
    answer = await session.send("1")
    assert await shown(back(first, SAY)) in answer
    labels = [label.split(" · ")[0] for label in choices(answer).values()]
    assert labels == [render(rating.label, "en") for rating in Rating]
    assert await shown(front(second, SAY)) in await session.send("3")  # Good: the next card
    await session.send("1")
    summary = await session.send("1")  # Again
    assert await shown(_n("You reviewed {n} card.", "You reviewed {n} cards.", 2)) in summary
    assert choices(summary) == {}
    assert await session.quit() == 0


async def test_a_typed_answer_is_a_plain_line_that_suggests_a_rating(
    deck: tuple[Session, list[Card]], ollama: FakeOllama
) -> None:
    session, (first, _second) = deck
    await session.send("/review")
    asked = len(ollama.chat_requests)
    answer = await session.send("Ayer yo estaba cansado.")
    assert await shown(_("✅ Right!")) in answer and await shown(back(first, SAY)) in answer
    assert choices(answer)["3"].startswith(f"✓ {render(_('Good'), 'en')}")
    assert len(ollama.chat_requests) == asked  # an answer to the card, not a message to the tutor
    assert await session.quit() == 0


async def test_save_takes_the_rest_of_the_line_as_the_phrase(session: Session) -> None:
    saved = _("Saved “{phrase}”: it comes up in /review.", phrase="la cuenta")
    assert await shown(saved) in await session.send("/save la cuenta")
    assert await session.quit() == 0


async def test_progress_prints_a_table_and_writes_the_chart_to_a_path_it_names(
    deck: tuple[Session, list[Card]], tmp_path: Path
) -> None:
    session, _cards = deck
    await session.send("Me gusta la pizza")
    shown_now = await session.send("/progress")
    path = tmp_path / "polyglott-progress.png"
    assert str(path) in shown_now and path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    heading = re.search(rf"{render(_('This week'), 'en')}\s+{render(_('Last week'), 'en')}", shown_now)
    assert heading is not None
    assert re.search(rf"{render(_('Messages'), 'en')}\s+1\s+0", shown_now)
    assert await session.quit() == 0


async def test_a_note_with_a_table_is_drawn_as_the_table_instead_of_its_text() -> None:
    out = io.StringIO()
    rows = (("", "This week", "Last week"), ("Messages", "12", "7"), ("Days in a row", "3", ""))
    await Screen(out).note(Note("12 messages this week, 7 the week before.", table=rows))
    drawn = out.getvalue()
    assert "12 messages this week" not in drawn
    lines = [line.split() for line in drawn.splitlines() if "Messages" in line or "Days" in line]
    assert [line[-2:] for line in lines] == [["12", "7"], ["row", "3"]]
    assert "This week" in drawn.splitlines()[0] and "Last week" in drawn.splitlines()[0]


async def test_an_image_is_written_beside_the_csvs_and_its_path_printed(tmp_path: Path) -> None:
    out = io.StringIO()
    await Screen(out, tmp_path).attach(Attachment("chart.png", b"\x89PNG data", "Your weeks", "image/png"))
    assert (tmp_path / "chart.png").read_bytes() == b"\x89PNG data"
    assert str(tmp_path / "chart.png") in out.getvalue() and "Your weeks" in out.getvalue()


async def test_roleplay_then_typing_a_scenes_number_starts_that_scene(session: Session, ollama: FakeOllama) -> None:
    from core.scenes import load  # appended here: the scene's title is core's, as every expected text

    title = load()["cafe-order"].title("en")
    offered = choices(await session.send("/roleplay"))
    number = next(n for n, label in offered.items() if label == title)
    ollama.script(Script("Buenos días. ¿Qué le pongo?"))
    started = await session.send(number)
    assert title in started and "Buenos días. ¿Qué le pongo?" in started
    system = ollama.chat_requests[-1]["messages"][0]["content"]
    assert system.startswith("You are playing a role in a Spanish role-play")
    assert await session.quit() == 0
