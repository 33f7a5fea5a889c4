"""What the model produced and what the chat showed, over time, for each answer: read from the fakes' logs.

Both fakes and the fake model stamp events with this process's event-loop clock, so their times compare
directly: the model's when it writes a token, the platforms' when a request arrives.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

from bench.world import TAG, World
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
    """Every tagged answer since the given positions in the fakes' logs (Telegram calls, Discord calls, streams)."""
    found: dict[int, Answer] = defaultdict(lambda: Answer(0))
    for stream in world.ollama.streams[streams_from:]:
        tag = TAG.search(str(stream.messages[-1].get("content", "")))
        if tag is None:
            continue
        answer = found[int(tag[1])]
        text = ""
        for t, token in stream.tokens:
            text += token
            answer.produced.append((t, len(text.rstrip())))
    for call in world.telegram.calls[calls_from[0] :]:
        kind = TELEGRAM_TEXTS.get(call.method.lower())
        if kind is None or not call.ok:
            continue
        _shown(found, call.time, _telegram_plain(call.params), kind)
    for request in world.discord.calls[calls_from[1] :]:
        if request.status != 200 or not isinstance(request.json, dict) or "content" not in request.json:
            continue
        if request.method == "POST" and request.path.endswith("/messages"):
            _shown(found, request.time, request.json["content"] or "", "send")
        elif request.method == "PATCH" and "/messages/" in request.path:
            _shown(found, request.time, request.json["content"] or "", "edit")
    for tag, answer in found.items():
        answer.tag = tag
        answer.shown.sort()
    return dict(found)


def _shown(found: dict[int, Answer], time: float, text: str, kind: str) -> None:
    if not text.startswith("Q") or ":" not in text[:12]:
        return  # a notice, a welcome: not an answer
    answer = found[int(text[1 : text.index(":")])]
    answer.shown.append((time, len(text)))
    setattr(answer, kind + "s", getattr(answer, kind + "s") + 1)


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
