"""`polyglott report`: a class's report at the terminal, for the operator: what a teacher's `/report` shows.

The figures come from `core.report`, in the terminal's language: the table is printed, the CSV written where
asked, and the chart written as a PNG next to it (or in the working directory), whose path is printed. The
files are readable by their owner only: they name students. Nothing is written into the database, which is
not even created when it does not exist yet (the report is then empty).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console

from bots.terminal import ChatMarkdown, figures_table, terminal_locale
from core import report as reports
from core.chart import render_class_png_async
from core.conversation import language_of_locale
from core.i18n import Voice
from core.languages import find_language
from core.settings import Settings
from core.store import Store

CHART = "polyglott-report.png"  # the chart's name in the working directory, without --csv
WIDE = 10_000  # characters a line, where no terminal says how wide it is


async def report(
    settings: Settings, channel: str, weeks: int, csv: Path | None = None, out: TextIO | None = None
) -> int:
    """Print `channel`'s report of `weeks` weeks, write its CSV to `csv` (if given) and its chart beside it."""
    console = Console(file=out or sys.stdout, highlight=False)
    if not console.is_terminal:  # a file or a pipe: the whole table, however wide, and every path on one line
        console = Console(file=out or sys.stdout, highlight=False, width=WIDE)
    app = language_of_locale(terminal_locale())
    say = Voice(app.code if app else find_language(settings.default_native_language).language.code)
    now = time.time()
    if settings.database_url is not None or await asyncio.to_thread(Path(settings.db_path).exists):
        store = await Store.open(settings)
        try:
            figures = await reports.gather(store, channel, now, weeks)
        finally:
            await store.close()
    else:
        figures = reports.report(reports.Rows(), channel, None, now, weeks)
    if figures.students:
        console.print(figures_table(reports.table(figures, say), reports.title(figures, say)))
    else:
        console.print(ChatMarkdown(reports.describe(figures, say)))
    if csv is not None:
        console.print(
            str(await asyncio.to_thread(write_private, csv, reports.to_csv(figures), exclusive=False)), soft_wrap=True
        )
    png = await render_class_png_async(reports.chart_data(figures, say), reports.chart_text(figures, say))
    chart = csv.with_suffix(".png") if csv else Path(CHART)
    console.print(str(await asyncio.to_thread(write_private, chart, png, exclusive=True)), soft_wrap=True)
    return 0


def write_private(path: Path, data: bytes, *, exclusive: bool) -> Path:
    """`data` at `path`, readable by its owner only. Exclusive: never over an existing file, but at
    `stem-1.ext`, `stem-2.ext`… (the chart, whose name the operator did not choose); else replacing it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    for attempt in range(10_000 if exclusive else 1):
        target = path if attempt == 0 else path.with_name(f"{path.stem}-{attempt}{path.suffix}")
        try:
            descriptor = os.open(target, flags, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        return target.resolve()
    raise FileExistsError(path)
