"""The event loop choice: uvloop by default, asyncio on request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from streams.loop import use_event_loop


@pytest.fixture(autouse=True)
def _restore_policy() -> Iterator[None]:
    yield
    asyncio.set_event_loop_policy(None)


@pytest.mark.parametrize(("name", "loop_type"), [("uvloop", uvloop.Loop), ("asyncio", None)])
def test_new_loops_are_of_the_chosen_kind(name: str, loop_type: type | None) -> None:
    assert use_event_loop(name) == name
    loop = asyncio.new_event_loop()
    try:
        if loop_type is None:
            assert not isinstance(loop, uvloop.Loop)
            assert isinstance(loop, asyncio.BaseEventLoop)
        else:
            assert isinstance(loop, loop_type)
        assert loop.run_until_complete(asyncio.sleep(0, result=7)) == 7
    finally:
        loop.close()


def test_switching_back_to_asyncio_undoes_uvloop() -> None:
    use_event_loop("uvloop")
    use_event_loop("asyncio")
    loop = asyncio.new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
