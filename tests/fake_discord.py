"""A loopback fake of Discord (REST API + gateway websocket) for driving a real discord.py client in tests.

The machine running the tests has no internet, and mocking discord.py's internals would only test our guesses
about them. So this fake speaks Discord's wire protocol on 127.0.0.1 and discord.py runs its own code paths
against it: `HTTPClient.request` (auth, rate-limit buckets, 429 sleeps), the gateway (HELLO, IDENTIFY, READY,
GUILD_CREATE, heartbeats, zlib-stream transport compression, RESUME, shards: one connection each, a guild's events
on its shard and DMs on shard 0), the state's event parsers, the app-command tree and `discord.Interaction` with
its webhook-based responses.

Typical use::

    async with FakeDiscord() as fake:                      # starts the server, points discord.py at it
        client = discord.Client(intents=discord.Intents.default())
        async with fake.connected(client):                 # login + gateway + wait_until_ready, then close
            await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "hi", mentions_bot=True)
            await fake.wait_for_call("POST", r"/channels/\\d+/messages")

The seeded world (ids are module constants) is described in `FakeDiscord._seed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import mimetypes
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import WSMsgType, web

try:  # discord.py asks for zstd-stream instead of zlib-stream when a zstd module is importable
    import zstandard as _zstandard
except ImportError:  # pragma: no cover - depends on the environment
    _zstandard = None

# --------------------------------------------------------------------------------------------------------------
# Ids and constants of the seeded world. Fixed, readable snowflakes (they decode to dates in 2022); ids the fake
# generates at run time are real time-based snowflakes, so always larger.

BOT_TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAwMQ.fake.polyglott-test-token"
BOT_ID = 1000000000000000001
APPLICATION_ID = 1000000000000000002  # distinct from BOT_ID on purpose: catches code that mixes them up
BOT_USERNAME = "Polyglott"

GUILD_ID = 1000000000000000100
EVERYONE_ROLE_ID = GUILD_ID  # Discord's @everyone role shares the guild's id
BOT_ROLE_ID = 1000000000000000201  # the bot's managed role
TEACHER_ROLE_ID = 1000000000000000202  # "Teacher": manage messages/threads, no MANAGE_CHANNELS
MODERATOR_ROLE_ID = 1000000000000000203  # "Moderator": MANAGE_CHANNELS + MANAGE_MESSAGES

CATEGORY_ID = 1000000000000000300  # category "Lernen"
GENERAL_CHANNEL_ID = 1000000000000000301  # #general
PRACTICE_CHANNEL_ID = 1000000000000000302  # #german-practice, in the category
READONLY_CHANNEL_ID = 1000000000000000303  # #announcements: the bot may read but not send
HIDDEN_CHANNEL_ID = 1000000000000000304  # #staff: the bot cannot see it
THREAD_ID = 1000000000000000401  # public thread "vocab-drill" in #german-practice, the bot is a member

OWNER_ID = 1000000000000000501  # owns the guild (all permissions)
MODERATOR_ID = 1000000000000000502  # has the Moderator role
TEACHER_ID = 1000000000000000503  # has the Teacher role, nick "Frau Berger"
STUDENT_ID = 1000000000000000504  # no roles
STUDENT2_ID = 1000000000000000505  # no roles, nick "Lea (B1)"
OTHER_BOT_ID = 1000000000000000506  # another bot in the guild; its messages should be ignored

DISCORD_EPOCH_MS = 1420070400000
MAX_CONTENT = 2000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12

# Gateway intents (bit positions from Discord's docs).
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

P = discord.Permissions
ALL_PERMISSIONS = P.all().value
EVERYONE_PERMISSIONS = P(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,
    add_reactions=True,
    embed_links=True,
    attach_files=True,
    use_external_emojis=True,
    use_application_commands=True,
    change_nickname=True,
    connect=True,
    speak=True,
).value
BOT_PERMISSIONS = P(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    manage_threads=True,
    read_message_history=True,
    add_reactions=True,
    embed_links=True,
    attach_files=True,
    use_external_emojis=True,
).value
TEACHER_PERMISSIONS = P(manage_messages=True, manage_threads=True, mention_everyone=True).value
MODERATOR_PERMISSIONS = P(manage_channels=True, manage_messages=True, kick_members=True).value
DM_APP_PERMISSIONS = P(
    view_channel=True,
    send_messages=True,
    read_message_history=True,
    add_reactions=True,
    embed_links=True,
    attach_files=True,
    use_external_emojis=True,
).value

_VIEW = P(view_channel=True).value
_SEND = P(send_messages=True).value
_SEND_IN_THREADS = P(send_messages_in_threads=True).value
_MANAGE_MESSAGES = P(manage_messages=True).value
_MENTION_EVERYONE = P(mention_everyone=True).value
_CREATE_PUBLIC_THREADS = P(create_public_threads=True).value
_CREATE_PRIVATE_THREADS = P(create_private_threads=True).value
_ADMIN = P(administrator=True).value

# The locales Discord accepts in `*_localizations` (developer docs, "Locales").
_LOCALES = (
    "id da de en-GB en-US es-ES es-419 fr hr it lt hu nl no pl pt-BR ro fi sv-SE vi tr cs el bg ru uk hi th zh-CN ja"
)
DISCORD_LOCALES = frozenset([*_LOCALES.split(), "zh-TW", "ko"])
# Message components (developer docs, "Component Reference"): action rows of up to five buttons.
MAX_ACTION_ROWS, MAX_ROW_BUTTONS, MAX_CUSTOM_ID, MAX_BUTTON_LABEL = 5, 5, 100, 80
ACTION_ROW, BUTTON, LINK_STYLE = 1, 2, 5

TEXT, DM, CATEGORY, PUBLIC_THREAD, PRIVATE_THREAD = 0, 1, 4, 11, 12
THREAD_TYPES = (10, PUBLIC_THREAD, PRIVATE_THREAD)


def snowflake_time(snowflake: int) -> str:
    """ISO timestamp encoded in a snowflake, as Discord's `timestamp` fields carry it."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def _uploaded(filename: str, content_type: str) -> dict[str, Any]:
    """An uploaded file's attachment fields. discord.py sends every file as application/octet-stream; Discord
    then names the type by the file (a .png is image/png, shown inline), as `_attachment` guesses it."""
    if content_type in ("", "application/octet-stream") or "/" not in content_type:
        return {"filename": filename}
    return {"filename": filename, "content_type": content_type}


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def overwrite(target_id: int, *, member: bool = False, allow: int = 0, deny: int = 0) -> dict[str, Any]:
    """A channel permission overwrite for a role (or a member), in Discord's wire format."""
    return {"id": str(target_id), "type": 1 if member else 0, "allow": str(allow), "deny": str(deny)}


def shard_of(guild_id: int | None, count: int) -> int:
    """The shard that carries a guild's events among `count` (Discord's formula); DMs (no guild) ride shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % count


@contextlib.contextmanager
def patch_discord_urls(api_url: str, gateway_url: str) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at the fake, restoring them afterwards.

    A plain `discord.Client` never asks `/gateway/bot`: it connects to `DiscordWebSocket.DEFAULT_GATEWAY`
    (and later to READY's `resume_gateway_url`), so both class attributes must be patched.
    """
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = f"{api_url}/v{discord.http.INTERNAL_API_VERSION}"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@dataclass
class Call:
    """One REST request the fake answered; `json` is the JSON body (or multipart `payload_json`)."""

    method: str
    path: str  # without the /api/v10 prefix, e.g. "/channels/123/messages"
    json: Any
    time: float  # loop.time() when the request arrived
    status: int = 0
    query: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    response: Any = None


@dataclass
class _Window:
    """A fixed-window bucket as Discord runs them: `limit` requests, then wait until the window resets."""

    limit: int
    per: float
    count: int = 0
    reset_at: float = 0.0

    def hit(self, now: float) -> float | None:
        """Take a slot; the seconds to wait if there is none."""
        if now >= self.reset_at:
            self.count, self.reset_at = 0, now + self.per
        if self.count >= self.limit:
            return max(self.reset_at - now, 0.001)
        self.count += 1
        return None


@dataclass
class _Injected429:
    method: str | None
    path: re.Pattern[str] | None
    retry_after: float
    remaining: int
    is_global: bool


@dataclass
class _InjectedError:
    method: str | None
    path: re.Pattern[str] | None
    status: int
    message: str
    code: int
    remaining: int


