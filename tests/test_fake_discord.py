"""The fake Discord, driven by a real discord.py client: it must answer the way Discord does, or the adapter
tests built on it prove nothing."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.fake_discord import (
    APPLICATION_ID,
    BOT_ID,
    BOT_ROLE_ID,
    BOT_TOKEN,
    EPHEMERAL,
    GENERAL_CHANNEL_ID,
    GUILD_ID,
    HIDDEN_CHANNEL_ID,
    LOADING,
    MODERATOR_ID,
    MODERATOR_ROLE_ID,
    OWNER_ID,
    PRACTICE_CHANNEL_ID,
    READONLY_CHANNEL_ID,
    STUDENT2_ID,
    STUDENT_ID,
    TEACHER_ID,
    TEACHER_ROLE_ID,
    THREAD_ID,
    FakeDiscord,
)

MESSAGES = r"/channels/\d+/messages"
MESSAGE = r"/channels/\d+/messages/\d+"
GENERAL_MESSAGES = f"/channels/{GENERAL_CHANNEL_ID}/messages"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server
    assert server.errors == []  # nothing blew up inside the fake's handlers


def content_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


class EchoBot(discord.Client):
    """Replies to every message that is not its own, then edits the reply: the adapter's basic move."""

    def __init__(self, **options: Any) -> None:
        super().__init__(intents=options.pop("intents", content_intents()), **options)
        self.seen: list[discord.Message] = []

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)
        if message.author.id == self.user.id or message.author.bot:  # type: ignore[union-attr]
            return
        reply = await message.reply(f"echo: {message.content}")
        await reply.edit(content=f"edited: {message.content}")


# --- connecting ---------------------------------------------------------------------------------------------


async def test_client_becomes_ready_and_sees_the_seeded_guild(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default())
    async with fake.connected(client):
        assert client.user is not None and client.user.id == BOT_ID and client.user.bot
        assert client.application_id == APPLICATION_ID
        guild = client.get_guild(GUILD_ID)
        assert guild is not None and guild.owner_id == OWNER_ID
        assert {c.id for c in guild.text_channels} >= {GENERAL_CHANNEL_ID, PRACTICE_CHANNEL_ID, READONLY_CHANNEL_ID}
        thread = guild.get_thread(THREAD_ID)
        assert thread is not None and thread.parent_id == PRACTICE_CHANNEL_ID
        teacher = guild.get_role(TEACHER_ROLE_ID)
        assert teacher is not None and teacher.name == "Teacher"
        assert guild.get_role(MODERATOR_ROLE_ID).permissions.manage_channels  # type: ignore[union-attr]
        assert [r.id for r in guild.me.roles] == [GUILD_ID, BOT_ROLE_ID]
        assert not guild.me.guild_permissions.manage_channels
        assert not guild.get_channel(READONLY_CHANNEL_ID).permissions_for(guild.me).send_messages  # type: ignore[union-attr]
        assert client.latency < 1  # a heartbeat went out and was acknowledged
    assert [(c.method, c.path) for c in fake.calls[:2]] == [("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")]
    assert fake.gateway_queries[0]["compress"] == "zlib-stream"  # discord.py decompressed our zlib stream
    assert fake.heartbeats >= 1


async def test_an_autosharded_client_uses_gateway_bot(fake: FakeDiscord) -> None:
    client = discord.AutoShardedClient(intents=discord.Intents.default())
    async with fake.connected(client):
        assert client.shard_count == 1
        guild = client.get_guild(GUILD_ID)
        assert guild is not None and guild.shard_id == 0
    assert fake.calls_to("GET", "/gateway/bot")[0].status == 200
    assert fake.identifies[0]["shard"] == [0, 1]


