"""`polyglott pull`, and AUTO_PULL at start: fetch a model through Ollama, showing how far it has got."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from core.engine import open_model
from core.errors import ModelMissing, OllamaUnavailable, TutorError
from core.llm import Model, Progress
from core.settings import Settings

log = logging.getLogger("polyglott.pull")

# The bar is drawn by hand rather than with rich or tqdm: it is one line of text, it must also degrade to
# plain log lines (docker logs, journald, a pipe), and the image that classrooms run stays one dependency lighter.
BAR_WIDTH = 30


def size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def describe(step: Progress) -> str:
    """A step as words: `pulling 3f2a1b4c5d6e  52% of 4.4 GB`, or just the status."""
    if step.fraction is None:
        return step.status
    return f"{step.status} {step.fraction:4.0%} of {size(step.total)}"


async def milestones(steps: AsyncIterator[Progress], percent: int = 10) -> AsyncIterator[Progress]:
    """Only the steps worth a line of their own: a new status, or another `percent` of a layer downloaded.

    Ollama reports progress many times a second; a log needs a dozen lines per layer, not thousands.
    """
    status: str | None = None
    shown = -1  # the last bucket of `percent` shown for this status
    async for step in steps:
        fraction = step.fraction
        new_status = step.status != status
        if new_status:
            status, shown = step.status, -1
        if fraction is None:
            if new_status:
                yield step
            continue
        bucket = int(fraction * 100) // percent
        if bucket > shown:
            shown = bucket
            yield step


class Bar:
    """Progress on a terminal: one line per status, the download's line redrawn in place."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._status: str | None = None
        self._percent = -1  # drawn for this status; Ollama reports far more often than a percent changes
        self._open = False  # a line is drawn without its newline yet

    def show(self, step: Progress) -> None:
        fraction = step.fraction
        if step.status != self._status:
            self.end_line()
            self._status, self._percent = step.status, -1
            if fraction is None:
                self.out.write(step.status + "\n")
        if fraction is not None and int(fraction * 100) != self._percent:
            self._percent = int(fraction * 100)
            filled = round(fraction * BAR_WIDTH)
            bar = "█" * filled + "░" * (BAR_WIDTH - filled)
            done = f"{size(step.completed)} / {size(step.total)}"
            self.out.write(f"\r{step.status} [{bar}] {fraction:4.0%}  {done:<22}")
            self._open = True
        self.out.flush()

    def end_line(self) -> None:
        if self._open:
            self.out.write("\n")
            self._open = False


async def pull(settings: Settings, name: str | None = None, out: TextIO | None = None) -> int:
    """Pull `name` (default: the configured model); 0 once it is installed, 1 with the reason otherwise."""
    name = name or settings.model
    out = out or sys.stdout
    if settings.backend == "openai":
        return await served(settings, name, out)
    model = Model(settings)
    interactive = out.isatty()
    bar = Bar(out)
    try:
        steps = model.pull(name)
        async for step in steps if interactive else milestones(steps):
            if interactive:
                bar.show(step)
            else:
                out.write(describe(step) + "\n")
                out.flush()
    except TutorError as error:
        bar.end_line()
        out.write(f"✗ {error}\n")
        return 1
    finally:
        await model.close()
    bar.end_line()
    out.write(f"✓ {name} is installed.\n")
    if name != settings.model:
        out.write(f"  To tutor with it, set POLYGLOTT_MODEL={name} (now {settings.model}).\n")
    return 0


async def served(settings: Settings, name: str, out: TextIO) -> int:
    """POLYGLOTT_BACKEND=openai: there is nothing to download, the engine loads its models itself; say whether it
    serves `name`. 0 if it does."""
    model = open_model(settings)
    try:
        listed = await model.installed(name)
    except TutorError as error:
        out.write(f"✗ {error}\n")
        return 1
    finally:
        await model.close()
    where = settings.openai_base_url
    if not listed:
        out.write(
            f"✗ {name} is not served at {where}. With POLYGLOTT_BACKEND=openai the engine loads its models itself, "
            f"so there is nothing to pull: start it with this model (e.g. `vllm serve {name}`).\n"
        )
        return 1
    out.write(f"✓ {name} is served at {where}; the engine loads its models itself, so there is nothing to pull.\n")
    if name != settings.model:
        out.write(f"  To tutor with it, set POLYGLOTT_MODEL={name} (now {settings.model}).\n")
    return 0


async def ensure_model(settings: Settings) -> bool:
    """Before `polyglott run` starts the bots: is the model there, or pulled now when AUTO_PULL is on?

    An Ollama that is down is no reason to refuse to start: it may come up later, and until then
    learners are told it is unavailable. A missing model, though, would fail every single reply.
    """
    model = open_model(settings)
    try:
        if await model.installed():
            return True
        if settings.backend == "openai":  # nothing to pull: the engine loads its models itself
            print(
                f"The model {settings.model} is not served at {settings.openai_base_url}. Start the engine with it, "
                "or set POLYGLOTT_MODEL to a model it serves (`polyglott doctor` lists them).",
                file=sys.stderr,
            )
            return False
        if not settings.auto_pull:
            print(
                f"{ModelMissing(settings.model)}\nInstall it with `polyglott pull`, "
                "or set POLYGLOTT_AUTO_PULL=true to pull it at start.",
                file=sys.stderr,
            )
            return False
        log.info("model %s is not installed; pulling it (POLYGLOTT_AUTO_PULL)", settings.model)
        async for step in milestones(model.pull(), percent=25):
            log.info("pulling %s: %s", settings.model, describe(step))
        log.info("model %s installed", settings.model)
        return True
    except OllamaUnavailable:
        log.warning("the model server at %s is unreachable; learners are told so until it answers", model.host)
        return True
    except TutorError as error:
        log.error("could not pull the model: %s", error)
        return False
    finally:
        await model.close()
