"""What a channel is learning: language, CEFR level, the language for explanations, and whether it is on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import InvalidLevel
from .i18n import Msg, _
from .languages import Language


class Level(StrEnum):
    A1 = "A1"
    A2 = "A2"
    B1 = "B1"
    B2 = "B2"
    C1 = "C1"
    C2 = "C2"

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls(text.strip().upper())
        except ValueError:
            raise InvalidLevel(text) from None

    @property
    def can_do(self) -> str:
        return _CAN_DO[self]

    @property
    def style(self) -> str:
        return _STYLE[self]

    @property
    def label(self) -> Msg:
        """What the level means, in a word or two, for people who do not know the CEFR."""
        return _LABELS[self]


_LABELS = {
    Level.A1: _("beginner"),
    Level.A2: _("elementary"),
    Level.B1: _("intermediate"),
    Level.B2: _("upper intermediate"),
    Level.C1: _("advanced"),
    Level.C2: _("proficient"),
}


# From the CEFR descriptors: what a learner at the level understands, and so how the tutor must write.
_CAN_DO = {
    Level.A1: "understands familiar everyday expressions and can introduce themselves",
    Level.A2: "handles routine exchanges about shopping, family, work and directions",
    Level.B1: "follows the main points on familiar matters and describes experiences, hopes and plans",
    Level.B2: "understands complex text and talks fluently with native speakers",
    Level.C1: "uses the language flexibly and understands implicit meaning",
    Level.C2: "understands virtually everything with ease",
}
# Small models write too hard for beginners and too easy for the advanced, so the extremes are pushed harder.
_STYLE = {
    Level.A1: "Very short, simple sentences, one idea each; present tense only; only the most common words. "
    "Keep it simpler than you think you need to.",
    Level.A2: "Short sentences; present and simple past; common connectors like 'and', 'but', 'because'.",
    Level.B1: "Connected sentences; past, present and future tenses; explain any idiom you use.",
    Level.B2: "Natural, fluent sentences with subjunctive and conditionals; some idioms without explanation.",
    Level.C1: "Native register with nuance and varied, precise vocabulary. Do not simplify.",
    Level.C2: "Unrestricted native writing: idioms, wordplay, complex structures. Never simplify.",
}


@dataclass(frozen=True)
class Lesson:
    channel: str
    language: Language
    level: Level
    native: Language
    group: bool = False
    active: bool = True
    answer_all: bool = False  # in a group: answer every message, not only those addressed to the tutor
    daily_cap: int | None = None  # in a group: each student's messages a day here, set by a teacher (/classroom cap)
