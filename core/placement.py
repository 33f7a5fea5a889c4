"""The placement: tasks of rising level, a staircase that climbs on a task managed and steps down on one missed.

A placement rests on what the learner could do in the chat, task by task, not on one rating of one text: zero-shot
models rate a text's CEFR level poorly (see TUTORING.md), but whether an answer did a task is a narrower question.
The model judges each answer (`prompts.placement_judge`); the ladder, and so the level proposed, is code's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .i18n import Msg, Voice, _
from .lesson import Level

MIN_TASKS = 6  # a placement asks six to ten tasks ...
MAX_TASKS = 10
# ... unless the learner misses A1 twice: a beginner is not made to fail six times (anxiety blocks uptake); A1 it is.


@dataclass(frozen=True)
class Task:
    """One thing to ask at a level: `ask` completes "ask the learner to …" for the model; `can` names it for the
    learner's reasons ("You managed: introducing yourself")."""

    level: Level
    ask: str
    can: Msg


TASKS: dict[Level, tuple[Task, ...]] = {
    Level.A1: (
        Task(Level.A1, "introduce themselves: their name and where they are from", _("introducing yourself")),
        Task(Level.A1, "say what they like to eat or drink", _("saying what you like")),
        Task(Level.A1, "describe their family or a friend in a few words", _("describing people you know")),
    ),
    Level.A2: (
        Task(Level.A2, "describe what they do on a normal day", _("describing your day")),
        Task(Level.A2, "say what they did last weekend", _("saying what you did")),
        Task(Level.A2, "describe the place where they live", _("describing where you live")),
    ),
    Level.B1: (
        Task(Level.B1, "tell about a trip or an event in the past and how they felt", _("telling a story")),
        Task(Level.B1, "explain a plan they have and why", _("explaining plans and reasons")),
        Task(Level.B1, "give advice to a friend who has a small problem", _("giving advice")),
    ),
    Level.B2: (
        Task(Level.B2, "give their opinion on a topic of their choice with reasons for and against", _("arguing")),
        Task(Level.B2, "describe a problem in their town and suggest solutions", _("discussing problems")),
        Task(Level.B2, "compare two ways of learning a language", _("comparing")),
    ),
    Level.C1: (
        Task(Level.C1, "say what would have happened if an event in history had gone differently", _("speculating")),
        Task(Level.C1, "weigh up a view they disagree with, fairly, before answering it", _("nuanced argument")),
        Task(Level.C1, "explain something from their work or studies to a newcomer", _("explaining complex ideas")),
    ),
    Level.C2: (
        Task(Level.C2, "explain the difference between two closely related words or ideas", _("fine distinctions")),
        Task(Level.C2, "argue persuasively for an unpopular position", _("persuading")),
        Task(Level.C2, "retell a saying or idiom of their language and what it reveals", _("idiomatic language")),
    ),
}
LEVELS = tuple(Level)


@dataclass
class Ladder:
    """A placement under way: the level asked now, and every task asked so far with whether it was managed."""

    level: Level = Level.A1
    asked: list[tuple[str, int, bool | None]] = field(default_factory=list)  # (level, task index, managed)

    @property
    def task(self) -> Task:
        level, index, _managed = self.asked[-1]
        return TASKS[Level(level)][index]

    def ask(self) -> Task:
        """The next task, at the current level: one not asked yet at this level, else the first again."""
        used = [index for level, index, _m in self.asked if level == self.level.value]
        index = len(used) % len(TASKS[self.level])
        self.asked.append((self.level.value, index, None))
        return TASKS[self.level][index]

    def judged(self, managed: bool) -> None:
        """The last task was managed or not: climb or step down."""
        level, index, _none = self.asked[-1]
        self.asked[-1] = (level, index, managed)
        at = LEVELS.index(self.level)
        self.level = LEVELS[min(at + 1, len(LEVELS) - 1)] if managed else LEVELS[max(at - 1, 0)]

    @property
    def done(self) -> bool:
        judged = [(Level(level), managed) for level, _i, managed in self.asked if managed is not None]
        missed = [level for level, managed in judged if not managed]
        if len(judged) >= MAX_TASKS or (Level.C2, True) in judged:
            return True
        if missed.count(Level.A1) >= 2:
            return True
        return len(judged) >= MIN_TASKS and any(missed.count(level) >= 2 for level in set(missed))

    def result(self) -> Level:
        """The highest level with a task managed and at least as many managed as missed there; A1 if none."""
        tally: dict[Level, list[bool]] = {}
        for level, _i, managed in self.asked:
            if managed is not None:
                tally.setdefault(Level(level), []).append(managed)
        passed = [level for level, results in tally.items() if results.count(True) >= max(1, results.count(False))]
        return max(passed, key=LEVELS.index, default=Level.A1)

    def managed(self) -> list[Task]:
        return [TASKS[Level(level)][i] for level, i, managed in self.asked if managed]

    def missed(self) -> list[Task]:
        return [TASKS[Level(level)][i] for level, i, managed in self.asked if managed is False]

    def state(self) -> dict[str, object]:
        return {"level": self.level.value, "asked": [list(item) for item in self.asked]}

    @classmethod
    def of(cls, state: dict[str, object]) -> Ladder:
        raw = state.get("asked", [])
        asked = (
            [(str(a[0]), int(a[1]), None if a[2] is None else bool(a[2])) for a in raw] if isinstance(raw, list) else []
        )
        return cls(Level(str(state.get("level", "A1"))), asked)


def proposal(level: Level, managed: tuple[str, ...], missed: tuple[str, ...], say: Voice) -> str:
    """The placement's end, in the learner's language: the level, and the tasks it rests on."""
    lines = [say(_("Placement done: I suggest level {level} ({name}).", level=level.value, name=say(level.label)))]
    if managed:
        lines.append("✅ " + say(_("You managed: {tasks}.", tasks=", ".join(managed))))
    if missed:
        lines.append("➖ " + say(_("Not yet: {tasks}.", tasks=", ".join(missed))))
    return "\n".join(lines)
