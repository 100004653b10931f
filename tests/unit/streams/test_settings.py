"""Settings: defaults, environment parsing, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streams.settings import Settings, SettingsError, load_settings, settings_table


def test_defaults_reach_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.topic == "storefront.events" and s.dlq_topic == "storefront.events.dlq"
    assert s.partitions == 6
    assert s.bucket_seconds == 60
    assert s.allowed_lateness_seconds == 3600 and s.max_future_skew_seconds == 300
    assert s.stages == ("visit", "cart", "shipping", "payment", "review", "purchase")
    assert s.state_dir == Path(".storepulse")
    assert s.redis_host_port == ("127.0.0.1", 16379)
    assert s.kafka_host_port == ("127.0.0.1", 19092)


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREPULSE_KAFKA_BOOTSTRAP", "k1:9092,k2:9093")
    monkeypatch.setenv("STOREPULSE_PARTITIONS", "12")
    monkeypatch.setenv("STOREPULSE_CHECKOUT_STEPS", "address, pay")
    monkeypatch.setenv("STOREPULSE_REDIS_PASSWORD", "hunter2")
    s = load_settings()
    assert s.partitions == 12
    assert s.checkout_steps == ("address", "pay")
    assert s.stages == ("visit", "cart", "address", "pay", "purchase")
    assert s.kafka_host_port == ("k1", 9092)
    assert s.redis_password is not None
    assert "hunter2" not in repr(s)
    assert s.redis_password.get_secret_value() == "hunter2"


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("STOREPULSE_PARTITIONS", "six", "STOREPULSE_PARTITIONS"),
        ("STOREPULSE_PARTITIONS", "0", "greater than or equal to 1"),
        ("STOREPULSE_BUCKET_SECONDS", "-5", "STOREPULSE_BUCKET_SECONDS"),
        ("STOREPULSE_KAFKA_BOOTSTRAP", "localhost", "host:port"),
        ("STOREPULSE_REDIS_URL", "http://x", "STOREPULSE_REDIS_URL"),
        ("STOREPULSE_CHECKOUT_STEPS", "pay,pay", "repeat"),
        ("STOREPULSE_CHECKOUT_STEPS", "cart,pay", "may not be named cart"),
        ("STOREPULSE_LOG_LEVEL", "LOUD", "STOREPULSE_LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value)
    assert needle in str(info.value)


def test_sasl_needs_credentials_and_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREPULSE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SettingsError, match="STOREPULSE_KAFKA_SASL_USERNAME"):
        load_settings()
    monkeypatch.setenv("STOREPULSE_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("STOREPULSE_KAFKA_SASL_PASSWORD", "s3cret")
    s = load_settings()
    assert "s3cret" not in repr(s)


def test_readme_documents_every_variable() -> None:
    """The README's configuration table is the one generated from the fields."""
    readme = Path("README.md").read_text()
    assert settings_table() in readme, (
        "regenerate: python -c 'from streams.settings import *; print(settings_table())'"
    )
    for name in Settings.model_fields:
        assert f"`STOREPULSE_{name.upper()}`" in readme


