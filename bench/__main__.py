"""`python -m bench [--quick] [--only NAME …]`: measure the tutor where its users feel it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import history_store, prompt_stability

SCENARIOS: dict[str, Callable[[bool], Awaitable[dict[str, Any]]]] = {
    "history_store": history_store.run,
    "prompt_stability": prompt_stability.run,
}


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def table(name: str, result: dict[str, Any]) -> str:
    lines = [f"## {name}"]
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        lines.append(f"  {key:<40} {value}")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute on 2 cores")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run just these scenarios")
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
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
