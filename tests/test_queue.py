"""The model queue: a cap on parallel requests, one at a time per channel, round robin across channels."""

from __future__ import annotations

import asyncio

import pytest

from core.queue import FairQueue


async def test_at_most_parallel_requests_run_at_once() -> None:
    queue = FairQueue(parallel=2)
    running, peak = 0, 0

    async def work(channel: str) -> None:
        nonlocal running, peak
        async with queue.join(channel):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(work(f"c{i}") for i in range(10)))
    assert peak == 2


async def test_one_channel_never_runs_two_requests_at_once() -> None:
    queue = FairQueue(parallel=4)
    order: list[str] = []

    async def work(label: str) -> None:
        async with queue.join("class"):
            order.append(f"start {label}")
            await asyncio.sleep(0.01)
            order.append(f"end {label}")

    await asyncio.gather(*(work(str(i)) for i in range(3)))
    assert order == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]


async def test_a_busy_channel_cannot_starve_another() -> None:
    queue = FairQueue(parallel=1)
    order: list[str] = []

    async def work(channel: str, label: str) -> None:
        async with queue.join(channel):
            order.append(label)
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(work("class", f"class{i}")) for i in range(5)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(work("dm", "dm")))
    await asyncio.gather(*tasks)
    assert order.index("dm") <= 2


async def test_a_waiting_request_knows_its_position() -> None:
    queue = FairQueue(parallel=1)
    first = queue.join("a")
    second = queue.join("b")
    third = queue.join("c")
    async with first:
        assert (first.position, second.position, third.position) == (0, 1, 2)
    async with second:
        assert third.position == 1
    async with third:
        assert third.position == 0


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    queue = FairQueue(parallel=1)
    holder = queue.join("a")
    await holder.__aenter__()

    async def wait_in_line() -> None:
        async with queue.join("b"):
            pytest.fail("should have been cancelled")

    waiter = asyncio.create_task(wait_in_line())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await holder.__aexit__(None, None, None)
    async with queue.join("c") as ticket:
        assert ticket.position == 0
    assert queue.waiting == 0
