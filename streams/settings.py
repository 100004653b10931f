"""Runtime configuration: the only module that reads the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.contract.events import DEFAULT_CHECKOUT_STEPS
from streams.contract.funnel import RESERVED_STAGES, funnel_stages
from streams.redact import redact_text, redact_url

__all__ = [
    "DEFAULT_CHECKOUT_STEPS",
    "Settings",
    "SettingsError",
    "child_environment",
    "load_settings",
    "settings_table",
]

CommaList = Annotated[tuple[str, ...], NoDecode]
# The shortest webhook token accepted (STOREPULSE_WEBHOOK_TOKEN).
MIN_TOKEN_LENGTH = 16


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class SettingsError(Exception):
    """Bad environment values, each with the variable it came from named; one line of text."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# No user:password@ in it: to every redaction that would look like a URL with a secret.
_REDIS_FORM = "redis://host:port/db, rediss://host:port/db or unix:///path/to/socket"


def _redis_url_problem(url: str) -> str | None:
    """What makes url unusable as the Redis URL, or None; never quotes a part of it."""
    # redis-py accepts exactly these prefixes, in lower case.
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return f"expected {_REDIS_FORM}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"not a URL (a [ without its ] around an IPv6 address?); expected {_REDIS_FORM}"
    if parts.scheme == "unix":
        return None if parts.path else "unix:// needs the socket's path: unix:///path/to/socket"
    if "@" in parts.path + parts.query + parts.fragment:
        # The parser ended the userinfo at a / ? or # of the password: host and port would be
        # taken from the password.
        return "a / ? or # in the user name or password must be percent-encoded (%2F %3F %23)"
    if not parts.hostname:
        return f"no host; expected {_REDIS_FORM}"
    try:
        port = parts.port
    except ValueError:  # not a number, or over 65535
        port = 0
    if port == 0:
        return "the port must be a number from 1 to 65535"
    if not re.fullmatch(r"/?[0-9]*", parts.path):
        # redis-py would quietly use database 0 instead.
        return "the database (the path after host:port) must be a number, e.g. /0"
    return None


