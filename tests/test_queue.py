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


# Several model servers


async def _turn(queue: FairQueue, channel: str) -> int:
    async with queue.join(channel) as ticket:
        await asyncio.sleep(0)
        return ticket.server


async def test_each_server_runs_at_most_parallel_requests() -> None:
    queue = FairQueue(parallel=1, servers=2)
    first, second, third = queue.join("a"), queue.join("b"), queue.join("c")
    await asyncio.sleep(0)
    assert (first.granted.done(), second.granted.done(), third.granted.done()) == (True, True, False)
    assert {first.server, second.server} == {0, 1}


async def test_a_channel_goes_back_to_the_server_it_used_last() -> None:
    queue = FairQueue(parallel=2, servers=2)
    homes = {c: await _turn(queue, c) for c in ("a", "b", "c", "d")}
    again = [await _turn(queue, c) for c in ("a", "b", "c", "d")]
    assert again == [homes[c] for c in ("a", "b", "c", "d")]


async def test_a_channel_waits_for_its_busy_server_while_no_other_is_idle() -> None:
    queue = FairQueue(parallel=1, servers=2)
    a, b = queue.join("a"), queue.join("b")  # a on one server, b on the other
    await asyncio.sleep(0)
    home_of_a = a.server
    async with a:
        pass
    later = queue.join("a")
    await asyncio.sleep(0)
    assert later.granted.done() and later.server == home_of_a
    async with later:
        blocker = queue.join("x")  # takes a's server once a is done
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert blocker.server == home_of_a
    waiting = queue.join("a")  # a's server is busy with x, b's with b: a waits for its own
    await asyncio.sleep(0)
    assert not waiting.granted.done()
    async with b:
        pass  # b's server falls idle: a moves there, rather than wait
    await asyncio.sleep(0)
    assert waiting.granted.done() and waiting.server == 1 - home_of_a
    for ticket in (blocker, waiting):
        async with ticket:
            pass


async def test_no_turn_goes_to_a_server_that_is_down_while_another_is_up() -> None:
    queue = FairQueue(parallel=4, servers=2)
    home = await _turn(queue, "a")
    queue.down(home, 60)
    assert await _turn(queue, "a") == 1 - home
    assert await _turn(queue, "a") == 1 - home  # and it sticks there


async def test_with_every_server_down_turns_still_run() -> None:
    queue = FairQueue(parallel=1, servers=2)
    queue.down(0, 60)
    queue.down(1, 60)
    assert await _turn(queue, "a") in (0, 1)


async def test_a_turn_moves_to_another_server_when_its_own_fails() -> None:
    queue = FairQueue(parallel=1, servers=2)
    async with queue.join("a") as ticket:
        failed = ticket.server
        queue.down(failed, 60)
        await queue.move(ticket)
        assert ticket.server == 1 - failed
    assert await _turn(queue, "b") == 1 - failed  # the slot it held elsewhere was given back


async def test_a_group_whose_turn_answers_several_students_comes_back_sooner() -> None:
    queue = FairQueue(parallel=1)
    first = queue.join("class", together=6)
    rest = [queue.join("class", together=6) for _ in range(6)]
    dms = [queue.join(f"dm{i}") for i in range(12)]
    async with first:
        pass
    await asyncio.sleep(0)
    assert dms[0].granted.done()
    async with dms[0]:
        pass
    async with dms[1]:
        pass
    assert rest[0].granted.done()  # after a sixth of the line, not after all twelve
    assert queue.position(dms[2]) == 1


async def test_a_dm_with_several_messages_waiting_still_goes_to_the_back() -> None:
    queue = FairQueue(parallel=1)
    first = queue.join("dm-a")
    second = queue.join("dm-a")
    others = [queue.join(f"dm{i}") for i in range(3)]
    async with first:
        pass
    for other in others:
        assert not second.granted.done()
        async with other:
            pass
    assert second.granted.done()
