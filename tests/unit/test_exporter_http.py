"""Exporter pieces without Redis: webhook alert book, durations, the CLI's help and arguments."""

from __future__ import annotations

import pytest

from storepulse.cli import build_parser
from streams._exporter_alerts import AlertBook, WebhookError, alerts_response
from streams.exporter import parse_duration


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


@pytest.mark.parametrize(
    ("text", "seconds"), [("900", 900), ("15m", 900), ("1h", 3_600), ("7d", 604_800)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "-5m", "15x", "m", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_exporter_subcommand_help_names_every_route(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["exporter", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for route in ("/metrics", "/api/kpis", "/api/alerts", "/healthz", "--alertmanager-url"):
        assert route in out


def test_exporter_arguments() -> None:
    args = build_parser().parse_args(
        ["exporter", "--port", "0", "--alertmanager-url", "http://am:9093", "--cache-seconds", ".5"]
    )
    assert (args.port, args.alertmanager_url, args.cache_seconds) == (0, "http://am:9093", 0.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["exporter", "--cache-seconds", "2"])
