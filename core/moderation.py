"""The optional safety classifier: every learner message before the model sees it, every reply before it is shown.

`POLYGLOTT_MODERATION_MODEL` names a Llama Guard model (e.g. `llama-guard3:1b`) served by the same Ollama. It is
asked through Ollama's chat API with the conversation as chat messages: Ollama applies the model's own template,
which wraps the last message in Llama Guard's instructions and its hazard categories, and it answers `safe`, or
`unsafe` and a line of categories (`S1`, `S1,S10`). A learner message is judged alone; a reply with the messages it
answers before it, as the user's turn.

What is flagged is never stored nor logged: a flagged learner message is neither kept nor answered by the model
(the learner gets a neutral note), a flagged reply is replaced by a neutral message and teaches nothing. Each is
counted in `flags` (channel, learner, what, when) for the teacher's report. A classifier that cannot be asked, or
answers neither `safe` nor `unsafe`, lets nothing through: the learner is told, and nothing is answered unscreened.

Screening a reply needs all of it, so with a classifier the reply is not shown live: it is buffered and shown once
approved. Per paragraph would show the first one sooner, but a reply is chat-sized (two to four sentences, within
`NUM_PREDICT`), so it would mostly be one paragraph anyway; and each call costs a classifier request and judges a
fragment without the rest of the reply.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal

from .corrections import Findings, Said
from .errors import ModelMissing, ReplyInterrupted, ScreeningUnavailable, TutorError
from .i18n import _, render
from .llm import Model
from .store import Store

log = logging.getLogger(__name__)

# What a flagged reply is replaced with, in the lesson's explanation language.
NEUTRAL_REPLY = _("Let's get back to our lesson. What would you like to talk about?")
# The user's turn before an opener, which answers nobody: Llama Guard judges the last message in a conversation.
OPENING = "Hello!"
# Classifier requests at once: they share the model client's spare connections with doctor's checks and a pull.
SCREENING_PARALLEL = 2

_WORD = re.compile(r"[a-z0-9]+")
_CATEGORY = re.compile(r"s\d{1,2}")


@dataclass(frozen=True)
class Verdict:
    safe: bool
    categories: tuple[str, ...] = ()  # Llama Guard's hazard codes, e.g. ("S1",): codes, never text


def parse(answer: str) -> Verdict | None:
    """Llama Guard's answer: `safe`, or `unsafe` then its categories (`S1`, `S1,S10`), whatever the case,
    spacing or markup around them; None when it is neither (not a Llama Guard model, say)."""
    words = _WORD.findall(answer.casefold())
    if not words or words[0] not in ("safe", "unsafe"):
        return None
    if words[0] == "safe":
        return Verdict(True)
    return Verdict(False, tuple(w.upper() for w in words[1:] if _CATEGORY.fullmatch(w)))


class Moderator:
    """Asks the classifier through the tutor's own Ollama client, and counts what it flags."""

    def __init__(self, name: str, model: Model, store: Store) -> None:
        self.name = name
        self._model = model
        self._store = store
        self._slots = asyncio.Semaphore(SCREENING_PARALLEL)

    async def judge(self, messages: Sequence[Mapping[str, str]]) -> Verdict:
        """The classifier's verdict on the last of `messages`; `ScreeningUnavailable` if there is none to have."""
        try:
            async with self._slots:
                answer = await self._model.classify(self.name, messages)
        except ModelMissing as error:
            log.warning("the moderation model is not installed: nothing is answered", extra={"error": self.name})
            raise ScreeningUnavailable(self.name, missing=True) from error
        except TutorError as error:
            log.warning("the moderation model failed: nothing is answered", extra={"error": type(error).__name__})
            raise ScreeningUnavailable(self.name) from error
        verdict = parse(answer)
        if verdict is None:  # what it said is not logged: it could repeat what it was asked about
            log.warning("the moderation model answered neither safe nor unsafe: is it a Llama Guard model?")
            raise ScreeningUnavailable(self.name)
        return verdict

    async def allows(self, channel: str, learner: str, text: str) -> bool:
        """Whether a learner's message may go to the tutor; a flagged one is counted."""
        verdict = await self.judge([{"role": "user", "content": text}])
        if not verdict.safe:
            await self._flag(channel, learner, "message", verdict)
        return verdict.safe

    async def approves(self, channel: str, said: Sequence[Said], reply: str) -> bool:
        """Whether a reply to `said` (none: an opener) may be shown; a flagged one is counted, for the student it
        answers (for none in particular when it answers several)."""
        if len(said) > 1:
            asked = "\n\n".join(f"{s.name}: {s.text}" if s.name else s.text for s in said)
        else:
            asked = said[0].text if said else OPENING
        verdict = await self.judge([{"role": "user", "content": asked}, {"role": "assistant", "content": reply}])
        if not verdict.safe:
            authors = {s.author for s in said}
            await self._flag(channel, authors.pop() if len(authors) == 1 else None, "reply", verdict)
        return verdict.safe

    async def _flag(
        self, channel: str, learner: str | None, what: Literal["message", "reply"], verdict: Verdict
    ) -> None:
        categories = ",".join(verdict.categories) or "-"
        log.info("%s flagged by the safety check (%s)", what, categories, extra={"channel": channel})
        await self._store.add_flag(channel, learner, what, time.time())


async def screened(
    chunks: AsyncGenerator[str, None],
    moderator: Moderator,
    channel: str,
    said: Sequence[Said],
    native: str,
    findings: Findings | None = None,
) -> AsyncGenerator[str, None]:
    """The whole reply once the classifier approves of it, or else `NEUTRAL_REPLY` in `native` (and `findings`
    emptied: a flagged reply teaches nothing). A reply the model broke off is screened as far as it got, then the
    break is raised."""
    parts: list[str] = []
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                parts.append(chunk)
    except ReplyInterrupted:
        if parts:
            yield await _approved(moderator, channel, said, "".join(parts), native, findings)
        raise
    if parts:
        yield await _approved(moderator, channel, said, "".join(parts), native, findings)


async def _approved(
    moderator: Moderator, channel: str, said: Sequence[Said], reply: str, native: str, findings: Findings | None
) -> str:
    if await moderator.approves(channel, said, reply):
        return reply
    if findings is not None:
        findings.corrections.clear()
        findings.words.clear()
    return render(NEUTRAL_REPLY, native)