async def test_a_wrong_token_is_refused_like_discord_does(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()
    assert fake.calls[-1].status == 401
    assert fake.calls[-1].response == {"message": "401: Unauthorized", "code": 0}


async def test_privileged_intents_not_enabled_close_the_gateway_with_4014() -> None:
    async with FakeDiscord(privileged_intents=0) as fake:
        client = discord.Client(intents=content_intents())
        with pytest.raises(discord.PrivilegedIntentsRequired):
            async with fake.connected(client):
                pass


async def test_the_members_intent_gets_the_member_list_by_chunking(fake: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.members = True
    client = discord.Client(intents=intents)
    async with fake.connected(client):
        guild = client.get_guild(GUILD_ID)
        assert guild is not None and guild.chunked
        teacher = guild.get_member(TEACHER_ID)
        assert teacher is not None and teacher.display_name == "Frau Berger"
        assert [r.id for r in teacher.roles] == [GUILD_ID, TEACHER_ROLE_ID]


@pytest.mark.parametrize("how", ["op 7 RECONNECT", "close 4000"])
async def test_a_dropped_gateway_resumes_the_session(fake: FakeDiscord, how: str) -> None:
    client = EchoBot()
    resumed = asyncio.Event()

    @client.event
    async def on_resumed() -> None:
        resumed.set()

    async with fake.connected(client):
        if how == "op 7 RECONNECT":
            await fake.request_reconnect()
        else:
            await fake.close_gateway(4000)
        await asyncio.wait_for(resumed.wait(), 5)
        await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "still there?")
        await fake.wait_for_call("PATCH", MESSAGE)
    assert len(fake.identifies) == 1  # resumed, not identified again
    assert len(fake.gateway_queries) == 2


# --- messages -----------------------------------------------------------------------------------------------


async def test_a_pushed_message_is_replied_to_and_the_reply_edited(fake: FakeDiscord) -> None:
    client = EchoBot()
    async with fake.connected(client):
        sent = await fake.send_message(PRACTICE_CHANNEL_ID, TEACHER_ID, "Guten Tag", mentions_bot=True)
        edit = await fake.wait_for_call("PATCH", MESSAGE)
        await fake.wait_until(lambda: len(client.seen) >= 2)  # Discord echoes the bot's own message too

    incoming = client.seen[0]
    assert incoming.content == f"<@{BOT_ID}> Guten Tag"
    assert client.user in incoming.mentions
    assert isinstance(incoming.author, discord.Member) and incoming.author.nick == "Frau Berger"
    assert TEACHER_ROLE_ID in [r.id for r in incoming.author.roles]
    assert incoming.guild is not None and incoming.guild.id == GUILD_ID

    post = fake.calls_to("POST", MESSAGES)[0]
    assert int(post.json["message_reference"]["message_id"]) == int(sent["id"])
    reply_id = int(post.response["id"])
    assert edit.path == f"/channels/{PRACTICE_CHANNEL_ID}/messages/{reply_id}"
    assert fake.channel_texts(PRACTICE_CHANNEL_ID) == [f"edited: <@{BOT_ID}> Guten Tag"]
    assert fake.edits_of(reply_id) == [f"edited: <@{BOT_ID}> Guten Tag"]
    assert fake.messages[reply_id]["type"] == 19  # a reply
    assert client.seen[1].author.id == BOT_ID


async def test_without_the_message_content_intent_only_mentions_and_dms_have_content(fake: FakeDiscord) -> None:
    client = EchoBot(intents=discord.Intents.default())
    async with fake.connected(client):
        await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "no mention")
        await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "with mention", mentions_bot=True)
        await fake.send_dm(STUDENT2_ID, "in a DM")
        await fake.wait_for_call("PATCH", MESSAGE, count=3)
    by_user = [m for m in client.seen if m.author.id != BOT_ID]
    assert [m.content for m in by_user] == ["", f"<@{BOT_ID}> with mention", "in a DM"]
    dm = by_user[2]
    assert isinstance(dm.channel, discord.DMChannel) and dm.guild is None
    assert fake.channel_texts(fake.dm_channel(STUDENT2_ID)) == ["edited: in a DM"]


async def test_create_dm_returns_the_same_channel_the_user_writes_in(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default())
    async with fake.connected(client):
        user = await client.fetch_user(STUDENT_ID)
        channel = await user.create_dm()
        await channel.send("Hallo!")
    assert channel.id == fake.dm_channel(STUDENT_ID)
    assert fake.channel_texts(channel.id) == ["Hallo!"]


