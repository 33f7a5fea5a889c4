"""Scenario 5: over a long conversation, how often the prompt starts with the previous one.

Ollama reuses its cache for the longest common prefix with the previous request, so a turn whose prompt
extends the last one costs only its new tokens; a turn that rewrites the start re-reads everything.
"""

from __future__ import annotations

import itertools
import os
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
    extends, evaluated, new = 0, [], []
    for previous, current in itertools.pairwise(prompts):
        common = os.path.commonprefix([previous, current])  # noqa: RUF071 (characters are what is meant)
        evaluated.append(_tokens(current[len(common) :]))
        if current.startswith(previous):
            extends += 1
            new.append(_tokens(current[len(previous) :]))
    return {
        "turns": turns,
        "num_ctx": settings.num_ctx,
        "turns_extending_previous_prompt": round(extends / (len(prompts) - 1), 4),
        "context_trims": len(prompts) - 1 - extends,
        "mean_prompt_tokens": round(sum(_tokens(p) for p in prompts) / len(prompts)),
        "mean_tokens_evaluated_per_turn": round(sum(evaluated) / len(evaluated), 1),
        "mean_new_tokens_per_turn": round(sum(new) / max(1, len(new)), 1),
    }
