"""Tests of the fake Bot API, driven by the real python-telegram-bot over HTTP.

Why: the Telegram adapter's tests trust this fake to behave like Telegram; these tests pin that down with
the same client library the adapter uses, so a mistake in the fake shows up here and not as a confusing
adapter failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import warnings
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    Bot,
    ChatFullInfo,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    MessageEntity,
    Update,
)
from telegram.error import BadRequest, Conflict, EndPointNotFound, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from tests.fake_telegram import (
    CANNOT_INITIATE,
    DEFAULT_TOKEN,
    NOT_MODIFIED,
    FakeTelegram,
    detect_entities,
    parse_html,
)

# PTB warns about its int-to-timedelta migration whenever it builds a RetryAfter; not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

USER = 4242
GROUP = -100200300


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with fake.make_bot() as client:
        yield client


async def started(**kwargs: object) -> FakeTelegram:
    server = FakeTelegram(**kwargs)  # type: ignore[arg-type]
    await server.start()
    return server


def seconds(error: RetryAfter) -> float:
    """retry_after as seconds, without PTB's int-vs-timedelta deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


async def test_get_me(bot: Bot, fake: FakeTelegram) -> None:
    me = await bot.get_me()
    assert me.id == fake.bot_id
    assert me.username == "polyglott_bot"
    assert me.is_bot and me.can_join_groups
    assert me.can_read_all_group_messages is False and me.supports_inline_queries is False
    assert fake.calls[0].method == "getMe" and fake.calls[0].status == 200


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    other = Bot("1:other", base_url=fake.base_url)
    with pytest.raises(InvalidToken):
        await other.initialize()
    assert fake.calls[-1].status == 401


async def test_unknown_method_is_404(bot: Bot, fake: FakeTelegram) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": USER})
    assert fake.calls[-1].status == 404


