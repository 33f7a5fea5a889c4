"""The benchmark suite: its arithmetic, and that `python -m bench --quick` runs end to end from a checkout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import grid
from bench.stats import percentile, summary_ms

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
    assert set(results) >= {"machine", "first_text", "burst", "throughput", "history_store", "prompt_stability"}
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
