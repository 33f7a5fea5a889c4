"""What the conversation answers with, whatever the platform: notes, buttons, files, a streamed reply.

Core decides what to say and which buttons to offer; an adapter only renders these. Every button carries
a compact `action` string (`level:es:B1`) that means the same after a restart: it fits Telegram's 64 bytes
of `callback_data` and Discord's 100 characters of `custom_id`, and needs no state on our side.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .relay import Limits, Target

if TYPE_CHECKING:
    from .pacing import ChatPacer
    from .tutor import Reply

ACTION_BYTES = 64  # Telegram's callback_data limit; Discord's custom_id (100 characters) is looser
# A deep link's payload is ≤ 64 characters of A-Z a-z 0-9 _ -: an `opens` action is sent base64url-encoded.
OPENS_BYTES = 48


@dataclass(frozen=True)
class Button:
    """A button: pressing it sends `action` back to `Conversation.press`.

    With `opens` set instead, it is a link that opens the private chat with the bot and presses `opens`
    there (Telegram's deep link `t.me/<bot>?start=…`), for a note the bot may not send privately yet.
    """

    label: str
    action: str = ""
    opens: str = ""

    def __post_init__(self) -> None:
        if len(self.action.encode()) > ACTION_BYTES or len(self.opens.encode()) > OPENS_BYTES:
            raise ValueError("button action too long for the platforms")


Buttons = tuple[tuple[Button, ...], ...]  # rows of buttons


def rows(buttons: list[Button], per_row: int) -> Buttons:
    return tuple(tuple(buttons[i : i + per_row]) for i in range(0, len(buttons), per_row))


@dataclass(frozen=True)
class Note:
    """Text (Markdown) for the chat.

    `private`: for the person who caused it only (Discord: ephemeral; Telegram: an alert for a button press,
    else a reply to them). A private note with `again` is confidential: it is never shown to the others, and
    `again` is the action that shows it again, so that a platform that cannot deliver it privately yet can
    link to the private chat instead (raise `Unreachable`). One without `again` (a refusal, "already at B1")
    says nothing confidential and may be shown in the chat where the platform has no private way.
    `replaces`: shown in place of the message whose button was pressed (its buttons go).
    `here`: a private exchange that belongs in the chat where its reader is alone with the bot (a review, with
    buttons and typed answers): in a group it is shown privately in place where the platform can (Discord's
    ephemeral replies, `Surface.private_here`), else a link to the private chat opens `again` there.
    `table`: the same figures as rows (the first is the heading), for a surface that draws tables (the terminal).
    """

    text: str
    buttons: Buttons = ()
    private: bool = False
    again: str = ""
    replaces: bool = False
    here: bool = False
    table: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Attachment:
    """A file with a caption, e.g. a CSV export; private like a note."""

    name: str
    data: bytes
    caption: str
    media_type: str = "text/csv"
    private: bool = False
    again: str = ""


@dataclass(frozen=True)
class Streamed:
    """A tutor's reply to show as it is written; `buttons` go under its last message once complete."""

    reply: Reply
    buttons: Buttons = ()


@dataclass(frozen=True)
class Then:
    """Outcomes that can only be made once those before them are shown (a scene's rating, after its closer).
    Core delivers them; an adapter never sees one."""

    make: Callable[[], Awaitable[list[Outcome]]]


Outcome = Note | Attachment | Streamed | Then


class Unreachable(Exception):
    """Raised by a surface that cannot deliver a private note or file (the person never opened a private chat)."""


class Blocked(Exception):
    """Raised by a surface whose person blocked the bot or closed their private messages (Telegram's 403,
    Discord's 50007): nothing unasked, such as a reminder, may be sent to them again."""


class Surface(Target, Protocol):
    """One event's way back into its chat, as an adapter provides it.

    Besides the relay's `send`/`edit` (and optionally `draft`), it shows notes and files and the typing
    indicator. `send` and `edit` take the buttons of a reply's final text.
    """

    limits: Limits
    pacer: ChatPacer | None
    private_here: bool  # a private note shows in this chat to its reader alone (a private chat, an ephemeral reply)

    async def send(self, text: str, buttons: Buttons = ()) -> Any: ...

    async def edit(self, handle: Any, text: str, buttons: Buttons = ()) -> None: ...

    async def typing(self) -> None:
        """Show that the tutor is writing (the platform's chat action or typing indicator)."""

    async def note(self, note: Note) -> None:
        """Post a note; raise `Unreachable` if a private one cannot reach its reader."""

    async def attach(self, attachment: Attachment) -> None:
        """Post a file; raise `Unreachable` like `note`."""

    def address(self, handle: Any) -> str:
        """A message's lasting address (its platform id), to store: a crash leaves it for the next start."""

    def recall(self, address: str) -> Any:
        """The handle `edit` takes, for a stored address."""
