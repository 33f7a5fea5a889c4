"""The message catalogs: every user-facing message translated in every UI language, and rendered right."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from core.i18n import LOCALES, UI_LANGUAGES, Voice, _, _n, language_name, render, ui_language

ROOT = Path(__file__).resolve().parents[1]
TRANSLATED = [language for language in UI_LANGUAGES if language != "en"]


def extracted() -> dict[str, str | None]:
    """Every message the code marks, as `pybabel extract -F babel.cfg -k _n:1,2` finds them: id → plural id."""
    found: dict[str, str | None] = {}
    keywords = {"_": None, "_n": (1, 2)}
    for _file, _line, message, _comments, _context in extract_from_dir(
        ROOT / "core", method_map=[("**.py", "python")], keywords=keywords
    ):
        if isinstance(message, tuple):
            found[message[0]] = message[1]
        else:
            found[message] = None
    return found


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def catalog(language: str):  # type: ignore[no-untyped-def]
    with (LOCALES / language / "LC_MESSAGES" / "polyglott.po").open("rb") as source:
        return read_po(source, locale=language)


def marked() -> set[str]:
    """Every message the code marks, as Python itself parses the calls (f-strings included)."""
    found: set[str] = set()
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "_n"):
                first = node.args[0] if node.args else None
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{path.name}:{node.lineno}: a message must be a string literal"
                )
                found.add(first.value)
    return found


def test_the_code_marks_messages_for_the_catalogs() -> None:
    assert len(extracted()) > 50


def test_babel_finds_every_marked_message() -> None:
    """Babel cannot see a message marked inside an f-string: it would stay English for everyone."""
    assert marked() - set(extracted()) == set()


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated(language: str) -> None:
    messages = catalog(language)
    missing = []
    for message, plural in extracted().items():
        entry = messages.get(message)
        if entry is None or entry.fuzzy:
            missing.append(message)
            continue
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if not all(strings) or (plural is not None and len(strings) < 2):
            missing.append(message)
    assert not missing, f"{language} misses {len(missing)}: {missing[:5]}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_every_placeholder(language: str) -> None:
    wrong = []
    for entry in catalog(language):
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        wanted = placeholders(ids[-1]) - {"n"}
        wrong += [s for s in strings if s and placeholders(s) - {"n"} != wanted]
    assert not wrong, f"{language}: {wrong[:5]}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_commands_and_links(language: str) -> None:
    """A translated `/learn` would not work: commands, code spans and addresses stay as they are."""
    tokens = re.compile(r"(?<![\w<])/[a-z]+\b|`[^`]+`|https?://\S+|POLYGLOTT_\w+")
    wrong = []
    for entry in catalog(language):
        if not entry.id or not entry.string:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        wanted = set(tokens.findall(ids[0]))
        wrong += [s for s in strings if set(tokens.findall(s)) != wanted]
    assert not wrong, f"{language}: {wrong[:5]}"


def test_a_message_renders_in_the_readers_language() -> None:
    message = _(
        "Level set to {level} ({name}). I'll write at that level from now on.", level="B1", name=_("intermediate")
    )
    german = render(message, "de")
    assert "B1" in german and german != str(message)
    assert str(message) == "Level set to B1 (intermediate). I'll write at that level from now on."


def test_plural_forms_follow_the_number() -> None:
    one = _n(
        "Done: I deleted {n} message and everything I knew about you.",
        "Done: I deleted {n} messages and everything I knew about you.",
        1,
    )
    many = _n(
        "Done: I deleted {n} message and everything I knew about you.",
        "Done: I deleted {n} messages and everything I knew about you.",
        5,
    )
    assert "1 message " in str(one) and "5 messages" in str(many)
    assert render(one, "fr") != render(many, "fr")


def test_platform_language_tags_map_to_ui_languages() -> None:
    assert [ui_language(tag) for tag in ("pt-BR", "de", "en_US", "es-419", "ja", None, "")] == [
        "pt",
        "de",
        "en",
        "es",
        "en",
        "en",
        "en",
    ]


def test_language_names_come_from_babel_in_the_readers_language() -> None:
    assert language_name("es", "de") == "Spanisch"
    assert Voice("fr").name("de") == "allemand"
    assert language_name("es", "ja") == "Spanish"  # not a UI language: English names