async def test_replies_attachments_and_stickers_arrive_as_discord_sends_them(fake: FakeDiscord) -> None:
    client = discord.Client(intents=content_intents())
    seen: list[discord.Message] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        seen.append(message)

    async with fake.connected(client):
        channel = client.get_channel(GENERAL_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        mine = await channel.send("Wie heißt du?")
        await fake.send_message(
            GENERAL_CHANNEL_ID,
            STUDENT_ID,
            "Ich heiße Sam",
            reply_to=mine.id,
            attachments=[{"filename": "homework.txt", "data": b"Hausaufgabe"}],
            stickers=["wave"],
        )
        await fake.wait_until(lambda: len(seen) >= 2)
        message = seen[1]
        assert message.reference is not None and message.reference.message_id == mine.id
        assert message.type is discord.MessageType.reply
        assert client.user in message.mentions  # a reply pings the replied-to author
        assert await message.attachments[0].read() == b"Hausaufgabe"
        assert message.stickers[0].name == "wave"


async def test_discord_rejects_too_long_and_empty_messages_and_missing_permissions(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default())
    async with fake.connected(client):
        channel = client.get_channel(GENERAL_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert (too_long.value.status, too_long.value.code) == (400, 50035)
        with pytest.raises(discord.HTTPException) as empty:
            await channel.send()
        assert (empty.value.status, empty.value.code) == (400, 50006)

        ok = await channel.send("x" * 2000)
        with pytest.raises(discord.HTTPException) as long_edit:
            await ok.edit(content="y" * 2001)
        assert long_edit.value.code == 50035
        assert fake.edits_of(ok.id) == []

        readonly = client.get_channel(READONLY_CHANNEL_ID)
        with pytest.raises(discord.Forbidden) as forbidden:
            await readonly.send("hi")  # type: ignore[union-attr]
        assert forbidden.value.code == 50013
        with pytest.raises(discord.Forbidden) as hidden:
            await client.http.send_message(HIDDEN_CHANNEL_ID, params=discord.http.handle_message_parameters("x"))
        assert hidden.value.code == 50001
    assert fake.channel_texts(GENERAL_CHANNEL_ID) == ["x" * 2000]


# --- rate limits --------------------------------------------------------------------------------------------


async def test_a_429_is_slept_through_and_counted() -> None:
    async with FakeDiscord(create_limit=(2, 0.3), ratelimit_headers=False) as fake:
        client = discord.Client(intents=discord.Intents.default())
        async with fake.connected(client):
            channel = client.get_channel(GENERAL_CHANNEL_ID)
            for i in range(4):
                await channel.send(f"message {i}")  # type: ignore[union-attr]
    assert fake.channel_texts(GENERAL_CHANNEL_ID) == [f"message {i}" for i in range(4)]
    assert len(fake.rate_limited) >= 1
    limited = fake.rate_limited[0]
    assert limited.response["global"] is False and limited.response["retry_after"] > 0
    retry = next(c for c in fake.calls if c.time > limited.time and c.path == limited.path)
    assert retry.time - limited.time >= limited.response["retry_after"] - 0.01


async def test_with_ratelimit_headers_discordpy_waits_instead_of_hitting_429() -> None:
    async with FakeDiscord(edit_limit=(2, 5.0), time_scale=0.06) as fake:  # 2 edits per 0.3 s
        client = discord.Client(intents=discord.Intents.default())
        async with fake.connected(client):
            channel = client.get_channel(GENERAL_CHANNEL_ID)
            message = await channel.send("0")  # type: ignore[union-attr]
            for i in range(1, 5):
                message = await message.edit(content=str(i))
    edits = fake.calls_to("PATCH", MESSAGE)
    assert [c.status for c in edits] == [200] * 4
    assert fake.rate_limited == []
    assert edits[2].time - edits[0].time >= 0.25  # discord.py read Remaining: 0 and waited for the reset
    assert fake.edits_of(message.id) == ["1", "2", "3", "4"]
    assert edits[0].status == 200 and fake.calls_to("POST", MESSAGES)[0].status == 200


async def test_a_global_429_is_slept_through() -> None:
    async with FakeDiscord(global_limit=(3, 0.4)) as fake:
        client = discord.Client(intents=discord.Intents.default())
        async with fake.connected(client):
            channels = (GENERAL_CHANNEL_ID, PRACTICE_CHANNEL_ID, THREAD_ID, fake.dm_channel(STUDENT_ID))
            await asyncio.gather(*(client.http.send_typing(c) for c in channels))
    assert any(c.response["global"] for c in fake.rate_limited)
    assert len(fake.calls_to("POST", r"/channels/\d+/typing")) - len(fake.rate_limited) == 4


async def test_an_injected_429_is_retried(fake: FakeDiscord) -> None:
    fake.inject_429("POST", MESSAGES, retry_after=0.1)
    client = discord.Client(intents=discord.Intents.default())
    async with fake.connected(client):
        await client.get_channel(GENERAL_CHANNEL_ID).send("after the 429")  # type: ignore[union-attr]
    assert [c.status for c in fake.calls_to("POST", MESSAGES)] == [429, 200]
    assert fake.channel_texts(GENERAL_CHANNEL_ID) == ["after the 429"]


# --- outages -------------------------------------------------------------------------------------------------


async def test_an_injected_503_fails_at_once_with_discords_error_body(fake: FakeDiscord) -> None:
    fake.inject_error("POST", MESSAGES, status=503)
    client = discord.Client(intents=discord.Intents.default())
    async with fake.connected(client):
        channel = client.get_channel(GENERAL_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.DiscordServerError) as failed:
            await channel.send("during the outage")
        await channel.send("after it")
    assert (failed.value.status, failed.value.code, failed.value.text) == (503, 0, "503: Service Unavailable")
    assert [c.status for c in fake.calls_to("POST", MESSAGES)] == [503, 200]


async def test_an_injected_500_is_retried_by_discordpy_itself(fake: FakeDiscord) -> None:
    fake.inject_error("POST", MESSAGES, status=500)
    client = discord.Client(intents=discord.Intents.default())
    async with fake.connected(client):
        await client.get_channel(GENERAL_CHANNEL_ID).send("after the 500")  # type: ignore[union-attr]
    assert [c.status for c in fake.calls_to("POST", MESSAGES)] == [500, 200]


async def test_a_refused_gateway_handshake_fails_the_first_connection(fake: FakeDiscord) -> None:
    fake.refuse_gateway(1, status=502)
    client = discord.Client(intents=discord.Intents.default())
    await client.login(BOT_TOKEN)
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.connect(reconnect=False)
    finally:
        await client.close()
    assert refused.value.status == 502 and len(fake.gateway_queries) == 1 and fake.identifies == []


# --- threads ------------------------------------------------------------------------------------------------


async def test_threads_are_created_by_users_and_by_the_bot(fake: FakeDiscord) -> None:
    client = EchoBot()
    created: list[discord.Thread] = []

    @client.event
    async def on_thread_create(thread: discord.Thread) -> None:
        created.append(thread)

    async with fake.connected(client):
        tid = await fake.create_thread(GENERAL_CHANNEL_ID, "Fragen", owner_id=STUDENT_ID)
        await fake.wait_until(lambda: len(created) == 1)
        assert created[0].id == tid and created[0].parent_id == GENERAL_CHANNEL_ID

        await fake.send_message(THREAD_ID, STUDENT_ID, "im Thread")
        await fake.wait_for_call("PATCH", MESSAGE)
        assert fake.channel_texts(THREAD_ID) == ["edited: im Thread"]

        channel = client.get_channel(PRACTICE_CHANNEL_ID)
        start = await channel.send("Lektion 1")  # type: ignore[union-attr]
        thread = await start.create_thread(name="Lektion 1")
        await fake.wait_until(lambda: len(created) == 2)
        assert thread.id == start.id and client.get_channel(thread.id) is not None
        await thread.send("Los geht's")
    assert fake.channel_texts(thread.id) == ["Los geht's"]


# --- application commands -----------------------------------------------------------------------------------


class TutorBot(discord.Client):
    """A slash-command bot: /learn (with autocomplete), /slow (deferred), /quiz (button), /admin (perms)."""

    LANGUAGES = ("spanish", "swedish", "german", "french")

    def __init__(self, *, guild_sync: bool = True) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.guild_sync = guild_sync
        self.invocations: list[discord.Interaction] = []

        @self.tree.command(description="Start a lesson")
        @app_commands.describe(language="The language to learn")
        async def learn(interaction: discord.Interaction, language: str, level: str = "A1") -> None:
            self.invocations.append(interaction)
            await interaction.response.send_message(f"Learning {language} at {level}")

        @learn.autocomplete("language")
        async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=n.title(), value=n) for n in self.LANGUAGES if n.startswith(current)]

        @self.tree.command(description="A slow answer")
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content="done thinking")
            await interaction.followup.send("only you see this", ephemeral=True)

        @self.tree.command(description="A quiz with a button")
        async def quiz(interaction: discord.Interaction) -> None:
            view = discord.ui.View()
            button: discord.ui.Button[discord.ui.View] = discord.ui.Button(label="Answer", custom_id="quiz:answer")

            async def answered(click: discord.Interaction) -> None:
                await click.response.edit_message(content=f"answered by {click.user.id}", view=None)

            button.callback = answered  # type: ignore[method-assign]
            view.add_item(button)
            await interaction.response.send_message("¿Qué es 'gato'?", view=view)

        lesson = app_commands.Group(name="lesson", description="Manage lessons")

        @lesson.command(description="Give a student a lesson")
        async def assign(
            interaction: discord.Interaction, student: discord.Member, channel: discord.TextChannel, level: int
        ) -> None:
            self.invocations.append(interaction)
            await interaction.response.send_message(f"{student.display_name} in #{channel.name} at {level}")

        self.tree.add_command(lesson)

        @self.tree.command(description="Only for channel managers")
        @app_commands.default_permissions(manage_channels=True)
        async def admin(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("ok", ephemeral=True)

    async def setup_hook(self) -> None:
        if self.guild_sync:
            guild = discord.Object(GUILD_ID)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()


async def test_a_synced_slash_command_is_invoked_and_answered(fake: FakeDiscord) -> None:
    client = TutorBot()
    async with fake.connected(client):
        assert {c["name"] for c in fake.commands[GUILD_ID]} == {"learn", "slow", "quiz", "admin", "lesson"}
        interaction = await fake.invoke_command(
            "learn", {"language": "spanish", "level": "B1"}, PRACTICE_CHANNEL_ID, TEACHER_ID
        )
        body = await interaction.wait_response()
    assert body["type"] == 4 and body["data"]["content"] == "Learning spanish at B1"
    seen = client.invocations[0]
    assert seen.command is not None and seen.command.name == "learn"
    assert seen.data is not None and int(seen.data["id"]) == fake.command_id("learn", GUILD_ID)
    assert isinstance(seen.user, discord.Member) and seen.user.id == TEACHER_ID
    assert seen.permissions.manage_messages and not seen.permissions.manage_channels
    assert seen.app_permissions.send_messages
    assert seen.channel is not None and seen.channel.id == PRACTICE_CHANNEL_ID
    assert interaction.original is not None
    assert fake.channel_texts(PRACTICE_CHANNEL_ID) == ["Learning spanish at B1"]
    assert fake.calls_to("POST", r"/interactions/\d+/[^/]+/callback")[0].query == {"with_response": "1"}


async def test_autocomplete_returns_the_bots_choices(fake: FakeDiscord) -> None:
    async with fake.connected(TutorBot()):
        choices = await fake.autocomplete("learn", {"language": "sw"}, "language", GENERAL_CHANNEL_ID, STUDENT_ID)
    assert choices == [{"name": "Swedish", "value": "swedish"}]


async def test_a_deferred_response_is_edited_and_followed_up(fake: FakeDiscord) -> None:
    async with fake.connected(TutorBot()):
        interaction = await fake.invoke_command("slow", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        assert (await interaction.wait_response())["type"] == 5
        await fake.wait_until(lambda: bool(interaction.followups))
    original = interaction.original
    assert original is not None and original["content"] == "done thinking"
    assert not original["flags"] & LOADING
    assert fake.edits_of(int(original["id"])) == ["done thinking"]
    assert interaction.followups[0]["flags"] & EPHEMERAL
    assert fake.channel_texts(GENERAL_CHANNEL_ID) == ["done thinking"]
    assert fake.channel_texts(GENERAL_CHANNEL_ID, include_ephemeral=True) == ["done thinking", "only you see this"]


async def test_a_button_click_updates_the_message(fake: FakeDiscord) -> None:
    async with fake.connected(TutorBot()):
        quiz = await fake.invoke_command("quiz", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        await quiz.wait_response()
        assert quiz.original is not None and quiz.original["components"]
        click = await fake.click_button(int(quiz.original["id"]), "quiz:answer", STUDENT2_ID)
        assert (await click.wait_response())["type"] == 7
    assert fake.channel_texts(GENERAL_CHANNEL_ID) == [f"answered by {STUDENT2_ID}"]
    assert quiz.original["components"] == []


async def test_global_commands_work_in_dms_and_default_permissions_hide_commands(fake: FakeDiscord) -> None:
    client = TutorBot(guild_sync=False)
    async with fake.connected(client):
        assert fake.commands[None] and GUILD_ID not in fake.commands
        dm = fake.dm_channel(STUDENT_ID)
        in_dm = await fake.invoke_command("learn", {"language": "german"}, dm, STUDENT_ID)
        assert (await in_dm.wait_response())["data"]["content"] == "Learning german at A1"
        with pytest.raises(PermissionError):
            await fake.invoke_command("admin", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        as_mod = await fake.invoke_command("admin", {}, GENERAL_CHANNEL_ID, MODERATOR_ID)
        assert (await as_mod.wait_response())["data"]["flags"] == EPHEMERAL
    seen = client.invocations[0]
    assert seen.guild is None and isinstance(seen.user, discord.User) and seen.user.id == STUDENT_ID
    assert isinstance(seen.channel, discord.DMChannel)
    assert fake.channel_texts(dm) == ["Learning german at A1"]


async def test_answering_an_interaction_twice_fails_like_discord(fake: FakeDiscord) -> None:
    client = TutorBot()
    errors: list[BaseException] = []

    @client.tree.command(description="answers twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("one")
        try:
            await client.http.request(  # bypasses discord.py's own "already responded" guard
                discord.http.Route("POST", "/interactions/{i}/{t}/callback", i=interaction.id, t=interaction.token),
                json={"type": 4, "data": {"content": "two"}},
            )
        except discord.HTTPException as exc:
            errors.append(exc)

    async with fake.connected(client):
        await fake.invoke_command("twice", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        await fake.wait_until(lambda: bool(errors))
    assert isinstance(errors[0], discord.HTTPException) and errors[0].code == 40060


async def test_a_late_interaction_response_fails_with_unknown_interaction() -> None:
    async with FakeDiscord(interaction_deadline=3.0, time_scale=0.02) as fake:  # Discord's 3 s, as 60 ms
        client = TutorBot()
        errors: list[discord.HTTPException] = []

        @client.tree.command(description="too slow to answer")
        async def late(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.1)
            try:
                await interaction.response.send_message("sorry")
            except discord.NotFound as exc:
                errors.append(exc)

        async with fake.connected(client):
            await fake.invoke_command("late", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
            await fake.wait_until(lambda: bool(errors))
    assert errors[0].code == 10062
    assert fake.channel_texts(GENERAL_CHANNEL_ID) == []


async def test_files_reactions_fetching_and_deleting(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default())
    async with fake.connected(client):
        channel = client.get_channel(GENERAL_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("Vokabeln", file=discord.File(io.BytesIO(b"Hund = dog"), filename="vocab.txt"))
        assert sent.attachments[0].filename == "vocab.txt"
        assert await sent.attachments[0].read() == b"Hund = dog"
        await sent.add_reaction("✅")
        fetched = await channel.fetch_message(sent.id)
        assert fetched.content == "Vokabeln" and str(fetched.reactions[0].emoji) == "✅"
        await sent.delete()
        with pytest.raises(discord.NotFound):
            await channel.fetch_message(sent.id)
    assert fake.calls_to("POST", MESSAGES)[0].files == [("vocab.txt", b"Hund = dog")]
    assert fake.channel_texts(GENERAL_CHANNEL_ID) == []
    assert sent.id in fake.deleted_messages


async def test_subcommands_with_member_and_channel_options_get_resolved_data(fake: FakeDiscord) -> None:
    client = TutorBot()
    async with fake.connected(client):
        options = {"student": STUDENT2_ID, "channel": PRACTICE_CHANNEL_ID, "level": 2}
        interaction = await fake.invoke_command("lesson assign", options, GENERAL_CHANNEL_ID, TEACHER_ID)
        body = await interaction.wait_response()
    assert body["data"]["content"] == "Lea (B1) in #german-practice at 2"
    namespace = client.invocations[0].namespace
    assert isinstance(namespace.student, discord.Member) and namespace.student.id == STUDENT2_ID


async def _raw(fake: FakeDiscord, method: str, path: str, body: Any) -> tuple[int, Any]:
    """A request as the bot would make it, bypassing discord.py's own checks, to see what Discord itself says."""
    headers = {"Authorization": f"Bot {BOT_TOKEN}"}
    url = f"{fake.api_url}/v10{path}"
    async with aiohttp.ClientSession() as session, session.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


def _buttons(*rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": 1, "components": row} for row in rows]


@pytest.mark.parametrize(
    "components",
    [
        _buttons(*([{"type": 2, "style": 2, "label": "x", "custom_id": f"b{i}"}] for i in range(6))),  # 6 rows
        _buttons([{"type": 2, "style": 2, "label": "x", "custom_id": f"b{i}"} for i in range(6)]),  # 6 in a row
        _buttons([{"type": 2, "style": 2, "label": "x", "custom_id": "c" * 101}]),
        _buttons([{"type": 2, "style": 2, "label": "x" * 81, "custom_id": "b"}]),
        _buttons([{"type": 2, "style": 2, "label": "x", "custom_id": "b"}, {"type": 2, "style": 2, "custom_id": "b"}]),
        _buttons([{"type": 2, "style": 5, "label": "x", "custom_id": "b", "url": "https://discord.com"}]),
    ],
    ids=["six-rows", "six-in-a-row", "long-custom-id", "long-label", "duplicate-custom-id", "link-with-custom-id"],
)
async def test_components_beyond_discords_limits_are_refused(fake: FakeDiscord, components: list[Any]) -> None:
    status, body = await _raw(fake, "POST", GENERAL_MESSAGES, {"content": "Quiz", "components": components})
    assert (status, body["code"]) == (400, 50035)
    assert fake.channel_texts(GENERAL_CHANNEL_ID) == []


async def test_buttons_within_the_limits_are_kept_on_the_message(fake: FakeDiscord) -> None:
    row = [{"type": 2, "style": 2, "label": f"{i}", "custom_id": f"pg:{i}" + "x" * 90} for i in range(5)]
    link = [{"type": 2, "style": 5, "label": "DM", "url": "https://discord.com/channels/@me/1"}]
    status, body = await _raw(fake, "POST", GENERAL_MESSAGES, {"components": _buttons(row, link)})
    assert status == 200 and fake.messages[int(body["id"])]["components"] == _buttons(row, link)


@pytest.mark.parametrize(
    ("localizations", "ok"),
    [({"de": "Eine Lektion", "pt-BR": "Uma lição"}, True), ({"xx": "?"}, False), ({"fr": "x" * 101}, False)],
    ids=["discord-locales", "unknown-locale", "too-long"],
)
async def test_command_localizations_need_discords_locales_and_lengths(
    fake: FakeDiscord, localizations: dict[str, str], ok: bool
) -> None:
    option = {"type": 3, "name": "level", "description": "How well", "description_localizations": localizations}
    command = {"name": "learn", "description": "Learn", "description_localizations": localizations}
    path = f"/applications/{APPLICATION_ID}/commands"
    status, _ = await _raw(fake, "PUT", path, [command | {"options": [option]}])
    assert status == (200 if ok else 400)
    assert bool(fake.commands.get(None)) is ok


async def test_a_followup_after_a_deleted_deferral_is_a_message_of_its_own(fake: FakeDiscord) -> None:
    client = TutorBot()

    @client.tree.command(description="defers, then answers privately")
    async def private(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.delete_original_response()
        await interaction.followup.send("only you", ephemeral=True)

    async with fake.connected(client):
        interaction = await fake.invoke_command("private", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        await fake.wait_until(lambda: bool(interaction.followups))
    assert interaction.followups[0]["content"] == "only you" and interaction.followups[0]["flags"] & EPHEMERAL
    assert fake.channel_texts(GENERAL_CHANNEL_ID, include_ephemeral=True) == ["only you"]


async def test_after_a_deferred_update_the_original_is_the_pressed_message(fake: FakeDiscord) -> None:
    client = TutorBot()

    @client.tree.command(description="a button answered late")
    async def later(interaction: discord.Interaction) -> None:
        view = discord.ui.View()
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(label="Go", custom_id="later:go")

        async def pressed(click: discord.Interaction) -> None:
            await click.response.defer()
            await click.edit_original_response(content="done", view=None)

        button.callback = pressed  # type: ignore[method-assign]
        view.add_item(button)
        await interaction.response.send_message("Press", view=view)

    async with fake.connected(client):
        sent = await fake.invoke_command("later", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        await sent.wait_response()
        assert sent.original is not None
        click = await fake.click_button(int(sent.original["id"]), "later:go", STUDENT_ID)
        assert (await click.wait_response())["type"] == 6
        await fake.wait_until(lambda: fake.channel_texts(GENERAL_CHANNEL_ID) == ["done"])
    assert sent.original["components"] == []


async def test_a_public_interaction_response_is_edited_through_its_channel_like_any_bot_message(
    fake: FakeDiscord,
) -> None:
    client = TutorBot()
    async with fake.connected(client):
        interaction = await fake.invoke_command("slow", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        await fake.wait_until(lambda: bool(interaction.followups))
        assert interaction.original is not None
        channel = client.get_channel(GENERAL_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        await channel.get_partial_message(int(interaction.original["id"])).edit(content="edited by the bot token")
    assert interaction.original["content"] == "edited by the bot token"
    assert interaction.original["webhook_id"] == str(APPLICATION_ID)


async def test_an_ephemeral_followup_is_unknown_through_its_channel(fake: FakeDiscord) -> None:
    client = TutorBot()
    async with fake.connected(client):
        interaction = await fake.invoke_command("slow", {}, GENERAL_CHANNEL_ID, STUDENT_ID)
        await fake.wait_until(lambda: bool(interaction.followups))
        channel = client.get_channel(GENERAL_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        hidden = channel.get_partial_message(int(interaction.followups[0]["id"]))
        with pytest.raises(discord.NotFound) as unknown:
            await hidden.edit(content="no")
    assert unknown.value.code == 10008
    assert interaction.followups[0]["content"] == "only you see this"


async def test_a_message_deleted_by_someone_else_is_gone_for_the_bot(fake: FakeDiscord) -> None:
    client = EchoBot()
    deleted: list[int] = []

    @client.event
    async def on_raw_message_delete(payload: discord.RawMessageDeleteEvent) -> None:
        deleted.append(payload.message_id)

    async with fake.connected(client):
        channel = client.get_channel(GENERAL_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("soon gone")
        await fake.delete_message(sent.id)
        await fake.wait_until(lambda: deleted == [sent.id])
        with pytest.raises(discord.NotFound) as unknown:
            await sent.edit(content="too late")
    assert unknown.value.code == 10008 and sent.id in fake.deleted_messages
