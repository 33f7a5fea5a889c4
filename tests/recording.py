"""A surface that records what a person would see, for testing the conversation without a platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.outcome import Attachment, Buttons, Note, Unreachable
from core.pacing import ChatPacer
from core.relay import Limits


@dataclass
class Shown:
    text: str
    buttons: Buttons = ()


@dataclass
class Recorder:
    """Messages (by handle), notes and files, in the order they were posted; `reachable=False` plays a
    person the platform cannot write to privately."""

    limits: Limits = field(default_factory=lambda: Limits(max_length=4000, edit_interval=0.01))
    pacer: ChatPacer | None = None
    reachable: bool = True
    private_here: bool = True
    messages: dict[int, Shown] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    files: list[Attachment] = field(default_factory=list)
    typing_calls: int = 0

    async def send(self, text: str, buttons: Buttons = ()) -> int:
        self.messages[len(self.messages) + 1] = Shown(text, buttons)
        return len(self.messages)

    async def edit(self, handle: Any, text: str, buttons: Buttons = ()) -> None:
        self.messages[handle] = Shown(text, buttons)

    async def typing(self) -> None:
        self.typing_calls += 1

    def address(self, handle: Any) -> str:
        return str(handle)

    def recall(self, address: str) -> int:
        return int(address)

    async def note(self, note: Note) -> None:
        if note.private and not self.reachable:
            raise Unreachable()
        self.notes.append(note)

    async def attach(self, attachment: Attachment) -> None:
        if attachment.private and not self.reachable:
            raise Unreachable()
        self.files.append(attachment)

    @property
    def texts(self) -> list[str]:
        """Every message and note, in no particular order between the two kinds."""
        return [m.text for m in self.messages.values()] + [n.text for n in self.notes]

    @property
    def last(self) -> Shown:
        return self.messages[len(self.messages)]