async def test_send_and_edit_round_trip(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(USER, "Hola")
    assert sent.from_user.id == fake.bot_id and sent.chat.type == "private" and sent.text == "Hola"
    edited = await bot.edit_message_text(
        "Hola, <b>amigo</b>", chat_id=USER, message_id=sent.message_id, parse_mode="HTML"
    )
    assert edited.text == "Hola, amigo"
    assert edited.entities == (MessageEntity("bold", 6, 5),)
    assert edited.edit_date is not None
    stored = fake.messages[USER][sent.message_id]
    assert (stored.text, stored.parse_mode, stored.history) == ("Hola, <b>amigo</b>", "HTML", [("Hola", None)])
    assert fake.chat_texts(USER) == ["Hola, amigo"]
    assert [c.method for c in fake.calls_to("editMessageText", ok=True)] == ["editMessageText"]


async def test_edit_with_same_content_is_not_modified(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(USER, "<i>Bien</i>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("<em>Bien</em>", chat_id=USER, message_id=sent.message_id, parse_mode="HTML")
    assert fake.calls[-1].description == NOT_MODIFIED
    # Same text but a different entity is a change.
    await bot.edit_message_text("Bien", chat_id=USER, message_id=sent.message_id)


async def test_edit_unknown_message(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)


async def test_empty_and_too_long_texts(bot: Bot, fake: FakeTelegram) -> None:
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(USER, "   ")
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(USER, "<b></b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER, "a" * 4097)
    # The limit counts visible characters: markup and escapes do not count.
    await bot.send_message(USER, "<b>" + "a" * 4000 + "</b>" + "&amp;" * 96, parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER, "<b>" + "a" * 4001 + "</b>" + "&amp;" * 96, parse_mode="HTML")
    assert [len(t) for t in fake.chat_texts(USER)] == [4096]


@pytest.mark.parametrize(
    "text",
    [
        "<b>unclosed",
        "<b>crossed <i>tags</b></i>",
        "</b>",
        "<p>paragraph</p>",
        "line<br>break",
        "2 < 3",
        "Tom & Jerry",
        "<span>no class</span>",
        "<b",
    ],
)
async def test_malformed_html_is_refused(bot: Bot, text: str) -> None:
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(USER, text, parse_mode="HTML")


async def test_valid_html_is_parsed_into_entities(bot: Bot) -> None:
    text = (
        "<b>fett</b> <strong>s</strong> <i>i</i> <u>u</u> <s>s</s> <tg-spoiler>x</tg-spoiler> "
        '<span class="tg-spoiler">y</span> <a href="https://example.com/?a=1&amp;b=2">link</a> '
        "&lt;tag&gt; &quot;q&quot; &#233;&#x20AC; "
        '<pre><code class="language-python">print(1)</code></pre> <blockquote>quote</blockquote> <code>c</code>'
    )
    message = await bot.send_message(USER, text, parse_mode="HTML")
    assert message.text == 'fett s i u s x y link <tag> "q" é€ print(1) quote c'
    kinds = [e.type for e in message.entities]
    assert kinds == [
        "bold",
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "spoiler",
        "text_link",
        "pre",
        "blockquote",
        "code",
    ]
    link = next(e for e in message.entities if e.type == "text_link")
    assert link.url == "https://example.com/?a=1&b=2"
    assert next(e for e in message.entities if e.type == "pre").language == "python"
    assert message.parse_entity(link) == "link"


def test_html_offsets_are_utf16() -> None:
    plain, entities = parse_html("😀 <b>ß</b>")
    assert plain == "😀 ß" and entities == [{"type": "bold", "offset": 3, "length": 1}]


async def test_markdown_v2_reserved_characters(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)reserved and must be escaped"):
        await bot.send_message(USER, "Fin.", parse_mode="MarkdownV2")
    message = await bot.send_message(USER, r"*Fin*\.", parse_mode="MarkdownV2")
    assert message.text == "Fin." and message.entities[0].type == "bold"


async def test_per_chat_window_raises_retry_after(fake: FakeTelegram) -> None:
    fake.per_chat = (1, 1.0)
    async with fake.make_bot() as client:
        await client.send_message(USER, "one")
        with pytest.raises(RetryAfter) as caught:
            await client.send_message(USER, "two")
        assert seconds(caught.value) == 1
        await client.send_chat_action(USER, "typing")  # actions are not counted
        await client.send_message(USER + 1, "another chat has its own window")
    assert len(fake.flood_errors) == 1 and fake.flood_errors[0].scope == "chat"
    assert fake.calls_to("sendMessage")[1].status == 429


async def test_group_window_and_time_scale() -> None:
    fake = await started(per_chat=None, per_group=(2, 60.0), time_scale=0.005)  # a "minute" lasts 0.3 s
    try:
        async with fake.make_bot() as client:
            await client.send_message(GROUP, "1")
            await client.send_message(GROUP, "2")
            with pytest.raises(RetryAfter) as caught:
                await client.send_message(GROUP, "3")
            assert 58 <= seconds(caught.value) <= 60  # reported in Telegram seconds
            await client.send_message(USER, "private chats are not in the group window")
            await asyncio.sleep(60 * 0.005)
            await client.send_message(GROUP, "3")
        assert [e.scope for e in fake.flood_errors] == ["group"]
    finally:
        await fake.stop()


async def test_burst_then_steady_rate_within_default_per_chat_window(bot: Bot, fake: FakeTelegram) -> None:
    fake.time_scale = 0.01
    for n in range(3):
        await bot.send_message(USER, f"part {n}")  # a reply split in three goes out at once
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "fourth")
    await asyncio.sleep(seconds(caught.value) * fake.time_scale)
    await bot.send_message(USER, "fourth")


async def test_global_window() -> None:
    fake = await started(per_chat=None, global_limit=(3, 1.0))
    try:
        async with fake.make_bot() as client:
            for chat in (1, 2, 3):
                await client.send_message(chat, "hi")
            with pytest.raises(RetryAfter):
                await client.send_message(4, "hi")
        assert fake.flood_errors[0].scope == "global"
    finally:
        await fake.stop()


async def test_message_draft_in_private_chat(bot: Bot, fake: FakeTelegram) -> None:
    assert await bot.send_message_draft(USER, 7, "Hol") is True
    assert await bot.send_message_draft(USER, 7, "Hola <b>a</b>", parse_mode="HTML") is True
    assert await bot.send_message_draft(USER, 7, "") is True  # the "thinking" placeholder
    assert fake.draft_texts(USER) == ["Hol", "Hola a", ""]
    assert fake.drafts[USER][1].draft_id == 7 and fake.chat_texts(USER) == []
    with pytest.raises(BadRequest):
        await bot.send_message_draft(GROUP, 7, "no drafts in groups")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message_draft(USER, 7, "<b>", parse_mode="HTML")


async def test_drafts_can_be_unavailable(bot: Bot, fake: FakeTelegram) -> None:
    fake.drafts_mode = "unavailable"
    with pytest.raises(BadRequest, match=r"(?i)method is not available"):
        await bot.send_message_draft(USER, 1, "x")
    fake.drafts_mode = "not_found"  # an older server; PTB turns a 404 into InvalidToken
    with pytest.raises(InvalidToken):
        await bot.send_message_draft(USER, 1, "x")


async def test_fault_injection_blocked_and_down(bot: Bot, fake: FakeTelegram) -> None:
    fake.flood_next("sendMessage", retry_after=5)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "x")
    assert seconds(caught.value) == 5 and fake.flood_errors[-1].scope == "injected"
    fake.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(USER, "x")
    fake.blocked_chats.add(USER)
    with pytest.raises(Forbidden, match=r"(?i)blocked by the user"):
        await bot.send_message(USER, "x")
    fake.blocked_chats.clear()
    fake.down = True
    with pytest.raises(NetworkError):
        await bot.send_message(USER, "x")
    fake.down = False
    await bot.send_message(USER, "x")


async def test_send_document_uploads_a_file_with_a_caption(bot: Bot, fake: FakeTelegram) -> None:
    data = b"channel,text\ntelegram:1,hola\n"
    sent = await bot.send_document(
        USER, InputFile(data, filename="datos.csv"), caption="Tus <b>datos</b>", parse_mode="HTML"
    )
    assert sent.document is not None and sent.document.file_name == "datos.csv"
    assert sent.document.mime_type == "text/csv" and sent.document.file_size == len(data)
    assert sent.caption == "Tus datos" and sent.caption_entities == (MessageEntity("bold", 4, 5),)
    stored = fake.messages[USER][sent.message_id]
    assert stored.content == data and fake.chat_texts(USER) == ["Tus datos"]
    with pytest.raises(BadRequest, match=r"(?i)no text in the message to edit"):
        await bot.edit_message_text("x", chat_id=USER, message_id=sent.message_id)


async def test_send_document_limits(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
        await bot.send_document(USER, InputFile(b"x", filename="a.txt"), caption="é" * 1025)
    await bot.send_document(USER, InputFile(b"x", filename="a.txt"), caption="é" * 1024)
    with pytest.raises(BadRequest, match=r"(?i)file must be non-empty"):
        await bot.send_document(USER, InputFile(b"", filename="a.txt"))
    small = await started(max_file_size=1000)
    try:
        async with small.make_bot() as client:
            with pytest.raises(NetworkError, match="Request Entity Too Large"):
                await client.send_document(USER, InputFile(b"x" * 1001, filename="big.bin"))
            await client.send_document(USER, InputFile(b"x" * 1000, filename="ok.bin"))
    finally:
        await small.stop()


async def test_a_private_chat_needs_its_user_to_start_the_bot_first() -> None:
    fake = await started(require_start=True)
    try:
        async with fake.make_bot() as client:
            with pytest.raises(BadRequest, match=r"(?i)chat not found"):  # a user the bot never saw
                await client.send_message(USER, "hola")
            fake.add_group_message(GROUP, USER, "hola a todos")  # seen in a group, never started
            with pytest.raises(Forbidden, match="initiate conversation"):
                await client.send_message(USER, "hola")
            with pytest.raises(Forbidden, match="initiate conversation"):
                await client.send_document(USER, InputFile(b"x", filename="a.txt"))
            assert fake.calls[-1].description == CANNOT_INITIATE
            fake.add_private_message(USER, "/start")
            await client.send_message(USER, "¡hola!")
            await client.send_message(GROUP, "groups need no start")
    finally:
        await fake.stop()


async def test_a_callback_answer_longer_than_200_characters_is_refused(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(
        USER, "?", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="a")]])
    )
    query = fake.add_callback_query(USER, USER, sent.message_id, "a")["callback_query"]["id"]
    with pytest.raises(BadRequest, match=r"(?i)message_too_long"):
        await bot.answer_callback_query(query, "x" * 201, show_alert=True)
    await bot.answer_callback_query(query, "x" * 200, show_alert=True)
    assert fake.callback_answers[query]["show_alert"] is True
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):  # a query is answered once
        await bot.answer_callback_query(query)


