"""Failures the learner is told about: each carries a short message fit to post in a chat."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .i18n import Msg, _, _n

if TYPE_CHECKING:
    from .languages import Language


class TutorError(Exception):
    """Base class: `error.message` is one line for the chat, never a traceback, rendered in the reader's
    language by whoever shows it; `str(error)` is its English text, for logs and the terminal's tests."""

    def __init__(self, message: Msg) -> None:
        super().__init__(str(message))
        self.message = message


class UnknownLanguage(TutorError):
    def __init__(self, query: str, suggestions: tuple[Language, ...]) -> None:
        self.query = query
        self.suggestions = suggestions
        shown = query.strip()[:40] or "?"
        if suggestions:
            names = ", ".join(str(lang) for lang in suggestions)
            super().__init__(_("I don't know the language “{query}”. Did you mean: {names}?", query=shown, names=names))
        else:
            super().__init__(
                _("I don't know the language “{query}”. Try a name like Spanish, français or de.", query=shown)
            )


class InvalidLevel(TutorError):
    def __init__(self, query: str) -> None:
        super().__init__(
            _("“{query}” is not a level. Use one of A1, A2, B1, B2, C1, C2.", query=query.strip()[:20] or "?")
        )


class NoLesson(TutorError):
    def __init__(self) -> None:
        super().__init__(_("There is no lesson here yet. Start one with /learn <language>, e.g. /learn spanish."))


class LessonPaused(TutorError):
    def __init__(self) -> None:
        super().__init__(_("The lesson is paused. Send /learn to pick it up again."))


class NotTeacher(TutorError):
    """A student tried to change a classroom's lesson."""

    def __init__(self) -> None:
        super().__init__(_("Sorry, only teachers can change this lesson. Ask your teacher!"))


class OllamaUnavailable(TutorError):
    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            _("I can't reach the language model at {host}. Is Ollama running? Start it with `ollama serve`.", host=host)
        )


class ModelMissing(TutorError):
    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            _("The model {model} is not installed. The operator can add it with `ollama pull {model}`.", model=model)
        )


class ModelFailed(TutorError):
    """The model answered with an error (overloaded, out of memory, timed out)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(_("The language model ran into a problem. Please try again in a moment."))


class ReplyInterrupted(TutorError):
    """The stream broke after some text: the partial reply is kept, marked as cut off."""

    def __init__(self) -> None:
        super().__init__(
            _("My reply was cut off by a problem with the language model. Please send your message again.")
        )


class ReplyDiscarded(TutorError):
    """The conversation was reset or switched while this reply was on its way: it ends here, unannounced."""

    def __init__(self) -> None:
        super().__init__(_("That reply was discarded."))


class AnsweredTogether(ReplyDiscarded):
    """In a busy group this message is answered in the reply to another student's, along with theirs."""


class PullFailed(TutorError):
    """Ollama could not fetch a model: most often a misspelt name or tag."""

    def __init__(self, model: str, detail: str) -> None:
        self.model = model
        self.detail = detail
        super().__init__(
            _(
                "Could not pull {model}: {detail}. Check the name and tag at https://ollama.com/library.",
                model=model,
                detail=detail,
            )
        )


class DailyCapReached(TutorError):
    """The learner wrote their messages for today (`POLYGLOTT_DAILY_MESSAGES`, or the group's `/classroom cap`).
    The first time in a day `error.message` is the note to show them; `told`: they had it already today, and
    nothing is said (the message is not stored, so no restart answers it)."""

    def __init__(self, cap: int, *, told: bool = False) -> None:
        self.cap = cap
        self.told = told
        super().__init__(
            _n(
                "Great work today! You've written {n} message, today's limit, so I'll answer again tomorrow "
                "(the day starts at midnight UTC).",
                "Great work today! You've written {n} messages, today's limit, so I'll answer again tomorrow "
                "(the day starts at midnight UTC).",
                cap,
            )
        )


class MessageWithheld(TutorError):
    """The safety classifier flagged the learner's message: it is not stored and the model never sees it."""

    def __init__(self) -> None:
        super().__init__(_("Let's keep our chat kind and safe, so I won't answer that message. Back to the lesson!"))


class ScreeningUnavailable(TutorError):
    """The safety classifier could not be asked (Ollama down, its model not installed, an error): nothing is
    answered unscreened."""

    def __init__(self, model: str, *, missing: bool = False) -> None:
        self.model = model
        self.missing = missing
        if missing:
            message = _(
                "The safety check's model {model} is not installed, so I can't answer. The operator can add it "
                "with `ollama pull {model}`.",
                model=model,
            )
        else:
            message = _("I can't check messages for safety right now, so I can't answer. Please try again in a moment.")
        super().__init__(message)
