"""The streaming relay, against a recording chat target on a fast-forwarded clock (looptime)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from core.errors import ReplyInterrupted
from core.outcome import Button, Buttons
from core.pacing import ChatPacer, Pacers
from core.relay import DraftsUnavailable, Limits, RetryAfter, relay

pytestmark = pytest.mark.looptime

LIMITS = Limits(max_length=100, edit_interval=1.0)
LEVELS: Buttons = ((Button("A1", "level:es:A1"), Button("✓ A2", "level:es:A2")),)


@dataclass
class Op:
    at: float
    kind: str  # send | edit | draft
    handle: int
    text: str
    buttons: Buttons = ()


@dataclass
class RecordingChat:
    """A chat that records every update with the loop time it arrived at."""

    ops: list[Op] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    retry_after: list[float] = field(default_factory=list)  # RetryAfter to raise on the next updates

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _maybe_refuse(self) -> None:
        if self.retry_after:
            raise RetryAfter(self.retry_after.pop(0))

    async def send(self, text: str, buttons: Buttons = ()) -> int:
        self._maybe_refuse()
        handle = len(self.texts) + 1
        self.texts[handle] = text
        self.ops.append(Op(self._now(), "send", handle, text, buttons))
        return handle

    async def edit(self, handle: int, text: str, buttons: Buttons = ()) -> None:
        self._maybe_refuse()
        assert self.texts[handle] != text or buttons, "edited with unchanged text and no buttons to add"
        self.texts[handle] = text
        self.ops.append(Op(self._now(), "edit", handle, text, buttons))


@dataclass
class DraftingChat(RecordingChat):
    refuse_drafts: bool = False

    async def draft(self, text: str) -> None:
        if self.refuse_drafts:
            raise DraftsUnavailable()
        self.ops.append(Op(self._now(), "draft", 0, text))


async def tokens(parts: Sequence[str], every: float = 0.1, first_after: float = 0.0) -> AsyncIterator[str]:
    await asyncio.sleep(first_after)
    for i, part in enumerate(parts):
        if i:
            await asyncio.sleep(every)
        yield part


def words(n: int, word: str = "palabra") -> list[str]:
    return [f"{word}{i} " for i in range(n)]


async def test_first_text_is_sent_as_soon_as_the_first_chunk_arrives() -> None:
    chat = RecordingChat()
    start = asyncio.get_running_loop().time()
    await relay(tokens(["Hola", " amigo"], first_after=3.0), chat, LIMITS)
    assert chat.ops[0].kind == "send"
    assert chat.ops[0].text == "Hola"
    assert chat.ops[0].at - start == pytest.approx(3.0, abs=0.01)


async def test_edits_of_one_message_are_at_least_the_interval_apart() -> None:
    chat = RecordingChat()
    await relay(tokens(words(12), every=0.1), chat, Limits(max_length=4000, edit_interval=0.5))
    times = [op.at for op in chat.ops]
    assert all(b - a >= 0.5 - 1e-6 for a, b in itertools.pairwise(times))
    assert len(chat.ops) < 12


async def test_the_final_text_is_complete() -> None:
    chat = RecordingChat()
    parts = words(30)
    delivery = await relay(tokens(parts, every=0.05), chat, Limits(max_length=4000, edit_interval=1.0))
    assert delivery.texts == ["".join(parts).strip()]
    assert chat.texts[1] == "".join(parts).strip()


async def test_updates_are_never_sent_with_unchanged_text() -> None:
    chat = RecordingChat()  # its edit() asserts the text changed
    await relay(tokens(["Hola", " ", " ", "\n", "amigo", " ", ""], every=0.6), chat, LIMITS)
    texts = [op.text for op in chat.ops]
    assert len(texts) == len(set(texts))


async def test_long_replies_are_split_at_the_limit_on_word_boundaries() -> None:
    chat = RecordingChat()
    parts = words(60)
    delivery = await relay(tokens(parts, every=0.05), chat, LIMITS)
    assert len(delivery.messages) > 1
    assert all(len(text) <= LIMITS.max_length for text in delivery.texts)
    assert " ".join(delivery.texts).split() == "".join(parts).split()


async def test_a_code_block_cut_by_the_limit_is_closed_and_reopened() -> None:
    chat = RecordingChat()
    code = "```python\n" + "".join(f"x = {i}\n" for i in range(30)) + "```\nListo."
    delivery = await relay(tokens([code[i : i + 7] for i in range(0, len(code), 7)]), chat, LIMITS)
    assert len(delivery.messages) > 1
    for text in delivery.texts[:-1]:
        assert text.count("```") % 2 == 0
    assert delivery.texts[1].startswith("```python\n")


async def test_retry_after_is_honoured_and_the_final_text_still_lands() -> None:
    chat = RecordingChat()
    chat.retry_after = [5.0]  # the very first send is refused
    start = asyncio.get_running_loop().time()
    delivery = await relay(tokens(["Hola", " amigo", "."], every=0.1), chat, LIMITS)
    assert chat.ops[0].at - start >= 5.0
    assert delivery.texts == ["Hola amigo."]


async def test_a_refused_final_edit_is_retried_until_it_lands() -> None:
    chat = RecordingChat()
    limits = Limits(max_length=4000, edit_interval=0.0)

    async def stream() -> AsyncIterator[str]:
        yield "Hola"
        await asyncio.sleep(0.1)
        chat.retry_after = [2.0, 2.0]
        yield " amigo"

    delivery = await relay(stream(), chat, limits)
    assert delivery.texts == ["Hola amigo"]
    assert chat.texts[1] == "Hola amigo"


async def test_replies_in_one_chat_share_its_budget() -> None:
    chat = RecordingChat()
    pacer = ChatPacer([(3, 1.0)])
    limits = Limits(max_length=4000, edit_interval=0.0)
    results = await asyncio.gather(
        *(relay(tokens(words(20, f"r{n}w"), every=0.05), chat, limits, pacer) for n in range(4))
    )
    times = sorted(op.at for op in chat.ops)
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 1.0 - 1e-6, "more than 3 updates in a second"
    for n, delivery in enumerate(results):
        assert delivery.texts == ["".join(words(20, f"r{n}w")).strip()]


async def test_final_texts_overtake_interim_edits_in_a_busy_chat() -> None:
    pacer = ChatPacer([(1, 1.0)])
    loop = asyncio.get_running_loop()
    order: list[str] = []

    async def take(label: str, urgent: bool, delay: float) -> None:
        await asyncio.sleep(delay)
        await pacer.acquire(urgent=urgent)
        order.append(label)

    start = loop.time()
    await pacer.acquire()
    await asyncio.gather(take("interim", False, 0.1), take("final", True, 0.2))
    assert order == ["final", "interim"]
    assert loop.time() - start >= 2.0


async def test_a_stream_error_leaves_the_partial_text_shown_and_is_raised() -> None:
    chat = RecordingChat()

    async def broken() -> AsyncIterator[str]:
        yield "Hola"
        yield " amigo … ✂️"
        raise ReplyInterrupted()

    with pytest.raises(ReplyInterrupted):
        await relay(broken(), chat, LIMITS)
    assert chat.texts[1] == "Hola amigo … ✂️"


async def test_drafts_preview_the_reply_and_the_final_text_is_sent_as_a_message() -> None:
    chat = DraftingChat()
    parts = words(10)
    delivery = await relay(tokens(parts, every=0.2), chat, Limits(4000, 1.0, draft_interval=0.3, use_drafts=True))
    kinds = [op.kind for op in chat.ops]
    assert kinds[0] == "draft"
    assert kinds[-1] == "send"
    assert kinds.count("send") == 1 and "edit" not in kinds
    assert delivery.texts == ["".join(parts).strip()]


async def test_refused_drafts_fall_back_to_send_then_edit() -> None:
    chat = DraftingChat(refuse_drafts=True)
    delivery = await relay(tokens(words(10), every=0.3), chat, Limits(4000, 1.0, use_drafts=True))
    kinds = [op.kind for op in chat.ops]
    assert kinds[0] == "send" and "edit" in kinds
    assert delivery.texts == ["".join(words(10)).strip()]


async def test_idle_chat_pacers_are_forgotten_once_there_are_many() -> None:
    pacers = Pacers(keep=3)
    busy = pacers.get("busy", [(1, 10.0)])
    await busy.acquire()
    for n in range(2):
        pacers.get(f"quiet{n}", [(1, 10.0)])
    pacers.get("new", [(1, 10.0)])
    assert len(pacers) == 2
    assert pacers.get("busy", [(1, 10.0)]) is busy


async def test_an_update_that_waited_for_the_chat_budget_shows_the_newest_text() -> None:
    chat = RecordingChat()
    pacer = ChatPacer([(1, 5.0)])
    await pacer.acquire()  # the chat's budget is spent for the next 5 s
    parts = words(20)
    delivery = await relay(tokens(parts, every=0.1), chat, Limits(max_length=4000, edit_interval=0.0), pacer)
    assert [op.kind for op in chat.ops] == ["send"]
    assert chat.ops[0].text == "".join(parts).strip()
    assert delivery.updates == 1


async def test_buttons_come_with_the_final_text_of_the_last_message_only() -> None:
    chat = RecordingChat()
    parts = words(60)
    delivery = await relay(tokens(parts, every=0.05), chat, LIMITS, buttons=LEVELS)
    assert len(delivery.messages) > 1
    with_buttons = [op for op in chat.ops if op.buttons]
    assert len(with_buttons) == 1
    last = with_buttons[0]
    assert last.buttons == LEVELS
    assert last.handle == delivery.messages[-1].handle and last.text == delivery.texts[-1]
    assert chat.ops[-1] is last


async def test_buttons_are_added_when_an_interim_edit_already_showed_the_final_text() -> None:
    chat = RecordingChat()

    async def pausing() -> AsyncIterator[str]:
        yield "Hola amigo"
        await asyncio.sleep(3.0)  # shown as an interim text; then the stream ends with nothing new

    delivery = await relay(pausing(), chat, LIMITS, buttons=LEVELS)
    assert delivery.texts == ["Hola amigo"]
    assert [(op.kind, op.text, op.buttons) for op in chat.ops] == [
        ("send", "Hola amigo", ()),
        ("edit", "Hola amigo", LEVELS),
    ]
