"""Model output written to deceive, end to end through the real python-telegram-bot and discord.py clients.

The model can be talked into writing `[your homework](https://elsewhere)`, which hides where a click goes, or
`[Ana](tg://user?id=…)`, which links a classmate. Whatever it writes, the chat shows every link's real address,
nothing but a web page is clickable, and nobody is pinged. Telegram is checked with the fake's entity parser
(as strict as Telegram's): no `text_mention`, and a `text_link` only where its visible text is its address.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from bots.discord_bot import Polyglott
from core.settings import Settings
from core.tutor import Tutor
from tests.fake_discord import GENERAL_CHANNEL_ID, STUDENT2_ID, STUDENT_ID, FakeDiscord
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script
from tests.fake_telegram import FakeTelegram, parse_html
from tests.test_discord_bot import BOT_TOKEN, GUILD_ID, answered, connected, learn, replies_to
from tests.test_discord_bot import SCALE as DISCORD_SCALE
from tests.test_telegram_bot import DM, GROUP, SCALE, USER, lesson, running

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ELSEWHERE = "https://elsewhere.example/login"
DISGUISED = f"Tu tarea está [aquí, en el aula]({ELSEWHERE}). ¡Ánimo!"
CLASSMATE = "Pregúntale a [Ana](tg://user?id=777) o a [tu profe](tg://resolve?domain=profe) 😊"
MIXED = (
    f"Mira [esto]({ELSEWHERE}), ![foto](https://img.example/p.png), <https://autolink.example/x> y "
    "[un truco](javascript:alert(1)) con [correo](mailto:a@b.example). Fin."
)


def utf16_slice(text: str, offset: int, length: int) -> str:
    """The part of `text` a Telegram entity covers (offsets count UTF-16 code units)."""
    encoded = text.encode("utf-16-le")
    return encoded[2 * offset : 2 * (offset + length)].decode("utf-16-le")


def deceptive_entities(html: str) -> list[dict[str, Any]]:
    """The entities of a Telegram text that could take a click anywhere but where the text says."""
    plain, entities = parse_html(html)
    return [
        e
        for e in entities
        if e["type"] == "text_mention"
        or (e["type"] == "text_link" and (utf16_slice(plain, e["offset"], e["length"]) != e["url"]))
        or not str(e.get("url", "https://")).startswith(("http://", "https://"))
    ]


# --- Telegram ----------------------------------------------------------------------------------------------------


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(time_scale=SCALE, require_start=True) as fake:
        fake.set_admins(GROUP, creator=1, admins=[2, fake.bot_id])
        yield fake


@pytest.fixture
def telegram_settings(settings: Settings, telegram: FakeTelegram) -> Settings:
    return settings.model_copy(update={"telegram_token": SecretStr(telegram.token), "telegram_api_url": telegram.url})


async def telegram_reply(
    tutor: Tutor, settings: Settings, telegram: FakeTelegram, ollama: FakeOllama, text: str
) -> str:
    """What the learner finally sees when the model answers `text` in a private chat (HTML as sent)."""
    await lesson(tutor, DM)
    ollama.script(Script(text, delay=0.01))
    async with running(tutor, settings, telegram):
        telegram.add_private_message(USER, "Hola")
        await telegram.wait_for(lambda: (m := telegram.last_message(USER)) is not None and bool(m.plain), within=10)
        await telegram.wait_for(lambda: tutor.replies_in_progress == 0, within=10)
    message = telegram.last_message(USER)
    assert message is not None
    return message.text


async def test_a_telegram_link_shows_its_real_address(
    tutor: Tutor, telegram_settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    html = await telegram_reply(tutor, telegram_settings, telegram, ollama, DISGUISED)
    plain, _ = parse_html(html)
    assert ELSEWHERE in plain and "](" not in plain
    assert deceptive_entities(html) == []


async def test_a_telegram_link_to_a_classmate_is_no_mention_and_no_link(
    tutor: Tutor, telegram_settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    html = await telegram_reply(tutor, telegram_settings, telegram, ollama, CLASSMATE)
    plain, entities = parse_html(html)
    assert "Ana" in plain and "tg://" not in plain
    assert [e for e in entities if e["type"] in ("text_link", "text_mention", "url")] == []


async def test_no_telegram_preview_or_update_of_a_streaming_reply_hides_a_link(
    tutor: Tutor, telegram_settings: Settings, telegram: FakeTelegram, ollama: FakeOllama
) -> None:
    await telegram_reply(tutor, telegram_settings, telegram, ollama, MIXED)
    shown = [d.text for d in telegram.drafts.get(USER, [])]
    shown += [text for m in telegram.messages[USER].values() for text, _ in [*m.history, (m.text, m.parse_mode)]]
    assert len(shown) >= 3  # the reply was really seen growing
    assert [html for html in shown if deceptive_entities(html)] == []


# --- Discord -----------------------------------------------------------------------------------------------------

# A Discord masked link: `[text](url)`, with an optional `<…>` around the address.
MASKED = re.compile(r"\[[^\]]*\]\(\s*<?[A-Za-z][A-Za-z0-9+.\-]*:")


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(time_scale=DISCORD_SCALE) as server:
        yield server
    assert server.errors == []


@pytest.fixture
async def discord_bot(discord_fake: FakeDiscord, tutor: Tutor, settings: Settings) -> AsyncIterator[Polyglott]:
    changes = {
        "discord_token": SecretStr(BOT_TOKEN),
        "discord_guild_ids": [GUILD_ID],
        "discord_teacher_role": "Teacher",
    }
    async with connected(discord_fake, tutor, settings, **changes) as client:
        yield client


async def discord_reply(fake: FakeDiscord, bot: Polyglott, ollama: FakeOllama, text: str) -> dict[str, Any]:
    """The bot's message in a guild channel when the model answers `text` to a mention."""
    await learn(fake, bot, GENERAL_CHANNEL_ID, language="spanish")
    ollama.script(Script(text, delay=0.01))
    message = await fake.send_message(GENERAL_CHANNEL_ID, STUDENT_ID, "Hola", mentions_bot=True)
    await answered(fake, bot, message, timeout=10)
    (reply,) = replies_to(fake, message)
    return reply


