"""The chat commands every adapter understands, and their help, so all platforms say the same."""

from __future__ import annotations

from dataclasses import dataclass

from .lesson import Level

COMMANDS: dict[str, str] = {
    "learn": "Start or switch a lesson: /learn spanish [A1–C2]",
    "level": "Change the level: /level B1",
    "native": "The language for explanations: /native english",
    "status": "Show this chat's lesson",
    "reset": "Forget this chat's conversation",
    "stop": "Pause the lesson (/learn resumes it)",
    "help": "What I can do",
}

HELP = (
    "I'm Polyglott, a language tutor. Chat with me in the language you're learning and I'll answer at your "
    "level and point out mistakes as we go.\n\n"
    + "\n".join(f"/{name} — {text}" for name, text in COMMANDS.items())
    + "\n\nEverything stays on this server: your messages go to a local model, not to a third party."
)


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
    name, _, addressee = head.partition("@")
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


def describe(language: str, level: str, native: str, active: bool = True) -> str:
    """A one-line summary of a lesson for /status."""
    state = "" if active else " (paused)"
    return f"Learning {language} at level {level}, explanations in {native}{state}."
