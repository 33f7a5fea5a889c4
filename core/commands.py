"""The chat commands, the same on every platform: names, what they take, who may use them, their help."""

from __future__ import annotations

from dataclasses import dataclass

from .i18n import Msg, _
from .lesson import Level


@dataclass(frozen=True)
class Spec:
    """One command as every adapter registers it: Telegram `/name args`, a Discord slash command, a terminal line."""

    name: str
    description: Msg  # one line, ≤ 100 characters in every language (Discord's limit; Telegram allows 256)
    usage: str = ""  # the arguments, as typed after the name
    teacher: bool = False  # changes a classroom's lesson: teachers only in a group
    groups_only: bool = False


COMMANDS: tuple[Spec, ...] = (
    Spec("start", _("What I am and how to begin")),
    Spec("learn", _("Start or switch a lesson"), "<language> [A1–C2]", teacher=True),
    Spec("level", _("Change the level"), "<A1–C2>", teacher=True),
    Spec("native", _("The language I explain in and speak to you in"), "<language>"),
    Spec("status", _("Show this chat's lesson")),
    Spec("reset", _("Forget this chat's conversation"), teacher=True),
    Spec("stop", _("Pause the lesson (/learn resumes it)"), teacher=True),
    Spec(
        "classroom",
        _("Answer every message here, or only mentions"),
        "on|off|cap <n>|cap off",
        teacher=True,
        groups_only=True,
    ),
    Spec("review", _("Review your cards: your corrected mistakes and new words")),
    Spec("save", _("Save a word or phrase to review"), "<word or phrase>"),
    Spec("progress", _("Your progress: this week beside the last, with a chart")),
    Spec("roleplay", _("Play a scene with a goal: at the café, a job interview…"), "[scene]", teacher=True),
    Spec("endscene", _("End the scene (or the placement) now"), teacher=True),
    Spec("placement", _("A short chat that finds your level")),
    Spec("memory", _("What I remember about you, to delete")),
    Spec("report", _("The class's progress, per student, for the teacher alone"), teacher=True, groups_only=True),
    Spec("remind", _("A daily reminder when cards are due (private chats)"), "on|off"),
    Spec("mydata", _("See or delete what I keep about you")),
    Spec("forget", _("Delete everything I keep about you")),
    Spec("help", _("What I can do")),
)
BY_NAME: dict[str, Spec] = {spec.name: spec for spec in COMMANDS}
# What each option means, where a platform shows options (Discord's slash commands): command → option → help.
OPTIONS: dict[str, dict[str, Msg]] = {
    "learn": {
        "language": _("The language to learn (leave out to pick from a list)"),
        "level": _("How well you know it already"),
    },
    "level": {"level": _("A1 is a beginner, C2 near-native")},
    "native": {"language": _("The language I explain mistakes in")},
    "classroom": {
        "mode": _("on: answer every message; off: only mentions and replies; cap: a daily limit"),
        "messages": _("With cap: messages a day per student here (0 lifts the limit)"),
    },
    "save": {"phrase": _("A word or phrase in the language you are learning")},
    "roleplay": {"scene": _("The scene to play (leave out to pick from a list)")},
    "remind": {"mode": _("on: one message a day when cards are due; off: none")},
}


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]


def parse_command(text: str, bot_username: str | None = None) -> Command | None:
    """`/learn@polyglott_bot spanish b1` → Command("learn", ("spanish", "b1")); None if not a command
    (or addressed to another bot)."""
    if not text.startswith("/") or not text[1:2].strip():  # "/" alone or "/ word" is not a command
        return None
    head, *args = text[1:].split()
    name, _sep, addressee = head.partition("@")
    if addressee and bot_username and addressee.casefold() != bot_username.casefold():
        return None
    return Command(name.casefold(), tuple(args))


def learn_arguments(args: tuple[str, ...] | list[str]) -> tuple[str | None, str | None]:
    """Split `/learn brazilian portuguese b1` into ("brazilian portuguese", "B1"); a level is optional."""
    words = list(args)
    level = None
    if words and words[-1].upper() in Level.__members__:
        level = words.pop().upper()
    return (" ".join(words) or None), level
