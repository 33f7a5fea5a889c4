"""The role-play scene catalog: everyday situations the tutor plays in the lesson's language.

Scenes are data (`core/scene_data/<id>.toml`, one a file) so a teacher can add or replace one without code:
an operator's directory (POLYGLOTT_SCENES_DIR, passed in as `settings.scenes_dir`) is read after the built-ins
and wins on the same id. The English `role`, `setting`, `goal` and `phrases` are for the model; `title` and
`goal_text` are shown to the learner in the UI languages, falling back to English. Nothing is cached here: the
caller loads once at start.
"""

from __future__ import annotations

import difflib
import random
import re
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import InvalidLevel
from .i18n import UI_LANGUAGES, ui_language
from .lesson import Level

BUILT_IN = Path(__file__).with_name("scene_data")
ENV_DIR = "POLYGLOTT_SCENES_DIR"
DEFAULT_TURNS = 12
MIN_TURNS, MAX_TURNS = 6, 20
MAX_TITLE = 30  # a button's label
MAX_GOAL_TEXT = 140
# Lowercase ascii and `-`, short enough that `scene:<id>` fits any platform's button payload.
_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?")
_REQUIRED = ("level", "role", "setting", "goal", "phrases", "title", "goal_text")
_KEYS = frozenset((*_REQUIRED, "turns", "tags"))
_CUTOFF = 0.6
_MIN_WORD = 4  # shorter words ("the", "au", "im") would match almost anything
_WORD_CUTOFF = 0.75  # at 0.6 a word matches too much ("hello" would find "vélo")


class SceneError(ValueError):
    """A scene file the operator must fix; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Scene:
    id: str
    level: Level
    role: str  # the tutor's character, English, for the model
    setting: str  # English, for the model
    goal: str  # English, for the model: what counts as reached
    phrases: tuple[str, ...]
    titles: Mapping[str, str] = field(hash=False)  # UI language -> button title; has "en"
    goals: Mapping[str, str] = field(hash=False)  # UI language -> the learner's goal; has "en"
    turns: int = DEFAULT_TURNS  # the most learner turns before the scene closes
    tags: tuple[str, ...] = ()  # English interest words, for `surprise`

    def title(self, language: str) -> str:
        """The button title in the reader's UI language (any tag `ui_language` accepts), else English."""
        return self.titles.get(ui_language(language)) or self.titles["en"]

    def goal_for(self, language: str) -> str:
        """The learner's goal in the reader's UI language, else English."""
        return self.goals.get(ui_language(language)) or self.goals["en"]


def load(extra: Path | None = None) -> dict[str, Scene]:
    """The built-in scenes plus those in `extra`, the operator's directory (`settings.scenes_dir`, from
    POLYGLOTT_SCENES_DIR: read there, not here, so there is one source), whose files replace built-ins of the
    same id. Raises SceneError for the first invalid file, or a missing operator directory."""
    scenes = _load_dir(BUILT_IN)
    if extra is not None:
        extra = extra.expanduser()
        if not extra.is_dir():
            raise SceneError(f"{extra}: the scenes directory ({ENV_DIR}) does not exist or is not a directory")
        scenes.update(_load_dir(extra))
    return scenes


def for_level(scenes: Mapping[str, Scene], level: Level) -> list[Scene]:
    """The scenes of `level`, sorted by id; with none (C2 has no built-ins), those of the nearest level below."""
    levels = list(Level)
    for candidate in reversed(levels[: levels.index(level) + 1]):
        found = sorted((scene for scene in scenes.values() if scene.level is candidate), key=lambda s: s.id)
        if found:
            return found
    return []


def find(scenes: Mapping[str, Scene], name: str) -> Scene | None:
    """The scene a learner named (`/roleplay café`): by id or a title in any UI language, ignoring case and
    accents; an exact match, else the shortest id/title containing the name, else the closest spelling of an
    id or title, else of a word in one."""
    wanted = _fold(name)
    if not wanted:
        return None
    keys: dict[str, Scene] = {}  # folded id or title -> scene; the first (by id) wins a shared title
    for scene in sorted(scenes.values(), key=lambda s: s.id):
        for key in (scene.id, *scene.titles.values()):
            keys.setdefault(_fold(key), scene)
    if wanted in keys:
        return keys[wanted]
    containing = [key for key in keys if wanted in key]
    if containing:
        return keys[min(containing, key=lambda key: (len(key), keys[key].id))]
    close = difflib.get_close_matches(wanted, keys, n=1, cutoff=_CUTOFF)
    if close:
        return keys[close[0]]
    # A misspelt word ("docter") is too short beside a whole title to come close, so words are tried last.
    words: dict[str, Scene] = {}
    for key, scene in keys.items():
        for word in key.split():
            if len(word) >= _MIN_WORD:
                words.setdefault(word, scene)
    close = difflib.get_close_matches(wanted, words, n=1, cutoff=_WORD_CUTOFF)
    return words[close[0]] if close else None


