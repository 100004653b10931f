"""The exporter's single-flight cache: one computation per key and second, errors not kept."""

from __future__ import annotations

import asyncio

import pytest

from streams.exporter.cache import SingleFlightCache


async def test_the_cache_serves_one_read_for_at_most_max_age_seconds() -> None:
    clock = [100.0]
    reads: list[float] = []

    async def read() -> object:
        reads.append(clock[0])
        return object()

    cache = SingleFlightCache(max_age=1.0, clock=lambda: clock[0])
    first = await cache.get("k", read)
    clock[0] += 1.0
    assert await cache.get("k", read) is first
    clock[0] += 0.01
    assert await cache.get("k", read) is not first
    assert reads == [100.0, 101.01]


def test_the_cache_may_not_hold_a_snapshot_longer_than_one_second() -> None:
    with pytest.raises(ValueError, match=r"0\.\.1\.0"):
        SingleFlightCache(max_age=1.5)


async def test_concurrent_callers_of_one_key_share_one_computation() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return 42

    cache = SingleFlightCache(max_age=1.0)
    waiters = [asyncio.ensure_future(cache.get("k", slow)) for _ in range(20)]
    await started.wait()
    other = await cache.get("other", lambda: asyncio.sleep(0, result=7))
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 20
    assert (calls, other, cache.computations) == (1, 7, 2)


async def test_a_failed_computation_reaches_every_waiter_and_is_not_kept() -> None:
    release = asyncio.Event()
    attempts = 0

    async def failing() -> int:
        nonlocal attempts
        attempts += 1
        await release.wait()
        raise ConnectionError("redis down")

    cache = SingleFlightCache(max_age=1.0)
    waiters = [asyncio.ensure_future(cache.get("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await cache.get("k", lambda: asyncio.sleep(0, result=5)) == 5
    assert attempts == 1


async def test_one_waiter_giving_up_does_not_cancel_the_others() -> None:
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    cache = SingleFlightCache(max_age=1.0)
    owner = asyncio.ensure_future(cache.get("k", slow))
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(cache.get("k", slow))
    await asyncio.sleep(0)
    quitter.cancel()
    release.set()
    assert await owner == "done"
    with pytest.raises(asyncio.CancelledError):
        await quitter


async def test_the_number_of_keys_is_bounded() -> None:
    clock = [0.0]
    cache = SingleFlightCache(max_age=1.0, clock=lambda: clock[0], max_keys=2)
    for key in ("a", "b", "c"):
        await cache.get(key, lambda: asyncio.sleep(0, result=1))
    # "c" found the cache full of fresh keys: computed and served, not kept.
    before = cache.computations
    await cache.get("c", lambda: asyncio.sleep(0, result=1))
    assert cache.computations == before + 1
    clock[0] = 5.0  # a and b are stale now: room is made
    await cache.get("c", lambda: asyncio.sleep(0, result=1))
    await cache.get("c", lambda: asyncio.sleep(0, result=1))
    assert cache.computations == before + 2


async def test_refresh_ahead_serves_the_fresh_value_while_the_next_is_computed() -> None:
    clock = [0.0]
    release = asyncio.Event()
    values = iter(range(10))
    computed: list[int] = []

    async def compute() -> int:
        if computed:  # every computation after the first waits until released
            await release.wait()
        computed.append(next(values))
        return computed[-1]

    cache = SingleFlightCache(max_age=1.0, clock=lambda: clock[0], refresh_after=0.5)
    assert await cache.get("k", compute) == 0
    clock[0] = 0.4
    assert await cache.get("k", compute) == 0  # young: no refresh
    await asyncio.sleep(0)
    assert computed == [0]
    clock[0] = 0.6
    # Old enough: the caller gets the value at once, and one refresh starts, however many ask.
    assert [await cache.get("k", compute) for _ in range(5)] == [0] * 5
    await asyncio.sleep(0)
    assert computed == [0]
    clock[0] = 1.05
    # Past max_age the cached value is never served: callers wait for the refresh in flight.
    waiter = asyncio.ensure_future(cache.get("k", compute))
    await asyncio.sleep(0)
    assert not waiter.done()
    release.set()
    assert await waiter == 1
    assert computed == [0, 1]
    assert cache.computations == 2
    await cache.aclose()


async def test_a_failed_refresh_is_not_kept_and_aclose_cancels_a_running_one() -> None:
    clock = [0.0]
    calls = 0
    hang = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("redis down")
        if calls == 3:
            await hang.wait()
        return calls

    cache = SingleFlightCache(max_age=1.0, clock=lambda: clock[0], refresh_after=0.5)
    assert await cache.get("k", compute) == 1
    clock[0] = 0.7
    assert await cache.get("k", compute) == 1  # starts refresh 2, which fails
    await asyncio.sleep(0)
    assert calls == 2
    assert await cache.get("k", compute) == 1  # still fresh; refresh 3 starts and hangs
    await asyncio.sleep(0)
    assert calls == 3
    await cache.aclose()  # no task left pending
    clock[0] = 1.5
    assert await cache.get("k", compute) == 4


async def test_a_cancelled_computation_is_a_timeout_for_its_waiters() -> None:
    # The request computing a value hit its time limit: the others get an error to answer with.
    async def hangs() -> int:
        await asyncio.Event().wait()
        return 0

    cache = SingleFlightCache(max_age=1.0)
    owner = asyncio.ensure_future(cache.get("k", hangs))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(cache.get("k", hangs))
    await asyncio.sleep(0)
    owner.cancel()
    with pytest.raises(TimeoutError, match="cancelled"):
        await waiter
    with pytest.raises(asyncio.CancelledError):
        await owner


def test_refresh_after_is_within_the_age() -> None:
    with pytest.raises(ValueError, match="refresh_after"):
        SingleFlightCache(max_age=1.0, refresh_after=1.5)