SECRET = "s3cr:t@pw"  # a : and an @ in it, unencoded, as people paste them


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        (f"http://:{SECRET}@127.0.0.1:6379/0", "expected redis://host:port/db"),
        (f"REDIS://:{SECRET}@127.0.0.1:6379/0", "expected redis://host:port/db"),
        (f"redis://:{SECRET}@127.0.0.1:abc/0", "the port must be a number from 1 to 65535"),
        (f"redis://:{SECRET}@127.0.0.1:70000/0", "the port must be a number from 1 to 65535"),
        (f"redis://:{SECRET}@127.0.0.1:0/0", "the port must be a number from 1 to 65535"),
        (f"redis://:{SECRET}@:6379/0", "no host"),
        (f"redis://:{SECRET}@127.0.0.1:6379/zero", "the database"),
        (f"redis://:{SECRET}/x@127.0.0.1:6379/0", "must be percent-encoded"),
        (f"redis://:{SECRET}?x@127.0.0.1:6379/0", "must be percent-encoded"),
        (f"redis://:{SECRET}@[::1:6379/0", "not a URL"),
        ("unix://", "the socket's path"),
    ],
)
def test_bad_redis_url_is_a_clear_error_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, url: str, needle: str
) -> None:
    monkeypatch.setenv("STOREPULSE_REDIS_URL", url)
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert text.startswith("STOREPULSE_REDIS_URL: ")
    assert needle in text
    assert "\n" not in text  # one line
    for part in (SECRET, "s3cr", "t@pw"):
        assert part not in text
    if "@" in url:
        assert "***@" in text  # the value is shown, redacted: the user sees which one it was
    # Nor does pydantic's own text quote it, for code that builds Settings directly.
    with pytest.raises(ValidationError) as raw:
        Settings(redis_url=url)
    assert "s3cr" not in str(raw.value) and "s3cr" not in repr(raw.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:16379/0",
        "redis://127.0.0.1",
        "redis://redis:6379",
        f"redis://:{SECRET}@redis:6379/15",
        "redis://alice:p%2Fss@redis:6379/0",
        "rediss://default:pw@cache.example.com:6380/0?ssl_cert_reqs=required",
        "redis://[::1]:6379/0",
        "unix:///run/redis/redis.sock?db=1",
    ],
)
def test_good_redis_urls_pass(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


def test_redis_url_is_shown_redacted_everywhere() -> None:
    s = Settings(redis_url=f"redis://:{SECRET}@redis:6379/0")
    assert s.redis_url_shown == "redis://***@redis:6379/0"
    assert "s3cr" not in repr(s) and "s3cr" not in str(s)
    assert "redis://***@redis:6379/0" in repr(s)
    assert s.redis_host_port == ("redis", 6379)
    # What the local stack's redis-server is given: the URL's password, decoded, first.
    assert s.redis_secret == SECRET
    encoded = Settings(redis_url="redis://:p%40ss@h/0", redis_password=SecretStr("other"))
    assert encoded.redis_secret == "p@ss"
    assert Settings(redis_password=SecretStr("other")).redis_secret == "other"
    assert Settings().redis_secret is None


def test_several_errors_in_one_line_and_secrets_never_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STOREPULSE_PARTITIONS", "six")
    monkeypatch.setenv("STOREPULSE_KAFKA_BOOTSTRAP", "user:pw@broker")
    monkeypatch.setenv("STOREPULSE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STOREPULSE_KAFKA_SASL_PASSWORD", "kafka-s3cret")
    monkeypatch.setenv("STOREPULSE_REDIS_URL", f"redis://:{SECRET}@h:port/0")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "\n" not in text
    assert "STOREPULSE_PARTITIONS: " in text and "(got 'six')" in text
    assert "STOREPULSE_KAFKA_BOOTSTRAP: expected host:port" in text
    assert "STOREPULSE_REDIS_URL: the port" in text
    assert len(info.value.problems) == 3
    for secret in ("s3cr", "kafka-s3cret", ":pw@"):
        assert secret not in text


def test_the_webhook_token_is_a_secret_of_16_characters_or_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().webhook_token is None
    monkeypatch.setenv("STOREPULSE_WEBHOOK_TOKEN", "")  # an empty line of an env file: off
    assert load_settings().webhook_token is None
    monkeypatch.setenv("STOREPULSE_WEBHOOK_TOKEN", "s3cret-s3cret-s3cret")
    s = load_settings()
    assert s.webhook_token is not None
    assert s.webhook_token.get_secret_value() == "s3cret-s3cret-s3cret"
    assert "s3cret" not in repr(s)
    for bad, needle in (("hunter2", "at least 16 characters"), ("with a space " * 2, "ASCII")):
        monkeypatch.setenv("STOREPULSE_WEBHOOK_TOKEN", bad)
        with pytest.raises(SettingsError) as info:
            load_settings()
        assert "STOREPULSE_WEBHOOK_TOKEN" in str(info.value)
        assert needle in str(info.value)
        assert bad not in str(info.value)  # the refused value is not shown