def suggest(scenes: Mapping[str, Scene], typed: str, language: str, limit: int = 25) -> list[Scene]:
    """Scenes as a name is typed (Discord's autocomplete, at most 25): those whose id or title in `language`
    contains what is typed, easiest first; all of them, by level, while nothing is typed."""
    wanted = _fold(typed)
    levels = list(Level)
    ordered = sorted(scenes.values(), key=lambda s: (levels.index(s.level), _fold(s.title(language))))
    return [s for s in ordered if not wanted or wanted in _fold(s.id) or wanted in _fold(s.title(language))][:limit]


def surprise(scenes: Mapping[str, Scene], level: Level, interests: Sequence[str], rng: random.Random) -> Scene:
    """A scene for the level, preferring one whose tags occur as words in the learner's interests (free-text
    facts like "plays football"); a tag also matches a longer word it starts ("cook" in "cooking").
    Raises LookupError when no scene fits the level (an empty catalog)."""
    pool = for_level(scenes, level)
    if not pool:
        raise LookupError(f"no scene for level {level}")
    words = {word for fact in interests for word in re.findall(r"\w+", _fold(fact))}
    liked = [scene for scene in pool if any(_matches(tag, words) for tag in scene.tags)]
    return rng.choice(liked or pool)


def _matches(tag: str, words: set[str]) -> bool:
    if tag in words:
        return True
    return len(tag) >= 4 and any(word.startswith(tag) for word in words)


def _fold(text: str) -> str:
    """Casefolded, accents stripped, `-`/`_` as spaces, whitespace collapsed: how names are compared."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.replace("-", " ").replace("_", " ").split())


def _load_dir(directory: Path) -> dict[str, Scene]:
    return {path.stem: _load_file(path) for path in sorted(directory.glob("*.toml"))}


def _load_file(path: Path) -> Scene:
    try:
        with path.open("rb") as source:
            data = tomllib.load(source)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SceneError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise SceneError(f"{path}: cannot be read: {error}") from None
    try:
        return _parse(path.stem, data)
    except _Invalid as error:
        raise SceneError(f"{path}: {error}") from None


class _Invalid(Exception):
    """What is wrong inside a file, before the file's name is added."""


def _parse(scene_id: str, data: dict[str, Any]) -> Scene:
    if not _ID.fullmatch(scene_id):
        raise _Invalid(
            f"the file name {scene_id!r} is not a valid scene id "
            "(lowercase ascii letters, digits and '-', at most 24 characters)"
        )
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise _Invalid(f"missing key(s): {', '.join(missing)}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise _Invalid(f"unknown key(s): {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    level_text = _text(data, "level")
    try:
        level = Level.parse(level_text)
    except InvalidLevel:
        raise _Invalid(f"unknown level {level_text!r} (use one of {', '.join(Level)})") from None
    turns = data.get("turns", DEFAULT_TURNS)
    if not isinstance(turns, int) or isinstance(turns, bool):
        raise _Invalid(f"'turns' must be a whole number, not {type(turns).__name__}")
    if not MIN_TURNS <= turns <= MAX_TURNS:
        raise _Invalid(f"'turns' is {turns}; it must be from {MIN_TURNS} to {MAX_TURNS}")
    return Scene(
        id=scene_id,
        level=level,
        role=_text(data, "role"),
        setting=_text(data, "setting"),
        goal=_text(data, "goal"),
        phrases=_texts(data, "phrases", allow_empty=False),
        titles=_translations(data, "title", MAX_TITLE),
        goals=_translations(data, "goal_text", MAX_GOAL_TEXT),
        turns=turns,
        tags=tuple(tag.casefold() for tag in _texts(data, "tags", allow_empty=True)),
    )


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise _Invalid(f"{key!r} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise _Invalid(f"{key!r} is empty")
    return value.strip()


def _texts(data: Mapping[str, Any], key: str, *, allow_empty: bool) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise _Invalid(f"{key!r} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise _Invalid(f"{key!r} is empty")
    return tuple(item.strip() for item in value)


def _translations(data: Mapping[str, Any], key: str, limit: int) -> Mapping[str, str]:
    table = data[key]
    if not isinstance(table, dict):
        raise _Invalid(f"[{key}] must be a table of language = text")
    unknown = sorted(set(table) - set(UI_LANGUAGES))
    if unknown:
        raise _Invalid(f"[{key}] has unknown language(s) {', '.join(unknown)} (use {', '.join(UI_LANGUAGES)})")
    if "en" not in table:
        raise _Invalid(f"[{key}] needs an 'en' text")
    texts: dict[str, str] = {}
    for language in UI_LANGUAGES:
        if language not in table:
            continue
        text = table[language]
        if not isinstance(text, str) or not text.strip():
            raise _Invalid(f"[{key}] {language} must be a non-empty string")
        if len(text.strip()) > limit:
            raise _Invalid(f"[{key}] {language} is {len(text.strip())} characters; at most {limit}")
        texts[language] = text.strip()
    return MappingProxyType(texts)
