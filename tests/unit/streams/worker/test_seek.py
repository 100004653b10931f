"""The batch path's seeks run on Faust's consumer thread, never beside its fetch."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from faust.types import TP

from streams.worker.batchpath import BatchConsumer


class _Thread:
    """A consumer thread's two calls: call_thread runs the function on another OS thread."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int, str]] = []

    def seek(self, partition: TP, offset: int) -> None:
        self.seeks.append((partition, offset, threading.current_thread().name))

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        # Like mode's ServiceThread: the coroutine runs on the thread's own event loop.
        worker = threading.Thread(target=asyncio.run, args=(fun(*args),), name="consumer-thread")
        worker.start()
        await asyncio.to_thread(worker.join)


def test_seek_is_handed_to_the_consumer_thread() -> None:
    consumer = BatchConsumer.__new__(BatchConsumer)  # the worker's consumer's base
    thread = _Thread()
    consumer._thread = thread  # type: ignore[assignment]
    asyncio.run(consumer._seek(TP("events", 2), 41))
    # Called directly, seek() would run on this (the app's) thread: the race that crashed
    # the worker in the second-worker drill (aiokafka's fetched_records, KeyError).
    assert thread.seeks == [(TP("events", 2), 41, "consumer-thread")]