async def test_get_me_can_say_the_bot_reads_all_group_messages() -> None:
    fake = await started(reads_all_group_messages=True)
    try:
        async with fake.make_bot() as client:
            assert (await client.get_me()).can_read_all_group_messages is True
    finally:
        await fake.stop()


async def test_chat_members_and_admins(bot: Bot, fake: FakeTelegram) -> None:
    fake.add_chat(GROUP, title="Clase de español")
    fake.set_admins(GROUP, creator=1, admins=[2, fake.bot_id])
    admins = await bot.get_chat_administrators(GROUP)
    assert isinstance(admins[0], ChatMemberOwner) and admins[0].user.id == 1
    assert {a.user.id for a in admins[1:]} == {2, fake.bot_id}
    assert all(isinstance(a, ChatMemberAdministrator) for a in admins[1:])
    member = await bot.get_chat_member(GROUP, 3)
    assert isinstance(member, ChatMemberMember)
    for status in ("restricted", "left", "kicked"):
        fake.set_member(GROUP, 3, status)
        assert (await bot.get_chat_member(GROUP, 3)).status == status
    chat = await bot.get_chat(GROUP)
    assert isinstance(chat, ChatFullInfo) and chat.title == "Clase de español" and chat.type == "group"
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.get_chat(-5)