def contents_sent(fake: FakeDiscord) -> list[str]:
    """Every text the bot posted or edited in, in order: a stream is seen at every update."""
    return [
        c.json["content"]
        for c in fake.calls
        if c.method in ("POST", "PATCH") and isinstance(c.json, dict) and c.json.get("content")
    ]


async def test_a_discord_link_shows_its_real_address_and_is_not_masked(
    discord_fake: FakeDiscord, discord_bot: Polyglott, ollama: FakeOllama
) -> None:
    reply = await discord_reply(discord_fake, discord_bot, ollama, DISGUISED)
    assert ELSEWHERE in reply["content"] and not MASKED.search(reply["content"])


async def test_a_discord_link_to_a_non_web_address_is_plain_text(
    discord_fake: FakeDiscord, discord_bot: Polyglott, ollama: FakeOllama
) -> None:
    reply = await discord_reply(discord_fake, discord_bot, ollama, CLASSMATE)
    assert "Ana" in reply["content"] and "tg:" not in reply["content"] and "](" not in reply["content"]


async def test_no_discord_update_of_a_streaming_reply_has_a_masked_link(
    discord_fake: FakeDiscord, discord_bot: Polyglott, ollama: FakeOllama
) -> None:
    await discord_reply(discord_fake, discord_bot, ollama, MIXED)
    updates = contents_sent(discord_fake)
    assert len(updates) >= 3  # the opener, and the reply seen growing
    assert [text for text in updates if MASKED.search(text)] == []


async def test_a_discord_link_named_after_a_classmate_pings_nobody(
    discord_fake: FakeDiscord, discord_bot: Polyglott, ollama: FakeOllama
) -> None:
    reply = await discord_reply(
        discord_fake, discord_bot, ollama, f"Saluda a [<@{STUDENT2_ID}>]({ELSEWHERE}) @everyone"
    )
    assert (reply["mention_everyone"], reply["mention_roles"], reply["mentions"]) == (False, [], [])
