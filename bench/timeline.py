"""What the model produced and what the chat showed, over time, for each answer: read from the fakes' logs.

Both fakes and the fake model stamp events with this process's event-loop clock, so their times compare
directly: the model's when it writes a token, the platforms' when a request arrives.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

from bench.world import World, spans, waiting
from tests.fake_telegram import EntityParseError, parse_html

TELEGRAM_TEXTS = {"sendmessage": "send", "editmessagetext": "edit", "sendmessagedraft": "draft"}


@dataclass
class Answer:
    """One answer's two timelines: characters produced by the model, characters visible in the chat."""

    tag: int
    produced: list[tuple[float, int]] = field(default_factory=list)  # (time, characters so far)
    shown: list[tuple[float, int]] = field(default_factory=list)  # (time, characters visible)
    sends: int = 0
    edits: int = 0
    drafts: int = 0
    streams: int = 0  # model streams that wrote it: more than one when a later reply answered it again

    @property
    def first_token(self) -> float | None:
        return self.produced[0][0] if self.produced else None

    @property
    def first_shown(self) -> float | None:
        return self.shown[0][0] if self.shown else None

    def complete_at(self, length: int) -> float | None:
        """When the whole text (`length` characters) was first visible."""
        return next((t for t, chars in self.shown if chars >= length), None)

    def staleness(self, length: int, step: float, until: float) -> list[tuple[int, float]]:
        """Every `step` seconds from the first token until the answer is complete (or `until`, if it never
        was): how many characters the model had written that the chat did not show yet, and how long the
        oldest of them had been waiting."""
        start, end = self.first_token, self.complete_at(length) or until
        if start is None:
            return []
        times = [t for t, _ in self.produced]
        counts = [c for _, c in self.produced]
        shown_times = [t for t, _ in self.shown]
        samples = []
        t = start
        while t <= end + 1e-9:
            produced = counts[bisect.bisect_right(times, t) - 1]
            at = bisect.bisect_right(shown_times, t) - 1
            visible = self.shown[at][1] if at >= 0 else 0
            if visible >= produced:
                samples.append((0, 0.0))
            else:
                oldest = times[bisect.bisect_left(counts, visible + 1)]  # the first character not yet shown
                samples.append((produced - visible, t - oldest))
            t += step
        return samples


def answers(world: World, *, calls_from: tuple[int, int] = (0, 0), streams_from: int = 0) -> dict[int, Answer]:
    """Every tagged answer since the given positions in the fakes' logs (Telegram calls, Discord calls, streams).

    A stream that answers several students (its prompt ends in several tagged questions) gives each its own part,
    from where its tag starts in the stream; a chat message that holds several parts shows each its own (see
    `bench.world.spans`). An answer written again by a later stream (its question was still in that prompt's
    trailing user turns) keeps the timeline of the first; `streams` counts them. A request counts for every
    answer whose part it shows: in a message of one answer, each request as ever; in a shared one, a send or an
    edit for the students whose part it first shows (a send) or changes (its kind), nothing for the others.
    """
    found: dict[int, Answer] = defaultdict(lambda: Answer(0))
    for stream in world.ollama.streams[streams_from:]:
        tags = waiting(stream.messages)
        if len(tags) == 1:
            _produced(found[tags[0]], stream.tokens, 0, None)
        elif tags:
            text = "".join(token for _, token in stream.tokens)
            for tag, start, end in spans(text):
                if tag in tags:
                    _produced(found[tag], stream.tokens, start, end)
    seen: dict[int, str] = {}  # each answer's part as last shown
    for call in world.telegram.calls[calls_from[0] :]:
        kind = TELEGRAM_TEXTS.get(call.method.lower())
        if kind is None or not call.ok:
            continue
        _shown(found, seen, call.time, _telegram_plain(call.params), kind)
    for request in world.discord.calls[calls_from[1] :]:
        if request.status != 200 or not isinstance(request.json, dict) or "content" not in request.json:
            continue
        if request.method == "POST" and request.path.endswith("/messages"):
            _shown(found, seen, request.time, request.json["content"] or "", "send")
        elif request.method == "PATCH" and "/messages/" in request.path:
            _shown(found, seen, request.time, request.json["content"] or "", "edit")
    for tag, answer in found.items():
        answer.tag = tag
        answer.shown.sort()
    return dict(found)


def _produced(answer: Answer, tokens: list[tuple[float, str]], start: int, end: int | None) -> None:
    """The characters of one answer the model had written after each token: those of the part from `start`
    to `end` of the stream (the whole stream when `end` is None). Only its first stream's."""
    answer.streams += 1
    if answer.streams > 1:
        return
    text = ""
    for t, token in tokens:
        text += token
        chars = len(text.rstrip()) - start
        if end is None:
            answer.produced.append((t, chars))
        elif chars > 0:
            answer.produced.append((t, min(chars, end - start)))


def _shown(found: dict[int, Answer], seen: dict[int, str], time: float, text: str, kind: str) -> None:
    """One text a platform received (a notice or a welcome holds no answer)."""
    held = spans(text)
    for tag, start, end in held:
        part = text[start:end]
        answer = found[tag]
        answer.shown.append((time, len(part)))
        if (len(held) == 1 and start == 0) or kind == "draft":
            counted: str | None = kind
        elif tag not in seen:
            counted = "send"
        else:
            counted = kind if seen[tag] != part else None
        seen[tag] = part
        if counted is not None:
            setattr(answer, counted + "s", getattr(answer, counted + "s") + 1)


def _telegram_plain(params: dict[str, object]) -> str:
    text = str(params.get("text") or "")
    if str(params.get("parse_mode") or "").lower() != "html":
        return text
    try:
        return parse_html(text)[0]
    except EntityParseError:
        return text


def positions(world: World) -> tuple[tuple[int, int], int]:
    """Where the fakes' logs stand now, to read only what a run adds."""
    return (len(world.telegram.calls), len(world.discord.calls)), len(world.ollama.streams)


def model_rate(world: World, streams_from: int, scale: float) -> float:
    """The fake model's median rate over the streams since `streams_from`, in tokens per platform second."""
    rates = sorted(
        (len(s.tokens) - 1) / (s.tokens[-1][0] - s.tokens[0][0]) * scale
        for s in world.ollama.streams[streams_from:]
        if len(s.tokens) > 1 and s.tokens[-1][0] > s.tokens[0][0]
    )
    return round(rates[len(rates) // 2], 1) if rates else 0.0
