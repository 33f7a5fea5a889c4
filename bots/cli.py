"""`polyglott`: run the chat bots, chat with the tutor in this terminal, check the setup, pull the model."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from signal import SIGINT, SIGTERM
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from core import logs
from core.retention import expiring
from core.scenes import SceneError
from core.settings import Settings
from core.tutor import Tutor

log = logging.getLogger("polyglott")

# An adapter serves until `stop` is set, then stops taking messages, gives replies in progress
# `settings.shutdown_grace` seconds (`Conversation.finish`), closes its platform client and returns.
Adapter = Callable[[Tutor, Settings, asyncio.Event], Awaitable[None]]
PLATFORMS = ("telegram", "discord")
TOKENS = {"telegram": "POLYGLOTT_TELEGRAM_TOKEN", "discord": "POLYGLOTT_DISCORD_TOKEN"}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="polyglott", description="A language tutor on a local model.")
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start every chat bot whose token is configured")
    run.add_argument(
        "--only",
        choices=PLATFORMS,
        help="start this platform alone (one process per platform, or several Discord processes split by shards)",
    )
    chat = commands.add_parser("chat", help="a lesson in this terminal")
    chat.add_argument("--language", "-l", help="the language to learn, e.g. spanish")
    chat.add_argument("--level", help="CEFR level, A1 to C2")
    chat.add_argument("--native", help="the language for explanations")
    doctor = commands.add_parser("doctor", help="check settings, Ollama, the model, the database and the tokens")
    doctor.add_argument(
        "--quick", action="store_true", help="no calls to Telegram or Discord (for a container health check)"
    )
    pull = commands.add_parser("pull", help="download the model through Ollama")
    pull.add_argument("model", nargs="?", help="the model to pull (default: POLYGLOTT_MODEL)")
    export = commands.add_parser("export", help="write everything kept about one learner as JSON (a data request)")
    export.add_argument(
        "--learner", required=True, help="the learner's id: telegram:user:123, discord:user:456, terminal:<user>"
    )
    export.add_argument("--out", type=Path, help="the file to write, readable by its owner only (default: stdout)")
    report = commands.add_parser("report", help="a class's report: per student, week by week (as /report)")
    report.add_argument("--channel", required=True, help="the class's channel id, e.g. telegram:-1001234567890")
    report.add_argument("--csv", type=Path, help="also write it as CSV to this file (the chart goes beside it)")
    report.add_argument("--weeks", type=_weeks, default=2, help="how many weeks, the latest first (default: 2)")
    return top


def _weeks(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 520:
        raise argparse.ArgumentTypeError("a number of weeks from 1 to 520")
    return int(value)


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


@contextlib.asynccontextmanager
async def retention(tutor: Tutor, settings: Settings) -> AsyncIterator[None]:
    """Old message text deleted now and then daily while the block runs: once per process, not per adapter."""
    task = asyncio.create_task(expiring(tutor.store, settings.retention_days))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def run(settings: Settings, only: str | None = None) -> int:
    """Serve every configured platform (or `only` that one) until SIGTERM or SIGINT; non-zero if an adapter
    failed."""
    from bots.pull import ensure_model

    chosen = adapters(settings)
    if only is not None:
        if only not in chosen:
            print(f"polyglott run --only {only}: {TOKENS[only]} is not set (see .env.example).", file=sys.stderr)
            return 2
        chosen = {only: chosen[only]}
    if not chosen:
        print(
            "No chat platform is configured: set POLYGLOTT_TELEGRAM_TOKEN or POLYGLOTT_DISCORD_TOKEN "
            "(see .env.example).\nTo try the tutor without a bot, run: polyglott chat --language spanish",
            file=sys.stderr,
        )
        return 2
    if not await ensure_model(settings):
        return 1
    tutor = await Tutor.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal in (SIGINT, SIGTERM):
        loop.add_signal_handler(signal, stop.set)

    async def serve(name: str, adapter: Adapter) -> bool:
        """One adapter; if it fails, the others stop too: a half-running bot would hide the failure."""
        try:
            await adapter(tutor, settings, stop)
        except Exception:
            log.exception("adapter failed", extra={"adapter": name})
            stop.set()
            return False
        return True

    try:
        log.info("starting", extra={"adapter": ",".join(chosen)})
        async with retention(tutor, settings):
            served = await asyncio.gather(*(serve(name, adapter) for name, adapter in chosen.items()))
    finally:
        log.info("stopping", extra={"adapter": ",".join(chosen)})
        for signal in (SIGINT, SIGTERM):
            loop.remove_signal_handler(signal)
        await tutor.close()  # waits up to `shutdown_grace` for a reply an adapter left running
    return 0 if all(served) else 1


async def chat(settings: Settings, args: argparse.Namespace) -> int:
    """A lesson in this terminal. SIGTERM lets a reply being written finish within `shutdown_grace` seconds;
    SIGINT (Ctrl-C, someone at the keyboard) cuts it off at once. Either way what was written is stored,
    marked cut if cut off, the database is closed cleanly and the exit status is 0: stopping is not failing."""
    from bots.terminal import Terminal

    tutor = await Tutor.open(settings)
    terminal = Terminal(tutor)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C stays a KeyboardInterrupt
        loop.add_signal_handler(SIGTERM, terminal.stop, settings.shutdown_grace)
        loop.add_signal_handler(SIGINT, terminal.stop, 0)
    try:
        async with retention(tutor, settings):
            await terminal.run(args.language, args.level, args.native)
    finally:
        with contextlib.suppress(NotImplementedError):
            for signal in (SIGINT, SIGTERM):
                loop.remove_signal_handler(signal)
        await tutor.close()
    return 0


async def doctor(settings: Settings, args: argparse.Namespace) -> int:
    from bots.doctor import doctor as check

    return await check(settings, quick=args.quick)


async def pull(settings: Settings, args: argparse.Namespace) -> int:
    from bots.pull import pull as fetch

    return await fetch(settings, args.model)


async def export(settings: Settings, args: argparse.Namespace) -> int:
    """Everything kept about one learner as JSON, to stdout or a file only its owner can read; 1 if unknown."""
    from core.export import UnknownLearner, dumps, export_learner
    from core.store import Store

    if settings.database_url is None and not await asyncio.to_thread(Path(settings.db_path).exists):
        print(UnknownLearner(args.learner), file=sys.stderr)  # no new, empty database file as a side effect
        return 1
    store = await Store.open(settings)
    try:
        data = await export_learner(store, args.learner)
    except UnknownLearner as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        await store.close()
    if args.out is None:
        sys.stdout.write(dumps(data))
    else:
        from bots.report import write_private

        await asyncio.to_thread(write_private, args.out, dumps(data).encode(), exclusive=False)
    return 0


async def report(settings: Settings, args: argparse.Namespace) -> int:
    from bots.report import report as class_report

    return await class_report(settings, args.channel, args.weeks, args.csv)


def secrets(settings: Settings) -> list[str]:
    """Every secret setting's value, for the log formatter to blank out wherever one turns up."""
    found = [value.get_secret_value() for value in vars(settings).values() if isinstance(value, SecretStr)]
    if settings.database_url is not None:  # the password alone, too: a driver's message may quote it so
        found.append(urlsplit(settings.database_url.get_secret_value()).password or "")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:  # one line per bad setting, never the values (a token could be one)
        from bots.doctor import invalid_settings

        if args.command == "doctor":
            return invalid_settings(error)
        invalid_settings(error, sys.stderr)
        return 2
    # Only the bots log as they go; the other commands talk to the person at the terminal.
    logs.configure(
        settings.log_level if args.command == "run" else "WARNING", secrets(settings), content=settings.log_content
    )
    try:
        if args.command == "run":
            return asyncio.run(run(settings, args.only))
        command = {"chat": chat, "doctor": doctor, "pull": pull, "export": export, "report": report}[args.command]
        return asyncio.run(command(settings, args))
    except KeyboardInterrupt:
        return 130
    except SceneError as error:  # an operator's scene file: which, and what is wrong with it
        print(f"polyglott: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