@dataclass(eq=False)
class FakeInteraction:
    """An interaction the fake dispatched, and everything the bot answered to it."""

    id: int
    token: str
    type: int  # 2 application command, 3 component, 4 autocomplete
    payload: dict[str, Any]
    created: float
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # bodies POSTed to .../callback
    original: dict[str, Any] | None = None  # the response message (same dict as in fake.messages)
    followups: list[dict[str, Any]] = field(default_factory=list)
    _responded: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0]["type"] if self.callbacks else None

    async def wait_response(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109 - a bound, not a hang
        """The first callback body (`{"type": 4, "data": {...}}`), waiting for the bot to send it."""
        await asyncio.wait_for(self._responded.wait(), timeout)
        return self.callbacks[0]


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: dict[int, dict[str, Any]] = field(default_factory=dict)  # user id -> member record


class _Connection:
    """One gateway websocket; serialises sends because a zlib stream must be compressed in send order."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self._lock = asyncio.Lock()
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd = (
            _zstandard.ZstdCompressor().compressobj() if compress == "zstd-stream" and _zstandard is not None else None
        )

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        async with self._lock:
            if self.ws.closed:
                return
            if self._zlib is not None:
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)
            elif self._zstd is not None:  # pragma: no cover - only with zstandard installed
                data = self._zstd.compress(text.encode()) + self._zstd.flush(_zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                await self.ws.send_bytes(data)
            else:  # discord.py also accepts plain text frames
                await self.ws.send_str(text)


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    shard: tuple[int, int] | None
    conn: _Connection | None
    seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)


_Handler = Callable[["_Request"], Awaitable[web.Response]]


@dataclass
class _Request:
    match: re.Match[str]
    body: Any
    query: Mapping[str, str]
    files: list[tuple[str, bytes, str]]  # (filename, data, content type)

    def id(self, group: str) -> int:
        return int(self.match[group])


class FakeDiscord:
    """Discord's REST API and gateway on 127.0.0.1, with a small seeded guild; see the module docstring."""

    def __init__(
        self,
        token: str = BOT_TOKEN,
        *,
        seed: bool = True,
        create_limit: tuple[int, float] | None = (5, 5.0),
        edit_limit: tuple[int, float] | None = (5, 5.0),
        global_limit: tuple[int, float] | None = (50, 1.0),
        time_scale: float = 1.0,
        ratelimit_headers: bool = True,
        heartbeat_interval: float = 41.25,
        echo_bot_messages: bool = True,
        privileged_intents: int = PRIVILEGED_INTENTS,
        interaction_deadline: float | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Limits are (requests, seconds); `time_scale` multiplies every window and retry_after, so tests can
        run Discord's real limits faster. `ratelimit_headers=False` hides the buckets from discord.py (it then
        learns of a limit only from the 429). `privileged_intents` are those "enabled in the developer portal":
        asking for others closes the gateway with 4014. `interaction_deadline` (seconds, scaled) makes late
        interaction callbacks fail with 10062 Unknown interaction, like Discord's 3 s limit."""
        self.token = token
        self.host = host
        self.time_scale = time_scale
        self.create_limit = create_limit
        self.edit_limit = edit_limit
        self.global_limit = global_limit
        self.ratelimit_headers = ratelimit_headers
        self.heartbeat_interval = heartbeat_interval
        self.echo_bot_messages = echo_bot_messages
        self.privileged_intents = privileged_intents
        self.interaction_deadline = interaction_deadline

        self.port = 0
        self.calls: list[Call] = []
        self.rate_limited: list[Call] = []  # every request answered with 429
        self.errors: list[BaseException] = []  # exceptions inside the fake's handlers (answered 503)
        self.dispatched: list[tuple[str, dict[str, Any]]] = []  # every event pushed to the gateway
        self.heartbeats = 0
        self.identifies: list[dict[str, Any]] = []
        self.identified_shards: list[tuple[int, int] | None] = []  # (id, count) of each accepted IDENTIFY
        # (shard, event, data) for every event each session was sent; the shard is None when unsharded
        self.delivered: list[tuple[tuple[int, int] | None, str, dict[str, Any]]] = []
        self.gateway_queries: list[dict[str, str]] = []  # query string of each gateway connection

        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, dict[str, Any]] = {}  # live messages, bot's and users', by id
        self.deleted_messages: dict[int, dict[str, Any]] = {}
        self.uploads: dict[int, bytes] = {}  # attachment id -> bytes (served at /attachments/...)
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None: global) -> commands
        self.interactions: dict[int, FakeInteraction] = {}
        self.dms_closed: set[int] = set()  # users whose DMs are closed to the bot (50007)

        self._edits: dict[int, list[str]] = {}
        self._dm_by_user: dict[int, int] = {}
        self._last_id = 0
        self._windows: dict[tuple[str, int | str], _Window] = {}
        self._global_window: _Window | None = None
        self._injected: list[_Injected429] = []
        self._injected_errors: list[_InjectedError] = []
        self._refused_handshakes: list[int] = []  # HTTP statuses for the next gateway handshakes, in order
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._runner: web.AppRunner | None = None
        self._patch: contextlib.ExitStack | None = None
        self._changed: asyncio.Condition | None = None
        self._routes = self._route_table()
        self.add_user(BOT_USERNAME, bot=True, user_id=BOT_ID, discriminator="4242")
        if seed:
            self._seed()

    # ---------------------------------------------------------------------------------------------------
    # lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What `Route.BASE` is set to, minus the `/v10` suffix."""
        return f"{self.base_url}/api"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    async def start(self, *, patch: bool = True) -> None:
        """Listen on a free port; with `patch`, point discord.py at the fake until `stop()`."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/", self._gateway)
        app.router.add_get("/attachments/{channel}/{attachment}/{filename}", self._serve_attachment)
        app.router.add_route("*", r"/api/v{version:\d+}{tail:/.*}", self._http)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._changed = asyncio.Condition()
        if patch:
            self._patch = contextlib.ExitStack()
            self._patch.enter_context(patch_discord_urls(self.api_url, self.gateway_url))

    async def stop(self) -> None:
        """Close every gateway connection and the server, and undo the patch."""
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._patch is not None:
            self._patch.close()
            self._patch = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def patched(self) -> contextlib.AbstractContextManager[None]:
        """`with fake.patched():` when started with `patch=False`."""
        return patch_discord_urls(self.api_url, self.gateway_url)

    @contextlib.asynccontextmanager
    async def connected(
        self,
        client: discord.Client,
        *,
        token: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - a broken client fails the test instead of hanging it
        guild_ready_timeout: float | None = 0.05,
        reconnect: bool = True,
    ) -> AsyncIterator[discord.Client]:
        """Log `client` in, run its gateway loop in a task, wait for `on_ready`; close it on exit.

        discord.py waits `guild_ready_timeout` (2 s by default) after the last GUILD_CREATE before `on_ready`;
        the fake sends them all at once, so a short wait loses nothing and keeps tests fast.
        """
        if guild_ready_timeout is not None:
            client._connection.guild_ready_timeout = guild_ready_timeout
        try:
            await client.login(token or self.token)
        except BaseException:
            await client.close()
            raise
        task = asyncio.create_task(client.connect(reconnect=reconnect))
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()
                raise RuntimeError("discord.py's gateway loop ended before the client became ready")
            if ready not in done:
                raise TimeoutError(f"discord.py client not ready after {timeout} s")
            yield client
        finally:
            ready.cancel()
            await client.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout)

    # ---------------------------------------------------------------------------------------------------
    # the world: users, guilds, roles, members, channels, threads, DMs

    def snowflake(self) -> int:
        """A new id: time-based like Discord's, strictly increasing."""
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, candidate)
        return self._last_id

    def add_user(
        self,
        username: str,
        *,
        global_name: str | None = None,
        bot: bool = False,
        user_id: int | None = None,
        discriminator: str = "0",
    ) -> int:
        uid = user_id or self.snowflake()
        self.users[uid] = {
            "id": str(uid),
            "username": username,
            "global_name": global_name,
            "discriminator": discriminator,
            "avatar": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
            "collectibles": None,
        }
        return uid

    def add_guild(
        self,
        name: str,
        *,
        owner_id: int,
        guild_id: int | None = None,
        locale: str = "en-US",
        everyone_permissions: int = EVERYONE_PERMISSIONS,
        bot_permissions: int = BOT_PERMISSIONS,
        bot_role_id: int | None = None,
    ) -> int:
        """A guild with its @everyone role, the bot's managed role and the bot as a member."""
        gid = guild_id or self.snowflake()
        self.guilds[gid] = FakeGuild(id=gid, name=name, owner_id=owner_id, locale=locale)
        self.add_role(gid, "@everyone", everyone_permissions, role_id=gid, position=0)
        bot_role = self.add_role(
            gid,
            BOT_USERNAME,
            bot_permissions,
            role_id=bot_role_id,
            managed=True,
            tags={"bot_id": str(BOT_ID)},
            position=1,
        )
        self.add_member(gid, BOT_ID, roles=[bot_role])
        return gid

    def add_role(
        self,
        guild_id: int,
        name: str,
        permissions: int,
        *,
        role_id: int | None = None,
        position: int | None = None,
        managed: bool = False,
        tags: dict[str, Any] | None = None,
        color: int = 0,
        hoist: bool = False,
    ) -> int:
        guild = self.guilds[guild_id]
        rid = role_id or self.snowflake()
        role: dict[str, Any] = {
            "id": str(rid),
            "name": name,
            "permissions": str(permissions),
            "position": len(guild.roles) if position is None else position,
            "color": color,
            "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
            "hoist": hoist,
            "managed": managed,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
            "description": None,
        }
        if tags is not None:
            role["tags"] = tags
        guild.roles[rid] = role
        return rid

    def add_member(
        self, guild_id: int, user_id: int, *, nick: str | None = None, roles: Iterable[int] = ()
    ) -> dict[str, Any]:
        record = {
            "user_id": user_id,
            "nick": nick,
            "roles": list(roles),
            "joined_at": snowflake_time(user_id),
        }
        self.guilds[guild_id].members[user_id] = record
        return record

    def add_channel(
        self,
        guild_id: int,
        name: str,
        *,
        type: int = TEXT,
        parent_id: int | None = None,
        topic: str | None = None,
        overwrites: Sequence[dict[str, Any]] = (),
        channel_id: int | None = None,
        rate_limit_per_user: int = 0,
    ) -> int:
        cid = channel_id or self.snowflake()
        position = sum(1 for c in self.channels.values() if c.get("guild_id") == str(guild_id))
        channel: dict[str, Any] = {
            "id": str(cid),
            "type": type,
            "guild_id": str(guild_id),
            "name": name,
            "position": position,
            "permission_overwrites": list(overwrites),
            "parent_id": str(parent_id) if parent_id else None,
            "nsfw": False,
            "flags": 0,
        }
        if type != CATEGORY:
            channel |= {
                "topic": topic,
                "last_message_id": None,
                "rate_limit_per_user": rate_limit_per_user,
                "default_auto_archive_duration": 1440,
                "default_thread_rate_limit_per_user": 0,
                "last_pin_timestamp": None,
            }
        self.channels[cid] = channel
        return cid

    def add_thread(
        self,
        parent_id: int,
        name: str,
        *,
        owner_id: int,
        private: bool = False,
        thread_id: int | None = None,
        bot_joined: bool = True,
    ) -> int:
        parent = self.channels[parent_id]
        tid = thread_id or self.snowflake()
        created = snowflake_time(tid)
        thread: dict[str, Any] = {
            "id": str(tid),
            "type": PRIVATE_THREAD if private else PUBLIC_THREAD,
            "guild_id": parent["guild_id"],
            "parent_id": str(parent_id),
            "owner_id": str(owner_id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 2 if bot_joined else 1,
            "total_message_sent": 0,
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": created,
                "locked": False,
                "invitable": True,
                "create_timestamp": created,
            },
        }
        if bot_joined:
            thread["member"] = {"id": str(tid), "user_id": str(BOT_ID), "join_timestamp": created, "flags": 1}
        self.channels[tid] = thread
        return tid

    async def create_thread(self, parent_id: int, name: str, *, owner_id: int, private: bool = False) -> int:
        """A user opens a thread: add it and dispatch THREAD_CREATE (newly_created)."""
        tid = self.add_thread(parent_id, name, owner_id=owner_id, private=private, bot_joined=False)
        await self.dispatch("THREAD_CREATE", self.channels[tid] | {"newly_created": True})
        return tid

    def dm_channel(self, user_id: int) -> int:
        """The DM channel between the bot and `user_id`, created on first use (as Discord does)."""
        if user_id not in self._dm_by_user:
            cid = self.snowflake()
            self.channels[cid] = {
                "id": str(cid),
                "type": DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self.users[user_id]],
                "_recipient": user_id,
            }
            self._dm_by_user[user_id] = cid
        return self._dm_by_user[user_id]

    def _seed(self) -> None:
        """One guild "Polyglott Test School" (owner OWNER_ID, locale de) with roles @everyone, Polyglott (the
        bot's managed role), Teacher and Moderator (MANAGE_CHANNELS); members owner, moderator, teacher,
        two students, another bot and this bot; a category, #general, #german-practice (in the category),
        #announcements (only moderators may send), #staff (hidden from everyone but teachers) and a public
        thread in #german-practice."""
        self.add_user("olivia", global_name="Olivia Owner", user_id=OWNER_ID)
        self.add_user("mika", global_name="Mika Moderator", user_id=MODERATOR_ID)
        self.add_user("frau_berger", global_name="Anna Berger", user_id=TEACHER_ID)
        self.add_user("sam_learns", global_name="Sam", user_id=STUDENT_ID)
        self.add_user("lea.k", global_name="Lea", user_id=STUDENT2_ID)
        self.add_user("otherbot", bot=True, user_id=OTHER_BOT_ID, discriminator="1234")

        gid = self.add_guild(
            "Polyglott Test School", owner_id=OWNER_ID, guild_id=GUILD_ID, locale="de", bot_role_id=BOT_ROLE_ID
        )
        self.add_role(gid, "Teacher", TEACHER_PERMISSIONS, role_id=TEACHER_ROLE_ID, color=0x2ECC71, hoist=True)
        self.add_role(gid, "Moderator", MODERATOR_PERMISSIONS, role_id=MODERATOR_ROLE_ID, color=0xE67E22)
        self.add_member(gid, OWNER_ID)
        self.add_member(gid, MODERATOR_ID, roles=[MODERATOR_ROLE_ID])
        self.add_member(gid, TEACHER_ID, nick="Frau Berger", roles=[TEACHER_ROLE_ID])
        self.add_member(gid, STUDENT_ID)
        self.add_member(gid, STUDENT2_ID, nick="Lea (B1)")
        self.add_member(gid, OTHER_BOT_ID)

        self.add_channel(gid, "Lernen", type=CATEGORY, channel_id=CATEGORY_ID)
        self.add_channel(gid, "general", channel_id=GENERAL_CHANNEL_ID, topic="Say hi")
        self.add_channel(
            gid, "german-practice", channel_id=PRACTICE_CHANNEL_ID, parent_id=CATEGORY_ID, topic="Nur Deutsch!"
        )
        self.add_channel(
            gid,
            "announcements",
            channel_id=READONLY_CHANNEL_ID,
            overwrites=[
                overwrite(EVERYONE_ROLE_ID, deny=_SEND),
                overwrite(BOT_ROLE_ID, deny=_SEND),
                overwrite(MODERATOR_ROLE_ID, allow=_SEND),
            ],
        )
        self.add_channel(
            gid,
            "staff",
            channel_id=HIDDEN_CHANNEL_ID,
            overwrites=[overwrite(EVERYONE_ROLE_ID, deny=_VIEW), overwrite(TEACHER_ROLE_ID, allow=_VIEW)],
        )
        self.add_thread(PRACTICE_CHANNEL_ID, "vocab-drill", owner_id=STUDENT_ID, thread_id=THREAD_ID)

    # ---------------------------------------------------------------------------------------------------
    # permissions, as Discord computes them

    def permissions_for(self, guild_id: int, user_id: int, channel_id: int | None = None) -> int:
        """The member's permission bits in the guild, or in a channel (threads use their parent)."""
        guild = self.guilds[guild_id]
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        if member is None:
            return 0
        perms = int(guild.roles[guild_id]["permissions"])
        for rid in member["roles"]:
            perms |= int(guild.roles[rid]["permissions"])
        if perms & _ADMIN:
            return ALL_PERMISSIONS
        if channel_id is None:
            return perms
        channel = self.channels[channel_id]
        if channel["type"] in THREAD_TYPES:
            channel = self.channels[int(channel["parent_id"])]
        by_id = {int(o["id"]): o for o in channel.get("permission_overwrites", [])}
        if (ow := by_id.get(guild_id)) is not None:
            perms = (perms & ~int(ow["deny"])) | int(ow["allow"])
        allow = deny = 0
        for rid in member["roles"]:
            if (ow := by_id.get(rid)) is not None and ow["type"] == 0:
                allow, deny = allow | int(ow["allow"]), deny | int(ow["deny"])
        perms = (perms & ~deny) | allow
        if (ow := by_id.get(user_id)) is not None and ow["type"] == 1:
            perms = (perms & ~int(ow["deny"])) | int(ow["allow"])
        return perms if perms & _VIEW else 0

    # ---------------------------------------------------------------------------------------------------
    # payloads

    def _member_payload(self, guild_id: int, user_id: int, *, with_user: bool = True) -> dict[str, Any]:
        record = self.guilds[guild_id].members[user_id]
        payload: dict[str, Any] = {
            "nick": record["nick"],
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in record["roles"]],
            "joined_at": record["joined_at"],
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        if with_user:
            payload["user"] = self.users[user_id]
        return payload

    def _public_channel(self, channel_id: int) -> dict[str, Any]:
        return {k: v for k, v in self.channels[channel_id].items() if not k.startswith("_")}

    def _guild_of(self, channel_id: int) -> int | None:
        gid = self.channels[channel_id].get("guild_id")
        return int(gid) if gid else None

    def _guild_create(self, guild: FakeGuild, intents: int) -> dict[str, Any]:
        channels = [self._public_channel(c) for c, ch in self.channels.items() if ch.get("guild_id") == str(guild.id)]
        # Without GUILD_MEMBERS, Discord sends only the bot's own member.
        member_ids = guild.members if intents & INTENT_GUILD_MEMBERS else [BOT_ID]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": guild.locale,
            "features": [],
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "application_id": None,
            "incidents_data": None,
            "roles": list(guild.roles.values()),
            "emojis": [],
            "stickers": [],
            "joined_at": guild.members[BOT_ID]["joined_at"],
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(guild.members),
            "members": [self._member_payload(guild.id, uid) for uid in member_ids],
            "channels": [c for c in channels if c["type"] not in THREAD_TYPES],
            "threads": [c for c in channels if c["type"] in THREAD_TYPES],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
        }

    def _application(self) -> dict[str, Any]:
        flags = 0
        for intent, flag in (
            (INTENT_GUILD_PRESENCES, 1 << 12),
            (INTENT_GUILD_MEMBERS, 1 << 14),
            (INTENT_MESSAGE_CONTENT, 1 << 18),
        ):
            if self.privileged_intents & intent:
                flags |= flag
        return {
            "id": str(APPLICATION_ID),
            "name": BOT_USERNAME,
            "icon": None,
            "description": "A language tutor",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": flags,
            "owner": self.users[OWNER_ID] if OWNER_ID in self.users else self.users[BOT_ID],
            "team": None,
            "bot": self.users[BOT_ID],
            "hook": True,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "tags": [],
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}},
        }

    # ---------------------------------------------------------------------------------------------------
    # gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self._refused_handshakes:  # Discord's edge having a bad minute: no upgrade to a websocket
            status = self._refused_handshakes.pop(0)
            self.gateway_queries.append(dict(request.query))
            return web.Response(status=status, text=f"{status}: gateway unavailable")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.gateway_queries.append(dict(request.query))
        conn = _Connection(ws, request.query.get("compress"))
        self._connections.add(conn)
        session: _Session | None = None
        try:
            interval = int(self.heartbeat_interval * 1000)
            await conn.send({"op": 10, "d": {"heartbeat_interval": interval}, "s": None, "t": None})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                session = await self._gateway_op(conn, session, frame) or session
        finally:
            self._connections.discard(conn)
            if session is not None and session.conn is conn:
                session.conn = None  # kept (and buffering) so the client can RESUME it
        return ws

    async def _gateway_op(self, conn: _Connection, session: _Session | None, frame: dict[str, Any]) -> _Session | None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:  # HEARTBEAT
            self.heartbeats += 1
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:  # IDENTIFY
            return await self._identify(conn, d)
        elif op == 6:  # RESUME
            return await self._resume(conn, d)
        elif op == 8 and session is not None:  # REQUEST_GUILD_MEMBERS
            await self._member_chunk(session, d)
        return None

    async def _identify(self, conn: _Connection, d: dict[str, Any]) -> _Session | None:
        self.identifies.append(d)
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return None
        intents = int(d.get("intents", 0))
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        shard = tuple(d["shard"]) if d.get("shard") else None
        session = _Session(id=secrets.token_hex(16), intents=intents, shard=shard, conn=conn)  # type: ignore[arg-type]
        guilds = [g for g in self.guilds.values() if self._in_shard(session, g.id)]
        ready: dict[str, Any] = {
            "v": discord.http.INTERNAL_API_VERSION,
            "user": self.users[BOT_ID] | {"verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APPLICATION_ID), "flags": self._application()["flags"]},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam"],
            "user_settings": {},
            "auth": {},
            "_trace": ['["fake-gateway",{"micros":0}]'],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        self._sessions[session.id] = session
        self.identified_shards.append(session.shard)
        await self._send_event(session, "READY", ready)
        for guild in guilds:
            await self._send_event(session, "GUILD_CREATE", self._guild_create(guild, intents))
        await self._notify()
        return session

    async def _resume(self, conn: _Connection, d: dict[str, Any]) -> _Session | None:
        session = self._sessions.get(d.get("session_id", ""))
        if session is None or d.get("token") != self.token:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return None
        session.conn = conn
        for frame in session.buffer:
            if frame["s"] > int(d.get("seq") or 0):
                await conn.send(frame)
        await self._send_event(session, "RESUMED", {"_trace": ['["fake-gateway",{"micros":0}]']})
        await self._notify()
        return session

    async def _member_chunk(self, session: _Session, d: dict[str, Any]) -> None:
        gids = d["guild_id"] if isinstance(d["guild_id"], list) else [d["guild_id"]]
        for gid in map(int, gids):
            guild = self.guilds[gid]
            wanted = {int(u) for u in d.get("user_ids") or []}
            query = (d.get("query") or "").casefold()
            found = []
            for uid, record in guild.members.items():
                user = self.users[uid]
                names = (user["username"], user.get("global_name") or "", record["nick"] or "")
                if wanted and uid not in wanted:
                    continue
                if not wanted and query and not any(n.casefold().startswith(query) for n in names):
                    continue
                found.append(self._member_payload(gid, uid))
            limit = int(d.get("limit") or 0)
            if limit:
                found = found[:limit]
            chunk: dict[str, Any] = {
                "guild_id": str(gid),
                "members": found,
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [str(u) for u in wanted if u not in guild.members],
            }
            if d.get("nonce"):
                chunk["nonce"] = d["nonce"]
            await self._send_event(session, "GUILD_MEMBERS_CHUNK", chunk)

    @staticmethod
    def _in_shard(session: _Session, guild_id: int | None) -> bool:
        """Discord's sharding formula; DMs go to shard 0."""
        if session.shard is None:
            return True
        shard_id, count = session.shard
        return shard_of(guild_id, count) == shard_id

    def shards_of(self, event: str, object_id: int | str) -> list[tuple[int, int] | None]:
        """The shards (id, count) whose connections were sent `event` about the object with this id (a message,
        an interaction, a guild), in order; None for an unsharded connection."""
        return [shard for shard, name, data in self.delivered if name == event and data.get("id") == str(object_id)]

    async def _send_event(self, session: _Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.buffer.append(frame)
        self.delivered.append((session.shard, event, data))
        if session.conn is not None:
            await session.conn.send(frame)

    def _wants(self, session: _Session, event: str, data: dict[str, Any]) -> bool:
        """Whether Discord would send `event` to this session, given its intents and shard."""
        gid = int(data["guild_id"]) if data.get("guild_id") else None
        if not self._in_shard(session, gid):
            return False
        if event.startswith("MESSAGE_"):
            need = INTENT_GUILD_MESSAGES if gid else INTENT_DIRECT_MESSAGES
            return bool(session.intents & need)
        if event.startswith("GUILD_MEMBER"):
            return bool(session.intents & INTENT_GUILD_MEMBERS)
        if event.startswith(("THREAD_", "CHANNEL_", "GUILD_")):
            return bool(session.intents & INTENT_GUILDS)
        return True

    def _visible_message(self, session: _Session, message: dict[str, Any]) -> dict[str, Any]:
        """Strip content as Discord does for apps without the MESSAGE_CONTENT intent."""
        if session.intents & INTENT_MESSAGE_CONTENT:
            return message
        exempt = (
            not message.get("guild_id")
            or int(message["author"]["id"]) == BOT_ID
            or any(int(m["id"]) == BOT_ID for m in message.get("mentions", []))
        )
        if exempt:
            stripped = message
        else:
            stripped = message | {"content": "", "embeds": [], "attachments": [], "components": []}
            stripped.pop("poll", None)
        if isinstance(message.get("referenced_message"), dict):
            stripped = stripped | {"referenced_message": self._visible_message(session, message["referenced_message"])}
        return stripped

    async def wait_connected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a bound, not a hang
        """Wait until some client has identified (or resumed) on the gateway."""
        await self.wait_until(lambda: any(s.conn is not None for s in self._sessions.values()), timeout)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Push a DISPATCH event to every connected session that would receive it."""
        await self.wait_connected()
        self.dispatched.append((event, data))
        for session in list(self._sessions.values()):  # a session between connections buffers for RESUME
            if not self._wants(session, event, data):
                continue
            visible = event in ("MESSAGE_CREATE", "MESSAGE_UPDATE")
            payload = self._visible_message(session, data) if visible else data
            await self._send_event(session, event, payload)
        await self._notify()

    async def _dispatch_quietly(self, event: str, data: dict[str, Any]) -> None:
        """Echo from a REST handler: no wait for a connection, nothing to do if no client listens."""
        if any(s.conn is not None for s in self._sessions.values()):
            await self.dispatch(event, data)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes the socket and RESUMEs at `resume_gateway_url`."""
        for session in self._sessions.values():
            if session.conn is not None:
                await session.conn.send({"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION: discord.py identifies anew (or resumes if `resumable`)."""
        for session in list(self._sessions.values()):
            if session.conn is not None:
                await session.conn.send({"op": 9, "d": resumable, "s": None, "t": None})
            if not resumable:
                del self._sessions[session.id]

    async def close_gateway(self, code: int = 4000) -> None:
        """Drop every gateway connection with `code` (4000: discord.py reconnects; 4004 etc.: it gives up)."""
        for conn in list(self._connections):
            await conn.ws.close(code=code)

    # ---------------------------------------------------------------------------------------------------
    # pushing user activity

    def _mentions(self, content: str, guild_id: int | None, author_id: int) -> tuple[list[Any], list[str], bool]:
        users, seen = [], set()
        for m in re.finditer(r"<@!?(\d+)>", content):
            uid = int(m[1])
            if uid in seen or uid not in self.users:
                continue
            seen.add(uid)
            mention = dict(self.users[uid])
            if guild_id and uid in self.guilds[guild_id].members:
                mention["member"] = self._member_payload(guild_id, uid, with_user=False)
            users.append(mention)
        roles = []
        if guild_id:
            roles = [m[1] for m in re.finditer(r"<@&(\d+)>", content) if int(m[1]) in self.guilds[guild_id].roles]
        everyone = bool(re.search(r"@(everyone|here)\b", content)) and (
            guild_id is None or bool(self.permissions_for(guild_id, author_id) & _MENTION_EVERYONE)
        )
        return users, roles, everyone

    def _attachment(self, channel_id: int, spec: str | Mapping[str, Any], data: bytes = b"") -> dict[str, Any]:
        spec = {"filename": spec} if isinstance(spec, str) else dict(spec)
        aid = self.snowflake()
        filename = spec.pop("filename")
        data = spec.pop("data", data)
        self.uploads[aid] = data
        url = f"{self.base_url}/attachments/{channel_id}/{aid}/{filename}"
        payload: dict[str, Any] = {
            "id": str(aid),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": mimetypes.guess_type(filename)[0] or "application/octet-stream",
            "flags": 0,
        }
        return payload | spec

    async def send_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        mentions_bot: bool = False,
        reply_to: int | None = None,
        mention_replied_author: bool = True,
        attachments: Sequence[str | Mapping[str, Any]] = (),
        stickers: Sequence[str | Mapping[str, Any]] = (),
        embeds: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """A user posts in a guild channel, thread or DM channel: MESSAGE_CREATE with a full payload.

        `mentions_bot` prefixes `<@BOT_ID> `; other `<@id>`/`<@&id>` in `content` become mentions too.
        `attachments` are filenames or dicts (`filename`, optional `data` bytes served by the fake, any other
        attachment fields); `stickers` are names or sticker-item dicts.
        """
        channel = self.channels[channel_id]
        gid = self._guild_of(channel_id)
        if mentions_bot and f"<@{BOT_ID}>" not in content:
            content = f"<@{BOT_ID}> {content}".rstrip()
        mid = self.snowflake()
        users, roles, everyone = self._mentions(content, gid, author_id)
        message: dict[str, Any] = {
            "id": str(mid),
            "type": 0,
            "channel_id": str(channel_id),
            "author": self.users[author_id],
            "content": content,
            "timestamp": snowflake_time(mid),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": everyone,
            "mentions": users,
            "mention_roles": roles,
            "attachments": [self._attachment(channel_id, a) for a in attachments],
            "embeds": [dict(e) for e in embeds],
            "sticker_items": [
                {"id": str(self.snowflake()), "name": s, "format_type": 1} if isinstance(s, str) else dict(s)
                for s in stickers
            ],
            "reactions": [],
            "pinned": False,
            "flags": 0,
            "components": [],
            "nonce": str(mid),
        }
        if gid is not None:
            message["guild_id"] = str(gid)
            message["member"] = self._member_payload(gid, author_id, with_user=False)
        if reply_to is not None:
            ref = self.messages[reply_to]
            message["type"] = 19
            message["message_reference"] = self._reference(ref)
            message["referenced_message"] = ref
            replied = int(ref["author"]["id"])
            if mention_replied_author and replied != author_id and all(int(u["id"]) != replied for u in users):
                mention = dict(self.users[replied])
                if gid is not None and replied in self.guilds[gid].members:
                    mention["member"] = self._member_payload(gid, replied, with_user=False)
                message["mentions"].append(mention)
        self.messages[mid] = message
        channel["last_message_id"] = str(mid)
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def send_dm(self, user_id: int, content: str, **kwargs: Any) -> dict[str, Any]:
        """`user_id` writes to the bot in their DM channel."""
        return await self.send_message(self.dm_channel(user_id), user_id, content, **kwargs)

    async def edit_user_message(self, message_id: int, content: str) -> dict[str, Any]:
        """The user edits their message: MESSAGE_UPDATE."""
        message = self.messages[message_id]
        message["content"] = content
        message["edited_timestamp"] = _now_iso()
        await self.dispatch("MESSAGE_UPDATE", message)
        return message

    @staticmethod
    def _reference(message: Mapping[str, Any]) -> dict[str, Any]:
        ref = {"type": 0, "message_id": message["id"], "channel_id": message["channel_id"]}
        if message.get("guild_id"):
            ref["guild_id"] = message["guild_id"]
        return ref

    # ---------------------------------------------------------------------------------------------------
    # interactions

    def command_id(self, name: str, guild_id: int | None = None) -> int:
        """The id the fake assigned to a synced command (guild scope, else global)."""
        cmd, _ = self._find_command(name, guild_id, 1)
        return int(cmd["id"])

    def _find_command(self, name: str, guild_id: int | None, kind: int) -> tuple[dict[str, Any], int | None]:
        scopes: list[int | None] = [guild_id, None] if guild_id else [None]
        for scope in scopes:
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name and cmd.get("type", 1) == kind:
                    return cmd, scope
        raise KeyError(f"no command {name!r} (type {kind}) synced for guild {guild_id} or globally")

    def _check_command_access(self, cmd: dict[str, Any], guild_id: int | None, user_id: int, channel_id: int) -> None:
        """Discord's client never sends what the user cannot see: refuse such invocations loudly."""
        context = 0 if guild_id else 1
        contexts = cmd.get("contexts")
        if contexts is not None and context not in contexts:
            raise PermissionError(f"/{cmd['name']} is not available in context {context}")
        if guild_id is None:
            if cmd.get("dm_permission") is False:
                raise PermissionError(f"/{cmd['name']} is not available in DMs")
            return
        required = cmd.get("default_member_permissions")
        if required is not None:
            perms = self.permissions_for(guild_id, user_id, channel_id)
            if perms != ALL_PERMISSIONS and (int(required) == 0 or perms & int(required) != int(required)):
                raise PermissionError(f"user {user_id} lacks default_member_permissions of /{cmd['name']}")

    def _options(
        self,
        definitions: list[dict[str, Any]],
        values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        guild_id: int | None,
        resolved: dict[str, dict[str, Any]],
        focused: str | None,
        check_required: bool,
    ) -> list[dict[str, Any]]:
        if not isinstance(values, Mapping):
            return [dict(v) for v in values]
        by_name = {d["name"]: d for d in definitions}
        options = []
        for name, value in values.items():
            if name not in by_name:
                raise KeyError(f"option {name!r} is not in the synced command (has {sorted(by_name)})")
            kind = by_name[name]["type"]
            option: dict[str, Any] = {"name": name, "type": kind, "value": value}
            if name == focused:
                option["focused"] = True
            elif kind in (6, 7, 8, 9):
                option["value"] = str(value)
                self._resolve(kind, int(value), guild_id, resolved)
            options.append(option)
        if check_required:
            missing = [d["name"] for d in definitions if d.get("required") and d["name"] not in values]
            if missing:
                raise ValueError(f"required options missing: {missing}")
        return options

    def _resolve(self, kind: int, target: int, guild_id: int | None, resolved: dict[str, dict[str, Any]]) -> None:
        if kind in (6, 9) and target in self.users:
            resolved.setdefault("users", {})[str(target)] = self.users[target]
            if guild_id and target in self.guilds[guild_id].members:
                member = self._member_payload(guild_id, target, with_user=False)
                member["permissions"] = str(self.permissions_for(guild_id, target))
                resolved.setdefault("members", {})[str(target)] = member
        elif kind in (8, 9) and guild_id and target in self.guilds[guild_id].roles:
            resolved.setdefault("roles", {})[str(target)] = self.guilds[guild_id].roles[target]
        elif kind == 7 and target in self.channels:
            channel = self.channels[target]
            entry = {k: channel[k] for k in ("id", "name", "type", "parent_id", "thread_metadata") if k in channel}
            if guild_id:
                entry["permissions"] = str(self.permissions_for(guild_id, BOT_ID, target))
            resolved.setdefault("channels", {})[str(target)] = entry

    def _command_data(
        self,
        name: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        guild_id: int | None,
        user_id: int,
        channel_id: int,
        focused: str | None,
    ) -> dict[str, Any]:
        root, *subs = name.split()
        cmd, scope = self._find_command(root, guild_id, 1)
        self._check_command_access(cmd, guild_id, user_id, channel_id)
        resolved: dict[str, dict[str, Any]] = {}
        definitions = cmd.get("options", [])
        chain: list[dict[str, Any]] = []
        for sub in subs:
            found = next((d for d in definitions if d["name"] == sub and d["type"] in (1, 2)), None)
            if found is None:
                raise KeyError(f"no subcommand {sub!r} in /{name}")
            chain.append({"name": sub, "type": found["type"], "options": []})
            definitions = found.get("options", [])
        leaf = self._options(definitions, options or {}, guild_id, resolved, focused, focused is None)
        top = leaf
        for link in reversed(chain):
            link["options"] = top
            top = [link]
        data: dict[str, Any] = {"id": cmd["id"], "name": root, "type": 1, "options": top}
        if scope is not None:
            data["guild_id"] = str(scope)
        if resolved:
            data["resolved"] = resolved
        return data

    def _interaction(
        self,
        itype: int,
        data: dict[str, Any],
        channel_id: int,
        user_id: int,
        guild_id: int | None,
        locale: str,
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        iid = self.snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        channel = self._public_channel(channel_id)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(APPLICATION_ID),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "context": 0 if guild_id else 1,
            "authorizing_integration_owners": {"0": str(guild_id or 0)},
        }
        if guild_id:
            guild = self.guilds[guild_id]
            perms = self.permissions_for(guild_id, user_id, channel_id)
            payload["guild_id"] = str(guild_id)
            payload["guild"] = {"id": str(guild_id), "locale": guild.locale, "features": []}
            payload["guild_locale"] = guild.locale
            payload["member"] = self._member_payload(guild_id, user_id) | {"permissions": str(perms)}
            payload["channel"] = channel | {"permissions": str(perms)}
            payload["app_permissions"] = str(self.permissions_for(guild_id, BOT_ID, channel_id))
        else:
            payload["user"] = self.users[user_id]
            payload["channel"] = channel
            payload["app_permissions"] = str(DM_APP_PERMISSIONS)
        if message is not None:
            payload["message"] = message
        loop = asyncio.get_running_loop()
        interaction = FakeInteraction(id=iid, token=token, type=itype, payload=payload, created=loop.time())
        self.interactions[iid] = interaction
        return interaction

    async def invoke_command(
        self,
        name: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        channel_id: int = GENERAL_CHANNEL_ID,
        user_id: int = STUDENT_ID,
        guild_id: int | None = None,
        *,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A user runs a synced slash command: INTERACTION_CREATE type 2.

        `name` may be "group sub" for subcommands. `options` is {name: value} (types come from the synced
        definition; user/channel/role values are ids and get `resolved` data) or a raw option list. The guild
        is the channel's unless given. Raises PermissionError where Discord would hide the command.
        """
        gid = guild_id if guild_id is not None else self._guild_of(channel_id)
        data = self._command_data(name, options, gid, user_id, channel_id, None)
        interaction = self._interaction(2, data, channel_id, user_id, gid, locale)
        await self.dispatch("INTERACTION_CREATE", interaction.payload)
        return interaction

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        focused: str | None = None,
        channel_id: int = GENERAL_CHANNEL_ID,
        user_id: int = STUDENT_ID,
        guild_id: int | None = None,
        *,
        locale: str = "en-US",
        timeout: float = 5.0,  # noqa: ASYNC109 - a bound, not a hang
    ) -> list[dict[str, Any]]:
        """A user types into option `focused` (default: the last in `options`): INTERACTION_CREATE type 4.
        Returns the choices the bot answered with (callback type 8)."""
        focused = focused or list(options)[-1]
        gid = guild_id if guild_id is not None else self._guild_of(channel_id)
        data = self._command_data(name, options, gid, user_id, channel_id, focused)
        interaction = self._interaction(4, data, channel_id, user_id, gid, locale)
        await self.dispatch("INTERACTION_CREATE", interaction.payload)
        body = await interaction.wait_response(timeout)
        if body["type"] != 8:
            raise AssertionError(f"autocomplete answered with callback type {body['type']}")
        return list(body.get("data", {}).get("choices", []))

    async def click_button(
        self,
        message_id: int,
        custom_id: str,
        user_id: int,
        *,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A user clicks a button (or picks from a select) on a message: INTERACTION_CREATE type 3."""
        message = self.messages[message_id]
        channel_id = int(message["channel_id"])
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        gid = self._guild_of(channel_id)
        interaction = self._interaction(3, data, channel_id, user_id, gid, locale, message=message)
        await self.dispatch("INTERACTION_CREATE", interaction.payload)
        return interaction

    # ---------------------------------------------------------------------------------------------------
    # inspection

    def bot_messages(self, channel_id: int | None = None, *, include_ephemeral: bool = False) -> list[dict[str, Any]]:
        """Live messages the bot authored (channel sends, interaction responses, followups), oldest first."""
        found = [
            m
            for mid, m in sorted(self.messages.items())
            if int(m["author"]["id"]) == BOT_ID
            and (channel_id is None or int(m["channel_id"]) == channel_id)
            and (include_ephemeral or not m["flags"] & EPHEMERAL)
        ]
        return found

    def channel_texts(self, channel_id: int, *, include_ephemeral: bool = False) -> list[str]:
        """Current content of the bot's messages in a channel, in order (deleted ones are gone)."""
        return [m["content"] for m in self.bot_messages(channel_id, include_ephemeral=include_ephemeral)]

    def edits_of(self, message_id: int) -> list[str]:
        """The message's content after each edit, in order (not including the content it was created with)."""
        return list(self._edits.get(message_id, []))

    def calls_to(self, method: str | None = None, path: str | None = None) -> list[Call]:
        """Recorded calls matching a method and a regex that must match the whole path."""
        rx = re.compile(path) if path else None
        return [
            c
            for c in self.calls
            if (method is None or c.method == method.upper()) and (rx is None or rx.fullmatch(c.path))
        ]

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - a broken bot fails the test instead of hanging it
    ) -> None:
        """Wait until `predicate()` holds. Re-checked after every request and dispatch the fake handles, and
        every 10 ms, since the predicate may look at the client's side (e.g. what its handlers collected)."""
        changed = self._changed
        assert changed is not None, "start() the fake first"
        async with asyncio.timeout(timeout):
            while not predicate():
                async with changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), 0.01)

    async def wait_for_call(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - a bound, not a hang
    ) -> Call:
        """The `count`-th recorded call matching (see `calls_to`), waiting for it."""
        await self.wait_until(lambda: len(self.calls_to(method, path)) >= count, timeout)
        return self.calls_to(method, path)[count - 1]

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    def inject_429(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        retry_after: float = 0.05,
        count: int = 1,
        is_global: bool = False,
    ) -> None:
        """Answer the next `count` matching requests with a 429 (e.g. to prove the bot sleeps through it)."""
        rx = re.compile(path) if path else None
        self._injected.append(_Injected429(method and method.upper(), rx, retry_after, count, is_global))

    def inject_error(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        status: int = 500,
        message: str | None = None,
        code: int = 0,
        count: int = 1,
    ) -> None:
        """Answer the next `count` matching requests with an error, as Discord does when it has a bad minute:
        a JSON body `{"message", "code"}` (`500: Internal Server Error`, code 0, unless told otherwise).
        discord.py retries 500, 502, 504 and 524 itself (up to five tries, sleeping 1, 3, 5… s), not others."""
        rx = re.compile(path) if path else None
        text = message or f"{status}: {HTTPStatus(status).phrase}"
        self._injected_errors.append(_InjectedError(method and method.upper(), rx, status, text, code, count))

    def stop_injecting(self) -> None:
        """Answer normally again: injected errors and 429s not yet used are dropped."""
        self._injected_errors.clear()
        self._injected.clear()

    def refuse_gateway(self, count: int = 1, *, status: int = 502) -> None:
        """Answer the next `count` gateway connections with HTTP `status` instead of upgrading them."""
        self._refused_handshakes.extend([status] * count)

    async def delete_message(self, message_id: int) -> None:
        """Someone (a moderator, the author) deletes a message: it is gone, and MESSAGE_DELETE is dispatched."""
        await self._delete(self.messages[message_id])

    # ---------------------------------------------------------------------------------------------------
    # REST plumbing

    def _route_table(self) -> list[tuple[str, re.Pattern[str], _Handler, bool, str | None]]:
        """(method, path regex, handler, needs bot auth, rate-limit bucket)."""
        c = r"/channels/(?P<channel>\d+)"
        m = c + r"/messages/(?P<message>\d+)"
        w = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        a = r"/applications/(?P<app>\d+)"
        table: list[tuple[str, str, _Handler, bool, str | None]] = [
            ("GET", r"/users/@me", self._get_me, True, None),
            ("GET", r"/users/(?P<user>\d+)", self._get_user, True, None),
            ("POST", r"/users/@me/channels", self._create_dm, True, None),
            ("GET", r"/gateway", self._get_gateway, False, None),
            ("GET", r"/gateway/bot", self._get_gateway_bot, True, None),
            ("GET", r"/oauth2/applications/@me", self._get_application, True, None),
            ("GET", r"/applications/@me", self._get_application, True, None),
            ("GET", a + r"/commands", self._get_commands, True, None),
            ("PUT", a + r"/commands", self._put_commands, True, None),
            ("GET", a + r"/guilds/(?P<guild>\d+)/commands", self._get_commands, True, None),
            ("PUT", a + r"/guilds/(?P<guild>\d+)/commands", self._put_commands, True, None),
            ("GET", r"/guilds/(?P<guild>\d+)", self._get_guild, True, None),
            ("GET", r"/guilds/(?P<guild>\d+)/channels", self._get_guild_channels, True, None),
            ("GET", r"/guilds/(?P<guild>\d+)/roles", self._get_roles, True, None),
            ("GET", r"/guilds/(?P<guild>\d+)/members/(?P<user>\d+)", self._get_member, True, None),
            ("GET", c, self._get_channel, True, None),
            ("POST", c + r"/typing", self._typing, True, None),
            ("GET", c + r"/messages", self._list_messages, True, None),
            ("POST", c + r"/messages", self._create_message, True, "create"),
            ("GET", m, self._get_message, True, None),
            ("PATCH", m, self._edit_message, True, "edit"),
            ("DELETE", m, self._delete_message, True, None),
            ("PUT", m + r"/reactions/(?P<emoji>[^/]+)/@me", self._add_reaction, True, None),
            ("DELETE", m + r"/reactions/(?P<emoji>[^/]+)/@me", self._remove_reaction, True, None),
            ("POST", c + r"/threads", self._create_thread, True, None),
            ("POST", m + r"/threads", self._create_thread, True, None),
            ("PUT", c + r"/thread-members/@me", self._join_thread, True, None),
            ("POST", r"/interactions/(?P<interaction>\d+)/(?P<token>[^/]+)/callback", self._callback, False, None),
            ("POST", w, self._followup, False, "webhook-create"),
            ("GET", w + r"/messages/(?P<target>@original|\d+)", self._get_webhook_message, False, None),
            ("PATCH", w + r"/messages/(?P<target>@original|\d+)", self._edit_webhook_message, False, "webhook-edit"),
            ("DELETE", w + r"/messages/(?P<target>@original|\d+)", self._delete_webhook_message, False, None),
        ]
        return [(meth, re.compile(rx), fn, auth, bucket) for meth, rx, fn, auth, bucket in table]

    @staticmethod
    def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        """JSON exactly as Discord sends it: discord.py parses the body only for `application/json` sharp."""
        body = b"" if data is None else json.dumps(data, ensure_ascii=False).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        return web.Response(body=body, status=status, headers=hdrs)

    @classmethod
    def _error(cls, status: int, message: str, code: int, errors: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"message": message, "code": code}
        if errors is not None:
            body["errors"] = errors
        return cls._json(body, status)

    @staticmethod
    def _no_content() -> web.Response:
        return web.Response(status=204)

    def _limit_of(self, bucket: str) -> tuple[int, float] | None:
        return self.create_limit if bucket.endswith("create") else self.edit_limit

    def _ratelimit_headers(self, bucket: str, window: _Window, now: float, *, scope: str | None) -> dict[str, str]:
        reset_after = max(window.reset_at - now, 0.0)
        headers = {
            "X-RateLimit-Bucket": f"fake-{bucket}",
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(max(window.limit - window.count, 0)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if scope is not None:
            headers["X-RateLimit-Scope"] = scope
        return headers

    def _too_many(self, retry_after: float, *, is_global: bool, headers: Mapping[str, str]) -> web.Response:
        retry_after = round(max(retry_after, 0.001), 3)
        hdrs = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Scope": "global" if is_global else "user",
            **headers,
        }
        if is_global:
            hdrs["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        if is_global:
            body["code"] = 0
        return self._json(body, 429, hdrs)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes, str]]]:
        if not request.body_exists:
            return None, []
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            payload = json.loads(str(form["payload_json"])) if "payload_json" in form else {}
            files = []
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files.append((value.filename, value.file.read(), value.content_type or key))
            return payload, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    async def _http(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        now = loop.time()
        path = "/" + request.match_info["tail"].lstrip("/")
        body, files = await self._read_body(request)
        call = Call(request.method, path, body, now, query=dict(request.query), files=[(f[0], f[1]) for f in files])
        try:
            response = await self._route(request, call, body, files, now)
        except Exception as exc:  # a bug in the fake must not look like a Discord outage that discord.py retries
            self.errors.append(exc)
            response = self._error(503, f"fake_discord error: {exc!r}", 0)
        call.status = response.status
        if isinstance(response, web.Response) and response.body:
            call.response = json.loads(response.body)  # type: ignore[arg-type]
        self.calls.append(call)
        if response.status == 429:
            self.rate_limited.append(call)
        await self._notify()
        return response

    async def _route(
        self, request: web.Request, call: Call, body: Any, files: list[tuple[str, bytes, str]], now: float
    ) -> web.Response:
        found = next(
            ((r, m) for r in self._routes if r[0] == request.method and (m := r[1].fullmatch(call.path))), None
        )
        if found is None:
            return self._error(404, "404: Not Found", 0)
        (method, rx, handler, needs_auth, bucket), match = found

        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return self._error(401, "401: Unauthorized", 0)

        for inj in self._injected:
            if (
                inj.remaining > 0
                and inj.method in (None, method)
                and (inj.path is None or inj.path.fullmatch(call.path))
            ):
                inj.remaining -= 1
                return self._too_many(inj.retry_after, is_global=inj.is_global, headers={})
        for err in self._injected_errors:
            if (
                err.remaining > 0
                and err.method in (None, method)
                and (err.path is None or err.path.fullmatch(call.path))
            ):
                err.remaining -= 1
                return self._error(err.status, err.message, err.code)

        if needs_auth and self.global_limit is not None:
            if self._global_window is None:
                limit, per = self.global_limit
                self._global_window = _Window(limit, per * self.time_scale)
            if (wait := self._global_window.hit(now)) is not None:
                return self._too_many(wait, is_global=True, headers={})

        headers: dict[str, str] = {}
        if bucket is not None and (limit_per := self._limit_of(bucket)) is not None:
            major: int | str = match["channel"] if "channel" in rx.groupindex else match["token"]
            key = (bucket, major)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(limit_per[0], limit_per[1] * self.time_scale)
            if (wait := window.hit(now)) is not None:
                hdrs = self._ratelimit_headers(bucket, window, now, scope=None)
                return self._too_many(wait, is_global=False, headers=hdrs)
            if self.ratelimit_headers:
                headers = self._ratelimit_headers(bucket, window, now, scope=None)

        response = await handler(_Request(match, body, request.query, files))
        response.headers.update(headers)
        return response

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        data = self.uploads.get(int(request.match_info["attachment"]))
        if data is None:
            return web.Response(status=404)
        ctype = mimetypes.guess_type(request.match_info["filename"])[0] or "application/octet-stream"
        return web.Response(body=data, content_type=ctype)

    # ---------------------------------------------------------------------------------------------------
    # REST handlers: users, gateway, application, commands, guilds, channels

    async def _get_me(self, req: _Request) -> web.Response:
        return self._json(self.users[BOT_ID] | {"verified": True, "mfa_enabled": False, "locale": "en-US"})

    async def _get_user(self, req: _Request) -> web.Response:
        user = self.users.get(req.id("user"))
        return self._json(user) if user else self._error(404, "Unknown User", 10013)

    async def _create_dm(self, req: _Request) -> web.Response:
        uid = int(req.body["recipient_id"])
        if uid not in self.users:
            return self._error(400, "Invalid Recipient(s)", 50033)
        return self._json(self._public_channel(self.dm_channel(uid)))

    async def _get_gateway(self, req: _Request) -> web.Response:
        return self._json({"url": self.gateway_url.rstrip("/")})

    async def _get_gateway_bot(self, req: _Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return self._json({"url": self.gateway_url.rstrip("/"), "shards": 1, "session_start_limit": limit})

    async def _get_application(self, req: _Request) -> web.Response:
        return self._json(self._application())

    def _check_app(self, req: _Request) -> web.Response | None:
        if req.id("app") != APPLICATION_ID:
            return self._error(403, "Missing Access", 50001)
        return None

    async def _get_commands(self, req: _Request) -> web.Response:
        if (err := self._check_app(req)) is not None:
            return err
        gid = req.id("guild") if "guild" in req.match.re.groupindex else None
        return self._json(self.commands.get(gid, []))

    def _command_errors(self, payload: list[dict[str, Any]]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        names: set[tuple[str, int]] = set()
        for i, cmd in enumerate(payload):
            problems: dict[str, Any] = {}
            name, kind = cmd.get("name", ""), cmd.get("type", 1)
            if kind == 1 and (not re.fullmatch(r"[-_'\w]{1,32}", name) or name != name.lower()):
                problems["name"] = {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME", "message": "Invalid"}]}
            if kind == 1 and not 1 <= len(cmd.get("description", "")) <= 100:
                problems["description"] = {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "1-100"}]}
            if len(cmd.get("options", [])) > 25:
                problems["options"] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "25 or fewer"}]}
            if kind == 1:  # context-menu commands have no description
                problems |= self._localization_errors(cmd, "description", "description_localizations")
            for j, option in enumerate(cmd.get("options", [])):
                where = f"options.{j}"
                for key, value in self._localization_errors(option, "description", "description_localizations").items():
                    problems[f"{where}.{key}"] = value
                for k, choice in enumerate(option.get("choices") or []):
                    for key, value in self._localization_errors(choice, "name", "name_localizations").items():
                        problems[f"{where}.choices.{k}.{key}"] = value
            if (name, kind) in names:
                problems["name"] = {"_errors": [{"code": "APPLICATION_COMMANDS_DUPLICATE_NAME", "message": name}]}
            names.add((name, kind))
            if problems:
                errors[str(i)] = problems
        return errors

    @staticmethod
    def _localization_errors(entry: Mapping[str, Any], field: str, localized: str) -> dict[str, Any]:
        """A name or description and its translations: 1–100 characters each, keyed by a Discord locale."""
        errors: dict[str, Any] = {}
        texts = {field: entry.get(field, "")}
        for locale, text in (entry.get(localized) or {}).items():
            if locale not in DISCORD_LOCALES:
                errors[f"{localized}.{locale}"] = {"_errors": [{"code": "INVALID_LOCALE", "message": "Invalid"}]}
            texts[f"{localized}.{locale}"] = text
        for where, text in texts.items():
            if not 1 <= len(text or "") <= 100:
                errors[where] = {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "1-100"}]}
        return errors

    async def _put_commands(self, req: _Request) -> web.Response:
        """Bulk overwrite: keep ids of commands that already existed (same name and type), as Discord does."""
        if (err := self._check_app(req)) is not None:
            return err
        gid = req.id("guild") if "guild" in req.match.re.groupindex else None
        if gid is not None and gid not in self.guilds:
            return self._error(403, "Missing Access", 50001)
        payload = list(req.body or [])
        if errors := self._command_errors(payload):
            return self._error(400, "Invalid Form Body", 50035, errors)
        old = {(c["name"], c.get("type", 1)): c for c in self.commands.get(gid, [])}
        stored = []
        for cmd in payload:
            kind = cmd.get("type", 1)
            previous = old.get((cmd["name"], kind))
            entry = {
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                "contexts": None,
                "integration_types": [0],
                "name_localizations": None,
                "description_localizations": None,
            } | cmd
            entry |= {
                "id": previous["id"] if previous else str(self.snowflake()),
                "application_id": str(APPLICATION_ID),
                "version": str(self.snowflake()),
            }
            if gid is not None:
                entry["guild_id"] = str(gid)
            stored.append(entry)
        self.commands[gid] = stored
        return self._json(stored)

    async def _get_guild(self, req: _Request) -> web.Response:
        guild = self.guilds.get(req.id("guild"))
        if guild is None:
            return self._error(404, "Unknown Guild", 10004)
        data = self._guild_create(guild, 0)
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at", "member_count"):
            data.pop(key, None)
        return self._json(data)

    async def _get_guild_channels(self, req: _Request) -> web.Response:
        gid = str(req.id("guild"))
        found = [
            self._public_channel(cid)
            for cid, ch in self.channels.items()
            if ch.get("guild_id") == gid and ch["type"] not in THREAD_TYPES
        ]
        return self._json(found)

    async def _get_roles(self, req: _Request) -> web.Response:
        guild = self.guilds.get(req.id("guild"))
        return self._json(list(guild.roles.values())) if guild else self._error(404, "Unknown Guild", 10004)

    async def _get_member(self, req: _Request) -> web.Response:
        guild = self.guilds.get(req.id("guild"))
        if guild is None:
            return self._error(404, "Unknown Guild", 10004)
        if req.id("user") not in guild.members:
            return self._error(404, "Unknown Member", 10007)
        return self._json(self._member_payload(guild.id, req.id("user")))

    def _channel_or_error(
        self, channel_id: int, need: int = _VIEW
    ) -> tuple[dict[str, Any] | None, web.Response | None]:
        """The channel, or the error Discord answers when the bot may not see it or lacks `need`."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return None, self._error(404, "Unknown Channel", 10003)
        gid = self._guild_of(channel_id)
        if gid is not None:
            perms = self.permissions_for(gid, BOT_ID, channel_id)
            if not perms & _VIEW:
                return None, self._error(403, "Missing Access", 50001)
            if perms & need != need:
                return None, self._error(403, "Missing Permissions", 50013)
        return channel, None

    async def _get_channel(self, req: _Request) -> web.Response:
        _, err = self._channel_or_error(req.id("channel"))
        return err or self._json(self._public_channel(req.id("channel")))

    async def _typing(self, req: _Request) -> web.Response:
        _, err = self._channel_or_error(req.id("channel"))
        return err or self._no_content()

    # ---------------------------------------------------------------------------------------------------
    # REST handlers: messages

    def _validate(
        self, content: str, embeds: list[Any], has_other: bool, components: Sequence[Any] = ()
    ) -> web.Response | None:
        """Discord's checks on a message's final state: length limits, components, then emptiness."""
        errors: dict[str, Any] = self._component_errors(components)
        if len(content) > MAX_CONTENT:
            msg = f"Must be {MAX_CONTENT} or fewer in length."
            errors["content"] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": msg}]}
        if len(embeds) > 10:
            errors["embeds"] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 10 or fewer."}]}
        total = 0
        limits = {"title": 256, "description": 4096}
        for i, embed in enumerate(embeds[:10]):
            for key, limit in limits.items():
                text = embed.get(key) or ""
                total += len(text)
                if len(text) > limit:
                    msg = f"Must be {limit} or fewer in length."
                    errors.setdefault("embeds", {}).setdefault(str(i), {})[key] = {
                        "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": msg}]
                    }
            for f in embed.get("fields") or []:
                total += len(f.get("name") or "") + len(f.get("value") or "")
            total += len((embed.get("footer") or {}).get("text") or "") + len(
                (embed.get("author") or {}).get("name") or ""
            )
        if total > 6000 and "embeds" not in errors:
            msg = "Embed size exceeds maximum size of 6000"
            errors["embeds"] = {"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": msg}]}
        if errors:
            return self._error(400, "Invalid Form Body", 50035, errors)
        if not content and not embeds and not has_other:
            return self._error(400, "Cannot send an empty message", 50006)
        return None

    @staticmethod
    def _component_errors(components: Sequence[Any]) -> dict[str, Any]:
        """Classic components: at most five action rows of at most five buttons; a custom_id of 1–100 characters,
        unique in the message; a label of at most 80; a link button has a url and no custom_id."""

        def bad(code: str, message: str) -> dict[str, Any]:
            return {"_errors": [{"code": code, "message": message}]}

        errors: dict[str, Any] = {}
        if len(components) > MAX_ACTION_ROWS:
            errors["components"] = bad("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ACTION_ROWS} or fewer in length.")
            return errors
        seen: set[str] = set()
        for i, row in enumerate(components):
            children = row.get("components") or []
            if row.get("type") != ACTION_ROW or not 1 <= len(children) <= MAX_ROW_BUTTONS:
                errors[f"components.{i}"] = bad("BASE_TYPE_BAD_LENGTH", f"An action row holds 1-{MAX_ROW_BUTTONS}.")
                continue
            for j, child in enumerate(children):
                where = f"components.{i}.components.{j}"
                if child.get("type") != BUTTON:
                    continue
                if len(child.get("label") or "") > MAX_BUTTON_LABEL:
                    errors[f"{where}.label"] = bad("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_BUTTON_LABEL} or fewer.")
                if child.get("style") == LINK_STYLE:
                    if not child.get("url") or child.get("custom_id"):
                        errors[where] = bad("COMPONENT_INVALID", "A link button has a url and no custom_id.")
                    continue
                custom_id = child.get("custom_id") or ""
                if not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
                    errors[f"{where}.custom_id"] = bad("BASE_TYPE_BAD_LENGTH", f"Must be 1-{MAX_CUSTOM_ID} long.")
                elif custom_id in seen:
                    errors[f"{where}.custom_id"] = bad("COMPONENT_CUSTOM_ID_DUPLICATED", "Duplicate custom_id.")
                seen.add(custom_id)
        return errors

    def _new_bot_message(
        self,
        channel_id: int,
        body: Mapping[str, Any],
        files: list[tuple[str, bytes, str]],
        *,
        msg_type: int = 0,
        flags: int = 0,
        interaction: FakeInteraction | None = None,
    ) -> dict[str, Any] | web.Response:
        """A message the bot creates (REST, interaction response or followup), validated but not stored."""
        content = body.get("content") or ""
        embeds = list(body.get("embeds") or [])
        attachments = [self._attachment(channel_id, _uploaded(name, ctype), data) for name, data, ctype in files]
        stickers = [{"id": str(s), "name": "sticker", "format_type": 1} for s in body.get("sticker_ids") or []]
        has_other = bool(attachments or stickers or body.get("components") or body.get("poll"))
        if flags & LOADING:
            has_other = True
        if (err := self._validate(content, embeds, has_other, body.get("components") or [])) is not None:
            return err
        gid = self._guild_of(channel_id)
        mid = self.snowflake()
        users, roles, everyone = self._mentions(content, gid, BOT_ID)
        allowed = body.get("allowed_mentions")
        if allowed is not None:
            parse = allowed.get("parse", [])
            ok_users = {int(u) for u in allowed.get("users", [])}
            users = [u for u in users if "users" in parse or int(u["id"]) in ok_users]
            ok_roles = {int(r) for r in allowed.get("roles", [])}
            roles = [r for r in roles if "roles" in parse or int(r) in ok_roles]
            everyone = everyone and "everyone" in parse
        message: dict[str, Any] = {
            "id": str(mid),
            "type": msg_type,
            "channel_id": str(channel_id),
            "author": self.users[BOT_ID],
            "content": content,
            "timestamp": snowflake_time(mid),
            "edited_timestamp": None,
            "tts": bool(body.get("tts")),
            "mention_everyone": everyone,
            "mentions": users,
            "mention_roles": roles,
            "attachments": attachments,
            "embeds": embeds,
            "sticker_items": stickers,
            "reactions": [],
            "pinned": False,
            "flags": flags | (int(body.get("flags") or 0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS)),
            "components": list(body.get("components") or []),
        }
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        if gid is not None:
            message["guild_id"] = str(gid)
        if interaction is not None:
            message["webhook_id"] = str(APPLICATION_ID)
            message["application_id"] = str(APPLICATION_ID)
            user = interaction.payload.get("member", {}).get("user") or interaction.payload.get("user")
            message["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
            }
        ref = body.get("message_reference")
        if ref:
            target = self.messages.get(int(ref["message_id"]))
            if target is None or int(target["channel_id"]) != channel_id:
                if ref.get("fail_if_not_exists", True):
                    unknown = {"_errors": [{"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown"}]}
                    return self._error(400, "Invalid Form Body", 50035, {"message_reference": unknown})
            else:
                message["type"] = 19
                message["message_reference"] = self._reference(target)
                message["referenced_message"] = target
                replied = int(target["author"]["id"])
                ping = allowed is None or allowed.get("replied_user", False)  # Discord: "default false"
                if ping and replied != BOT_ID and all(int(u["id"]) != replied for u in users):
                    users.append(self.users[replied])
        return message

    async def _store_bot_message(self, message: dict[str, Any]) -> None:
        mid = int(message["id"])
        self.messages[mid] = message
        self._edits[mid] = []
        self.channels[int(message["channel_id"])]["last_message_id"] = message["id"]
        if self.echo_bot_messages and not message["flags"] & EPHEMERAL:
            await self._dispatch_quietly("MESSAGE_CREATE", self._with_member(message))

    def _with_member(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("guild_id"):
            return message | {"member": self._member_payload(int(message["guild_id"]), BOT_ID, with_user=False)}
        return message

    async def _create_message(self, req: _Request) -> web.Response:
        cid = req.id("channel")
        channel = self.channels.get(cid)
        recipient = channel.get("_recipient") if channel is not None else None
        if recipient is not None and (recipient in self.dms_closed or self.users[recipient]["bot"]):
            return self._error(403, "Cannot send messages to this user", 50007)
        need = _SEND_IN_THREADS if channel is not None and channel["type"] in THREAD_TYPES else _SEND
        _, err = self._channel_or_error(cid, _VIEW | need)
        if err is not None:
            return err
        message = self._new_bot_message(cid, req.body or {}, req.files)
        if isinstance(message, web.Response):
            return message
        await self._store_bot_message(message)
        return self._json(message)

    def _message_in(self, req: _Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        """A message through its channel. An ephemeral one exists only for its interaction's webhook: Discord
        answers Unknown Message here (discord/discord-api-docs#3090). A public interaction response or followup
        is the bot's own message: the channel's endpoints edit and delete it like any other, which is what a
        bot has once the interaction's token expired (15 minutes) or it restarted."""
        _, err = self._channel_or_error(req.id("channel"))
        if err is not None:
            return None, err
        message = self.messages.get(req.id("message"))
        if message is None or int(message["channel_id"]) != req.id("channel") or message["flags"] & EPHEMERAL:
            return None, self._error(404, "Unknown Message", 10008)
        return message, None

    async def _get_message(self, req: _Request) -> web.Response:
        message, err = self._message_in(req)
        return err or self._json(message)

    async def _list_messages(self, req: _Request) -> web.Response:
        cid = req.id("channel")
        _, err = self._channel_or_error(cid)
        if err is not None:
            return err
        found = [m for mid, m in sorted(self.messages.items(), reverse=True) if int(m["channel_id"]) == cid]
        if "before" in req.query:
            found = [m for m in found if int(m["id"]) < int(req.query["before"])]
        if "after" in req.query:
            found = [m for m in found if int(m["id"]) > int(req.query["after"])]
        return self._json(found[: int(req.query.get("limit", 50))])

    async def _apply_edit(
        self, message: dict[str, Any], body: Mapping[str, Any], files: list[tuple[str, bytes, str]]
    ) -> web.Response | None:
        """Apply a PATCH to a message in place (validating its final state), record it, echo MESSAGE_UPDATE."""
        updated = dict(message)
        if "content" in body:
            updated["content"] = body["content"] or ""
        if "embeds" in body:
            updated["embeds"] = list(body["embeds"] or [])
        if "components" in body:
            updated["components"] = list(body["components"] or [])
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or []}
            updated["attachments"] = [a for a in message["attachments"] if a["id"] in keep]
        cid = int(message["channel_id"])
        for name, data, ctype in files:
            updated["attachments"] = [
                *updated["attachments"],
                self._attachment(cid, _uploaded(name, ctype), data),
            ]
        if "flags" in body and body["flags"] is not None:
            keep_flags = updated["flags"] & ~SUPPRESS_EMBEDS
            updated["flags"] = keep_flags | (int(body["flags"]) & SUPPRESS_EMBEDS)
        updated["flags"] &= ~LOADING
        has_other = bool(updated["attachments"] or updated["sticker_items"] or updated["components"])
        if (err := self._validate(updated["content"], updated["embeds"], has_other, updated["components"])) is not None:
            return err
        updated["edited_timestamp"] = _now_iso()
        message.clear()
        message.update(updated)
        self._edits.setdefault(int(message["id"]), []).append(message["content"])
        if self.echo_bot_messages and not message["flags"] & EPHEMERAL:
            await self._dispatch_quietly("MESSAGE_UPDATE", self._with_member(message))
        return None

    async def _edit_message(self, req: _Request) -> web.Response:
        message, err = self._message_in(req)
        if err is not None or message is None:
            return err or self._error(404, "Unknown Message", 10008)
        if int(message["author"]["id"]) != BOT_ID:
            return self._error(403, "Cannot edit a message authored by another user", 50005)
        if (err := await self._apply_edit(message, req.body or {}, req.files)) is not None:
            return err
        return self._json(message)

    async def _delete(self, message: dict[str, Any]) -> None:
        mid = int(message["id"])
        self.deleted_messages[mid] = self.messages.pop(mid)
        if not message["flags"] & EPHEMERAL:
            event = {"id": message["id"], "channel_id": message["channel_id"]}
            if message.get("guild_id"):
                event["guild_id"] = message["guild_id"]
            await self._dispatch_quietly("MESSAGE_DELETE", event)

    async def _delete_message(self, req: _Request) -> web.Response:
        message, err = self._message_in(req)
        if err is not None or message is None:
            return err or self._error(404, "Unknown Message", 10008)
        gid = self._guild_of(req.id("channel"))
        may_manage = gid is not None and self.permissions_for(gid, BOT_ID, req.id("channel")) & _MANAGE_MESSAGES
        if int(message["author"]["id"]) != BOT_ID and not may_manage:
            return self._error(403, "Missing Permissions", 50013)
        await self._delete(message)
        return self._no_content()

    async def _add_reaction(self, req: _Request) -> web.Response:
        message, err = self._message_in(req)
        if err is not None or message is None:
            return err or self._error(404, "Unknown Message", 10008)
        emoji = req.match["emoji"]
        for reaction in message["reactions"]:
            if reaction["emoji"]["name"] == emoji:
                if not reaction["me"]:
                    reaction["count"] += 1
                    reaction["me"] = True
                break
        else:
            message["reactions"].append({"emoji": {"id": None, "name": emoji}, "count": 1, "me": True})
        return self._no_content()

    async def _remove_reaction(self, req: _Request) -> web.Response:
        message, err = self._message_in(req)
        if err is not None or message is None:
            return err or self._error(404, "Unknown Message", 10008)
        emoji = req.match["emoji"]
        message["reactions"] = [
            r for r in message["reactions"] if not (r["emoji"]["name"] == emoji and r["count"] == 1 and r["me"])
        ]
        return self._no_content()

    async def _create_thread(self, req: _Request) -> web.Response:
        cid = req.id("channel")
        body = req.body or {}
        private = body.get("type", PUBLIC_THREAD) == PRIVATE_THREAD and "message" not in req.match.re.groupindex
        _, err = self._channel_or_error(cid, _CREATE_PRIVATE_THREADS if private else _CREATE_PUBLIC_THREADS)
        if err is not None:
            return err
        thread_id = None
        if "message" in req.match.re.groupindex:
            message, err = self._message_in(req)
            if err is not None or message is None:
                return err or self._error(404, "Unknown Message", 10008)
            thread_id = int(message["id"])  # Discord gives a thread started from a message the message's id
            if thread_id in self.channels:
                return self._error(400, "A thread has already been created for this message", 160004)
        tid = self.add_thread(cid, body.get("name", "thread"), owner_id=BOT_ID, private=private, thread_id=thread_id)
        thread = self.channels[tid]
        thread["thread_metadata"]["auto_archive_duration"] = body.get("auto_archive_duration", 1440)
        await self._dispatch_quietly("THREAD_CREATE", thread | {"newly_created": True})
        return self._json(thread, 201)

    async def _join_thread(self, req: _Request) -> web.Response:
        thread = self.channels.get(req.id("channel"))
        if thread is None or thread["type"] not in THREAD_TYPES:
            return self._error(404, "Unknown Channel", 10003)
        thread["member"] = {"id": thread["id"], "user_id": str(BOT_ID), "join_timestamp": _now_iso(), "flags": 1}
        return self._no_content()

    # ---------------------------------------------------------------------------------------------------
    # REST handlers: interaction callbacks and the interaction webhook

    async def _callback(self, req: _Request) -> web.Response:
        interaction = self.interactions.get(req.id("interaction"))
        if interaction is None or interaction.token != req.match["token"]:
            return self._error(404, "Unknown interaction", 10062)
        if self.interaction_deadline is not None:
            age = asyncio.get_running_loop().time() - interaction.created
            if age > self.interaction_deadline * self.time_scale:
                return self._error(404, "Unknown interaction", 10062)
        if interaction.callbacks:
            return self._error(400, "Interaction has already been acknowledged.", 40060)
        body = req.body or {}
        ctype = int(body.get("type", 0))
        data = body.get("data") or {}
        cid = int(interaction.payload["channel_id"])
        resource: dict[str, Any] = {"type": ctype}
        if ctype in (4, 5):
            flags = int(data.get("flags") or 0) & EPHEMERAL
            if ctype == 5:
                flags |= LOADING
                data = {}
            msg_type = 20 if interaction.type == 2 else 0
            message = self._new_bot_message(
                cid, data, req.files, msg_type=msg_type, flags=flags, interaction=interaction
            )
            if isinstance(message, web.Response):
                return message
            await self._store_bot_message(message)
            interaction.original = resource["message"] = message
        elif ctype == 7:
            target = self.messages.get(int(interaction.payload.get("message", {}).get("id", 0)))
            if target is None:
                return self._error(400, "Interaction has no message to update", 50035)
            if (err := await self._apply_edit(target, data, req.files)) is not None:
                return err
            interaction.original = resource["message"] = target
        elif ctype == 6 and interaction.type == 3:  # a deferred update: @original is the pressed message
            interaction.original = self.messages.get(int(interaction.payload.get("message", {}).get("id", 0)))
        elif ctype not in (1, 6, 8, 9):
            return self._error(400, "Invalid Form Body", 50035, {"type": {"_errors": [{"code": "BASE_TYPE_CHOICES"}]}})
        interaction.callbacks.append(body)
        interaction._responded.set()
        if ctype in (1, 8):
            return self._no_content()
        original = interaction.original
        summary: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "response_message_loading": ctype == 5,
            "response_message_ephemeral": bool(original and original["flags"] & EPHEMERAL),
        }
        if original is not None:
            summary["response_message_id"] = original["id"]
        return self._json({"interaction": summary, "resource": resource})

    def _webhook_interaction(self, req: _Request) -> FakeInteraction | None:
        if req.id("app") != APPLICATION_ID:
            return None
        return next((i for i in self.interactions.values() if i.token == req.match["token"]), None)

    def _webhook_target(self, req: _Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        interaction = self._webhook_interaction(req)
        if interaction is None:
            return None, self._error(404, "Unknown Webhook", 10015)
        target = req.match["target"]
        if target == "@original":
            message = interaction.original
        else:
            message = next((f for f in interaction.followups if f["id"] == target), None)
            if message is None and interaction.original and interaction.original["id"] == target:
                message = interaction.original
        if message is None or int(message["id"]) not in self.messages:
            return None, self._error(404, "Unknown Message", 10008)
        return message, None

    async def _followup(self, req: _Request) -> web.Response:
        interaction = self._webhook_interaction(req)
        if interaction is None:
            return self._error(404, "Unknown Webhook", 10015)
        if not interaction.callbacks:
            return self._error(404, "Unknown Webhook", 10015)
        body = req.body or {}
        original = interaction.original
        if original is not None and original["flags"] & LOADING and int(original["id"]) in self.messages:
            # The first followup after a deferral replaces the "thinking…" message, as on Discord.
            if (err := await self._apply_edit(original, body, req.files)) is not None:
                return err
            message = original
        else:
            cid = int(interaction.payload["channel_id"])
            flags = int(body.get("flags") or 0) & EPHEMERAL
            created = self._new_bot_message(cid, body, req.files, flags=flags, interaction=interaction)
            if isinstance(created, web.Response):
                return created
            await self._store_bot_message(created)
            interaction.followups.append(created)
            message = created
        if req.query.get("wait", "false").lower() not in ("true", "1"):
            return self._no_content()
        return self._json(message)

    async def _get_webhook_message(self, req: _Request) -> web.Response:
        message, err = self._webhook_target(req)
        return err or self._json(message)

    async def _edit_webhook_message(self, req: _Request) -> web.Response:
        message, err = self._webhook_target(req)
        if err is not None or message is None:
            return err or self._error(404, "Unknown Message", 10008)
        if (err := await self._apply_edit(message, req.body or {}, req.files)) is not None:
            return err
        return self._json(message)

    async def _delete_webhook_message(self, req: _Request) -> web.Response:
        message, err = self._webhook_target(req)
        if err is not None or message is None:
            return err or self._error(404, "Unknown Message", 10008)
        await self._delete(message)
        return self._no_content()
