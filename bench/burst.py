"""Scenario 2: a classroom burst. A class mentions the tutor in one Telegram group within 2 s while learners
write in DMs and Discord channels, the model streaming at 30 tokens/s per request, MAX_PARALLEL 4.

What the learners feel: whether every answer ends complete and exact, 429s, how often each answer is
edited, how far the text on screen lags what the model has written (staleness), and when the last student
sees a complete answer. The class group gets a row of its own: beside those figures, its 429s and the chat
messages it received for its students (fewer than students when one reply answers several), against the
targets of turn-taking in a busy group (`TARGETS`, set for the full run). Each rule gets a fresh bot process
and fresh chats; a rule still showing answers at the deadline is cut off there, and those answers count as
incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
from typing import Any

from bench.baselines import STRATEGIES
from bench.stats import percentile
from bench.timeline import Answer, answers, model_rate, positions
from bench.world import Question, World

MODEL_RATE = 30.0  # tokens per second, per request
MAX_PARALLEL = 4
STALENESS_STEP = 0.1  # platform seconds between two staleness samples
TARGETS = {"last_complete_s": 60.0, "429s": 0, "stale_s_p95": 8.0}  # the class group's row, at most


async def run(quick: bool) -> dict[str, Any]:
    if quick:
        scale, students, telegram_dms, discord_dms, channels, chars, deadline = 0.05, 8, 4, 4, 4, 300, 100.0
    else:
        scale, students, telegram_dms, discord_dms, channels, chars, deadline = 0.05, 30, 10, 10, 10, 400, 900.0
    rng = random.Random(6)
    world = World(scale=scale, tokens_per_second=MODEL_RATE / scale, max_parallel=MAX_PARALLEL)
    everyone: dict[str, dict[str, Any]] = {}
    group_only: dict[str, dict[str, Any]] = {}
    rates: dict[str, float] = {}
    async with world:
        writers = world.add_discord_students(channels)
        for name in STRATEGIES:
            (group,) = world.add_chats("telegram-group", 1)
            plan = [world.question("telegram-group", group, 2000 + n, chars) for n in range(students)]
            plan += [world.question("telegram-dm", c, c, chars) for c in world.add_chats("telegram-dm", telegram_dms)]
            plan += [world.question("discord-dm", c, 0, chars) for c in world.add_chats("discord-dm", discord_dms)]
            in_channels = world.add_chats("discord-channel", channels)
            plan += [world.question("discord-channel", c, w, chars) for c, w in zip(in_channels, writers, strict=True)]
            offsets = sorted(rng.uniform(0, 2.0) for _ in plan)  # all within 2 s, the class in random order
            rng.shuffle(plan)
            await world.start_bot(name)
            before = await world.tell({"cmd": "usage"})
            calls, streams = positions(world)
            telegram_floods = len(world.telegram.flood_errors)
            floods = telegram_floods + len(world.discord.rate_limited)
            began = asyncio.get_running_loop().time()
            for offset, question in zip(offsets, plan, strict=True):
                await asyncio.sleep(max(0.0, began + offset * scale - asyncio.get_running_loop().time()))
                await world.ask(question)
            with contextlib.suppress(TimeoutError):  # measured as it stands: unfinished answers count as incomplete
                await world.wait_answered(plan, within=deadline * scale)
            after = await world.tell({"cmd": "usage"})
            await world.stop_bot(kill=True)
            limited = len(world.telegram.flood_errors) + len(world.discord.rate_limited) - floods
            found = answers(world, calls_from=calls, streams_from=streams)
            shown = world.shown(plan)
            cpu = after["cpu"] - before["cpu"]
            everyone[name] = _metrics(plan, found, shown, scale, began, limited, cpu)
            rates[name] = model_rate(world, streams, scale)
            in_group = [q for q in plan if q.kind == "telegram-group"]
            group_limited = sum(e.chat_id == group for e in world.telegram.flood_errors[telegram_floods:])
            group_only[name] = _metrics(in_group, found, shown, scale, began, group_limited)
            group_only[name] |= {
                "chat_messages": len(world.telegram.messages.get(group, {})),
                "students": students,
                "answered_again": sum((found.get(q.tag) or Answer(q.tag)).streams > 1 for q in in_group),
            }
            await world.settle()
    ours = group_only["ours"]
    return {
        "setup": {
            "telegram_group_students": students,
            "telegram_dms": telegram_dms,
            "discord_dms": discord_dms,
            "discord_channels": channels,
            "answer_characters": chars,
            "model_tokens_per_second": MODEL_RATE,
            "model_tokens_per_second_measured": rates,
            "max_parallel": MAX_PARALLEL,
            "time_scale": scale,
            "deadline_platform_s": deadline,
        },
        "tables": {
            f"classroom burst, all {len(plan)} answers (platform seconds)": everyone,
            f"the Telegram class group's {students} answers": group_only,
        },
        "class_group_targets": {
            **{f"{key}_max": value for key, value in TARGETS.items()},
            "met_by_ours": all(ours[key] is not None and ours[key] <= value for key, value in TARGETS.items()),
        },
    }


def _metrics(
    questions: list[Question],
    found: dict[int, Answer],
    shown: dict[int, str],
    scale: float,
    began: float,
    limited: int | None = None,
    cpu: float | None = None,
) -> dict[str, Any]:
    """One rule's row: completeness, 429s, edits, staleness and the last complete answer (platform seconds)."""
    exact = sum(shown.get(q.tag) == q.answer for q in questions)
    rows = [found.get(q.tag) or Answer(q.tag) for q in questions]
    edits = [a.edits for a in rows]
    step, until = STALENESS_STEP * scale, asyncio.get_running_loop().time()
    samples = [s for q, a in zip(questions, rows, strict=True) for s in a.staleness(len(q.answer), step, until)]
    chars = [float(c) for c, _ in samples]
    behind = [s / scale for _, s in samples]
    completed = [a.complete_at(len(q.answer)) for q, a in zip(questions, rows, strict=True)]
    last = max((t for t in completed if t is not None), default=None)
    metrics: dict[str, Any] = {"complete_exact": f"{exact}/{len(questions)}"}
    if limited is not None:
        metrics["429s"] = limited
    metrics |= {
        "edits_mean": round(statistics.fmean(edits), 1),
        "edits_max": max(edits),
        "updates_mean": round(statistics.fmean(a.sends + a.edits + a.drafts for a in rows), 1),
        "stale_chars_mean": round(statistics.fmean(chars), 1) if chars else None,
        "stale_chars_p95": round(percentile(chars, 95)),
        "stale_s_mean": round(statistics.fmean(behind), 2) if behind else None,
        "stale_s_p95": round(percentile(behind, 95), 2),
        "last_complete_s": round((last - began) / scale, 1) if last is not None and exact == len(questions) else None,
    }
    if cpu is not None:
        metrics["bot_cpu_s"] = round(cpu, 2)
    return metrics
