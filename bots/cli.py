"""`polyglott`: run the chat bots, or chat with the tutor in this terminal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from signal import SIGINT, SIGTERM

from pydantic import ValidationError

from core import logs
from core.settings import Settings
from core.tutor import Tutor

log = logging.getLogger("polyglott")

# An adapter serves until `stop` is set, then stops taking messages, gives replies in progress
# `GRACE` seconds (`tutor.drain`), closes its platform client and returns.
Adapter = Callable[[Tutor, Settings, asyncio.Event], Awaitable[None]]
GRACE = 5.0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="polyglott", description="A language tutor on a local model.")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start every chat bot whose token is configured")
    chat = commands.add_parser("chat", help="a lesson in this terminal")
    chat.add_argument("--language", "-l", help="the language to learn, e.g. spanish")
    chat.add_argument("--level", help="CEFR level, A1 to C2")
    chat.add_argument("--native", help="the language for explanations")
    return top


def adapters(settings: Settings) -> dict[str, Adapter]:
    """The adapters to start: each imported only when its token is set."""
    found: dict[str, Adapter] = {}
    if settings.telegram_token is not None:
        from bots import telegram_bot

        found["telegram"] = telegram_bot.serve
    if settings.discord_token is not None:
        from bots import discord_bot

        found["discord"] = discord_bot.serve
    return found


async def run(settings: Settings) -> int:
    chosen = adapters(settings)
    if not chosen:
        print(
            "No chat platform is configured: set POLYGLOTT_TELEGRAM_TOKEN or POLYGLOTT_DISCORD_TOKEN "
            "(see .env.example).\nTo try the tutor without a bot, run: polyglott chat --language spanish",
            file=sys.stderr,
        )
        return 2
    tutor = await Tutor.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal in (SIGINT, SIGTERM):
        loop.add_signal_handler(signal, stop.set)
    try:
        log.info("starting", extra={"adapter": ",".join(chosen)})
        await asyncio.gather(*(serve(tutor, settings, stop) for serve in chosen.values()))
    finally:
        log.info("stopping", extra={"adapter": ",".join(chosen)})
        await tutor.close(GRACE)
    return 0


async def chat(settings: Settings, args: argparse.Namespace) -> int:
    from bots.terminal import chat as terminal_chat

    tutor = await Tutor.open(settings)
    try:
        await terminal_chat(tutor, args.language, args.level, args.native)
    finally:
        await tutor.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"Invalid settings:\n{error}", file=sys.stderr)
        return 2
    logs.configure("WARNING" if args.command == "chat" else settings.log_level)
    try:
        if args.command == "run":
            return asyncio.run(run(settings))
        return asyncio.run(chat(settings, args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
