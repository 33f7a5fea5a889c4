"""A loopback fake of the Telegram Bot API that the real python-telegram-bot talks to over real HTTP.

Why: the tests run without internet, and mocking PTB's internals would miss the mistakes that matter in
production: malformed HTML, texts over 4096 characters, edits that change nothing, too many updates in a
chat. This server answers the methods Polyglott uses with Telegram's status codes and descriptions,
records every call, keeps what the bot showed in each chat, and lets a test script incoming updates
(delivered by long polling, or pushed to a webhook once one is set).

Usage::

    fake = FakeTelegram()
    await fake.start()
    app = ApplicationBuilder().token(fake.token).base_url(fake.base_url).base_file_url(fake.base_file_url)
    fake.add_command(-100123, 42, "learn", "spanish", at_bot=True)
    ...
    await fake.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import mimetypes
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from telegram import Bot
    from telegram.ext import ApplicationBuilder

JSON = dict[str, Any]
Window = tuple[int, float]  # at most `count` calls in any `period` seconds
DraftsMode = Literal["ok", "unavailable", "not_found"]

DEFAULT_TOKEN = "123456789:AAFakeTokenForPolyglottTests"

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
DRAFT_NOT_PRIVATE = "Bad Request: TEXTDRAFT_PEER_INVALID"
DRAFTS_UNAVAILABLE = "Bad Request: method is not available"
CANNOT_INITIATE = "Forbidden: bot can't initiate conversation with a user"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
MAX_CAPTION_LENGTH = 1024
MAX_FILE_SIZE = 50 * 1024 * 1024  # what a bot may upload through the Bot API
# sendPhoto (Bot API docs): at most 10 MB, width + height at most 10000, a ratio of at most 20. Telegram's
# answers to a photo outside those, or to bytes that are not an image it reads (tdlib/td#2544, webogram#1011).
MAX_PHOTO_SIZE = 10 * 1024 * 1024
MAX_PHOTO_SIDES = 10_000
MAX_PHOTO_RATIO = 20
PHOTO_TOO_BIG = "Bad Request: PHOTO_SAVE_FILE_INVALID"
PHOTO_DIMENSIONS = "Bad Request: PHOTO_INVALID_DIMENSIONS"
IMAGE_FAILED = "Bad Request: IMAGE_PROCESS_FAILED"
PHOTO_THUMBNAILS = (90, 320, 800, 1280)  # the longest side of the sizes Telegram makes of a photo
MAX_CALLBACK_ANSWER = 200  # characters of answerCallbackQuery's text

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

# Form-encoded parameters that PTB sends as plain strings; every other form value is JSON (numbers,
# booleans, objects such as reply_markup), so decoding these would turn the text "42" into an int.
_STRING_PARAMS = frozenset(
    {
        "text",
        "parse_mode",
        "caption",
        "url",
        "callback_query_id",
        "inline_message_id",
        "action",
        "secret_token",
        "ip_address",
        "language_code",
        "title",
        "description",
        "short_description",
        "name",
        "emoji",
        "custom_title",
        "business_connection_id",
        "message_effect_id",
        "sticker",
        "photo",
        "voice",
        "document",
        "file_id",
        "certificate",
    }
)


class EntityParseError(ValueError):
    """Text with parse_mode that Telegram would refuse; the message is the part after "can't parse entities: "."""


class ApiError(Exception):
    """An error answer of the Bot API, raised inside method handlers."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class CallRecord:
    """One request the fake received; `status` is 0 while the call is still running (a long poll)."""

    method: str
    params: JSON
    time: float
    status: int = 0
    result: Any = None
    description: str | None = None
    abandoned: bool = False  # the client had hung up before the answer (a long poll PTB cancelled)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class BotMessage:
    """A message the bot sent, in its current state; `history` keeps the earlier (text, parse_mode)."""

    chat_id: int
    message_id: int
    text: str  # as sent, markup included
    parse_mode: str | None
    plain: str  # what the user sees, after entity parsing
    entities: list[JSON]
    reply_markup: JSON | None
    date: int
    message_thread_id: int | None = None
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    deleted: bool = False
    history: list[tuple[str, str | None]] = field(default_factory=list)
    document: JSON | None = None  # a sendDocument's file, as Telegram describes it; `text` is then the caption
    photo: list[JSON] | None = None  # a sendPhoto's sizes (PhotoSize, smallest first); `text` is the caption
    content: bytes | None = None  # the uploaded file itself


@dataclass
class Draft:
    """One accepted sendMessageDraft call."""

    chat_id: int
    draft_id: int
    text: str
    parse_mode: str | None
    plain: str
    time: float
    message_thread_id: int | None = None


@dataclass
class FloodError:
    """One 429 the fake served; `scope` names the window that was full ("injected" for `flood_next`)."""

    method: str
    chat_id: int | None
    scope: str
    retry_after: int
    time: float


@dataclass
class WebhookDelivery:
    """One POST of an update to the webhook; `status` is None when the connection failed."""

    update_id: int
    status: int | None
    error: str | None
    time: float


@dataclass
class Hold:
    """One call the fake keeps waiting (`FakeTelegram.hold`): `reached` is set once a call is held, `record`
    is that call; `release()` lets it go on."""

    method: str  # lower-case method name
    when: Callable[[JSON], bool]
    before: bool
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    record: CallRecord | None = None

    def release(self) -> None:
        self.released.set()


@dataclass
class _Injection:
    method: str | None  # lower-case method name, None for any method
    status: int
    description: str
    parameters: JSON | None
    remaining: int


