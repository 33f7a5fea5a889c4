"""Scenario 5: over a long conversation, how often the prompt starts with the previous one.

Ollama reuses its cache for the longest common prefix with the previous request, so a turn whose prompt
extends the last one costs only its new tokens; a turn that rewrites the start re-reads everything.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from core.settings import Settings
from core.tutor import Channel, Learner, Tutor
from tests.fake_ollama import FakeOllama

REPLY = "¡Qué interesante! Yo también fui al mercado ayer y compré muchas frutas. ¿Qué fruta te gusta más?"


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)  # the fake's own count: characters / 4


def _prompt_text(messages: list[dict[str, str]]) -> str:
    return "".join(f"<{m['role']}>{m['content']}" for m in messages)


async def run(quick: bool) -> dict[str, Any]:
    turns = 120 if quick else 300
    async with FakeOllama(responder=lambda messages: REPLY) as fake:
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                ollama_host=fake.url,
                db_path=Path(folder) / "bench.db",
                num_ctx=4096,
                num_predict=256,
            )
            tutor = await Tutor.open(settings)
            channel, learner = Channel("bench:dm"), Learner("u1", "Ana")
            async for _ in await tutor.start(channel, "spanish"):
                pass
            for n in range(turns):
                reply = await tutor.reply(
                    channel, learner, f"Mensaje {n}: ayer fui al mercado y compré manzanas rojas."
                )
                assert reply is not None
                async for _ in reply:
                    pass
            await tutor.close()
        prompts = [_prompt_text(r["messages"]) for r in fake.chat_requests[1:]]
    extends, reread, new = 0, [], []
    for previous, current in zip(prompts, prompts[1:], strict=False):
        common = 0
        limit = min(len(previous), len(current))
        while common < limit and previous[common] == current[common]:
            common += 1
        extends += current.startswith(previous)
        reread.append(_tokens(current[common:]))
        new.append(_tokens(current[len(previous) :]) if current.startswith(previous) else _tokens(current))
    trims = len(prompts) - 1 - extends
    return {
        "turns": turns,
        "num_ctx": 4096,
        "turns_extending_previous_prompt": round(extends / (len(prompts) - 1), 4),
        "context_trims": trims,
        "mean_prompt_tokens": round(sum(_tokens(p) for p in prompts) / len(prompts)),
        "mean_tokens_evaluated_per_turn": round(sum(reread) / len(reread), 1),
        "mean_new_tokens_per_turn": round(
            sum(_tokens(c[len(p) :]) for p, c in zip(prompts, prompts[1:], strict=False) if c.startswith(p))
            / max(1, extends),
            1,
        ),
    }
