"""Event-loop lag: how late a loop wakes a task that asked to sleep, sampled every 10 ms.

A loop that wakes late also sends late and timestamps late: requests paced apart leave (or, at a fake,
arrive) bunched together, so lag is what turns a well-paced bot into 429s under load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bench.stats import percentile

INTERVAL = 0.01


class LoopLag:
    """Samples this loop's lag from `start()` on; `take()` summarises and forgets the samples so far."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(INTERVAL)
            self.samples.append(loop.time() - asked - INTERVAL)

    def take(self) -> dict[str, float]:
        samples, self.samples = self.samples, []
        return {
            "p50_ms": round(percentile(samples, 50) * 1000, 1),
            "p99_ms": round(percentile(samples, 99) * 1000, 1),
            "max_ms": round(max(samples, default=0.0) * 1000, 1),
        }

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@contextlib.asynccontextmanager
async def sampling() -> AsyncIterator[LoopLag]:
    lag = LoopLag()
    lag.start()
    try:
        yield lag
    finally:
        await lag.stop()
