"""The benchmark suite: its arithmetic, and that `python -m bench --quick` runs end to end from a checkout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import ollama
import pytest

from bench import review
from bench.__main__ import grid
from bench.stats import percentile, summary_ms
from core.store import Store
from tests.fake_ollama import FakeOllama

ROOT = Path(__file__).resolve().parent.parent
RULES = ["ours", "fixed-1s-global", "every-100-chars", "every-chunk"]


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0


def test_summary_is_in_milliseconds() -> None:
    assert summary_ms([0.001, 0.002, 0.003]) == {"p50_ms": 2.0, "p95_ms": 3.0, "p99_ms": 3.0, "mean_ms": 2.0, "n": 3}


def test_grid_puts_each_baseline_beside_ours_as_a_ratio() -> None:
    text = grid("t", {"ours": {"p50_ms": 5.0, "n": 2}, "every-chunk": {"p50_ms": 500.0, "n": 2}})
    ratio_row = next(line for line in text.splitlines() if "ours ÷ every-chunk" in line)
    assert "0.01" in ratio_row


def test_the_review_bench_deals_exactly_its_cards_and_gives_the_year_learners_theirs() -> None:
    size = review.Size(learners=50, cards=5_000, year_learners=2, year_cards=400, sessions=1, rates=1, progress=1)
    counts = review._cards_per_learner(size)
    assert len(counts) == 50 and sum(counts) == 5_000
    assert counts[:2] == [400, 400]


async def test_every_seeded_learner_has_a_due_card_found_through_cards_by_due(tmp_path: Path) -> None:
    size = review.Size(learners=20, cards=2_000, year_learners=1, year_cards=200, sessions=1, rates=1, progress=1)
    path = tmp_path / "bench.db"
    await (await Store.open(path)).close()
    review._fill(path, size, now=1_800_000_000.0)
    assert "USING INDEX cards_by_due" in review.plans(path)["next_card"]
    store = await Store.open(path)
    try:
        card = await store.next_card(review.learner(3), "es", 1_800_000_000.0)
    finally:
        await store.close()
    assert card is not None and card.due <= 1_800_000_000.0


async def test_the_fakes_prompt_cache_charges_only_what_follows_a_remembered_prefix() -> None:
    system = {"role": "system", "content": "Eres un tutor de español. " * 8}
    first = [system, {"role": "user", "content": "Hola, me llamo Ana."}]
    async with FakeOllama(prompt_cache=8, responder=lambda messages: "¡Hola, Ana!") as fake:
        client = ollama.AsyncClient(host=fake.url, timeout=5)
        for messages in (
            first,
            [*first, {"role": "assistant", "content": "¡Hola, Ana!"}, {"role": "user", "content": "¿Y tú?"}],
        ):
            async for _ in await client.chat("qwen2.5:7b", messages, stream=True):
                pass
        await client._client.aclose()
    (cold, warm) = fake.streams
    assert cold.cached_tokens == 0
    assert warm.cached_tokens == len("".join(m["content"] for m in first) + "¡Hola, Ana!") // 4  # all but "¿Y tú?"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"json": json.loads(out.read_text()), "stdout": done.stdout}


@pytest.mark.slow
def test_quick_bench_runs_every_scenario_and_records_the_machine(quick_run: dict[str, Any]) -> None:
    results = quick_run["json"]
    scenarios = {"first_text", "burst", "throughput", "history_store", "prompt_stability", "review", "scale"}
    assert set(results) >= {"machine", *scenarios}
    assert results["machine"]["cores"] >= 1


@pytest.mark.slow
def test_quick_bench_measures_first_text_for_every_rule_on_every_platform(quick_run: dict[str, Any]) -> None:
    tables = quick_run["json"]["first_text"]["tables"]
    assert len(tables) == 4
    for rows in tables.values():
        assert list(rows) == RULES
        assert all(row["n"] == 20 and row["p50_ms"] > 0 for row in rows.values())


@pytest.mark.slow
def test_quick_bench_burst_delivers_every_answer_of_ours_complete(quick_run: dict[str, Any]) -> None:
    (everyone, *_) = quick_run["json"]["burst"]["tables"].values()
    done, total = everyone["ours"]["complete_exact"].split("/")
    assert done == total and int(total) > 0
    assert list(everyone) == RULES


@pytest.mark.slow
def test_quick_bench_burst_gives_the_class_group_its_turn_taking_figures(quick_run: dict[str, Any]) -> None:
    burst = quick_run["json"]["burst"]
    (_, group) = burst["tables"].values()
    assert list(group) == RULES
    students = burst["setup"]["telegram_group_students"]
    for row in group.values():
        assert row["students"] == students
        assert isinstance(row["429s"], int) and row["429s"] >= 0
        assert isinstance(row["chat_messages"], int) and row["chat_messages"] >= 0
        assert 0 <= row["answered_again"] <= students
        assert isinstance(row["stale_s_p95"], float)
    ours = group["ours"]
    assert ours["complete_exact"] == f"{students}/{students}"  # every student's part, exactly as the model wrote it
    assert ours["chat_messages"] >= 1 and ours["last_complete_s"] > 0
    targets = burst["class_group_targets"]
    assert set(targets) == {"last_complete_s_max", "429s_max", "stale_s_p95_max", "met_by_ours"}
    assert isinstance(targets["met_by_ours"], bool)


@pytest.mark.slow
def test_quick_bench_prints_ratios_against_the_baselines(quick_run: dict[str, Any]) -> None:
    for rule in RULES[1:]:
        assert f"ours ÷ {rule}" in quick_run["stdout"]


@pytest.mark.slow
def test_quick_bench_reports_store_and_prompt_numbers(quick_run: dict[str, Any]) -> None:
    results = quick_run["json"]
    assert results["history_store"]["load_context"]["n"] > 0
    assert results["history_store"]["file_bytes_per_1000_messages"] > 0
    assert 0 < results["prompt_stability"]["turns_extending_previous_prompt"] <= 1
    assert results["throughput"]["bot_cpu_s_per_1000_tokens"] > 0


@pytest.mark.slow
def test_quick_bench_reviews_and_shows_progress_at_100000_cards(quick_run: dict[str, Any]) -> None:
    result = quick_run["json"]["review"]
    assert (result["learners"], result["cards"]) == (1_000, 100_000)
    assert result["review_first_card"]["n"] >= 50 and result["review_first_card"]["p50_ms"] > 0
    assert result["reviews_stored"] == result["review_rate_to_next_card"]["n"] > 0  # every rating press counted
    assert result["progress_year"]["n"] > 0 and result["chart_png_bytes"] > 0
    assert result["due_query_uses_cards_by_due"] is True
    assert isinstance(result["review_within_target"], bool) and isinstance(result["progress_within_target"], bool)


@pytest.mark.slow
def test_quick_bench_scale_answers_every_message_and_keeps_channels_on_their_server(quick_run: dict[str, Any]) -> None:
    result = quick_run["json"]["scale"]
    (rows,) = result["tables"].values()
    assert list(rows) == ["1 server", "2 servers", "4 servers", "4 servers, 1 killed"]
    assert result["ratio_4_to_1"] > 2  # the quick run is small: its tail weighs more than the full run's
    assert result["on_home_server_min"] >= 0.95
    assert result["every_message_answered_or_marked"] is True
    killed = rows["4 servers, 1 killed"]
    assert killed["complete"] + killed["interrupted"] == killed["messages"] and killed["lost"] == 0
