"""Redaction: URL userinfo and secret parameters masked in URLs, free text and log records."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from streams import redact
from streams.redact import MASK, install_log_redaction, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@127.0.0.1:16379/0", "redis://***@127.0.0.1:16379/0"),
        ("redis://alice:hunter2@redis:6379/3", "redis://***@redis:6379/3"),
        # An unencoded @ or : in the password: everything up to the last @ goes.
        ("redis://:p@ss:w@rd@redis:6379/0", "redis://***@redis:6379/0"),
        ("redis://alice:a:b:c@redis/0", "redis://***@redis/0"),
        # Percent-encoded (%40 is @, %3A is :, %2F is /).
        ("redis://:p%40ss%3Aw%2Frd@redis:6379/0", "redis://***@redis:6379/0"),
        # Unencoded / ? or #: a URL parser would end the userinfo early; the redaction does not.
        ("redis://:pa/ss@redis:6379/0", "redis://***@redis:6379/0"),
        ("redis://:pa?ss#x@redis:6379/0", "redis://***@redis:6379/0"),
        (
            "rediss://default:hunter2@cache.example.com:6380/1",
            "rediss://***@cache.example.com:6380/1",
        ),
        ("rediss://cache.example.com:6380/1", "rediss://cache.example.com:6380/1"),
        ("unix:///run/redis/redis.sock?db=2", "unix:///run/redis/redis.sock?db=2"),
        ("unix://:hunter2@/run/redis/redis.sock", "unix://***@/run/redis/redis.sock"),
        (
            "unix:///run/redis.sock?db=2&password=hunter2",
            "unix:///run/redis.sock?db=2&password=***",
        ),
        # A user name alone is masked too (a token is often passed as the user).
        ("redis://alice@redis:6379/0", "redis://***@redis:6379/0"),
        ("https://ghp_token123@example.com/x", "https://***@example.com/x"),
        ("redis://127.0.0.1:16379/0", "redis://127.0.0.1:16379/0"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
        ("redis://:hunter2@[::1]:6379/0", "redis://***@[::1]:6379/0"),
        (
            "redis://h:1/0?token=t1&client_name=w&client_secret=s1&Password=p1",
            "redis://h:1/0?token=***&client_name=w&client_secret=***&Password=***",
        ),
        # No scheme: still nothing before an @.
        (":hunter2@redis:6379", "***@redis:6379"),
        ("redis:6379", "redis:6379"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # idempotent: a redacted URL goes through unchanged


@pytest.mark.parametrize(
    "secret", ["hunter2", "p@ss:w@rd", "p%40ss", "pa/ss", "t1", "s1", "p1", "ghp_token123"]
)
def test_no_secret_survives(secret: str) -> None:
    urls = [
        f"redis://:{secret}@h:1/0",
        f"rediss://alice:{secret}@h:1/0",
        f"redis://{secret}@h/0",
        f"unix:///s.sock?password={secret}",
        f"redis://h/0?access_token={secret}",
    ]
    for url in urls:
        assert secret not in redact_url(url), url
        assert secret not in redact_text(f"connecting to {url}, again ({url!r})"), url


def test_redact_text_masks_every_url_and_secret_pair() -> None:
    text = (
        "worker w: topic t -> redis redis://:hunter2@h:1/0, dead letters to t.dlq; "
        "exporter 'rediss://u:pw2@h2:6380/1' STOREPULSE_KAFKA_SASL_PASSWORD=pw3 token=pw4 "
        "board http://127.0.0.1:19100/ mail alice@example.com"
    )
    shown = redact_text(text)
    for secret in ("hunter2", "pw2", "pw3", "pw4"):
        assert secret not in shown
    assert "redis://***@h:1/0," in shown
    assert "'rediss://***@h2:6380/1'" in shown
    assert "STOREPULSE_KAFKA_SASL_PASSWORD=***" in shown
    # What holds no secret is left as it is.
    assert "http://127.0.0.1:19100/" in shown
    assert "alice@example.com" in shown
    assert redact_text("no secret here") == "no secret here"


@pytest.fixture
def redacting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """install_log_redaction for one test; the process's own record factory back afterwards."""
    previous = logging.getLogRecordFactory()
    monkeypatch.setattr(redact, "_installed", False)
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def test_log_records_are_redacted(redacting: None, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("storepulse.test")
    with caplog.at_level(logging.INFO, logger="storepulse.test"):
        log.info("redis %s, db %d", "redis://:hunter2@h:1/0", 3)
        try:
            raise ConnectionError("cannot reach rediss://u:hunter3@h:6380/0")
        except ConnectionError:
            log.exception("failed at %s", "redis://alice@h/0")
    text = caplog.text
    assert "hunter2" not in text and "hunter3" not in text and "alice" not in text
    assert "redis redis://***@h:1/0, db 3" in text
    assert "rediss://***@h:6380/0" in text  # the traceback too
    assert caplog.records[0].getMessage() == "redis redis://***@h:1/0, db 3"


def test_log_record_without_secret_is_left_alone(redacting: None) -> None:
    record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "%s events", (3,), None)
    assert (record.msg, record.args) == ("%s events", (3,))
    # Arguments that do not fit are logging's to report when emitted, not the factory's.
    bad = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "%d", ("x",), None)
    assert bad.args == ("x",)
    assert MASK == "***"
