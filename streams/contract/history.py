"""Imported customer history: the CSV of `storepulse customers import`, checked all or nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from streams.contract.events import MAX_ID_LENGTH
from streams.contract.facts import FACT_HISTORY, HistoryFact
from streams.contract.times import parse_ts

__all__ = ["HEADER", "HistoryError", "parse_history", "parse_history_bytes"]

HEADER = ("customer_id", "first_order_at", "orders", "last_order_at")
_MAX_ORDERS = 1_000_000_000


class HistoryError(ValueError):
    """A bad line of a history file: its number (1 = the header) and what is wrong."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def _instant(text: str, name: str, line: int) -> int:
    value = text.strip()
    if not value or value.isdigit():
        raise HistoryError(line, f"{name} must be ISO 8601 with a zone, got {value[:40]!r}")
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise HistoryError(line, f"{name}: {exc}") from None


def parse_history(lines: Iterable[str]) -> list[HistoryFact]:
    """History facts of every row, or HistoryError naming the first bad line (nothing else).

    Header `customer_id,first_order_at,orders,last_order_at`; `orders` >= 1; both instants
    ISO 8601 with a zone and first_order_at <= last_order_at; a customer once per file.
    """
    reader = csv.reader(lines, strict=True)
    facts: list[HistoryFact] = []
    where: dict[str, int] = {}
    try:
        header = next(reader, None)
        if header is None:
            raise HistoryError(1, f"empty file; the header is {','.join(HEADER)}")
        if tuple(h.strip().lstrip("\ufeff") for h in header) != HEADER:
            raise HistoryError(1, f"the header must be {','.join(HEADER)}")
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue  # a blank line (a trailing newline, say)
            if len(row) != len(HEADER):
                raise HistoryError(line, f"{len(row)} fields, expected {len(HEADER)}")
            customer, first_text, orders_text, last_text = row
            customer = customer.strip()
            if not 1 <= len(customer) <= MAX_ID_LENGTH:
                raise HistoryError(line, f"customer_id must have 1 to {MAX_ID_LENGTH} characters")
            if customer in where:
                raise HistoryError(
                    line, f"customer {customer[:64]!r} is on line {where[customer]} too"
                )
            orders = orders_text.strip()
            if not orders.isascii() or not orders.isdigit() or not 1 <= int(orders) <= _MAX_ORDERS:
                raise HistoryError(line, f"orders must be a whole number >= 1, got {orders[:20]!r}")
            first = _instant(first_text, "first_order_at", line)
            last = _instant(last_text, "last_order_at", line)
            if first > last:
                raise HistoryError(line, "first_order_at is after last_order_at")
            where[customer] = line
            facts.append(
                HistoryFact(FACT_HISTORY, customer, str(int(orders)), str(first), str(last))
            )
    except csv.Error as exc:
        raise HistoryError(reader.line_num, f"not CSV: {exc}") from None
    return facts


def parse_history_bytes(data: bytes) -> list[HistoryFact]:
    """parse_history of a file's bytes: UTF-8 (a BOM allowed), or the line that is not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HistoryError(data[: exc.start].count(b"\n") + 1, "not UTF-8") from None
    return parse_history(io.StringIO(text, newline=""))
