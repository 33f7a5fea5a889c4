"""The progress chart as a PNG: weekly activity beside this week's and last week's mistakes by category.
A class's chart (`/report`) is the same figure, with how many students wrote over each week's bar.

Matplotlib's object-oriented API on the Agg canvas, never pyplot (its global figure manager is not
thread-safe). The text arrives rendered (`ChartText`), so this module knows no reader and no catalog.

Time is text: matplotlib 3.11 shapes every label with libraqm, ~1.2-2 ms each on the dev machine (2 cores),
so a chart of ~27 labels drawn on a fresh figure took 113 ms (median of 100; p99 126 ms with the garbage
collector off, 240 ms with it on). One figure built once and re-filled for each chart skips building the
axes and their ticks and reuses the text-metrics cache (84 ms); glyphs without hinting, 77 ms. So one
`_Canvas` is kept, used under a lock (renders are serial: a matplotlib figure is not to be shared between
threads): ~80 ms a chart (median of 100; p99 118-184 ms with a year of rows alive and the collector on).
Importing matplotlib costs ~0.45 s and the first render ~0.1 s more (the very first import on a machine also
builds the font cache, seconds, once): `warm()` pays both at start-up, 0.55-0.65 s.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.container import BarContainer
    from matplotlib.legend import Legend
    from matplotlib.text import Text

WIDTH, HEIGHT, DPI = 800, 450, 100  # pixels: a chat photo, legible on a phone
MAX_CATEGORIES = 5  # bars in the mistakes panel; more would be unreadable at this size
_ACTIVITY, _THIS, _LAST = "#1c7ed6", "#d9480f", "#adb5bd"
_BAR = 0.19  # half the height of one mistakes bar: two per category fill 76% of a row


@dataclass(frozen=True)
class ChartData:
    """What the chart shows: `weeks` (labels, oldest first) with `messages` each; mistakes per category
    (the most frequent first), this week's and last week's."""

    weeks: tuple[str, ...]
    messages: tuple[int, ...]
    categories: tuple[str, ...]
    this_week: tuple[int, ...]
    last_week: tuple[int, ...]


@dataclass(frozen=True)
class ClassChartData:
    """A class's chart (`/report`): like `ChartData`, with over each week's bar how many `students` wrote."""

    weeks: tuple[str, ...]
    messages: tuple[int, ...]
    students: tuple[int, ...]
    categories: tuple[str, ...]
    this_week: tuple[int, ...]
    last_week: tuple[int, ...]


@dataclass(frozen=True)
class ChartText:
    """The chart's words, already in the reader's language."""

    title: str
    activity: str  # the left panel's title: messages per week
    mistakes: str  # the right panel's title: mistakes by category
    this_week: str
    last_week: str
    no_mistakes: str  # shown in the right panel when there is nothing to plot


def render_png(data: ChartData, text: ChartText) -> bytes:
    """The chart as PNG bytes (~80 ms once warm: call it through `render_png_async` from the event loop)."""
    return _render(data, text, ())


async def render_png_async(data: ChartData, text: ChartText) -> bytes:
    """`render_png` in a worker thread, off the event loop."""
    return await asyncio.to_thread(render_png, data, text)


def render_class_png(data: ClassChartData, text: ChartText) -> bytes:
    """A class's chart as PNG bytes: the same figure as a learner's, each week's bar labelled with how many
    students wrote that week, if any (call it through `render_class_png_async` from the event loop)."""
    bars = ChartData(data.weeks, data.messages, data.categories, data.this_week, data.last_week)
    return _render(bars, text, tuple(str(n) if n else "" for n in data.students))


async def render_class_png_async(data: ClassChartData, text: ChartText) -> bytes:
    """`render_class_png` in a worker thread, off the event loop."""
    return await asyncio.to_thread(render_class_png, data, text)


def _render(data: ChartData, text: ChartText, over: tuple[str, ...]) -> bytes:
    """One chart on the one figure, under the lock."""
    global _canvas
    with _lock:
        if _canvas is None:
            _canvas = _Canvas()
        try:
            return _canvas.render(data, text, over)
        except BaseException:
            _canvas = None  # half re-filled: build a fresh one next time
            raise


def warm() -> None:
    """Import matplotlib and render once now (0.55-0.65 s), at start-up, rather than on a learner's /progress."""
    render_png(ChartData(("",), (0,), ("",), (1,), (0,)), ChartText("", "", "", "", "", ""))


