"""Scenario 1: how long after the model's first token the learner sees the first words of the answer.

Measured from the fake model writing its first token to the fake platform receiving the first text of
that answer (a Telegram draft, a message or an edit): the bot's own overhead, plus whatever its pacing rule
makes the words wait. Each answer is asked in a fresh chat, so no earlier answer's budget is in the way,
and questions come at a pace well inside the platforms' global budgets for our rule.

Editing on every chunk never drains its 429s at this pace (each answer waits out flood after flood while
holding its model slot), so that rule runs in batches, each on a fresh bot process once the last one's
answers have started: its first texts are measured under its own load, but not behind an endless backlog.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.baselines import STRATEGIES
from bench.stats import summary_ms
from bench.timeline import answers, model_rate, positions
from bench.world import KINDS, Question, World

MODEL_RATE = 30.0  # tokens per second, a 7B model on a consumer GPU
ANSWER_CHARS = 190  # about 48 tokens: long enough for every rule to show something before the end
GAP = 0.5  # platform seconds between two questions of one kind: 8 a second in all, 4 on each platform
BATCH = 20  # questions of each kind per bot process, for a rule that cannot drain: 80 model streams


async def run(quick: bool) -> dict[str, Any]:
    per_kind = 20 if quick else 200
    scale = 0.25 if quick else 1.0  # quick mode shrinks the platforms' and the model's clock alike
    async with World(scale=scale, tokens_per_second=MODEL_RATE / scale, max_parallel=100) as world:
        chats = {(name, kind): world.add_chats(kind, per_kind) for name in STRATEGIES for kind in KINDS}
        starts = len(STRATEGIES) - 1 + -(-per_kind // BATCH)
        warm_chats = {kind: world.add_chats(kind, starts) for kind in KINDS}
        students = world.add_discord_students(1)
        tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        limited: dict[str, int] = {}
        rates: dict[str, float] = {}
        for name in STRATEGIES:
            drains = name != "every-chunk"
            calls, streams = positions(world)
            floods = len(world.telegram.flood_errors) + len(world.discord.rate_limited)
            asked: list[Question] = []
            for start in range(0, per_kind, per_kind if drains else BATCH):
                await world.start_bot(name)
                warm = [world.question(kind, warm_chats[kind].pop(), students[0], ANSWER_CHARS) for kind in KINDS]
                for question in warm:  # a fresh process's first answers pay for connections and caches
                    await world.ask(question)
                await world.wait_first_shown(warm, within=30)
                batch = []
                for i in range(start, min(per_kind, start + (per_kind if drains else BATCH))):
                    for kind in KINDS:
                        user = students[0] if kind == "discord-channel" else 1000 + i
                        question = world.question(kind, chats[name, kind][i], user, ANSWER_CHARS)
                        await world.ask(question)
                        batch.append(question)
                    await asyncio.sleep(GAP * scale)
                if drains:  # the next rule must find the platforms' global budgets as fresh as this one did
                    await world.wait_answered(warm + batch, within=120 + 60 * scale)
                else:
                    await world.wait_first_shown(batch, within=120 + 60 * scale)
                await world.stop_bot(kill=True)
                await world.settle()
                asked += batch
            limited[name] = len(world.telegram.flood_errors) + len(world.discord.rate_limited) - floods
            found = answers(world, calls_from=calls, streams_from=streams)
            rates[name] = model_rate(world, streams, scale)
            for kind in KINDS:
                delays = []
                for q in asked:
                    answer = found.get(q.tag)
                    if q.kind == kind and answer and answer.first_token is not None and answer.first_shown is not None:
                        delays.append(answer.first_shown - answer.first_token)
                tables[kind][name] = summary_ms(delays)
    return {
        "setup": {
            "answers_per_kind_and_rule": per_kind,
            "questions_per_second": round(len(KINDS) / GAP, 1),
            "model_tokens_per_second": MODEL_RATE,
            "model_tokens_per_second_measured": rates,
            "answer_characters": ANSWER_CHARS,
            "time_scale": scale,
            "note": "real milliseconds; at a time scale below 1 the rules' own waits shrink with the clock",
        },
        "tables": {f"first visible text, {kind} (ms)": rows for kind, rows in tables.items()},
        "429s_per_rule": limited,
    }