class Settings(BaseSettings):
    """storepulse settings; each field is read from ``STOREPULSE_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(
        env_prefix="STOREPULSE_",
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        # A ValidationError's text would quote each bad value, a Redis URL's password included;
        # load_settings shows them redacted.
        hide_input_in_errors=True,
    )

    # Kafka
    kafka_bootstrap: str = Field(
        "127.0.0.1:19092", description="Kafka bootstrap servers, comma separated host:port"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with a SASL protocol)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret)")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for SSL/SASL_SSL")
    topic: str = Field("storefront.events", min_length=1, description="storefront events topic")
    dlq_topic: str = Field(
        "storefront.events.dlq", min_length=1, description="dead-letter topic for rejected events"
    )
    partitions: int = Field(6, ge=1, le=1024, description="partitions when creating the topic")
    replication_factor: int = Field(1, ge=1, le=16, description="replication when creating topics")

    # Redis
    redis_url: str = Field(
        "redis://127.0.0.1:16379/0", description="Redis URL (redis://, rediss://)"
    )
    redis_password: SecretStr | None = Field(None, description="Redis password (secret)")

    # Event-time semantics
    bucket_seconds: int = Field(60, ge=1, le=86_400, description="event-time bucket size")
    allowed_lateness_seconds: int = Field(
        3_600, ge=0, description="events older than the watermark minus this are rejected late"
    )
    max_future_skew_seconds: int = Field(
        300, ge=0, description="events newer than now plus this are rejected future"
    )
    session_timeout_seconds: int = Field(
        1_800,
        ge=60,
        description="a session ends this long after its last event (its state is kept the "
        "allowed lateness longer)",
    )
    recovery_window_seconds: int = Field(
        7 * 86_400,
        ge=60,
        le=400 * 86_400,
        description="an abandoned cart is recovered by its customer's first order this long "
        "after its end; abandoned carts are listed this long",
    )
    retention_seconds: int = Field(
        7 * 86_400, ge=3_600, description="bucket counters are kept this long (event time)"
    )
    checkout_steps: CommaList = Field(
        DEFAULT_CHECKOUT_STEPS, description="checkout steps in funnel order, comma separated"
    )
    channels: CommaList = Field(
        ("direct", "organic", "paid_search", "social", "email", "referral", "affiliate"),
        description="channel label values kept; others count as other",
    )
    devices: CommaList = Field(
        ("desktop", "mobile", "tablet"), description="device label values kept; others are other"
    )
    max_event_bytes: int = Field(65_536, ge=1_024, description="larger messages are rejected")
    max_events_per_session: int = Field(
        10_000,
        ge=10,
        le=1_000_000,
        description="distinct events one session may hold; later ones are rejected session_limit",
    )
    dlq_max_payload_bytes: int = Field(
        16_384,
        ge=256,
        le=131_072,
        description="bytes of a rejected payload kept in its dead letter (the rest: size, digest)",
    )

    # Worker
    worker_id: str = Field(
        "storepulse-worker", description="Faust app id = consumer group; workers sharing it split"
    )
    worker_web_host: str = Field("127.0.0.1", description="worker /metrics listen address")
    worker_web_port: int = Field(16066, ge=0, le=65_535, description="worker /metrics port, 0 off")
    batch_size: int = Field(
        1_000, ge=1, le=100_000, description="max events per batch (per fetch of the worker)"
    )
    batch_seconds: float = Field(
        0.05,
        gt=0,
        le=10,
        description="max wait to fill a batch of a take_events agent (the bench's); the worker "
        "hands over each fetch as it comes",
    )
    stall_seconds: float = Field(
        30.0,
        ge=5,
        le=3_600,
        description="no progress with data to read, or one rebalance, this long: exit 3",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="event loop of the worker, the exporter and the generator (asyncio: fallback)",
    )

    session_figures: bool = Field(
        True,
        description="the session worker ends sessions and keeps their figures and carts (false: "
        "the funnel alone, as before; the bench's baseline)",
    )

    # Customers (docs/semantics.md, "Customers")
    customer_facts: bool = Field(
        True,
        description="the session worker publishes customer facts (false: no customer stage)",
    )
    customer_topic: str = Field(
        "storefront.customers", min_length=1, description="customer facts topic (key = customer)"
    )
    customer_partitions: int | None = Field(
        None, ge=1, le=1024, description="partitions of the customer topic (empty: PARTITIONS)"
    )
    customer_retention_seconds: int = Field(
        400 * 86_400, ge=86_400, description="per-period customer data is kept this long"
    )
    customer_worker_web_port: int = Field(
        16067, ge=0, le=65_535, description="customers-worker /metrics port, 0 off"
    )

    # Accounts (docs/semantics.md, "Accounts")
    at_risk_factor: Decimal = Field(
        Decimal(2),
        gt=0,
        le=100,
        decimal_places=2,
        description="an account is at risk when the time since its last order exceeds this "
        "times the median gap between its orders (3 orders at least)",
    )
    accounts_topic: str = Field(
        "storefront.accounts",
        min_length=1,
        description="account directory upserts (one JSON object each, key = account_id)",
    )
    export_rep_labels: bool = Field(
        False,
        description="export account gauges by sales_rep too (only while the directory has at "
        "most 200 reps)",
    )
    key_tiers: CommaList = Field(
        ("platinum", "gold"),
        description="tiers whose at-risk accounts KeyAccountsQuiet watches, comma separated "
        "(empty: none); `storepulse rules` renders them",
    )

    # Exporter and KPIs
    exporter_host: str = Field("127.0.0.1", description="exporter listen address")
    exporter_port: int = Field(19100, ge=0, le=65_535, description="exporter port (0: any free)")
    min_sample: int = Field(
        20, ge=1, description="ratios with a smaller denominator are not exported"
    )
    webhook_token: SecretStr | None = Field(
        None,
        description="bearer token Alertmanager must send to the exporter's POST /api/alerts "
        "(secret, 16+ characters); unset: the webhook is off",
    )

    # Local stack
    state_dir: Path = Field(Path(".storepulse"), description="local stack pid files, logs, data")
    prometheus_port: int = Field(19090, ge=1, le=65_535, description="local Prometheus port")
    alertmanager_port: int = Field(19093, ge=1, le=65_535, description="local Alertmanager port")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="log level of the worker and exporter"
    )

    @field_validator("checkout_steps", "channels", "devices", "key_tiers", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value)

    @field_validator("checkout_steps")
    @classmethod
    def _steps_valid(cls, steps: tuple[str, ...]) -> tuple[str, ...]:
        if not steps:
            raise ValueError("at least one checkout step is needed")
        if len(set(steps)) != len(steps):
            raise ValueError(f"checkout steps repeat: {','.join(steps)}")
        clash = sorted(RESERVED_STAGES.intersection(steps))
        if clash:
            raise ValueError(f"checkout steps may not be named {', '.join(clash)}")
        return steps

    @field_validator("webhook_token", mode="before")
    @classmethod
    def _token_empty_is_unset(cls, value: object) -> object:
        # `STOREPULSE_WEBHOOK_TOKEN=` (an empty line in an env file) turns the webhook off; it
        # must never make "Bearer " with an empty token a valid credential.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("webhook_token")
    @classmethod
    def _token_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value()
        # 16 characters: a guessable word is refused; `openssl rand -base64 32` gives 44. The
        # token travels in an HTTP header: no spaces or control characters.
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_TOKEN_LENGTH} characters (e.g. openssl rand -base64 32)"
            )
        if not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError("must be printable ASCII without spaces")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_valid(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("expected host:port[,host:port...]")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_valid(cls, value: str) -> str:
        problem = _redis_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _sasl_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(
                "STOREPULSE_KAFKA_SASL_USERNAME and STOREPULSE_KAFKA_SASL_PASSWORD are required "
                f"with STOREPULSE_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        return self

    # Derived values -----------------------------------------------------------------------

    @property
    def stages(self) -> tuple[str, ...]:
        """Funnel stages in order: visit, cart, each checkout step, purchase."""
        return funnel_stages(self.checkout_steps)

    @property
    def customer_partition_count(self) -> int:
        """Partitions of the customer topic: STOREPULSE_CUSTOMER_PARTITIONS, else PARTITIONS."""
        return self.customer_partitions or self.partitions

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        """The first bootstrap server, where the local stack's broker listens."""
        host, _, port = self.kafka_bootstrap.split(",")[0].strip().rpartition(":")
        return host, int(port)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "redis_url" else value

    @property
    def redis_url_shown(self) -> str:
        """The Redis URL for log lines and messages: userinfo and secret parameters masked."""
        return redact_url(self.redis_url)

    @property
    def redis_secret(self) -> str | None:
        """The password Redis is sent: the URL's (it wins in redis-py), else REDIS_PASSWORD."""
        password = urlsplit(self.redis_url).password
        if password:
            return unquote(password)
        return self.redis_password.get_secret_value() if self.redis_password else None

    @property
    def redis_host_port(self) -> tuple[str, int]:
        """Host and port of the Redis URL, where the local stack's redis-server listens."""
        parts = urlsplit(self.redis_url)
        return parts.hostname or "127.0.0.1", parts.port or 6379

    @property
    def exporter_url(self) -> str:
        return f"http://{self.exporter_host}:{self.exporter_port}"


