"""`polyglott chat` end to end: a real subprocess talking to the fake Ollama over HTTP."""

from __future__ import annotations

import asyncio
import codecs
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_ollama import FakeOllama
from tests.fake_ollama import Reply as Script

pytestmark = pytest.mark.slow

PROMPT = "you> "
ROOT = str(Path(__file__).resolve().parents[1])


class Session:
    """A running `polyglott chat`, read up to each prompt."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    async def read_until(self, marker: str, seconds: float = 15) -> str:
        assert self.process.stdout is not None
        start = len(self.output)
        async with asyncio.timeout(seconds):
            while marker not in self.output[start:]:
                chunk = await self.process.stdout.read(1)
                if not chunk:
                    raise AssertionError(f"process ended; output so far:\n{self.output}")
                self.output += self._decoder.decode(chunk)
        return self.output[start:]

    async def send(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        return await self.read_until(PROMPT)

    async def quit(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(b"/quit\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(self.process.wait(), 15)


async def start_chat(ollama: FakeOllama, home: Path, *args: str) -> Session:
    env = {
        **os.environ,
        "POLYGLOTT_OLLAMA_HOST": ollama.url,
        "POLYGLOTT_DB_PATH": str(home / "polyglott.db"),
        "POLYGLOTT_MODEL": "qwen2.5:7b",
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "chat", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=home, env={**env, "PYTHONPATH": ROOT},
    )  # fmt: skip
    return Session(process)


@pytest.fixture
async def session(ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[Session]:
    ollama.script(Script("¡Hola! Vamos a hablar de comida. ¿Qué te gusta comer?"))
    chat = await start_chat(ollama, tmp_path, "--language", "spanish", "--level", "A1")
    await chat.read_until(PROMPT)
    yield chat
    if chat.process.returncode is None:
        chat.process.kill()
        await chat.process.wait()


async def test_the_lesson_opens_in_the_target_language(session: Session, ollama: FakeOllama) -> None:
    assert "tutor> ¡Hola! Vamos a hablar de comida." in session.output
    assert "Spanish" in ollama.chat_requests[0]["messages"][0]["content"]
    assert await session.quit() == 0


async def test_tokens_appear_while_the_model_is_still_writing(session: Session, ollama: FakeOllama) -> None:
    ollama.script(Script("Me gusta mucho la paella con verduras y arroz.", delay=0.3))
    assert session.process.stdin is not None
    session.process.stdin.write(b"Me gusta la pizza\n")
    await session.read_until("Me gusta")
    assert ollama.active == 1, "the first words should show before the model has finished"
    await session.read_until(PROMPT)
    assert "arroz." in session.output


async def test_commands_work_typed(session: Session) -> None:
    assert "Level set to B1" in await session.send("/level b1")
    assert "Learning Spanish at level B1" in await session.send("/status")
    assert "German" in await session.send("/native deutsch")
    assert "/learn" in await session.send("/help")
    assert "forgotten" in await session.send("/reset")
    assert "Did you mean" in await session.send("/learn spnsh xx")
    assert await session.quit() == 0


async def test_history_persists_across_runs(ollama: FakeOllama, tmp_path: Path, session: Session) -> None:
    await session.send("Me llamo Ana")
    assert await session.quit() == 0

    again = await start_chat(ollama, tmp_path)
    intro = await again.read_until(PROMPT)
    assert "Learning Spanish at level A1" in intro
    await again.send("¿Cómo me llamo?")
    assert any("Me llamo Ana" in m["content"] for m in ollama.chat_requests[-1]["messages"])
    assert await again.quit() == 0


async def test_ollama_down_is_one_clear_line_and_the_chat_goes_on(session: Session, ollama: FakeOllama) -> None:
    await ollama.stop()
    answer = await session.send("Hola")
    assert "Is Ollama running?" in answer and "Traceback" not in answer
    await ollama.start()
    ollama.script(Script("¡Aquí estoy!"))
    assert "¡Aquí estoy!" in await session.send("¿Hola?")
    assert await session.quit() == 0


async def test_a_missing_model_names_the_pull_command(session: Session, ollama: FakeOllama) -> None:
    ollama.remove_model("qwen2.5:7b")
    answer = await session.send("Hola")
    assert "ollama pull qwen2.5:7b" in answer
    assert await session.quit() == 0


async def test_end_of_input_leaves_cleanly(session: Session) -> None:
    assert session.process.stdin is not None
    session.process.stdin.close()
    assert await asyncio.wait_for(session.process.wait(), 15) == 0
    assert "Traceback" not in session.output