async def test_commands_and_simple_methods(bot: Bot, fake: FakeTelegram) -> None:
    await bot.set_my_commands([("learn", "Start a lesson"), ("level", "Set your level")])
    await bot.set_my_commands([("lernen", "Lektion starten")], language_code="de")
    assert [c.command for c in await bot.get_my_commands()] == ["learn", "level"]
    assert [c.command for c in await bot.get_my_commands(language_code="de")] == ["lernen"]
    assert fake.my_commands(language_code="de") == [{"command": "lernen", "description": "Lektion starten"}]
    await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([("Learn!", "x")])
    sent = await bot.send_message(USER, "bye")
    assert await bot.delete_message(USER, sent.message_id)
    assert fake.chat_texts(USER) == []
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(USER, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)wrong parameter action"):
        await bot.send_chat_action(USER, "dancing")
    assert await bot.close() and await bot.log_out()


async def test_json_and_form_bodies(fake: FakeTelegram) -> None:
    url = f"{fake.base_url}{fake.token}/sendMessage"
    markup = '{"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}'
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"chat_id": USER, "text": "json"}) as response:
            assert (await response.json())["result"]["text"] == "json"
        async with session.post(url, data={"chat_id": str(USER), "text": "42", "reply_markup": markup}) as response:
            body = await response.json()
            assert body["result"]["text"] == "42" and body["result"]["reply_markup"]["inline_keyboard"]
        form = aiohttp.FormData()
        form.add_field("chat_id", str(USER))
        form.add_field("text", "multipart")
        form.add_field("file", b"data", filename="x.bin")
        async with session.post(url.replace("sendMessage", "sendMessage"), data=form) as response:
            assert (await response.json())["result"]["text"] == "multipart"
        async with session.post(url, json={"chat_id": USER}) as response:
            assert response.status == 400
            assert await response.json() == {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message text is empty",
            }
        async with session.get(f"{fake.base_url}{fake.token}/nope") as response:
            assert response.status == 404 and (await response.json())["description"] == "Not Found"
    assert fake.calls[1].params["text"] == "42" and fake.calls[1].params["chat_id"] == USER


