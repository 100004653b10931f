"""The alert book of the board: webhook payloads in, firing alerts out, Alertmanager as fallback."""

from __future__ import annotations

import pytest

from streams.exporter.alerts import AlertBook, AlertmanagerClient, WebhookError, alerts_response


def webhook(*alerts: tuple[str, str, dict[str, str]]) -> dict[str, object]:
    """An Alertmanager webhook body (version 4) with (status, fingerprint, labels) alerts."""
    return {
        "version": "4",
        "status": "firing",
        "receiver": "storepulse-webhook",
        "groupLabels": {},
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"{labels['alertname']} summary"},
                "startsAt": "2026-11-22T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": fp,
            }
            for status, fp, labels in alerts
        ],
    }


SPIKE = {"alertname": "CartAbandonmentSpike", "severity": "critical", "channel": "all"}
DLQ = {"alertname": "DeadLetterSurge", "severity": "warning"}


async def test_firing_alerts_are_kept_and_resolved_ones_removed() -> None:
    book = AlertBook()
    assert book.receive(webhook(("firing", "a1", DLQ), ("firing", "b2", SPIKE))) == (2, 0)
    names = [a["name"] for a in book.firing()]
    assert names == ["CartAbandonmentSpike", "DeadLetterSurge"]  # critical first
    assert book.firing()[0]["annotations"]["summary"] == "CartAbandonmentSpike summary"
    # A repeat notification refreshes, never duplicates.
    assert book.receive(webhook(("firing", "b2", SPIKE))) == (2, 0)
    assert book.receive(webhook(("resolved", "b2", SPIKE))) == (1, 0)
    answer = await alerts_response(book, None)
    assert [a["name"] for a in answer["alerts"]] == ["DeadLetterSurge"]


def test_alerts_without_a_fingerprint_are_keyed_by_their_labels() -> None:
    book = AlertBook()
    payload = webhook(("firing", "", SPIKE))
    book.receive(payload)
    book.receive(payload)
    assert len(book.firing()) == 1
    book.receive(webhook(("resolved", "", SPIKE)))
    assert book.firing() == []


def test_the_book_is_bounded_and_keeps_the_newest_of_one_name() -> None:
    book = AlertBook(limit=3)
    for i in range(5):
        book.receive(webhook(("firing", f"f{i}", {"alertname": "A", "instance": str(i)})))
    assert sorted(a["fingerprint"] for a in book.firing()) == ["f2", "f3", "f4"]
    assert book.dropped == 2


def test_a_flood_of_one_name_leaves_room_for_every_other_name() -> None:
    # 1,000 alerts of one name (a label explosion, a misrouted sender) and a DeadLetterSurge:
    # the limit is shared fairly between names, so the real alert is kept whatever came first.
    flood = [("firing", f"x{i}", {**SPIKE, "shop": str(i)}) for i in range(1_000)]
    for order in ("flood first", "flood after"):
        book = AlertBook()
        if order == "flood first":
            book.receive(webhook(*flood))
            firing, dropped = book.receive(webhook(("firing", "dlq", DLQ)))
        else:
            book.receive(webhook(("firing", "dlq", DLQ)))
            firing, dropped = book.receive(webhook(*flood))
        assert (firing, dropped, book.dropped) == (1_000, 1, 1), order
        names = [a["name"] for a in book.firing()]
        assert names.count("DeadLetterSurge") == 1, order
        assert names.count("CartAbandonmentSpike") == 999, order


def test_a_full_book_keeps_critical_alerts_first_at_each_round() -> None:
    # Two names, three alerts each, room for four: two of each name (round robin), critical
    # before warning within a name, and the most recently received first among equals.
    book = AlertBook(limit=4)
    book.receive(
        webhook(
            ("firing", "a-warn", {"alertname": "A", "severity": "warning", "i": "1"}),
            ("firing", "a-crit", {"alertname": "A", "severity": "critical", "i": "2"}),
            ("firing", "a-late", {"alertname": "A", "severity": "warning", "i": "3"}),
            ("firing", "b1", {"alertname": "B", "severity": "warning", "i": "1"}),
            ("firing", "b2", {"alertname": "B", "severity": "warning", "i": "2"}),
            ("firing", "b3", {"alertname": "B", "severity": "warning", "i": "3"}),
        )
    )
    kept = {a["fingerprint"] for a in book.firing()}
    # A: critical, then the newer of the two warnings (a-late came last: it is the newest).
    assert kept == {"a-crit", "a-late", "b3", "b2"}
    assert book.dropped == 2
    # A resolved alert makes room; a new one of a name with fewer alerts is kept.
    book.receive(webhook(("resolved", "b2", {"alertname": "B"})))
    assert book.receive(webhook(("firing", "c1", {"alertname": "C"}))) == (4, 0)


def test_a_refused_payload_changes_nothing() -> None:
    book = AlertBook()
    book.receive(webhook(("firing", "a1", DLQ)))
    bad = webhook(("resolved", "a1", DLQ))
    bad["alerts"].append("not an alert")  # type: ignore[attr-defined]
    with pytest.raises(WebhookError):
        book.receive(bad)
    assert [a["fingerprint"] for a in book.firing()] == ["a1"]


@pytest.mark.parametrize("payload", [None, [], {"alerts": "x"}, {"alerts": [1]}])
def test_a_payload_that_is_not_a_webhook_is_refused(payload: object) -> None:
    with pytest.raises(WebhookError):
        AlertBook().receive(payload)


async def test_an_unreachable_alertmanager_falls_back_to_the_webhook_book() -> None:
    book = AlertBook()
    book.receive(webhook(("firing", "a1", DLQ)))
    # Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
    client = AlertmanagerClient("http://127.0.0.1:9")
    try:
        answer = await alerts_response(book, client)
    finally:
        await client.aclose()
    assert answer["source"] == "webhook"
    assert answer["error"].startswith("alertmanager: http://127.0.0.1:9/api/v2/alerts: ")
    assert [a["name"] for a in answer["alerts"]] == ["DeadLetterSurge"]
