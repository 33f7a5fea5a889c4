"""The bot under test, in a process of its own, as `polyglott run` would run it against the real services.

A separate process keeps the bot's CPU and memory apart from the fakes', and lets the two use both cores.
The benchmark starts it with the settings in the environment (POLYGLOTT_*) and talks to it over stdin and
stdout, one JSON object a line:

    → {"cmd": "relay", "name": "every-chunk"}   show replies with another pacing rule from now on
    → {"cmd": "usage"}                          ← {"cpu": …, "maxrss_kb": …, "time": …, "loop_lag": {…}}
                                                (the loop's lag since the last "usage")
    → {"cmd": "profile", "on": true}            start a CPU-time cProfile; `"on": false` stops it
                                                ← {"profiled_cpu_s": …, "packages": {…}, "functions": [...]}
    → {"cmd": "stop"}                           stop serving, like SIGTERM ← {"ok": true}, then at exit
                                                {"exited": true, "cpu": …, "maxrss_kb": …, "time": …}

It prints `{"ready": true}` once both adapters are connected; `--relay` picks the rule to start with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench.baselines import strategies
from bench.lag import LoopLag
from bots import discord_bot, telegram_bot
from core.answer import using_relay
from core.settings import Settings
from core.tutor import Tutor
from tests.fake_discord import patch_discord_urls

ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def usage() -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS of this process so far."""
    return {
        "cpu": time.process_time(),
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "time": time.monotonic(),
    }


def profile_summary(profile: cProfile.Profile, count: int) -> dict[str, Any]:
    """Where the CPU went: own time by package, and the functions with the most own time."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(own for (_, _, own, _, _) in stats.values()) or 1.0
    packages: dict[str, float] = {}
    functions = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.items():
        package = _package(path)
        packages[package] = packages.get(package, 0.0) + own
        where = f"{path.split('/')[-1]}:{line}({name})" if path != "~" else name
        functions.append({"function": where, "package": package, "calls": calls, "own_s": own, "cum_s": cumulative})
    functions.sort(key=lambda row: row["own_s"], reverse=True)
    return {
        "profiled_cpu_s": round(total, 2),
        "packages": {k: round(v / total, 3) for k, v in sorted(packages.items(), key=lambda kv: -kv[1])[:count]},
        "functions": [
            row | {"own_s": round(row["own_s"], 3), "cum_s": round(row["cum_s"], 3)} for row in functions[:count]
        ],
    }


def _package(path: str) -> str:
    """`discord`, `telegram`, `core`, `asyncio`…: the top-level package a profiled function lives in."""
    if path.startswith("<frozen "):
        return "stdlib " + path.removeprefix("<frozen ").split(".")[0].rstrip(">")
    if path == "~" or path.startswith("<"):
        return "builtins (C)"
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if path.startswith(ROOT):
        return path[len(ROOT) :].split("/")[0]
    if "python3" in path:
        return "stdlib " + path.split("/lib/python3")[1].split("/")[1].removesuffix(".py")
    return path


class Bot:
    """Both adapters on one tutor, serving until told to stop."""

    def __init__(self, settings: Settings, scale: float) -> None:
        self.settings = settings
        self.scale = scale
        self.relays = strategies(scale)
        self.stack = contextlib.ExitStack()
        self.stop = asyncio.Event()
        self.profile: cProfile.Profile | None = None
        self.lag = LoopLag()

    async def run(self, discord_api: str, discord_gateway: str) -> None:
        tutor = await Tutor.open(self.settings)
        self.lag.start()
        telegram = asyncio.create_task(telegram_bot.serve(tutor, self.settings, self.stop, time_scale=self.scale))
        client = discord_bot.build_bot(tutor, self.settings, time_scale=self.scale)
        client._connection.guild_ready_timeout = 0.05  # the fake sends every guild at once, as in the tests
        with patch_discord_urls(discord_api, discord_gateway):
            assert self.settings.discord_token is not None
            await client.login(self.settings.discord_token.get_secret_value())
            gateway = asyncio.create_task(client.connect(reconnect=False))
            await client.wait_until_ready()
            self.say({"ready": True})
            commands = asyncio.create_task(self.listen())
            await self.stop.wait()
            await client.conversation.finish(1.0)
            await client.close()
            await asyncio.gather(telegram, gateway, return_exceptions=True)
            commands.cancel()
        self.stack.close()
        await self.lag.stop()
        await tutor.close()

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            self.say(self.handle(json.loads(line)))
        self.stop.set()  # the benchmark went away

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        match command["cmd"]:
            case "relay":
                self.stack.close()
                self.stack.enter_context(using_relay(self.relays[command["name"]]))
                return {"ok": True}
            case "usage":
                return usage() | {"loop_lag": self.lag.take()}
            case "profile" if command["on"]:
                self.profile = cProfile.Profile(time.process_time)  # CPU time: waiting in epoll is not cost
                self.profile.enable()
                return {"ok": True}
            case "profile":
                assert self.profile is not None
                self.profile.disable()
                return profile_summary(self.profile, command.get("top", 12))
            case "stop":
                self.stop.set()
                return {"ok": True}
        raise ValueError(f"unknown command {command!r}")

    @staticmethod
    def say(message: dict[str, Any]) -> None:
        print(json.dumps(message), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.botproc")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--discord-api", required=True)
    parser.add_argument("--discord-gateway", required=True)
    parser.add_argument("--relay", default="ours", help="the pacing rule to start with (bench/baselines.py)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # only what the benchmark set
    bot = Bot(settings, args.scale)
    bot.handle({"cmd": "relay", "name": args.relay})
    asyncio.run(bot.run(args.discord_api, args.discord_gateway))
    Bot.say({"exited": True, **usage()})


if __name__ == "__main__":
    main()
