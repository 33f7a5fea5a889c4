"""Scenario 3: throughput and cost. Hundreds of conversations at once against a fast fake model (1,000
tokens/s per request), on the platforms' real limits: what the bot costs per token relayed, how much memory
it needs, how many messages it handles per second, and what stops it from handling more.

The bot runs in its own process (bench/botproc.py), so its CPU seconds and peak RSS are its own; the fakes
and this driver are the other process. Each conversation writes its next message once the answer to the
previous one is complete. The first bottleneck is the resource the run used the largest share of: the
bot's core, the fakes' core, the adapters' shares of Telegram's or Discord's global request budget, or the
Ollama client's connection pool.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from bench.lag import sampling
from bench.world import Kind, World
from bots.discord_bot import BOT_WINDOWS
from bots.telegram_bot import MessageRateLimiter
from core.llm import POOL_SPARE

MODEL_RATE = 1000.0  # tokens per second per request: a fast model, so the bot is what is measured
ANSWER_CHARS = 400  # about 100 tokens
TELEGRAM_PER_SECOND = MessageRateLimiter.PER_SECOND  # the adapter's share of Telegram's 30 messages a second
DISCORD_PER_SECOND = BOT_WINDOWS[0][0]  # the adapter's share of Discord's 50 requests a second
TELEGRAM_MESSAGES = frozenset({"sendMessage", "editMessageText", "editMessageReplyMarkup"})  # not drafts or typing
LOST_AFTER = 45.0  # seconds: an answer not complete by then never will be (its sends were given up on)


async def run(quick: bool) -> dict[str, Any]:
    conversations, turns = (100, 1) if quick else (500, 2)
    world = World(scale=1.0, tokens_per_second=MODEL_RATE, max_parallel=conversations)
    pool = conversations + POOL_SPARE  # core.llm sizes the Ollama client's pool to MAX_PARALLEL and a few spare
    async with world:
        telegram = world.add_chats("telegram-dm", conversations // 2)
        discord = world.add_chats("discord-dm", conversations - len(telegram))
        warm = world.add_chats("telegram-dm", 10) + world.add_chats("discord-dm", 10)
        profiled_telegram = world.add_chats("telegram-dm", min(40, conversations // 5))
        profiled_discord = world.add_chats("discord-dm", min(40, conversations // 5))
        await world.start_bot()
        await _talk(world, [("telegram-dm", c) for c in warm[:10]] + [("discord-dm", c) for c in warm[10:]], 1)

        world.ollama.max_active = 0
        streams, calls = len(world.ollama.streams), (len(world.telegram.calls), len(world.discord.calls))
        floods = len(world.telegram.flood_errors), len(world.discord.rate_limited)
        before, fakes_before = await world.tell({"cmd": "usage"}), time.process_time()
        began = asyncio.get_running_loop().time()
        chats = [("telegram-dm", c) for c in telegram] + [("discord-dm", c) for c in discord]
        async with sampling() as fakes_lag:
            done = await _talk(world, chats, turns)
        after, fakes_after = await world.tell({"cmd": "usage"}), time.process_time()

        peak = after["maxrss_kb"]  # before profiling, which keeps its own tables
        landed = [t for _, t in done if t is not None]
        wall = max(landed) - began
        tokens = sum(len(s.tokens) for s in world.ollama.streams[streams:])
        characters = sum(len(t) for s in world.ollama.streams[streams:] for _, t in s.tokens)
        cpu = after["cpu"] - before["cpu"]
        telegram_calls = sum("chat_id" in c.params for c in world.telegram.calls[calls[0] :])  # not the long polls
        sends = sum(c.method in TELEGRAM_MESSAGES for c in world.telegram.calls[calls[0] :])
        discord_calls = len(world.discord.calls) - calls[1]
        rates = {
            "the bot's CPU (one core)": cpu / wall,
            "the fakes' CPU (the benchmark's own core)": (fakes_after - fakes_before) / wall,
            f"the bot's Telegram budget ({TELEGRAM_PER_SECOND} messages/s)": sends / wall / TELEGRAM_PER_SECOND,
            f"the bot's Discord budget ({DISCORD_PER_SECOND} requests/s)": discord_calls / DISCORD_PER_SECOND / wall,
        }
        slots = {f"the Ollama client's connection pool ({pool})": world.ollama.max_active / pool}
        use = rates | slots
        # A pool that was never full held nothing back, however close it came.
        bottleneck = max(use if world.ollama.max_active >= pool else rates, key=use.__getitem__)

        await world.tell({"cmd": "profile", "on": True})
        await _talk(
            world, [("telegram-dm", c) for c in profiled_telegram] + [("discord-dm", c) for c in profiled_discord], 1
        )
        profile = await world.tell({"cmd": "profile", "on": False, "top": 10})

    by_platform = {kind: [t for k, t in done if k == kind] for kind in ("telegram-dm", "discord-dm")}
    return {
        "conversations": conversations,
        "turns_per_conversation": turns,
        "model_tokens_per_second_per_request": MODEL_RATE,
        "messages": len(done),
        "answers_never_shown_in_full": {k.split("-")[0]: v.count(None) for k, v in by_platform.items()},
        "wall_s": round(wall, 1),
        "messages_per_s": round(len(landed) / wall, 1),
        "messages_per_s_by_platform": {
            k.split("-")[0]: round(len(ok) / (max(ok) - began), 1)
            for k, v in by_platform.items()
            if (ok := [t for t in v if t is not None])
        },
        "tokens_relayed": tokens,
        "characters_relayed": characters,
        "bot_cpu_s": round(cpu, 2),
        "bot_cpu_s_per_1000_tokens": round(cpu / tokens * 1000, 4),
        "bot_cpu_ms_per_message": round(cpu / len(done) * 1000, 2),
        "messages_per_bot_cpu_s": round(len(done) / cpu, 1),  # the ceiling if the platforms did not limit
        "bot_peak_rss_mb": round(peak / 1024, 1),
        "429s": {
            "telegram": len(world.telegram.flood_errors) - floods[0],
            "discord": len(world.discord.rate_limited) - floods[1],
        },
        "event_loop_lag": {"bot": after["loop_lag"], "fakes (they time-stamp arrivals)": fakes_lag.take()},
        "429s_by_window": {
            "telegram": dict(Counter(f.scope for f in world.telegram.flood_errors[floods[0] :])),
            "discord": dict(
                Counter(
                    "global" if (c.response or {}).get("global") else "route"
                    for c in world.discord.rate_limited[floods[1] :]
                )
            ),
        },
        "platform_requests": {"telegram": telegram_calls, "discord": discord_calls},
        "telegram_messages_and_edits": sends,
        "model_streams_at_once_max": world.ollama.max_active,
        "utilisation": {k: round(v, 2) for k, v in use.items()},
        "first_bottleneck": bottleneck,
        "profile_cpu_share_by_package": profile["packages"],
        "profile_top_functions_by_own_time": profile["functions"],
    }


async def _talk(world: World, chats: list[tuple[Kind, int]], turns: int) -> list[tuple[Kind, float | None]]:
    """Every chat holds a conversation of `turns` messages at once: when each answer was complete, or None
    for one the learner never saw in full (the learner then writes again)."""

    async def converse(kind: Kind, chat: int) -> list[tuple[Kind, float | None]]:
        finished: list[tuple[Kind, float | None]] = []
        for _ in range(turns):
            question = world.question(kind, chat, chat, ANSWER_CHARS)
            await world.ask(question)
            try:
                finished.append((kind, await asyncio.wait_for(world.answered(question), LOST_AFTER)))
            except TimeoutError:
                finished.append((kind, None))
        return finished

    results = await asyncio.gather(*(converse(kind, chat) for kind, chat in chats))
    return [item for result in results for item in result]
