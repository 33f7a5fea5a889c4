"""The progress chart: a real PNG of the promised size, drawn from the data it is given."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from io import BytesIO

from PIL import Image

from core.categories import label
from core.chart import HEIGHT, MAX_CATEGORIES, WIDTH, ChartData, ChartText, render_png, render_png_async
from core.i18n import Voice
from core.progress import DAY, Deck, Mistake, Practice, chart_data, chart_text, progress

NOW = datetime(2025, 5, 14, 12, 0, tzinfo=UTC).timestamp()
TEXT = ChartText("Your progress in Spanish", "Messages per week", "Mistakes by kind", "This week", "Last week", "None")
DATA = ChartData(
    weeks=("Apr 23", "Apr 30", "May 7"),
    messages=(4, 0, 9),
    categories=("ser/estar", "agreement"),
    this_week=(1, 2),
    last_week=(3, 0),
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def size(png: bytes) -> tuple[int, int]:
    with Image.open(BytesIO(png)) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def test_the_chart_is_a_png_of_the_promised_size() -> None:
    png = render_png(DATA, TEXT)
    assert png.startswith(PNG_SIGNATURE)
    assert size(png) == (WIDTH, HEIGHT)


def test_a_chart_without_mistakes_is_still_a_chart() -> None:
    png = render_png(ChartData(("May 7",), (3,), (), (), ()), TEXT)
    assert size(png) == (WIDTH, HEIGHT)


def test_more_categories_than_fit_are_drawn_all_the_same() -> None:
    many = MAX_CATEGORIES + 3
    data = ChartData(("May 7",), (3,), tuple(f"kind {i}" for i in range(many)), (1,) * many, (2,) * many)
    assert size(render_png(data, TEXT)) == (WIDTH, HEIGHT)


def test_a_chart_does_not_keep_anything_of_the_one_before() -> None:
    """One figure is re-filled for every chart: what the last learner's chart showed must not linger."""
    first = render_png(DATA, TEXT)
    render_png(ChartData(("a", "b", "c", "d", "e"), (9, 8, 7, 6, 5), ("x", "y", "z"), (5, 5, 5), (1, 1, 1)), TEXT)
    render_png(ChartData(("May 7",), (0,), (), (), ()), TEXT)
    assert render_png(DATA, TEXT) == first


async def test_charts_rendered_at_once_from_the_event_loop_are_each_whole() -> None:
    datas = [ChartData(("May 7",), (n,), ("ser/estar",), (n,), (1,)) for n in range(1, 5)]
    pngs = await asyncio.gather(*(render_png_async(data, TEXT) for data in datas))
    assert pngs == [render_png(data, TEXT) for data in datas]
    assert all(size(png) == (WIDTH, HEIGHT) for png in pngs)


def test_a_learners_rows_become_the_chart_in_their_language() -> None:
    practice = [Practice(NOW - day * DAY, True) for day in (0.5, 1, 2, 9, 16, 16.5)]
    mistakes = [Mistake(NOW - day * DAY, category) for day, category in ((1, "accents"), (2, "accents"), (8, "case"))]
    p = progress(practice, mistakes, Deck(3, 1, 2, 0, None), NOW, weeks=3)
    say = Voice("es")
    data = chart_data(p, say)
    assert data == ChartData(
        weeks=("23 abr", "30 abr", "7 may"),
        messages=(2, 1, 3),
        categories=(say(label("accents")), say(label("case"))),
        this_week=(2, 0),
        last_week=(0, 1),
    )
    text = chart_text(say, "es")
    assert "español" in text.title
    assert size(render_png(data, text)) == (WIDTH, HEIGHT)
