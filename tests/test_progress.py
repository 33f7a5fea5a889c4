"""Progress figures from seeded rows: this week beside the week before, the streak, errors, the chart's series."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.categories import label
from core.i18n import Voice
from core.progress import DAY, WEEK, Deck, Errors, Mistake, Practice, Trend, Week, chart_data, progress, table
from core.progress import describe as describe_progress

NOW = datetime(2025, 5, 14, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday, noon UTC
DECK = Deck(cards=12, learned=8, due=3, words=4, next_due=None)
NO_DECK = Deck(cards=0, learned=0, due=0, words=0, next_due=None)


def ago(days: float) -> float:
    return NOW - days * DAY


def said(*days: float, in_target: bool | None = True) -> list[Practice]:
    return [Practice(ago(day), in_target) for day in days]


def erred(category: str, *days: float) -> list[Mistake]:
    return [Mistake(ago(day), category) for day in days]


# A learner's fortnight: five messages this week, two the week before; mistakes in four categories.
PRACTICE = [
    *said(0.1, 1, 2),  # today, yesterday, the day before
    *said(3, in_target=False),
    *said(6.9, in_target=None),
    *said(8, 10),
    *said(20),  # three weeks ago
]
MISTAKES = [
    *erred("ser/estar", 1, 8, 9, 11),
    *erred("agreement", 2, 3, 12),
    *erred("por/para", 0.5, 4),
    *erred("spelling", 13),
    *erred("article", 30),  # outside the two weeks
]


def test_messages_are_counted_per_rolling_week() -> None:
    p = progress(PRACTICE, MISTAKES, DECK, NOW)
    assert (p.this_week.messages, p.last_week.messages) == (5, 2)


def test_a_message_exactly_seven_days_old_belongs_to_the_week_before() -> None:
    p = progress(said(7), [], NO_DECK, NOW)
    assert (p.this_week.messages, p.last_week.messages) == (0, 1)


def test_a_message_at_this_very_moment_belongs_to_this_week() -> None:
    p = progress(said(0), [], NO_DECK, NOW)
    assert p.this_week.messages == 1


def test_rows_from_the_future_are_left_out() -> None:
    p = progress(said(-1), erred("agreement", -1), NO_DECK, NOW)
    assert p.this_week.messages == 0
    assert p.errors == ()


def test_the_share_in_the_target_language_counts_only_the_messages_identified() -> None:
    p = progress(PRACTICE, MISTAKES, DECK, NOW)
    assert p.this_week == Week(messages=5, identified=4, in_target=3)
    assert p.this_week.share == 0.75
    assert p.last_week.share == 1.0


def test_the_share_is_unknown_when_no_message_was_identified() -> None:
    p = progress(said(1, 2, in_target=None), [], NO_DECK, NOW)
    assert p.this_week.share is None
    assert p.last_week.share is None


def test_the_streak_counts_days_in_a_row_back_from_today() -> None:
    p = progress(PRACTICE, MISTAKES, DECK, NOW)
    assert (p.streak, p.practised_today) == (4, True)


def test_several_messages_on_one_day_count_as_one_day() -> None:
    p = progress(said(0, 0.1, 0.2, 1, 1.1), [], NO_DECK, NOW)
    assert p.streak == 2


def test_a_day_without_practice_ends_the_streak() -> None:
    p = progress(said(0, 1, 3, 4, 5), [], NO_DECK, NOW)
    assert p.streak == 2


def test_a_streak_ending_yesterday_still_counts() -> None:
    p = progress(said(1, 2, 3, 5), [], NO_DECK, NOW)
    assert (p.streak, p.practised_today) == (3, False)


def test_a_streak_that_ended_before_yesterday_is_over() -> None:
    p = progress(said(2, 3, 4), [], NO_DECK, NOW)
    assert (p.streak, p.practised_today) == (0, False)


def test_days_are_utc_days() -> None:
    midnight = datetime(2025, 5, 14, tzinfo=UTC).timestamp()
    practice = [Practice(midnight - 60, True), Practice(midnight + 60, True)]  # 23:59 and 00:01
    p = progress(practice, [], NO_DECK, midnight + 3600)
    assert (p.streak, p.practised_today) == (2, True)


def test_the_top_three_categories_of_both_weeks_with_their_trend() -> None:
    p = progress(PRACTICE, MISTAKES, DECK, NOW)
    assert p.top == (
        Errors("ser/estar", this_week=1, last_week=3),
        Errors("agreement", this_week=2, last_week=1),
        Errors("por/para", this_week=2, last_week=0),
    )
    assert [errors.trend for errors in p.top] == [Trend.FEWER, Trend.MORE, Trend.MORE]


def test_a_category_as_frequent_both_weeks_is_the_same() -> None:
    p = progress([], erred("accents", 1, 8), NO_DECK, NOW)
    assert p.top == (Errors("accents", 1, 1),)
    assert p.top[0].trend is Trend.SAME


def test_categories_tied_over_the_two_weeks_put_this_weeks_first() -> None:
    p = progress([], [*erred("spelling", 8, 9), *erred("accents", 1, 8), *erred("article", 1, 2)], NO_DECK, NOW)
    assert [errors.category for errors in p.top] == ["article", "accents", "spelling"]


def test_the_deck_figures_pass_through() -> None:
    assert progress(PRACTICE, MISTAKES, DECK, NOW).deck == DECK


def test_the_series_has_messages_per_week_oldest_first() -> None:
    p = progress(PRACTICE, MISTAKES, DECK, NOW, weeks=4)
    assert p.series.messages == (0, 1, 2, 5)
    assert p.series.starts == (NOW - 4 * WEEK, NOW - 3 * WEEK, NOW - 2 * WEEK, NOW - WEEK)


def test_the_series_has_mistakes_per_category_per_week() -> None:
    p = progress(PRACTICE, MISTAKES, DECK, NOW, weeks=5)
    assert p.series.mistakes == (
        ("ser/estar", (0, 0, 0, 3, 1)),
        ("agreement", (0, 0, 0, 1, 2)),
        ("por/para", (0, 0, 0, 0, 2)),
        ("article", (1, 0, 0, 0, 0)),
        ("spelling", (0, 0, 0, 1, 0)),
    )


def test_a_series_of_one_week_still_compares_two() -> None:
    p = progress(PRACTICE, MISTAKES, DECK, NOW, weeks=1)
    assert p.series.messages == (5,)
    assert p.last_week.messages == 2


def test_weeks_must_be_at_least_one() -> None:
    with pytest.raises(ValueError):
        progress(PRACTICE, MISTAKES, DECK, NOW, weeks=0)


def test_no_history_gives_zeros() -> None:
    p = progress([], [], NO_DECK, NOW)
    assert (p.this_week, p.last_week, p.streak, p.errors) == (Week(0, 0, 0), Week(0, 0, 0), 0, ())
    assert p.series.messages == (0,) * 8


# What the learner reads


def test_the_chat_message_in_english_has_every_figure() -> None:
    text = describe_progress(progress(PRACTICE, MISTAKES, DECK, NOW), Voice("en"), "es")
    assert text.splitlines() == [
        "**Your progress in Spanish: this week (last week)**",
        "✍️ Messages: 5 (2)",
        "🎯 Written in Spanish: 75% (100%)",
        "🔥 Days in a row: 4",
        "📝 Most frequent mistakes:",
        "• ser/estar: 1 (3) ↓ fewer",
        "• agreement: 2 (1) ↑ more",
        "• por/para: 2 (0) ↑ more",
        "🗂️ Cards: 12 · learned: 8 · due now: 3 · words saved: 4",
    ]


def test_the_chat_message_in_spanish_has_every_figure_in_spanish_form() -> None:
    spanish = Voice("es")
    text = describe_progress(progress(PRACTICE, MISTAKES, DECK, NOW), spanish, "es")
    lines = text.splitlines()
    assert len(lines) == 9
    assert "español" in lines[0]
    assert "5 (2)" in lines[1]
    assert "75\xa0% (100\xa0%)" in lines[2]  # Spanish sets the percent sign apart
    assert "4" in lines[3]
    labels = [f"• {spanish(label(key))}" for key in ("ser/estar", "agreement", "por/para")]
    assert [line.split(":")[0] for line in lines[5:8]] == labels
    assert ["1 (3)" in lines[5], "2 (1)" in lines[6], "2 (0)" in lines[7]] == [True, True, True]
    assert all(figure in lines[8] for figure in ("12", "8", "3", "4"))


def test_a_streak_not_yet_kept_today_asks_for_a_message_today() -> None:
    text = describe_progress(progress(said(1, 2), [], NO_DECK, NOW), Voice("en"), "es")
    assert "🔥 Days in a row: 2 (write today to keep it going)" in text.splitlines()


def test_a_fortnight_without_mistakes_says_so() -> None:
    text = describe_progress(progress(said(1), [], NO_DECK, NOW), Voice("en"), "es")
    assert "📝 No mistakes corrected in these two weeks." in text.splitlines()
    assert "Most frequent" not in text


def test_an_unknown_share_shows_as_a_dash() -> None:
    text = describe_progress(progress(said(1, in_target=None), [], NO_DECK, NOW), Voice("en"), "fr")
    assert "🎯 Written in French: – (–)" in text.splitlines()


def test_the_terminal_table_has_a_row_per_figure() -> None:
    rows = table(progress(PRACTICE, MISTAKES, DECK, NOW), Voice("en"), "es")
    assert rows == [
        ("Messages", "5", "2"),
        ("Written in Spanish", "75%", "100%"),
        ("Days in a row", "4", ""),
        ("ser/estar", "1 ↓ fewer", "3"),
        ("agreement", "2 ↑ more", "1"),
        ("por/para", "2 ↑ more", "0"),
        ("Cards", "12", ""),
        ("Cards learned", "8", ""),
        ("Cards due now", "3", ""),
        ("Words saved", "4", ""),
    ]


def test_the_chart_data_comes_from_the_seeded_rows() -> None:
    data = chart_data(progress(PRACTICE, MISTAKES, DECK, NOW, weeks=4), Voice("en"))
    assert data.weeks == ("Apr 16", "Apr 23", "Apr 30", "May 7")
    assert data.messages == (0, 1, 2, 5)
    assert data.categories == ("ser/estar", "agreement", "por/para", "spelling")
    assert data.this_week == (1, 2, 2, 0)
    assert data.last_week == (3, 1, 0, 1)


def test_the_chart_data_is_in_the_readers_language() -> None:
    data = chart_data(progress(PRACTICE, MISTAKES, DECK, NOW, weeks=2), Voice("de"))
    assert data.weeks == ("30. Apr.", "7. Mai")