def utf16_len(text: str) -> int:
    """Telegram measures entity offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------------------------
# Entity parsing: strict like Telegram, so formatting bugs fail in tests instead of in production.

_HTML_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "blockquote": "blockquote",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "tg-emoji": "custom_emoji",
}
_CHAR_REF = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8})|(lt|gt|amp|quot));")
_NAMED_REFS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ATTRS = re.compile(
    r"""\s+([A-Za-z_:][-A-Za-z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""",
)


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def parse_html(text: str, *, strict_ampersand: bool = True) -> tuple[str, list[JSON]]:
    """Return (visible text, entities) for parse_mode=HTML, raising EntityParseError like Telegram.

    Mirrors TDLib's parser: only Telegram's tags, proper nesting, `<` always starts a tag. Telegram keeps an
    `&` that starts no valid character reference as a literal; with `strict_ampersand` the fake refuses it,
    because it means the text was not escaped.
    """
    out: list[str] = []
    pos = 0  # UTF-16 length of `out`
    stack: list[tuple[str, int, dict[str, str]]] = []
    entities: list[JSON] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "&":
            ref = _CHAR_REF.match(text, i)
            if ref:
                if ref[3]:
                    decoded = _NAMED_REFS[ref[3]]
                else:
                    code = int(ref[1]) if ref[1] else int(ref[2], 16)
                    if not 0 < code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                        raise EntityParseError(f"Invalid character reference at byte offset {_byte_offset(text, i)}")
                    decoded = chr(code)
                out.append(decoded)
                pos += utf16_len(decoded)
                i = ref.end()
                continue
            if strict_ampersand:
                raise EntityParseError(
                    f'Unescaped "&" at byte offset {_byte_offset(text, i)} '
                    "(Telegram would keep it, but it means the text was not escaped: write &amp;)"
                )
        elif char == "<":
            begin = _byte_offset(text, i)
            if text.startswith("</", i):
                end = text.find(">", i)
                if end < 0:
                    raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
                name = text[i + 2 : end].strip().lower()
                if not stack:
                    raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
                tag, start, attrs = stack.pop()
                if name != tag:
                    raise EntityParseError(
                        f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{name}>"'
                    )
                _close_html_tag(tag, start, pos, attrs, stack, entities)
                i = end + 1
                continue
            j = i + 1
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            if j >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            name = text[i + 1 : j].lower()
            if name not in _HTML_TAGS:
                raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {begin}')
            attrs: dict[str, str] = {}
            while True:
                attr = _ATTRS.match(text, j)
                if not attr:
                    break
                value = next((v for v in attr.groups()[1:] if v is not None), "")
                attrs[attr[1].lower()] = html.unescape(value)
                j = attr.end()
            while j < n and text[j].isspace():
                j += 1
            if j >= n or text[j] != ">":
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise EntityParseError('Tag "span" must have class "tg-spoiler"')
            if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
                raise EntityParseError("Custom emoji entity must contain a valid custom emoji identifier")
            stack.append((name, pos, attrs))
            i = j + 1
            continue
        out.append(char)
        pos += utf16_len(char)
        i += 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _close_html_tag(
    tag: str,
    start: int,
    end: int,
    attrs: dict[str, str],
    stack: list[tuple[str, int, dict[str, str]]],
    entities: list[JSON],
) -> None:
    """Turn a closed tag into its entity; `<pre><code class="language-x">` becomes one pre entity."""
    length = end - start
    kind = _HTML_TAGS[tag]
    if tag == "code" and stack and stack[-1][0] == "pre" and attrs.get("class", "").startswith("language-"):
        stack[-1][2]["_language"] = attrs["class"].removeprefix("language-")
        return
    if length <= 0:
        return
    entity: JSON = {"type": kind, "offset": start, "length": length}
    if tag == "a":
        if not attrs.get("href"):
            return
        entity["url"] = attrs["href"]
    elif tag == "pre" and attrs.get("_language"):
        entity["language"] = attrs["_language"]
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs["emoji-id"]
    entities.append(entity)


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
}


def parse_markdown_v2(text: str) -> tuple[str, list[JSON]]:
    """Return (visible text, entities) for parse_mode=MarkdownV2; unescaped reserved characters fail."""
    out: list[str] = []
    pos = 0
    stack: list[tuple[str, int, int]] = []  # kind, UTF-16 start, byte offset of the opening marker
    entities: list[JSON] = []
    i, n = 0, len(text)

    def emit(chars: str) -> None:
        nonlocal pos
        out.append(chars)
        pos += utf16_len(chars)

    def toggle(kind: str, width: int) -> None:
        nonlocal i
        if stack and stack[-1][0] == kind:
            _, start, _ = stack.pop()
            if pos > start:
                entities.append({"type": kind, "offset": start, "length": pos - start})
        else:
            stack.append((kind, pos, _byte_offset(text, i)))
        i += width

    while i < n:
        char = text[i]
        inside_code = bool(stack) and stack[-1][0] in ("code", "pre")
        if char == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            emit(text[i + 1])
            i += 2
            continue
        if inside_code:
            kind = stack[-1][0]
            if kind == "pre" and text.startswith("```", i):
                _, start, _ = stack.pop()
                if pos > start:
                    entities.append({"type": "pre", "offset": start, "length": pos - start})
                i += 3
            elif kind == "code" and char == "`":
                toggle("code", 1)
            else:
                emit(char)
                i += 1
            continue
        if char not in _MDV2_RESERVED:
            emit(char)
            i += 1
            continue
        if char == "_":
            toggle("underline", 2) if text.startswith("__", i) else toggle("italic", 1)
        elif char == "*":
            toggle("bold", 1)
        elif char == "~":
            toggle("strikethrough", 1)
        elif char == "|" and text.startswith("||", i):
            toggle("spoiler", 2)
        elif char == "`":
            if text.startswith("```", i):
                stack.append(("pre", pos, _byte_offset(text, i)))
                newline = text.find("\n", i + 3)
                i = i + 3 if newline < 0 else newline + 1
            else:
                toggle("code", 1)
        elif char == "[":
            stack.append(("text_link", pos, _byte_offset(text, i)))
            i += 1
        elif char == "]" and stack and stack[-1][0] == "text_link":
            _, start, _ = stack.pop()
            i += 1
            if i < n and text[i] == "(":
                close = text.find(")", i)
                if close < 0:
                    raise EntityParseError(f"Can't find end of a URL at byte offset {_byte_offset(text, i)}")
                url = text[i + 1 : close].replace("\\)", ")").replace("\\\\", "\\")
                if pos > start:
                    entities.append({"type": "text_link", "offset": start, "length": pos - start, "url": url})
                i = close + 1
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # a quote line; the fake does not build blockquote entities
        else:
            raise EntityParseError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")
    if stack:
        kind, _, begin = stack[-1]
        raise EntityParseError(f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset {begin}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def parse_markdown(text: str) -> tuple[str, list[JSON]]:
    """Return (visible text, entities) for the legacy parse_mode=Markdown (*bold*, _italic_, `code`, [a](b))."""
    out: list[str] = []
    pos = 0
    entities: list[JSON] = []
    kinds = {"*": "bold", "_": "italic", "`": "code"}
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            pos += 1
            i += 2
            continue
        if char in kinds or char == "[":
            begin = _byte_offset(text, i)
            marker = "```" if text.startswith("```", i) else ("]" if char == "[" else char)
            opening = 3 if marker == "```" else 1
            close = text.find(marker, i + opening)
            if close < 0:
                raise EntityParseError(f"Can't find end of the entity starting at byte offset {begin}")
            inner = text[i + opening : close]
            entity: JSON = {"type": "pre" if marker == "```" else kinds.get(char, "text_link"), "offset": pos}
            i = close + len(marker)
            if char == "[":
                if i < n and text[i] == "(" and ")" in text[i:]:
                    end = text.index(")", i)
                    entity["url"] = text[i + 1 : end]
                    i = end + 1
                else:
                    entity = {}
            out.append(inner)
            pos += utf16_len(inner)
            if entity and inner:
                entity["length"] = utf16_len(inner)
                entities.append(entity)
            continue
        out.append(char)
        pos += utf16_len(char)
        i += 1
    return "".join(out), entities


_COMMAND_RE = re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION_RE = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}")


def detect_entities(text: str) -> list[JSON]:
    """The entities Telegram adds to a user's text by itself: bot_command and mention."""
    entities: list[JSON] = []
    for pattern, kind in ((_COMMAND_RE, "bot_command"), (_MENTION_RE, "mention")):
        for match in pattern.finditer(text):
            entities.append({"type": kind, "offset": utf16_len(text[: match.start()]), "length": utf16_len(match[0])})
    entities.sort(key=lambda e: e["offset"])
    return entities


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF or JPEG, from its header; None for anything else, or a broken one."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data.startswith(b"\xff\xd8"):
        at = 2
        while at + 9 <= len(data) and data[at] == 0xFF:
            marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
                return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(data[at + 5 : at + 7], "big")
            at += 2 + length
    return None


def _hung_up(request: web.Request) -> bool:
    """Whether the client closed its connection (a long poll PTB cancelled, a bot that was killed)."""
    return request.transport is None or request.transport.is_closing()


def _decode_form_value(key: str, value: str) -> Any:
    if key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


# --------------------------------------------------------------------------------------------------------


class FakeTelegram:
    """The fake Bot API server: start it, point PTB at `base_url`, script updates, assert on what was sent."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "polyglott_bot",
        bot_first_name: str = "Polyglott",
        max_text_length: int = 4096,
        per_chat: Window | None = (3, 3.0),
        per_group: Window | None = (20, 60.0),
        global_limit: Window | None = (30, 1.0),
        draft_per_chat: Window | None = None,
        time_scale: float = 1.0,
        strict_ampersand: bool = True,
        drafts_mode: DraftsMode = "ok",
        latency: float = 0.0,
        clock: Callable[[], float] | None = None,
        webhook_retry_interval: float = 0.2,
        require_start: bool = False,
        max_file_size: int = MAX_FILE_SIZE,
        reads_all_group_messages: bool = False,
    ) -> None:
        self.token = token
        prefix = token.split(":", 1)[0]
        self.bot_id = int(prefix) if prefix.isdigit() else 123456789
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.max_text_length = max_text_length
        self.per_chat = per_chat
        self.per_group = per_group
        self.global_limit = global_limit
        self.draft_per_chat = draft_per_chat
        self.time_scale = time_scale
        self.strict_ampersand = strict_ampersand
        self.drafts_mode: DraftsMode = drafts_mode
        self.latency = latency
        self.webhook_retry_interval = webhook_retry_interval
        self.down = False  # answer every request with 502 Bad Gateway, like a proxy in front of a dead server
        # As Telegram: a bot may write to a user's private chat only once they have written to it (/start).
        # Off by default, so that a test can send to any private chat without scripting the user first.
        self.require_start = require_start
        self.max_file_size = max_file_size
        self.reads_all_group_messages = reads_all_group_messages  # Group Privacy off in @BotFather
        self._clock = clock

        self.calls: list[CallRecord] = []
        self.messages: dict[int, dict[int, BotMessage]] = {}
        self.user_messages: dict[int, dict[int, JSON]] = {}
        self.drafts: dict[int, list[Draft]] = {}
        self.flood_errors: list[FloodError] = []
        self.callback_answers: dict[str, JSON] = {}
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.chats: dict[int, JSON] = {}
        self.users: dict[int, JSON] = {}
        self.members: dict[int, dict[int, str]] = {}
        self.blocked_chats: set[int] = set()
        self.started: set[int] = set()  # users who wrote to the bot in their private chat
        self.updates: list[JSON] = []  # every scripted update, in order
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.webhook_last_error: tuple[int, str] | None = None

        self._pending: list[JSON] = []  # updates not yet confirmed by a getUpdates offset or a webhook 2xx
        self._allowed_updates: list[str] = []
        self._next_update_id = 1000
        self._next_message_id: dict[int, int] = {}
        self._next_callback_id = 7_000_000_000_000_000
        self._open_callbacks: set[str] = set()
        self._flood_log: dict[tuple[Any, ...], deque[float]] = {}
        self._injections: list[_Injection] = []
        self._holds: list[Hold] = []
        self._poll_generation = 0
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self.url = ""
        self._handlers: dict[str, Callable[[JSON], Awaitable[Any]]] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "deletewebhook": self._delete_webhook,
            "setwebhook": self._set_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "sendmessage": self._send_message,
            "senddocument": self._send_document,
            "sendphoto": self._send_photo,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "sendmessagedraft": self._send_message_draft,
            "sendchataction": self._send_chat_action,
            "answercallbackquery": self._answer_callback_query,
            "getchat": self._get_chat,
            "getchatmember": self._get_chat_member,
            "getchatadministrators": self._get_chat_administrators,
            "deletemessage": self._delete_message,
            "close": self._true,
            "logout": self._true,
        }

    # ---------------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port; `url` is then the API root."""
        app = web.Application(client_max_size=self.max_file_size + 1024 * 1024)  # room for the form's other fields
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._closing = False

    async def stop(self) -> None:
        """Release long polls and held calls at once (so PTB's shutdown is quick) and close the server."""
        self._closing = True
        for hold in self._holds:
            hold.release()
        self._notify()
        if self._webhook_task:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """What to pass to PTB's `base_url` (it appends the token and the method)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def make_bot(self) -> Bot:
        """A PTB Bot pointed at this fake (call `await bot.initialize()` or use `async with`)."""
        from telegram import Bot

        return Bot(self.token, base_url=self.base_url, base_file_url=self.base_file_url)

    def application_builder(self) -> ApplicationBuilder:
        """A PTB ApplicationBuilder with token and URLs set, for further configuration by the test."""
        from telegram.ext import ApplicationBuilder

        return ApplicationBuilder().token(self.token).base_url(self.base_url).base_file_url(self.base_file_url)

    # ------------------------------------------------------------------------------------------ inspection

    @property
    def bot_user(self) -> JSON:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_first_name, "username": self.bot_username}

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[CallRecord]:
        """Recorded calls of one method (case-insensitive); `ok=True` keeps only successful ones."""
        wanted = method.lower()
        return [c for c in self.calls if c.method.lower() == wanted and (ok is None or c.ok == ok)]

    def errors(self) -> list[CallRecord]:
        """Finished calls the bot saw fail (long polls it had already abandoned are left out)."""
        return [c for c in self.calls if c.status not in (0, 200) and not c.abandoned]

    def chat_texts(self, chat_id: int) -> list[str]:
        """The visible texts of the bot's messages in a chat, current versions, oldest first, deleted left out."""
        return [m.plain for _, m in sorted(self.messages.get(chat_id, {}).items()) if not m.deleted]

    def last_message(self, chat_id: int) -> BotMessage | None:
        """The newest message the bot sent in a chat that is not deleted."""
        alive = [m for _, m in sorted(self.messages.get(chat_id, {}).items()) if not m.deleted]
        return alive[-1] if alive else None

    def draft_texts(self, chat_id: int) -> list[str]:
        return [d.plain for d in self.drafts.get(chat_id, [])]

    def my_commands(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        return self.commands.get((self._scope_key(scope), language_code), [])

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by the bot."""
        return list(self._pending)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 3.0) -> None:
        """Wait until `predicate()` holds; it is re-checked after every finished call and every new update."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(f"{c.method}->{c.status}" for c in self.calls[-10:])
                raise TimeoutError(f"condition not met within {within}s; last calls: {recent}")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def wait_for_call(self, method: str, count: int = 1, within: float = 3.0) -> CallRecord:
        """Wait until `count` calls of `method` have finished (any status) and return the `count`-th."""

        def done() -> list[CallRecord]:
            return [c for c in self.calls_to(method) if c.status]

        await self.wait_for(lambda: len(done()) >= count, within)
        return done()[count - 1]

    # ------------------------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str | None = None,
        *,
        status: int = 400,
        description: str = "Bad Request: injected failure",
        parameters: JSON | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` (any method if None) with this error, before any checks."""
        self._injections.append(_Injection(method.lower() if method else None, status, description, parameters, times))

    def hold(self, method: str, when: Callable[[JSON], bool] | None = None, *, before: bool = False) -> Hold:
        """Keep the next call of `method` whose parameters satisfy `when` waiting until `Hold.release()`, to
        stop a bot at exactly that moment (kill it while `Hold.reached` is set).

        By default the call is carried out first and only its answer is held: the message is sent or edited,
        the bot does not know it yet. With `before`, the call waits before Telegram looks at it, as a request
        still in transit; if its client hung up meanwhile it is dropped unread (a getUpdates whose `offset`
        never arrived confirms nothing, so its updates are delivered again, as Telegram does after a crash).
        """
        hold = Hold(method.lower(), when or (lambda params: True), before)
        self._holds.append(hold)
        return hold

    def flood_next(self, method: str | None = None, *, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next calls with 429 retry_after, whatever the windows say (recorded in flood_errors)."""
        self.fail_next(
            method,
            status=429,
            description=f"Too Many Requests: retry after {retry_after}",
            parameters={"retry_after": retry_after},
            times=times,
        )

    # ----------------------------------------------------------------------------------- scripting updates

    def add_user(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        username: str | None = None,
        language_code: str | None = None,
        last_name: str | None = None,
    ) -> JSON:
        """Register (or update) a user; message helpers call this, so it is only needed for extra fields."""
        user = self.users.setdefault(user_id, {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"})
        for key, value in (
            ("first_name", first_name),
            ("last_name", last_name),
            ("username", username),
            ("language_code", language_code),
        ):
            if value is not None:
                user[key] = value
        return user

    def add_chat(
        self,
        chat_id: int,
        *,
        type: str | None = None,
        title: str | None = None,
        is_forum: bool | None = None,
        username: str | None = None,
    ) -> JSON:
        """Register (or update) a chat. Without a type: positive ids are private chats, ids at or below
        -1000000000000 supergroups, other negative ids basic groups."""
        chat = self._chat(chat_id)
        if type is not None:
            chat["type"] = type
        if title is not None:
            chat["title"] = title
        if is_forum is not None:
            if is_forum:
                chat["is_forum"] = True
                chat["type"] = "supergroup"
            else:
                chat.pop("is_forum", None)
        if username is not None:
            chat["username"] = username
        return chat

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        """Set what getChatMember reports: creator, administrator, member, restricted, left or kicked."""
        self.members.setdefault(chat_id, {})[user_id] = status

    def set_admins(self, chat_id: int, *, creator: int | None = None, admins: tuple[int, ...] | list[int] = ()) -> None:
        """Make `creator` the owner and `admins` administrators of a group (everyone else stays a member)."""
        members = self.members.setdefault(chat_id, {})
        for user_id, status in list(members.items()):
            if status in ("creator", "administrator"):
                members[user_id] = "member"
        if creator is not None:
            members[creator] = "creator"
        for user_id in admins:
            members[user_id] = "administrator"

    def add_update(self, update: JSON) -> JSON:
        """Queue a raw update (an update_id is assigned if missing); the other helpers end here."""
        if "update_id" not in update:
            update = {"update_id": self._next_update_id, **update}
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        self.updates.append(update)
        self._pending.append(update)
        self._notify()
        return update

    def add_message(
        self,
        chat_id: int,
        user_id: int,
        text: str | None = None,
        *,
        first_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
        entities: list[JSON] | None = None,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        is_topic_message: bool | None = None,
        extra: JSON | None = None,
    ) -> JSON:
        """Queue a `message` update from a user; entities default to the commands and mentions in `text`.

        Returns the update; its message id is `update["message"]["message_id"]`.
        """
        user = self.add_user(user_id, first_name, username=username, language_code=language_code)
        if chat_id > 0 and chat_id != user_id:
            raise ValueError("a private chat's id is the user's id")
        if chat_id > 0:
            self.started.add(user_id)
        chat = self._chat(chat_id)
        if message_thread_id is not None and chat["type"] == "group":
            chat["type"] = "supergroup"
        if is_topic_message:
            chat["is_forum"] = True
            chat["type"] = "supergroup"
        message: JSON = {
            "message_id": self._new_message_id(chat_id),
            "from": dict(user),
            "chat": dict(chat),
            "date": int(time.time()),
        }
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
            if is_topic_message is not False and chat.get("is_forum"):
                message["is_topic_message"] = True
        if reply_to_message_id is not None:
            replied = self.message_json(chat_id, reply_to_message_id)
            if replied is None:
                raise KeyError(f"no message {reply_to_message_id} in chat {chat_id} to reply to")
            message["reply_to_message"] = replied
        if text is not None:
            message["text"] = text
            found = detect_entities(text) if entities is None else entities
            if found:
                message["entities"] = found
        if extra:
            message.update(extra)
        self.user_messages.setdefault(chat_id, {})[message["message_id"]] = message
        return self.add_update({"message": message})

    def add_private_message(self, user_id: int, text: str, **kwargs: Any) -> JSON:
        """A user writes to the bot in their private chat (chat id = user id)."""
        return self.add_message(user_id, user_id, text, **kwargs)

    def add_group_message(self, chat_id: int, user_id: int, text: str, **kwargs: Any) -> JSON:
        """A user writes in a group (negative chat id); kwargs as for `add_message`."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        return self.add_message(chat_id, user_id, text, **kwargs)

    def add_command(
        self, chat_id: int, user_id: int, command: str, args: str = "", *, at_bot: bool = False, **kwargs: Any
    ) -> JSON:
        """A user sends `/command args` (`/command@polyglott_bot args` with at_bot), with its bot_command entity."""
        text = "/" + command.lstrip("/") + (f"@{self.bot_username}" if at_bot else "") + (f" {args}" if args else "")
        return self.add_message(chat_id, user_id, text, **kwargs)

    def add_mention(self, chat_id: int, user_id: int, text: str, **kwargs: Any) -> JSON:
        """A user writes `@polyglott_bot text`, with its mention entity."""
        return self.add_message(chat_id, user_id, f"@{self.bot_username} {text}", **kwargs)

    def add_reply_to_bot(
        self, chat_id: int, user_id: int, text: str, message_id: int | None = None, **kwargs: Any
    ) -> JSON:
        """A user replies to the bot's message `message_id` (default: the bot's newest message in the chat)."""
        if message_id is None:
            last = self.last_message(chat_id)
            if last is None:
                raise KeyError(f"the bot has sent nothing in chat {chat_id}")
            message_id = last.message_id
        return self.add_message(chat_id, user_id, text, reply_to_message_id=message_id, **kwargs)

    def add_sticker(self, chat_id: int, user_id: int, emoji: str = "👍", **kwargs: Any) -> JSON:
        n = self._next_update_id
        sticker = {
            "file_id": f"sticker-{n}",
            "file_unique_id": f"su{n}",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        return self.add_message(chat_id, user_id, extra={"sticker": sticker}, **kwargs)

    def add_photo(self, chat_id: int, user_id: int, caption: str | None = None, **kwargs: Any) -> JSON:
        n = self._next_update_id
        sizes = [
            {"file_id": f"photo-{n}-{w}", "file_unique_id": f"pu{n}{w}", "width": w, "height": w, "file_size": w * 40}
            for w in (90, 320, 800)
        ]
        extra: JSON = {"photo": sizes}
        if caption is not None:
            extra["caption"] = caption
        return self.add_message(chat_id, user_id, extra=extra, **kwargs)

    def add_voice(self, chat_id: int, user_id: int, duration: int = 3, **kwargs: Any) -> JSON:
        n = self._next_update_id
        voice = {"file_id": f"voice-{n}", "file_unique_id": f"vu{n}", "duration": duration, "mime_type": "audio/ogg"}
        return self.add_message(chat_id, user_id, extra={"voice": voice}, **kwargs)

    def add_edited_message(self, chat_id: int, message_id: int, text: str) -> JSON:
        """A user edits their earlier message; queues an `edited_message` update."""
        stored = self.user_messages.get(chat_id, {}).get(message_id)
        if stored is None:
            raise KeyError(f"no user message {message_id} in chat {chat_id}")
        stored["text"] = text
        stored["edit_date"] = int(time.time())
        found = detect_entities(text)
        if found:
            stored["entities"] = found
        else:
            stored.pop("entities", None)
        return self.add_update({"edited_message": dict(stored)})

    def add_callback_query(self, user_id: int, chat_id: int, message_id: int, data: str, **kwargs: Any) -> JSON:
        """A user presses an inline button with `data` under message `message_id`.

        The query id is `update["callback_query"]["id"]`; answers land in `callback_answers`.
        """
        user = self.add_user(
            user_id,
            kwargs.get("first_name"),
            username=kwargs.get("username"),
            language_code=kwargs.get("language_code"),
        )
        message = self.message_json(chat_id, message_id)
        if message is None:  # what Telegram sends for a message the bot can no longer see
            message = {"message_id": message_id, "chat": dict(self._chat(chat_id)), "date": 0}
        self._next_callback_id += 1
        query_id = str(self._next_callback_id)
        self._open_callbacks.add(query_id)
        query = {
            "id": query_id,
            "from": dict(user),
            "message": message,
            "chat_instance": str(abs(chat_id) * 7 + 13),
            "data": data,
        }
        return self.add_update({"callback_query": query})

    def message_json(self, chat_id: int, message_id: int) -> JSON | None:
        """The Message object Telegram would embed for a bot or user message (e.g. as reply_to_message)."""
        bot_message = self.messages.get(chat_id, {}).get(message_id)
        if bot_message is not None and not bot_message.deleted:
            return self._bot_message_json(bot_message, nested=True)
        stored = self.user_messages.get(chat_id, {}).get(message_id)
        if stored is not None:
            return {k: v for k, v in stored.items() if k != "reply_to_message"}
        return None

    # --------------------------------------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z0-9_]+)/?", request.path)
        method = match[2] if match else request.path
        try:
            params = await self._read_params(request)
        except (ValueError, UnicodeDecodeError):
            params = {}
        record = CallRecord(method, params, self._now())
        self.calls.append(record)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.down:
                record.status, record.description = 502, "Bad Gateway"
                return web.Response(
                    status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
                )
            if await self._held(record, before=True) and _hung_up(request):
                record.abandoned = True  # never reached Telegram: not carried out, and no answer
                return web.Response(status=499)
            try:
                if match is None:
                    raise ApiError(404, "Not Found")
                if match[1] != self.token:
                    raise ApiError(401, "Unauthorized")
                self._apply_injection(method, params)
                handler = self._handlers.get(method.lower())
                if handler is None:
                    raise ApiError(404, "Not Found")
                result = await handler(params)
                await self._held(record, before=False)
            except ApiError as error:
                record.status, record.description = error.status, error.description
                body: JSON = {"ok": False, "error_code": error.status, "description": error.description}
                if error.parameters:
                    body["parameters"] = error.parameters
                return web.json_response(body, status=error.status)
            record.status, record.result = 200, result
            return web.json_response({"ok": True, "result": result})
        finally:
            record.abandoned = _hung_up(request)
            self._notify()

    async def _held(self, record: CallRecord, *, before: bool) -> bool:
        """Wait while a `hold` matching this call keeps it (each hold takes one call); whether one did."""
        for hold in self._holds:
            matches = hold.record is None and hold.before == before and hold.method == record.method.lower()
            if matches and hold.when(record.params):
                hold.record = record
                hold.reached.set()
                self._notify()
                await hold.released.wait()
                return True
        return False

    async def _read_params(self, request: web.Request) -> JSON:
        """Merge query string and body; form values are JSON-decoded as PTB encodes them."""
        params: JSON = {k: _decode_form_value(k, v) for k, v in request.query.items()}
        if not request.can_read_body:
            return params
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = {"filename": value.filename, "content": value.file.read()}
                else:
                    params[key] = _decode_form_value(key, str(value))
        return params

    def _apply_injection(self, method: str, params: JSON) -> None:
        for injection in self._injections:
            if injection.remaining > 0 and injection.method in (None, method.lower()):
                injection.remaining -= 1
                if injection.status == 429:
                    retry = int((injection.parameters or {}).get("retry_after", 1))
                    chat = params.get("chat_id")
                    chat_id = chat if isinstance(chat, int) else None
                    self.flood_errors.append(FloodError(method, chat_id, "injected", retry, self._now()))
                raise ApiError(injection.status, injection.description, injection.parameters)

    # ------------------------------------------------------------------------------------------ helpers

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def _notify(self) -> None:
        """Wake every waiter (long polls, webhook sender, wait_for)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _new_message_id(self, chat_id: int) -> int:
        self._next_message_id[chat_id] = self._next_message_id.get(chat_id, 0) + 1
        return self._next_message_id[chat_id]

    def _chat(self, chat_id: int) -> JSON:
        chat = self.chats.get(chat_id)
        if chat is None:
            if chat_id > 0:
                user = self.users.get(chat_id, {"first_name": f"User{chat_id}"})
                chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
                if "username" in user:
                    chat["username"] = user["username"]
            elif chat_id <= -1_000_000_000_000:
                chat = {"id": chat_id, "type": "supergroup", "title": f"Group {chat_id}"}
            else:
                chat = {"id": chat_id, "type": "group", "title": f"Group {chat_id}"}
            self.chats[chat_id] = chat
        return chat

    @staticmethod
    def _opt_int(params: JSON, key: str) -> int | None:
        value = params.get(key)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ApiError(400, f"Bad Request: invalid {key} specified") from None

    def _chat_id(self, params: JSON, *, known: bool = False) -> int:
        """Resolve chat_id (a number or @username); unknown chats are created unless `known` is required."""
        value = params.get("chat_id")
        if value is None or value == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        if isinstance(value, str) and value.startswith("@"):
            for chat_id, chat in self.chats.items():
                if chat.get("username", "").lower() == value[1:].lower():
                    return chat_id
            raise ApiError(400, "Bad Request: chat not found")
        try:
            chat_id = int(value)
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        if known and chat_id not in self.chats:
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _check_reachable(self, chat_id: int) -> None:
        """With `require_start`, a private chat exists only once its user wrote to the bot: a user the bot
        has seen (in a group) gets 403, one it never saw does not exist for it (400 chat not found)."""
        if not self.require_start or chat_id <= 0 or chat_id in self.started:
            return
        if chat_id in self.users:
            raise ApiError(403, CANNOT_INITIATE)
        raise ApiError(400, "Bad Request: chat not found")

    def _check_blocked(self, chat_id: int) -> None:
        if chat_id in self.blocked_chats:
            kind = self._chat(chat_id)["type"]
            if kind == "private":
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")

    def _render(
        self, text: Any, parse_mode: Any, entities: Any, *, allow_empty: bool = False, caption: bool = False
    ) -> tuple[str, list[JSON]]:
        """Validate a text as Telegram does and return (visible text, entities)."""
        text = "" if text is None else str(text)
        mode = "" if entities else str(parse_mode or "").lower()
        try:
            if mode == "html":
                plain, found = parse_html(text, strict_ampersand=self.strict_ampersand)
            elif mode == "markdownv2":
                plain, found = parse_markdown_v2(text)
            elif mode == "markdown":
                plain, found = parse_markdown(text)
            elif mode == "":
                plain, found = text, [dict(e) for e in entities or []]
            else:
                raise ApiError(400, "Bad Request: unsupported parse_mode")
        except EntityParseError as error:
            raise ApiError(400, f"Bad Request: can't parse entities: {error}") from None
        if caption:  # a caption may be empty
            if len(plain) > MAX_CAPTION_LENGTH:
                raise ApiError(400, CAPTION_TOO_LONG)
            return plain, found
        if not plain.strip() and not allow_empty:
            raise ApiError(400, "Bad Request: message text is empty")
        if len(plain) > self.max_text_length:
            raise ApiError(400, "Bad Request: message is too long")
        return plain, found

    @staticmethod
    def _markup(value: Any) -> JSON | None:
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object") from None
        if not isinstance(value, dict):
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        for row in value.get("inline_keyboard", []):
            for button in row:
                if not button.get("text"):
                    raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return value

    def _check_flood(self, method: str, chat_id: int, *, draft: bool = False) -> None:
        """Sliding windows as Telegram's flood control; a full window answers 429 and counts nothing."""
        now = self._now()
        windows: list[tuple[str, tuple[Any, ...], Window]] = []
        if draft:
            if self.draft_per_chat:
                windows.append(("draft", ("draft", chat_id), self.draft_per_chat))
        else:
            if self.per_chat:
                windows.append(("chat", ("chat", chat_id), self.per_chat))
            if self.per_group and chat_id < 0:
                windows.append(("group", ("group", chat_id), self.per_group))
            if self.global_limit:
                windows.append(("global", ("global",), self.global_limit))
        worst, scope = 0.0, ""
        for name, key, (count, period) in windows:
            span = period * self.time_scale
            log = self._flood_log.setdefault(key, deque())
            while log and log[0] <= now - span:
                log.popleft()
            if len(log) >= count:
                wait = log[len(log) - count] + span - now
                if not scope or wait > worst:
                    worst, scope = wait, name
        if scope:
            retry = max(1, math.ceil(worst / self.time_scale - 1e-9))
            self.flood_errors.append(FloodError(method, chat_id, scope, retry, now))
            raise ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
        for _, key, _ in windows:
            self._flood_log[key].append(now)

    def _bot_message_json(self, message: BotMessage, *, nested: bool = False) -> JSON:
        chat = self._chat(message.chat_id)
        result: JSON = {
            "message_id": message.message_id,
            "from": self.bot_user,
            "chat": dict(chat),
            "date": message.date,
        }
        if message.document is not None or message.photo is not None:
            if message.document is not None:
                result["document"] = message.document
            if message.photo is not None:
                result["photo"] = message.photo
            if message.plain:
                result["caption"] = message.plain
            if message.entities:
                result["caption_entities"] = message.entities
        else:
            result["text"] = message.plain
            if message.entities:
                result["entities"] = message.entities
        if message.edit_date is not None:
            result["edit_date"] = message.edit_date
        if message.message_thread_id is not None:
            result["message_thread_id"] = message.message_thread_id
            if chat.get("is_forum"):
                result["is_topic_message"] = True
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            result["reply_markup"] = message.reply_markup
        if not nested and message.reply_to_message_id is not None:
            replied = self.message_json(message.chat_id, message.reply_to_message_id)
            if replied is not None:
                result["reply_to_message"] = replied
        return result

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if isinstance(scope, str):
            scope = json.loads(scope)
        return json.dumps(scope or {"type": "default"}, sort_keys=True)

    def _member_json(self, chat_id: int, user_id: int) -> JSON:
        if user_id == self.bot_id:
            user: JSON = self.bot_user
        else:
            user = dict(self.users.get(user_id, {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}))
        status = self.members.get(chat_id, {}).get(user_id, "member")
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        if status == "administrator":
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
                "can_pin_messages": True,
                "can_manage_topics": True,
            }
        if status == "restricted":
            flags = [
                "can_change_info",
                "can_invite_users",
                "can_pin_messages",
                "can_send_messages",
                "can_send_polls",
                "can_send_other_messages",
                "can_add_web_page_previews",
                "can_manage_topics",
                "can_send_audios",
                "can_send_documents",
                "can_send_photos",
                "can_send_videos",
                "can_send_video_notes",
                "can_send_voice_notes",
                "can_edit_tag",
                "can_react_to_messages",
            ]
            return {
                "status": "restricted",
                "user": user,
                "is_member": True,
                "until_date": 0,
                **dict.fromkeys(flags, False),
            }
        if status == "kicked":
            return {"status": "kicked", "user": user, "until_date": 0}
        if status == "left":
            return {"status": "left", "user": user}
        return {"status": "member", "user": user}

    # ------------------------------------------------------------------------------------------ methods

    async def _true(self, params: JSON) -> bool:
        return True

    async def _get_me(self, params: JSON) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": self.reads_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _allowed(self, update: JSON) -> bool:
        return not self._allowed_updates or any(kind in update for kind in self._allowed_updates)

    async def _get_updates(self, params: JSON) -> list[JSON]:
        """Long polling: confirm updates below `offset`, answer at once if any are queued, else wait."""
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        offset = self._opt_int(params, "offset")
        limit = min(max(self._opt_int(params, "limit") or 100, 1), 100)
        timeout = float(params.get("timeout") or 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            allowed = json.loads(allowed) if allowed else []
        if allowed is not None:
            self._allowed_updates = list(allowed)
        if offset is not None:
            if offset < 0:
                self._pending = self._pending[offset:]
            else:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older poll still waiting is terminated, as Telegram does
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            batch = [u for u in self._pending if self._allowed(u)][:limit]
            if batch or self._closing:
                return batch
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def _set_webhook(self, params: JSON) -> bool:
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret is not None:
            secret = str(secret)
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
                raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if url and not re.match(r"https?://", url):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if params.get("drop_pending_updates"):
            self._pending.clear()
        allowed = params.get("allowed_updates")
        if allowed is not None:
            self._allowed_updates = list(allowed)
        self.webhook_url, self.webhook_secret = url, secret if url else None
        self.webhook_last_error = None
        if self._webhook_task:
            self._webhook_task.cancel()
            self._webhook_task = None
        if url:
            self._webhook_task = asyncio.create_task(self._deliver_webhooks(url, secret))
        return True

    async def _delete_webhook(self, params: JSON) -> bool:
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook_url, self.webhook_secret = "", None
        if self._webhook_task:
            self._webhook_task.cancel()
            self._webhook_task = None
        return True

    async def _get_webhook_info(self, params: JSON) -> JSON:
        info: JSON = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook_url:
            info["max_connections"] = 40
            if self._allowed_updates:
                info["allowed_updates"] = self._allowed_updates
        if self.webhook_last_error:
            info["last_error_date"], info["last_error_message"] = self.webhook_last_error
        return info

    async def _deliver_webhooks(self, url: str, secret: str | None) -> None:
        """POST pending updates to the webhook one at a time, retrying failures like Telegram does."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        async with aiohttp.ClientSession() as session:
            while not self._closing and self.webhook_url == url:
                ready = [u for u in self._pending if self._allowed(u)]
                if not ready:
                    await self._changed.wait()
                    continue
                update = ready[0]
                status: int | None = None
                error: str | None = None
                try:
                    async with session.post(
                        url, json=update, headers=headers, timeout=aiohttp.ClientTimeout(total=5)
                    ) as r:
                        status = r.status
                        await r.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"Connection failed: {exc!r}"
                self.webhook_deliveries.append(WebhookDelivery(update["update_id"], status, error, self._now()))
                if status is not None and 200 <= status < 300:
                    self._pending = [u for u in self._pending if u["update_id"] > update["update_id"]]
                    self._notify()
                else:
                    self.webhook_last_error = (int(time.time()), error or f"Wrong response from the webhook: {status}")
                    self._notify()
                    await asyncio.sleep(self.webhook_retry_interval)

    async def _set_my_commands(self, params: JSON) -> bool:
        commands = params.get("commands")
        if isinstance(commands, str):
            commands = json.loads(commands)
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100 BotCommand")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = (self._scope_key(params.get("scope")), str(params.get("language_code") or ""))
        self.commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True

    async def _get_my_commands(self, params: JSON) -> list[JSON]:
        return self.commands.get((self._scope_key(params.get("scope")), str(params.get("language_code") or "")), [])

    async def _delete_my_commands(self, params: JSON) -> bool:
        self.commands.pop((self._scope_key(params.get("scope")), str(params.get("language_code") or "")), None)
        return True

    async def _send_message(self, params: JSON) -> JSON:
        chat_id = self._chat_id(params)
        self._check_reachable(chat_id)
        self._chat(chat_id)
        self._check_blocked(chat_id)
        text = params.get("text")
        parse_mode = params.get("parse_mode")
        plain, entities = self._render(text, parse_mode, params.get("entities"))
        markup = self._markup(params.get("reply_markup"))
        reply_to = self._reply_to(chat_id, params)
        self._check_flood("sendMessage", chat_id)
        message = BotMessage(
            chat_id=chat_id,
            message_id=self._new_message_id(chat_id),
            text=str(text),
            parse_mode=parse_mode,
            plain=plain,
            entities=entities,
            reply_markup=markup,
            date=int(time.time()),
            message_thread_id=self._opt_int(params, "message_thread_id"),
            reply_to_message_id=reply_to,
        )
        self.messages.setdefault(chat_id, {})[message.message_id] = message
        return self._bot_message_json(message)

    async def _send_document(self, params: JSON) -> JSON:
        """An upload (multipart, ≤ `max_file_size`) or a file_id/URL string, with a caption of ≤ 1024 characters."""
        chat_id, name, content = self._upload(params, "document")
        if len(content) > self.max_file_size:
            raise ApiError(413, "Request Entity Too Large")
        message = self._file_message(chat_id, params, "sendDocument", content)
        message.document = {
            "file_name": name,
            "mime_type": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "file_id": f"document-{chat_id}-{message.message_id}",
            "file_unique_id": f"du{abs(chat_id)}x{message.message_id}",
            "file_size": len(content),
        }
        return self._bot_message_json(message)

    async def _send_photo(self, params: JSON) -> JSON:
        """An uploaded image (PNG, JPEG or GIF; ≤ 10 MB, width + height ≤ 10000, ratio ≤ 20) shown as a photo,
        in the sizes Telegram makes of it, with a caption of ≤ 1024 characters."""
        chat_id, _name, content = self._upload(params, "photo")
        if len(content) > MAX_PHOTO_SIZE:
            raise ApiError(400, PHOTO_TOO_BIG)
        size = image_size(content)
        if size is None:
            raise ApiError(400, IMAGE_FAILED)
        width, height = size
        if width + height > MAX_PHOTO_SIDES or max(width, height) > MAX_PHOTO_RATIO * min(width, height):
            raise ApiError(400, PHOTO_DIMENSIONS)
        message = self._file_message(chat_id, params, "sendPhoto", content)
        longest = max(width, height)
        sides = [side for side in PHOTO_THUMBNAILS if side < longest] + [longest]
        message.photo = [
            {
                "file_id": f"photo-{chat_id}-{message.message_id}-{side}",
                "file_unique_id": f"pu{abs(chat_id)}x{message.message_id}x{side}",
                "width": max(1, round(width * side / longest)),
                "height": max(1, round(height * side / longest)),
                "file_size": len(content) if side == longest else max(1, len(content) * side // longest),
            }
            for side in sides
        ]
        return self._bot_message_json(message)

    def _upload(self, params: JSON, field: str) -> tuple[int, str, bytes]:
        """The chat and the uploaded file of a sendDocument or sendPhoto, checked as Telegram does first."""
        chat_id = self._chat_id(params)
        self._check_reachable(chat_id)
        self._chat(chat_id)
        self._check_blocked(chat_id)
        upload = params.get(field)
        if upload is None or upload == "":
            raise ApiError(400, f"Bad Request: there is no {field} in the request")
        if not isinstance(upload, dict):  # a file_id or URL of a file Telegram already has: the fake keeps none
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        content = bytes(upload["content"])
        if not content:
            raise ApiError(400, "Bad Request: file must be non-empty")
        return chat_id, str(upload.get("filename") or field), content

    def _file_message(self, chat_id: int, params: JSON, method: str, content: bytes) -> BotMessage:
        """The message a file upload makes, its caption checked and the chat's flood windows counted."""
        caption = params.get("caption")
        plain, entities = ("", [])
        if caption is not None:
            plain, entities = self._render(
                caption, params.get("parse_mode"), params.get("caption_entities"), caption=True
            )
        markup = self._markup(params.get("reply_markup"))
        reply_to = self._reply_to(chat_id, params)
        self._check_flood(method, chat_id)
        message = BotMessage(
            chat_id=chat_id,
            message_id=self._new_message_id(chat_id),
            text="" if caption is None else str(caption),
            parse_mode=params.get("parse_mode"),
            plain=plain,
            entities=entities,
            reply_markup=markup,
            date=int(time.time()),
            message_thread_id=self._opt_int(params, "message_thread_id"),
            reply_to_message_id=reply_to,
            content=content,
        )
        self.messages.setdefault(chat_id, {})[message.message_id] = message
        return message

    def _reply_to(self, chat_id: int, params: JSON) -> int | None:
        """The message a new message quotes, from reply_parameters (or the older reply_to_message_id)."""
        reply = params.get("reply_parameters")
        if isinstance(reply, str):
            reply = json.loads(reply)
        reply_to = self._opt_int(reply or {}, "message_id") or self._opt_int(params, "reply_to_message_id")
        if reply_to is not None and self.message_json(chat_id, reply_to) is None:
            if not (reply or {}).get("allow_sending_without_reply"):
                raise ApiError(400, "Bad Request: message to be replied not found")
            reply_to = None
        return reply_to

    def _editable(self, params: JSON) -> BotMessage:
        if params.get("inline_message_id"):
            raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat_id = self._chat_id(params)
        message_id = self._opt_int(params, "message_id")
        if message_id is None:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        self._check_blocked(chat_id)
        message = self.messages.get(chat_id, {}).get(message_id)
        if message is None or message.deleted:
            if message_id in self.user_messages.get(chat_id, {}):
                raise ApiError(400, "Bad Request: message can't be edited")
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

    async def _edit_message_text(self, params: JSON) -> JSON:
        message = self._editable(params)
        if message.document is not None or message.photo is not None:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = params.get("text")
        parse_mode = params.get("parse_mode")
        plain, entities = self._render(text, parse_mode, params.get("entities"))
        markup = self._markup(params.get("reply_markup"))  # omitted: Telegram removes the inline keyboard
        if plain == message.plain and entities == message.entities and markup == message.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        self._check_flood("editMessageText", message.chat_id)
        message.history.append((message.text, message.parse_mode))
        message.text, message.parse_mode, message.plain, message.entities = str(text), parse_mode, plain, entities
        message.reply_markup = markup
        message.edit_date = int(time.time())
        return self._bot_message_json(message)

    async def _edit_message_reply_markup(self, params: JSON) -> JSON:
        message = self._editable(params)
        markup = self._markup(params.get("reply_markup"))
        if markup == message.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        self._check_flood("editMessageReplyMarkup", message.chat_id)
        message.reply_markup = markup
        message.edit_date = int(time.time())
        return self._bot_message_json(message)

    async def _send_message_draft(self, params: JSON) -> bool:
        if self.drafts_mode == "not_found":
            raise ApiError(404, "Not Found")
        if self.drafts_mode == "unavailable":
            raise ApiError(400, DRAFTS_UNAVAILABLE)
        chat_id = self._chat_id(params)
        if chat_id <= 0 or self._chat(chat_id)["type"] != "private":
            raise ApiError(400, DRAFT_NOT_PRIVATE)
        self._check_reachable(chat_id)
        self._check_blocked(chat_id)
        draft_id = self._opt_int(params, "draft_id")
        if not draft_id:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        text = params.get("text")
        parse_mode = params.get("parse_mode")
        plain, _ = self._render(text, parse_mode, params.get("entities"), allow_empty=True)
        self._check_flood("sendMessageDraft", chat_id, draft=True)
        draft = Draft(
            chat_id,
            draft_id,
            "" if text is None else str(text),
            parse_mode,
            plain,
            self._now(),
            self._opt_int(params, "message_thread_id"),
        )
        self.drafts.setdefault(chat_id, []).append(draft)
        return True

    async def _send_chat_action(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        self._check_reachable(chat_id)
        self._chat(chat_id)
        self._check_blocked(chat_id)
        if params.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _answer_callback_query(self, params: JSON) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._open_callbacks:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._open_callbacks.discard(query_id)
        self.callback_answers[query_id] = params
        return True

    async def _get_chat(self, params: JSON) -> JSON:
        chat_id = self._chat_id(params, known=True)
        accepted = dict.fromkeys(
            ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription", "gifts_from_channels"), False
        )
        return {**self.chats[chat_id], "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": accepted}

    async def _get_chat_member(self, params: JSON) -> JSON:
        chat_id = self._chat_id(params, known=True)
        user_id = self._opt_int(params, "user_id")
        if user_id is None:
            raise ApiError(400, "Bad Request: user_id is empty")
        return self._member_json(chat_id, user_id)

    async def _get_chat_administrators(self, params: JSON) -> list[JSON]:
        chat_id = self._chat_id(params, known=True)
        if self.chats[chat_id]["type"] == "private":
            raise ApiError(400, "Bad Request: there are no administrators in the private chat")
        members = self.members.get(chat_id, {})
        ranked = sorted(
            (status != "creator", user_id)
            for user_id, status in members.items()
            if status in ("creator", "administrator")
        )
        return [self._member_json(chat_id, user_id) for _, user_id in ranked]

    async def _delete_message(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        message_id = self._opt_int(params, "message_id")
        message = self.messages.get(chat_id, {}).get(message_id or 0)
        if message is not None and not message.deleted:
            message.deleted = True
            return True
        if self.user_messages.get(chat_id, {}).pop(message_id or 0, None) is not None:
            return True
        raise ApiError(400, "Bad Request: message to delete not found")