class _Canvas:
    """One figure with both panels, re-filled for each chart: the parts that stay are built once."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        from matplotlib.ticker import MaxNLocator

        self.figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
        FigureCanvasAgg(self.figure)
        self.title = self.figure.suptitle("", fontsize=13, fontweight="bold")
        # Fixed margins: a layout engine (constrained, tight) measures every label first, doubling the time.
        self.activity = self.figure.add_axes((0.05, 0.18, 0.50, 0.70))
        self.mistakes = self.figure.add_axes((0.74, 0.18, 0.24, 0.70))
        # Few ticks: every tick label costs its ~2 ms.
        self.activity.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        self.mistakes.xaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        for axes in (self.activity, self.mistakes):
            axes.spines[["top", "right"]].set_visible(False)
        self.legend: Legend = self.mistakes.legend(
            (Patch(color=_THIS), Patch(color=_LAST)),
            ("", ""),
            fontsize=8,
            frameon=False,
            ncols=2,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08),
        )
        self.empty: Text = self.mistakes.text(
            0.5, 0.5, "", ha="center", va="center", fontsize=9, transform=self.mistakes.transAxes
        )
        self.bars: list[BarContainer] = []
        self.over: list[Text] = []  # the labels over the activity bars (a class's chart)
        self.margin = self.activity.get_ymargin()

    def render(self, data: ChartData, text: ChartText, over: tuple[str, ...] = ()) -> bytes:
        import matplotlib

        for bars in self.bars:
            bars.remove()
        for label in self.over:
            label.remove()
        self.title.set_text(text.title)
        activity = self._activity(self.activity, data, text, over)
        self.bars = [activity]
        self.over = list(self.activity.bar_label(activity, over, fontsize=8, padding=2)) if over else []
        self.bars += self._mistakes(self.mistakes, data, text)
        out = BytesIO()
        with matplotlib.rc_context({"text.hinting": "no_hinting"}):  # 10% faster, and as legible at this size
            # zlib's fastest level: 10 ms instead of 18 ms for a file 20% larger (about 23 KB instead of 19 KB).
            self.figure.savefig(out, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
        return out.getvalue()

    def _activity(self, axes: Axes, data: ChartData, text: ChartText, over: tuple[str, ...]) -> BarContainer:
        positions = range(len(data.weeks))
        bars = axes.bar(positions, data.messages, color=_ACTIVITY, width=0.7)
        axes.set_xticks(positions, data.weeks, rotation=45, ha="right", fontsize=8)
        axes.set_title(text.activity, fontsize=10)
        axes.set_ymargin(0.15 if over else self.margin)  # room for the labels over the bars
        axes.relim()
        axes.autoscale_view()
        return bars

    def _mistakes(self, axes: Axes, data: ChartData, text: ChartText) -> list[BarContainer]:
        axes.set_title(textwrap.fill(text.mistakes, 30), fontsize=10)  # a narrow panel
        count = min(len(data.categories), MAX_CATEGORIES)
        self.legend.set_visible(bool(count))
        self.empty.set_text("" if count else textwrap.fill(text.no_mistakes, 24))
        if not count:
            axes.set_axis_off()
            return []
        axes.set_axis_on()
        rows = [count - 1 - i for i in range(count)]  # the most frequent on top
        this = axes.barh([row + _BAR for row in rows], data.this_week[:count], 2 * _BAR, color=_THIS)
        last = axes.barh([row - _BAR for row in rows], data.last_week[:count], 2 * _BAR, color=_LAST)
        labels = [textwrap.fill(label, 16, max_lines=2, placeholder="…") for label in data.categories[:count]]
        axes.set_yticks(rows, labels, fontsize=8)
        for shown, label in zip(self.legend.texts, (text.this_week, text.last_week), strict=True):
            shown.set_text(label)
        axes.relim()
        axes.autoscale_view()
        return [this, last]


_lock = threading.Lock()
_canvas: _Canvas | None = None
