"""The history CSV: every row checked, the first bad one named by its line, nothing else kept."""

from __future__ import annotations

import pytest

from streams.contract.history import HistoryError, parse_history_bytes

HEAD = "customer_id,first_order_at,orders,last_order_at\n"


def test_good_rows_become_history_facts() -> None:
    data = (
        "\ufeff" + HEAD + "u-1,2025-01-02T03:04:05Z,3,2026-06-01T00:00:00+02:00\n"
        '"acct, Inc",2024-05-01T00:00:00Z,1,2024-05-01T00:00:00Z\n\n'
    ).encode()
    facts = parse_history_bytes(data)
    assert [(f.customer, f.orders) for f in facts] == [("u-1", "3"), ("acct, Inc", "1")]
    assert facts[0].first_order_ms == "1735787045000"
    assert facts[0].last_order_ms == "1780264800000"  # +02:00: 22:00 the day before, UTC
    assert parse_history_bytes(HEAD.encode()) == []


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "empty file"),
        ("customer,first,orders,last\n", 1, "the header must be"),
        (HEAD + "u-1,2025-01-02T00:00:00Z,3\n", 2, "3 fields, expected 4"),
        (HEAD + ",2025-01-02T00:00:00Z,3,2025-01-02T00:00:00Z\n", 2, "customer_id must have"),
        (HEAD + "u-1,2025-01-02T00:00:00Z,0,2025-01-02T00:00:00Z\n", 2, "orders must be"),
        (HEAD + "u-1,2025-01-02T00:00:00Z,two,2025-01-02T00:00:00Z\n", 2, "orders must be"),
        (HEAD + "u-1,2025-01-02T00:00:00,1,2025-01-02T00:00:00Z\n", 2, "has no time zone"),
        (HEAD + "u-1,1735787045000,1,2025-01-02T00:00:00Z\n", 2, "ISO 8601 with a zone"),
        (HEAD + "u-1,2025-01-03T00:00:00Z,1,2025-01-02T00:00:00Z\n", 2, "is after"),
        (
            HEAD
            + "u-1,2025-01-02T00:00:00Z,1,2025-01-02T00:00:00Z\n"
            + "u-2,2025-01-02T00:00:00Z,1,2025-01-02T00:00:00Z\n"
            + "u-1,2025-01-02T00:00:00Z,2,2025-01-02T00:00:00Z\n",
            4,
            "is on line 2 too",
        ),
        (HEAD + 'u-1,"2025-01-02T00:00:00Z,1,2025-01-02\n', 2, "not CSV"),
    ],
)
def test_a_bad_row_is_named_by_its_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(HistoryError) as caught:
        parse_history_bytes(text.encode())
    assert caught.value.line == line
    assert reason in caught.value.reason


def test_bytes_that_are_not_utf8_are_named_by_their_line() -> None:
    with pytest.raises(HistoryError) as caught:
        parse_history_bytes(HEAD.encode() + b"u-1,x,1,y\n\xff\xfe,2,3,4\n")
    assert (caught.value.line, caught.value.reason) == (3, "not UTF-8")
