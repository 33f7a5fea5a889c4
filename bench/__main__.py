"""`python -m bench [--quick] [--only NAME …]`: measure the tutor where its users feel it.

Scenarios 1–3 run the real adapters in a bot process of their own against loopback fakes of Ollama,
Telegram and Discord (bench/world.py), with our pacing and three other bots' rules side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import burst, first_text, history_store, prompt_stability, review, scale, throughput

SCENARIOS: dict[str, Callable[[bool], Awaitable[dict[str, Any]]]] = {
    "first_text": first_text.run,
    "burst": burst.run,
    "throughput": throughput.run,
    "history_store": history_store.run,
    "prompt_stability": prompt_stability.run,
    "review": review.run,
    "scale": scale.run,
}
COUNTS = ("n", "students")  # columns that say how much was measured: no ratio


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def _cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def table(name: str, result: dict[str, Any]) -> str:
    lines = [f"## {name}"]
    for key, value in result.items():
        if key == "tables":
            lines += [grid(title, rows) for title, rows in value.items()]
            continue
        if isinstance(value, list):
            lines.append(f"  {key}:")
            lines += [f"    {', '.join(f'{k}={v}' for k, v in row.items())}" for row in value]
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        lines.append(f"  {key:<40} {value}")
    return "\n".join(lines)


def grid(title: str, rows: dict[str, dict[str, Any]]) -> str:
    """One row per pacing rule, one column per metric, then ours ÷ each baseline for the numeric columns."""
    columns = list(next(iter(rows.values())))
    ours = rows.get("ours", {})
    body = [[rule, *(_cell(values.get(c)) for c in columns)] for rule, values in rows.items()]
    for rule, values in rows.items():
        if rule != "ours" and ours:
            ratios = ("" if c in COUNTS else _ratio(ours.get(c), values.get(c)) for c in columns)
            body.append([f"ours ÷ {rule}", *ratios])
    lines = [["", *columns], *body]
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(columns) + 1)]
    return "\n".join(
        [f"  {title}"]
        + [
            "    "
            + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
            for cells in lines
        ]
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "–" if value is None else str(value)


def _ratio(ours: Any, other: Any) -> str:
    numbers = (int, float)
    if isinstance(ours, bool) or not isinstance(ours, numbers) or not isinstance(other, numbers):
        return ""
    if other == 0:
        return "–" if ours == 0 else "∞"
    return f"{ours / other:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute on 2 cores")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run just these scenarios")
    parser.add_argument("--out", type=Path, help="default: bench/results/latest.json, or quick.json with --quick")
    parser.add_argument(
        "--database-url", help="history_store in this PostgreSQL database (a schema of its own), not a SQLite file"
    )
    args = parser.parse_args()
    if args.database_url:
        SCENARIOS["history_store"] = functools.partial(history_store.run, database_url=args.database_url)
    args.out = args.out or Path("bench/results", "quick.json" if args.quick else "latest.json")
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the fakes, when a bot process is killed
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in results["machine"].items()), flush=True)
    for name in args.only or SCENARIOS:
        started = time.perf_counter()
        results[name] = await SCENARIOS[name](args.quick)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        print(table(name, results[name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
