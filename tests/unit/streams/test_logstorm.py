"""Log storms: a repeated message passes once per interval, then says how many were held back."""

from __future__ import annotations

import logging

from streams.logstorm import RateLimit


def record(
    msg: str, name: str = "aiokafka.consumer", level: int = logging.ERROR
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_one_line_per_interval_with_the_count_of_the_rest() -> None:
    clock = [0.0]
    limit = RateLimit(interval=10.0, clock=lambda: clock[0])
    passed = []
    for _ in range(100):  # 10 a second for 10 s, as aiokafka's failed commits
        r = record("OffsetCommit failed for group %s")
        if limit.filter(r):
            passed.append(r.getMessage() if not r.args else r.msg)
        clock[0] += 0.1
    clock[0] = 10.0
    r = record("OffsetCommit failed for group %s")
    assert limit.filter(r)
    assert len(passed) == 1
    assert r.msg.endswith("(99 more like this in the last 10s)")


def test_other_messages_and_loggers_pass() -> None:
    limit = RateLimit(interval=10.0, clock=lambda: 0.0)
    assert limit.filter(record("a"))
    assert limit.filter(record("b"))
    assert limit.filter(record("a", name="storepulse.worker"))
    assert limit.filter(record("a", level=logging.WARNING))
    assert not limit.filter(record("a"))
