"""What an error that reached `storepulse` means: one line saying what to do, and the status."""

from __future__ import annotations

from dataclasses import dataclass

from streams.redact import redact_text
from streams.settings import Settings, SettingsError

__all__ = ["BAD_INPUT", "UNAVAILABLE", "Failure", "describe"]

# README.md, "Stopping and exit statuses".
UNAVAILABLE = 1  # a dependency or an output failed
BAD_INPUT = 2  # bad arguments or a bad STOREPULSE_* value

_START_REDIS = "start it (`storepulse stack up` runs the local one) or fix STOREPULSE_REDIS_URL"
_START_KAFKA = (
    "start the broker (`storepulse stack up` runs the local one) or fix STOREPULSE_KAFKA_BOOTSTRAP"
)


@dataclass(frozen=True)
class Failure:
    """`<what failed> (<address>): <reason>; <what to do>`, redacted, and the exit status."""

    text: str
    status: int


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the library put in its message


def _service(exc: BaseException) -> str:
    # "<name> ... after 30s; log FILE:" then the log's tail: the line, and the log's last line.
    first, *tail = str(exc).strip().splitlines()
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    return f"{first.rstrip(':')}; its log ends: {last}" if last else first


def _classify(exc: BaseException, settings: Settings | None) -> Failure | None:
    # Imported here: `storepulse --help` and `rules` need neither client library.
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from redis.exceptions import AuthenticationError, RedisError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from storepulse.local.procs import ServiceError

    redis_at = f" ({settings.redis_url_shown})" if settings else ""
    kafka_at = f" ({settings.kafka_bootstrap})" if settings else ""
    if isinstance(exc, SettingsError):
        return Failure(f'{exc}; fix it (README.md, "Configuration")', BAD_INPUT)
    if isinstance(exc, AuthenticationError):
        return Failure(
            f"Redis refused the credentials{redis_at}: {_reason(exc)}; check the password in "
            "STOREPULSE_REDIS_URL or STOREPULSE_REDIS_PASSWORD",
            UNAVAILABLE,
        )
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return Failure(f"cannot reach Redis{redis_at}: {_reason(exc)}; {_START_REDIS}", UNAVAILABLE)
    if isinstance(exc, RedisError):
        return Failure(
            f"Redis failed{redis_at}: {_reason(exc)}; see the Redis server's log", UNAVAILABLE
        )
    if isinstance(exc, KafkaConnectionError):
        return Failure(f"cannot reach Kafka{kafka_at}: {_reason(exc)}; {_START_KAFKA}", UNAVAILABLE)
    if isinstance(exc, KafkaError):
        return Failure(
            f"Kafka failed{kafka_at}: {type(exc).__name__}: {_reason(exc)}; see the broker's log",
            UNAVAILABLE,
        )
    if isinstance(exc, ServiceError):
        # MissingBinary says how to install it; the others name the log to read.
        return Failure(_service(exc), UNAVAILABLE)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return Failure(
            f"{exc.strerror or _reason(exc)}{where}; check that what it names is running or "
            "exists, and its STOREPULSE_* address or the path given",
            UNAVAILABLE,
        )
    if isinstance(exc, ValueError):  # our own parsing (and redis-py's of the URL's query)
        return Failure(
            f"{_reason(exc)}; check the arguments (--help) and the STOREPULSE_* variables",
            BAD_INPUT,
        )
    return None


def describe(exc: BaseException, settings: Settings | None = None) -> Failure | None:
    """The one line and exit status for exc, or None: not a failure we explain (a bug)."""
    failure = _classify(exc, settings)
    return None if failure is None else Failure(redact_text(failure.text), failure.status)
