"""Errors that reach `storepulse`'s main: one redacted line saying what to do, and the status."""

from __future__ import annotations

import errno

import pytest
from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from storepulse.cli import main
from storepulse.cli.errors import BAD_INPUT, UNAVAILABLE, describe
from storepulse.local.procs import MissingBinary, ServiceError
from streams.settings import Settings, SettingsError

SETTINGS = Settings(redis_url="redis://:hunter2@redis:6379/0", kafka_bootstrap="kafka:9092")
REDIS = "(redis://***@redis:6379/0)"


@pytest.mark.parametrize(
    ("exc", "status", "parts"),
    [
        (
            RedisConnectionError("Error 111 connecting to redis:6379. Connection refused."),
            UNAVAILABLE,
            [f"cannot reach Redis {REDIS}: Error 111", "storepulse stack up", "REDIS_URL"],
        ),
        (
            RedisTimeoutError("Timeout connecting to server"),
            UNAVAILABLE,
            [f"cannot reach Redis {REDIS}: Timeout"],
        ),
        (
            AuthenticationError("invalid username-password pair or user is disabled."),
            UNAVAILABLE,
            [f"Redis refused the credentials {REDIS}", "STOREPULSE_REDIS_PASSWORD"],
        ),
        (ResponseError("MISCONF no disk"), UNAVAILABLE, [f"Redis failed {REDIS}: MISCONF"]),
        (
            KafkaConnectionError("Unable to bootstrap from [('kafka', 9092)]"),
            UNAVAILABLE,
            ["cannot reach Kafka (kafka:9092): ", "STOREPULSE_KAFKA_BOOTSTRAP"],
        ),
        (
            UnknownTopicOrPartitionError(),
            UNAVAILABLE,
            ["Kafka failed (kafka:9092): UnknownTopicOrPartitionError"],
        ),
        (
            ServiceError(
                "redis not ready on redis://127.0.0.1:1 after 30s; log /x/redis.log:\n"
                "1:M starting\n# Address already in use\n"
            ),
            UNAVAILABLE,
            ["redis not ready", "log /x/redis.log; its log ends: # Address already in use"],
        ),
        (
            MissingBinary("redis-server not found on PATH: install it with `apt-get ...`"),
            UNAVAILABLE,
            ["redis-server not found on PATH: install it"],
        ),
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
            UNAVAILABLE,
            ["Connection refused; check that what it names is running"],
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/no/dir/rules.yml"),
            UNAVAILABLE,
            ["No such file or directory (/no/dir/rules.yml)"],
        ),
        (
            ValueError("Invalid value for 'db' in connection URL."),
            BAD_INPUT,
            ["Invalid value for 'db' in connection URL; check the arguments"],
        ),
        (
            SettingsError(["STOREPULSE_PARTITIONS: bad (got 'six')", "STOREPULSE_X: worse"]),
            BAD_INPUT,
            ["STOREPULSE_PARTITIONS: bad (got 'six'); STOREPULSE_X: worse; fix it (README.md"],
        ),
    ],
)
def test_each_failure_is_one_line_saying_what_to_do(
    exc: Exception, status: int, parts: list[str]
) -> None:
    failure = describe(exc, SETTINGS)
    assert failure is not None
    assert failure.status == status
    assert "\n" not in failure.text
    for part in parts:
        assert part in failure.text
    assert "hunter2" not in failure.text


def test_reasons_are_redacted_and_bugs_are_not_explained() -> None:
    failure = describe(RedisConnectionError("cannot use redis://:hunter2@other:1/0"), SETTINGS)
    assert failure is not None and "hunter2" not in failure.text
    assert "redis://***@other:1/0" in failure.text
    assert describe(KeyError("x"), SETTINGS) is None
    assert describe(RuntimeError("a bug"), SETTINGS) is None
    # Without settings (they did not load), the line has no address.
    bare = describe(RedisConnectionError("refused"), None)
    assert bare is not None and bare.text.startswith("cannot reach Redis: refused;")


def test_main_prints_the_line_and_returns_the_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The record factory stays this process's own (tests/unit/streams/test_redact.py has it).
    monkeypatch.setattr("storepulse.cli.install_log_redaction", lambda: None)
    monkeypatch.setenv("STOREPULSE_REDIS_URL", "redis://:hunter2@redis:port/0")
    assert main(["rules"]) == BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("storepulse rules: STOREPULSE_REDIS_URL: the port must be a number")
    assert err.count("\n") == 1 and "hunter2" not in err and "Traceback" not in err
    # -v adds the traceback (redacted) to the line.
    monkeypatch.setenv("STOREPULSE_REDIS_URL", "redis://:hunter2@redis:6379/0")
    assert main(["-v", "rules", "--output", "/proc/no/such/dir/rules.yml"]) == UNAVAILABLE
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith(
        "storepulse rules: No such file or directory (/proc/no/such/dir/rules.yml)"
    )