async def test_get_updates_offset_and_long_poll(bot: Bot, fake: FakeTelegram) -> None:
    first = fake.add_private_message(USER, "hola", first_name="Ana")
    fake.add_private_message(USER, "¿qué tal?")
    updates = await bot.get_updates(timeout=0)
    assert [u.message.text for u in updates] == ["hola", "¿qué tal?"]
    assert updates[0].update_id == first["update_id"] and updates[1].update_id == first["update_id"] + 1
    assert updates[0].message.from_user.first_name == "Ana" and updates[0].message.chat.type == "private"
    assert len(await bot.get_updates(offset=updates[0].update_id + 1, timeout=0)) == 1
    assert await bot.get_updates(offset=updates[1].update_id + 1, timeout=0) == ()
    assert fake.pending_updates == []

    loop = asyncio.get_running_loop()
    loop.call_later(0.1, fake.add_private_message, USER, "late")
    start = loop.time()
    late = await bot.get_updates(timeout=2)
    assert [u.message.text for u in late] == ["late"] and loop.time() - start < 1
    start = loop.time()
    assert await bot.get_updates(offset=late[0].update_id + 1, timeout=0.3) == ()
    assert 0.25 <= loop.time() - start < 1


async def test_a_held_answer_comes_on_release_though_the_message_is_sent_at_once(bot: Bot, fake: FakeTelegram) -> None:
    hold = fake.hold("sendMessage", lambda params: params.get("text") == "final")
    await bot.send_message(USER, "draft")  # not the one `when` picks
    sending = asyncio.create_task(bot.send_message(USER, "final"))
    await asyncio.wait_for(hold.reached.wait(), 2)
    assert fake.chat_texts(USER) == ["draft", "final"] and not sending.done()
    hold.release()
    assert (await asyncio.wait_for(sending, 2)).text == "final"
    assert hold.record is not None and hold.record.ok


async def test_a_call_held_before_it_is_read_is_dropped_if_its_client_hangs_up(fake: FakeTelegram) -> None:
    """A bot killed while its getUpdates was in transit: the offset never arrived, the update comes again."""
    first = fake.add_private_message(USER, "hola")
    hold = fake.hold("getUpdates", lambda params: params.get("offset") is not None, before=True)
    url = f"{fake.base_url}{fake.token}/getUpdates"
    async with aiohttp.ClientSession() as session:
        confirming = asyncio.create_task(session.post(url, json={"offset": first["update_id"] + 1}))
        await asyncio.wait_for(hold.reached.wait(), 2)
        confirming.cancel()  # the bot dies with its request unanswered
        with contextlib.suppress(asyncio.CancelledError):
            await confirming
    await asyncio.sleep(0.05)
    hold.release()
    await fake.wait_for(lambda: hold.record is not None and hold.record.abandoned)
    assert [u["update_id"] for u in fake.pending_updates] == [first["update_id"]]
    assert hold.record is not None and hold.record.status == 0 and hold.record not in fake.errors()