def settings_table() -> str:
    """The README's configuration table, generated from the fields above."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        rows.append(
            f"| `STOREPULSE_{name.upper()}` | {'' if shown is None else f'`{shown}`'} "
            f"| {info.description} |"
        )
    return "\n".join(rows)


def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with STOREPULSE_* replaced by exactly these settings.

    A child `storepulse` process started with it (demo, bench, tests) reads the same settings.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREPULSE_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, tuple | list):
            value = ",".join(value)
        elif isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"STOREPULSE_{name.upper()}"] = str(value)
    return env


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"])
            name = f"STOREPULSE_{field.upper()}" if field else "STOREPULSE_*"
            # The messages never quote the value (the validators above say what is wrong in
            # words); _shown adds it, redacted.
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}{_shown(field, err.get('input'))}")
        raise SettingsError(problems) from None


_SECRET_FIELD = re.compile(r"password|secret|token")


def _shown(field: str, value: object) -> str:
    """The bad value as an error message quotes it: never a secret, a URL only redacted."""
    if value is None or isinstance(value, dict) or _SECRET_FIELD.search(field):
        return ""
    if not isinstance(value, str):
        return f" (got {redact_text(repr(value))})"
    # One word is taken as an address (user:password@host without a scheme is masked too).
    shown = redact_text(value) if any(c.isspace() for c in value) else redact_url(value)
    return f" (got {shown!r})"
