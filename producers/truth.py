"""Realized ground truth of a run: what was emitted, per event-time minute, by the funnel rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from producers.account_truth import AccountTruth
from producers.customer_truth import CustomerTruth
from producers.entries import DUP, INVALID, INVALID_KINDS, LATE, LOST, Entry, SessionMark, money
from producers.session_truth import SessionTruth
from streams.contract.funnel import NO_STAGE
from streams.contract.times import format_ts

__all__ = ["BUCKET_MS", "GroundTruth", "money"]

BUCKET_MS = 60_000  # manifest buckets: event-time minutes aligned to the epoch
_INF = 1 << 62


class GroundTruth:
    """Counts emitted lines like the worker would: closed funnel, distinct orders, exact revenue.

    A session reaches stage k at the minimum ts of its emitted events whose stage is >= k and is
    counted once per stage in that minute; lost events and invalid lines do not count, duplicates
    count once. Sessions are settled when their last pending line is emitted, or at finish().
    """

    def __init__(
        self,
        stages: Iterable[str],
        session_timeout_ms: int = 1_800_000,
        recovery_window_ms: int = 7 * 86_400_000,
    ) -> None:
        self.stages = tuple(stages)
        n = len(self.stages)
        self._n = n
        # per bucket: stage counts..., orders, revenue cents, events, lost
        self._buckets: dict[int, list[int]] = {}
        self._open: set[SessionMark] = set()
        self.lines = 0
        self.events = 0
        self.duplicates = 0
        self.lost = 0
        self.late = 0
        self.invalid = 0
        self.invalid_by_kind = dict.fromkeys(INVALID_KINDS, 0)
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.customers = CustomerTruth()
        self.sessions = SessionTruth(session_timeout_ms, recovery_window_ms)
        self.accounts = AccountTruth()

    def _bucket(self, ms: int) -> list[int]:
        start = ms - ms % BUCKET_MS
        row = self._buckets.get(start)
        if row is None:
            row = self._buckets[start] = [0] * (self._n + 4)
        return row

    def record(self, entry: Entry) -> None:
        """Account for one entry as it is emitted (LOST entries: as their time passes)."""
        _, _, kind, line, _, mark, stage, ts = entry
        if kind == LOST:
            self.lost += 1
            self._bucket(ts)[self._n + 3] += 1
            return
        self.lines += 1
        if kind == INVALID:
            self.invalid += 1
            self.invalid_by_kind[INVALID_KINDS[stage]] += 1
            return
        assert mark is not None
        if kind == DUP:
            self.duplicates += 1
        else:
            if kind == LATE:
                self.late += 1
            self.events += 1
            self._bucket(ts)[self._n + 2] += 1
            self.customers.event(mark, ts)
            self.accounts.event(mark, ts)
            assert line is not None
            self.sessions.event(mark, stage, ts, line)
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
        mins = mark.min_ts
        if mins is None:
            mins = mark.min_ts = [_INF] * self._n
            self._open.add(mark)
        if stage != NO_STAGE and ts < mins[stage]:  # a removal reaches no stage
            mins[stage] = ts
        if stage == self._n - 1 and not mark.order_counted:
            mark.order_counted = True
            row = self._bucket(ts)
            row[self._n] += 1
            row[self._n + 1] += mark.revenue_cents
            self.customers.order(mark, ts)
            self.accounts.order(mark, ts)
        mark.pending -= 1
        if mark.pending == 0:
            self._settle(mark)

    def _settle(self, mark: SessionMark) -> None:
        mins = mark.min_ts
        if mins is None:
            return
        self._open.discard(mark)
        mark.min_ts = None
        self.sessions.settle(mark)
        reached = _INF
        for k in range(self._n - 1, -1, -1):
            reached = min(reached, mins[k])
            if reached < _INF:
                self._bucket(reached)[k] += 1

    def finish(self) -> None:
        """Settle every session still waiting for lines that will not be emitted."""
        for mark in list(self._open):
            self._settle(mark)

    def minutes(self) -> list[dict[str, Any]]:
        """Per-minute rows, in time order."""
        n = self._n
        out = []
        for start in sorted(self._buckets):
            row = self._buckets[start]
            out.append(
                {
                    "minute": format_ts(start),
                    "sessions": dict(zip(self.stages, row[:n], strict=True)),
                    "orders": row[n],
                    "revenue": money(row[n + 1]),
                    "events": row[n + 2],
                    "lost": row[n + 3],
                }
            )
        return out

    def totals(self) -> dict[str, Any]:
        n = self._n
        sums = [sum(row[i] for row in self._buckets.values()) for i in range(n + 4)]
        return {
            "lines": self.lines,
            "events": self.events,
            "sessions": dict(zip(self.stages, sums[:n], strict=True)),
            "orders": sums[n],
            "revenue": money(sums[n + 1]),
            "injected": {
                "duplicates": self.duplicates,
                "lost": self.lost,
                "invalid": self.invalid,
                "late": self.late,
            },
            "invalid_by_kind": dict(self.invalid_by_kind),
        }