async def test_scripted_updates_parse_in_ptb(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(GROUP, "¿Cómo te llamas?")
    fake.add_command(GROUP, 1, "learn", "spanish", at_bot=True)
    fake.add_mention(GROUP, 1, "hola")
    fake.add_reply_to_bot(GROUP, 2, "Me llamo Ben")
    topic = fake.add_group_message(-1001234567890, 3, "en el tema", message_thread_id=5, is_topic_message=True)
    fake.add_sticker(USER, USER)
    fake.add_photo(USER, USER, caption="mi gato")
    fake.add_voice(USER, USER)
    fake.add_edited_message(-1001234567890, topic["message"]["message_id"], "en el tema (editado)")
    updates = await bot.get_updates(timeout=0)
    command, mention, reply, in_topic, sticker, photo, voice, edited = (u.effective_message for u in updates)
    assert command.text == "/learn@polyglott_bot spanish"
    assert command.entities == (MessageEntity("bot_command", 0, len("/learn@polyglott_bot")),)
    assert command.chat.type == "group" and command.chat.id == GROUP
    assert mention.entities == (MessageEntity("mention", 0, len("@polyglott_bot")),)
    assert reply.reply_to_message.message_id == sent.message_id
    assert reply.reply_to_message.from_user.id == bot.id and reply.reply_to_message.text == "¿Cómo te llamas?"
    assert in_topic.chat.type == "supergroup" and in_topic.chat.is_forum and in_topic.is_topic_message
    assert in_topic.message_thread_id == 5
    assert sticker.sticker.emoji == "👍" and photo.photo[-1].width == 800 and photo.caption == "mi gato"
    assert voice.voice.mime_type == "audio/ogg"
    assert updates[-1].edited_message.text == "en el tema (editado)" and edited.edit_date is not None
    ids = [u.update_id for u in updates]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_detect_entities() -> None:
    assert detect_entities("/level B1 and /help@polyglott_bot, ask @teacher_x") == [
        {"type": "bot_command", "offset": 0, "length": 6},
        {"type": "bot_command", "offset": 14, "length": 19},
        {"type": "mention", "offset": 39, "length": 10},
    ]


async def test_application_long_polling_replies_to_command(fake: FakeTelegram) -> None:
    async def learn(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"¡Vamos! ({' '.join(context.args or [])})")

    async def mentioned(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("Sí?")

    app = fake.application_builder().build()
    app.add_handler(CommandHandler("learn", learn))
    app.add_handler(MessageHandler(filters.Mention("polyglott_bot"), mentioned))
    fake.add_command(GROUP, 1, "learn", "spanish", at_bot=True)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        reply = await fake.wait_for_call("sendMessage")
        fake.add_mention(GROUP, 1, "¿estás?")
        await fake.wait_for_call("sendMessage", count=2)
        await app.updater.stop()
        await app.stop()
    assert loop.time() - start < 2.5
    assert reply.ok and reply.params["chat_id"] == GROUP
    assert fake.chat_texts(GROUP) == ["¡Vamos! (spanish)", "Sí?"]
    answered = fake.messages[GROUP][2]
    assert answered.reply_to_message_id == 1  # reply_text replies to the command
    assert fake.pending_updates == []  # PTB confirmed everything on shutdown
    assert fake.errors() == []  # the long poll cut short by the shutdown is marked abandoned, not an error


async def test_application_callback_query(fake: FakeTelegram) -> None:
    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("ok")
        await query.edit_message_text(f"Elegiste {query.data}")

    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("B1", callback_data="level:B1")]])
    async with fake.make_bot() as client:
        sent = await client.send_message(USER, "¿Nivel?", reply_markup=keyboard)
    update = fake.add_callback_query(USER, USER, sent.message_id, "level:B1")
    app = fake.application_builder().build()
    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        await fake.wait_for_call("editMessageText")
        await app.updater.stop()
        await app.stop()
    assert fake.callback_answers[update["callback_query"]["id"]]["text"] == "ok"
    message = fake.messages[USER][sent.message_id]
    assert message.plain == "Elegiste level:B1" and message.reply_markup is None  # edit without markup drops it


async def test_webhook_delivery_with_secret(bot: Bot, fake: FakeTelegram) -> None:
    received: list[tuple[str | None, dict[str, object]]] = []
    statuses = iter([500, 200, 200])

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return web.Response(status=next(statuses))

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.webhook_retry_interval = 0.01
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        with pytest.raises(Conflict):
            await bot.get_updates(timeout=0)
        fake.add_private_message(USER, "uno")
        fake.add_private_message(USER, "dos")
        await fake.wait_for(lambda: not fake.pending_updates)
        assert [body["message"]["text"] for _, body in received] == ["uno", "uno", "dos"]  # retried after 500
        assert {secret for secret, _ in received} == {"s3cret"}
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook") and info.pending_update_count == 0 and info.last_error_message
        await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""
    finally:
        await runner.cleanup()


async def test_default_token_is_used(fake: FakeTelegram) -> None:
    assert fake.token == DEFAULT_TOKEN and fake.url.startswith("http://127.0.0.1:")
