"""The alert book of the board: webhook payloads in, firing alerts out, Alertmanager as fallback."""

from __future__ import annotations

import pytest

from streams.exporter.alerts import AlertBook, WebhookError, alerts_response


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


def test_firing_alerts_are_kept_and_resolved_ones_removed() -> None:
    book = AlertBook()
    assert book.receive(webhook(("firing", "a1", DLQ), ("firing", "b2", SPIKE))) == 2
    names = [a["name"] for a in book.firing()]
    assert names == ["CartAbandonmentSpike", "DeadLetterSurge"]  # critical first
    assert book.firing()[0]["annotations"]["summary"] == "CartAbandonmentSpike summary"
    # A repeat notification refreshes, never duplicates.
    assert book.receive(webhook(("firing", "b2", SPIKE))) == 2
    assert book.receive(webhook(("resolved", "b2", SPIKE))) == 1
    assert [a["name"] for a in alerts_response(book, None)["alerts"]] == ["DeadLetterSurge"]


def test_alerts_without_a_fingerprint_are_keyed_by_their_labels() -> None:
    book = AlertBook()
    payload = webhook(("firing", "", SPIKE))
    book.receive(payload)
    book.receive(payload)
    assert len(book.firing()) == 1
    book.receive(webhook(("resolved", "", SPIKE)))
    assert book.firing() == []


def test_the_book_is_bounded() -> None:
    book = AlertBook(limit=3)
    for i in range(5):
        book.receive(webhook(("firing", f"f{i}", {"alertname": f"A{i}"})))
    assert [a["name"] for a in book.firing()] == ["A0", "A1", "A2"]


@pytest.mark.parametrize("payload", [None, [], {"alerts": "x"}, {"alerts": [1]}])
def test_a_payload_that_is_not_a_webhook_is_refused(payload: object) -> None:
    with pytest.raises(WebhookError):
        AlertBook().receive(payload)


def test_an_unreachable_alertmanager_falls_back_to_the_webhook_book() -> None:
    book = AlertBook()
    book.receive(webhook(("firing", "a1", DLQ)))
    # Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
    answer = alerts_response(book, "http://127.0.0.1:9")
    assert answer["source"] == "webhook"
    assert answer["error"].startswith("alertmanager:")
    assert [a["name"] for a in answer["alerts"]] == ["DeadLetterSurge"]
